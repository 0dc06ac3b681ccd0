# cython: language_level=3
"""Record scanners for pcap and pcapng: the reader's hot loop, in C with the GIL released.

Imports nothing from pfilter. Each scanner walks records in one window of the file (a memory map
or a read buffer) from a start position and fills caller-provided arrays (packet data offsets
into the window, captured length, wire length, timestamp in ns, record file offset, and for
pcapng interface id and link type). It stops when the batch is full, when the next record is not
entirely inside the window, at a block only Python handles (pcapng SHB and IDB), or at damage,
and says which with a status code; the Python side (pfilter.capture.reader) formats errors and
decides about EOF. pfilter/capture/_pyscan.py is the pure-Python twin with the same contract.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint32_t pf_bswap32(uint32_t v) { return __builtin_bswap32(v); }
    static inline uint16_t pf_bswap16(uint16_t v) { return __builtin_bswap16(v); }
    static inline void pf_prefetch(const uint8_t* p) { __builtin_prefetch(p, 0, 0); }
    static inline uint64_t pf_scale_frac(uint64_t frac, uint64_t units) {
        return (uint64_t)(((unsigned __int128)frac * 1000000000u) / units);
    }
    """
    uint32_t pf_bswap32(uint32_t v) nogil
    uint16_t pf_bswap16(uint16_t v) nogil
    uint64_t pf_scale_frac(uint64_t frac, uint64_t units) nogil
    void pf_prefetch(const uint8_t* p) nogil

# Record headers sit at unpredictable places, so each one read is a cache miss waiting on the
# previous; prefetching the file linearly this far ahead turns that into a sequential stream.
cdef enum:
    PREFETCH_AHEAD = 8192

# Status codes shared with _pyscan.py and reader.py.
cdef enum:
    ST_LIMIT = 0      # batch full (packet or byte bound); more records may follow
    ST_MORE = 1       # the record at pos is not entirely in the window; `info` = bytes it needs
    ST_BADCAPLEN = 2  # pcap: caplen above the link type's maximum; `info` = caplen
    ST_BLOCK = 3      # pcapng: SHB or IDB at pos, for Python
    ST_BADLEN = 4     # pcapng: block total length < 12; `info` = length
    ST_UNALIGNED = 5  # pcapng: block total length not a multiple of 4
    ST_TOOBIG = 6     # pcapng: block total length above the maximum
    ST_TRAILER = 7    # pcapng: trailer length differs from header length
    ST_SHORT = 8      # pcapng: block body too short for its fixed part or its packet; `info` = type
    ST_NOIFACE = 9    # pcapng: packet on an interface without IDB; `info` = interface id
    ST_CAPLEN = 10    # pcapng: caplen above the interface's snapshot length; `info` = caplen
    ST_END = 11       # the window ends exactly at pos (no partial record)

ST_NAMES = {0: "limit", 1: "more", 2: "badcaplen", 3: "block", 4: "badlen", 5: "unaligned",
            6: "toobig", 7: "trailer", 8: "short", 9: "noiface", 10: "caplen", 11: "end"}

# Per-interface timestamp modes (pcapng).
cdef enum:
    TS_MICRO = 0      # units 10^6
    TS_NANO = 1       # units 10^9
    TS_DECUP = 2      # units 10^k, k < 9: multiply the fraction
    TS_GENERAL = 3    # anything else: 128-bit scale


cdef inline Py_ssize_t prefetch_ahead(const uint8_t* b, Py_ssize_t pf, Py_ssize_t p,
                                     Py_ssize_t end) noexcept nogil:
    """Prefetch b[pf:] up to PREFETCH_AHEAD bytes past p (the record being read); the new pf."""
    while pf < p + PREFETCH_AHEAD and pf < end:
        pf_prefetch(b + pf)
        pf += 64
    return pf


cdef inline uint32_t rd32(const uint8_t* p, bint sw) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return pf_bswap32(v) if sw else v


cdef inline uint16_t rd16(const uint8_t* p, bint sw) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return pf_bswap16(v) if sw else v


def scan_pcap(const uint8_t[::1] buf, Py_ssize_t pos, bint swapped, int hdrsize, bint nsec,
              uint32_t snaplen, uint32_t maxcap, int lengths_swapped, int64_t base,
              int64_t[::1] offsets, uint32_t[::1] caplens, uint32_t[::1] wirelens,
              int64_t[::1] stamps, int64_t[::1] fileoffs, Py_ssize_t max_packets,
              Py_ssize_t max_bytes):
    """Scan classic pcap records of `hdrsize` bytes + data from buf[pos:].

    lengths_swapped: 0 never, 1 when caplen > len (format 2.3), 2 always (before 2.3).
    Returns (packets, new_pos, status, info)."""
    # libpcap: pcap_next_packet()
    cdef Py_ssize_t end = buf.shape[0]
    cdef Py_ssize_t n = 0, p = pos
    cdef Py_ssize_t nbytes = 0
    cdef const uint8_t* b = &buf[0] if end > 0 else NULL
    cdef uint32_t cap, wire, t, keep
    cdef int32_t sec, frac
    cdef int status = ST_END
    cdef int64_t info = 0
    cdef int64_t mult = 1 if nsec else 1000
    cdef Py_ssize_t pf = pos
    with nogil:
        while True:
            pf = prefetch_ahead(b, pf, p, end)
            if p == end:
                status = ST_END
                break
            if n >= max_packets or nbytes >= max_bytes:
                status = ST_LIMIT
                break
            if end - p < hdrsize:
                status = ST_MORE
                info = hdrsize
                break
            sec = <int32_t>rd32(b + p, swapped)
            frac = <int32_t>rd32(b + p + 4, swapped)
            cap = rd32(b + p + 8, swapped)
            wire = rd32(b + p + 12, swapped)
            if lengths_swapped == 2 or (lengths_swapped == 1 and cap > wire):
                t = cap
                cap = wire
                wire = t
            if cap > maxcap:
                status = ST_BADCAPLEN
                info = cap
                break
            if <int64_t>(end - p) < <int64_t>hdrsize + cap:
                status = ST_MORE
                info = <int64_t>hdrsize + cap
                break
            keep = cap if cap <= snaplen else snaplen
            offsets[n] = p + hdrsize
            caplens[n] = keep
            wirelens[n] = wire
            stamps[n] = <int64_t>sec * 1000000000 + <int64_t>frac * mult
            fileoffs[n] = base + p
            n += 1
            nbytes += keep
            p += hdrsize + cap
    return n, p, status, info


def scan_pcapng(const uint8_t[::1] buf, Py_ssize_t pos, bint swapped, int64_t base,
                const uint16_t[::1] if_linktype, const uint32_t[::1] if_snaplen,
                const int32_t[::1] if_tsmode, const uint64_t[::1] if_units,
                const int64_t[::1] if_tsoffset, Py_ssize_t n_ifaces, uint32_t if_base,
                uint32_t max_blocksize,
                int64_t[::1] offsets, uint32_t[::1] caplens, uint32_t[::1] wirelens,
                int64_t[::1] stamps, int64_t[::1] fileoffs, uint32_t[::1] ifaces,
                uint16_t[::1] linktypes, Py_ssize_t max_packets, Py_ssize_t max_bytes):
    """Scan pcapng blocks of one section from buf[pos:]: EPB, SPB and PB become packets, other
    block types are skipped, SHB and IDB stop the scan (ST_BLOCK). Interface ids are reported
    plus `if_base` (the section's first interface in the file's list). Returns (packets, new_pos,
    status, info)."""
    # libpcap: pcap_ng_next_packet(), read_block()
    cdef Py_ssize_t end = buf.shape[0]
    cdef Py_ssize_t n = 0, p = pos
    cdef Py_ssize_t nbytes = 0
    cdef const uint8_t* b = &buf[0] if end > 0 else NULL
    cdef const uint8_t* body
    cdef uint32_t btype, total, bodylen, cap, wire, iface, snap
    cdef uint64_t t, sec, frac, units
    cdef int64_t ns
    cdef int status = ST_END
    cdef int64_t info = 0
    cdef Py_ssize_t datapos
    cdef Py_ssize_t pf = pos
    with nogil:
        while True:
            pf = prefetch_ahead(b, pf, p, end)
            if p == end:
                status = ST_END
                break
            if end - p < 8:
                status = ST_MORE
                info = 8
                break
            btype = rd32(b + p, swapped)
            if btype == 0x0A0D0D0A or btype == 1:
                status = ST_BLOCK
                break
            total = rd32(b + p + 4, swapped)
            if total < 12:
                status = ST_BADLEN
                info = total
                break
            if total % 4 != 0:
                status = ST_UNALIGNED
                info = total
                break
            if total > max_blocksize:
                status = ST_TOOBIG
                info = total
                break
            if end - p < <Py_ssize_t>total:
                status = ST_MORE
                info = total
                break
            if rd32(b + p + total - 4, swapped) != total:
                status = ST_TRAILER
                break
            if btype != 6 and btype != 3 and btype != 2:
                p += total
                continue
            if n >= max_packets or nbytes >= max_bytes:
                status = ST_LIMIT
                break
            body = b + p + 8
            bodylen = total - 12
            if btype == 6 or btype == 2:
                # enhanced packet block, or the obsolete packet block (16-bit interface id)
                if bodylen < 20:
                    status = ST_SHORT
                    info = btype
                    break
                iface = rd32(body, swapped) if btype == 6 else rd16(body, swapped)
                t = (<uint64_t>rd32(body + 4, swapped) << 32) | rd32(body + 8, swapped)
                cap = rd32(body + 12, swapped)
                wire = rd32(body + 16, swapped)
                datapos = p + 28
                bodylen -= 20
            else:
                if bodylen < 4:
                    status = ST_SHORT
                    info = btype
                    break
                iface = 0
                t = 0
                wire = rd32(body, swapped)
                datapos = p + 12
                bodylen -= 4
                cap = wire
                if n_ifaces > 0 and cap > if_snaplen[0]:
                    cap = if_snaplen[0]
                # Divergence: libpcap reports a short block when an SPB holds less than
                # min(len, snaplen); the pcapng spec takes the captured length from the block.
                if cap > bodylen:
                    cap = bodylen
            if iface >= n_ifaces:
                status = ST_NOIFACE
                info = iface
                break
            snap = if_snaplen[iface]
            if cap > snap:
                status = ST_CAPLEN
                info = cap
                break
            if cap > bodylen:
                status = ST_SHORT
                info = btype
                break
            units = if_units[iface]
            if if_tsmode[iface] == TS_MICRO:
                sec = t // 1000000
                frac = (t % 1000000) * 1000
            elif if_tsmode[iface] == TS_NANO:
                sec = t // 1000000000
                frac = t % 1000000000
            elif if_tsmode[iface] == TS_DECUP:
                sec = t // units
                frac = (t % units) * (1000000000 // units)
            else:
                sec = t // units
                frac = pf_scale_frac(t % units, units)
            ns = <int64_t>((sec + <uint64_t>if_tsoffset[iface]) * 1000000000 + frac)
            offsets[n] = datapos
            caplens[n] = cap
            wirelens[n] = wire
            stamps[n] = ns
            fileoffs[n] = base + p
            ifaces[n] = if_base + iface
            linktypes[n] = if_linktype[iface]
            n += 1
            nbytes += cap
            p += total
    return n, p, status, info
