"""Pure-Python twin of pfilter.capture._reader: the same record scanners, same arguments, same
results, for PFILTER_PUREPYTHON=1, for builds without the extension, and as the oracle the fuzz
tests compare the Cython scanners against.

Imports nothing from pfilter.
"""
import struct

ST_LIMIT, ST_MORE, ST_BADCAPLEN, ST_BLOCK, ST_BADLEN, ST_UNALIGNED, ST_TOOBIG, ST_TRAILER, \
    ST_SHORT, ST_NOIFACE, ST_CAPLEN, ST_END = range(12)
TS_MICRO, TS_NANO, TS_DECUP, TS_GENERAL = range(4)

_M64 = (1 << 64) - 1


def _to_int64(v):
    v &= _M64
    return v - (1 << 64) if v >> 63 else v


def _host_prefix(swapped):
    import sys
    little = (sys.byteorder == "little") != bool(swapped)
    return "<" if little else ">"


def scan_pcap(buf, pos, swapped, hdrsize, nsec, snaplen, maxcap, lengths_swapped, base,
              offsets, caplens, wirelens, stamps, fileoffs, max_packets, max_bytes):
    """See pfilter.capture._reader.scan_pcap."""
    # libpcap: pcap_next_packet()
    b = memoryview(buf).cast("B") if len(buf) else b""
    end = len(buf)
    rec = struct.Struct(_host_prefix(swapped) + "iiII")
    mult = 1 if nsec else 1000
    n = nbytes = 0
    p = pos
    while True:
        if p == end:
            return n, p, ST_END, 0
        if n >= max_packets or nbytes >= max_bytes:
            return n, p, ST_LIMIT, 0
        if end - p < hdrsize:
            return n, p, ST_MORE, hdrsize
        sec, frac, cap, wire = rec.unpack_from(b, p)
        if lengths_swapped == 2 or (lengths_swapped == 1 and cap > wire):
            cap, wire = wire, cap
        if cap > maxcap:
            return n, p, ST_BADCAPLEN, cap
        if end - p < hdrsize + cap:
            return n, p, ST_MORE, hdrsize + cap
        keep = min(cap, snaplen)
        offsets[n] = p + hdrsize
        caplens[n] = keep
        wirelens[n] = wire
        stamps[n] = sec * 1000000000 + frac * mult
        fileoffs[n] = base + p
        n += 1
        nbytes += keep
        p += hdrsize + cap


def scan_pcapng(buf, pos, swapped, base, if_linktype, if_snaplen, if_tsmode, if_units, if_tsoffset,
                n_ifaces, if_base, max_blocksize, offsets, caplens, wirelens, stamps, fileoffs,
                ifaces, linktypes, max_packets, max_bytes):
    """See pfilter.capture._reader.scan_pcapng."""
    # libpcap: pcap_ng_next_packet(), read_block()
    b = memoryview(buf).cast("B") if len(buf) else b""
    end = len(buf)
    pre = _host_prefix(swapped)
    u32 = struct.Struct(pre + "I")
    n = nbytes = 0
    p = pos
    while True:
        if p == end:
            return n, p, ST_END, 0
        if end - p < 8:
            return n, p, ST_MORE, 8
        btype, total = struct.unpack_from(pre + "II", b, p)
        if btype in (0x0A0D0D0A, 1):
            return n, p, ST_BLOCK, 0
        if total < 12:
            return n, p, ST_BADLEN, total
        if total % 4:
            return n, p, ST_UNALIGNED, total
        if total > max_blocksize:
            return n, p, ST_TOOBIG, total
        if end - p < total:
            return n, p, ST_MORE, total
        if u32.unpack_from(b, p + total - 4)[0] != total:
            return n, p, ST_TRAILER, 0
        if btype not in (6, 3, 2):
            p += total
            continue
        if n >= max_packets or nbytes >= max_bytes:
            return n, p, ST_LIMIT, 0
        bodylen = total - 12
        if btype in (6, 2):
            if bodylen < 20:
                return n, p, ST_SHORT, btype
            if btype == 6:
                iface, hi, lo, cap, wire = struct.unpack_from(pre + "IIIII", b, p + 8)
            else:
                iface, _drops, hi, lo, cap, wire = struct.unpack_from(pre + "HHIIII", b, p + 8)
            t = (hi << 32) | lo
            datapos = p + 28
            bodylen -= 20
        else:
            if bodylen < 4:
                return n, p, ST_SHORT, btype
            iface, t = 0, 0
            wire = u32.unpack_from(b, p + 8)[0]
            datapos = p + 12
            bodylen -= 4
            cap = wire
            if n_ifaces > 0 and cap > int(if_snaplen[0]):
                cap = int(if_snaplen[0])
            cap = min(cap, bodylen)
        if iface >= n_ifaces:
            return n, p, ST_NOIFACE, iface
        if cap > int(if_snaplen[iface]):
            return n, p, ST_CAPLEN, cap
        if cap > bodylen:
            return n, p, ST_SHORT, btype
        units = int(if_units[iface])
        sec, frac = divmod(t, units)
        frac = frac * 1000000000 // units
        ns = _to_int64((sec + int(if_tsoffset[iface])) * 1000000000 + frac)
        offsets[n] = datapos
        caplens[n] = cap
        wirelens[n] = wire
        stamps[n] = ns
        fileoffs[n] = base + p
        ifaces[n] = if_base + iface
        linktypes[n] = int(if_linktype[iface])
        n += 1
        nbytes += cap
        p += total
