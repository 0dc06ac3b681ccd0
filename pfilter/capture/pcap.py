"""Classic pcap files for pfilter.capture.reader: the file header (pfilter.capture.files'
parse_pcap_header), the record scanner's calls and libpcap 1.10.3's messages for damage
(sf-pcap.c: pcap_next_packet()).

Imports pfilter.batch and pfilter.capture.files / _scancodes; reads through a
pfilter.capture.sources.Window.
"""
from __future__ import annotations

import struct

from ..batch import PacketBatch
from ._scancodes import ST_BADCAPLEN
from .files import parse_pcap_header
from .swap import PSEUDO_HEADER_LINKTYPES, swap_packets


class PcapFormat:
    """A classic pcap file opened in a Window: its header fields (the Capture's attributes) and
    the scanner calls for its records."""

    format = "pcap"
    ATTRIBUTES = ("format", "byteorder", "version", "linktype", "linktype_ext", "snaplen_raw", "snaplen",
                  "ts_resolution", "kuznetzov")

    def __init__(self, win):
        self.win = win
        h = self.header = parse_pcap_header(win.bytes(0, 24), win.path)
        self.byteorder, self.version, self.linktype = h.byteorder, h.version, h.linktype
        self.linktype_ext, self.snaplen_raw, self.snaplen = h.linktype_ext, h.snaplen_raw, h.snaplen
        self.ts_resolution, self.kuznetzov = h.ts_resolution, h.kuznetzov
        self.start = 24                 # the first record
        self.min_record = self.min_header = h.hdrsize
        # a file from a host of the other byte order, of a link type whose pseudo-header libpcap
        # swaps (pfilter.capture.swap): every batch's packets are swapped as they are delivered
        self.swaps = h.swapped and self.linktype in PSEUDO_HEADER_LINKTYPES

    @property
    def layout(self):
        return self.header.hdrsize, self.header.swapped

    def scan(self, scanner, pos, arrays, batch_bytes):
        """(batch or None, new position, status, info) from the records at pos."""
        h, win = self.header, self.win
        n, rel, status, info = scanner.scan_pcap(
            win.arr, pos - win.base, h.swapped, h.hdrsize, h.nsec, h.snaplen, h.maxcap, h.lengths_swapped,
            win.base, *arrays, len(arrays[0]), batch_bytes)
        batch = None
        if n:
            offsets, caplen, wirelen, stamps, fileoffs = (a[:n] for a in arrays)
            if self.swaps:
                # in place: the scan never passes these records again (the next starts after them)
                swap_packets(win.arr, offsets, caplen, wirelen, self.linktype)
            batch = PacketBatch(win.arr, offsets, caplen, wirelen, stamps, self.linktype, file_offsets=fileoffs)
        return batch, win.base + rel, status, info

    def truncated(self, pos, need, avail):
        """The error for a record at pos that needs `need` bytes where the file has `avail`."""
        # libpcap: pcap_next_packet() messages
        h, win = self.header, self.win
        if avail < h.hdrsize:
            return win.error(f"truncated dump file; tried to read {h.hdrsize} header bytes, only got {avail}", pos)
        caplen, wirelen = struct.unpack(("<" if h.byteorder == "little" else ">") + "II",
                                        win.bytes(pos + 8, 8))
        if h.lengths_swapped == 2 or (h.lengths_swapped == 1 and caplen > wirelen):
            caplen = wirelen
        got = avail - h.hdrsize
        if caplen > h.snaplen and got < h.snaplen:
            return win.error(f"truncated dump file; tried to read {h.snaplen} captured bytes, only got {got}", pos)
        return win.error(f"truncated dump file; tried to read {caplen} captured bytes, only got {got}", pos)

    def stopped(self, pos, status, info):
        """The scan stopped at damage (ST_BADCAPLEN): raise its error."""
        h, win = self.header, self.win
        if status != ST_BADCAPLEN:
            raise win.error(f"pcap reader status {status}", pos)
        if info > h.snaplen:
            raise win.error(f"invalid packet capture length {info}, bigger than snaplen of {h.snaplen}", pos)
        raise win.error(f"invalid packet capture length {info}, bigger than maximum of {h.maxcap}", pos)
