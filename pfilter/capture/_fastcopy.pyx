# cython: language_level=3
"""The `pfilter -r IN.pcap -w OUT.pcap EXPR` fast path: classic pcap in, classic pcap out, the
records copied as they are, with no Python object and no numpy array anywhere.

Imports the VM's C entry point (pfilter/_vm.pxd) and nothing else from pfilter; pfilter.capture.
fastpath decides when it applies and falls back to filter_file for everything else.

Two threads share the work: a reader thread pread()s the file into a ring of chunk buffers
(copying the file from the page cache is the floor of the whole pass), while the calling thread (GIL released) walks the records of each chunk, runs the
program over them in one call, and writev()s the runs of consecutive matching records straight
from the chunk buffer to the output. A record cut by a chunk's end is finished by copying its
first part into the headroom in front of the next chunk, so every record is contiguous.

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

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void* iov_base
        size_t iov_len
    ssize_t writev(int fd, const iovec* iov, int iovcnt)

cdef extern from "<errno.h>":
    int errno
    int EINTR
    int ENOMEM

# Status codes (pfilter.capture.fastpath reads them by name from STATUS).
cdef enum:
    ST_EOF = 0         # every record of the file was judged
    ST_ANOMALY = 1     # the record at stop_offset needs the general path (caplen above the limit)
    ST_TRUNCATED = 2   # the file ends inside the record at stop_offset
    ST_COUNT = 3       # max_count matches written
    ST_READ_ERROR = 4  # pread failed: errno in `error`
    ST_WRITE_ERROR = 5 # writev failed: errno in `error`
    ST_CANCELLED = 6   # cancel() was called (from another thread)

STATUS = {0: "eof", 1: "anomaly", 2: "truncated", 3: "count", 4: "read-error", 5: "write-error",
          6: "cancelled"}

cdef enum:
    NSLOTS = 4
    # Reader threads, each taking every NREADERS-th chunk. Measured on 1 GB (2 cores): two
    # readers were no faster than one (0.10-0.14 s vs 0.10-0.12 s): the copy is bound by memory,
    # not by a core, and a second reader only takes a core from the filtering.
    NREADERS = 1
    HDR = 16
    IOV_BATCH = 1024

# One chunk: large enough that per-chunk work vanishes, small enough to still be in the CPU
# cache (L2/L3) when the records are judged and written.
CHUNK_BYTES = 1 << 20


cdef struct Slot:
    uint8_t* mem        # headroom + chunk
    Py_ssize_t length   # bytes read at mem + headroom
    int full
    int eof
    int error


cdef struct Ring:
    int fd
    int64_t start
    Py_ssize_t chunk
    Py_ssize_t headroom
    Slot slots[NSLOTS]
    pthread_mutex_t mu
    pthread_cond_t cv
    int stop


cdef struct Reader:
    Ring* ring
    Py_ssize_t first    # this thread reads chunks first, first + NREADERS, ...


cdef void* _reader_main(void* arg) noexcept nogil:
    cdef Reader* me = <Reader*>arg
    cdef Ring* r = me.ring
    cdef Py_ssize_t i = me.first, got, n
    cdef int64_t offset
    cdef Slot* s
    cdef int eof = 0, err = 0
    while not eof and not err:
        s = &r.slots[i % NSLOTS]
        pthread_mutex_lock(&r.mu)
        while s.full and not r.stop:
            pthread_cond_wait(&r.cv, &r.mu)
        if r.stop:
            pthread_mutex_unlock(&r.mu)
            break
        pthread_mutex_unlock(&r.mu)
        offset = r.start + <int64_t>i * r.chunk
        got = 0
        while got < r.chunk:
            n = pread(r.fd, s.mem + r.headroom + got, <size_t>(r.chunk - got), offset + got)
            if n < 0:
                if errno == EINTR:
                    continue
                err = errno
                break
            if n == 0:
                eof = 1
                break
            got += n
        pthread_mutex_lock(&r.mu)
        s.length = got
        s.eof = eof
        s.error = err
        s.full = 1
        pthread_cond_broadcast(&r.cv)
        pthread_mutex_unlock(&r.mu)
        i += NREADERS
    return NULL


cdef int _write_all(int fd, iovec* vec, int cnt) noexcept nogil:
    """writev every byte of vec[0:cnt]; 0 or errno."""
    cdef int j = 0
    cdef ssize_t got
    while j < cnt:
        got = writev(fd, &vec[j], cnt - j)
        if got < 0:
            if errno == EINTR:
                continue
            return errno
        while j < cnt and got >= <ssize_t>vec[j].iov_len:
            got -= vec[j].iov_len
            j += 1
        if j < cnt and got > 0:
            vec[j].iov_base = <void*>(<uint8_t*>vec[j].iov_base + got)
            vec[j].iov_len -= got
    return 0


cdef class PcapCopy:
    """One pass over a classic, host-byte-order pcap file from `start` (the first record) to its
    end: records whose program verdict is non-zero are written to out_fd (-1: only count).
    `limit`: the largest caplen copied as is (min of snapshot length and link type maximum).
    After run(): read, matched, written, bytes (captured bytes written), stop_offset, status,
    error; `done` (file offset reached) may be read from another thread while it runs."""

    cdef bytes prog
    cdef bint clear_mem
    cdef int in_fd, out_fd
    cdef int64_t start
    cdef uint32_t limit
    cdef int64_t max_count
    cdef Py_ssize_t chunk
    cdef readonly int64_t read, matched, written, bytes, stop_offset, done
    cdef readonly int status, error
    cdef volatile int cancelled

    def __init__(self, bytes decoded_program, bint clear_mem, int in_fd, int out_fd, int64_t start,
                 uint32_t limit, int64_t max_count=-1, Py_ssize_t chunk=CHUNK_BYTES):
        if not decoded_program:
            raise ValueError("empty program")
        self.prog = decoded_program
        self.clear_mem = clear_mem
        self.in_fd, self.out_fd = in_fd, out_fd
        self.start, self.limit = start, limit
        self.max_count = max_count if max_count > 0 else -1
        self.chunk = max(chunk, 1 << 16)
        self.read = self.matched = self.written = self.bytes = 0
        self.stop_offset = start
        self.done = start
        self.status = ST_EOF
        self.error = 0
        self.cancelled = 0

    def cancel(self):
        """Ask a running pass (in another thread) to stop after the chunk in hand."""
        self.cancelled = 1

    def run(self):
        """Do the pass (GIL released); returns the status name."""
        cdef Ring ring
        cdef pthread_t threads[NREADERS]
        cdef Reader readers[NREADERS]
        cdef Py_ssize_t headroom = HDR + self.limit
        cdef Py_ssize_t cap_records = self.chunk // HDR + 2
        cdef int64_t* offsets = <int64_t*>malloc(cap_records * sizeof(int64_t))
        cdef uint32_t* caplens = <uint32_t*>malloc(cap_records * sizeof(uint32_t))
        cdef uint32_t* wirelens = <uint32_t*>malloc(cap_records * sizeof(uint32_t))
        cdef uint32_t* verdicts = <uint32_t*>malloc(cap_records * sizeof(uint32_t))
        cdef iovec* vec = <iovec*>malloc(IOV_BATCH * sizeof(iovec))
        cdef int i, allocated = 0, started = 0
        cdef const uint8_t* prog = self.prog
        ring.fd = self.in_fd
        ring.start = self.start
        ring.chunk = self.chunk
        ring.headroom = headroom
        ring.stop = 0
        for i in range(NSLOTS):
            ring.slots[i].mem = <uint8_t*>malloc(headroom + self.chunk)
            ring.slots[i].full = ring.slots[i].eof = ring.slots[i].error = 0
            ring.slots[i].length = 0
            if ring.slots[i].mem != NULL:
                allocated += 1
        try:
            if (allocated < NSLOTS or offsets == NULL or caplens == NULL or wirelens == NULL
                    or verdicts == NULL or vec == NULL):
                raise MemoryError()
            pthread_mutex_init(&ring.mu, NULL)
            pthread_cond_init(&ring.cv, NULL)
            with nogil:
                for i in range(NREADERS):
                    readers[i].ring = &ring
                    readers[i].first = i
                    if pthread_create(&threads[i], NULL, _reader_main, &readers[i]) != 0:
                        break
                    started += 1
                if started == NREADERS:
                    self._consume(&ring, prog, offsets, caplens, wirelens, verdicts, vec)
                pthread_mutex_lock(&ring.mu)
                ring.stop = 1
                pthread_cond_broadcast(&ring.cv)
                pthread_mutex_unlock(&ring.mu)
                for i in range(started):
                    pthread_join(threads[i], NULL)
            pthread_cond_destroy(&ring.cv)
            pthread_mutex_destroy(&ring.mu)
            if started < NREADERS:
                raise OSError("cannot start the reader threads")
        finally:
            for i in range(NSLOTS):
                free(ring.slots[i].mem)
            free(offsets)
            free(caplens)
            free(wirelens)
            free(verdicts)
            free(vec)
        return STATUS[self.status]

    cdef void _consume(self, Ring* ring, const uint8_t* prog, int64_t* offsets, uint32_t* caplens,
                       uint32_t* wirelens, uint32_t* verdicts, iovec* vec) noexcept nogil:
        cdef Py_ssize_t idx = 0, n, k = 0, p, end, carry = 0, head = ring.headroom
        cdef Slot* s
        cdef Slot* prev = NULL
        cdef uint8_t* base
        cdef uint32_t cap = 0, wire
        cdef int64_t region_off = self.start      # file offset of the byte at base + head - carry
        cdef int nvec, err
        cdef bint last
        cdef int64_t want = self.max_count
        while True:
            s = &ring.slots[idx % NSLOTS]
            pthread_mutex_lock(&ring.mu)
            while not s.full:
                pthread_cond_wait(&ring.cv, &ring.mu)
            pthread_mutex_unlock(&ring.mu)
            base = s.mem
            if carry:
                memcpy(base + head - carry, prev.mem + head + prev.length - carry, <size_t>carry)
            if prev != NULL:
                pthread_mutex_lock(&ring.mu)
                prev.full = 0
                pthread_cond_broadcast(&ring.cv)
                pthread_mutex_unlock(&ring.mu)
            if self.cancelled:
                self.status = ST_CANCELLED
                self.stop_offset = region_off
                return
            if s.error:
                self.status, self.error = ST_READ_ERROR, s.error
                self.stop_offset = region_off
                return
            # Walk the records of [head - carry, head + length).
            p = head - carry
            end = head + s.length
            n = 0
            while end - p >= HDR:
                memcpy(&cap, base + p + 8, 4)
                memcpy(&wire, base + p + 12, 4)
                if cap > self.limit:
                    break
                if end - p - HDR < <Py_ssize_t>cap:
                    break
                offsets[n] = p + HDR
                caplens[n] = cap
                wirelens[n] = wire
                n += 1
                p += HDR + cap
            if n:
                run_packets(prog, self.clear_mem, base, offsets, caplens, wirelens, n, verdicts)
            # Write the runs of consecutive matching records.
            nvec = 0
            err = 0
            for k in range(n):
                self.read += 1
                if verdicts[k] == 0:
                    continue
                self.matched += 1
                self.bytes += caplens[k]
                if nvec and <uint8_t*>vec[nvec - 1].iov_base + vec[nvec - 1].iov_len == base + offsets[k] - HDR:
                    vec[nvec - 1].iov_len += HDR + caplens[k]
                else:
                    if nvec == IOV_BATCH:
                        if self.out_fd >= 0:
                            err = _write_all(self.out_fd, vec, nvec)
                            if err:
                                break
                        nvec = 0
                    vec[nvec].iov_base = <void*>(base + offsets[k] - HDR)
                    vec[nvec].iov_len = HDR + caplens[k]
                    nvec += 1
                if want >= 0 and self.matched >= want:
                    break
            if not err and nvec and self.out_fd >= 0:
                err = _write_all(self.out_fd, vec, nvec)
            if err:
                self.status, self.error = ST_WRITE_ERROR, err
                self.stop_offset = region_off
                return
            self.written = self.matched if self.out_fd >= 0 else 0
            if want >= 0 and self.matched >= want:
                self.status = ST_COUNT
                self.stop_offset = region_off + (offsets[k] + caplens[k]) - (head - carry)
                self.done = self.stop_offset
                return
            self.done = region_off + (p - (head - carry))
            carry = end - p
            last = s.eof
            if carry >= HDR and cap > self.limit:
                self.status = ST_ANOMALY
                self.stop_offset = self.done
                return
            if last:
                self.stop_offset = self.done
                self.status = ST_TRUNCATED if carry else ST_EOF
                return
            region_off = self.done
            prev = s
            idx += 1
