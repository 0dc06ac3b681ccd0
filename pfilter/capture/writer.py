"""Capture writers: pcap (microsecond or nanosecond magic) and pcapng, little-endian, written
atomically (pfilter.capture.files.AtomicFile: the file gets its name whole on close, or never).
A signal handled by pfilter._signals.interruptible waits while a writer puts records out, so an
interruption leaves whole records, and close() then keeps them as a valid capture.

Imports pfilter.batch, pfilter.errors, pfilter.linktypes and pfilter._signals, and the record
assemblers of pfilter.capture._writer (Cython) or its pure-Python twin pfilter.capture._pywriter
(the same bytes), as pfilter._impl picks. Records keep each packet's original
wire length. A writer refuses a destination that is one of its inputs (same device and inode).

    with open_writer("out.pcap", linktype=1, snaplen=262144, ts_resolution="ns") as w:
        w.write(batch, indices)          # or w.write(batch) for every packet
"""
import functools
import os
import struct

import numpy as np

from .._signals import deferred
from ..errors import FilterError
from .files import atomic_output, file_linktype, format_for_path, pcap_file_header

from .. import _impl
from . import _pywriter

_native = _impl.native("pfilter.capture._writer")     # None: the twin assembles, no writev path

FORMATS = ("pcap", "pcapng")
# Records are assembled into a staging buffer of this size and written in one system call.
STAGE_BYTES = 8 * 1024 * 1024
# A batch's records that already sit in the input as they must be written (pcap in, pcap out,
# same byte order and resolution) go out with writev straight from the input's memory map when
# they add up to at least this much; smaller amounts are cheaper to gather into the stage.
VERBATIM_MIN_BYTES = 64 * 1024


def _index(batch, which):
    """int64 indices of the packets to write: all, a bool mask, or indices (integers in
    0..len(batch)-1; a private copy). FilterError for anything else, or for a batch whose arrays
    are no longer what a PacketBatch holds."""
    from ..batch import PacketBatch
    if not isinstance(batch, PacketBatch):
        raise FilterError(f"a writer writes a PacketBatch, not {type(batch).__name__}")
    n = len(batch.native_arrays()[1])
    ts = batch.timestamps
    if not (isinstance(ts, np.ndarray) and ts.dtype == np.int64 and ts.shape == (n,) and ts.flags.c_contiguous):
        raise FilterError("PacketBatch timestamps is no longer a contiguous int64 array of one entry per packet")
    if which is None:
        return np.arange(n, dtype=np.int64)
    which = np.asarray(which)
    if which.ndim != 1:
        raise FilterError(f"packets to write: a 1-D bool mask or integer indices, not shape {which.shape}")
    if which.dtype == np.bool_:
        if len(which) != n:
            raise FilterError("mask and batch differ in length")
        return np.flatnonzero(which).astype(np.int64, copy=False)
    if which.size == 0:
        return np.zeros(0, np.int64)
    if which.dtype.kind not in "iu":
        raise FilterError(f"packets to write: a bool mask or integer indices, not {which.dtype}")
    if int(which.min()) < 0 or int(which.max()) >= n:
        raise FilterError(f"packet indices to write must lie in 0..{n - 1}")
    return np.array(which, dtype=np.int64, copy=True)


def _raw_layout(raw_layout):
    """(record header size, swapped) from a Capture's pcap_layout: a classic pcap record header
    is 16 bytes, or 24 in the modified (Kuznetzov) format; (0, False) when None."""
    if raw_layout is None:
        return 0, False
    try:
        size, swapped = raw_layout
    except (TypeError, ValueError):
        raise FilterError(f"raw_layout must be (header size, swapped), not {raw_layout!r}") from None
    if isinstance(size, bool) or size not in (16, 24) or not isinstance(swapped, (bool, np.bool_)):
        raise FilterError(f"raw_layout must be (16 or 24, bool), not {raw_layout!r}")
    return int(size), bool(swapped)


def _bad_packet(batch, code):
    """The FilterError for an assembler's failure code -1 - i (packet i, or len(batch): an index)."""
    i = -1 - code
    if 0 <= i < len(batch):
        return batch.bounds_error(i)
    return FilterError("packet index outside the batch")


def _assembler():
    """The record assemblers: the extension, else (PFILTER_PUREPYTHON=1, not built) the twin."""
    return _native if _native is not None else _pywriter


def _uninterrupted(method):
    """Run a writer method with signals deferred (pfilter._signals): its records go out whole."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with deferred():
            return method(self, *args, **kwargs)
    return run


class CaptureWriter:
    """Base of the two writers: atomic output, counters, context manager (commit on success,
    remove the temporary file on an exception)."""

    format = None

    def __init__(self, dst, protect=(), compression=None):
        # compressed by the name's extension, or as `compression` says (a rotated file of a
        # compressed name: 'r.pcap.gz1' is gzip as 'r.pcap.gz')
        self._out = atomic_output(dst, protect, compression)
        self.path = dst
        self.packets_written = 0
        self.bytes_written = 0
        self._closed = False
        self._buf = np.empty(STAGE_BYTES, np.uint8)
        self._fill = 0

    def _set_format(self, linktype, snaplen, ts_resolution):
        if ts_resolution not in ("us", "ns"):
            raise FilterError(f"timestamp resolution must be 'us' or 'ns', not {ts_resolution!r}")
        self.linktype = int(linktype)
        self.snaplen = int(snaplen)
        self.nsec = ts_resolution == "ns"

    def _stage(self, size):
        """Room for `size` bytes in the staging buffer (flushed or grown as needed)."""
        if self._fill + size > len(self._buf):
            self._flush()
            if size > len(self._buf):
                self._buf = np.empty(size, np.uint8)
        return self._buf[self._fill:]

    def _staged(self, used):
        self._fill += used
        self.bytes_written += used

    def _flush(self):
        if self._fill:
            self._out.write(memoryview(self._buf)[:self._fill])
            self._fill = 0

    def _emit(self, data):
        room = self._stage(len(data))
        room[:len(data)] = np.frombuffer(data, np.uint8)
        self._staged(len(data))

    @_uninterrupted
    def flush(self):
        """Hand everything written so far to the operating system."""
        self._flush()

    @_uninterrupted
    def close(self):
        """Finish the file and move it into place (also after an interruption: the records
        written so far make a valid capture)."""
        if not self._closed:
            self._closed = True
            try:
                self._flush()
            except BaseException:
                self._out.abort()
                raise
            self._out.commit()

    def abort(self):
        """Drop everything written; the destination is left as it was."""
        if not self._closed:
            self._closed = True
            self._out.abort()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False

    def write_packets(self, packets, timestamps=None, wirelens=None, linktype=None):
        """Write bytes-like packets (convenience for small amounts)."""
        from ..batch import PacketBatch
        lt = self.linktype if linktype is None else linktype
        self.write(PacketBatch.from_packets(list(packets), wirelens=wirelens, linktype=lt,
                                           timestamps=timestamps))


class PcapWriter(CaptureWriter):
    """Classic pcap, version 2.4, little-endian; nanosecond magic when ts_resolution == "ns"."""

    format = "pcap"

    def __init__(self, dst, linktype=1, snaplen=262144, ts_resolution="us", linktype_ext=0,
                 protect=(), compression=None):
        self._set_format(linktype, snaplen, ts_resolution)
        super().__init__(dst, protect, compression)
        self._emit(pcap_file_header(self.linktype, self.snaplen, self.nsec, linktype_ext))

    def takes(self, linktype):
        """Whether packets of this link type can go into the file (one link type per pcap file;
        a DLT number and its LINKTYPE_ value are the same)."""
        return linktype == self.linktype or file_linktype(linktype) == file_linktype(self.linktype)

    @_uninterrupted
    def write(self, batch, which=None, raw_layout=None):
        """Write the batch's packets (all, a bool mask, or int indices); returns how many.

        raw_layout: (header size, swapped) when the batch is a classic pcap window of this
        writer's timestamp resolution (Capture.pcap_layout): timestamps are then copied from
        each record's header as they are, as tcpdump writes them, even out-of-range fractions."""
        idx = _index(batch, which)
        if len(idx) == 0:
            return 0
        raw_back, raw_swapped = _raw_layout(raw_layout)
        if batch.linktypes is not None:
            kinds = [int(lt) for lt in np.unique(batch.linktypes[idx])]
        else:
            kinds = [batch.linktype]
        for lt in kinds:
            if not self.takes(lt):
                raise FilterError(f"a packet of link type {lt} cannot go into a pcap file of link "
                                  f"type {self.linktype}: write pcapng instead")
        caplen = batch.caplen[idx]
        size = 16 * len(idx) + int(caplen.sum(dtype=np.int64))
        if raw_back == 16 and not raw_swapped and _native is not None and self._verbatim(batch, idx, size):
            return len(idx)
        out = self._stage(size)
        used = _assembler().pcap_records(batch.data, batch.offsets, batch.caplen, batch.wirelen,
                                         batch.timestamps, idx, self.nsec, out, raw_back, raw_swapped)
        if used < 0:
            raise _bad_packet(batch, used)
        self._staged(used)
        self.packets_written += len(idx)
        return len(idx)


    def _verbatim(self, batch, idx, size):
        """Write the selected records straight from the batch's buffer (the input's memory map)
        with writev, when their headers there are byte for byte what would be written; False
        (nothing written) otherwise."""
        if size < VERBATIM_MIN_BYTES:
            return False
        starts = np.empty(len(idx), np.int64)
        ends = np.empty(len(idx), np.int64)
        runs = _native.pcap_verbatim_runs(batch.data, batch.offsets, batch.caplen, batch.wirelen,
                                          idx, starts, ends)
        if runs < 0:
            return False
        self._flush()
        try:
            fd = self._out.fileno()
        except (OSError, ValueError, AttributeError):
            return False
        err = _native.write_runs(fd, batch.data, starts, ends, runs)
        if err:
            raise OSError(err, os.strerror(err), self._out.path)
        self.bytes_written += size
        self.packets_written += len(idx)
        return True


def _option(code, value):
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


class PcapngWriter(CaptureWriter):
    """pcapng, one little-endian section; an Interface Description Block per input interface
    (or per link type and resolution), written before its first packet; Enhanced Packet Blocks
    with if_tsresol 10^-9 when ts_resolution == "ns" (else the default 10^-6). With
    keep_resolution, each interface keeps its input's resolution instead, as mergecap keeps
    them (an input interface's if_tsresol finer than microseconds: 10^-9; a pcap input's
    source_nsec, which the caller sets with `source`): no timestamp is cut."""

    format = "pcapng"

    def __init__(self, dst, linktype=1, snaplen=262144, ts_resolution="us", interfaces=None,
                 protect=(), keep_resolution=False, compression=None):
        self._set_format(linktype, snaplen, ts_resolution)
        self.interfaces = interfaces   # the input's interface list (dicts), read when needed
        self.source = 0                # which input `interfaces` belongs to (several inputs)
        self.keep_resolution = keep_resolution
        self.source_nsec = self.nsec   # the resolution of the input `source` (a pcap input)
        self._out_ids = {}
        self._out_nsec = []            # each output interface's resolution (True: ns)
        super().__init__(dst, protect, compression)
        opts = _option(4, b"pfilter") + _option(0, b"")
        body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + opts
        total = 12 + len(body)
        self._emit(struct.pack("<II", 0x0A0D0D0A, total) + body + struct.pack("<I", total))

    def from_input(self, cap, source):
        """The packets written next are input number `source`'s, the open Capture `cap`."""
        self.interfaces, self.source, self.source_nsec = cap.interfaces, source, cap.ts_resolution == "ns"

    @_uninterrupted
    def close(self):
        """As CaptureWriter.close; a file that got no packet still describes its interfaces (the
        input's, or one of its link type), as mergecap and editcap write it: readers (tcpdump)
        refuse a pcapng file without any."""
        if not self._closed and not self._out_ids:
            if self.interfaces:
                for k, info in enumerate(self.interfaces):
                    self._interface(("if", self.source, k), info["linktype"], info["snaplen"],
                                    self._resolution(int(info.get("units") or 1000000) > 1000000), info.get("name"))
            else:
                nsec = self._resolution(self.source_nsec)
                self._interface(("lt", self.linktype, nsec), self.linktype, self.snaplen, nsec)
        super().close()

    def _resolution(self, input_nsec):
        """Whether an output interface for an input of that resolution is in ns."""
        return bool(input_nsec) if self.keep_resolution else self.nsec

    def _interface(self, key, linktype, snaplen, nsec, name=None):
        if key in self._out_ids:
            return self._out_ids[key]
        opts = b""
        if name:
            opts += _option(2, name.encode("utf-8", "replace"))
        if nsec:
            opts += _option(9, b"\x09")
        if opts:
            opts += _option(0, b"")
        body = struct.pack("<HHI", file_linktype(linktype), 0, snaplen & 0xFFFFFFFF) + opts
        total = 12 + len(body)
        self._emit(struct.pack("<II", 1, total) + body + struct.pack("<I", total))
        self._out_ids[key] = len(self._out_ids)
        self._out_nsec.append(bool(nsec))
        return self._out_ids[key]

    def _iface_ids(self, batch, idx):
        """Output interface id of each selected packet (IDBs written as they are first needed)."""
        if batch.interfaces is not None and self.interfaces is not None:
            src = batch.interfaces[idx]
            out = np.empty(len(idx), np.uint32)
            for iface in np.unique(src):
                info = self.interfaces[int(iface)]
                oid = self._interface(("if", self.source, int(iface)), info["linktype"], info["snaplen"],
                                      self._resolution(int(info.get("units") or 1000000) > 1000000),
                                      info.get("name"))
                out[src == iface] = oid
            return out
        nsec = self._resolution(self.source_nsec)
        if batch.linktypes is not None:
            lts = batch.linktypes[idx]
            out = np.empty(len(idx), np.uint32)
            for lt in np.unique(lts):
                out[lts == lt] = self._interface(("lt", int(lt), nsec), int(lt), self.snaplen, nsec)
            return out
        oid = self._interface(("lt", int(batch.linktype), nsec), int(batch.linktype), self.snaplen, nsec)
        return np.full(len(idx), oid, np.uint32)

    @_uninterrupted
    def write(self, batch, which=None):
        """Write the batch's packets (all, a bool mask, or int indices); returns how many."""
        idx = _index(batch, which)
        if len(idx) == 0:
            return 0
        ids = self._iface_ids(batch, idx)
        caplen = batch.caplen[idx].astype(np.int64)
        size = 32 * len(idx) + int(((caplen + 3) & ~3).sum())
        out = self._stage(size)
        nsec = np.array(self._out_nsec, bool)[ids]
        # runs of packets on interfaces of one resolution (one run unless they differ)
        cuts = [0] + (np.flatnonzero(nsec[1:] != nsec[:-1]) + 1).tolist() + [len(idx)]
        used = 0
        for a, b in zip(cuts[:-1], cuts[1:]):
            got = _assembler().pcapng_epbs(batch.data, batch.offsets, batch.caplen, batch.wirelen,
                                           batch.timestamps, idx[a:b], ids[a:b], bool(nsec[a]), out[used:])
            if got < 0:
                raise _bad_packet(batch, got)
            used += got
        self._staged(used)
        self.packets_written += len(idx)
        return len(idx)


def open_writer(dst, format=None, linktype=1, snaplen=262144, ts_resolution="us", linktype_ext=0,
                interfaces=None, protect=(), keep_resolution=False, compression=None):
    """A PcapWriter or PcapngWriter for dst ("-" is standard output, not atomic). The format is
    `format`, else pcapng for a .pcapng name, else pcap; compressed as `compression` says, else
    by the name's extension. keep_resolution (pcapng): each interface at its input's resolution
    rather than at ts_resolution (PcapngWriter)."""
    fmt = format or format_for_path(dst)
    if fmt == "pcap":
        return PcapWriter(dst, linktype, snaplen, ts_resolution, linktype_ext, protect, compression)
    if fmt == "pcapng":
        return PcapngWriter(dst, linktype, snaplen, ts_resolution, interfaces, protect, keep_resolution,
                            compression)
    raise FilterError(f"unknown capture format {fmt!r} (pcap or pcapng)")
