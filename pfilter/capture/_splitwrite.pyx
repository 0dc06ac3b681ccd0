# cython: language_level=3
"""The `--split` fast path: a batch's records, as they sit in the read buffer, written to many
pcap files at once, in C with the GIL released.

Imports nothing from pfilter. pfilter.capture.split (FastSplit) decides when it applies (classic
pcap in and out, host byte order, same timestamp resolution, no truncation, duplicate removal,
rotation or compression) and falls back to the writers of pfilter.capture.writer otherwise.

verbatim_records checks (in the thread that read the batch) how many of its records can be copied
as they are; write_selected then walks those packets once, and for every set bit of a packet's
row of the (packed) selection matrix extends that output's list of byte ranges (consecutive
records merged into one range), and writev()s each output's ranges straight from the buffer (one copy:
the kernel's, into the page cache), a chunk of packets at a time. Threads of
pfilter.capture.split call write_selected for disjoint sets of outputs at the same time.
"""
from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.string cimport memcpy

include "writev.pxi"


def verbatim_records(const uint8_t[::1] data, const int64_t[::1] offsets, const uint32_t[::1] caplen,
                     const uint32_t[::1] wirelen):
    """How many of the batch's packets, from the first, lie in data behind a 16-byte pcap
    record header that says their caplen and wirelen (host byte order): records that can be
    copied as they are."""
    cdef Py_ssize_t n = offsets.shape[0], size = data.shape[0], i
    cdef const uint8_t* d = &data[0] if size > 0 else NULL
    if caplen.shape[0] != n or wirelen.shape[0] != n:
        raise ValueError("verbatim_records: arrays differ in length")
    with nogil:
        for i in range(n):
            if not _verbatim(d, size, offsets[i], caplen[i], wirelen[i]):
                break
        else:
            i = n
    return i


cdef inline bint _verbatim(const uint8_t* d, Py_ssize_t size, int64_t offset, uint32_t cap,
                           uint32_t wire) noexcept nogil:
    cdef uint32_t c, w
    if offset < 16 or offset > size or <int64_t>cap > size - offset:
        return False
    memcpy(&c, d + offset - 8, 4)
    memcpy(&w, d + offset - 4, 4)
    return c == cap and w == wire


cdef extern from *:
    """
    static inline int pfs_top_bit(unsigned int v) { return 31 - __builtin_clz(v); }
    """
    int pfs_top_bit(unsigned int v) nogil


def write_selected(const int64_t[::1] fds, const uint8_t[::1] data, const int64_t[::1] offsets,
                 const uint32_t[::1] caplen, const uint8_t[:, ::1] bits, const uint8_t[::1] mask,
                 const int64_t[::1] slot, int64_t[:, ::1] starts, int64_t[:, ::1] ends,
                 int64_t[::1] runs, int64_t[::1] nbytes, int64_t[::1] npackets):
    """Write to fds[k], for every k, the records of the packets i whose row of `bits` (the
    selection packed as np.packbits(..., axis=1) packs it: column c is bit 7 - c % 8 of byte
    c // 8) has a column c set that `mask` (bits packed alike) has set too and slot[c] == k; in
    order, straight from data (writev; consecutive records in one range), starts.shape[1]
    packets at a time (starts, ends: range lists, one row per k; runs: scratch, one per k).
    nbytes[k] and npackets[k] get what was written to fds[k]. Every packet must be one that
    verbatim_records() accepted (its record header is not read again). Returns (0, -1);
    (errno, k) when the write to fds[k] failed (nothing more is written); (-1, -1) when a
    packet lies outside data (nothing written from its chunk on)."""
    cdef Py_ssize_t n = offsets.shape[0], nout = fds.shape[0], size = data.shape[0]
    cdef Py_ssize_t width = bits.shape[1], rows = starts.shape[1], a, b, i, j, k
    cdef int64_t start, end, r, c
    cdef unsigned int byte
    cdef int h
    cdef int err = 0
    cdef int64_t failed = -1
    cdef const uint8_t* d = &data[0] if size > 0 else NULL
    cdef const uint8_t* row
    if (caplen.shape[0] != n or bits.shape[0] != n or mask.shape[0] < width or slot.shape[0] < 8 * width
            or starts.shape[0] < nout or ends.shape[0] < nout or ends.shape[1] < rows
            or runs.shape[0] < nout or nbytes.shape[0] < nout or npackets.shape[0] < nout
            or (n > 0 and rows < 1)):
        raise ValueError("write_selected: arrays differ in length")
    for j in range(width):
        byte = mask[j]
        while byte:
            h = pfs_top_bit(byte)
            byte &= ~(1u << h)
            if not 0 <= slot[8 * j + 7 - h] < nout:
                raise ValueError("write_selected: a selected column has no output")
    with nogil:
        for k in range(nout):
            nbytes[k] = 0
            npackets[k] = 0
        a = 0
        while a < n and not err:
            b = a + rows if n - a > rows else n
            for k in range(nout):
                runs[k] = 0
            for i in range(a, b):
                # (the headers were checked by verbatim_records: only the bounds, which make
                # the copy safe, are checked again, without touching the packet's memory)
                if offsets[i] < 16 or offsets[i] > size or <int64_t>caplen[i] > size - offsets[i]:
                    err = -1
                    break
                start = offsets[i] - 16
                end = offsets[i] + caplen[i]
                row = &bits[i, 0]
                for j in range(width):
                    byte = row[j] & mask[j]
                    while byte:
                        h = pfs_top_bit(byte)          # column 8 * j + 7 - h (np.packbits' order)
                        byte &= ~(1u << h)
                        k = slot[8 * j + 7 - h]
                        r = runs[k]
                        if r > 0 and ends[k, r - 1] == start:
                            ends[k, r - 1] = end
                        else:
                            starts[k, r] = start
                            ends[k, r] = end
                            runs[k] = r + 1
                        nbytes[k] += end - start
                        npackets[k] += 1
            if err:
                break
            for k in range(nout):
                if runs[k] > 0:
                    err = write_ranges(<int>fds[k], d, &starts[k, 0], &ends[k, 0], runs[k])
                    if err:
                        failed = k
                        break
            a = b
    return err, failed
