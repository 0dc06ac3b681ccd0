"""Capture reader: pcap and pcapng files (optionally gzip/zstd/xz/bzip2-compressed) as a stream of
PacketBatch objects of bounded size.

Imports pfilter.batch and pfilter.errors, the input side (pfilter.capture.sources: files, pipes,
decompression, pooled read buffers), the two formats (pfilter.capture.pcap, .pcapng) and the
record scanners (the Cython pfilter.capture._reader, or its pure-Python twin
pfilter.capture._pyscan, as pfilter._impl picks). Never the compiler or the VM.

A batch's `data` is its window of the input (pfilter.capture.sources): no packet is copied, no
Python object is made per packet; the scanner fills offset/length/timestamp arrays in C with the
GIL released (as pread releases it). A batch is always delivered before its window is touched
again.

Format facts follow libpcap 1.10.3 (sf-pcap.c, sf-pcapng.c): link-type upper bits masked, snapshot
length 0 or above INT_MAX replaced by the link type's maximum, records longer than the snapshot
length cut to it, records longer than the link type's maximum refused, the same error texts.
In a file or pcapng section of the other byte order, the pseudo-headers libpcap swaps (CAN IDs of
Linux cooked captures, USB_LINUX/USB_LINUX_MMAPPED headers, NFLOG TLVs, PFLOG uid/pid) are
swapped in place in the window before their batch is delivered (pfilter.capture.swap), so filters,
printing and every output see libpcap's bytes; other link types pay nothing.
Divergence: a pcap record's seconds and fraction are unsigned, as the pcap specification, libpcap
1.11, editcap and mergecap read them (1.10.3 reads them signed), so a time from 2038 on sorts,
converts and selects as those tools do.
Damage raises CaptureFormatError with the file offset of the damaged record, but only after every
intact packet before it was delivered (the batch first, the error on the next call).
"""
from __future__ import annotations

import struct

import numpy as np

from .. import _impl
from ..batch import PacketBatch
from ..errors import CaptureFormatError, FilterError
from ._scancodes import ST_END, ST_MORE
from .files import done_reading, pcap_magic_order, reading
from .pcap import PcapFormat
from .pcapng import PCAPNG_SHB, PcapngFormat
from .sources import Source as _Source, Window, open_stream

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Literal

    from .._typing import InputArg

_scan = _impl.pick("pfilter.capture._reader", "pfilter.capture._pyscan")

DEFAULT_BATCH_PACKETS = 65536
DEFAULT_BATCH_BYTES = 32 * 1024 * 1024
DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024
#: the window of a capture opened only to read its header (link type, snapshot length, ...):
#: a compressed input is then decompressed this far, not a whole window's worth
PEEK_WINDOW_BYTES = 64 * 1024

__all__ = ["Capture", "open_capture", "DEFAULT_BATCH_PACKETS", "DEFAULT_BATCH_BYTES", "DEFAULT_WINDOW_BYTES",
           "_Source"]


class Capture:
    """An open capture file: a context manager and an iterator of PacketBatch.

    Attributes: format ("pcap" or "pcapng"), linktype (LINKTYPE_ value of the header or of the
    first interface, upper bits masked), snaplen (as libpcap uses it), ts_resolution ("us"/"ns"),
    byteorder ("little"/"big", of the first section), version (major, minor), linktype_ext (the
    pcap header's upper link-type bits), compression (None, "gzip", "zstd", "xz", "bzip2"),
    interfaces (pcapng: one dict per interface seen so far), path, packets_read.

    reuse_buffer=True reads every window into one buffer with read() instead of mapping the
    file: the data stays in the CPU cache between reading, filtering and writing, but each batch
    is only valid until the next is read (filter_file uses it so)."""

    format: Literal["pcap", "pcapng"]
    linktype: int
    snaplen: int
    ts_resolution: Literal["us", "ns"]
    byteorder: Literal["little", "big"]
    version: tuple[int, int]
    linktype_ext: int
    compression: str | None
    interfaces: list[dict[str, Any]]
    path: str | bytes
    packets_read: int
    batch_packets: int
    batch_bytes: int

    def __init__(self, path: InputArg, batch_packets: int = DEFAULT_BATCH_PACKETS,
                 batch_bytes: int = DEFAULT_BATCH_BYTES, window_bytes: int = DEFAULT_WINDOW_BYTES,
                 reuse_buffer: bool = False) -> None:
        if batch_packets < 1 or batch_bytes < 1 or window_bytes < 1:
            raise FilterError("batch_packets, batch_bytes and window_bytes must be positive")
        self.batch_packets = int(batch_packets)
        self.batch_bytes = int(batch_bytes)
        self._closed = False
        self._f, self.path, self._owns = open_stream(path)
        # no output of this process replaces the file while it is read (a Writer over it)
        self._reading = reading(self._f, "- (standard input)" if self.path == "-" else self.path)
        self._win = None
        self._pending = None
        self._done = False
        self.packets_read = 0
        self._last_n = 0
        self._scanner = _scan
        self.compression = None
        self.linktype_ext = 0
        self.interfaces = []
        try:
            self._win = Window(self._f, self._owns, self.path, window_bytes, reuse_buffer)
            self.compression = self._win.compression
            self._fmt = self._open_format()
            for name in self._fmt.ATTRIBUTES:
                setattr(self, name, getattr(self._fmt, name))
            self._pos = self._fmt.start
        except BaseException:
            self.close()
            raise

    def _open_format(self):
        win = self._win
        head = win.bytes(0, 4)
        if len(head) < 4:
            raise win.error(f"truncated dump file; tried to read 4 file header bytes, only got {len(head)}", 0)
        if struct.unpack("<I", head)[0] == PCAPNG_SHB:
            return PcapngFormat(win)
        if pcap_magic_order(head) is not None:
            return PcapFormat(win)
        raise win.error("unknown file format", 0)

    @property
    def pcap_layout(self) -> tuple[int, bool] | None:
        """(record header size, swapped) of a classic pcap file, whose batches then hold each
        record's header just before its data; None for pcapng."""
        return self._fmt.layout if self.format == "pcap" else None

    # -- iteration -------------------------------------------------------------------------------

    def __iter__(self) -> Capture:
        return self

    def __next__(self) -> PacketBatch:
        if self._closed:
            # (it read as an empty capture: a loop over a closed one found no packet, silently)
            raise FilterError(f"{self.path}: the capture is closed")
        if self._pending is not None:
            err, self._pending = self._pending, None
            self._done = True
            self._read_all()
            raise err
        if self._done or self._win is None:
            self._read_all()
            raise StopIteration
        try:
            batch = self._next_batch()
        except CaptureFormatError:
            self._done = True
            self._read_all()
            raise
        if batch is None:
            self._done = True
            self._read_all()
            raise StopIteration
        self.packets_read += len(batch)
        self._last_n = len(batch)
        return batch

    def _alloc(self, room, per_record):
        """Arrays for the next batch. Their size follows the last batch's packet count (a batch
        that fills them simply ends there, the next gets twice the room): arrays sized for
        batch_packets would be fresh memory maps, faulted in and unmapped every batch."""
        cap = max(1, min(self.batch_packets, room // per_record + 1, max(4096, 2 * self._last_n)))
        return (np.empty(cap, np.int64), np.empty(cap, np.uint32), np.empty(cap, np.uint32),
                np.empty(cap, np.int64), np.empty(cap, np.int64))

    def _next_batch(self):
        win, fmt = self._win, self._fmt
        while True:
            win.ensure(self._pos, 1)
            arrays = self._alloc(len(win.arr) - (self._pos - win.base), fmt.min_record)
            batch, pos, status, info = fmt.scan(self._scanner, self._pos, arrays, self.batch_bytes)
            self._pos = pos
            if batch is not None:
                # Deliver first; whatever stopped the scan (window edge, damage) is met again by
                # the next call's scan. The window is not touched before the batch is consumed.
                if status == ST_END and win.eof:
                    self._at_end()
                return batch
            if status == ST_END:
                if win.eof:
                    self._at_end()
                else:
                    win.ensure(pos, fmt.min_header)
            elif status == ST_MORE:
                avail = win.ensure(pos, int(info))
                if avail < info:
                    raise fmt.truncated(pos, int(info), avail)
            else:
                self._pos = fmt.stopped(pos, status, info)
            if self._pending is not None:
                err, self._pending = self._pending, None
                raise err
            if self._done:
                return None

    def _at_end(self):
        """The data ended exactly after a record: the end, unless a decompressor saw damage
        (raised on the next call, after the batch being delivered)."""
        error = self._win.src.error
        if error:
            self._pending = CaptureFormatError(error, self._pos, self.path)
        else:
            self._done = True

    # -- context manager -------------------------------------------------------------------------

    def set_window_bytes(self, size: int, batch_packets: int | None = None) -> None:
        """Read the next batches through a window of `size` bytes, in batches of at most that
        many bytes (and batch_packets packets); a smaller window lets go of the larger buffer
        (a batch delivered keeps what it holds)."""
        win = self._win
        if win is not None:
            if size < win.src.window_bytes:
                win.src.pool = []
            win.src.window_bytes = size
        self.batch_bytes = size
        if batch_packets is not None:
            self.batch_packets = batch_packets

    def file_position(self, offset: int) -> int | None:
        """How far into the file the record at data offset `offset` is, for progress: the offset
        itself, or for a compressed input the compressed bytes read so far (its data offsets run
        past the file's size); None when that cannot be told."""
        if self.compression is None:
            return offset
        try:
            return self._f.tell()
        except (OSError, ValueError, AttributeError):
            return None

    def _read_all(self):
        """The file is no longer read (closed, or read to its end): outputs may replace it."""
        if getattr(self, "_reading", None) is not None:
            done_reading(self._reading, self._f)
            self._reading = None

    def close(self) -> None:
        """Release the file; batches already delivered stay valid (reading on raises FilterError)."""
        self._closed = True
        self._done = True
        self._read_all()
        if self._win is not None:
            self._win.close()
            self._win = None
        if self._owns and self._f is not None:
            self._f.close()
        self._f = None

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        self.close()
        return False

    def __repr__(self) -> str:
        return (f"<Capture {self.path!r} {getattr(self, 'format', '?')} linktype "
                f"{getattr(self, 'linktype', '?')} snaplen {getattr(self, 'snaplen', '?')}>")


def open_capture(path: InputArg, **options: Any) -> Capture:
    """Open a pcap or pcapng capture (format from the magic bytes, compression detected too)."""
    return Capture(path, **options)
