# cython: language_level=3
"""Record assemblers for the writers: selected packets of a batch laid out as pcap records or
pcapng Enhanced Packet Blocks (little-endian) in one output buffer, in C with the GIL released.

Imports nothing from pfilter. pfilter/capture/writer.py sizes the buffer, calls these, and holds
the pure-Python fallback with the same results. The assemblers trust none of the arrays they are
handed (a PacketBatch's arrays are writable): each selected index, each packet's bounds in data
(without overflow, as pfilter._vm checks them), the record header room in front of it and the
room left in out are checked as the packet is copied; a failure stops the copy and is returned as
-1 - i for packet i (or -1 - len(offsets) for an index outside the batch).
"""
from libc.stdint cimport uint8_t, uint32_t, int64_t, uint64_t
from libc.errno cimport EINVAL
from libc.string cimport memcpy

include "writev.pxi"


cdef inline void put32(uint8_t* p, uint32_t v) noexcept nogil:
    p[0] = v & 0xFF
    p[1] = (v >> 8) & 0xFF
    p[2] = (v >> 16) & 0xFF
    p[3] = (v >> 24) & 0xFF


cdef extern from *:
    """
    static inline uint32_t pfw_bswap32(uint32_t v) { return __builtin_bswap32(v); }
    """
    uint32_t pfw_bswap32(uint32_t v) nogil


cdef inline bint inside(int64_t offset, uint32_t caplen, Py_ssize_t size) noexcept nogil:
    """Whether bytes [offset, offset + caplen) lie in a buffer of `size` bytes (no overflow)."""
    return 0 <= offset <= size and <int64_t>caplen <= size - offset


cdef inline int64_t selected(const int64_t* index, Py_ssize_t k, const int64_t* offsets,
                             const uint32_t* caplen, Py_ssize_t npk, Py_ssize_t size, int64_t before,
                             int64_t record, bint pad, Py_ssize_t room) noexcept nogil:
    """Packet index[k] when it is in the batch, lies in data (from `before`: room for a record
    header) and its record (record bytes + caplen, rounded up to 4 when pad) fits in `room`;
    else the failure code: -1 - npk for an index outside the batch, -1 - i for packet i."""
    cdef int64_t i = index[k]
    if not 0 <= i < npk:
        return -1 - npk
    cdef int64_t need = record + ((<int64_t>caplen[i] + 3) & ~(<int64_t>3) if pad else <int64_t>caplen[i])
    if not inside(offsets[i], caplen[i], size) or offsets[i] < before or need > room:
        return -1 - i
    return i


include "_split_ts.pxi"


def pcap_records(const uint8_t[::1] data, const int64_t[::1] offsets, const uint32_t[::1] caplen,
                 const uint32_t[::1] wirelen, const int64_t[::1] stamps, const int64_t[::1] index,
                 bint nsec, uint8_t[::1] out, int raw_back=0, bint raw_swapped=False):
    """Write packets data[offsets[i]:+caplen[i]] for i in index as pcap records into out;
    returns the bytes written (out must hold 16 * len(index) + their caplens), or -1 - i when
    packet i (index or bounds) is bad.

    raw_back > 0: each packet's own pcap record header starts raw_back bytes before its data
    (the batch is a pcap window of the same timestamp resolution): its seconds and fraction
    fields are copied as they are (byte-swapped when raw_swapped), as libpcap hands them to
    tcpdump, rather than recomputed from the timestamp."""
    cdef Py_ssize_t k, n = index.shape[0], pos = 0, npk = offsets.shape[0], size = data.shape[0]
    cdef Py_ssize_t room = out.shape[0]
    cdef int64_t i
    cdef uint32_t sec, frac, cap
    cdef uint8_t* o = &out[0] if out.shape[0] > 0 else NULL
    cdef const uint8_t* d = &data[0] if data.shape[0] > 0 else NULL
    if caplen.shape[0] != npk or wirelen.shape[0] != npk or stamps.shape[0] != npk or raw_back < 0:
        raise ValueError("pcap_records: arrays differ in length")
    cdef const int64_t* ix = &index[0] if n > 0 else NULL
    cdef const int64_t* offs = &offsets[0] if npk > 0 else NULL
    cdef const uint32_t* caps = &caplen[0] if npk > 0 else NULL
    with nogil:
        for k in range(n):
            i = selected(ix, k, offs, caps, npk, size, raw_back, 16, False, room - pos)
            if i < 0:
                pos = i
                break
            cap = caplen[i]
            if raw_back > 0:
                memcpy(&sec, d + offsets[i] - raw_back, 4)
                memcpy(&frac, d + offsets[i] - raw_back + 4, 4)
                if raw_swapped:
                    sec = pfw_bswap32(sec)
                    frac = pfw_bswap32(frac)
            else:
                split_ts(stamps[i], nsec, &sec, &frac)
            put32(o + pos, sec)
            put32(o + pos + 4, frac)
            put32(o + pos + 8, cap)
            put32(o + pos + 12, wirelen[i])
            if cap:
                memcpy(o + pos + 16, d + offsets[i], cap)
            pos += 16 + cap
    return pos


def pcapng_epbs(const uint8_t[::1] data, const int64_t[::1] offsets, const uint32_t[::1] caplen,
                const uint32_t[::1] wirelen, const int64_t[::1] stamps, const int64_t[::1] index,
                const uint32_t[::1] iface_out, bint nsec, uint8_t[::1] out):
    """Write packets i in index as Enhanced Packet Blocks on interface iface_out[k] (k-th selected
    packet), timestamps in ns (nsec) or us units; returns the bytes written (out must hold
    32 * len(index) + their caplens rounded up to 4), or -1 - i when packet i is bad."""
    cdef Py_ssize_t k, n = index.shape[0], pos = 0, npk = offsets.shape[0], size = data.shape[0]
    cdef Py_ssize_t room = out.shape[0]
    cdef int64_t i
    cdef uint32_t cap, padded, total, j
    cdef uint64_t t
    cdef int64_t ts
    cdef uint8_t* o = &out[0] if out.shape[0] > 0 else NULL
    cdef const uint8_t* d = &data[0] if data.shape[0] > 0 else NULL
    if (caplen.shape[0] != npk or wirelen.shape[0] != npk or stamps.shape[0] != npk
            or iface_out.shape[0] < n):
        raise ValueError("pcapng_epbs: arrays differ in length")
    cdef const int64_t* ix = &index[0] if n > 0 else NULL
    cdef const int64_t* offs = &offsets[0] if npk > 0 else NULL
    cdef const uint32_t* caps = &caplen[0] if npk > 0 else NULL
    with nogil:
        for k in range(n):
            i = selected(ix, k, offs, caps, npk, size, 0, 32, True, room - pos)
            if i < 0:
                pos = i
                break
            cap = caplen[i]
            padded = (cap + 3) & ~(<uint32_t>3)
            total = 32 + padded
            ts = stamps[i]
            if not nsec:
                ts = ts // 1000 if ts >= 0 else -((-ts + 999) // 1000)
            t = <uint64_t>ts
            put32(o + pos, 6)
            put32(o + pos + 4, total)
            put32(o + pos + 8, iface_out[k])
            put32(o + pos + 12, <uint32_t>(t >> 32))
            put32(o + pos + 16, <uint32_t>t)
            put32(o + pos + 20, cap)
            put32(o + pos + 24, wirelen[i])
            if cap:
                memcpy(o + pos + 28, d + offsets[i], cap)
            for j in range(cap, padded):
                o[pos + 28 + j] = 0
            put32(o + pos + 28 + padded, total)
            pos += total
    return pos


def pcap_verbatim_runs(const uint8_t[::1] data, const int64_t[::1] offsets,
                       const uint32_t[::1] caplen, const uint32_t[::1] wirelen,
                       const int64_t[::1] index, int64_t[::1] starts, int64_t[::1] ends):
    """When every selected packet's 16-byte record header, just before its data, already says
    what this writer would write (host byte order, caplen and wirelen as in the batch; the
    caller has checked byte order and resolution), fill starts/ends with the byte ranges of
    data holding those records, consecutive records merged, and return how many; else -1 (also
    for an index or a packet out of bounds: the caller's general path then reports it)."""
    cdef Py_ssize_t k, n = index.shape[0], runs = 0, npk = offsets.shape[0], size = data.shape[0]
    cdef int64_t i, start, end
    cdef uint32_t c, w
    cdef const uint8_t* d = &data[0] if data.shape[0] > 0 else NULL
    if caplen.shape[0] != npk or wirelen.shape[0] != npk or starts.shape[0] < n or ends.shape[0] < n:
        return -1
    with nogil:
        for k in range(n):
            i = index[k]
            if not 0 <= i < npk or not inside(offsets[i], caplen[i], size):
                runs = -1
                break
            start = offsets[i] - 16
            if start < 0:
                runs = -1
                break
            memcpy(&c, d + start + 8, 4)
            memcpy(&w, d + start + 12, 4)
            if c != caplen[i] or w != wirelen[i]:
                runs = -1
                break
            end = offsets[i] + c
            if runs > 0 and ends[runs - 1] == start:
                ends[runs - 1] = end
            else:
                starts[runs] = start
                ends[runs] = end
                runs += 1
    return runs


def write_runs(int fd, const uint8_t[::1] data, const int64_t[::1] starts, const int64_t[::1] ends,
               Py_ssize_t runs):
    """writev() the ranges data[starts[r]:ends[r]] to fd in order, straight from the buffer
    (a memory map of the input), IOV_MAX at a time, finishing partial writes. Returns 0, or the
    errno of a failed write (EINVAL for a range outside data)."""
    cdef int err = 0
    cdef Py_ssize_t r, size = data.shape[0]
    if runs <= 0:
        return 0
    if runs > starts.shape[0] or runs > ends.shape[0]:
        return EINVAL
    for r in range(runs):
        if not 0 <= starts[r] <= ends[r] <= size:
            return EINVAL
    with nogil:
        err = write_ranges(fd, &data[0], &starts[0], &ends[0], runs)
    return err


# Swapping two names atomically, for committing an output over an existing file
# (pfilter.capture.files.AtomicFile).
cdef extern from *:
    """
    #include <fcntl.h>
    #include <stdio.h>
    #include <sys/syscall.h>
    #include <unistd.h>
    static int pf_exchange(const char* a, const char* b) {
    #if defined(SYS_renameat2)
        return (int)syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 2 /* RENAME_EXCHANGE */);
    #else
        return -1;
    #endif
    }
    """
    int pf_exchange(const char* a, const char* b) nogil


def exchange_paths(bytes a, bytes b):
    """Atomically swap the files named a and b (renameat2 RENAME_EXCHANGE, same filesystem).
    True when done; False when this system or filesystem cannot (EINVAL, ENOSYS, ...)."""
    cdef const char* pa = a
    cdef const char* pb = b
    cdef int r
    with nogil:
        r = pf_exchange(pa, pb)
    return r == 0


# ----------------------------------------------------------------------------- duplicates

cdef inline uint64_t _mix(uint64_t h) noexcept nogil:
    h ^= h >> 33
    h *= <uint64_t>0xFF51AFD7ED558CCD
    h ^= h >> 33
    h *= <uint64_t>0xC4CEB9FE1A85EC53
    h ^= h >> 33
    return h


cdef inline void _digest(const uint8_t* p, uint32_t n, uint64_t* h1, uint64_t* h2) noexcept nogil:
    """Two independent 64-bit hashes of p[0:n] (a 128-bit digest, as editcap's MD5 is)."""
    cdef uint64_t a = <uint64_t>0x9E3779B97F4A7C15 ^ n, b = <uint64_t>0xD6E8FEB86659FD93 + n, w
    cdef uint32_t i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        a = (a ^ w) * <uint64_t>0x100000001B3
        a ^= a >> 29
        b = (b + w) * <uint64_t>0xC2B2AE3D27D4EB4F
        b = (b << 31) | (b >> 33)
        i += 8
    w = 0
    if i < n:
        memcpy(&w, p + i, n - i)
        a = (a ^ w) * <uint64_t>0x100000001B3
        b = (b + w) * <uint64_t>0xC2B2AE3D27D4EB4F
    h1[0] = _mix(a)
    h2[0] = _mix(b ^ <uint64_t>0x632BE59BD9B4E019)


def dedup_select(const uint8_t[::1] data, const int64_t[::1] offsets, const uint32_t[::1] caplen,
                 const int64_t[::1] index, uint64_t[::1] ring1, uint64_t[::1] ring2,
                 uint32_t[::1] ringlen, int64_t[::1] state, int64_t[::1] keep):
    """editcap -D: of the packets `index` (in order), keep in `keep` those whose captured length
    and bytes (a 128-bit digest) equal none of the previous window - 1 packets' (window =
    len(ring1); every packet, kept or not, enters the window, as editcap's does). The ring
    arrays and state ([position, entries filled]) carry the window from call to call. Returns
    how many were kept, or -1 - i when packet i (index or bounds) is bad."""
    cdef Py_ssize_t k, n = index.shape[0], npk = offsets.shape[0], size = data.shape[0]
    cdef Py_ssize_t w = ring1.shape[0], j, kept = 0
    cdef int64_t i, pos = state[0], filled = state[1]
    cdef uint64_t h1, h2
    cdef uint32_t cap
    cdef bint dup
    cdef const uint8_t* d = &data[0] if data.shape[0] > 0 else NULL
    if caplen.shape[0] != npk or ring2.shape[0] != w or ringlen.shape[0] != w or w < 1:
        raise ValueError("dedup_select: arrays differ in length")
    if keep.shape[0] < n or state.shape[0] < 2:
        raise ValueError("dedup_select: output too small")
    with nogil:
        for k in range(n):
            i = index[k]
            if not 0 <= i < npk:
                kept = -1 - npk
                break
            cap = caplen[i]
            if not inside(offsets[i], cap, size):
                kept = -1 - i
                break
            _digest(d + offsets[i] if cap else d, cap, &h1, &h2)
            pos = (pos + 1) % w
            ring1[pos], ring2[pos], ringlen[pos] = h1, h2, cap
            if filled < w:
                filled += 1
            dup = False
            for j in range(filled if filled < w else w):
                if j != pos and ring1[j] == h1 and ring2[j] == h2 and ringlen[j] == cap:
                    dup = True
                    break
            if not dup:
                keep[kept] = i
                kept += 1
    if kept >= 0:
        state[0], state[1] = pos, filled
    return kept
