"""Capture reader: pcap and pcapng files (optionally gzip/zstd/xz/bzip2-compressed) as a stream of
PacketBatch objects of bounded size.

Imports pfilter.batch and pfilter.errors, and the record scanners (the Cython pfilter.capture._reader,
or its pure-Python twin pfilter.capture._pyscan when PFILTER_PUREPYTHON=1 or the extension is not
built). Never the compiler or the VM.

How it reads: the file is seen through *windows*, each a numpy uint8 array filled by large reads
(pread for a regular file, readinto for pipes, a decompression loop for compressed input) into a
small pool of buffers: a buffer is refilled only when no delivered batch still uses it, so batches
stay valid as long as they are kept and memory stays bounded whatever the file size. Nothing is
memory-mapped: a file truncated while it is read ends like a truncated file (tcpdump's message,
the offset after the last intact packet), never with SIGBUS. With reuse_buffer=True one buffer
serves every window (the filter path: the data is still in the CPU cache when it is filtered and
written). A batch's `data` is its window: no packet is copied, no Python object is made per
packet; the scanner fills offset/length/timestamp arrays in C with the GIL released (as pread
releases it). A batch is always delivered before its window is touched again.

Format facts follow libpcap 1.10.3 (sf-pcap.c, sf-pcapng.c): link-type upper bits masked, snapshot
length 0 or above INT_MAX replaced by the link type's maximum, records longer than the snapshot
length cut to it, records longer than the link type's maximum refused, the same error texts.
Damage raises CaptureFormatError with the file offset of the damaged record, but only after every
intact packet before it was delivered (the batch first, the error on the next call).
"""
from __future__ import annotations

import io
import os
import stat
import struct
import sys

import numpy as np

from .. import _impl
from ..batch import PacketBatch
from ..errors import CaptureFormatError, FilterError
from .files import adjust_snaplen, max_snaplen_for_linktype, parse_pcap_header, pcap_magic_order

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Literal

    from .._typing import InputArg

_scan = _impl.pick("pfilter.capture._reader", "pfilter.capture._pyscan")

ST_LIMIT, ST_MORE, ST_BADCAPLEN, ST_BLOCK, ST_BADLEN, ST_UNALIGNED, ST_TOOBIG, ST_TRAILER, \
    ST_SHORT, ST_NOIFACE, ST_CAPLEN, ST_END, ST_FULL = range(13)
TS_MICRO, TS_NANO, TS_DECUP, TS_GENERAL = range(4)

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
BT_IDB, BT_PB, BT_SPB, BT_EPB = 1, 2, 3, 6

SHB_INSANE_MAX = 1024 * 1024
INITIAL_MAX_BLOCKSIZE = 16 * 1024 * 1024

DEFAULT_BATCH_PACKETS = 65536
DEFAULT_BATCH_BYTES = 32 * 1024 * 1024
DEFAULT_WINDOW_BYTES = 16 * 1024 * 1024

_HOST_LITTLE = sys.byteorder == "little"


def _max_blocksize(linktype):
    # libpcap: MAX_BLOCKSIZE_FOR_SNAPLEN()
    return max(INITIAL_MAX_BLOCKSIZE, 8 + 20 + max_snaplen_for_linktype(linktype) + 131072 + 4)


class _Source:
    """Windows of the input, each a numpy array filled by reads (never a memory map: a file
    truncated while it is read would kill the process with SIGBUS; a short read just ends the
    data, and the damaged record is reported like any truncated file).

    `fill(view, at)` reads into the memoryview and returns the byte count (0 at the end); `at`
    is the file position, used when `positional` (a regular file, read with pread: any position
    can be asked for). A stream is read forward only and its leftover bytes move to the next
    window. Each window is a buffer of the pool whose earlier windows no delivered batch still
    uses (the pool's buffers stay faulted in and cached, so reading costs one copy from the page
    cache); with `reuse` one buffer serves every window and a batch is only valid until the next
    one is read. `error` is set by a decompressor whose data ended early or was damaged: the
    window then simply ends there."""

    POOL = 2

    def __init__(self, fill, window, positional=False, reuse=False, inflater=None):
        self.fill = fill
        self.window_bytes = window
        self.positional = positional
        self.reuse = reuse
        self.inflater = inflater
        self.pool = []
        self.arr = np.zeros(0, np.uint8)
        self.base = 0
        self.eof = False

    @property
    def error(self):
        return self.inflater.error if self.inflater is not None else None

    def _buffer(self, size):
        if self.reuse:
            if not self.pool or len(self.pool[0]) < size:
                self.pool = [np.empty(size, np.uint8)]
            return self.pool[0]
        for buf in self.pool:
            # references: the pool, `buf` and getrefcount's argument; any more are views (batches)
            if len(buf) >= size and sys.getrefcount(buf) <= 3:
                return buf
        buf = np.empty(size, np.uint8)
        self.pool.append(buf)
        del self.pool[:-self.POOL]      # a buffer still in use by batches lives on through them
        return buf

    def window(self, pos, need):
        """(array, base, at_eof) with base <= pos covering pos..pos+need unless the input ends."""
        rel = pos - self.base
        if self.positional or not 0 <= rel <= len(self.arr):
            keep = self.arr[:0]
        else:
            keep = self.arr[rel:]
            if self.eof:
                self.arr, self.base = keep, pos
                return keep, pos, True
        size = max(self.window_bytes, need)
        buf = self._buffer(size)
        filled = len(keep)
        if filled:
            buf[:filled] = keep.copy() if keep.base is buf else keep
        view = memoryview(buf)
        eof = False
        while filled < size:
            got = self.fill(view[filled:size], pos + filled)
            if not got:
                eof = True
                break
            filled += got
        self.arr, self.base, self.eof = buf[:filled], pos, eof
        return self.arr, pos, eof

    def close(self):
        self.pool = []
        self.arr = np.zeros(0, np.uint8)


class _Inflater:
    """A compressed stream decompressed here rather than through gzip.GzipFile and its kin: a
    stream cut short or damaged then yields every byte before the damage (those classes lose
    the last buffer, zstandard's reader ends silently) and `error` says what went wrong.
    Concatenated members/streams/frames are read on, as zcat does. Output per step is bounded
    (max_length; zstd, which has none, gets small input pieces)."""

    CHUNK = 1 << 16
    ZSTD_CHUNK = 4096       # a 4-byte zstd block can expand to 128 KB: at most 128 MB per step
    STEP = 1 << 20          # decompressed bytes asked for per step (gzip, xz, bzip2)

    def __init__(self, f, kind):
        self.f = f
        self.kind = kind
        self.error = None
        self.done = False
        self.pending = memoryview(b"")
        self.input = b""
        self.started = False        # the current member has produced or consumed anything
        self.d = self._new()

    def _new(self):
        if self.kind == "gzip":
            import zlib
            return zlib.decompressobj(31)
        if self.kind == "xz":
            import lzma
            return lzma.LZMADecompressor()
        if self.kind == "bzip2":
            import bz2
            return bz2.BZ2Decompressor()
        import zstandard
        return zstandard.ZstdDecompressor().decompressobj()

    def _read(self):
        data, self.input = self.input, b""
        return data or self.f.read(self.CHUNK)

    def _step(self):
        """Decompress some more into self.pending; False at the end or at damage (`error`)."""
        d = self.d
        if d.eof:
            rest, self.input = d.unused_data + self.input, b""
            rest = rest or self.f.read(self.CHUNK)
            if not rest.strip(b"\0"):
                return False            # the end (xz allows zero padding, gzip ignores it)
            self.d = d = self._new()
            self.input = rest
        if self.kind == "zstd":
            data = self._read()
            data, self.input = data[:self.ZSTD_CHUNK], data[self.ZSTD_CHUNK:]
        elif self.kind == "gzip":
            data = d.unconsumed_tail or self._read()
        else:
            data = self._read() if d.needs_input else b""
        if not data and (self.kind != "xz" and self.kind != "bzip2" or d.needs_input):
            self.error = f"{self.kind} data ends early"
            return False
        try:
            if self.kind == "zstd":
                out = d.decompress(data)
            else:
                out = d.decompress(data, self.STEP)
        except MemoryError:
            raise
        except Exception as e:      # zlib.error, lzma.LZMAError, OSError from bz2, ZstdError
            self.error = f"damaged {self.kind} data: {e}"
            return False
        self.pending = memoryview(out)
        return True

    def readinto(self, view):
        n = 0
        while n < len(view) and not self.done:
            if not len(self.pending):
                if not self._step():
                    self.done = True
                continue
            k = min(len(self.pending), len(view) - n)
            view[n:n + k] = self.pending[:k]
            self.pending = self.pending[k:]
            n += k
        return n


def _open_stream(path):
    """(binary file object, display name, owns) for a path, '-' (stdin) or a file object.
    File-system failures raise the OSError subclass (FileNotFoundError, IsADirectoryError,
    PermissionError...) with errno and filename; a text-mode file object is a FilterError."""
    if isinstance(path, str) and path == "-" or path is sys.stdin:
        return sys.stdin.buffer, "-", False
    if hasattr(path, "read"):
        if isinstance(path, io.TextIOBase):
            raise FilterError(f"{getattr(path, 'name', '<stream>')}: a capture must be opened in binary "
                              f"mode ('rb'), not text mode")
        return path, getattr(path, "name", "<stream>"), False
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise FilterError(f"a capture is a path or a binary file object, not {type(path).__name__}")
    name = os.fspath(path)
    return open(name, "rb"), os.fsdecode(name), True


def _peek(f, n):
    if hasattr(f, "peek"):
        try:
            data = f.peek(n)[:n]
        except (OSError, ValueError):
            data = None
        if data is not None:
            return _binary(f, data)
    if f.seekable():
        here = f.tell()
        data = f.read(n)
        f.seek(here)
        return _binary(f, data)
    return b""


def _binary(f, data):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FilterError(f"{getattr(f, 'name', '<stream>')}: a capture must be read from a binary file, "
                          f"not one that returns {type(data).__name__}")
    return bytes(data)


_COMPRESSION_MAGICS = ((b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"\xfd7zXZ\x00", "xz"),
                       (b"BZh", "bzip2"))


def _compression(head):
    """The compression named by a file's first bytes, or None."""
    for magic, kind in _COMPRESSION_MAGICS:
        if head.startswith(magic):
            if kind == "zstd":
                try:
                    import zstandard  # noqa: F401
                except ImportError:
                    raise CaptureFormatError("zstd-compressed capture: install the zstandard package", 0) from None
            return kind
    return None


def _regular_fd(f):
    """The file descriptor of a regular file (read with pread), else None."""
    try:
        fd = f.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


def _pread(fd, start):
    def fill(view, at):
        return os.preadv(fd, [view], start + at)     # releases the GIL
    return fill


def _readinto(stream):
    def fill(view, at):
        got = stream.readinto(view)
        return got or 0
    return fill


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
        self._f, self.path, self._owns = _open_stream(path)
        self._src = None
        self._arr = np.zeros(0, np.uint8)
        self._base = 0
        self._eof = False
        self._pos = 0
        self._pending = None
        self._done = False
        self.packets_read = 0
        self._last_n = 0
        self.compression = None
        self.linktype_ext = 0
        self.interfaces = []
        try:
            head = _peek(self._f, 6)
            self.compression = _compression(head)
            fd = _regular_fd(self._f)
            if self.compression is not None:
                inflater = _Inflater(self._f, self.compression)
                self._src = _Source(_readinto(inflater), window_bytes, reuse=reuse_buffer, inflater=inflater)
            elif fd is not None:
                self._src = _Source(_pread(fd, self._f.tell() if not self._owns else 0), window_bytes,
                                    positional=True, reuse=reuse_buffer)
            else:
                self._src = _Source(_readinto(self._f), window_bytes, reuse=reuse_buffer)
            self._open_header()
        except BaseException:
            self.close()
            raise

    # -- windows ---------------------------------------------------------------------------------

    def _error(self, message, offset):
        error = self._src.error if self._src is not None else None
        if error:       # the decompressed data ended early or was damaged: the cause comes last
            message = f"{message}; {error}"
        return CaptureFormatError(message, offset, self.path)

    def _at_end(self):
        """The data ended exactly after a record: the end, unless a decompressor saw damage
        (raised on the next call, after the batch being delivered)."""
        error = self._src.error if self._src is not None else None
        if error:
            self._pending = CaptureFormatError(error, self._pos, self.path)
        else:
            self._done = True

    def _ensure(self, pos, need):
        """Make the current window cover pos..pos+need if the file has that many bytes; return
        how many bytes from pos are available (at most need)."""
        end = self._base + len(self._arr)
        if pos < self._base or pos + need > end:
            if not (self._eof and pos >= self._base and end >= pos):
                self._arr, self._base, self._eof = self._src.window(pos, need)
                end = self._base + len(self._arr)
        return max(0, min(need, end - pos))

    def _prefix(self):
        """struct byte-order prefix of the current section."""
        return "<" if _HOST_LITTLE != self._swapped else ">"

    def _bytes(self, pos, n):
        got = self._ensure(pos, n)
        start = pos - self._base
        return self._arr[start:start + got].tobytes()

    # -- headers ---------------------------------------------------------------------------------

    def _open_header(self):
        head = self._bytes(0, 4)
        if len(head) < 4:
            raise self._error(f"truncated dump file; tried to read 4 file header bytes, only got {len(head)}", 0)
        magic_le = struct.unpack("<I", head)[0]
        if magic_le == PCAPNG_SHB:
            self._open_pcapng()
            return
        if pcap_magic_order(head) is not None:
            self._open_pcap()
            return
        raise self._error("unknown file format", 0)

    def _open_pcap(self):
        h = parse_pcap_header(self._bytes(0, 24), self.path)
        self.format = "pcap"
        self.byteorder = h.byteorder
        self.version = h.version
        self._swapped = h.swapped
        self.linktype = h.linktype
        self.linktype_ext = h.linktype_ext
        self.snaplen_raw = h.snaplen_raw
        self.snaplen = h.snaplen
        self._nsec = h.nsec
        self.ts_resolution = h.ts_resolution
        self.kuznetzov = h.kuznetzov
        self._lengths_swapped = h.lengths_swapped
        self._hdrsize = h.hdrsize
        self._maxcap = h.maxcap
        self._pos = 24

    @property
    def pcap_layout(self) -> tuple[int, bool] | None:
        """(record header size, swapped) of a classic pcap file, whose batches then hold each
        record's header just before its data; None for pcapng."""
        if self.format != "pcap":
            return None
        return self._hdrsize, self._swapped

    def _open_pcapng(self):
        # libpcap: pcap_ng_check_header()
        self.format = "pcapng"
        self._ifaces = _InterfaceTable()
        self.interfaces = _InterfaceList(self._ifaces)
        self._section_base = 0
        self._max_blocksize = INITIAL_MAX_BLOCKSIZE
        head = self._bytes(0, 12)
        if len(head) < 12:
            raise self._error("unknown file format", 0)
        if struct.unpack("<I", head[8:12])[0] == PCAPNG_BOM:
            self.byteorder = "little"
        elif struct.unpack(">I", head[8:12])[0] == PCAPNG_BOM:
            self.byteorder = "big"
        else:
            raise self._error("unknown file format", 0)
        self._swapped = (self.byteorder == "little") != _HOST_LITTLE
        prefix = "<" if self.byteorder == "little" else ">"
        total = struct.unpack(prefix + "I", head[4:8])[0]
        if total < 28 or total > SHB_INSANE_MAX:
            raise self._error(
                f"Section Header Block in pcapng dump file has invalid length 28 < _{total}_ < "
                f"{SHB_INSANE_MAX} (BT_SHB_INSANE_MAX)", 0)
        shb = self._bytes(0, total)
        if len(shb) < total:
            raise self._error(f"truncated pcapng dump file; tried to read {total - 12} bytes, "
                              f"only got {len(shb) - 12}", 0)
        major, minor = struct.unpack(prefix + "HH", shb[12:16])
        if not (major == 1 and minor in (0, 2)):
            raise self._error(f"unsupported pcapng savefile version {major}.{minor}", 12)
        self.version = (major, minor)
        # libpcap checks the trailer of the first SHB only through the next read; so do we.
        self._pos = total
        while True:
            block = self._read_block(self._pos)
            if block is None:
                raise self._error("the capture file has no Interface Description Blocks", self._pos)
            btype, total, body = block
            if btype == BT_IDB:
                self._add_interface(body, self._pos)
                self._pos += total
                break
            if btype in (BT_EPB, BT_SPB, BT_PB):
                raise self._error(
                    "the capture file has a packet block before any Interface Description Blocks", self._pos)
            if btype == PCAPNG_SHB:
                self._new_section(self._pos)
                continue
            self._pos += total
        first = self.interfaces[0]
        self.linktype = first["linktype"]
        self.snaplen = first["snaplen"]
        self.ts_resolution = "ns" if first["units"] > 1000000 else "us"
        self._max_blocksize = _max_blocksize(self.linktype)

    def _read_block(self, pos):
        """(type, total length, body bytes without trailer) of the block at pos; None at EOF."""
        # libpcap: read_block()
        prefix = self._prefix()
        hdr = self._bytes(pos, 8)
        if not hdr:
            return None
        if len(hdr) < 8:
            raise self._error(f"truncated pcapng dump file; tried to read 8 bytes, only got {len(hdr)}", pos)
        btype, total = struct.unpack(prefix + "II", hdr)
        if btype == PCAPNG_SHB:
            return btype, 0, b""
        self._check_block_length(total, pos)
        data = self._bytes(pos, total)
        if len(data) < total:
            raise self._error(f"truncated pcapng dump file; tried to read {total - 8} bytes, "
                              f"only got {len(data) - 8}", pos)
        if struct.unpack(prefix + "I", data[-4:])[0] != total:
            raise self._error("block total length in header and trailer don't match", pos)
        return btype, total, data[8:-4]

    def _check_block_length(self, total, pos):
        if total < 12:
            raise self._error(f"block in pcapng dump file has a length of {total} < 12", pos)
        if total % 4:
            raise self._error(f"block in pcapng dump file has a length of {total} that is not a multiple of 4", pos)
        if total > self._max_blocksize:
            raise self._error(f"pcapng block size {total} > maximum {self._max_blocksize}", pos)

    def _new_section(self, pos):
        """A Section Header Block at pos (not the first): byte order may change; interfaces reset."""
        head = self._bytes(pos, 12)
        if len(head) < 12:
            raise self._error(f"truncated pcapng dump file; tried to read 12 bytes, only got {len(head)}", pos)
        if struct.unpack("<I", head[8:12])[0] == PCAPNG_BOM:
            order = "little"
        elif struct.unpack(">I", head[8:12])[0] == PCAPNG_BOM:
            order = "big"
        else:
            raise self._error("the file has a section with a bad byte order magic field", pos)
        # Divergence: libpcap refuses a section whose byte order differs from the first one's;
        # the pcapng format allows it, so the new section is read in its own byte order.
        self._swapped = (order == "little") != _HOST_LITTLE
        prefix = "<" if order == "little" else ">"
        total = struct.unpack(prefix + "I", head[4:8])[0]
        self._check_block_length(total, pos)
        if total < 28:
            raise self._error(f"block of type {PCAPNG_SHB} in pcapng dump file is too short", pos)
        data = self._bytes(pos, total)
        if len(data) < total:
            raise self._error(f"truncated pcapng dump file; tried to read {total - 8} bytes, "
                              f"only got {len(data) - 8}", pos)
        if struct.unpack(prefix + "I", data[-4:])[0] != total:
            raise self._error("block total length in header and trailer don't match", pos)
        major = struct.unpack(prefix + "H", data[12:14])[0]
        if major != 1:
            raise self._error(f"unknown pcapng savefile major version number {major}", pos)
        self._section_base = self._ifaces.count
        self._pos = pos + total

    def _idb_option_once(self, option, length, want, seen, pos):
        """An IDB option that must have `want` bytes and appear at most once (libpcap's checks)."""
        if length != want:
            raise self._error(f"Interface Description Block has {option} option with length {length} != {want}", pos)
        if option in seen:
            raise self._error(f"Interface Description Block has more than one {option} option", pos)
        seen.add(option)

    def _add_interface(self, body, pos):
        # libpcap: add_interface(), process_idb_options()
        prefix = self._prefix()
        if len(body) < 8:
            raise self._error(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
        linktype, _reserved, snaplen = struct.unpack(prefix + "HHI", body[:8])
        units, is_binary, tsoffset, name = 1000000, False, 0, None
        seen = set()
        i = 8
        while i < len(body):
            if len(body) - i < 4:
                raise self._error(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
            code, length = struct.unpack(prefix + "HH", body[i:i + 4])
            padded = (length + 3) // 4 * 4
            i += 4
            if len(body) - i < padded:
                raise self._error(f"block of type {BT_IDB} in pcapng dump file is too short", pos)
            value = body[i:i + length]
            i += padded
            if code == 0:
                if length != 0:
                    raise self._error(
                        f"Interface Description Block has opt_endofopt option with length {length} != 0", pos)
                break
            if code == 9:
                self._idb_option_once("if_tsresol", length, 1, seen, pos)
                v = value[0]
                if v & 0x80:
                    if v & 0x7F > 63:
                        raise self._error(f"Interface Description Block if_tsresol option resolution "
                                          f"2^-{v & 0x7F} is too high", pos)
                    units, is_binary = 1 << (v & 0x7F), True
                else:
                    if v > 19:
                        raise self._error(f"Interface Description Block if_tsresol option resolution "
                                          f"10^-{v} is too high", pos)
                    units = 10 ** v
            elif code == 14:
                self._idb_option_once("if_tsoffset", length, 8, seen, pos)
                tsoffset = struct.unpack(prefix + "q", value)[0]
            elif code == 2:
                name = value.decode("utf-8", "replace")
        if units == 1000000:
            mode = TS_MICRO
        elif units == 1000000000:
            mode = TS_NANO
        elif not is_binary and units < 1000000000:
            mode = TS_DECUP
        else:
            mode = TS_GENERAL
        # Divergence: libpcap refuses an interface whose link type or snapshot length differs from
        # the first interface's; pfilter gives each packet its own interface's link type.
        snap = adjust_snaplen(linktype, snaplen)
        self._ifaces.add(linktype, snap, mode, units, tsoffset, pos, name)

    # -- iteration -------------------------------------------------------------------------------

    def __iter__(self) -> Capture:
        return self

    def __next__(self) -> PacketBatch:
        if self._pending is not None:
            err, self._pending = self._pending, None
            self._done = True
            raise err
        if self._done or self._src is None:
            raise StopIteration
        try:
            batch = self._next_batch()
        except CaptureFormatError:
            self._done = True
            raise
        if batch is None:
            self._done = True
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
        while True:
            self._ensure(self._pos, 1)
            if self.format == "pcap":
                result = self._scan_pcap()
            else:
                result = self._scan_pcapng()
            if result is not None:
                return result
            if self._pending is not None:
                err, self._pending = self._pending, None
                raise err
            if self._done:
                return None

    def _finish(self, n, arrays, extra=None):
        """A batch from the first n entries, or None."""
        if n == 0:
            return None
        offsets, caplen, wirelen, stamps, fileoffs = (a[:n] for a in arrays)
        if extra is None:
            return PacketBatch(self._arr, offsets, caplen, wirelen, stamps, self.linktype,
                               file_offsets=fileoffs)
        ifaces, linktypes = extra[0][:n], extra[1][:n]
        return PacketBatch(self._arr, offsets, caplen, wirelen, stamps, int(linktypes[0]),
                           linktypes=linktypes, interfaces=ifaces, file_offsets=fileoffs)

    def _scan_pcap(self):
        rel = self._pos - self._base
        arrays = self._alloc(len(self._arr) - rel, self._hdrsize)
        n, newrel, status, info = _scan.scan_pcap(
            self._arr, rel, self._swapped, self._hdrsize, self._nsec, self.snaplen, self._maxcap,
            self._lengths_swapped, self._base, *arrays, len(arrays[0]), self.batch_bytes)
        batch = self._finish(n, arrays)
        self._pos = self._base + newrel
        if batch is not None:
            # Deliver first; whatever stopped the scan (window edge, damage) is met again by the
            # next call's scan. The window is not touched before the batch is consumed.
            if status == ST_END and self._eof:
                self._at_end()
            return batch
        if status == ST_END:
            if self._eof:
                self._at_end()
            else:
                self._ensure(self._pos, self._hdrsize)
            return None
        if status == ST_MORE:
            avail = self._ensure(self._pos, int(info))
            if avail >= info:
                return None
            raise self._truncated_pcap(avail)
        # ST_BADCAPLEN
        if info > self.snaplen:
            msg = f"invalid packet capture length {info}, bigger than snaplen of {self.snaplen}"
        else:
            msg = f"invalid packet capture length {info}, bigger than maximum of {self._maxcap}"
        raise self._error(msg, self._pos)

    def _truncated_pcap(self, avail):
        # libpcap: pcap_next_packet() messages
        if avail < self._hdrsize:
            return self._error(f"truncated dump file; tried to read {self._hdrsize} header bytes, "
                               f"only got {avail}", self._pos)
        hdr = self._bytes(self._pos, self._hdrsize)
        prefix = self._prefix()
        caplen, wirelen = struct.unpack(prefix + "II", hdr[8:16])
        if self._lengths_swapped == 2 or (self._lengths_swapped == 1 and caplen > wirelen):
            caplen = wirelen
        got = avail - self._hdrsize
        if caplen > self.snaplen and got < self.snaplen:
            return self._error(f"truncated dump file; tried to read {self.snaplen} captured bytes, "
                               f"only got {got}", self._pos)
        return self._error(f"truncated dump file; tried to read {caplen} captured bytes, only got {got}",
                           self._pos)

    def _scan_pcapng(self):
        rel = self._pos - self._base
        arrays = self._alloc(len(self._arr) - rel, 12)
        cap = len(arrays[0])
        extra = (np.empty(cap, np.uint32), np.empty(cap, np.uint16))
        t = self._ifaces
        before = t.count
        t.state[:] = (self._swapped, t.count, self._section_base)
        n, newrel, status, info = _scan.scan_pcapng(
            self._arr, rel, self._base, self._max_blocksize, t.state, t.linktype, t.snaplen, t.tsmode,
            t.units, t.tsoffset, t.offset, t.nameoff, t.namelen, *arrays, *extra, cap, self.batch_bytes)
        self._swapped, self._section_base = bool(t.state[0]), int(t.state[2])
        t.count = int(t.state[1])
        t.take_names(before, self._arr, self._base)
        if status == ST_FULL:
            t.grow()
        batch = self._finish(n, arrays, extra)
        self._pos = pos = self._base + newrel
        if batch is not None:       # deliver first, as in _scan_pcap
            if status == ST_END and self._eof:
                self._at_end()
            return batch
        if status == ST_END:
            if self._eof:
                self._at_end()
            else:
                self._ensure(pos, 8)
            return None
        if status == ST_MORE:
            avail = self._ensure(pos, int(info))
            if avail >= info:
                return None
            if avail < 8:
                raise self._error(f"truncated pcapng dump file; tried to read 8 bytes, only got {avail}", pos)
            raise self._error(f"truncated pcapng dump file; tried to read {info - 8} bytes, "
                              f"only got {avail - 8}", pos)
        if status == ST_FULL:       # the table has grown: scan on
            return None
        if status == ST_BLOCK:
            hdr = self._bytes(pos, 4)
            if struct.unpack("<I", hdr)[0] == PCAPNG_SHB:
                self._new_section(pos)
            else:
                _btype, total, body = self._read_block(pos)
                self._add_interface(body, pos)
                self._pos = pos + total
            return None
        raise self._error(self._pcapng_message(status, info), pos)

    def _pcapng_message(self, status, info):
        if status == ST_BADLEN:
            return f"block in pcapng dump file has a length of {info} < 12"
        if status == ST_UNALIGNED:
            return f"block in pcapng dump file has a length of {info} that is not a multiple of 4"
        if status == ST_TOOBIG:
            return f"pcapng block size {info} > maximum {self._max_blocksize}"
        if status == ST_TRAILER:
            return "block total length in header and trailer don't match"
        if status == ST_SHORT:
            return f"block of type {info} in pcapng dump file is too short"
        if status == ST_NOIFACE:
            return (f"a packet arrived on interface {info}, but there's no Interface Description "
                    f"Block for that interface")
        if status == ST_CAPLEN:
            hdr = self._bytes(self._pos, 12)
            btype, _total, iface = struct.unpack(self._prefix() + "III", hdr)
            if btype == BT_SPB:
                iface = 0
            elif btype == BT_PB:
                iface = struct.unpack(self._prefix() + "H", hdr[8:10])[0]
            idx = self._section_base + iface
            snap = int(self._ifaces.snaplen[idx]) if idx < self._ifaces.count else self.snaplen
            return f"invalid packet capture length {info}, bigger than snaplen of {snap}"
        return f"pcapng reader status {status}"

    # -- context manager -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the file; batches already delivered stay valid."""
        self._done = True
        self._arr = np.zeros(0, np.uint8)
        if self._src is not None:
            self._src.close()
            self._src = None
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


def open_capture(path: InputArg, **options: Any) -> Capture:
    """Open a pcap or pcapng capture (format from the magic bytes, compression detected too)."""
    return Capture(path, **options)
