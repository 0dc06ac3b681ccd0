"""Pseudo-headers written in the capturing host's byte order, put into this host's order when a
capture (a pcap file, a pcapng section) comes from a host of the other byte order, as libpcap
1.10.3 does before any filter sees a packet (pcap-util.c: pcap_post_process(),
swap_pseudo_headers()); tcpdump -w then writes them so.

The link types and what changes, each field only when the packet's captured length (and, where
libpcap checks it too, its wire length) covers it:

- LINUX_SLL (113), LINUX_SLL2 (276): the 4-byte CAN ID after the 16- (20-) byte cooked header,
  when the cooked header's protocol is CAN (0x000C) or CAN FD (0x000D); both lengths checked.
- PFLOG (117): uid, pid, rule_uid and rule_pid (offsets 44, 48, 52, 56), each only while the
  pflog header's own length byte covers it too; both lengths checked.
- USB_LINUX (189), USB_LINUX_MMAPPED (220): id (8 bytes), bus_id (2), ts_sec (8), ts_usec,
  status, urb_len, data_len, and for an isochronous transfer (transfer type 0) error_count and
  numdesc; for MMAPPED also interval, start_frame, xfer_flags, ndesc and, for an isochronous
  transfer, the status, offset and length of each of the first ndesc descriptors (16 bytes each,
  from offset 64); the captured length only is checked.
- NFLOG (239), version 0: the length and type of each TLV after the 4-byte header, walking the
  TLVs (each rounded up to 4 bytes, 16-bit arithmetic) while both lengths cover them.

Everything is done in place on a batch's buffer with numpy, a few array operations per field
for all of a batch's packets of one link type (NFLOG: per TLV step). Nothing else pays: the
readers call swap_packets only for these link types in a swapped file or section, and this
module imports numpy only when it swaps (pfilter.capture.fastpath reads PSEUDO_HEADER_LINKTYPES
without numpy).
"""
from __future__ import annotations

import sys

LINKTYPE_LINUX_SLL = 113
LINKTYPE_PFLOG = 117
LINKTYPE_USB_LINUX = 189
LINKTYPE_USB_LINUX_MMAPPED = 220
LINKTYPE_NFLOG = 239
LINKTYPE_LINUX_SLL2 = 276

#: link types whose pseudo-header libpcap byte-swaps when the file's byte order is not the host's
PSEUDO_HEADER_LINKTYPES = frozenset((LINKTYPE_LINUX_SLL, LINKTYPE_PFLOG, LINKTYPE_USB_LINUX,
                                     LINKTYPE_USB_LINUX_MMAPPED, LINKTYPE_NFLOG, LINKTYPE_LINUX_SLL2))

_HOST_BIG = sys.byteorder == "big"

__all__ = ["PSEUDO_HEADER_LINKTYPES", "swap_packets", "swap_mixed"]


def _np():
    import numpy as np
    return np


def _reverse(data, pos, width):
    """Reverse the `width` bytes at each position of `pos` (int64 array) in data."""
    if not len(pos):
        return
    np = _np()
    idx = pos[:, None] + np.arange(width, dtype=np.int64)
    data[idx] = data[idx[:, ::-1]]


def _uint(data, pos, width, big):
    """The unsigned `width`-byte numbers at each position of `pos`, read big- or little-endian."""
    np = _np()
    value = np.zeros(len(pos), np.int64)
    for k in range(width):
        byte = data[pos + (k if big else width - 1 - k)].astype(np.int64)
        value = (value << 8) | byte
    return value


def _sll(data, off, cap, wire, header):
    """LINUX_SLL (header 16, protocol at 14) or LINUX_SLL2 (header 20, protocol at 0)."""
    np = _np()
    proto_at = 14 if header == 16 else 0
    sel = np.flatnonzero((cap >= header) & (wire >= header))
    if not len(sel):
        return
    off, cap, wire = off[sel], cap[sel], wire[sel]
    proto = _uint(data, off + proto_at, 2, True)
    can = ((proto == 0x000C) | (proto == 0x000D)) & (cap >= header + 4) & (wire >= header + 4)
    _reverse(data, off[can] + header, 4)


def _pflog(data, off, cap, wire):
    np = _np()
    sel = np.flatnonzero((cap >= 48) & (wire >= 48))      # the first field swapped ends at 48
    if not len(sel):
        return
    off, cap, wire = off[sel], cap[sel], wire[sel]
    hlen = data[off].astype(np.int64)
    for at in (44, 48, 52, 56):         # uid, pid, rule_uid, rule_pid
        end = at + 4
        _reverse(data, off[(cap >= end) & (wire >= end) & (hlen >= end)] + at, 4)


def _usb(data, off, cap, mmapped):
    np = _np()
    for at, width in ((0, 8), (12, 2), (16, 8), (24, 4), (28, 4), (32, 4), (36, 4)):
        _reverse(data, off[cap >= at + width] + at, width)
    sel = np.flatnonzero(cap >= 40)     # libpcap looks at the transfer type only this far
    if not len(sel):
        return
    off, cap = off[sel], cap[sel]
    iso = data[off + 9] == 0            # URB_ISOCHRONOUS
    for at in (40, 44):                 # s.iso.error_count, s.iso.numdesc
        _reverse(data, off[iso & (cap >= at + 4)] + at, 4)
    if not mmapped:
        return
    for at in (48, 52, 56, 60):         # interval, start_frame, xfer_flags, ndesc
        _reverse(data, off[cap >= at + 4] + at, 4)
    sel = np.flatnonzero(iso & (cap >= 68))
    if not len(sel):
        return
    off, cap = off[sel], cap[sel]
    ndesc = _uint(data, off + 60, 4, _HOST_BIG)         # already in this host's order
    # descriptors whose status field the captured length holds (the walk stops at the first
    # field it does not)
    count = np.minimum(ndesc, (cap - 68) // 16 + 1)
    total = int(count.sum())
    if not total:
        return
    first = np.repeat(np.cumsum(count) - count, count)
    index = np.arange(total, dtype=np.int64) - first
    start = np.repeat(off, count) + 64 + 16 * index
    limit = np.repeat(off + cap, count)
    for at in (0, 4, 8):                # status, offset, len
        _reverse(data, start[start + at + 4 <= limit] + at, 4)


def _nflog(data, off, cap, wire):
    np = _np()
    sel = np.flatnonzero((cap >= 4) & (wire >= 4))
    if not len(sel):
        return
    off, cap, wire = off[sel], cap[sel], wire[sel]
    v0 = data[off + 1] == 0             # nflog_version
    pos, caplen, length = off[v0] + 4, cap[v0] - 4, wire[v0] - 4
    while True:
        more = caplen >= 4
        pos, caplen, length = pos[more], caplen[more], length[more]
        if not len(pos):
            return
        _reverse(data, pos, 2)          # tlv_length
        _reverse(data, pos + 2, 2)      # tlv_type
        size = _uint(data, pos, 2, _HOST_BIG)
        size = (size + (-size % 4)) & 0xFFFF        # rounded up to 4, as a 16-bit number
        ok = (size >= 4) & (caplen >= size) & (length >= size)
        pos, caplen, length, size = pos[ok], caplen[ok], length[ok], size[ok]
        pos, caplen, length = pos + size, caplen - size, length - size


def swap_packets(data, offsets, caplen, wirelen, linktype):
    """Put the pseudo-headers of packets of one link type (a PSEUDO_HEADER_LINKTYPES value) into
    this host's byte order, in place in data (a writable uint8 array); offsets, caplen and wirelen
    are the packets' arrays (only these packets are touched)."""
    if linktype not in PSEUDO_HEADER_LINKTYPES or not len(offsets):
        return
    np = _np()
    off = np.asarray(offsets, np.int64)
    cap = np.asarray(caplen).astype(np.int64)
    wire = np.asarray(wirelen).astype(np.int64)
    if linktype == LINKTYPE_LINUX_SLL:
        _sll(data, off, cap, wire, 16)
    elif linktype == LINKTYPE_LINUX_SLL2:
        _sll(data, off, cap, wire, 20)
    elif linktype == LINKTYPE_PFLOG:
        _pflog(data, off, cap, wire)
    elif linktype == LINKTYPE_USB_LINUX:
        _usb(data, off, cap, False)
    elif linktype == LINKTYPE_USB_LINUX_MMAPPED:
        _usb(data, off, cap, True)
    else:
        _nflog(data, off, cap, wire)


def swap_mixed(data, offsets, caplen, wirelen, linktypes, swapped):
    """swap_packets for the packets of a batch with a link type each (linktypes) of which those
    marked in `swapped` (a bool array) come from a section of the other byte order."""
    np = _np()
    for lt in PSEUDO_HEADER_LINKTYPES:
        sel = np.flatnonzero(swapped & (linktypes == lt))
        if len(sel):
            swap_packets(data, offsets[sel], caplen[sel], wirelen[sel], lt)
