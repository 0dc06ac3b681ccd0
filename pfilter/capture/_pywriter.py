"""Pure-Python twin of pfilter.capture._writer's record assemblers: the same functions, same
arguments, same bytes and the same failure codes, for PFILTER_PUREPYTHON=1 and builds without the
extension (pfilter._impl picks; tests/test_io_writer_twin.py writes the same batches through
both and compares the bytes). The extension's writev path, exchange and dedup have no twin: the
writers and split only use them when it is built.

Imports nothing from pfilter.
"""
import struct
import sys

import numpy as np

_HEADER = struct.Struct("<IIII")
_EPB = struct.Struct("<IIIIIII")


def _first_bad(data, offsets, caplen, index, room, per_record, before=0, pad=False):
    """(count, code): how many selected packets can be assembled, and the code to return after
    them (0: all can), checked in order as the extension does: an index outside the batch is
    -1 - len(offsets); a packet outside data, starting before `before`, or with no room left in
    out (records of per_record bytes + caplen, rounded up to 4 when pad) is -1 - i."""
    npk, size = len(offsets), len(data)
    idx = np.asarray(index, np.int64)
    ok_index = (idx >= 0) & (idx < npk)
    safe = np.where(ok_index, idx, 0)
    o = np.asarray(offsets, np.int64)[safe] if npk else np.zeros(len(idx), np.int64)
    c = np.asarray(caplen, np.int64)[safe] if npk else np.zeros(len(idx), np.int64)
    ok = (o >= 0) & (o <= size) & (c <= size - np.clip(o, 0, size)) & (o >= before)
    need = per_record + ((c + 3) & ~3 if pad else c)
    ok &= np.cumsum(need) <= room
    bad = np.flatnonzero(~(ok_index & ok))
    if not len(bad):
        return len(idx), 0
    k = int(bad[0])
    return k, (-1 - int(idx[k]) if ok_index[k] else -1 - npk)


def _views(name, data, offsets, caplen, wirelen, stamps, out, ok):
    """Byte views of data and out, after the extension's argument check (ValueError)."""
    npk = len(offsets)
    if len(caplen) != npk or len(wirelen) != npk or len(stamps) != npk or not ok:
        raise ValueError(f"{name}: arrays differ in length")
    mem = memoryview(np.asarray(data, np.uint8)).cast("B") if len(data) else b""
    return mem, (memoryview(out).cast("B") if len(out) else None)


def pcap_records(data, offsets, caplen, wirelen, stamps, index, nsec, out, raw_back=0, raw_swapped=False):
    """See pfilter.capture._writer.pcap_records."""
    mem, dst = _views("pcap_records", data, offsets, caplen, wirelen, stamps, out, raw_back >= 0)
    count, code = _first_bad(data, offsets, caplen, index, len(out), 16, raw_back)
    raw = struct.Struct(("<" if (sys.byteorder == "little") != bool(raw_swapped) else ">") + "II")
    pos = 0
    for k in range(count):
        i = int(index[k])
        o, c = int(offsets[i]), int(caplen[i])
        if raw_back:
            sec, frac = raw.unpack_from(mem, o - raw_back)
        else:
            sec, frac = divmod(int(stamps[i]), 1000000000)     # floor: a fraction in [0, 1 s)
            sec, frac = sec & 0xFFFFFFFF, frac if nsec else frac // 1000
        _HEADER.pack_into(dst, pos, sec, frac, c, int(wirelen[i]))
        dst[pos + 16:pos + 16 + c] = mem[o:o + c]
        pos += 16 + c
    return code or pos


def pcapng_epbs(data, offsets, caplen, wirelen, stamps, index, iface_out, nsec, out):
    """See pfilter.capture._writer.pcapng_epbs."""
    mem, dst = _views("pcapng_epbs", data, offsets, caplen, wirelen, stamps, out, len(iface_out) >= len(index))
    count, code = _first_bad(data, offsets, caplen, index, len(out), 32, pad=True)
    pos = 0
    for k in range(count):
        i = int(index[k])
        o, c = int(offsets[i]), int(caplen[i])
        padded = (c + 3) & ~3
        total = 32 + padded
        ts = int(stamps[i])
        t = (ts if nsec else ts // 1000) & 0xFFFFFFFFFFFFFFFF      # floor, as the extension
        _EPB.pack_into(dst, pos, 6, total, int(iface_out[k]), t >> 32, t & 0xFFFFFFFF, c, int(wirelen[i]))
        dst[pos + 28:pos + 28 + c] = mem[o:o + c]
        dst[pos + 28 + c:pos + 28 + padded] = bytes(padded - c)
        struct.pack_into("<I", dst, pos + 28 + padded, total)
        pos += total
    return code or pos
