"""Where a capture's bytes come from: a regular file (pread), a pipe or file object (readinto),
or a compressed stream (decompressed here), seen as windows of numpy buffers from a small pool.

Imports pfilter.errors only; pfilter.capture.reader, .pcap and .pcapng read through a Window.

How it reads: the file is seen through *windows*, each a numpy uint8 array filled by large reads
(pread for a regular file, readinto for pipes, a decompression loop for compressed input) into a
small pool of buffers: a buffer is refilled only when no delivered batch still uses it, so batches
stay valid as long as they are kept and memory stays bounded whatever the file size. Nothing is
memory-mapped: a file truncated while it is read ends like a truncated file (tcpdump's message,
the offset after the last intact packet), never with SIGBUS. With reuse=True one buffer serves
every window (the filter path: the data is still in the CPU cache when it is filtered and
written).
"""
from __future__ import annotations

import io
import os
import stat
import sys

import numpy as np

from ..errors import CaptureFormatError, FilterError


class Source:
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


class Inflater:
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


def open_stream(path):
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


def peek(f, n):
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


def compression(head):
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


def regular_fd(f):
    """The file descriptor of a regular file (read with pread), else None."""
    try:
        fd = f.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


def pread_fill(fd, start):
    def fill(view, at):
        return os.preadv(fd, [view], start + at)     # releases the GIL
    return fill


def readinto_fill(stream):
    def fill(view, at):
        got = stream.readinto(view)
        return got or 0
    return fill


class Window:
    """The current window of a capture's input, with the reads the format readers need: `arr`
    (the window's bytes), `base` (its file offset), `eof` (the input ends at its end),
    ensure(), bytes(), error()."""

    def __init__(self, f, owns, path, window_bytes, reuse):
        self.path = path
        self.arr = np.zeros(0, np.uint8)
        self.base = 0
        self.eof = False
        self.compression = compression(peek(f, 6))
        if self.compression is not None:
            inflater = Inflater(f, self.compression)
            self.src = Source(readinto_fill(inflater), window_bytes, reuse=reuse, inflater=inflater)
            return
        fd = regular_fd(f)
        if fd is not None:
            self.src = Source(pread_fill(fd, f.tell() if not owns else 0), window_bytes, positional=True,
                              reuse=reuse)
        else:
            self.src = Source(readinto_fill(f), window_bytes, reuse=reuse)

    def error(self, message, offset):
        """CaptureFormatError for damage at offset; a decompressor's complaint comes last."""
        if self.src.error:
            message = f"{message}; {self.src.error}"
        return CaptureFormatError(message, offset, self.path)

    def ensure(self, pos, need):
        """Make the window cover pos..pos+need if the input has that many bytes; return how
        many bytes from pos are available (at most need)."""
        end = self.base + len(self.arr)
        if pos < self.base or pos + need > end:
            if not (self.eof and pos >= self.base and end >= pos):
                self.arr, self.base, self.eof = self.src.window(pos, need)
                end = self.base + len(self.arr)
        return max(0, min(need, end - pos))

    def bytes(self, pos, n):
        got = self.ensure(pos, n)
        start = pos - self.base
        return self.arr[start:start + got].tobytes()

    def close(self):
        self.arr = np.zeros(0, np.uint8)
        self.src.close()
