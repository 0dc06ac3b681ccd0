# cython: language_level=3
"""Record scanners for pcap and pcapng: the reader's hot loop, in C with the GIL released.

Imports pfilter.capture._scancodes (the status codes) only. Each scanner walks records in one
window of the file (a read buffer) from a start position and fills caller-provided arrays
(packet data offsets into the window, captured length, wire length, timestamp in ns, record file
offset, and for pcapng interface id and link type). It stops when the batch is full, when the
next record is not entirely inside the window, at a block only Python handles (pcapng SHB and
IDB), or at damage, and says which with a status code; the Python side (pfilter.capture.pcap
and .pcapng) formats errors and decides about EOF. pfilter/capture/_pyscan.py is the
pure-Python twin with the same contract.
"""
include "_scan.pxi"

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
    cdef uint32_t sec, frac         # unsigned: pfilter/capture/reader.py says why
    cdef int status = ST_END
    cdef int64_t info = 0
    cdef int64_t mult = 1 if nsec else 1000
    cdef Py_ssize_t pf = pos
    with nogil:
        while p != end:                 # the end of the buffer: status stays ST_END
            pf = prefetch_ahead(b, pf, p, end)
            if n >= max_packets or nbytes >= max_bytes:
                status = ST_LIMIT
                break
            if end - p < hdrsize:
                status = ST_MORE
                info = hdrsize
                break
            sec = rd32(b + p, swapped)
            frac = rd32(b + p + 4, swapped)
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


def scan_pcapng(const uint8_t[::1] buf, Py_ssize_t pos, int64_t base, uint32_t max_blocksize,
                int64_t[::1] state, uint16_t[::1] if_linktype, uint32_t[::1] if_snaplen,
                int32_t[::1] if_tsmode, uint64_t[::1] if_units, int64_t[::1] if_tsoffset,
                int64_t[::1] if_offset, int64_t[::1] if_nameoff, uint16_t[::1] if_namelen,
                int64_t[::1] offsets, uint32_t[::1] caplens, uint32_t[::1] wirelens,
                int64_t[::1] stamps, int64_t[::1] fileoffs, uint32_t[::1] ifaces,
                uint16_t[::1] linktypes, Py_ssize_t max_packets, Py_ssize_t max_bytes):
    """Scan pcapng blocks from buf[pos:]: EPB, SPB and PB become packets, other block types are
    skipped. Section headers and interface descriptions are read here too, into `state`
    ([byte order swapped, interfaces in the file, first interface of the current section]) and
    the file-wide interface arrays (capacity: their length; name option as file offset and
    length, -1 for none); one that is cut by the window edge, damaged, or unusual (snapshot
    length 0 or above INT_MAX) stops the scan (ST_BLOCK) for Python, which reads it with
    libpcap's messages. Interface ids are reported file-wide (section base + id). Returns
    (packets, new_pos, status, info)."""
    cdef NgIfaces ift
    cdef NgPackets pk
    cdef Py_ssize_t n = 0, p = pos, end = buf.shape[0]
    cdef int64_t info = 0
    cdef int status
    # (the arrays as they are: a batch is at most as long as the shortest packet array, the
    # table as the shortest interface array)
    if state.shape[0] < 3:
        raise ValueError("scan_pcapng: state holds 3 values")
    if not 0 <= pos <= end:
        raise ValueError("scan_pcapng: pos outside the buffer")
    max_packets = min(max_packets, offsets.shape[0], caplens.shape[0], wirelens.shape[0], stamps.shape[0],
                      fileoffs.shape[0], ifaces.shape[0], linktypes.shape[0])
    ift.capacity = min(if_linktype.shape[0], if_snaplen.shape[0], if_tsmode.shape[0], if_units.shape[0],
                       if_tsoffset.shape[0], if_offset.shape[0], if_nameoff.shape[0], if_namelen.shape[0])
    if ift.capacity < 1:
        raise ValueError("scan_pcapng: an interface table holds at least one interface")
    ift.linktype, ift.snaplen, ift.tsmode, ift.units = &if_linktype[0], &if_snaplen[0], &if_tsmode[0], &if_units[0]
    ift.tsoffset, ift.offset, ift.nameoff, ift.namelen = &if_tsoffset[0], &if_offset[0], &if_nameoff[0], &if_namelen[0]
    pk.offsets = &offsets[0] if offsets.shape[0] else NULL
    pk.caplens = &caplens[0] if caplens.shape[0] else NULL
    pk.wirelens = &wirelens[0] if wirelens.shape[0] else NULL
    pk.stamps = &stamps[0] if stamps.shape[0] else NULL
    pk.fileoffs = &fileoffs[0] if fileoffs.shape[0] else NULL
    pk.ifaces = &ifaces[0] if ifaces.shape[0] else NULL
    pk.linktypes = &linktypes[0] if linktypes.shape[0] else NULL
    with nogil:
        status = scan_pcapng_blocks(&buf[0] if end > 0 else NULL, pos, end, base, max_blocksize, &state[0],
                                    &ift, &pk, max_packets, max_bytes, &n, &p, &info)
    return n, p, status, info
