# The record scanners' shared core (included by pfilter/capture/_reader.pyx, whose scan_pcap and
# scan_pcapng are the reader's hot loops, and by pfilter/capture/_fastcopy.pyx, whose NgCopy is
# the pcapng fast path): byte-order helpers, the status codes and timestamp modes as C constants,
# and scan_pcapng_blocks, the pcapng block walk itself, written once for both.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint32_t pf_bswap32(uint32_t v) { return __builtin_bswap32(v); }
    static inline uint16_t pf_bswap16(uint16_t v) { return __builtin_bswap16(v); }
    static inline uint64_t pf_bswap64(uint64_t v) { return __builtin_bswap64(v); }
    static inline void pf_prefetch(const uint8_t* p) { __builtin_prefetch(p, 0, 0); }
    static inline uint64_t pf_scale_frac(uint64_t frac, uint64_t units) {
        return (uint64_t)(((unsigned __int128)frac * 1000000000u) / units);
    }
    """
    uint32_t pf_bswap32(uint32_t v) nogil
    uint16_t pf_bswap16(uint16_t v) nogil
    uint64_t pf_bswap64(uint64_t v) nogil
    uint64_t pf_scale_frac(uint64_t frac, uint64_t units) nogil
    void pf_prefetch(const uint8_t* p) nogil

# Record headers sit at unpredictable places, so each one read is a cache miss waiting on the
# previous; prefetching the file linearly this far ahead turns that into a sequential stream.
cdef enum:
    SCAN_PREFETCH_BYTES = 4096

# Status codes and timestamp modes: pfilter.capture._scancodes (shared with the twin and the
# reader), held here as C constants.
from . import _scancodes as _codes
cdef int ST_LIMIT = _codes.ST_LIMIT, ST_MORE = _codes.ST_MORE, ST_BADCAPLEN = _codes.ST_BADCAPLEN
cdef int ST_BLOCK = _codes.ST_BLOCK, ST_BADLEN = _codes.ST_BADLEN, ST_UNALIGNED = _codes.ST_UNALIGNED
cdef int ST_TOOBIG = _codes.ST_TOOBIG, ST_TRAILER = _codes.ST_TRAILER, ST_SHORT = _codes.ST_SHORT
cdef int ST_NOIFACE = _codes.ST_NOIFACE, ST_CAPLEN = _codes.ST_CAPLEN, ST_END = _codes.ST_END
cdef int ST_FULL = _codes.ST_FULL
cdef int32_t TS_MICRO = _codes.TS_MICRO, TS_NANO = _codes.TS_NANO, TS_DECUP = _codes.TS_DECUP
cdef int32_t TS_GENERAL = _codes.TS_GENERAL
cdef int64_t MAX_SECONDS = _codes.MAX_SECONDS


cdef inline Py_ssize_t prefetch_ahead(const uint8_t* b, Py_ssize_t pf, Py_ssize_t p,
                                     Py_ssize_t end) noexcept nogil:
    """Prefetch b[pf:] up to SCAN_PREFETCH_BYTES bytes past p (the record being read); the new pf."""
    while pf < p + SCAN_PREFETCH_BYTES and pf < end:
        pf_prefetch(b + pf)
        pf += 256
    return pf


cdef inline uint32_t rd32(const uint8_t* p, bint sw) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return pf_bswap32(v) if sw else v


cdef inline uint64_t rd64(const uint8_t* p, bint sw) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return pf_bswap64(v) if sw else v


cdef inline int64_t stamp_ns(uint64_t sec, uint64_t frac, int64_t tsoffset) noexcept nogil:
    """libpcap's tv_sec (seconds + if_tsoffset, wrapping as its uint64 sum does) in ns. Seconds
    beyond int64 nanoseconds keep their low 32 bits: what libpcap writes to a pcap file
    (`tcpdump -w` stores tv_sec as 32 bits), so the packet's time is the one any pcap copy has."""
    # Divergence: libpcap keeps such seconds whole in its 64-bit time_t (tcpdump prints them as
    # they are); pfilter's int64-nanosecond timestamps cannot, and keep what `-w` would write.
    cdef int64_t s = <int64_t>(sec + <uint64_t>tsoffset)
    if s > MAX_SECONDS or s < -MAX_SECONDS:
        s = <int64_t><uint32_t>s
    return s * 1000000000 + <int64_t>frac


cdef inline uint16_t rd16(const uint8_t* p, bint sw) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return pf_bswap16(v) if sw else v


cdef struct NgIfaces:
    # the file-wide interface table: `capacity` entries of each array
    int64_t capacity
    uint16_t* linktype
    uint32_t* snaplen
    int32_t* tsmode
    uint64_t* units
    int64_t* tsoffset
    int64_t* offset
    int64_t* nameoff
    uint16_t* namelen


cdef struct NgPackets:
    # one batch of packets: data offset in the scanned buffer, captured and wire length,
    # timestamp (ns), block file offset, file-wide interface id and its link type
    int64_t* offsets
    uint32_t* caplens
    uint32_t* wirelens
    int64_t* stamps
    int64_t* fileoffs
    uint32_t* ifaces
    uint16_t* linktypes


cdef int scan_pcapng_blocks(const uint8_t* b, Py_ssize_t pos, Py_ssize_t end, int64_t base,
                            uint32_t max_blocksize, int64_t* state, NgIfaces* ift, NgPackets* pk,
                            Py_ssize_t max_packets, Py_ssize_t max_bytes, Py_ssize_t* n_out,
                            Py_ssize_t* pos_out, int64_t* info_out, bint prefetch=True) noexcept nogil:
    """Scan pcapng blocks from b[pos:end] (b at file offset `base`): EPB, SPB and PB become
    packets in pk (at most max_packets, or until max_bytes of captured data), other block types
    are skipped. Section headers and interface descriptions are read here too, into `state`
    ([byte order swapped, interfaces in the file, first interface of the current section]) and
    the interface table (name option as file offset and length, -1 for none); one that is cut
    by the buffer's end, damaged, or unusual (snapshot length 0 or above INT_MAX) stops the scan
    (ST_BLOCK) for Python, which reads it with libpcap's messages; a full table stops it with
    ST_FULL. Interface ids are reported file-wide (section base + id). The status; the packets,
    the new position and the status's detail in n_out, pos_out and info_out. prefetch: stream
    every line of b ahead of the walk into the cache (False: the caller has brought in the lines
    the walk reads, as NgCopy's _ng_warm does)."""
    # libpcap: pcap_ng_next_packet(), read_block(), add_interface(), process_idb_options()
    cdef Py_ssize_t n = 0, p = pos, nbytes = 0, datapos, pf = pos
    cdef const uint8_t* body
    cdef uint32_t btype, total, bodylen, cap, wire, iface, snap, bom
    cdef uint64_t t, sec, frac, units
    cdef int status = ST_END
    cdef int64_t info = 0
    cdef bint swapped = state[0] != 0, nsw, binary, bad
    cdef int64_t count = state[1], section = state[2], capacity = ift.capacity
    cdef int64_t idx, tsoffset, nameoff
    cdef uint32_t namelen
    cdef uint32_t i, code, olen, padded, seen, v, k
    cdef int32_t mode
    while p != end:                 # the end of the buffer: status stays ST_END
        if prefetch:
            pf = prefetch_ahead(b, pf, p, end)
        if end - p < 8:
            status = ST_MORE
            info = 8
            break
        btype = rd32(b + p, swapped)
        if btype == 0x0A0D0D0A:
            # a new section: its own byte order, its own interfaces
            if end - p < 28:
                status = ST_BLOCK
                break
            bom = rd32(b + p + 8, 0)
            if bom == 0x1A2B3C4D:
                nsw = 0
            elif bom == 0x4D3C2B1A:
                nsw = 1
            else:
                status = ST_BLOCK
                break
            total = rd32(b + p + 4, nsw)
            if (total < 28 or total % 4 != 0 or total > max_blocksize or end - p < <Py_ssize_t>total
                    or rd32(b + p + total - 4, nsw) != total or rd16(b + p + 12, nsw) != 1):
                status = ST_BLOCK
                break
            swapped = nsw
            section = count
            p += total
            continue
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
        if btype == 1:
            if count >= capacity:
                status = ST_FULL
                break
            body = b + p + 8
            bodylen = total - 12
            if bodylen < 8:
                status = ST_BLOCK
                break
            snap = rd32(body + 4, swapped)
            if snap == 0 or snap > 0x7FFFFFFF:
                status = ST_BLOCK
                break
            units = 1000000
            binary = 0
            tsoffset = 0
            nameoff = -1
            namelen = 0
            seen = 0
            bad = 0
            i = 8
            while i < bodylen:
                if bodylen - i < 4:
                    bad = 1
                    break
                code = rd16(body + i, swapped)
                olen = rd16(body + i + 2, swapped)
                padded = (olen + 3) & ~(<uint32_t>3)
                i += 4
                if bodylen - i < padded:
                    bad = 1
                    break
                if code == 0:
                    bad = olen != 0
                    break
                if code == 9:
                    if olen != 1 or seen & 1:
                        bad = 1
                        break
                    seen |= 1
                    v = body[i]
                    if v & 0x80:
                        if v & 0x7F > 63:
                            bad = 1
                            break
                        units = (<uint64_t>1) << (v & 0x7F)
                        binary = 1
                    else:
                        if v > 19:
                            bad = 1
                            break
                        units = 1
                        for k in range(v):
                            units *= 10
                        binary = 0
                elif code == 14:
                    if olen != 8 or seen & 2:
                        bad = 1
                        break
                    seen |= 2
                    tsoffset = <int64_t>rd64(body + i, swapped)
                elif code == 2:
                    nameoff = base + p + 8 + i
                    namelen = olen
                i += padded
            if bad:
                status = ST_BLOCK
                break
            if units == 1000000:
                mode = TS_MICRO
            elif units == 1000000000:
                mode = TS_NANO
            elif not binary and units < 1000000000:
                mode = TS_DECUP
            else:
                mode = TS_GENERAL
            ift.linktype[count] = rd16(body, swapped)
            ift.snaplen[count] = snap
            ift.tsmode[count] = mode
            ift.units[count] = units
            ift.tsoffset[count] = tsoffset
            ift.offset[count] = base + p
            ift.nameoff[count] = nameoff
            ift.namelen[count] = <uint16_t>namelen
            count += 1
            p += total
            continue
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
            if count > section and cap > ift.snaplen[section]:
                cap = ift.snaplen[section]
            # Divergence: libpcap reports a short block when an SPB holds less than
            # min(len, snaplen); the pcapng spec takes the captured length from the block.
            if cap > bodylen:
                cap = bodylen
        if <int64_t>iface >= count - section:
            status = ST_NOIFACE
            info = iface
            break
        idx = section + iface
        snap = ift.snaplen[idx]
        if cap > snap:
            status = ST_CAPLEN
            info = cap
            break
        if cap > bodylen:
            status = ST_SHORT
            info = btype
            break
        units = ift.units[idx]
        if ift.tsmode[idx] == TS_MICRO:
            sec = t // 1000000
            frac = (t % 1000000) * 1000
        elif ift.tsmode[idx] == TS_NANO:
            sec = t // 1000000000
            frac = t % 1000000000
        elif ift.tsmode[idx] == TS_DECUP:
            sec = t // units
            frac = (t % units) * (1000000000 // units)
        else:
            sec = t // units
            frac = pf_scale_frac(t % units, units)
        pk.offsets[n] = datapos
        pk.caplens[n] = cap
        pk.wirelens[n] = wire
        pk.stamps[n] = stamp_ns(sec, frac, ift.tsoffset[idx])
        pk.fileoffs[n] = base + p
        pk.ifaces[n] = <uint32_t>idx
        pk.linktypes[n] = ift.linktype[idx]
        n += 1
        nbytes += cap
        p += total
    state[0] = swapped
    state[1] = count
    state[2] = section
    n_out[0], pos_out[0], info_out[0] = n, p, info
    return status
