# cython: language_level=3
"""The `pfilter -r IN.pcap -w OUT.pcap EXPR` fast path: classic pcap in, classic pcap out, the
records copied as they are, with no Python object and no numpy array anywhere.

Compiles the VM's native core in (pfilter/_vm_core.pxi, which pfilter/_vm.pyx includes too) and
the reader's pcapng scanner (pfilter/capture/_scan.pxi, for NgCopy: pcapng in, pcap out, below),
imports nothing from pfilter but the scanner's status codes (pfilter.capture._scancodes), nor typed
memoryviews (arrays and the ring's mapping come through the
buffer protocol): `pfilter -r` loads this one extension. pfilter.capture.fastpath decides when it
applies and falls back to filter_file for everything else.

`workers` threads (the calling one, GIL released, and workers - 1 helpers; 1: the calling thread
alone) share the file symmetrically: chunk i goes to worker i mod workers. A worker pread()s its
chunk into its own buffer (in parallel with the others), then, in chunk order (the "walk turn"),
walks the record headers from the first record boundary of the chunk, which the walk of the chunk
before handed over; a record cut by the end of the chunk is finished by a pread of its rest into
the buffer's tail room, so the chunk owns every record that starts in it and every record is
contiguous. The walk is a few nanoseconds per record; the program then runs over the chunk's
records in parallel with the other workers, and so are its matches counted and laid out as runs
to write. In chunk order again (the "write turn") the worker takes the next output offset for the
bytes it will write (with -c or -C the counting moves into the turn: they decide on the counts of
the chunks before) and gives the turn on: its pwritev() of the runs, straight from its buffer,
overlaps the other workers' writes. Outputs that cannot be written at an offset (a FIFO) are
written with writev inside the write turn. The output is in file order and byte-identical
whatever the number of workers; memory is one chunk (plus the tail room) and its record arrays
per worker.

A ring (ring=, see PcapCopy) is the same pass shared by processes instead of threads: member m
of `members` takes chunks m, m + members, ..., and the walk and write turns (with the totals,
the ending and the output size) live in a block of a mapping every member shares (ring_init;
an anonymous one inherited by forked members for `pfilter -j N`, a small file next to the output
for pfilter.dask's members on one host), under a robust process-shared lock and a condition
waited on with a deadline, so that a member that never comes or dies ends the others' pass
(status ring-failed) instead of hanging them. Processes do not share page tables and a mapping
lock: each populates and drops its chunks' pages without TLB shootdowns for the others.

A mapped pass (mapped=True, what pfilter.capture.fastpath asks for) maps the part of the file it
reads once, and each chunk populates its own pages (and its tail room's as they are touched)
instead of reading them, dropping them again before its worker's next chunk, and the copy is
saved (bench/results/latest_scale.md). Its chunks are walked as several chains at once from
guessed record boundaries (_walk_chains), so that the memory the headers are read from is
waited for once per chain step rather than once per record, and only the lines records start on
are read; what they leave to one chain (_walk) prefetches every line ahead. A chunk beyond the size
the file had when the pass began maps itself. Reading is kept for what cannot be
mapped, for truncating writes (-s: the header of a record is changed in place) and on request.
A file that shrinks under a mapped pass ends it with a read error (SIGBUS caught, see
pf_guard), and the caller starts over on the general path.

The walk only accepts records a plain copy reproduces: caplen at most the file's snapshot length
(and the link type's maximum), header in host byte order. At the first record that is not so, or
at a record cut by the end of the file, it stops and says where (status ANOMALY / TRUNCATED): the
caller then starts over on the general path, which knows libpcap's rules for such records and
their error messages.
"""
from libc.stdint cimport INT64_MAX, INT64_MIN, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset

from cpython.buffer cimport (PyBUF_ANY_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release,
                            PyObject_GetBuffer)
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize

include "../_vm_core.pxi"

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass
    int pthread_create(pthread_t* thread, void* attr, void* (*start)(void*) noexcept nogil, void* arg)
    int pthread_join(pthread_t thread, void** ret)
    int pthread_mutex_init(pthread_mutex_t* m, void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)
    int pthread_cond_init(pthread_cond_t* c, void* attr)
    int pthread_cond_destroy(pthread_cond_t* c)
    int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m)
    int pthread_cond_broadcast(pthread_cond_t* c)

cdef extern from *:
    void __builtin_prefetch(const void* p) nogil

cdef extern from "<unistd.h>" nogil:
    ssize_t pread(int fd, void* buf, size_t count, int64_t offset)
    int64_t lseek(int fd, int64_t offset, int whence)

include "writev.pxi"

# Workers' memory (a chunk buffer and its record arrays, one block each) is kept for the next
# pass, a few blocks at most: a directory of small files would otherwise map and fault in fresh
# zeroed pages for every file (measured: half the time of counting 1,000 files of 1 MB).
cdef extern from *:
    """
    #include <pthread.h>
    #include <stdlib.h>
    #define PF_BLOCKS 4
    static pthread_mutex_t pf_blocks_mu = PTHREAD_MUTEX_INITIALIZER;
    static void *pf_blocks_p[PF_BLOCKS];
    static size_t pf_blocks_n[PF_BLOCKS];

    /* A block of at least n bytes (a kept one not more than twice that, else malloc'd); its
       size in *got. NULL when out of memory. */
    static void *pf_block_get(size_t n, size_t *got) {
        void *p = NULL;
        pthread_mutex_lock(&pf_blocks_mu);
        for (int i = 0; i < PF_BLOCKS; i++) {
            if (pf_blocks_p[i] && pf_blocks_n[i] >= n && pf_blocks_n[i] <= 2 * n) {
                p = pf_blocks_p[i];
                *got = pf_blocks_n[i];
                pf_blocks_p[i] = NULL;
                break;
            }
        }
        pthread_mutex_unlock(&pf_blocks_mu);
        if (p == NULL) {
            p = malloc(n);
            *got = n;
        }
        return p;
    }

    /* Keep a block for the next pass, or free it when PF_BLOCKS are kept already. */
    static void pf_block_put(void *p, size_t n) {
        if (p == NULL)
            return;
        pthread_mutex_lock(&pf_blocks_mu);
        for (int i = 0; i < PF_BLOCKS; i++) {
            if (pf_blocks_p[i] == NULL) {
                pf_blocks_p[i] = p;
                pf_blocks_n[i] = n;
                p = NULL;
                break;
            }
        }
        pthread_mutex_unlock(&pf_blocks_mu);
        free(p);
    }
    """
    void* pf_block_get(size_t n, size_t* got) nogil
    void pf_block_put(void* p, size_t n) nogil

cdef extern from "<sys/uio.h>" nogil:
    ssize_t pwritev(int fd, const iovec* vec, int cnt, int64_t offset)

cdef extern from "<errno.h>" nogil:
    int EIO, EFAULT, EINVAL

cdef extern from "<sys/mman.h>" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, int64_t offset)
    int munmap(void* addr, size_t length)
    int madvise(void* addr, size_t length, int advice)
    int PROT_READ, PROT_NONE, MAP_PRIVATE, MAP_POPULATE, MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE, MADV_DONTNEED
    void* MAP_FAILED

# A chunk's pages are mapped in at once, its tail room's (the next chunk's first bytes) only when
# a record reaches into it: madvise(MADV_POPULATE_READ) on the chunk (Linux 5.14). Where that is
# refused, the whole mapping is populated (MAP_POPULATE) from then on.
cdef extern from *:
    """
    #include <sys/mman.h>
    #ifndef MADV_POPULATE_READ
    #define MADV_POPULATE_READ 22
    #endif
    #ifndef MAP_POPULATE
    #define MAP_POPULATE 0       /* (not Linux: the pages come in as they are touched) */
    #endif
    static volatile int pf_populate_read = 1;
    """
    int MADV_POPULATE_READ
    int pf_populate_read

cdef extern from "<sys/stat.h>" nogil:
    struct stat:
        int64_t st_size
        unsigned int st_mode
    int fstat(int fd, stat* buf)
    bint S_ISREG(unsigned int mode)

# A mapped file that shrinks under a pass (another process truncating it) makes the next access
# to a page past its new end raise SIGBUS. While a mapped pass runs, a handler turns that into a
# return from pf_guard (the worker then ends the pass with a read error, and the caller starts
# over on the general path, which reads and judges what the file holds now). Outside a guarded
# call the handler puts the previous one back and lets the access fault again.
cdef extern from *:
    """
    #include <setjmp.h>
    #include <signal.h>
    #include <string.h>
    static pthread_mutex_t pf_bus_mu = PTHREAD_MUTEX_INITIALIZER;
    static int pf_bus_users;
    static struct sigaction pf_bus_old;
    static __thread sigjmp_buf *pf_bus_jump;

    static void pf_bus_handler(int sig, siginfo_t *info, void *ctx) {
        (void)info; (void)ctx;
        if (pf_bus_jump != NULL)
            siglongjmp(*pf_bus_jump, 1);
        sigaction(sig, &pf_bus_old, NULL);
    }

    /* Install the handler (counted: passes may run in several threads at once). */
    static void pf_bus_enter(void) {
        pthread_mutex_lock(&pf_bus_mu);
        if (pf_bus_users++ == 0) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_sigaction = pf_bus_handler;
            sa.sa_flags = SA_SIGINFO;
            sigemptyset(&sa.sa_mask);
            sigaction(SIGBUS, &sa, &pf_bus_old);
        }
        pthread_mutex_unlock(&pf_bus_mu);
    }

    static void pf_bus_leave(void) {
        pthread_mutex_lock(&pf_bus_mu);
        if (--pf_bus_users == 0)
            sigaction(SIGBUS, &pf_bus_old, NULL);
        pthread_mutex_unlock(&pf_bus_mu);
    }

    /* fn(arg); 0, or -1 when it was cut short by SIGBUS. */
    static int pf_guard(void (*fn)(void *), void *arg) {
        sigjmp_buf here;
        sigjmp_buf *volatile outer = pf_bus_jump;
        if (sigsetjmp(here, 1)) {
            pf_bus_jump = outer;
            return -1;
        }
        pf_bus_jump = &here;
        fn(arg);
        pf_bus_jump = outer;
        return 0;
    }
    """
    void pf_bus_enter() nogil
    void pf_bus_leave() nogil
    int pf_guard(void (*fn)(void*) noexcept nogil, void* arg) nogil


# Status codes (pfilter.capture.fastpath reads them by name from STATUS).
cdef enum:
    ST_EOF = 0         # every record of the file (or of the range) was judged
    ST_ANOMALY = 1     # the record at stop_offset needs the general path (caplen above the limit)
    ST_TRUNCATED = 2   # the file ends inside the record at stop_offset
    ST_COUNT = 3       # max_count matches written
    ST_READ_ERROR = 4  # pread failed: errno in `error`
    ST_WRITE_ERROR = 5 # writev failed: errno in `error`
    ST_CANCELLED = 6   # cancel() was called (from another thread)
    ST_ROTATE = 7      # the output holds more than rotate_size bytes: the matching record at
                       # stop_offset starts the next file (tcpdump -C)
    ST_RING = 8        # a ring's turn did not come within its wait, or a member died in one
    ST_NONE = -1       # (a chunk that does not end the pass)

STATUS = {0: "eof", 1: "anomaly", 2: "truncated", 3: "count", 4: "read-error", 5: "write-error",
          6: "cancelled", 7: "rotate", 8: "ring-failed"}

cdef enum:
    HDR = 16
    IOV_BATCH = 1024
    MAX_WORKERS = 256
    # The walk fetches the cache line this far ahead of the record it reads (about one record
    # of the benchmark's mix): each header load depends on the one before, and one that misses
    # the L1 cache stalls the walk (with it, the walk and count of 1 GB took less CPU; 256
    # and 1024 were no better, every line ahead worse).
    WALK_PREFETCH = 512
    MAP_PREFETCH = 16384

# One chunk read into a worker's buffer: large enough that per-chunk work vanishes, small enough
# to still be in the CPU cache when its records are judged and written from that buffer (1 MB
# measured best of 256 KB to 8 MB).
CHUNK_BYTES = 1 << 20
# A chunk that need not stay in the CPU cache until a write: a counting pass's (nothing is
# written from it) and a mapped pass's (its records are written from the page cache, and its
# walk reads only the lines records start on: _walk_chains). Measured on 1 GB against 1 MB: two
# workers count faster (fewer turns handed on), one no slower; mapped -w 4-12% faster with one
# worker or two for 'ip and tcp port 80', 'udp port 53 or icmp' and 'vlan and ip', the same for
# 'tcp' (8 and 16 MB slower again) (bench/results/latest_scale.md).
WIDE_CHUNK_BYTES = 4 << 20
# The most threads one pass runs.
WORKERS_MAX = MAX_WORKERS


cdef struct Turns:
    # handed from chunk to chunk under mu
    pthread_mutex_t mu
    pthread_cond_t cv            # threads of one process wait on cv; a ring's processes on seq
    unsigned int seq             # ring: bumped and woken by _broadcast (a futex: see pf_ring_wake)
    int shared                   # ring: the members are processes (seq, not cv)
    int64_t walk_turn            # the chunk to be walked next
    int64_t next_start           # its first record boundary (a file offset)
    bint walk_over               # the walk has met the end of the pass
    int64_t write_turn           # the chunk to be counted and given an output offset next
    int finished                 # set once processing must stop
    int opened                   # ring: out_size holds the pass's first output offset
    int64_t chunks_done          # ring: chunks whose records are all judged and written
    int64_t chunks_total         # ring: the number of chunks of the pass, once it has ended
    int cancelled                # ring: cancel() of any member's PcapCopy (every member stops)
    # results (written by the worker whose write turn it is, or under mu)
    int64_t out_size             # bytes in the output file so far (header included)
    int64_t read, matched, bytes, done, stop_offset
    int status, error
    int64_t guesses_kept, guesses_missed     # (under mu) speculative walks kept, walked again


cdef struct Shared:
    # fixed for the pass
    int in_fd
    int out_fd
    bint positional              # the output takes pwritev at an offset (a regular file)
    int nworkers
    int64_t start
    int64_t end                  # >= 0: records starting at or after this offset are not ours
    Py_ssize_t chunk
    Py_ssize_t tail              # room after a chunk for the rest of a record cut by its end
    const uint8_t* prog
    bint clear_mem
    bint mapped                  # chunks are mapped (mmap), not read into the worker's buffer
    uint8_t* whole               # mapped passes: the file from `whole_at` to `whole_end` (its size
    int64_t whole_at, whole_end  # at the start), mapped once; chunks beyond map themselves
    size_t whole_len             # (the mapping's length: whole 2 MB blocks, see _map_window)
    uint32_t limit
    int64_t max_count
    uint32_t truncate            # > 0: records written cut to this many bytes (editcap -s)
    int64_t rotate_size          # >= 0: stop before a matching record once out_size exceeds it
    volatile int* cancelled
    # hold mode (one worker): the runs to write are kept as (file offset, length) pairs in
    # held[0:2 * nheld], written later by PcapCopy.write_held, instead of written now
    bint hold
    int64_t* held
    Py_ssize_t nheld, cap_held
    # draining (one worker): another hold pass's matches written a share per chunk of this one
    Shared* drain
    int drain_in, drain_out, drain_error
    int64_t drain_pos
    Py_ssize_t drain_next
    # guessing a chunk's first record boundary (see _guess); guess_depth 0: never
    int guess_depth
    bint chained                 # a mapped chunk is walked in chains (_walk_chains); else in one
    int64_t chains_kept, chains_missed   # (the workers' own, added up once they have stopped)
    int64_t gathered             # (as chains_kept) chunks whose runs were gathered (_guarded_gather)
    int64_t guess_sec0           # the first record's seconds
    int64_t guess_span
    uint32_t frac_max            # 10**6 (usec files) or 10**9 (nsec)
    # what the chunks hand on: the pass's own (threads), or a block of a ring's mapping shared
    # by the processes of a ring (see PcapCopy's ring)
    Turns* t
    Turns own
    bint ring
    int member                   # the first chunk of this process's workers (ring: its member)
    int stride                   # chunk i's next is i + stride (the workers of all processes)
    double wait                  # ring: the longest wait for a turn, in seconds


cdef struct Worker:
    Shared* sh
    int id
    void* block                  # the memory below, one block (pf_block_get)
    size_t block_size
    uint8_t* buf
    int64_t* offsets
    uint32_t* caplens
    uint32_t* wirelens
    uint32_t* verdicts
    iovec* vec
    uint8_t* map                 # the current chunk's mapping (mapped passes), or NULL
    size_t map_len
    uint8_t* lent                # the current chunk's pages in the pass's mapping (Shared.whole),
    size_t lent_len              # dropped (MADV_DONTNEED) before the next chunk, or NULL
    Py_ssize_t walk_end          # where the walk of the current chunk ended (buffer position)
    int64_t* seconds             # NULL, or where the walk also puts each record's seconds and
    int64_t* fractions           # fraction (record_index's walk: as its offsets, caplens, wirelens)
    int64_t chains_kept, chains_missed   # _walk_chains' guessed spans kept, and walked again
    int64_t gathered             # chunks whose runs went out in one piece (_guarded_gather)


# A ring (PcapCopy's ring): the processes of one pass share its turns through a block of a shared
# mapping (a file's), under a process-shared mutex that a member's death does not leave locked
# (robust: the next to lock it learns of the death) and a condition waited on with a deadline.
cdef extern from *:
    """
    #include <errno.h>
    #include <pthread.h>
    #include <time.h>
    /* a ring's turns lock: process-shared and robust (its members wait on a futex word, not on
       a condition variable: pf_ring_wait) */
    static int pf_ring_sync_init(pthread_mutex_t *m) {
        pthread_mutexattr_t ma;
        int r = pthread_mutexattr_init(&ma);
        if (r == 0) r = pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
        if (r == 0) r = pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
        if (r == 0) r = pthread_mutex_init(m, &ma);
        pthread_mutexattr_destroy(&ma);
        return r;
    }
    /* 0 locked; 1 locked, but its last owner died holding it (the state is made usable) */
    static int pf_ring_lock(pthread_mutex_t *m) {
        int r = pthread_mutex_lock(m);
        if (r == EOWNERDEAD) {
            pthread_mutex_consistent(m);
            return 1;
        }
        return 0;
    }
    /* A ring's members wait on a futex word (seq), not on the process-shared condition
       variable: glibc's pthread_cond_broadcast waits for the waiters of a group to leave it,
       and a member killed while waiting (SIGKILL, the OOM killer) never leaves, so every
       broadcast after it (the parent's cancel included) would wait forever. A futex wait
       holds nothing: a dead waiter is simply gone. */
    #include <linux/futex.h>
    #include <limits.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    static void pf_ring_wake(unsigned int *seq) {
        __atomic_add_fetch(seq, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    }
    /* (m held) 0 woken (or spuriously: the caller looks again); 1 `seconds` passed or an
       owner of m died. A wake between the load of seq and the wait changes seq: the wait then
       returns at once, so none is lost. */
    static int pf_ring_wait(unsigned int *seq, pthread_mutex_t *m, double seconds) {
        unsigned int seen = __atomic_load_n(seq, __ATOMIC_SEQ_CST);
        struct timespec rel;
        rel.tv_sec = (time_t)seconds;
        rel.tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9);
        pthread_mutex_unlock(m);
        long r = syscall(SYS_futex, seq, FUTEX_WAIT, seen, &rel, NULL, 0);
        int timed_out = r == -1 && errno == ETIMEDOUT;
        if (pf_ring_lock(m))
            return 1;
        return timed_out;
    }
    """
    int pf_ring_sync_init(pthread_mutex_t* m) nogil
    int pf_ring_lock(pthread_mutex_t* m) nogil
    void pf_ring_wake(unsigned int* seq) nogil
    int pf_ring_wait(unsigned int* seq, pthread_mutex_t* m, double seconds) nogil


cdef inline void _broadcast(Turns* t) noexcept nogil:
    """Wake every worker waiting on the turns (threads: cv; a ring's processes: seq)."""
    if t.shared:
        pf_ring_wake(&t.seq)
    else:
        pthread_cond_broadcast(&t.cv)


cdef void _ring_failed(Shared* sh) noexcept nogil:
    """(mu held) A ring member is gone or late: every member stops."""
    if not sh.t.finished or not _is_error(sh.t.status):
        sh.t.status, sh.t.error, sh.t.stop_offset = ST_RING, 0, sh.t.done
    sh.t.finished = 1
    _broadcast(sh.t)


cdef void _cancel_turns(Turns* t) noexcept nogil:
    """Stop a ring pass from any of its members or from outside (PcapCopy.cancel, ring_cancel):
    cancelled, finished unless it was, every member waiting for a turn woken."""
    pf_ring_lock(&t.mu)
    t.cancelled = 1
    if not t.finished:
        t.status, t.error, t.stop_offset, t.finished = ST_CANCELLED, 0, t.done, 1
    _broadcast(t)
    pthread_mutex_unlock(&t.mu)


cdef inline void _lock(Shared* sh) noexcept nogil:
    if not sh.ring:
        pthread_mutex_lock(&sh.t.mu)
    elif pf_ring_lock(&sh.t.mu):
        _ring_failed(sh)


cdef inline void _wait(Shared* sh) noexcept nogil:
    if not sh.ring:
        pthread_cond_wait(&sh.t.cv, &sh.t.mu)
    elif pf_ring_wait(&sh.t.seq, &sh.t.mu, sh.wait):
        _ring_failed(sh)


cdef bint _is_error(int status) noexcept nogil:
    return status == ST_READ_ERROR or status == ST_WRITE_ERROR


cdef void _finish(Shared* sh, int status, int error, int64_t offset) noexcept nogil:
    """Stop the pass. The first ending stands, except that an I/O error (from a write still
    running for an earlier chunk) replaces an ending that is not one."""
    _lock(sh)
    if not sh.t.finished or (_is_error(status) and not _is_error(sh.t.status)):
        sh.t.status, sh.t.error, sh.t.stop_offset = status, error, offset
    sh.t.finished = 1
    _broadcast(sh.t)
    pthread_mutex_unlock(&sh.t.mu)


cdef Py_ssize_t _fill(Shared* sh, uint8_t* buf, Py_ssize_t have, Py_ssize_t want, int64_t offset,
                      int* err) noexcept nogil:
    """pread bytes [have, want) of the buffer (the buffer starts at file offset `offset`);
    the number of bytes in the buffer afterwards (less than want at the end of the file)."""
    if sh.mapped:
        return have              # the mapping holds every byte the file has there
    return have + _pread_full(sh.in_fd, buf + have, want - have, offset + have, err)


cdef Py_ssize_t _pread_full(int fd, uint8_t* buf, Py_ssize_t n, int64_t offset, int* err) noexcept nogil:
    """pread n bytes of fd at offset into buf, as many calls as it takes; the bytes read (fewer
    at the end of the file, or on an error: its errno in err[0])."""
    cdef Py_ssize_t got = 0, r
    while got < n:
        r = pread(fd, buf + got, <size_t>(n - got), offset + got)
        if r < 0:
            if errno == EINTR:
                continue
            err[0] = errno
            break
        if r == 0:
            break
        got += r
    return got


cdef int pwrite_all(int fd, iovec* vec, int cnt, int64_t offset) noexcept nogil:
    """pwritev every byte of vec[0:cnt] (cnt <= IOV_MAX) at offset; 0 or the errno."""
    cdef int j = 0
    cdef ssize_t got
    while j < cnt:
        got = pwritev(fd, &vec[j], cnt - j, offset)
        if got < 0:
            if errno == EINTR:
                continue
            return errno
        if got == 0:
            return 28          # ENOSPC: a write that makes no progress
        offset += got
        while j < cnt and got >= <ssize_t>vec[j].iov_len:
            got -= vec[j].iov_len
            j += 1
        if j < cnt and got > 0:
            vec[j].iov_base = <void*>(<uint8_t*>vec[j].iov_base + got)
            vec[j].iov_len -= got
    return 0


cdef int _write(Shared* sh, iovec* vec, int nvec, int64_t pos) noexcept nogil:
    """Write the runs vec[0:nvec] at output offset pos (or at the file position), in batches."""
    cdef int j = 0, k, err = 0
    cdef int64_t size
    cdef int m
    while j < nvec and not err:
        k = nvec - j if nvec - j < IOV_BATCH else IOV_BATCH
        if sh.positional:
            size = 0
            for m in range(j, j + k):
                size += vec[m].iov_len
            err = pwrite_all(sh.out_fd, &vec[j], k, pos)
            pos += size
        else:
            err = write_all(sh.out_fd, &vec[j], k)
        j += k
    return err


cdef enum:
    # write_held maps the input this many bytes at a time (or reads them, where it cannot be
    # mapped), or one held run (no longer than this)
    HELD_WINDOW = 4 << 20

HELD_WINDOW_BYTES = HELD_WINDOW


cdef int _hold(Shared* sh, iovec* vec, int nvec, const uint8_t* buf, int64_t offset) noexcept nogil:
    """Keep the runs vec[0:nvec] of the chunk at file offset `offset` (its bytes at buf) as
    (file offset, length) pairs; a run that continues the one before (across chunks) extends it,
    up to HELD_WINDOW bytes (what write_held maps at a time). 0 or ENOMEM."""
    cdef int j
    cdef int64_t at
    cdef Py_ssize_t cap
    cdef int64_t* grown
    for j in range(nvec):
        at = offset + (<const uint8_t*>vec[j].iov_base - buf)
        if (sh.nheld and sh.held[2 * sh.nheld - 2] + sh.held[2 * sh.nheld - 1] == at
                and sh.held[2 * sh.nheld - 1] + <int64_t>vec[j].iov_len <= HELD_WINDOW):
            sh.held[2 * sh.nheld - 1] += vec[j].iov_len
            continue
        if sh.nheld == sh.cap_held:
            cap = sh.cap_held * 2 if sh.cap_held else 4096
            grown = <int64_t*>realloc(sh.held, <size_t>cap * 2 * sizeof(int64_t))
            if grown == NULL:
                return 12          # ENOMEM
            sh.held, sh.cap_held = grown, cap
        sh.held[2 * sh.nheld] = at
        sh.held[2 * sh.nheld + 1] = vec[j].iov_len
        sh.nheld += 1
    return 0


cdef int _write_held(Shared* sh, int in_fd, int out_fd, int64_t* pos, Py_ssize_t* next_run,
                     int64_t budget) noexcept nogil:
    """Write held runs from sh.held's run next_run[0] on into out_fd at pos[0] (both then moved
    past what was written) until at least `budget` bytes are written or none is left: one
    window of the input at a time (at most HELD_WINDOW bytes, or one run), mapped (or read
    into a buffer), its runs by pwritev. 0 or an errno."""
    cdef Py_ssize_t i = next_run[0], j, k, nv, q
    cdef int64_t base, stop, size, written = 0
    cdef uint8_t* m
    cdef uint8_t* buf = NULL
    cdef size_t buf_size = 0
    cdef bint mapped
    cdef int err = 0
    cdef iovec vec[IOV_BATCH]
    cdef int64_t* held = sh.held
    while i < sh.nheld and not err and written < budget:
        base = held[2 * i] & ~(<int64_t>4095)
        size = held[2 * i + 1]
        j = i + 1
        while (j < sh.nheld and held[2 * j] + held[2 * j + 1] - base <= HELD_WINDOW
               and size < budget - written):
            size += held[2 * j + 1]
            j += 1
        stop = held[2 * j - 2] + held[2 * j - 1]
        m = <uint8_t*>mmap(NULL, <size_t>(stop - base), PROT_READ, MAP_PRIVATE, in_fd, base)
        mapped = m != <uint8_t*>MAP_FAILED
        if mapped and pf_populate_read:
            madvise(m, <size_t>(stop - base), MADV_POPULATE_READ)
        if not mapped:
            if buf_size < <size_t>(stop - base):
                free(buf)
                buf_size = <size_t>(stop - base if stop - base > HELD_WINDOW else HELD_WINDOW)
                buf = <uint8_t*>malloc(buf_size)
                if buf == NULL:
                    return 12      # ENOMEM
            if _pread_full(in_fd, buf, stop - base, base, &err) < stop - base and not err:
                err = EIO          # the input shrank since the pass
            m = buf
        k = i
        while k < j and not err:
            nv = j - k if j - k < IOV_BATCH else IOV_BATCH
            size = 0
            for q in range(nv):
                vec[q].iov_base = <void*>(m + (held[2 * (k + q)] - base))
                vec[q].iov_len = <size_t>held[2 * (k + q) + 1]
                size += held[2 * (k + q) + 1]
            err = pwrite_all(out_fd, vec, <int>nv, pos[0])
            if err == EFAULT and mapped:
                err = EIO          # the input shrank: its pages went
            pos[0] += size
            written += size
            k += nv
        if mapped:
            munmap(m, <size_t>(stop - base))
        i = j
    free(buf)
    next_run[0] = i
    return err


cdef void _drain(Shared* sh, int64_t budget) noexcept nogil:
    """Write about `budget` bytes more of another hold pass's matches (see PcapCopy.drain); a
    failure ends this pass with a write error."""
    cdef int err
    if sh.drain == NULL or sh.drain_error:
        return
    err = _write_held(sh.drain, sh.drain_in, sh.drain_out, &sh.drain_pos, &sh.drain_next, budget)
    if err:
        sh.drain_error = err
        _finish(sh, ST_WRITE_ERROR, err, sh.t.done)


cdef Py_ssize_t _walk(Shared* sh, Worker* w, uint8_t* buf, Py_ssize_t p, Py_ssize_t got, Py_ssize_t have,
                      int64_t offset, int* stop, int* err, Py_ssize_t n0=0) noexcept nogil:
    """Walk the record headers from buffer position p (a record boundary) to the end of the
    chunk's `got` bytes, filling w's record arrays from entry n0; a record cut by the end of the
    chunk is finished by _fill. The number of records (n0 included); where the walk ended in
    w.walk_end, why it ended early in stop (ANOMALY, TRUNCATED, READ_ERROR). The fields are kept
    in locals: stores to the arrays would otherwise make the compiler load them again for every
    record."""
    cdef Py_ssize_t n = n0, ahead = p
    cdef uint32_t cap, v
    cdef uint32_t limit = sh.limit
    cdef int64_t* offsets = w.offsets
    cdef uint32_t* caplens = w.caplens
    cdef uint32_t* wirelens = w.wirelens
    cdef int64_t* seconds = w.seconds
    cdef int64_t* fractions = w.fractions
    while p < got:
        if have - p < HDR:
            have = _fill(sh, buf, have, p + HDR, offset, err)
            if have - p < HDR:
                stop[0] = ST_READ_ERROR if err[0] else ST_TRUNCATED
                break
        if sh.mapped:
            while ahead < p + MAP_PREFETCH:
                __builtin_prefetch(buf + ahead)
                ahead += 64
        else:
            __builtin_prefetch(buf + p + WALK_PREFETCH)
        memcpy(&cap, buf + p + 8, 4)
        if cap > limit:
            stop[0] = ST_ANOMALY
            break
        if have - p - HDR < <Py_ssize_t>cap:
            have = _fill(sh, buf, have, p + HDR + cap, offset, err)
            if have - p - HDR < <Py_ssize_t>cap:
                stop[0] = ST_READ_ERROR if err[0] else ST_TRUNCATED
                break
        offsets[n] = p + HDR
        caplens[n] = cap
        memcpy(&wirelens[n], buf + p + 12, 4)
        if seconds != NULL:
            memcpy(&v, buf + p, 4)
            seconds[n] = v
            memcpy(&v, buf + p + 4, 4)
            fractions[n] = v
        n += 1
        p += HDR + cap
    w.walk_end = p
    return n


cdef Py_ssize_t _guess(Shared* sh, const uint8_t* buf, Py_ssize_t got, Py_ssize_t have,
                      int64_t file_end, int64_t offset, Py_ssize_t first=0, int depth=0,
                      Py_ssize_t scan=0) noexcept nogil:
    """A guess at the chunk's first record boundary (a buffer position), from its bytes alone,
    by pfilter.capture.index.resync's rule: the first position from which guess_depth record
    headers in a row look sane (captured length within the limit and the wire length, fraction
    below a second, the first time within guess_span of the file's first record's, each next
    within a day), or whose chain ends exactly at the end of the file (file_end >= 0: the
    file offset where it ends, when within the buffer). -1 when none is found in the buffer.
    Only a guess: the walk turn checks it against where the walk of the chunk before ended.
    first, depth, scan: the search starts at buffer position `first` (no earlier), with `depth`
    headers in a row in place of guess_depth (0: guess_depth), over `scan` positions in place of
    a record's largest length (0)."""
    cdef Py_ssize_t start, p, last = first + HDR + <Py_ssize_t>sh.limit + 1
    cdef uint32_t sec, frac, cap, wire
    cdef int64_t ref, span, d
    cdef int seen
    if depth <= 0:
        depth = sh.guess_depth
    if scan > 0:
        last = first + scan
    if last > got:
        last = got
    for start in range(first, last):
        p, seen, ref, span = start, 0, sh.guess_sec0, sh.guess_span
        while seen < depth and p + HDR <= have:
            memcpy(&sec, buf + p, 4)
            memcpy(&frac, buf + p + 4, 4)
            memcpy(&cap, buf + p + 8, 4)
            memcpy(&wire, buf + p + 12, 4)
            d = <int64_t>sec - ref
            if cap > sh.limit or cap > wire or frac >= sh.frac_max or d > span or -d > span:
                break
            ref, span = sec, 86400
            p += HDR + cap
            seen += 1
        if seen >= depth or (seen and file_end >= 0 and offset + p == file_end):
            return start
    return -1


cdef enum:
    # A mapped chunk is walked as CHAINS_MAX chains at most, each over CHAIN_MIN_BYTES at least,
    # its start guessed from CHAIN_DEPTH headers in a row (see _walk_chains)
    CHAINS_MAX = 8
    CHAIN_MIN_BYTES = 1 << 16
    CHAIN_DEPTH = 8
    CHAIN_SCAN = 8192            # (bytes: a span whose start is not found within them is left out)


cdef Py_ssize_t _walk_chains(Shared* sh, Worker* w, uint8_t* buf, Py_ssize_t p, Py_ssize_t got,
                             Py_ssize_t have, int64_t offset, int* stop, int* err) noexcept nogil:
    """_walk of a mapped chunk, its records the same, in the same order, found faster: the
    chunk's bytes from p on are cut into up to CHAINS_MAX spans, each span's first record
    boundary guessed (_guess, CHAIN_DEPTH headers in a row), and the spans' headers walked in
    turn, one record of each span after the other. A walk reads a header, and only then knows
    where the next one is: one chain waits for memory at every record, several keep as many
    loads in flight. Each header's line (and the next line, the packet's first bytes) is
    prefetched as soon as its position is known, so no line the records do not start on is read,
    where _walk streams every line of the chunk through the cache (the memory two workers share;
    bench/results/latest_scale.md).
    Each span's records go to a stretch of the arrays of their own. A span that ends exactly on
    the next span's guessed start proves that guess a boundary; the spans proven so, from the
    first (whose start p is known), are kept (their entries moved together), and _walk goes on
    from where the last of them stopped: past a wrong guess, at a record the spans leave to it
    (one reaching past what is mapped, a caplen above the limit), and over the chunk's end."""
    cdef Py_ssize_t starts[CHAINS_MAX + 1]
    cdef Py_ssize_t at[CHAINS_MAX]
    cdef Py_ssize_t seg[CHAINS_MAX]
    cdef Py_ssize_t cnt[CHAINS_MAX]
    cdef bint running[CHAINS_MAX]
    cdef Py_ssize_t step, g, x, idx, n
    cdef int j, k, nk, live
    cdef uint32_t cap, v
    cdef uint32_t limit = sh.limit
    cdef int64_t* offsets = w.offsets
    cdef uint32_t* caplens = w.caplens
    cdef uint32_t* wirelens = w.wirelens
    cdef int64_t* seconds = w.seconds
    cdef int64_t* fractions = w.fractions
    nk = <int>((got - p) // CHAIN_MIN_BYTES)
    if nk > CHAINS_MAX:
        nk = CHAINS_MAX
    if not sh.chained or nk < 2:
        return _walk(sh, w, buf, p, got, have, offset, stop, err)
    step = (got - p) // nk
    starts[0] = p
    k = 1
    for j in range(1, nk):
        g = _guess(sh, buf, got, have, -1, offset, p + j * step, CHAIN_DEPTH, CHAIN_SCAN)
        if g > starts[k - 1] and g < got:
            starts[k] = g
            k += 1
    nk = k
    if nk < 2:
        return _walk(sh, w, buf, p, got, have, offset, stop, err)
    starts[nk] = got
    seg[0] = 0
    for k in range(nk):
        if k > 0:
            seg[k] = seg[k - 1] + (starts[k] - starts[k - 1] + HDR - 1) // HDR
        at[k], cnt[k], running[k] = starts[k], 0, True
    live = nk
    while live:
        live = 0
        for k in range(nk):
            if not running[k]:
                continue
            x = at[k]
            if x >= starts[k + 1] or have - x < HDR:
                running[k] = False
                continue
            memcpy(&cap, buf + x + 8, 4)
            if cap > limit or have - x - HDR < <Py_ssize_t>cap:
                running[k] = False
                continue
            idx = seg[k] + cnt[k]
            offsets[idx] = x + HDR
            caplens[idx] = cap
            memcpy(&wirelens[idx], buf + x + 12, 4)
            if seconds != NULL:
                memcpy(&v, buf + x, 4)
                seconds[idx] = v
                memcpy(&v, buf + x + 4, 4)
                fractions[idx] = v
            cnt[k] += 1
            x += HDR + cap
            at[k] = x
            __builtin_prefetch(buf + x)
            __builtin_prefetch(buf + x + 64)
            live = 1
    n = cnt[0]
    k = 0
    while k + 1 < nk and at[k] == starts[k + 1]:
        k += 1
        if seg[k] != n and cnt[k]:
            memmove(&offsets[n], &offsets[seg[k]], cnt[k] * sizeof(int64_t))
            memmove(&caplens[n], &caplens[seg[k]], cnt[k] * sizeof(uint32_t))
            memmove(&wirelens[n], &wirelens[seg[k]], cnt[k] * sizeof(uint32_t))
            if seconds != NULL:
                memmove(&seconds[n], &seconds[seg[k]], cnt[k] * sizeof(int64_t))
                memmove(&fractions[n], &fractions[seg[k]], cnt[k] * sizeof(int64_t))
        n += cnt[k]
    w.chains_kept += k
    w.chains_missed += nk - 1 - k
    return _walk(sh, w, buf, at[k], got, have, offset, stop, err, n)


cdef int _select(Shared* sh, Worker* w, uint8_t* buf, Py_ssize_t n, int64_t offset, int64_t want_count,
                 int64_t first_out, int64_t* read, int64_t* matched, int64_t* nbytes, int64_t* size,
                 int* nvec, int64_t* rec_off) noexcept nogil:
    """Count the chunk's matches (want_count >= 0: up to that many, -c) and lay out the runs of
    matching records to write in w.vec (none when nothing is written); with rotate_size, stop
    before a match once the output (first_out bytes before this chunk) would exceed it (-C).
    The ending (COUNT, ROTATE or NONE); rec_off: where the pass stopped."""
    cdef Py_ssize_t k
    cdef int64_t r = 0, m = 0, nb = 0, sz = 0
    cdef int nv = 0, ending = ST_NONE
    cdef uint32_t out_cap, sel
    cdef const uint32_t* verdicts = w.verdicts
    cdef const uint32_t* caplens = w.caplens
    cdef const int64_t* offsets = w.offsets
    cdef iovec* vec = w.vec
    cdef uint8_t* rec
    if sh.out_fd < 0 and not sh.hold and want_count < 0 and sh.rotate_size < 0:
        # counting only: no runs to lay out, and no branch on the verdict (mispredicted about
        # as often as the matches are a coin toss: `tcp` counted faster without it)
        for k in range(n):
            sel = verdicts[k] != 0
            m += sel
            nb += caplens[k] & (<uint32_t>0 - sel)
        read[0], matched[0], nbytes[0], size[0] = n, m, nb, nb + HDR * m
        return ST_NONE
    for k in range(n):
        if verdicts[k] == 0:
            r += 1
            continue
        if sh.rotate_size >= 0 and first_out + sz > sh.rotate_size:
            ending = ST_ROTATE
            rec_off[0] = offset + offsets[k] - HDR
            break
        r += 1
        m += 1
        out_cap = caplens[k]
        rec = buf + offsets[k] - HDR
        if sh.truncate and out_cap > sh.truncate:
            # cut as editcap -s: the header in the buffer says the new length (the record is
            # not read again), the wire length stays
            out_cap = sh.truncate
            memcpy(rec + 8, &out_cap, 4)
        nb += out_cap
        sz += HDR + out_cap
        if sh.out_fd >= 0 or sh.hold:
            if nv and <uint8_t*>vec[nv - 1].iov_base + vec[nv - 1].iov_len == rec:
                vec[nv - 1].iov_len += HDR + out_cap
            else:
                vec[nv].iov_base = <void*>rec
                vec[nv].iov_len = HDR + out_cap
                nv += 1
        if want_count >= 0 and m >= want_count:
            ending = ST_COUNT
            rec_off[0] = offset + offsets[k] + caplens[k]
            break
    read[0], matched[0], nbytes[0], size[0], nvec[0] = r, m, nb, sz, nv
    return ending


cdef struct Guarded:
    # the arguments of a walk or a program run over a mapped chunk (through pf_guard)
    Shared* sh
    Worker* w
    uint8_t* buf
    Py_ssize_t p, got, have, n
    int64_t offset
    int64_t file_end
    int* stop
    int* err


cdef void _guarded_guess_walk(void* arg) noexcept nogil:
    # g.p -1 on return: no guess
    cdef Guarded* g = <Guarded*>arg
    g.p = _guess(g.sh, g.buf, g.got, g.have, g.file_end, g.offset)
    if g.p >= 0:
        g.n = _walk_chains(g.sh, g.w, g.buf, g.p, g.got, g.have, g.offset, g.stop, g.err)


cdef void _guarded_walk(void* arg) noexcept nogil:
    cdef Guarded* g = <Guarded*>arg
    g.n = _walk_chains(g.sh, g.w, g.buf, g.p, g.got, g.have, g.offset, g.stop, g.err)


# A mapped pass of several workers gathers a chunk's runs into its worker's buffer (unused by a
# mapped pass otherwise) and writes them in one piece when there are at least GATHER_RUNS of them
# and they hold less than 1 / GATHER_SHARE of the chunk's bytes. Every write holds the output
# file's lock, and copying many small runs from the page cache inside it held it long enough that
# the other worker spun on it (perf of `-j 2 -w 'udp port 53 or icmp'` on 1 GB: 30 ms of
# rwsem_spin_on_owner, 181,000 runs); gathered, the copy from the mapping is each worker's own,
# outside the lock. Interleaved A/B on 1 GB, -j 2, medians of 6: `udp port 53 or icmp` 175.5 ->
# 165.5 ms (CPU 310 -> 275 ms), `ip and tcp port 80` and `tcp` unchanged (156 / 157, 280 / 296:
# noise); gathering every chunk whose runs average under 4 KB made `tcp` (68% of the input
# written) 355 -> 606 ms: a second copy of most of the file.
cdef enum:
    GATHER_RUNS = 512
    GATHER_SHARE = 8


cdef void _guarded_gather(void* arg) noexcept nogil:
    # the runs w.vec[0:n] copied one after the other into w.buf, then w.vec[0] says where
    cdef Guarded* g = <Guarded*>arg
    cdef Py_ssize_t k, at = 0
    for k in range(g.n):
        memcpy(g.w.buf + at, g.w.vec[k].iov_base, g.w.vec[k].iov_len)
        at += g.w.vec[k].iov_len
    g.w.vec[0].iov_base = <void*>g.w.buf
    g.w.vec[0].iov_len = at


cdef void _guarded_run(void* arg) noexcept nogil:
    cdef Guarded* g = <Guarded*>arg
    run_packets(g.sh.prog, g.sh.clear_mem, g.buf, g.w.offsets, g.w.caplens, g.w.wirelens, g.n, g.w.verdicts)


# Every mapping of the input is a window of whole 2 MB blocks of the file at an address that is a
# multiple of 2 MB: a ring member's chunk (PcapCopy.run: not the pass's `whole` mapping), and the
# pass's `whole` mapping. The page cache holds a file read from disk in folios of up to 2 MB (ext4
# since Linux 6.16), and such a folio maps as one page-table entry only where file offset and
# address are both aligned so; otherwise its pages map 4 KB at a time, with the kernel work and
# the TLB misses that brings. Measured on 1 GB, interleaved A/B: 2 forked workers (the ring's
# windows), CPU 0.317 -> 0.281 s for `-w 'ip and tcp port 80'`, 0.497 -> 0.468 s for `-w tcp`;
# one worker (the whole mapping), `--count tcp` 0.182 -> 0.171 s (median of 12), `-w` unchanged.
cdef enum:
    PMD_BYTES = 2 << 20


cdef void* _map_window(size_t length, int flags, int fd, int64_t at) noexcept nogil:
    """mmap() of length bytes of fd from `at` (both multiples of PMD_BYTES), read-only, at an
    address that is a multiple of PMD_BYTES: a reservation PMD_BYTES longer, the file mapped over
    its first aligned address, the rest of the reservation given back. MAP_FAILED on failure."""
    cdef uint8_t* r = <uint8_t*>mmap(NULL, length + PMD_BYTES, PROT_NONE,
                                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    cdef uint8_t* a
    cdef void* m
    if <void*>r == MAP_FAILED:
        return MAP_FAILED
    a = <uint8_t*>((<size_t>r + PMD_BYTES - 1) & ~(<size_t>PMD_BYTES - 1))
    m = mmap(a, length, PROT_READ, flags | MAP_FIXED, fd, at)
    if m == MAP_FAILED:
        munmap(r, length + PMD_BYTES)
        return MAP_FAILED
    if a > r:
        munmap(r, <size_t>(a - r))
    if r + length + PMD_BYTES > a + length:
        munmap(a + length, <size_t>((r + length + PMD_BYTES) - (a + length)))
    return m


cdef bint _chunk(Worker* w, int64_t i) noexcept nogil:
    """Read, walk, judge and write chunk i; False once the pass is over for this worker."""
    global pf_populate_read
    cdef Shared* sh = w.sh
    cdef uint8_t* buf = w.buf
    cdef int64_t offset = sh.start + i * sh.chunk, s, pos, rec_off = 0
    cdef Py_ssize_t want = sh.chunk, got, p, n = 0
    cdef int err = 0, stop = ST_NONE, ending = ST_NONE, nvec = 0
    cdef int64_t stop_at = 0, read = 0, matched = 0, nbytes = 0, size = 0
    cdef bint eof, ordered
    cdef Py_ssize_t have
    cdef int flags
    cdef Guarded g
    cdef stat st
    cdef int64_t aligned
    cdef void* m
    cdef Guarded sg
    cdef Py_ssize_t spec = -1, spec_n = 0, spec_end = 0
    cdef int spec_stop = ST_NONE, spec_err = 0
    cdef int64_t file_end = -1
    cdef int64_t win_at
    cdef size_t win_len
    if sh.end >= 0 and sh.end - offset < want:
        want = sh.end - offset if sh.end > offset else 0
    if sh.mapped:
        if w.map != NULL:
            munmap(w.map, w.map_len)
            w.map = NULL
        if w.lent != NULL:
            madvise(w.lent, w.lent_len, MADV_DONTNEED)
            w.lent = NULL
        got = have = 0
        if want > 0 and fstat(sh.in_fd, &st) != 0:
            err = errno
        elif want > 0 and st.st_size > offset:
            have = sh.chunk + sh.tail
            if have > st.st_size - offset:
                have = st.st_size - offset
            got = want if want < have else have
            aligned = offset & ~(<int64_t>4095)
        if want > 0 and not err and have and sh.whole != NULL and offset + have <= sh.whole_end:
            # within the pass's mapping: no mmap and munmap of our own (each takes the process's
            # mapping lock exclusively, which the other workers' page population then waits for)
            w.lent = sh.whole + (aligned - sh.whole_at)
            w.lent_len = <size_t>(offset - aligned + got)
            if pf_populate_read and madvise(w.lent, w.lent_len, MADV_POPULATE_READ) != 0 and errno == EINVAL:
                pf_populate_read = 0       # (the pages come in as they are touched)
            buf = sh.whole + (offset - sh.whole_at)
        elif want > 0 and not err and have:
            flags = MAP_PRIVATE if pf_populate_read else MAP_PRIVATE | MAP_POPULATE
            # (the window's bytes past the file's end are never read: the walk stops at `have`)
            win_at = offset & ~(<int64_t>PMD_BYTES - 1)
            win_len = <size_t>((offset - win_at + have + PMD_BYTES - 1) & ~(<int64_t>PMD_BYTES - 1))
            m = _map_window(win_len, flags, sh.in_fd, win_at)
            if (m != MAP_FAILED and pf_populate_read and madvise(<uint8_t*>m + (aligned - win_at),
                                                                  <size_t>(offset - aligned + got),
                                                                  MADV_POPULATE_READ) != 0 and errno == EINVAL):
                pf_populate_read = 0       # (other failures: the pages come in as they are touched)
            if m == MAP_FAILED:
                err = errno
                got = have = 0
            else:
                w.map, w.map_len = <uint8_t*>m, win_len
                buf = w.map + (offset - win_at)
    else:
        got = _fill(sh, buf, 0, want, offset, &err) if want > 0 else 0
        have = got
    eof = got < sh.chunk      # the file (or the range) ends in this chunk
    # ---- a speculative walk: from a guess at the chunk's first record boundary, in parallel
    # with the walks of the chunks before; the walk turn keeps it when the guess was right
    # (else the chunk is walked again from the boundary handed over, as without a guess)
    if sh.guess_depth and i > 0 and not err and got > 0:
        if sh.mapped:
            file_end = st.st_size if offset + have == st.st_size else -1
        else:
            file_end = offset + got if got < want else -1
        sg.sh, sg.w, sg.buf, sg.got, sg.have, sg.offset, sg.file_end = sh, w, buf, got, have, offset, file_end
        sg.stop, sg.err, sg.n = &spec_stop, &spec_err, 0
        if not sh.mapped:
            _guarded_guess_walk(&sg)
        elif pf_guard(_guarded_guess_walk, &sg) != 0:
            sg.p = -1              # (the walk below meets the same fault and says so)
        if sg.p >= 0:
            spec, spec_n, spec_end = sg.p, sg.n, w.walk_end
    # ---- walk turn: the records that start in this chunk
    _lock(sh)
    while sh.t.walk_turn != i and not sh.t.finished and not sh.t.walk_over:
        _wait(sh)
    if sh.t.finished or sh.t.walk_turn != i:
        pthread_mutex_unlock(&sh.t.mu)
        return False
    s = sh.t.next_start
    if spec >= 0:
        if s - offset == spec:
            sh.t.guesses_kept += 1
        else:
            sh.t.guesses_missed += 1
    pthread_mutex_unlock(&sh.t.mu)
    if err:
        _finish(sh, ST_READ_ERROR, err, s)
        return False
    if sh.cancelled[0]:
        _finish(sh, ST_CANCELLED, 0, s)
        return False
    p = s - offset
    g.sh, g.w, g.buf, g.p, g.got, g.have, g.offset, g.stop, g.err = sh, w, buf, p, got, have, offset, &stop, &err
    if spec >= 0 and p == spec:
        n, stop, err = spec_n, spec_stop, spec_err
        w.walk_end = spec_end
    elif not sh.mapped:
        n = _walk(sh, w, buf, p, got, have, offset, &stop, &err)
    elif pf_guard(_guarded_walk, &g) == 0:
        n = g.n
    else:                          # the file shrank under the walk: the general path takes over
        _finish(sh, ST_READ_ERROR, EIO, s)
        return False
    p = w.walk_end
    if p < 0:        # (never: a boundary before the chunk)
        p = 0
    stop_at = offset + p
    if stop == ST_NONE and eof:
        stop = ST_EOF
    _lock(sh)
    sh.t.done = stop_at
    if stop != ST_NONE:
        sh.t.walk_over = True
    else:
        sh.t.walk_turn = i + 1
        sh.t.next_start = stop_at
    _broadcast(sh.t)
    pthread_mutex_unlock(&sh.t.mu)
    # ---- judged in parallel with the other workers
    if n and not sh.mapped:
        run_packets(sh.prog, sh.clear_mem, buf, w.offsets, w.caplens, w.wirelens, n, w.verdicts)
    elif n:
        g.n = n
        if pf_guard(_guarded_run, &g) != 0:
            _finish(sh, ST_READ_ERROR, EIO, s)
            return False
    # ---- the selection: without -c and -C it depends on nothing shared, so it is made before
    # the write turn, in parallel with the other workers; with them, inside the turn
    ordered = sh.max_count >= 0 or sh.rotate_size >= 0
    if not ordered:
        ending = _select(sh, w, buf, n, offset, -1, 0, &read, &matched, &nbytes, &size, &nvec, &rec_off)
        if (nvec >= GATHER_RUNS and sh.mapped and sh.stride > 1 and sh.positional and sh.out_fd >= 0
                and not sh.hold and sh.drain == NULL and size * GATHER_SHARE < got):
            g.n = nvec
            if pf_guard(_guarded_gather, &g) != 0:
                _finish(sh, ST_READ_ERROR, EIO, s)
                return False
            nvec = 1
            w.gathered += 1
    # ---- write turn: take the output offset (with -c / -C: count and decide first)
    _lock(sh)
    while sh.t.write_turn != i and not sh.t.finished:
        _wait(sh)
    if sh.t.finished:
        pthread_mutex_unlock(&sh.t.mu)
        return False
    pthread_mutex_unlock(&sh.t.mu)
    if ordered:
        ending = _select(sh, w, buf, n, offset, sh.max_count - sh.t.matched if sh.max_count >= 0 else -1,
                         sh.t.out_size, &read, &matched, &nbytes, &size, &nvec, &rec_off)
    if ending == ST_NONE and stop != ST_NONE:
        ending, rec_off = stop, stop_at
    pos = sh.t.out_size
    _lock(sh)
    sh.t.read += read
    sh.t.matched += matched
    sh.t.bytes += nbytes
    sh.t.out_size += size
    if ending == ST_ROTATE or ending == ST_COUNT:
        sh.t.done = rec_off
    if sh.positional and ending == ST_NONE:
        sh.t.write_turn = i + 1        # the next chunk may take its offset while this one writes
        _broadcast(sh.t)
    pthread_mutex_unlock(&sh.t.mu)
    if sh.hold and nvec:
        err = _hold(sh, w.vec, nvec, buf, offset)
        if err:
            _finish(sh, ST_WRITE_ERROR, err, offset)
            return False
    if sh.drain != NULL:
        _drain(sh, sh.chunk)
    elif sh.out_fd >= 0 and nvec:
        err = _write(sh, w.vec, nvec, pos)
        if err == EFAULT and sh.mapped:    # the records' pages went: the input shrank
            _finish(sh, ST_READ_ERROR, EIO, offset)
            return False
        if err:
            _finish(sh, ST_WRITE_ERROR, err, offset)
            return False
    if sh.ring:
        _lock(sh)
        sh.t.chunks_done += 1
        if ending != ST_NONE:
            sh.t.chunks_total = i + 1
        pthread_mutex_unlock(&sh.t.mu)
    if ending != ST_NONE:
        _finish(sh, ending, 0, rec_off)
        return False
    if not sh.positional:
        _lock(sh)
        sh.t.write_turn = i + 1
        _broadcast(sh.t)
        pthread_mutex_unlock(&sh.t.mu)
    return True


cdef void* _work(void* arg) noexcept nogil:
    """A worker: chunks id, id + workers, ... until the pass is over."""
    cdef Worker* w = <Worker*>arg
    cdef int64_t i = w.id
    while _chunk(w, i):
        i += w.sh.stride
    return NULL


cdef class PcapCopy:
    """One pass over a classic, host-byte-order pcap file from `start` (the first record) to its
    end (or to `end`: records starting at or after it are left out): records whose program
    verdict is non-zero are written to out_fd (-1: only count), cut to `truncate` bytes when that
    is > 0 (editcap -s). rotate_size >= 0: the pass stops (status "rotate", stop_offset the
    record's file offset) before a matching record once the output holds more than rotate_size
    bytes (out_size: its size at the start), so that the caller starts the next file and a new
    pass from there (tcpdump -C). `workers`: threads sharing the pass (1: the calling thread
    only); the output is the same whatever their number. `mapped`: map the chunks instead of
    reading them (where the file can be mapped and nothing is truncated). `hold` (one worker,
    no output: out_fd -1): the matches are not written but kept as runs of file offsets, for
    write_held() to write at an output offset known only later (pfilter.dask's ring).
    `limit`: the largest caplen copied as is (min of snapshot length and link type maximum).
    After run(): read, matched, written, bytes (captured bytes written), stop_offset, status,
    error; `done` (file offset reached), `read` and `matched` may be read from another thread
    while it runs."""

    cdef bytes prog
    cdef bint clear_mem, mapped
    cdef int in_fd, out_fd
    cdef int64_t start, end
    cdef uint32_t limit
    cdef int64_t max_count
    cdef uint32_t truncate
    cdef int64_t rotate_size
    cdef Py_ssize_t chunk
    cdef int nworkers
    cdef int guess_depth
    cdef int64_t guess_span
    cdef bint nsec
    cdef Shared* sh
    cdef readonly int64_t written
    cdef volatile int cancelled
    cdef bint ran, hold
    cdef PcapCopy drained
    cdef Py_buffer ring_buf           # the ring's mapping (has_ring), held while this object lives
    cdef bint has_ring
    cdef int ring_block, member, members
    cdef double ring_wait
    cdef int64_t ring_at

    def __init__(self, bytes decoded_program, bint clear_mem, int in_fd, int out_fd, int64_t start,
                 uint32_t limit, int64_t max_count=-1, Py_ssize_t chunk=CHUNK_BYTES,
                 uint32_t truncate=0, int64_t rotate_size=-1, int64_t out_size=0, int workers=2,
                 int64_t end=-1, bint mapped=False, bint hold=False, int guess_depth=0,
                 int64_t guess_span=0, bint nsec=False, object ring=None, int ring_block=0,
                 int member=0, int members=1, double ring_wait=60.0):
        if not decoded_program:
            raise ValueError("empty program")
        if workers < 1 or workers > MAX_WORKERS:
            raise ValueError(f"workers must be 1 to {MAX_WORKERS}, not {workers}")
        self.prog = decoded_program
        self.clear_mem = clear_mem
        self.mapped = mapped and not truncate     # (truncating writes into the records)
        self.in_fd, self.out_fd = in_fd, out_fd
        self.start, self.limit = start, limit
        self.end = end if end >= 0 else -1
        self.max_count = max_count if max_count > 0 else -1
        self.truncate = truncate
        self.rotate_size = rotate_size if rotate_size >= 0 else -1
        self.chunk = max(chunk, 1 << 16)
        self.nworkers = workers
        if hold and (workers != 1 or out_fd >= 0 or max_count > 0 or truncate or rotate_size >= 0):
            raise ValueError("hold takes one worker and no output, count, truncation or rotation")
        self.hold = hold
        self.guess_depth, self.guess_span, self.nsec = max(guess_depth, 0), guess_span, nsec
        self.written = 0
        self.cancelled = 0
        self.ran = False
        if self.has_ring:
            PyBuffer_Release(&self.ring_buf)
            self.has_ring = False
        if ring is not None:
            if workers != 1 or hold or max_count > 0 or rotate_size >= 0 or not 0 <= member < members:
                raise ValueError("a ring member is one worker, without hold, count or rotation, "
                                 "and member is 0 to members - 1")
            PyObject_GetBuffer(ring, &self.ring_buf, PyBUF_WRITABLE | PyBUF_ANY_CONTIGUOUS)
            self.has_ring = True
            if ring_block < 0 or <size_t>self.ring_buf.len < <size_t>(ring_block + 1) * sizeof(Turns):
                raise ValueError("the ring's mapping has no such block")
        self.sh = <Shared*>malloc(sizeof(Shared))
        if self.sh == NULL:
            raise MemoryError()
        memset(self.sh, 0, sizeof(Shared))
        self.sh.t = &self.sh.own
        self.sh.ring = False
        self.sh.held = NULL
        self.ring_block, self.member, self.members, self.ring_wait = ring_block, member, members, ring_wait
        self.ring_at = out_size
        self.sh.t.read = self.sh.t.matched = self.sh.t.bytes = 0
        self.sh.t.done = self.sh.t.stop_offset = start
        self.sh.t.out_size = out_size
        self.sh.t.guesses_kept = self.sh.t.guesses_missed = 0
        self.sh.chains_kept = self.sh.chains_missed = self.sh.gathered = 0
        self.sh.hold, self.sh.held, self.sh.nheld, self.sh.cap_held = hold, NULL, 0, 0
        self.sh.drain = NULL
        self.drained = None
        self.sh.t.status = ST_EOF
        self.sh.t.error = 0

    def __dealloc__(self):
        if self.has_ring:
            PyBuffer_Release(&self.ring_buf)
        if self.sh != NULL:
            free(self.sh.held)
        free(self.sh)

    @property
    def guesses(self):
        """(kept, missed): chunks whose walk from a guessed first record was kept (the guess
        was right), and those walked again from the boundary handed over."""
        return self.sh.t.guesses_kept, self.sh.t.guesses_missed

    @property
    def chains(self):
        """(kept, missed): the spans of this process's chunks walked as chains of their own from
        a guessed first record and kept (the span before ended on the guess), and those walked
        again by the span before (see _walk_chains); after run()."""
        return self.sh.chains_kept, self.sh.chains_missed

    @property
    def gathered(self):
        """The chunks of this process whose runs were gathered into the worker's buffer and
        written in one piece (see GATHER_RUNS); after run()."""
        return self.sh.gathered

    @property
    def ring_chunks(self):
        """(done, total): a ring's chunks judged and written so far, and the number of chunks of
        its pass (0 until the pass has ended): read by a member once it has returned, the
        last member's reading shows whether every member's chunks were written."""
        return self.sh.t.chunks_done, self.sh.t.chunks_total

    @property
    def held_runs(self):
        """How many runs of matching records a hold pass keeps (until write_held)."""
        return self.sh.nheld

    def write_held(self, int out_fd, int64_t at):
        """Write the matches a hold pass kept into out_fd at offset `at` (pwritev from windows of
        the input mapped again, else read; the input's descriptor must still be open); the offset
        after them. OSError when a write fails, or a read (the input shrank since the pass)."""
        cdef int err = 0
        cdef int64_t pos = at
        cdef Py_ssize_t first = 0
        if not self.hold or not self.ran or self.sh.t.status != ST_EOF:
            raise ValueError("write_held follows a hold pass that ended at the end of its range")
        with nogil:
            err = _write_held(self.sh, self.in_fd, out_fd, &pos, &first, INT64_MAX)
        self._release()
        if err:
            raise OSError(err, __import__("os").strerror(err))
        self.written = self.sh.t.matched
        return pos

    def drain(self, PcapCopy held, int out_fd, int64_t at):
        """Before run(): have this pass write the matches of the finished hold pass `held` into
        out_fd at offset `at` as it goes, about a chunk's worth after each chunk of its own (the
        writes spread over the pass, as a pass writing its own matches spreads them), the rest
        at its end; `held`'s input must stay open until then. A write error ends this pass
        (status "write-error", its errno in `error`)."""
        if self.ran or self.nworkers != 1:
            raise ValueError("drain comes before run() of a one-worker pass")
        if not held.hold or not held.ran or held.sh.t.status != ST_EOF:
            raise ValueError("drain takes a hold pass that ended at the end of its range")
        self.drained = held
        self.sh.drain, self.sh.drain_in, self.sh.drain_out = held.sh, held.in_fd, out_fd
        self.sh.drain_pos, self.sh.drain_next, self.sh.drain_error = at, 0, 0

    def _release(self):
        free(self.sh.held)
        self.sh.held, self.sh.nheld, self.sh.cap_held = NULL, 0, 0

    @property
    def read(self):
        return self.sh.t.read

    @property
    def matched(self):
        return self.sh.t.matched

    @property
    def bytes(self):
        return self.sh.t.bytes

    @property
    def done(self):
        return self.sh.t.done

    @property
    def out_size(self):
        return self.sh.t.out_size

    @property
    def stop_offset(self):
        return self.sh.t.stop_offset

    @property
    def status(self):
        return self.sh.t.status

    @property
    def error(self):
        return self.sh.t.error

    @property
    def workers(self):
        """The workers sharing the pass: its threads, or a ring's members."""
        return self.members if self.has_ring else self.nworkers

    def cancel(self):
        """Ask a running pass (in another thread) to stop at the next chunk; a ring member's
        whole ring (every member's chunks) stops."""
        cdef Turns* t
        self.cancelled = 1
        if self.has_ring:                  # the members waiting for a turn stop now, too
            t = <Turns*>(<uint8_t*>self.ring_buf.buf + <size_t>self.ring_block * sizeof(Turns))
            with nogil:
                _cancel_turns(t)

    def run(self):
        """Do the pass (GIL released); returns the status name."""
        cdef Shared* sh = self.sh
        cdef Worker* workers
        cdef pthread_t* threads
        cdef Py_ssize_t room = self.chunk + HDR + self.limit
        cdef Py_ssize_t cap_records = room // HDR + 2 + CHAINS_MAX    # (_walk_chains' stretches)
        cdef size_t a_buf = (room + 63) & ~(<size_t>63)
        cdef size_t a_off = cap_records * sizeof(int64_t)
        cdef size_t a_u32 = ((cap_records * sizeof(uint32_t)) + 15) & ~(<size_t>15)
        cdef size_t need = a_buf + a_off + 3 * a_u32 + cap_records * sizeof(iovec)
        cdef uint8_t* base
        cdef void* probe
        cdef stat st
        cdef int i, ok = 1, started = 0, nw = self.nworkers
        cdef uint32_t sec0 = 0
        if self.ran:
            raise RuntimeError("a PcapCopy runs once")
        self.ran = True
        sh.in_fd, sh.out_fd, sh.start, sh.end = self.in_fd, self.out_fd, self.start, self.end
        sh.positional = False
        if self.out_fd >= 0:
            # pwritev needs a seekable output; the records go after the out_size bytes it holds
            sh.positional = lseek(self.out_fd, 0, 1) >= 0
        sh.nworkers = nw
        sh.member, sh.stride = 0, nw
        if self.has_ring:
            sh.t = <Turns*>(<uint8_t*>self.ring_buf.buf + <size_t>self.ring_block * sizeof(Turns))
            sh.ring, sh.member, sh.stride, sh.wait = True, self.member, self.members, self.ring_wait
        sh.chunk, sh.tail = self.chunk, HDR + self.limit
        sh.prog = self.prog
        sh.clear_mem, sh.limit, sh.max_count = self.clear_mem, self.limit, self.max_count
        sh.mapped = self.mapped
        if sh.mapped:              # what is not a regular file, or cannot be mapped, is read
            probe = MAP_FAILED
            if fstat(self.in_fd, &st) == 0 and S_ISREG(st.st_mode):
                probe = mmap(NULL, 1, PROT_READ, MAP_PRIVATE, self.in_fd, 0)
            if probe == MAP_FAILED:
                sh.mapped = False
            else:
                munmap(probe, 1)
        sh.whole = NULL
        # Not in a ring (members in processes of their own): a fault on a file mapping maps
        # pages around the faulting one too (fault_around_bytes; a large folio's pages together,
        # up to 2 MB), so a walk past its chunk's end leaves pages of the next member's chunks in
        # this member's page tables, which nobody drops: a pfilter.dask member's peak resident
        # memory grew with the input (110 MB over its base on 2 GB, Linux 6.18). A member maps
        # each chunk on its own instead (_map_window), and unmapping it drops all it brought in.
        if sh.mapped and not sh.ring and fstat(self.in_fd, &st) == 0 and st.st_size > self.start:
            # the part of the file the pass reads, mapped once (chunks then only populate and
            # drop their pages); what lies beyond the size the file has now maps itself
            sh.whole_at = self.start & ~(<int64_t>PMD_BYTES - 1)
            sh.whole_end = st.st_size
            if self.end >= 0 and self.end + self.chunk + HDR + self.limit < sh.whole_end:
                sh.whole_end = self.end + self.chunk + HDR + self.limit
            sh.whole_len = <size_t>((sh.whole_end - sh.whole_at + PMD_BYTES - 1) & ~(<int64_t>PMD_BYTES - 1))
            probe = _map_window(sh.whole_len, MAP_PRIVATE, self.in_fd, sh.whole_at)
            if probe != MAP_FAILED:
                sh.whole = <uint8_t*>probe
        sh.truncate, sh.rotate_size = self.truncate, self.rotate_size
        sh.cancelled = &self.cancelled if not sh.ring else &sh.t.cancelled
        if sh.ring and self.cancelled:
            sh.t.cancelled = 1
        # a speculative walk per chunk (see _chunk) when several workers share the pass, and a
        # mapped chunk walked in chains (_walk_chains): their guesses need the file's first
        # record time (its header at offset 24)
        sh.guess_depth, sh.chained, sh.guess_span = 0, False, self.guess_span
        sh.frac_max = 1000000000 if self.nsec else 1000000
        if self.guess_depth > 0 and pread(self.in_fd, &sec0, 4, 24) == 4:
            sh.guess_sec0 = sec0
            if sh.stride > 1:
                sh.guess_depth = self.guess_depth
            if sh.mapped:
                sh.chained = True
        if not sh.ring:
            sh.t.walk_turn, sh.t.next_start, sh.t.walk_over = 0, self.start, False
            sh.t.write_turn, sh.t.finished = 0, 0
        workers = <Worker*>malloc(nw * sizeof(Worker))
        threads = <pthread_t*>malloc(nw * sizeof(pthread_t))
        if workers == NULL or threads == NULL:
            free(workers)
            free(threads)
            if sh.whole != NULL:
                munmap(sh.whole, sh.whole_len)
                sh.whole = NULL
            raise MemoryError()
        for i in range(nw):
            workers[i].block = NULL
            workers[i].map = NULL
            workers[i].lent = NULL
            workers[i].chains_kept = workers[i].chains_missed = workers[i].gathered = 0
            workers[i].seconds = workers[i].fractions = NULL
        for i in range(nw):
            workers[i].sh = sh
            workers[i].id = sh.member + i
            workers[i].block = pf_block_get(need, &workers[i].block_size)
            if workers[i].block == NULL:
                ok = 0
                continue
            base = <uint8_t*>workers[i].block
            workers[i].buf = base
            workers[i].offsets = <int64_t*>(base + a_buf)
            workers[i].caplens = <uint32_t*>(base + a_buf + a_off)
            workers[i].wirelens = <uint32_t*>(base + a_buf + a_off + a_u32)
            workers[i].verdicts = <uint32_t*>(base + a_buf + a_off + 2 * a_u32)
            workers[i].vec = <iovec*>(base + a_buf + a_off + 3 * a_u32)
        try:
            if not ok:
                raise MemoryError()
            if sh.ring:
                with nogil:        # the first member to come opens the pass at its output offset
                    _lock(sh)
                    if not sh.t.opened:
                        sh.t.opened, sh.t.out_size = 1, self.ring_at
                    pthread_mutex_unlock(&sh.t.mu)
            else:
                pthread_mutex_init(&sh.t.mu, NULL)
                pthread_cond_init(&sh.t.cv, NULL)
            if sh.mapped:
                pf_bus_enter()
            with nogil:
                for i in range(1, nw):
                    if pthread_create(&threads[i], NULL, _work, &workers[i]) != 0:
                        break
                    started += 1
                if started == nw - 1:
                    _work(&workers[0])
                else:
                    _finish(sh, ST_CANCELLED, 0, sh.start)
                if sh.ring:        # the pass's end (its output size) from whichever member it is
                    _lock(sh)
                    while not sh.t.finished:
                        _wait(sh)
                    pthread_mutex_unlock(&sh.t.mu)
                for i in range(1, started + 1):
                    pthread_join(threads[i], NULL)
                if sh.mapped:
                    pf_bus_leave()
                if sh.drain != NULL and sh.t.status == ST_EOF:
                    _drain(sh, INT64_MAX)     # what the pass's chunks left of the other's matches
            if not sh.ring:
                pthread_cond_destroy(&sh.t.cv)
                pthread_mutex_destroy(&sh.t.mu)
            if started != nw - 1:
                raise OSError("cannot start a worker thread")
        finally:
            if sh.whole != NULL:
                munmap(sh.whole, sh.whole_len)
                sh.whole = NULL
            sh.chains_kept = sh.chains_missed = sh.gathered = 0
            for i in range(nw):
                sh.chains_kept += workers[i].chains_kept
                sh.chains_missed += workers[i].chains_missed
                sh.gathered += workers[i].gathered
                if workers[i].map != NULL:
                    munmap(workers[i].map, workers[i].map_len)
                if workers[i].block != NULL:
                    pf_block_put(workers[i].block, workers[i].block_size)
            free(workers)
            free(threads)
        if self.drained is not None:
            self.drained._release()
            self.drained.written = self.drained.sh.t.matched if sh.t.status == ST_EOF else 0
            self.drained = None
        if sh.positional:
            lseek(self.out_fd, sh.t.out_size, 0)    # the file position after what was written
        self.written = sh.t.matched if self.out_fd >= 0 else 0
        return STATUS[sh.t.status]


RING_BLOCK_BYTES = sizeof(Turns)


cdef extern from *:
    """
    #include <signal.h>
    #include <unistd.h>
    #ifdef __linux__
    #include <sys/prctl.h>
    #endif
    /* In a forked ring member: killed with its parent; SIGINT, SIGTERM and SIGHUP left to the
       parent (which cancels the ring). 0, or -1 when the parent is already gone. */
    static int pf_ring_child(long parent) {
    #ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
    #endif
        signal(SIGINT, SIG_IGN);
        signal(SIGTERM, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        return getppid() == (pid_t)parent ? 0 : -1;
    }
    """
    int pf_ring_child(long parent) nogil


cdef extern from "<unistd.h>" nogil:
    void _exit(int status)


# Preallocation of a new output's blocks (AtomicFile.preallocate): on ext4 a buffered write past
# the allocated blocks reserves them page by page (delayed allocation) under the inode's lock,
# which every writer of the file holds in turn. With the blocks allocated first (one fallocate of
# the most the output can hold, cut to what was written at the end) the same writes take less
# time and vary less: bench/results/latest_scale_io.md, mmapchunk against mmapalloc. Other file
# systems are left as they are: on tmpfs an allocation is memory, zeroed, and no file system
# but ext4 was measured.
cdef extern from *:
    """
    #include <errno.h>
    #include <fcntl.h>
    #include <unistd.h>
    #ifdef __linux__
    #include <sys/vfs.h>
    #define PF_EXT4_MAGIC 0xEF53
    static int pf_preallocate(int fd, int64_t at, int64_t length) {
        struct statfs fs;
        if (length <= 0 || fstatfs(fd, &fs) != 0 || fs.f_type != PF_EXT4_MAGIC)
            return 0;
        if (fallocate(fd, 0, (off_t)at, (off_t)length) == 0)
            return 1;
        /* ENOSPC and the like: give back whatever the call allocated before it failed */
        if (ftruncate(fd, (off_t)at) != 0)
            return -errno;
        return 0;
    }
    #else
    static int pf_preallocate(int fd, int64_t at, int64_t length) {
        (void)fd; (void)at; (void)length;
        return 0;
    }
    #endif
    """
    int pf_preallocate(int fd, int64_t at, int64_t length) nogil


def preallocate(int fd, int64_t at, int64_t length):
    """Allocate the blocks of fd's bytes at .. at + length (its size becomes at + length) where
    that pays (a file on ext4): True when done. False leaves the file as it was (another file
    system, or no room for the whole length: the writes then allocate as they go); OSError (its
    errno) when a failed allocation could not be taken back."""
    cdef int got
    with nogil:
        got = pf_preallocate(fd, at, length)
    if got < 0:
        raise OSError(-got, "cannot truncate the output after a failed preallocation")
    return got == 1


def ring_child_exit(int status):
    """End a forked ring member at once (_exit: no interpreter finalization, no exit handler
    of the parent's, nothing flushed twice)."""
    _exit(status)


def ring_child(long parent):
    """Prepare a forked ring member (see pf_ring_child): False when `parent` is already gone."""
    return pf_ring_child(parent) == 0


cdef Turns* _ring_blocks(object ring, Py_buffer* view, int blocks, int flags, int least) except NULL:
    """The first of `blocks` ring blocks (at least `least`) at the start of `ring`'s buffer, taken
    into `view` (the caller releases it; released here when the mapping is too small)."""
    PyObject_GetBuffer(ring, view, flags | PyBUF_ANY_CONTIGUOUS)
    if blocks < least or <size_t>view.len < <size_t>blocks * sizeof(Turns):
        PyBuffer_Release(view)
        raise ValueError("the ring's mapping is too small")
    return <Turns*>view.buf


def ring_done(object ring, int blocks):
    """The file offset the walk of each of the first `blocks` ring passes of `ring` (made by
    ring_init) has reached, read without their lock: a pass's progress, seen from outside it."""
    cdef Py_buffer view
    cdef int k
    cdef Turns* turns = _ring_blocks(ring, &view, blocks, 0, 0)
    try:
        return [turns[k].done for k in range(blocks)]
    finally:
        PyBuffer_Release(&view)


def ring_cancel(object ring, int blocks):
    """Stop the first `blocks` ring passes of `ring` (made by ring_init) from outside them, as
    cancel() of a member's PcapCopy stops its ring: a member waiting for a turn (of a member that
    will never come: its worker left) or walking stops at once, status "cancelled". For a
    process of the members' host only (the blocks' locks are that kernel's)."""
    cdef Py_buffer view
    cdef int k
    cdef Turns* turns = _ring_blocks(ring, &view, blocks, PyBUF_WRITABLE, 0)
    try:
        for k in range(blocks):
            with nogil:
                _cancel_turns(&turns[k])
    finally:
        PyBuffer_Release(&view)


def ring_init(object ring, int blocks, int64_t first_out, int64_t start=24):
    """Make `blocks` blocks of RING_BLOCK_BYTES at the start of `ring` (a shared mapping, of a
    file every member maps) the turns of as many ring passes (PcapCopy's ring, ring_block k):
    each pass starts at record offset `start`; the first is opened at output offset first_out,
    each other by its first member (its out_size)."""
    cdef int k
    cdef Turns* t
    cdef Py_buffer view
    cdef Turns* turns = _ring_blocks(ring, &view, blocks, PyBUF_WRITABLE, 1)
    try:
        for k in range(blocks):
            t = &turns[k]
            memset(t, 0, sizeof(Turns))
            if pf_ring_sync_init(&t.mu) != 0:
                raise OSError("cannot make a process-shared lock")
            t.shared = 1
            t.next_start, t.done, t.stop_offset = start, start, start
            t.status = ST_EOF
            if k == 0:
                t.opened, t.out_size = 1, first_out
    finally:
        PyBuffer_Release(&view)


cdef void* _array(object a, Py_buffer* view, Py_ssize_t itemsize, str kinds) except NULL:
    """The writable, contiguous buffer of array `a` (released by the caller) whose items are
    itemsize bytes of one of the struct-module kinds `kinds` (int64: "ql", uint32: "IL")."""
    PyObject_GetBuffer(a, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_ANY_CONTIGUOUS)
    fmt = (view.format or b"B").decode().lstrip("@=<")
    if view.itemsize != itemsize or len(fmt) != 1 or fmt not in kinds:
        PyBuffer_Release(view)
        raise ValueError(f"Buffer dtype mismatch: {itemsize}-byte items of kind {kinds!r} expected")
    return view.buf


def record_index(int fd, int64_t start, int64_t end, object offsets_a, object seconds_a,
                 object fractions_a, object caplens_a, object wirelens_a,
                 bint swapped, Py_ssize_t chunk=CHUNK_BYTES, int64_t first_sec=-1, bint nsec=False,
                 int64_t guess_span=0, bint mapped=True, Py_ssize_t window=WIDE_CHUNK_BYTES):
    """Walk the record headers of a classic pcap file from `start` (a record boundary) and
    fill the arrays, up to their length: file offset, seconds, fraction (as recorded), captured
    and wire length of each record (headers in the file's byte order: `swapped`). Reads only the
    headers. end: stop at this offset (-1: the end of the file).
    A regular file in host byte order is mapped, `window` bytes at a time, and walked as
    the fast path's mapped chunks are (_walk_chains: several chains from guessed boundaries,
    only the lines records start on read; first_sec, the file's first record's seconds, nsec and
    guess_span feed the guesses, first_sec -1: one chain); else (or mapped=False) read, `chunk`
    bytes at a time (one pread of 16 bytes per record when records are larger than a chunk).
    Returns (records filled, offset reached, status): status 0 at the end, 1 when the arrays are
    full, 2 when the file ends inside a record (offset reached: its header).
    The arrays: int64 (offsets, seconds, fractions) and uint32 (caplens, wirelens), writable and
    contiguous (numpy arrays, through the buffer protocol)."""
    cdef Py_buffer views[5]
    cdef void* at[5]
    cdef int got_views = 0, k
    cdef Py_ssize_t room
    arrays = (offsets_a, seconds_a, fractions_a, caplens_a, wirelens_a)
    try:
        for k in range(5):
            at[k] = _array(arrays[k], &views[k], 8 if k < 3 else 4, "ql" if k < 3 else "IL")
            got_views = k + 1
        room = views[0].len // 8
        if min(views[1].len // 8, views[2].len // 8, views[3].len // 4, views[4].len // 4) < room:
            raise ValueError("the arrays must be as long as offsets")
        return _index_walk(fd, start, end, <int64_t*>at[0], <int64_t*>at[1], <int64_t*>at[2], <uint32_t*>at[3],
                           <uint32_t*>at[4], room, swapped, chunk, first_sec, nsec, guess_span, mapped, window)
    finally:
        for k in range(got_views):
            PyBuffer_Release(&views[k])


def record_window(int fd, int64_t after, int64_t before, bint swapped, bint nsec, int64_t first_sec=-1,
                  int64_t guess_span=0, bint mapped=True, Py_ssize_t window=WIDE_CHUNK_BYTES, int64_t start=24,
                  int64_t end=-1):
    """One walk of the record headers of a classic pcap file (header at offset 0, in the file's
    byte order: `swapped`) from `start` (a record boundary) to the first record at or past `end`
    (-1: the end of the file), as record_index's (see there for first_sec, guess_span, mapped and
    window), keeping no array, for pfilter.capture.index.window_range: of the whole records walked
    (a record cut by the end of the file is left out, as build_index leaves it out), with their
    times t (ns):
    (first_in: the offset of the first with t >= after, or -1; first_past: of the first with
    t >= before, or -1; whole_end: the offset after the last (start if none); first_t, last_t:
    the times of the first and the last (None if none); reached: the offset where the walk
    stopped (the next record's); back: a time before the time of the record before it)."""
    cdef Py_ssize_t block = 1 << 17, n, k
    cdef int64_t* offs = <int64_t*>malloc(block * 3 * sizeof(int64_t) + block * 2 * sizeof(uint32_t))
    cdef int64_t* secs = offs + block
    cdef int64_t* fracs = secs + block
    cdef uint32_t* caps = <uint32_t*>(fracs + block)
    cdef uint32_t* wires = caps + block
    cdef int64_t pos = start, size, t, first_t = INT64_MIN, last = INT64_MIN, first_in = -1, first_past = -1
    cdef int64_t whole_end = start
    cdef int64_t mult = 1 if nsec else 1000
    cdef int status = 1
    cdef bint back = False, seen = False
    cdef stat st
    if offs == NULL:
        raise MemoryError()
    try:
        if fstat(fd, &st) != 0:
            raise OSError(errno, "cannot read the capture")
        size = st.st_size
        while status == 1 and not back:
            n, pos, status = _index_walk(fd, pos, end, offs, secs, fracs, caps, wires, block, swapped, CHUNK_BYTES,
                                         first_sec, nsec, guess_span, mapped, window)
            with nogil:
                for k in range(n):
                    if offs[k] + HDR + <int64_t>caps[k] > size:
                        status = 0          # (cut by the end of the file: the last record walked)
                        break
                    t = secs[k] * 1000000000 + fracs[k] * mult
                    if not seen:
                        first_t, seen = t, True
                    elif t < last:
                        back = True
                        break
                    last = t
                    if first_in < 0 and t >= after:
                        first_in = offs[k]
                    if first_past < 0 and t >= before:
                        first_past = offs[k]
                    whole_end = offs[k] + HDR + caps[k]
    finally:
        free(offs)
    return (first_in, first_past, whole_end, first_t if seen else None, last if seen else None, pos, back)


cdef tuple _index_walk(int fd, int64_t start, int64_t end, int64_t* offsets, int64_t* seconds,
                       int64_t* fractions, uint32_t* caplens, uint32_t* wirelens, Py_ssize_t room, bint swapped,
                       Py_ssize_t chunk, int64_t first_sec, bint nsec, int64_t guess_span, bint mapped,
                       Py_ssize_t window):
    """record_index's walk (see there) into arrays of `room` records: mapped when it can be, read
    from where the mapped walk stopped when it cannot (or the file shrank under it)."""
    cdef Py_ssize_t n = 0
    cdef int status = -1
    if mapped and not swapped:
        n, start, status = _record_index_mapped(fd, start, end, offsets, seconds, fractions, caplens, wirelens,
                                                room, first_sec, nsec, guess_span, window)
    if status >= 0:
        return n, start, status
    k, start, status = _record_index(fd, start, end, offsets + n, seconds + n, fractions + n, caplens + n,
                                     wirelens + n, room - n, room - n, swapped, chunk)
    return n + k, start, status


cdef struct IndexWindow:
    # one mapped window of record_index's walk (through pf_guard)
    Shared* sh
    Worker* w
    uint8_t* buf                 # the file at `pos`
    int64_t pos
    Py_ssize_t got, have         # records starting in buf[0:got] are the window's; have: mapped
    int64_t* offsets             # where its records go (room of them at most)
    int64_t* seconds
    int64_t* fractions
    uint32_t* caplens
    uint32_t* wirelens
    Py_ssize_t room
    Py_ssize_t n                 # out: records stored
    Py_ssize_t walked            # out: buffer position after them


cdef void _index_window(void* arg) noexcept nogil:
    """The window's records by _walk_chains (buffer positions of their data in w.offsets, their
    times in w.seconds and w.fractions), copied out. A record reaching past what is mapped ends
    the walk before it (walked: its header)."""
    cdef IndexWindow* x = <IndexWindow*>arg
    cdef int stop = ST_NONE, err = 0
    cdef Py_ssize_t n, k
    n = _walk_chains(x.sh, x.w, x.buf, 0, x.got, x.have, x.pos, &stop, &err)
    x.walked = x.w.walk_end
    if n > x.room:
        n = x.room
        x.walked = x.w.offsets[n] - HDR
    for k in range(n):
        x.offsets[k] = x.pos + x.w.offsets[k] - HDR
    memcpy(x.seconds, x.w.seconds, n * sizeof(int64_t))
    memcpy(x.fractions, x.w.fractions, n * sizeof(int64_t))
    memcpy(x.caplens, x.w.caplens, n * sizeof(uint32_t))
    memcpy(x.wirelens, x.w.wirelens, n * sizeof(uint32_t))
    x.n = n


cdef tuple _record_index_mapped(int fd, int64_t start, int64_t end, int64_t* offsets, int64_t* seconds,
                                int64_t* fractions, uint32_t* caplens, uint32_t* wirelens, Py_ssize_t room,
                                int64_t first_sec, bint nsec, int64_t guess_span, Py_ssize_t chunk):
    """record_index over windows of the file mapped in turn, chunk bytes of records each (see
    there); status -1 when the file cannot be mapped or shrank under a window (the walk goes on
    reading from the offset given)."""
    cdef Shared sh
    cdef Worker w
    cdef IndexWindow x
    cdef stat st
    cdef int64_t pos = start, size, win_at, stop_at
    cdef Py_ssize_t n = 0, cap_records
    cdef Py_ssize_t tail = PMD_BYTES       # (a record reaching past the window's chunk: mapped too)
    cdef size_t win_len
    cdef void* m
    cdef uint32_t h[4]
    cdef int status = 0
    cdef bint failed = False
    if fstat(fd, &st) != 0 or not S_ISREG(st.st_mode) or chunk < HDR:
        return 0, start, -1
    size = st.st_size
    memset(&sh, 0, sizeof(Shared))
    memset(&w, 0, sizeof(Worker))
    sh.in_fd, sh.mapped, sh.limit = fd, True, 0xFFFFFFFF
    sh.chained = first_sec >= 0
    sh.guess_sec0, sh.guess_span = first_sec, guess_span
    sh.frac_max = 1000000000 if nsec else 1000000
    w.sh = &sh
    cap_records = (chunk + tail) // HDR + 2 + CHAINS_MAX
    w.block = malloc(cap_records * (3 * sizeof(int64_t) + 2 * sizeof(uint32_t)))
    if w.block == NULL:
        raise MemoryError()
    w.offsets = <int64_t*>w.block
    w.seconds = w.offsets + cap_records
    w.fractions = w.seconds + cap_records
    w.caplens = <uint32_t*>(w.fractions + cap_records)
    w.wirelens = w.caplens + cap_records
    pf_bus_enter()
    try:
        with nogil:
            while True:
                stop_at = size if end < 0 or end > size else end
                if pos >= stop_at:
                    status = 0
                    break
                if n == room:
                    status = 1
                    break
                if size - pos < HDR:
                    status = 2
                    break
                win_at = pos & ~(<int64_t>PMD_BYTES - 1)
                x.got = chunk if stop_at - pos > chunk else <Py_ssize_t>(stop_at - pos)
                x.have = chunk + tail if size - pos > chunk + tail else <Py_ssize_t>(size - pos)
                win_len = <size_t>((pos - win_at + x.have + PMD_BYTES - 1) & ~(<int64_t>PMD_BYTES - 1))
                m = _map_window(win_len, MAP_PRIVATE if pf_populate_read else MAP_PRIVATE | MAP_POPULATE, fd, win_at)
                if m == MAP_FAILED:
                    failed = True
                    break
                if pf_populate_read and madvise(<uint8_t*>m + (pos & ~(<int64_t>4095)) - win_at,
                                                <size_t>(pos - (pos & ~(<int64_t>4095)) + x.got),
                                                MADV_POPULATE_READ) != 0 and errno == EINVAL:
                    pf_populate_read = 0
                x.sh, x.w, x.buf, x.pos = &sh, &w, <uint8_t*>m + (pos - win_at), pos
                x.offsets, x.seconds, x.fractions = offsets + n, seconds + n, fractions + n
                x.caplens, x.wirelens, x.room, x.n = caplens + n, wirelens + n, room - n, 0
                if pf_guard(_index_window, &x) != 0:
                    munmap(m, win_len)
                    failed = True            # (the file shrank: read from pos on)
                    break
                n += x.n
                if x.n == 0 and x.walked == 0:
                    # a record longer than the window: its header alone, and on past its data
                    memcpy(h, x.buf, HDR)
                    offsets[n], seconds[n], fractions[n], caplens[n], wirelens[n] = pos, h[0], h[1], h[2], h[3]
                    n += 1
                    pos += HDR + <int64_t>h[2]
                else:
                    pos += x.walked
                munmap(m, win_len)
    finally:
        pf_bus_leave()
        free(w.block)
    if failed:
        return n, pos, -1
    return n, pos, status


cdef _record_index(int fd, int64_t start, int64_t end, int64_t* offsets, int64_t* seconds,
                   int64_t* fractions, uint32_t* caplens, uint32_t* wirelens, Py_ssize_t room,
                   Py_ssize_t others, bint swapped, Py_ssize_t chunk):
    cdef Py_ssize_t n = 0, have = 0, p = 0
    cdef int64_t base = start, pos = start
    cdef uint8_t* buf = <uint8_t*>malloc(chunk + HDR)
    cdef uint32_t cap, v
    cdef uint32_t h[4]
    cdef int err = 0, status = 0
    cdef ssize_t got
    cdef int k
    if buf == NULL:
        raise MemoryError()
    if others < room:
        free(buf)
        raise ValueError("the arrays must be as long as offsets")
    try:
        with nogil:
            while True:
                if end >= 0 and pos >= end:
                    break
                if n == room:
                    status = 1
                    break
                # the header at pos: in the buffer, or read the buffer from pos
                if not (base <= pos and pos + HDR <= base + have):
                    base = pos
                    have = 0
                    while have < chunk:
                        got = pread(fd, buf + have, <size_t>(chunk - have), base + have)
                        if got < 0:
                            if errno == EINTR:
                                continue
                            err = errno
                            break
                        if got == 0:
                            break
                        have += got
                    if err:
                        break
                    if have == 0:
                        break
                    if have < HDR:
                        status = 2
                        break
                p = pos - base
                memcpy(h, buf + p, HDR)
                if swapped:
                    for k in range(4):
                        v = h[k]
                        h[k] = ((v >> 24) | ((v >> 8) & 0xff00) | ((v << 8) & 0xff0000) | (v << 24))
                offsets[n] = pos
                seconds[n] = h[0]
                fractions[n] = h[1]
                caplens[n] = h[2]
                wirelens[n] = h[3]
                n += 1
                pos += HDR + <int64_t>h[2]
    finally:
        free(buf)
    if err:
        raise OSError(err, "cannot read the capture")
    return n, pos, status


def decode(bytes raw):
    """pfilter._vm.decode (the same decode_insns), for the fast path: the internal form (bytes of
    vm_insn[]) of a validated program given as struct bpf_insn[] bytes."""
    cdef Py_ssize_t n = len(raw) // sizeof(pf_insn)
    out = PyBytes_FromStringAndSize(NULL, n * sizeof(vm_insn))
    decode_insns(<const pf_insn*><const char*>raw, n, <vm_insn*>PyBytes_AS_STRING(out))
    return out


def reads_scratch(bytes raw):
    """pfilter._vm.reads_scratch, for the fast path."""
    return reads_scratch_insns(<const pf_insn*><const char*>raw, len(raw) // sizeof(pf_insn))


# -- pcapng in, pcap out -----------------------------------------------------------------------

include "_scan.pxi"
include "_split_ts.pxi"

cdef enum:
    NG_BATCH = 16384                # packets scanned and judged at a time, at most
    NG_IFACES = 16                  # the interface table's first capacity (doubled when full)
    NG_STRETCH = 4 << 20            # the mapping populated ahead of the walk, dropped behind it, in these


cdef struct NgStep:
    # one batch of NgCopy's pass: the scan from `pos` and the program's verdicts (through
    # pf_guard: both read the mapping)
    const uint8_t* map
    Py_ssize_t size, end, pos, n, next_pos, max_packets
    int64_t info
    int status
    uint32_t max_blocksize
    int64_t* state
    NgIfaces* ift
    NgPackets* pk
    const uint8_t* prog
    bint clear_mem
    uint32_t* verdicts


cdef extern from *:
    """
    /* into every cache level (prefetcht0): the lines stay until the scan reads them */
    static inline void pf_prefetch_keep(const uint8_t* p) { __builtin_prefetch(p, 0, 3); }
    """
    void pf_prefetch_keep(const uint8_t* p) nogil


cdef enum:
    NG_CHAINS = 8                   # block walks _ng_warm runs at once
    NG_WARM_BYTES = 1 << 20         # the stretch warmed and then scanned at a time
    NG_BATCH_BYTES = 7 << 17        # a batch's captured data, at most (the rest of a stretch:
                                    # the blocks' framing)
    NG_SYNC_BYTES = 1 << 16         # how far _ng_sync looks for a block start


cdef inline bint _ng_block_at(const uint8_t* m, Py_ssize_t q, Py_ssize_t size, uint32_t max_blocksize) noexcept nogil:
    """Whether an enhanced packet block, whose trailer repeats its length, plausibly starts at q,
    followed by another block (or the end of the file)."""
    cdef uint32_t btype, total, nxt
    if size - q < 32:
        return False
    memcpy(&btype, m + q, 4)
    memcpy(&total, m + q + 4, 4)
    if btype != 6 or total < 32 or total % 4 != 0 or total > max_blocksize or size - q < <Py_ssize_t>total:
        return False
    memcpy(&nxt, m + q + total - 4, 4)
    if nxt != total:
        return False
    if size - q - total < 12:
        return size - q == total
    memcpy(&nxt, m + q + total + 4, 4)
    return nxt >= 12 and nxt % 4 == 0 and nxt <= max_blocksize


cdef void _ng_warm(const uint8_t* m, Py_ssize_t pos, Py_ssize_t stop, Py_ssize_t size,
                   uint32_t max_blocksize) noexcept nogil:
    """Bring into the cache the lines the scan of the blocks from pos (a block start) to about
    stop will read: each block's first line (type, length, the packet block's fields and the
    first bytes of its packet, which the program reads), its trailer and the next line. One walk
    would wait for each block's length before it can ask for the next block: NG_CHAINS walks, from
    pos and from block starts found (_ng_block_at) at even steps through the stretch, take their
    steps in turn, so that their loads are waited for together. What they find only guides the
    cache: the scan that follows checks every block itself, so a wrong guess costs time only."""
    cdef Py_ssize_t at[NG_CHAINS]
    cdef Py_ssize_t ends[NG_CHAINS]
    cdef Py_ssize_t step = (stop - pos) // NG_CHAINS, q, lim, x
    cdef uint32_t total
    cdef int c, live = 0, k
    if stop <= pos:
        return
    for c in range(NG_CHAINS):
        if c == 0:
            q = pos
        else:
            q = (pos + c * step + 3) & ~(<Py_ssize_t>3)
            q += (pos - q) & 3                      # (blocks keep the file's 4-byte alignment)
            lim = q + NG_SYNC_BYTES
            if lim > stop:
                lim = stop
            while q < lim and not _ng_block_at(m, q, size, max_blocksize):
                q += 4
            if q >= lim:
                continue
        if live:
            ends[live - 1] = q
        at[live] = q
        live += 1
    if live == 0:
        return
    ends[live - 1] = stop
    while live:
        k = 0
        for c in range(live):
            x = at[c]
            if size - x < 8:
                continue
            memcpy(&total, m + x + 4, 4)
            if total < 12 or total % 4 != 0 or total > max_blocksize or <Py_ssize_t>total > size - x:
                continue
            pf_prefetch_keep(m + x + 64)
            pf_prefetch_keep(m + x + total - 4)
            x += total
            if x >= ends[c]:
                continue
            at[k] = x
            ends[k] = ends[c]
            k += 1
        live = k


cdef void _ng_step(void* arg) noexcept nogil:
    # the blocks from s.pos up to s.end (a batch of at most s.max_packets packets; one: no warming)
    cdef NgStep* s = <NgStep*>arg
    cdef Py_ssize_t stop = s.pos + NG_WARM_BYTES
    if stop > s.end:
        stop = s.end
    if s.max_packets > 1:
        _ng_warm(s.map, s.pos, stop, s.size, s.max_blocksize)
    s.status = scan_pcapng_blocks(s.map, s.pos, s.end, 0, s.max_blocksize, s.state, s.ift, s.pk,
                                  s.max_packets, NG_BATCH_BYTES, &s.n, &s.next_pos, &s.info, False)
    if s.n:
        run_packets(s.prog, s.clear_mem, s.map, s.pk.offsets, s.pk.caplens, s.pk.wirelens, s.n, s.verdicts)


cdef bint _regrow(void** p, size_t size) noexcept nogil:
    """realloc *p to size bytes; False (and *p as it was) when out of memory."""
    cdef void* q = realloc(p[0], size)
    if q == NULL:
        return False
    p[0] = q
    return True


cdef bint _ng_grow(NgIfaces* t) noexcept nogil:
    """Double the interface table (or give it its first capacity); False when out of memory."""
    cdef int64_t cap = t.capacity * 2 if t.capacity else NG_IFACES
    if not (_regrow(<void**>&t.linktype, cap * sizeof(uint16_t)) and _regrow(<void**>&t.snaplen, cap * sizeof(uint32_t))
            and _regrow(<void**>&t.tsmode, cap * sizeof(int32_t)) and _regrow(<void**>&t.units, cap * sizeof(uint64_t))
            and _regrow(<void**>&t.tsoffset, cap * sizeof(int64_t)) and _regrow(<void**>&t.offset, cap * sizeof(int64_t))
            and _regrow(<void**>&t.nameoff, cap * sizeof(int64_t))
            and _regrow(<void**>&t.namelen, cap * sizeof(uint16_t))):
        return False
    t.capacity = cap
    return True


cdef void _ng_free(NgIfaces* t) noexcept nogil:
    free(t.linktype)
    free(t.snaplen)
    free(t.tsmode)
    free(t.units)
    free(t.tsoffset)
    free(t.offset)
    free(t.nameoff)
    free(t.namelen)


cdef class NgCopy:
    """One pass over a pcapng file (pfilter.capture.fastpath's pcapng path): its packets judged
    by the program and those with a non-zero verdict written to out_fd as classic pcap records
    (out_fd -1: only counted), timestamps in ns (nsec) or us, after the output's file header
    (out_size bytes, written by the caller) -- what the general path writes for a pcapng input.

    The file is read through one mapping (each stretch of it populated before the walk reaches
    it and dropped behind it) by the calling thread alone, GIL released; the blocks are walked by
    the reader's own pcapng scanner (pfilter/capture/_scan.pxi), so every block, interface and
    timestamp rule is the general path's. It stops, for the general path to start over, at
    what it leaves to that path (status "anomaly", stop_offset the block's offset): a section
    in the other byte order, an interface of another link type than `linktype`, a block the
    scanner leaves to Python (an unusual interface description, damage, a block cut by the end
    of the file). A file that shrinks under the pass ends it with "read-error".
    After run(): read, matched, written, bytes (captured bytes written), out_size, status,
    error, stop_offset; `done` (file offset reached), `read` and `matched` may be read from
    another thread while it runs.

    A range of the file (one of several passes sharing it, pfilter.capture.fastpath's
    _ng_ranges): `start`, a packet block's offset (the blocks before the first packet are read
    first, for the interfaces: those of the file's first section), and `stop`: the pass takes the
    packet blocks that start before stop and ends at the first one at or after it (range_end,
    the file's size at its end). meta_changed: the range held a section header or an interface
    description, so a later range's start, which assumes the first section's interfaces, may
    not know what it should; the caller then does the file in one pass."""

    cdef bytes prog
    cdef bint clear_mem, nsec
    cdef int in_fd, out_fd
    cdef uint16_t linktype
    cdef uint32_t max_blocksize
    cdef int64_t max_count
    cdef readonly int64_t read, matched, written, bytes, done, out_size, stop_offset, error
    cdef readonly int64_t start, stop, range_end
    cdef readonly bint meta_changed
    cdef readonly int status
    cdef volatile int cancelled
    cdef bint ran

    def __init__(self, bytes decoded_program, bint clear_mem, int in_fd, int out_fd, int linktype,
                 uint32_t max_blocksize, bint nsec=False, int64_t max_count=-1, int64_t out_size=0,
                 int64_t start=0, int64_t stop=-1):
        if not decoded_program:
            raise ValueError("empty program")
        self.prog = decoded_program
        self.clear_mem = clear_mem
        self.in_fd, self.out_fd = in_fd, out_fd
        self.linktype = <uint16_t>linktype
        self.max_blocksize = max_blocksize
        self.nsec = nsec
        self.max_count = max_count if max_count > 0 else -1
        self.out_size = out_size
        self.start = start if start > 0 else 0
        self.stop = stop if stop >= 0 else -1
        self.range_end = -1
        self.status = ST_NONE

    def cancel(self):
        """Ask a running pass (in another thread) to stop at its next batch."""
        self.cancelled = 1

    def run(self):
        """Do the pass (GIL released); returns the status name."""
        if self.ran:
            raise ValueError("an NgCopy runs once")
        self.ran = True
        cdef const uint8_t* prog = <const uint8_t*>PyBytes_AS_STRING(self.prog)
        with nogil:
            self.status = self._pass(prog)
        return STATUS[self.status]

    cdef int _pass(self, const uint8_t* prog) noexcept nogil:
        global pf_populate_read
        cdef stat st
        cdef size_t maplen
        cdef uint8_t* m
        cdef NgIfaces ift
        cdef NgPackets pk
        cdef NgStep s
        cdef int64_t state[3]
        cdef int64_t checked = 0, populated = 0, dropped = 0, want, at, k, meta0 = 0, section0 = 0
        cdef int status = ST_NONE, err, nv, j
        cdef uint32_t sec, frac, cap
        cdef uint8_t* hdrs = NULL
        cdef uint8_t* h
        cdef int64_t pending = 0
        cdef iovec vec[IOV_BATCH]
        cdef void* block = NULL
        if fstat(self.in_fd, &st) != 0:
            self.error = errno
            return ST_READ_ERROR
        if st.st_size <= 0:
            return ST_ANOMALY
        memset(&ift, 0, sizeof(ift))
        maplen = <size_t>((st.st_size + PMD_BYTES - 1) // PMD_BYTES * PMD_BYTES)
        m = <uint8_t*>_map_window(maplen, MAP_PRIVATE, self.in_fd, 0)
        if <void*>m == MAP_FAILED:
            self.error = errno
            return ST_READ_ERROR
        # the batch's arrays and the headers of its matches (IOV_BATCH / 2 of them at a time)
        block = malloc(NG_BATCH * (3 * sizeof(int64_t) + 4 * sizeof(uint32_t) + sizeof(uint16_t))
                       + (IOV_BATCH // 2) * HDR)
        if block == NULL or not _ng_grow(&ift):
            free(block)
            _ng_free(&ift)
            munmap(m, maplen)
            self.error = 12         # ENOMEM
            return ST_READ_ERROR
        pk.offsets = <int64_t*>block
        pk.stamps = pk.offsets + NG_BATCH
        pk.fileoffs = pk.stamps + NG_BATCH
        pk.caplens = <uint32_t*>(pk.fileoffs + NG_BATCH)
        pk.wirelens = pk.caplens + NG_BATCH
        s.verdicts = pk.wirelens + NG_BATCH
        pk.ifaces = s.verdicts + NG_BATCH
        pk.linktypes = <uint16_t*>(pk.ifaces + NG_BATCH)
        hdrs = <uint8_t*>(pk.linktypes + NG_BATCH)
        state[0] = state[1] = state[2] = 0
        s.map, s.size, s.pos, s.end, s.max_packets = m, st.st_size, 0, st.st_size, NG_BATCH
        s.max_blocksize, s.state, s.ift, s.pk = self.max_blocksize, state, &ift, &pk
        s.prog, s.clear_mem = prog, self.clear_mem
        pf_bus_enter()
        if self.start > 0 or self.stop >= 0:
            # a range: the interfaces of the blocks before the first packet, then on from `start`
            # (what its own blocks change, meta_changed says)
            s.max_packets = 0
            while status == ST_NONE:
                if pf_guard(_ng_step, &s) != 0:
                    self.error = EIO
                    status = ST_READ_ERROR
                elif s.status == ST_FULL:
                    if not _ng_grow(&ift):
                        self.error = 12
                        status = ST_READ_ERROR
                    s.pos = s.next_pos
                elif s.status != ST_LIMIT or (self.start > 0 and s.next_pos > self.start) or state[0] != 0:
                    self.stop_offset = s.next_pos
                    status = ST_ANOMALY
                else:
                    break
            s.pos, s.max_packets = self.start if self.start > 0 else s.next_pos, NG_BATCH
        meta0, section0 = state[1], state[2]
        populated = dropped = s.pos // NG_STRETCH * NG_STRETCH
        if self.stop >= 0 and self.stop < s.size:
            s.end = self.stop               # up to stop, then packet by packet to the next packet
        while status == ST_NONE:
            if self.cancelled:
                status = ST_CANCELLED
                break
            # the next stretch mapped in before the walk reaches it; what is behind dropped
            want = s.pos + 2 * <int64_t>NG_STRETCH
            if want > s.size:
                want = s.size
            if populated < want:
                at = populated
                populated = (want + NG_STRETCH - 1) // NG_STRETCH * NG_STRETCH
                if populated > <int64_t>maplen:
                    populated = maplen
                if pf_populate_read and madvise(m + at, <size_t>(populated - at), MADV_POPULATE_READ) != 0 \
                        and errno == EINVAL:
                    pf_populate_read = 0        # (the pages come in as they are touched)
            at = s.pos // NG_STRETCH * NG_STRETCH - NG_STRETCH
            if at > dropped:
                madvise(m + dropped, <size_t>(at - dropped), MADV_DONTNEED)
                dropped = at
            if pf_guard(_ng_step, &s) != 0:
                self.error = EIO
                status = ST_READ_ERROR
                break
            if s.status == ST_FULL and not _ng_grow(&ift):
                self.error = 12
                status = ST_READ_ERROR
                break
            # what the general path alone does: sections of the other byte order (their
            # pseudo-headers swapped), interfaces of other link types (a pcap output of one)
            if state[0] != 0:
                status = ST_ANOMALY
            while checked < state[1] and status == ST_NONE:
                if ift.linktype[checked] != self.linktype:
                    status = ST_ANOMALY
                checked += 1
            if status != ST_NONE:
                self.stop_offset = s.pos
                break
            if s.max_packets == 1 and s.n == 1 and pk.fileoffs[0] >= self.stop:
                self.range_end = pk.fileoffs[0]         # the next range's first packet
                status = ST_EOF
                break
            nv = 0
            j = 0
            pending = 0
            err = 0
            for k in range(s.n):
                self.read += 1
                if s.verdicts[k] == 0:
                    continue
                self.matched += 1
                cap = pk.caplens[k]
                self.bytes += cap
                if self.out_fd >= 0:
                    split_ts(pk.stamps[k], self.nsec, &sec, &frac)
                    h = hdrs + j * HDR
                    memcpy(h, &sec, 4)
                    memcpy(h + 4, &frac, 4)
                    memcpy(h + 8, &cap, 4)
                    memcpy(h + 12, &pk.wirelens[k], 4)
                    vec[nv].iov_base = <void*>h
                    vec[nv].iov_len = HDR
                    nv += 1
                    j += 1
                    if cap:
                        vec[nv].iov_base = <void*>(m + pk.offsets[k])
                        vec[nv].iov_len = cap
                        nv += 1
                    pending += HDR + cap
                    self.written += 1
                    if nv > IOV_BATCH - 2:
                        err = pwrite_all(self.out_fd, vec, nv, self.out_size)
                        if err:
                            break
                        self.out_size += pending
                        nv = j = pending = 0
                if self.max_count > 0 and self.matched >= self.max_count:
                    status = ST_COUNT
                    self.stop_offset = pk.fileoffs[k]
                    break
            if err == 0 and nv:
                err = pwrite_all(self.out_fd, vec, nv, self.out_size)
                if err == 0:
                    self.out_size += pending
            if err:
                # EFAULT: the mapping's pages went under the write (the input shrank)
                self.error = err
                status = ST_READ_ERROR if err == EFAULT else ST_WRITE_ERROR
                break
            if status != ST_NONE:
                break
            s.pos = s.next_pos
            self.done = s.pos
            if s.end < s.size and (s.status == ST_END or s.status == ST_MORE):
                # at stop, or at a block across it: on one packet at a time, with the whole file
                s.end, s.max_packets = s.size, 1
            elif s.status == ST_END:
                self.range_end = s.pos
                status = ST_EOF
            elif s.status != ST_LIMIT and s.status != ST_FULL:
                self.stop_offset = s.pos
                status = ST_ANOMALY
        self.meta_changed = state[1] != meta0 or state[2] != section0
        pf_bus_leave()
        free(block)
        _ng_free(&ift)
        munmap(m, maplen)
        return status


def ng_first_interface(bytes head, uint32_t max_blocksize):
    """(link type, snapshot length, timestamp units, whether no other interface comes before the
    first packet) of the first interface of a pcapng file
    whose first bytes are `head`, read by the scanner NgCopy walks with, when head holds it
    after sections in this host's byte order only; else None (the general path reads it)."""
    cdef NgIfaces ift
    cdef NgPackets pk
    cdef int64_t state[3]
    cdef Py_ssize_t n = 0, pos = 0
    cdef int64_t info = 0
    cdef uint16_t linktype = 0
    cdef uint32_t snaplen = 0
    cdef int32_t tsmode = 0
    cdef uint64_t units = 0
    cdef int64_t tsoffset = 0, offset = 0, nameoff = 0
    cdef uint16_t namelen = 0
    state[0] = state[1] = state[2] = 0
    ift.capacity = 1
    ift.linktype, ift.snaplen, ift.tsmode, ift.units = &linktype, &snaplen, &tsmode, &units
    ift.tsoffset, ift.offset, ift.nameoff, ift.namelen = &tsoffset, &offset, &nameoff, &namelen
    memset(&pk, 0, sizeof(pk))
    # no packet taken (max_packets 0): the scan stops at the first packet block, or at a second
    # interface (the table full)
    cdef int status = scan_pcapng_blocks(<const uint8_t*>PyBytes_AS_STRING(head), 0, len(head), 0, max_blocksize,
                                         state, &ift, &pk, 0, 0, &n, &pos, &info)
    if state[1] < 1 or state[0] != 0:
        return None
    # (alone: the scan reached a packet block, which it does not take, with one interface;
    # a second one before it would have filled the table)
    return linktype, snaplen, units, status == ST_LIMIT


def ng_sync(int fd, int64_t offset, uint32_t max_blocksize, Py_ssize_t span=1 << 20):
    """The file offset of the first place at or after `offset` (rounded up to the 4-byte
    alignment every pcapng block keeps) where an enhanced packet block plausibly starts
    (_ng_block_at) within the next `span` bytes of fd, or -1: where a range of a pcapng pass may
    start (the range before checks it: its last block must end there)."""
    cdef int64_t at = (offset + 3) & ~(<int64_t>3)
    cdef Py_ssize_t got, q = 0, want = span + 64 * 1024
    cdef int err = 0
    cdef uint8_t* buf = <uint8_t*>malloc(want)
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            got = _pread_full(fd, buf, want, at, &err)
            q = 0
            while q < span and q < got and not _ng_block_at(buf, q, got, max_blocksize):
                q += 4
        if err:
            raise OSError(err, "cannot read the capture")
        return at + q if q < span and q < got else -1
    finally:
        free(buf)
