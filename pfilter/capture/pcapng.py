"""pcapng files for pfilter.capture.reader: section headers and interface descriptions read
in Python with libpcap 1.10.3's checks and messages (sf-pcapng.c), the scanner's calls for the
blocks between them, and the interface table the scanner extends.

Imports pfilter.batch and pfilter.capture.files / _scancodes; reads through a
pfilter.capture.sources.Window.
"""
from __future__ import annotations

import struct
import sys

import numpy as np

from ..batch import PacketBatch
from ._scancodes import (ST_BADLEN, ST_BLOCK, ST_CAPLEN, ST_FULL, ST_NOIFACE, ST_SHORT, ST_TOOBIG,
                         ST_TRAILER, ST_UNALIGNED, ts_mode)
from .files import (INITIAL_MAX_BLOCKSIZE, PCAPNG_BOM, PCAPNG_SHB, SHB_INSANE_MAX, adjust_snaplen,
                    max_blocksize as _max_blocksize, pcapng_resolution)
from .swap import PSEUDO_HEADER_LINKTYPES, swap_mixed

BT_IDB, BT_PB, BT_SPB, BT_EPB = 1, 2, 3, 6
_SWAP_LINKTYPES = np.array(sorted(PSEUDO_HEADER_LINKTYPES), np.uint16)

_HOST_LITTLE = sys.byteorder == "little"

# libpcap's messages for the damage the scanner reports ({info}: the status's value)
_MESSAGES = {
    ST_BADLEN: "block in pcapng dump file has a length of {info} < 12",
    ST_UNALIGNED: "block in pcapng dump file has a length of {info} that is not a multiple of 4",
    ST_TOOBIG: "pcapng block size {info} > maximum {maximum}",
    ST_TRAILER: "block total length in header and trailer don't match",
    ST_SHORT: "block of type {info} in pcapng dump file is too short",
    ST_NOIFACE: "a packet arrived on interface {info}, but there's no Interface Description Block for that interface",
}


class PcapngFormat:
    """A pcapng file opened in a Window (its first section header and first interface read):
    the Capture's attributes, the interface table, and the scanner calls for its blocks."""

    format = "pcapng"
    ATTRIBUTES = ("format", "byteorder", "version", "linktype", "snaplen", "ts_resolution", "interfaces")
    min_record = 12                 # the smallest block
    min_header = 8                  # a block's type and length

    def _prefix(self):
        """struct byte-order prefix of the current section."""
        return "<" if _HOST_LITTLE != self._swapped else ">"

    def __init__(self, win):
        # libpcap: pcap_ng_check_header()
        self.win = win
        self.ifaces = _InterfaceTable()
        self.interfaces = _InterfaceList(self.ifaces)
        self._section_base = 0
        self._max_blocksize = INITIAL_MAX_BLOCKSIZE
        # how many interfaces were looked at for a link type whose pseudo-header libpcap swaps in
        # a section of the other byte order (pfilter.capture.swap), and whether one has it
        self._swap_checked = 0
        self._swap_linktypes = False
        head = self.win.bytes(0, 12)
        if len(head) < 12:
            raise self.win.error("unknown file format", 0)
        if struct.unpack("<I", head[8:12])[0] == PCAPNG_BOM:
            self.byteorder = "little"
        elif struct.unpack(">I", head[8:12])[0] == PCAPNG_BOM:
            self.byteorder = "big"
        else:
            raise self.win.error("unknown file format", 0)
        self._swapped = (self.byteorder == "little") != _HOST_LITTLE
        prefix = "<" if self.byteorder == "little" else ">"
        total = struct.unpack(prefix + "I", head[4:8])[0]
        if total < 28 or total > SHB_INSANE_MAX:
            raise self.win.error(
                f"Section Header Block in pcapng dump file has invalid length 28 < _{total}_ < "
                f"{SHB_INSANE_MAX} (BT_SHB_INSANE_MAX)", 0)
        shb = self.win.bytes(0, total)
        if len(shb) < total:
            raise self.win.error(f"truncated pcapng dump file; tried to read {total - 12} bytes, "
                                 f"only got {len(shb) - 12}", 0)
        major, minor = struct.unpack(prefix + "HH", shb[12:16])
        if not (major == 1 and minor in (0, 2)):
            raise self.win.error(f"unsupported pcapng savefile version {major}.{minor}", 12)
        self.version = (major, minor)
        # libpcap checks the trailer of the first SHB only through the next read; so do we.
        pos = total
        while True:
            block = self._read_block(pos)
            if block is None:
                raise self.win.error("the capture file has no Interface Description Blocks", pos)
            btype, total, body = block
            if btype == BT_IDB:
                self._add_interface(body, pos)
                pos += total
                break
            if btype in (BT_EPB, BT_SPB, BT_PB):
                raise self.win.error(
                    "the capture file has a packet block before any Interface Description Blocks", pos)
            if btype == PCAPNG_SHB:
                pos = self._new_section(pos)
                continue
            pos += total
        self.start = pos                # the first block after the first interface
        first = self.interfaces[0]
        self.linktype = first["linktype"]
        self.snaplen = first["snaplen"]
        self.ts_resolution = pcapng_resolution(first["units"])
        self._max_blocksize = _max_blocksize(self.linktype)

    def _read_block(self, pos):
        """(type, total length, body bytes without trailer) of the block at pos; None at EOF."""
        # libpcap: read_block()
        prefix = self._prefix()
        hdr = self.win.bytes(pos, 8)
        if not hdr:
            return None
        if len(hdr) < 8:
            raise self.win.error(f"truncated pcapng dump file; tried to read 8 bytes, only got {len(hdr)}", pos)
        btype, total = struct.unpack(prefix + "II", hdr)
        if btype == PCAPNG_SHB:
            return btype, 0, b""
        self._check_block_length(total, pos)
        return btype, total, self._whole_block(pos, total, prefix)[8:-4]

    def _whole_block(self, pos, total, prefix):
        """The `total` bytes of the block at pos, its trailer checked."""
        data = self.win.bytes(pos, total)
        if len(data) < total:
            raise self.win.error(f"truncated pcapng dump file; tried to read {total - 8} bytes, "
                                 f"only got {len(data) - 8}", pos)
        if struct.unpack(prefix + "I", data[-4:])[0] != total:
            raise self.win.error("block total length in header and trailer don't match", pos)
        return data

    def _check_block_length(self, total, pos):
        if total < 12:
            raise self.win.error(f"block in pcapng dump file has a length of {total} < 12", pos)
        if total % 4:
            raise self.win.error(f"block in pcapng dump file has a length of {total} that is not a multiple of 4", pos)
        if total > self._max_blocksize:
            raise self.win.error(f"pcapng block size {total} > maximum {self._max_blocksize}", pos)

    def _new_section(self, pos):
        """A Section Header Block at pos (not the first): byte order may change; interfaces reset."""
        head = self.win.bytes(pos, 12)
        if len(head) < 12:
            raise self.win.error(f"truncated pcapng dump file; tried to read 12 bytes, only got {len(head)}", pos)
        if struct.unpack("<I", head[8:12])[0] == PCAPNG_BOM:
            order = "little"
        elif struct.unpack(">I", head[8:12])[0] == PCAPNG_BOM:
            order = "big"
        else:
            raise self.win.error("the file has a section with a bad byte order magic field", pos)
        # Divergence: libpcap refuses a section whose byte order differs from the first one's;
        # the pcapng format allows it, so the new section is read in its own byte order.
        self._swapped = (order == "little") != _HOST_LITTLE
        prefix = "<" if order == "little" else ">"
        total = struct.unpack(prefix + "I", head[4:8])[0]
        self._check_block_length(total, pos)
        if total < 28:
            raise self.win.error(f"block of type {PCAPNG_SHB} in pcapng dump file is too short", pos)
        data = self._whole_block(pos, total, prefix)
        major = struct.unpack(prefix + "H", data[12:14])[0]
        if major != 1:
            raise self.win.error(f"unknown pcapng savefile major version number {major}", pos)
        self._section_base = self.ifaces.count
        return pos + total

    def _idb_option_once(self, option, length, want, seen, pos):
        """An IDB option that must have `want` bytes and appear at most once (libpcap's checks)."""
        if length != want:
            raise self.win.error(f"Interface Description Block has {option} option with length {length} != {want}", pos)
        if option in seen:
            raise self.win.error(f"Interface Description Block has more than one {option} option", pos)
        seen.add(option)

    def _add_interface(self, body, pos):
        # libpcap: add_interface(), process_idb_options()
        prefix = self._prefix()
        if len(body) < 8:
            raise self.win.error(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
        linktype, _reserved, snaplen = struct.unpack(prefix + "HHI", body[:8])
        units, is_binary, tsoffset, name = 1000000, False, 0, None
        seen = set()
        i = 8
        while i < len(body):
            if len(body) - i < 4:
                raise self.win.error(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
            code, length = struct.unpack(prefix + "HH", body[i:i + 4])
            padded = (length + 3) // 4 * 4
            i += 4
            if len(body) - i < padded:
                raise self.win.error(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
            value = body[i:i + length]
            i += padded
            if code == 0:
                if length != 0:
                    raise self.win.error(
                        f"Interface Description Block has opt_endofopt option with length {length} != 0", pos)
                break
            if code == 9:
                self._idb_option_once("if_tsresol", length, 1, seen, pos)
                v = value[0]
                if v & 0x80:
                    if v & 0x7F > 63:
                        raise self.win.error(f"Interface Description Block if_tsresol option resolution "
                                             f"2^-{v & 0x7F} is too high", pos)
                    units, is_binary = 1 << (v & 0x7F), True
                else:
                    if v > 19:
                        raise self.win.error(f"Interface Description Block if_tsresol option resolution "
                                             f"10^-{v} is too high", pos)
                    units = 10 ** v
            elif code == 14:
                self._idb_option_once("if_tsoffset", length, 8, seen, pos)
                tsoffset = struct.unpack(prefix + "q", value)[0]
            elif code == 2:
                name = value.decode("utf-8", "replace")
        mode = ts_mode(units, is_binary)
        # Divergence: libpcap refuses an interface whose link type or snapshot length differs from
        # the first interface's; pfilter gives each packet its own interface's link type.
        snap = adjust_snaplen(linktype, snaplen)
        self.ifaces.add(linktype, snap, mode, units, tsoffset, pos, name)

    # -- iteration -------------------------------------------------------------------------------

    def scan(self, scanner, pos, arrays, batch_bytes):
        """(batch or None, new position, status, info) from the blocks at pos; the interfaces
        the scanner meets join the table (grown when full)."""
        win, t = self.win, self.ifaces
        cap = len(arrays[0])
        extra = (np.empty(cap, np.uint32), np.empty(cap, np.uint16))
        before = t.count
        t.state[:] = (self._swapped, t.count, self._section_base)
        n, rel, status, info = scanner.scan_pcapng(
            win.arr, pos - win.base, win.base, self._max_blocksize, t.state, t.linktype, t.snaplen, t.tsmode,
            t.units, t.tsoffset, t.offset, t.nameoff, t.namelen, *arrays, *extra, cap, batch_bytes)
        self._swapped, self._section_base = bool(t.state[0]), int(t.state[2])
        t.count = int(t.state[1])
        t.take_names(before, win.arr, win.base)
        if status == ST_FULL:
            t.grow()
        batch = None
        if n:
            offsets, caplen, wirelen, stamps, fileoffs = (a[:n] for a in arrays)
            ifaces, linktypes = extra[0][:n], extra[1][:n]
            if self._swap_linktypes or self._new_swap_linktypes():
                self._swap(offsets, caplen, wirelen, fileoffs, linktypes)
            batch = PacketBatch(win.arr, offsets, caplen, wirelen, stamps, int(linktypes[0]),
                                linktypes=linktypes, interfaces=ifaces, file_offsets=fileoffs)
        return batch, win.base + rel, status, info

    def _new_swap_linktypes(self):
        """Whether an interface added since the last look has a link type pfilter.capture.swap
        handles (then every later batch looks at its packets' link types)."""
        t = self.ifaces
        if t.count > self._swap_checked:
            new = t.linktype[self._swap_checked:t.count]
            self._swap_checked = t.count
            self._swap_linktypes = bool(np.isin(new, _SWAP_LINKTYPES).any())
        return self._swap_linktypes

    def _swap(self, offsets, caplen, wirelen, fileoffs, linktypes):
        """Swap in place the pseudo-headers of the batch's packets of those link types that come
        from a section of the other byte order, as libpcap does (pfilter.capture.swap). A batch
        may span sections: a packet's section is swapped when its block type (2, 3 or 6), read in
        this host's order, is not a small number."""
        sel = np.flatnonzero(np.isin(linktypes, _SWAP_LINKTYPES))
        if not len(sel):
            return
        arr = self.win.arr
        at = fileoffs[sel] - self.win.base
        btype = arr[at].astype(np.uint32)
        for k in range(1, 4):
            btype |= arr[at + k].astype(np.uint32) << (8 * k)
        if not _HOST_LITTLE:
            btype = btype.byteswap()
        swapped = btype > 0xFFFF
        if swapped.any():
            swap_mixed(arr, offsets[sel], caplen[sel], wirelen[sel], linktypes[sel], swapped)

    def truncated(self, pos, need, avail):
        """The error for a block at pos that needs `need` bytes where the file has `avail`."""
        if avail < 8:
            return self.win.error(f"truncated pcapng dump file; tried to read 8 bytes, only got {avail}", pos)
        return self.win.error(f"truncated pcapng dump file; tried to read {need - 8} bytes, "
                              f"only got {avail - 8}", pos)

    def stopped(self, pos, status, info):
        """The scan stopped at pos for Python: the new position after a section header or an
        interface read here (ST_BLOCK), pos again after the table grew (ST_FULL); else raise
        the damage's error."""
        if status == ST_FULL:       # the table has grown: scan on
            return pos
        if status == ST_BLOCK:
            if struct.unpack("<I", self.win.bytes(pos, 4))[0] == PCAPNG_SHB:
                return self._new_section(pos)
            _btype, total, body = self._read_block(pos)
            self._add_interface(body, pos)
            return pos + total
        raise self.win.error(self._message(pos, status, info), pos)

    def _message(self, pos, status, info):
        if status == ST_CAPLEN:
            hdr = self.win.bytes(pos, 12)
            btype, _total, iface = struct.unpack(self._prefix() + "III", hdr)
            if btype == BT_SPB:
                iface = 0
            elif btype == BT_PB:
                iface = struct.unpack(self._prefix() + "H", hdr[8:10])[0]
            idx = self._section_base + iface
            snap = int(self.ifaces.snaplen[idx]) if idx < self.ifaces.count else self.snaplen
            return f"invalid packet capture length {info}, bigger than snaplen of {snap}"
        return _MESSAGES.get(status, "pcapng reader status {status}").format(
            info=info, status=status, maximum=self._max_blocksize)



class _InterfaceTable:
    """Every interface of a pcapng file (all sections), in arrays the scanner reads and extends
    (a section's packets name interfaces from the section's first one, `state[2]`). Names are
    kept only for the interfaces that have one: a file of a million interfaces costs about 50
    bytes each (libpcap keeps a similar table)."""

    FIELDS = (("linktype", np.uint16), ("snaplen", np.uint32), ("tsmode", np.int32), ("units", np.uint64),
              ("tsoffset", np.int64), ("offset", np.int64), ("nameoff", np.int64), ("namelen", np.uint16))

    def __init__(self):
        self.count = 0
        self.state = np.zeros(3, np.int64)      # swapped, count, section base: the scanner's view
        self.names = {}
        for name, dtype in self.FIELDS:
            setattr(self, name, np.zeros(16, dtype))

    def grow(self):
        for name, _dtype in self.FIELDS:
            old = getattr(self, name)
            new = np.zeros(2 * len(old), old.dtype)
            new[:len(old)] = old
            setattr(self, name, new)

    def add(self, linktype, snaplen, mode, units, tsoffset, offset, name):
        if self.count == len(self.linktype):
            self.grow()
        i = self.count
        self.linktype[i], self.snaplen[i], self.tsmode[i] = linktype, snaplen, mode
        self.units[i], self.tsoffset[i], self.offset[i] = units, tsoffset, offset
        self.nameoff[i], self.namelen[i] = -1, 0
        if name is not None:
            self.names[i] = name
        self.count += 1

    def take_names(self, start, window, base):
        """The if_name options of the interfaces the scanner added from `start`, read from the
        window they are in."""
        for i in np.flatnonzero(self.nameoff[start:self.count] >= 0) + start:
            at = int(self.nameoff[i]) - base
            self.names[int(i)] = window[at:at + int(self.namelen[i])].tobytes().decode("utf-8", "replace")
            self.nameoff[i] = -1


class _InterfaceList:
    """Capture.interfaces of a pcapng file: a read-only sequence of one dict per interface seen so
    far (linktype, snaplen, units, tsoffset, name, offset), made when asked for."""

    def __init__(self, table):
        self._t = table

    def __len__(self):
        return self._t.count

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = self._t.count
        if not -n <= i < n:
            raise IndexError("interface index out of range")
        i %= n
        t = self._t
        return {"linktype": int(t.linktype[i]), "snaplen": int(t.snaplen[i]), "units": int(t.units[i]),
                "tsoffset": int(t.tsoffset[i]), "name": t.names.get(i), "offset": int(t.offset[i])}

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        return repr(list(self))
