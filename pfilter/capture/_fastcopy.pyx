# cython: language_level=3
"""The `pfilter -r IN.pcap -w OUT.pcap EXPR` fast path: classic pcap in, classic pcap out, the
records copied as they are, with no Python object and no numpy array anywhere.

Imports the VM's C entry point (pfilter/_vm.pxd) and nothing else from pfilter; pfilter.capture.
fastpath decides when it applies and falls back to filter_file for everything else.

Two workers share the work symmetrically: the calling thread (GIL released) and one helper
thread. Chunks of the file go to them in turn (even chunks to one, odd to the other). A worker
pread()s its chunk into its own buffer, waits until the chunk before has been processed, then
walks the records of its chunk, runs the program over them in one call, and writev()s the runs of
consecutive matching records straight from its buffer to the output; meanwhile the other worker
is reading the next chunk. Copying the file out of the page cache is most of the cost, and one
core alone copies at about half the speed of two. A record cut by the end of a chunk is finished by
copying its first part into the headroom in front of the next chunk (in the other worker's
buffer; reads never touch the headroom), so every record is contiguous. Processing is strictly in
chunk order, so the output is in file order.

The walk only accepts records a plain copy reproduces: caplen at most the file's snapshot length
(and the link type's maximum), header in host byte order. At the first record that is not so, or
at a record cut by the end of the file, it stops and says where (status ANOMALY / TRUNCATED): the
caller then starts over on the general path, which knows libpcap's rules for such records and
their error messages.
"""
from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

from pfilter._vm cimport run_packets

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

cdef extern from "<unistd.h>" nogil:
    ssize_t pread(int fd, void* buf, size_t count, int64_t offset)

include "writev.pxi"



# Status codes (pfilter.capture.fastpath reads them by name from STATUS).
cdef enum:
    ST_EOF = 0         # every record of the file was judged
    ST_ANOMALY = 1     # the record at stop_offset needs the general path (caplen above the limit)
    ST_TRUNCATED = 2   # the file ends inside the record at stop_offset
    ST_COUNT = 3       # max_count matches written
    ST_READ_ERROR = 4  # pread failed: errno in `error`
    ST_WRITE_ERROR = 5 # writev failed: errno in `error`
    ST_CANCELLED = 6   # cancel() was called (from another thread)
    ST_ROTATE = 7      # the output holds more than rotate_size bytes: the matching record at
                       # stop_offset starts the next file (tcpdump -C)

STATUS = {0: "eof", 1: "anomaly", 2: "truncated", 3: "count", 4: "read-error", 5: "write-error",
          6: "cancelled", 7: "rotate"}

cdef enum:
    NWORKERS = 2
    HDR = 16
    IOV_BATCH = 1024

# One chunk: large enough that per-chunk work vanishes, small enough to still be in the CPU
# cache when its records are judged and written (1 MB measured best of 256 KB to 8 MB).
CHUNK_BYTES = 1 << 20


cdef struct Shared:
    # fixed for the pass
    int in_fd
    int out_fd
    int64_t start
    Py_ssize_t chunk
    Py_ssize_t headroom
    const uint8_t* prog
    bint clear_mem
    uint32_t limit
    int64_t max_count
    uint32_t truncate            # > 0: records written cut to this many bytes (editcap -s)
    int64_t rotate_size          # >= 0: stop before a matching record once out_size exceeds it
    int64_t out_size             # bytes in the output file so far (header included)
    volatile int* cancelled
    uint8_t* mem[NWORKERS]       # each worker's buffer: headroom + chunk
    # handed from chunk to chunk under mu
    pthread_mutex_t mu
    pthread_cond_t cv
    int64_t turn                 # the chunk to be processed next
    int finished                 # set once processing must stop
    Py_ssize_t carry             # bytes of a cut record waiting in the headroom of chunk `turn`
    int64_t region_off           # file offset of the first of those bytes
    # results (written by the worker whose turn it is)
    int64_t read, matched, bytes, done, stop_offset
    int status, error


cdef struct Worker:
    Shared* sh
    int id
    int64_t* offsets
    uint32_t* caplens
    uint32_t* wirelens
    uint32_t* verdicts
    iovec* vec


cdef void _finish(Shared* sh, int status, int error, int64_t offset) noexcept nogil:
    """Stop the pass (called by the worker whose turn it is)."""
    pthread_mutex_lock(&sh.mu)
    sh.status, sh.error, sh.stop_offset = status, error, offset
    sh.finished = 1
    pthread_cond_broadcast(&sh.cv)
    pthread_mutex_unlock(&sh.mu)


cdef bint _process(Worker* w, int64_t i, Py_ssize_t length, bint eof) noexcept nogil:
    """Process chunk i (its turn has come); False once the pass is over."""
    cdef Shared* sh = w.sh
    cdef uint8_t* base = sh.mem[w.id]
    cdef Py_ssize_t head = sh.headroom, carry = sh.carry
    cdef Py_ssize_t p = head - carry, end = head + length, n = 0, k = 0, rest
    cdef int64_t region_off = sh.region_off
    cdef uint32_t cap = 0, wire, out_cap
    cdef int nvec = 0, err = 0
    cdef bint rotate = False
    cdef int64_t want = sh.max_count
    cdef int64_t* offsets = w.offsets
    cdef uint32_t* caplens = w.caplens
    cdef iovec* vec = w.vec
    if sh.cancelled[0]:
        _finish(sh, ST_CANCELLED, 0, region_off)
        return False
    # Walk the records of [head - carry, head + length).
    while end - p >= HDR:
        memcpy(&cap, base + p + 8, 4)
        memcpy(&wire, base + p + 12, 4)
        if cap > sh.limit:
            break
        if end - p - HDR < <Py_ssize_t>cap:
            break
        offsets[n] = p + HDR
        caplens[n] = cap
        w.wirelens[n] = wire
        n += 1
        p += HDR + cap
    if n:
        run_packets(sh.prog, sh.clear_mem, base, offsets, caplens, w.wirelens, n, w.verdicts)
    # Write the runs of consecutive matching records.
    for k in range(n):
        sh.read += 1
        if w.verdicts[k] == 0:
            continue
        if sh.rotate_size >= 0 and sh.out_size > sh.rotate_size:
            sh.read -= 1          # judged again at the start of the next file's pass
            rotate = True
            break
        sh.matched += 1
        out_cap = caplens[k]
        if sh.truncate and out_cap > sh.truncate:
            # cut as editcap -s: the header in the buffer says the new length (the record is
            # not read again), the wire length stays
            out_cap = sh.truncate
            memcpy(base + offsets[k] - HDR + 8, &out_cap, 4)
        sh.bytes += out_cap
        sh.out_size += HDR + out_cap
        if nvec and <uint8_t*>vec[nvec - 1].iov_base + vec[nvec - 1].iov_len == base + offsets[k] - HDR:
            vec[nvec - 1].iov_len += HDR + out_cap
        else:
            if nvec == IOV_BATCH:
                if sh.out_fd >= 0:
                    err = write_all(sh.out_fd, vec, nvec)
                    if err:
                        break
                nvec = 0
            vec[nvec].iov_base = <void*>(base + offsets[k] - HDR)
            vec[nvec].iov_len = HDR + out_cap
            nvec += 1
        if want >= 0 and sh.matched >= want:
            break
    if not err and nvec and sh.out_fd >= 0:
        err = write_all(sh.out_fd, vec, nvec)
    if err:
        _finish(sh, ST_WRITE_ERROR, err, region_off)
        return False
    if rotate:
        sh.done = region_off + (offsets[k] - HDR) - (head - carry)
        _finish(sh, ST_ROTATE, 0, sh.done)
        return False
    if want >= 0 and sh.matched >= want:
        sh.done = region_off + (offsets[k] + caplens[k]) - (head - carry)
        _finish(sh, ST_COUNT, 0, sh.done)
        return False
    sh.done = region_off + (p - (head - carry))
    rest = end - p
    if rest >= HDR and cap > sh.limit:
        _finish(sh, ST_ANOMALY, 0, sh.done)
        return False
    if eof:
        _finish(sh, ST_TRUNCATED if rest else ST_EOF, 0, sh.done)
        return False
    # Hand the cut record to the next chunk's buffer (its headroom), and the turn with it.
    if rest:
        memcpy(sh.mem[(w.id + 1) % NWORKERS] + head - rest, base + p, <size_t>rest)
    pthread_mutex_lock(&sh.mu)
    sh.carry = rest
    sh.region_off = sh.done
    sh.turn = i + 1
    pthread_cond_broadcast(&sh.cv)
    pthread_mutex_unlock(&sh.mu)
    return True


cdef void* _work(void* arg) noexcept nogil:
    """A worker: read chunks id, id + NWORKERS, ...; process each when its turn comes."""
    cdef Worker* w = <Worker*>arg
    cdef Shared* sh = w.sh
    cdef int64_t i = w.id, offset
    cdef Py_ssize_t got, n
    cdef int err
    cdef bint eof, go
    cdef uint8_t* buf = sh.mem[w.id] + sh.headroom
    while True:
        offset = sh.start + i * sh.chunk
        got = 0
        err = 0
        eof = False
        while got < sh.chunk:
            n = pread(sh.in_fd, buf + got, <size_t>(sh.chunk - got), offset + got)
            if n < 0:
                if errno == EINTR:
                    continue
                err = errno
                break
            if n == 0:
                eof = True
                break
            got += n
        pthread_mutex_lock(&sh.mu)
        while sh.turn != i and not sh.finished:
            pthread_cond_wait(&sh.cv, &sh.mu)
        go = not sh.finished
        pthread_mutex_unlock(&sh.mu)
        if not go:
            return NULL
        if err:
            _finish(sh, ST_READ_ERROR, err, sh.region_off)
            return NULL
        if not _process(w, i, got, eof):
            return NULL
        i += NWORKERS


cdef class PcapCopy:
    """One pass over a classic, host-byte-order pcap file from `start` (the first record) to its
    end: records whose program verdict is non-zero are written to out_fd (-1: only count),
    cut to `truncate` bytes when that is > 0 (editcap -s). rotate_size >= 0: the pass stops
    (status "rotate", stop_offset the record's file offset) before a matching record once the
    output holds more than rotate_size bytes (out_size: its size at the start), so that the
    caller starts the next file and a new pass from there (tcpdump -C).
    `limit`: the largest caplen copied as is (min of snapshot length and link type maximum).
    After run(): read, matched, written, bytes (captured bytes written), stop_offset, status,
    error; `done` (file offset reached), `read` and `matched` may be read from another thread
    while it runs."""

    cdef bytes prog
    cdef bint clear_mem
    cdef int in_fd, out_fd
    cdef int64_t start
    cdef uint32_t limit
    cdef int64_t max_count
    cdef uint32_t truncate
    cdef int64_t rotate_size
    cdef Py_ssize_t chunk
    cdef Shared* sh
    cdef readonly int64_t written
    cdef volatile int cancelled
    cdef bint ran

    def __init__(self, bytes decoded_program, bint clear_mem, int in_fd, int out_fd, int64_t start,
                 uint32_t limit, int64_t max_count=-1, Py_ssize_t chunk=CHUNK_BYTES,
                 uint32_t truncate=0, int64_t rotate_size=-1, int64_t out_size=0):
        if not decoded_program:
            raise ValueError("empty program")
        self.prog = decoded_program
        self.clear_mem = clear_mem
        self.in_fd, self.out_fd = in_fd, out_fd
        self.start, self.limit = start, limit
        self.max_count = max_count if max_count > 0 else -1
        self.truncate = truncate
        self.rotate_size = rotate_size if rotate_size >= 0 else -1
        self.chunk = max(chunk, 1 << 16)
        self.written = 0
        self.cancelled = 0
        self.ran = False
        self.sh = <Shared*>malloc(sizeof(Shared))
        if self.sh == NULL:
            raise MemoryError()
        self.sh.read = self.sh.matched = self.sh.bytes = 0
        self.sh.done = self.sh.stop_offset = start
        self.sh.out_size = out_size
        self.sh.status = ST_EOF
        self.sh.error = 0

    def __dealloc__(self):
        free(self.sh)

    @property
    def read(self):
        return self.sh.read

    @property
    def matched(self):
        return self.sh.matched

    @property
    def bytes(self):
        return self.sh.bytes

    @property
    def done(self):
        return self.sh.done

    @property
    def out_size(self):
        return self.sh.out_size

    @property
    def stop_offset(self):
        return self.sh.stop_offset

    @property
    def status(self):
        return self.sh.status

    @property
    def error(self):
        return self.sh.error

    def cancel(self):
        """Ask a running pass (in another thread) to stop at the next chunk."""
        self.cancelled = 1

    def run(self):
        """Do the pass (GIL released); returns the status name."""
        cdef Shared* sh = self.sh
        cdef Worker workers[NWORKERS]
        cdef pthread_t thread
        cdef Py_ssize_t cap_records = self.chunk // HDR + 2
        cdef int i, ok = 1, started = 0
        if self.ran:
            raise RuntimeError("a PcapCopy runs once")
        self.ran = True
        sh.in_fd, sh.out_fd, sh.start = self.in_fd, self.out_fd, self.start
        sh.chunk, sh.headroom = self.chunk, HDR + self.limit
        sh.prog = self.prog
        sh.clear_mem, sh.limit, sh.max_count = self.clear_mem, self.limit, self.max_count
        sh.truncate, sh.rotate_size = self.truncate, self.rotate_size
        sh.cancelled = &self.cancelled
        sh.turn, sh.finished, sh.carry, sh.region_off = 0, 0, 0, self.start
        for i in range(NWORKERS):
            sh.mem[i] = <uint8_t*>malloc(sh.headroom + self.chunk)
            workers[i].sh = sh
            workers[i].id = i
            workers[i].offsets = <int64_t*>malloc(cap_records * sizeof(int64_t))
            workers[i].caplens = <uint32_t*>malloc(cap_records * sizeof(uint32_t))
            workers[i].wirelens = <uint32_t*>malloc(cap_records * sizeof(uint32_t))
            workers[i].verdicts = <uint32_t*>malloc(cap_records * sizeof(uint32_t))
            workers[i].vec = <iovec*>malloc(IOV_BATCH * sizeof(iovec))
            if (sh.mem[i] == NULL or workers[i].offsets == NULL or workers[i].caplens == NULL
                    or workers[i].wirelens == NULL or workers[i].verdicts == NULL or workers[i].vec == NULL):
                ok = 0
        try:
            if not ok:
                raise MemoryError()
            pthread_mutex_init(&sh.mu, NULL)
            pthread_cond_init(&sh.cv, NULL)
            with nogil:
                if pthread_create(&thread, NULL, _work, &workers[1]) == 0:
                    started = 1
                    _work(&workers[0])
                    pthread_join(thread, NULL)
            pthread_cond_destroy(&sh.cv)
            pthread_mutex_destroy(&sh.mu)
            if not started:
                raise OSError("cannot start a worker thread")
        finally:
            for i in range(NWORKERS):
                free(sh.mem[i])
                free(workers[i].offsets)
                free(workers[i].caplens)
                free(workers[i].wirelens)
                free(workers[i].verdicts)
                free(workers[i].vec)
        self.written = sh.matched if self.out_fd >= 0 else 0
        return STATUS[sh.status]

