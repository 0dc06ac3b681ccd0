"""A capture index: one pass over the record headers gives numpy arrays of record offsets,
timestamps (ns), captured and wire lengths and link types. It cuts a file into byte ranges on
record boundaries (the workers of a pass, the tasks of pfilter.dask), finds a time window by
binary search (--after / --before), counts packets and fetches packet i, without reading the
packets again.

Imports numpy, pfilter.errors, pfilter.capture.files and (for what the fast walk does not take:
pcapng, compressed files, other record header sizes) pfilter.capture.reader.

Classic pcap files are walked by pfilter.capture._fastcopy.record_index, headers only; other
captures through the reader (pcapng: the link type is each packet's interface's). The index is
kept in memory; save() writes it to a file only when asked (`--index FILE`), never beside the
input uncalled.
"""
from __future__ import annotations

import os

from ..errors import FilterError
from .files import RESYNC_DEPTH, RESYNC_SPAN, parse_pcap_header, pcap_magic_order

# Records indexed per call of the header walk (memory: 32 bytes a record).
INDEX_BLOCK = 1 << 18
# The least bytes of a pcap file each thread of a time window's walk takes (window_range).
WINDOW_SPLIT_BYTES = 64 << 20
# The arrays a saved index holds (numpy .npz), and its format version.
FIELDS = ("offsets", "timestamps", "caplen", "wirelen", "linktypes")
VERSION = 1


class CaptureIndex:
    """The records of one capture: offsets (int64, the file offset of each record header; for
    pcapng, of its block), timestamps (int64 ns since 1970), caplen, wirelen (uint32),
    linktypes (uint16 per record). caplen is the captured length as libpcap (and pfilter's
    reader) gives it, at most the file's snapshot length: a record stored longer is cut there,
    and packet(i) returns those bytes. `path`, `format` ("pcap"/"pcapng"), `size` (the file's
    bytes when indexed), `end` (the offset after the last whole record), `compression` (None,
    or "gzip", ... for a compressed capture: its offsets are then those of the decompressed
    stream, and ranges(), byte_range() and packet() refuse)."""

    def __init__(self, path, format, offsets, timestamps, caplen, wirelen, linktypes, size, end,
                 compression=None):
        import numpy as np
        self.path, self.format, self.compression = path, format, compression
        self.offsets = np.asarray(offsets, np.int64)
        self.timestamps = np.asarray(timestamps, np.int64)
        self.caplen = np.asarray(caplen, np.uint32)
        self.wirelen = np.asarray(wirelen, np.uint32)
        self.linktypes = np.asarray(linktypes, np.uint16)
        self.size, self.end = int(size), int(end)

    def __len__(self):
        return len(self.offsets)

    def __repr__(self):
        return f"<CaptureIndex {self.path!r} {len(self)} records>"

    @property
    def sorted(self):
        """True when the timestamps never go back (a time window is then one run of records)."""
        import numpy as np
        return bool(len(self) < 2 or np.all(np.diff(self.timestamps) >= 0))

    def record_end(self, i):
        """The file offset after record i."""
        return int(self.offsets[i + 1]) if i + 1 < len(self) else self.end

    def ranges(self, parts=None, max_bytes=None):
        """Byte ranges [(start, end), ...] on record boundaries covering every record, about
        equal in bytes: `parts` of them, or as many as keep each under max_bytes."""
        import numpy as np
        self._in_the_file("ranges()")
        n = len(self)
        if n == 0:
            return []
        first = int(self.offsets[0])
        span = max(self.end - first, 1)
        if parts is None:
            parts = max(1, -(-span // int(max_bytes))) if max_bytes else 1
        parts = max(1, min(int(parts), n))
        cuts = np.searchsorted(self.offsets, first + (np.arange(1, parts) * span) // parts)
        bounds = sorted(set([0, *cuts.tolist(), n]))
        return [(int(self.offsets[a]), self.record_end(b - 1)) for a, b in zip(bounds, bounds[1:]) if b > a]

    def window(self, after=None, before=None):
        """(i, j): the records i..j-1 whose timestamps t satisfy after <= t < before (editcap
        -A / -B), by binary search: each None, ns since 1970 as an int, or text as --after takes
        it (parse_time); FilterError when the timestamps are not sorted, and for a float."""
        import numpy as np
        after, before = parse_window(int(after) if isinstance(after, np.integer) else after,
                                     int(before) if isinstance(before, np.integer) else before)
        if not self.sorted:
            raise FilterError(f"{self.path}: timestamps out of order: a time window is not one run of records")
        i = 0 if after is None else int(np.searchsorted(self.timestamps, after, "left"))
        j = len(self) if before is None else int(np.searchsorted(self.timestamps, before, "left"))
        return i, max(i, j)

    def _in_the_file(self, what):
        """FilterError when the offsets are not the file's: a compressed capture's are those of
        its decompressed stream (the times, lengths and link types still hold)."""
        if self.compression is not None:
            raise FilterError(f"{what}: {self.path} is {self.compression}-compressed: its index's offsets are "
                              f"those of the decompressed stream, not of the file (decompress it first)")

    def byte_range(self, i, j):
        """The file offsets (start, end) of records i..j-1."""
        self._in_the_file("byte_range()")
        if j <= i:
            return (self.end, self.end)
        return (int(self.offsets[i]), self.record_end(j - 1))

    def packet(self, i):
        """The captured bytes of record i (pcap only)."""
        if self.format != "pcap":
            raise FilterError("packet(i) reads classic pcap records only")
        self._in_the_file("packet(i)")
        import numpy as np
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"packet(i) takes a record number (an int), not {type(i).__name__}")
        i = int(i)
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        off = int(self.offsets[i])
        with open(self.path, "rb") as f:
            f.seek(off + 16)
            return f.read(int(self.caplen[i]))

    def save(self, path, out=None):
        """Write the index to `path` (numpy .npz; atomic: pfilter.capture.files.AtomicFile), or
        to `out`, an AtomicFile opened for it beforehand (committed here, aborted on failure)."""
        import numpy as np
        from .files import AtomicFile
        capture = os.path.abspath(os.fspath(self.path))
        try:
            mtime = os.stat(capture).st_mtime_ns     # (load() tells an index from a changed capture)
        except OSError:
            mtime = -1
        if out is None:
            out = AtomicFile(os.fspath(path), protect=[self.path])
        try:
            # straight into the file (not a copy of the whole archive in memory first)
            np.savez(out.f, version=np.int64(VERSION), path=np.array(capture), format=np.array(self.format),
                     size=np.int64(self.size), end=np.int64(self.end), mtime_ns=np.int64(mtime),
                     compression=np.array(self.compression or ""),
                     **{k: getattr(self, k) for k in FIELDS})
        except OSError as e:
            out.abort()
            from .files import _os_error
            raise _os_error(e, out.path) from None
        except BaseException:
            out.abort()
            raise
        out.commit()

    @classmethod
    def load(cls, path):
        """An index written by save(). FilterError for a file that is not one, and for the index
        of a capture that has changed since (another size or modification time) rather than
        offsets into what is there now; OSError when the file cannot be read."""
        import zipfile

        import numpy as np
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["version"])
                arrays = [z[k] for k in FIELDS]
                capture, fmt, size, end = str(z["path"]), str(z["format"]), int(z["size"]), int(z["end"])
                mtime = int(z["mtime_ns"]) if "mtime_ns" in z.files else -1
                compression = (str(z["compression"]) or None) if "compression" in z.files else None
        except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise FilterError(f"{path}: not a pfilter capture index ({type(e).__name__}: {e})") from None
        if version != VERSION:
            raise FilterError(f"{path}: index format {version}, not {VERSION}")
        if len({len(a) for a in arrays}) > 1:
            raise FilterError(f"{path}: not a pfilter capture index (arrays of different lengths)")
        try:
            st = os.stat(capture)
        except OSError:
            st = None           # (the capture gone or elsewhere: the arrays still load)
        if st is not None and (st.st_size != size or (mtime >= 0 and st.st_mtime_ns != mtime)):
            raise FilterError(f"{path}: the index of {capture} is stale: the capture has changed since "
                              f"(size {size}, now {st.st_size}); build it again")
        return cls(capture, fmt, *arrays, size, end, compression=compression)


def build_index(path):
    """The CaptureIndex of a capture file (pcap, pcapng, compressed). A record cut by the end of
    the file ends the index there (the records before it are indexed); damage that the reader
    refuses raises its CaptureFormatError."""
    path = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
    fast = _pcap_index(path)
    if fast is not None:
        return fast
    return _reader_index(path)


def _pcap_index(path):
    import numpy as np
    opened = _pcap_blocks(path)
    if opened is None:
        return None
    h, size, blocks = opened
    parts = [list(p) for p in blocks]
    cat = []
    for k, t in enumerate((np.int64, np.int64, np.uint32, np.uint32)):
        cat.append(np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, t))
        for p in parts:
            p[k] = None         # (each field's blocks go as it is joined: memory 1.3 times the index's)
    end = int(cat[0][-1]) + 16 + int(cat[2][-1]) if len(cat[0]) else 24
    if end < size and not _cut_by_the_end(path, h, end, size):
        return None             # a header the walk refuses: the reader's index raises its error
    np.minimum(cat[2], h.snaplen, out=cat[2])     # (caplen as a reader gives it: see CaptureIndex)
    return CaptureIndex(path, "pcap", *cat, np.full(len(cat[0]), h.linktype, np.uint16), size, end)


def _cut_by_the_end(path, h, end, size):
    """Whether what follows the last whole record at `end` is a record cut by the end of the
    file (a header cut short, or one whose captured bytes reach past the end), not damage."""
    import struct
    with open(path, "rb") as f:
        f.seek(end)
        head = f.read(16)
    if len(head) < 16:
        return True
    caplen = struct.unpack((">" if h.byteorder == "big" else "<") + "I", head[8:12])[0]
    return caplen <= max(h.snaplen, h.maxcap) and end + 16 + caplen > size


def _pcap_open(path):
    """(_fastcopy, fd, PcapHeader, file size, the header walk's guess arguments) of a classic pcap
    file the header walk reads (record_index, record_window), else None."""
    try:
        from . import _fastcopy
    except ImportError:
        return None
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    head = os.pread(fd, 28, 0)
    if len(head) < 24 or pcap_magic_order(head) is None:
        os.close(fd)
        return None
    h = parse_pcap_header(head[:24], path)
    if h.kuznetzov or h.hdrsize != 16 or h.lengths_swapped:
        os.close(fd)
        return None
    # the walk's guesses at record boundaries go by the first record's time
    guess = dict(nsec=h.nsec, guess_span=RESYNC_SPAN)
    if len(head) == 28:
        guess["first_sec"] = int.from_bytes(head[24:], h.byteorder)
    return _fastcopy, fd, h, os.fstat(fd).st_size, guess


def _pcap_blocks(path):
    """(PcapHeader, file size, blocks) of a classic pcap file the header walk reads, else None:
    blocks yields (offsets, timestamps ns, caplen, wirelen) arrays of up to INDEX_BLOCK records
    of whole records, in file order, each block in arrays of its own."""
    import numpy as np
    opened = _pcap_open(path)
    if opened is None:
        return None
    _fastcopy, fd, h, size, guess = opened
    mult = 1 if h.nsec else 1000

    def blocks():
        try:
            pos = 24
            while True:
                arrays = (np.empty(INDEX_BLOCK, np.int64), np.empty(INDEX_BLOCK, np.int64),
                          np.empty(INDEX_BLOCK, np.int64), np.empty(INDEX_BLOCK, np.uint32),
                          np.empty(INDEX_BLOCK, np.uint32))
                n, pos, status = _fastcopy.record_index(fd, pos, -1, *arrays, h.swapped, **guess)
                # records follow each other: only the last can reach past the end of the file
                keep = n - 1 if n and int(arrays[0][n - 1]) + 16 + int(arrays[3][n - 1]) > size else n
                if keep:
                    off, ts, frac, cap, wire = (a[:keep] for a in arrays)
                    ts *= 1_000_000_000            # (seconds to ns in place, the fraction added)
                    if mult != 1:
                        frac *= mult
                    ts += frac
                    yield off, ts, cap, wire
                if status != 1 or keep < n:
                    return
        finally:
            os.close(fd)
    return h, size, blocks()


def window_range(path, after=None, before=None, workers=1):
    """The byte range (start, end) of the records of a classic pcap file with after <= t <
    before (ns), found by one walk of the record headers (_fastcopy.record_window: no array,
    bounded memory whatever the file's size, and no numpy to import), shared by up to `workers`
    threads over parts of at least WINDOW_SPLIT_BYTES, each part's start guessed by resync() and
    checked against where the walk of the part before stopped (a part whose guess was wrong is
    walked again from there); None when path is not a regular file the walk reads or its
    timestamps go back (the window is then not one run of records: the general path scans it)."""
    import stat
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):     # (a pipe is not opened here: it is read once)
            return None
    except (OSError, ValueError):
        return None
    opened = _pcap_open(path)
    if opened is None:
        return None
    _fastcopy, fd, h, size, guess = opened
    lo = -(1 << 63) if after is None else after
    hi = (1 << 63) - 1 if before is None else before

    def walk(a, b):
        return _fastcopy.record_window(fd, lo, hi, h.swapped, start=a, end=b, **guess)
    try:
        parts = max(1, min(int(workers or 1), (size - 24) // WINDOW_SPLIT_BYTES))
        starts = [24]
        for k in range(1, parts):
            b = resync(fd, h, 24 + (size - 24) * k // parts, size)
            if b is not None and starts[-1] < b < size:
                starts.append(b)
        ranges = list(zip(starts, starts[1:] + [-1]))
        results = _walk_parts(walk, ranges)
        first_in = first_past = last_t = None
        whole_end = pos = 24
        for (a, b), r in zip(ranges, results):
            if a != pos:                # a wrong guess: this part from where the part before stopped
                r = walk(pos, b)
            fi, fp, we, ft, lt, pos, back = r
            if back or (ft is not None and last_t is not None and ft < last_t):
                return None
            if ft is not None:
                last_t, whole_end = lt, we
            if first_in is None and fi >= 0:
                first_in = fi
            if first_past is None and fp >= 0:
                first_past = fp
    finally:
        os.close(fd)
    if whole_end != size:
        # the walk stopped short of the end (a header it refuses, a record cut by the end of the
        # file): damage, which the general path's scan reports where it is, as without a window
        return None
    start = whole_end if first_in is None else first_in
    end = whole_end if first_past is None else first_past
    return start, max(start, end)


def _walk_parts(walk, ranges):
    """[walk(a, b) for (a, b) in ranges], the first in this thread and the others in threads of
    their own (the walk runs without the GIL); an exception of any is raised here."""
    from .fastpath import _start_thread
    results, errors, ended = [None] * len(ranges), [], []

    def part(k):
        def run():
            try:
                results[k] = walk(*ranges[k])
            except BaseException as e:      # handed to the calling thread
                errors.append(e)
        return run
    for k in range(1, len(ranges)):
        ended.append(_start_thread(part(k)))
    part(0)()
    for e in ended:
        e(None)
    if errors:
        raise errors[0]
    return results


def _reader_index(path):
    import numpy as np
    from .reader import open_capture
    offs, ts, cap, wire, lts = [], [], [], [], []
    with open_capture(path) as c:
        fmt, compression = c.format, c.compression
        for batch in c:
            if batch.file_offsets is None:
                raise FilterError(f"{path}: this input has no record offsets to index")
            offs.append(np.asarray(batch.file_offsets, np.int64))
            ts.append(np.asarray(batch.timestamps, np.int64))
            cap.append(np.asarray(batch.caplen, np.uint32))
            wire.append(np.asarray(batch.wirelen, np.uint32))
            lts.append(np.asarray(batch.linktypes, np.uint16) if batch.linktypes is not None
                       else np.full(len(batch), batch.linktype, np.uint16))
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    cat = [np.concatenate(a) if a else np.zeros(0, t)
           for a, t in ((offs, np.int64), (ts, np.int64), (cap, np.uint32), (wire, np.uint32), (lts, np.uint16))]
    return CaptureIndex(path, fmt, *cat, size, size, compression=compression)


def resync(fd, header, offset, size, depth=RESYNC_DEPTH):
    """A guess at the first record boundary at or after `offset` of a classic pcap file (the
    PcapHeader `header`), from the bytes there alone: the first position from which `depth`
    record headers in a row look sane (captured length within the snapshot length and the wire
    length, fractions below a second, the first time within RESYNC_SPAN of the file's first
    record's, each next within a day) or the chain ends exactly at the end of
    the file. None if none is found. A guess only: pfilter.dask checks it against where the
    walk of the range before stopped, which is exact."""
    import struct as _struct
    limit = min(header.snaplen, header.maxcap)
    frac_max = 1_000_000_000 if header.nsec else 1_000_000
    fmt = (">" if header.byteorder == "big" else "<") + "IIII"
    want = (16 + limit) * 2 + 16 * depth + (1 << 16)
    first = os.pread(fd, 16, 24)
    if len(first) < 16:
        return None
    sec0 = _struct.unpack_from(fmt, first)[0]
    data = os.pread(fd, want, offset)
    n = len(data)
    for start in range(0, min(n, 16 + limit + 1)):
        p, seen, prev = start, 0, sec0
        while seen < depth and p + 16 <= n:
            sec, frac, cap, wire = _struct.unpack_from(fmt, data, p)
            if (cap > limit or cap > wire or frac >= frac_max
                    or abs(sec - (prev if seen else sec0)) > (86400 if seen else RESYNC_SPAN)):
                break
            prev = sec
            p += 16 + cap
            seen += 1
        else:
            if seen >= depth or offset + p == size:
                return offset + start
    return None


def planned_ranges(path, max_bytes):
    """Byte ranges [(start, end or None)] of about max_bytes each over a classic pcap file,
    their starts guessed by resync() without reading the file (a few KB per cut), or None when
    the file is not one the fast path reads. The walk of range k stops at the first record
    boundary at or after its end, which must be range k + 1's start: the caller checks it."""
    from .files import parse_pcap_header
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        head = os.pread(fd, 24, 0)
        if len(head) < 24 or pcap_magic_order(head) is None:
            return None
        h = parse_pcap_header(head, path)
        size = os.fstat(fd).st_size
        starts = [24]
        for cut in range(24 + max_bytes, size, max_bytes):
            b = resync(fd, h, cut, size)
            if b is not None and b > starts[-1] and b < size:
                starts.append(b)
        return [(a, b) for a, b in zip(starts, starts[1:])] + [(starts[-1], None)]
    finally:
        os.close(fd)


# An ISO 8601 date and time as editcap -A / -B reads one: the date, then T or spaces, hours and
# minutes, optional seconds and fraction (digits past nanoseconds dropped), and a zone written
# right after the time (Z, +hh, +hhmm, +hh:mm; none: local time, as mktime() makes it). Fields
# may be one digit wide.
_ZONE = r"(Z|[+-]\d{2}(?::?\d{2})?)"
_ISO_TIME = r"(\d{4})-(\d{1,2})-(\d{1,2})(?:T| +)(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:[.,](\d+))?)?" + _ZONE + "?"
_TIME_HELP = "give epoch seconds (1700000000.5) or an ISO 8601 date and time (2023-11-14T22:13:20.5Z, 2023-11-14 22:13)"


def parse_window(after, before, names=("after", "before")):
    """(after, before) in ns from --after / --before (each None, ns as an int, or text for
    parse_time); FilterError when after is later than before, as editcap refuses it, and for a
    float (seconds or ns? an int is ns, text with a point is seconds). names: the two as the
    caller's user knows them (the command's ("--after", "--before"))."""
    for t in (after, before):
        if isinstance(t, float):
            raise FilterError(f"a time as a float ({t!r}): give ns since 1970 as an int, or text "
                              f"('{t:.9f}' for seconds)")
    window = tuple(None if t is None else (t if isinstance(t, int) and not isinstance(t, bool) else parse_time(t))
                   for t in (after, before))
    if None not in window and window[0] > window[1]:
        raise FilterError(f"{names[0]} {after} is later than {names[1]} {before}: the window holds no time")
    return window


def parse_time(text):
    """A time for --after / --before as ns since 1970 (an int): epoch seconds with a fraction
    ("1700000000.25"), or an ISO 8601 date and time ("2023-11-14T22:13:20.25Z",
    "2023-11-14 23:13:20+01:00", "2023-11-14 22:13": without a zone, local time), the forms
    editcap -A / -B reads, with its meaning (_ISO_TIME). FilterError for anything else, and for
    three forms editcap misreads without a word, keeping every packet or dropping a zone: a date
    alone ("2023-11-14", which it reads as 2023 seconds after 1970), text after the time, and a
    zone after a space ("2023-11-14 22:13:20 +01:00", whose zone it ignores)."""
    import datetime
    import re
    t = str(text).strip()
    if not t.isascii():         # (\d would take other scripts' digits, which editcap refuses)
        raise FilterError(f"invalid time {text!r}: {_TIME_HELP}")
    epoch = re.fullmatch(r"(\d+)(?:\.(\d*))?", t)
    if epoch is not None:
        return _clamped(int(epoch.group(1)) * 1_000_000_000 + _nanoseconds(text, epoch.group(2)))
    m = re.fullmatch(_ISO_TIME, t)
    if m is None:
        if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", t):
            try:
                datetime.date(*map(int, t.split("-")))
            except ValueError:
                raise FilterError(f"invalid time {text!r}: no such date") from None
            raise FilterError(f"invalid time {text!r}: a date needs a time of day ({t}T00:00)")
        head = re.match(_ISO_TIME, t)
        if head is not None and re.fullmatch(r"\s+" + _ZONE, t[head.end():]):
            raise FilterError(f"invalid time {text!r}: write the zone right after the time, without a space "
                              f"({head.group(0)}{t[head.end():].strip()})")
        raise FilterError(f"invalid time {text!r}: {_TIME_HELP}")
    year, month, day, hour, minute, second = (int(m.group(i) or 0) for i in range(1, 7))
    try:
        if second > 60:
            raise ValueError(second)
        # second 60 (a leap second) is the next minute's first, as mktime() makes it for editcap
        dt = datetime.datetime(year, month, day, hour, minute) + datetime.timedelta(seconds=second)
    except (ValueError, OverflowError):
        raise FilterError(f"invalid time {text!r}: no such date or time of day") from None
    zone = m.group(8)
    frac = int((m.group(7) or "")[:9].ljust(9, "0"))     # (editcap too reads an ISO time's first 9)
    if not zone:
        # local time as editcap's mktime() makes it (tm_isdst -1: in an hour that a change to or
        # from summer time skips or repeats, the C library's choice)
        import time
        try:
            seconds = int(time.mktime((dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, 0, 0, -1)))
        except (OverflowError, ValueError):
            raise FilterError(f"invalid time {text!r}: out of this system's range of local times") from None
        return _clamped(seconds * 1_000_000_000 + frac)
    if zone == "Z":
        dt = dt.replace(tzinfo=datetime.timezone.utc)
    else:
        z = zone.replace(":", "")
        try:
            if int(z[3:5] or 0) >= 60:
                raise ValueError(z)
            offset = datetime.timedelta(hours=int(z[1:3]), minutes=int(z[3:5] or 0))
            dt = dt.replace(tzinfo=datetime.timezone(-offset if z[0] == "-" else offset))
        except ValueError:
            raise FilterError(f"invalid time {text!r}: no such zone offset ({zone})") from None
    epoch_dt = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return _clamped((dt - epoch_dt) // datetime.timedelta(seconds=1) * 1_000_000_000 + frac)


def _nanoseconds(text, digits):
    """The digits after an epoch time's point as ns; FilterError past nanoseconds (editcap
    reads more of them as a number of nanoseconds: '.5000000000' would be 5 s)."""
    digits = digits or ""
    if len(digits) > 9:
        raise FilterError(f"invalid time {text!r}: at most 9 digits after the point (nanoseconds)")
    return int(digits.ljust(9, "0"))


def _clamped(ns):
    """A time as int64 ns, which every timestamp a capture holds fits in: a time past the ends
    of that range keeps its meaning for every packet (all after it, or all before it)."""
    return max(-(1 << 63), min(ns, (1 << 63) - 1))
