"""Pure-Python twin of pfilter.capture._reader: the same record scanners, same arguments, same
results, for PFILTER_PUREPYTHON=1, for builds without the extension, and as the oracle the fuzz
tests compare the Cython scanners against.

Imports pfilter.capture._scancodes (status codes) only.
"""
import struct

from ._scancodes import (MAX_SECONDS, ST_BADCAPLEN, ST_BADLEN, ST_BLOCK, ST_CAPLEN, ST_END, ST_FULL,
                         ST_LIMIT, ST_MORE, ST_NOIFACE, ST_SHORT, ST_TOOBIG, ST_TRAILER, ST_UNALIGNED,
                         ts_mode)

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
    rec = struct.Struct(_host_prefix(swapped) + "IIII")
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


def _stamp_ns(sec, frac, tsoffset):
    """See _reader.stamp_ns."""
    s = _to_int64(sec + tsoffset)
    if not -MAX_SECONDS <= s <= MAX_SECONDS:
        s &= 0xFFFFFFFF
    return s * 1000000000 + frac


def _idb(b, p, total, pre, base):
    """(linktype, snaplen, mode, units, tsoffset, name offset, name length) of an IDB the scanner
    reads itself, or None when Python must (see _reader.scan_pcapng)."""
    bodylen = total - 12
    if bodylen < 8:
        return None
    linktype, _res, snap = struct.unpack_from(pre + "HHI", b, p + 8)
    if snap == 0 or snap > 0x7FFFFFFF:
        return None
    units, binary, tsoffset, nameoff, namelen, seen = 1000000, False, 0, -1, 0, set()
    i = 8
    while i < bodylen:
        if bodylen - i < 4:
            return None
        code, olen = struct.unpack_from(pre + "HH", b, p + 8 + i)
        padded = (olen + 3) & ~3
        i += 4
        if bodylen - i < padded:
            return None
        if code == 0:
            if olen != 0:
                return None
            break
        if code == 9:
            if olen != 1 or 9 in seen:
                return None
            seen.add(9)
            v = b[p + 8 + i]
            if v & 0x80:
                if v & 0x7F > 63:
                    return None
                units, binary = 1 << (v & 0x7F), True
            else:
                if v > 19:
                    return None
                units, binary = 10 ** v, False
        elif code == 14:
            if olen != 8 or 14 in seen:
                return None
            seen.add(14)
            tsoffset = struct.unpack_from(pre + "q", b, p + 8 + i)[0]
        elif code == 2:
            nameoff, namelen = base + p + 8 + i, olen
        i += padded
    mode = ts_mode(units, binary)
    return linktype, snap, mode, units, tsoffset, nameoff, namelen


def scan_pcapng(buf, pos, base, max_blocksize, state, if_linktype, if_snaplen, if_tsmode, if_units,
                if_tsoffset, if_offset, if_nameoff, if_namelen, offsets, caplens, wirelens, stamps,
                fileoffs, ifaces, linktypes, max_packets, max_bytes):
    """See pfilter.capture._reader.scan_pcapng."""
    # libpcap: pcap_ng_next_packet(), read_block(), add_interface(), process_idb_options()
    b = memoryview(buf).cast("B") if len(buf) else b""
    end = len(buf)
    swapped, count, section = bool(state[0]), int(state[1]), int(state[2])
    n = nbytes = 0
    p = pos

    def done(status, info=0):
        state[0], state[1], state[2] = int(swapped), count, section
        return n, p, status, info

    while True:
        pre = _host_prefix(swapped)
        u32 = struct.Struct(pre + "I")
        if p == end:
            return done(ST_END)
        if end - p < 8:
            return done(ST_MORE, 8)
        btype, total = struct.unpack_from(pre + "II", b, p)
        if btype == 0x0A0D0D0A:
            if end - p < 28:
                return done(ST_BLOCK)
            bom = struct.unpack_from("=I", b, p + 8)[0]
            if bom not in (0x1A2B3C4D, 0x4D3C2B1A):
                return done(ST_BLOCK)
            nsw = bom != 0x1A2B3C4D
            npre = _host_prefix(nsw)
            total = struct.unpack_from(npre + "I", b, p + 4)[0]
            if (total < 28 or total % 4 or total > max_blocksize or end - p < total
                    or struct.unpack_from(npre + "I", b, p + total - 4)[0] != total
                    or struct.unpack_from(npre + "H", b, p + 12)[0] != 1):
                return done(ST_BLOCK)
            swapped, section = nsw, count
            p += total
            continue
        if total < 12:
            return done(ST_BADLEN, total)
        if total % 4:
            return done(ST_UNALIGNED, total)
        if total > max_blocksize:
            return done(ST_TOOBIG, total)
        if end - p < total:
            return done(ST_MORE, total)
        if u32.unpack_from(b, p + total - 4)[0] != total:
            return done(ST_TRAILER)
        if btype == 1:
            if count >= len(if_linktype):
                return done(ST_FULL)
            fields = _idb(b, p, total, pre, base)
            if fields is None:
                return done(ST_BLOCK)
            (if_linktype[count], if_snaplen[count], if_tsmode[count], if_units[count], if_tsoffset[count],
             if_nameoff[count], if_namelen[count]) = fields
            if_offset[count] = base + p
            count += 1
            p += total
            continue
        if btype not in (6, 3, 2):
            p += total
            continue
        if n >= max_packets or nbytes >= max_bytes:
            return done(ST_LIMIT)
        bodylen = total - 12
        if btype in (6, 2):
            if bodylen < 20:
                return done(ST_SHORT, btype)
            if btype == 6:
                iface, hi, lo, cap, wire = struct.unpack_from(pre + "IIIII", b, p + 8)
            else:
                iface, _drops, hi, lo, cap, wire = struct.unpack_from(pre + "HHIIII", b, p + 8)
            t = (hi << 32) | lo
            datapos = p + 28
            bodylen -= 20
        else:
            if bodylen < 4:
                return done(ST_SHORT, btype)
            iface, t = 0, 0
            wire = u32.unpack_from(b, p + 8)[0]
            datapos = p + 12
            bodylen -= 4
            cap = wire
            if count > section and cap > int(if_snaplen[section]):
                cap = int(if_snaplen[section])
            cap = min(cap, bodylen)
        if iface >= count - section:
            return done(ST_NOIFACE, iface)
        idx = section + iface
        if cap > int(if_snaplen[idx]):
            return done(ST_CAPLEN, cap)
        if cap > bodylen:
            return done(ST_SHORT, btype)
        units = int(if_units[idx])
        sec, frac = divmod(t, units)
        frac = frac * 1000000000 // units
        offsets[n] = datapos
        caplens[n] = cap
        wirelens[n] = wire
        stamps[n] = _stamp_ns(sec, frac, int(if_tsoffset[idx]))
        fileoffs[n] = base + p
        ifaces[n] = idx
        linktypes[n] = int(if_linktype[idx])
        n += 1
        nbytes += cap
        p += total
