"""The fast path of filter_file: one classic pcap file in, its matching records copied as they are
into a pcap file (or only counted), by pfilter.capture._fastcopy, without numpy.

Imports pfilter.errors, pfilter.validate and pfilter.capture.files / swap / _fastcopy (the VM compiled in); never
numpy, the compiler or the reader, so the `pfilter` command starts in a few milliseconds when its
compiled program is cached (pfilter.cli). Everything it does not handle goes to filter_file's
general path, which gives the same bytes: fast_filter_file then returns None before writing
anything, or, when it meets a record a plain copy would get wrong (caplen above the snapshot
length, a record cut by the end of the file), after dropping its temporary output, so the general
path starts over and applies libpcap's rules and error messages.

It applies when: the input is one regular, uncompressed pcap file of version 2.4 with
little-endian headers (what the writer writes) on a little-endian host (so never a file whose
pseudo-headers libpcap would swap: pfilter.capture.swap), standard 16-byte record headers; the
output is a pcap file (not standard output) of the input's timestamp resolution, or there is no
output (counting); and nothing wants the packets themselves (no printing).

A single pcapng file goes to _fastcopy.NgCopy under the same conditions (but one worker, and no
-C, --snaplen or time window): its first section in this host's byte order, of version 1.0 or
1.2, with its first interface among its first PEEK_BYTES; NgCopy gives the file back to the
general path, which starts over, at a later section of the other byte order, an interface of
another link type, or damage (_open_pcapng, _one_pcapng).
"""
from __future__ import annotations

import os
import stat
import struct
import sys
import time

from ..errors import FilterError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
from .files import (INITIAL_MAX_BLOCKSIZE, PCAPNG_BOM, PCAPNG_SHB, RESYNC_DEPTH, RESYNC_SPAN, SHB_INSANE_MAX,
                    AtomicFile, adjust_snaplen, compression_for_path, format_for_path, max_blocksize,
                    parse_pcap_header, pcap_file_header, pcap_magic_order, pcapng_resolution, truncated_snaplen)
# (a raw copy would keep pseudo-headers libpcap swaps into this host's order; the general path
# swaps them)
from .swap import PSEUDO_HEADER_LINKTYPES

#: a packet count or byte size no file reaches (a record takes 16 bytes or more): -c or -C at
#: or above it is no limit (the native pass takes 64-bit signed numbers)
NO_LIMIT = 1 << 62

# Largest record a chunk's headroom must hold; link types allowing more take the general path.
MAX_FAST_RECORD = 1 << 20
# How often (seconds) the progress callback is called while the copy runs.
PROGRESS_INTERVAL = 0.1


class FilterStats:
    """What filter_file did: packets read (with after= / before=, those inside the window, as
    editcap keeps them), matched and written, bytes of packet data written, wall seconds, and
    the inputs it read. Reads like a dict too (stats["written"])."""

    __slots__ = ("read", "matched", "written", "bytes", "seconds", "files", "range_end", "matched_bytes")
    FIELDS = ("read", "matched", "written", "bytes", "seconds", "files")

    read: int
    matched: int
    written: int
    files: list[str]
    seconds: float
    bytes: int

    def __init__(self, read: int = 0, matched: int = 0, written: int = 0, bytes: int = 0,
                 seconds: float = 0.0, files: list[str] | None = None) -> None:
        self.read, self.matched, self.written, self.bytes = read, matched, written, bytes
        self.seconds = seconds
        self.files = [] if files is None else files
        # with a byte range: the first record boundary at or after its end (where the walk of
        # the range stopped; pfilter.dask checks it against the next range's start)
        self.range_end = None
        # on the fast path: captured bytes of the matched packets, written or not (pfilter.dask
        # sizes a range's output from a counting pass)
        self.matched_bytes = None

    def __getitem__(self, key: str) -> Any:
        if key not in self.FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(self.FIELDS)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FilterStats) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return "FilterStats(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.FIELDS) + ")"


def _native():
    if os.environ.get("PFILTER_NO_FASTPATH", "") not in ("", "0"):
        return None
    from .. import _impl
    return _impl.native("pfilter.capture._fastcopy")


def _open_regular(src):
    """A read-only file descriptor of src when it names a regular file (on a little-endian host,
    the fast paths' own), else None. Whether it is one is decided from its stat() before opening
    it: anything else (a FIFO, a terminal, a device) is left unopened for the general path, since
    opening a FIFO here and again there would take its writer's data (or its life: SIGPIPE)
    away; O_NONBLOCK: should the name have become a FIFO since, the open does not wait for it."""
    if not isinstance(src, (str, bytes, os.PathLike)) or src in ("-", b"-") or sys.byteorder != "little":
        return None
    try:
        before = os.stat(src)
        if not stat.S_ISREG(before.st_mode):
            return None
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (before.st_dev, before.st_ino):
            os.set_blocking(fd, True)
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _open_eligible(src):
    """(file descriptor, PcapHeader) of src when the fast path can read it, else None: one
    open (_open_regular) for the header check and the pass."""
    fd = _open_regular(src)
    if fd is None:
        return None
    try:
        head = os.pread(fd, 24, 0)
        if len(head) == 24 and pcap_magic_order(head) is not None:
            h = parse_pcap_header(head, src)
            if (h.byteorder == "little" and h.version == (2, 4) and not h.kuznetzov
                    and h.hdrsize == 16 and min(h.snaplen, h.maxcap) <= MAX_FAST_RECORD
                    and not (h.swapped and h.linktype in PSEUDO_HEADER_LINKTYPES)):
                return fd, h
    except (OSError, ValueError):
        pass
    os.close(fd)
    return None


def default_workers():
    """The number of workers a pass uses unless told: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def check_workers(workers):
    """workers as a number of threads (None: default_workers()); FilterError when it is not
    1 to WORKERS_MAX."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= WORKERS_MAX:
        raise FilterError(f"workers must be a number from 1 to {WORKERS_MAX}, not {workers!r}")
    return workers


# The most threads one pass runs (pfilter.capture._fastcopy's MAX_WORKERS).
WORKERS_MAX = 256


def total_size(sources):
    """The bytes of the inputs that are regular files by name (0 for the others)."""
    total = 0
    for s in sources:
        s = getattr(s, "path", s)
        try:
            total += os.path.getsize(s) if isinstance(s, (str, bytes, os.PathLike)) and s not in ("-", b"-") else 0
        except OSError:
            pass
    return total


def _peek(src, opener=None):
    """The PcapHeader of src when the fast path can read it, else None (the file is closed);
    opener: what opens it (default _open_eligible; _peek_input's: either fast path's header)."""
    opened = (opener or _open_eligible)(src)
    if opened is None:
        return None
    os.close(opened[0])
    return opened[1]


def fast_path_applies(*, per_batch=False, batch_packets=None, dedup=None, native=False,
                      window_found=True):
    """Whether a request goes to fast_filter_file first (which may still decline its inputs,
    returning None): the one place that choice is made, for filter_file and the `pfilter`
    command. Not with a per-batch callback (on_batch; the command's printed packets), batches
    of a chosen size, --dedup, native code (it runs numpy batches), or a time window the index
    did not find; --snaplen and -C rotation are the fast path's own (it declines -G itself)."""
    return (not per_batch and batch_packets is None and not dedup and not native
            and window_found)


def fast_filter_file(src, dst, program_for, count=None, format=None, ts_resolution=None,
                     progress=None, announce=None, truncate=None, rotate=None, workers=None,
                     byte_range=None):
    """filter_file's fast path, or None when it does not apply (see the module docstring).

    src: a path or a list of paths (read in order into one output, as filter_file does: the
    output's snapshot length is the largest of the inputs'; several inputs need one link type
    and one timestamp resolution, and take neither truncate nor rotate).
    workers: threads sharing the work (default: the usable cores); the output does not depend
    on it. Counting several files (dst None, no count) runs the files in parallel, one worker
    each; otherwise the workers share each file in turn. byte_range: (start, end) file offsets
    of a single input (start a record boundary, end None or an offset): only the records
    starting in [start, end) are filtered (pfilter.capture.index finds such offsets).
    truncate: cut written records to this many bytes (editcap -s; the header says it).
    rotate: a Rotation by size only (tcpdump -C, with -W): each time the output holds more than
    rotate.size bytes before a matching record, the file is named and the pass goes on from that
    record into the next file, named as tcpdump names them.

    program_for(linktype, snaplen, swapped): the expression compiled for the file, as
    (code, jt, jf, k) tuples; it may raise FilterError (e.g. "expression rejects all packets"),
    which propagates. announce(path, linktype, snaplen, index) is called for the index-th input
    once its program is ready, before its pass (every input's before parallel passes over
    several files). progress(bytes_done, bytes_total, stats) is called while it runs."""
    sources = list(src) if isinstance(src, (list, tuple)) else [src]
    if not sources or (len(sources) > 1 and (rotate is not None or truncate is not None
                                             or byte_range is not None)):
        return None
    if count is not None and count <= 0:
        return None
    if count is not None and count >= NO_LIMIT:
        count = None            # (more records than any file holds: no limit, as for tcpdump)
    if rotate is not None and (rotate.seconds is not None or rotate.size is None or dst is None):
        return None
    if rotate is not None:
        rotate.refuse_over_input(dst, sources)
    if truncate is not None and dst is None:
        return None
    if dst is not None and (not isinstance(dst, (str, os.PathLike)) or dst == "-"
                            or (format or format_for_path(dst)) != "pcap"
                            or compression_for_path(dst) is not None):
        return None
    workers = check_workers(workers)
    _fastcopy = _native()
    if _fastcopy is None:
        return None
    if len(sources) == 1:
        return _one_file(_fastcopy, sources[0], dst, program_for, count, ts_resolution, progress,
                         announce, truncate, rotate, workers, byte_range)
    if dst is None and count is None and workers > 1:
        return _count_files(_fastcopy, sources, program_for, progress, announce, workers)
    headers = []
    for s in sources:
        h = _peek_input(s)
        if h is None or (headers and h.linktype != headers[0].linktype):
            return None
        if isinstance(h, NgHeader) and not h.alone:
            return None     # (the general path's output header: the largest snapshot length it sees)
        if ts_resolution not in (None, h.ts_resolution) and dst is not None:
            return None
        if headers and h.ts_resolution != headers[0].ts_resolution and dst is not None:
            return None
        headers.append(h)
    return _many_files(_fastcopy, sources, headers, dst, program_for, count, progress, announce, workers)


# Files smaller than this are copied without a helper thread watching the pass (for progress and
# Ctrl-C; _run): it ends within milliseconds, and handing the GIL to a thread and back (about
# 3 ms) would cost more than the pass.
SMALL_FILE_BYTES = 16 << 20


#: a mapped pass takes wide chunks when each worker gets at least this many of them
WIDE_CHUNKS_PER_WORKER = 4


def _sized(nbytes, workers, header=None, counting=False):
    """PcapCopy's chunk and workers for a file of nbytes: no more workers than chunks, and a
    chunk no larger than the file (a directory of small files allocates small buffers); chunks
    mapped rather than read (see pfilter/capture/_fastcopy.pyx) unless PFILTER_NO_MMAP=1. With
    the file's PcapHeader, a mapped chunk is walked as several chains from guesses at record
    boundaries inside it (_walk_chains), and with several workers each chunk's walk starts from a
    guess at its first record (resync's rule) without waiting for the walk of the chunk before.
    Counting (no output), or mapped over at least WIDE_CHUNKS_PER_WORKER wide chunks per worker,
    chunks of WIDE_CHUNK_BYTES (see _fastcopy): a smaller file keeps 1 MB chunks, enough of them
    to share among its workers."""
    from ._fastcopy import CHUNK_BYTES, WIDE_CHUNK_BYTES
    mapped = os.environ.get("PFILTER_NO_MMAP", "") in ("", "0")
    wide = counting or (mapped and nbytes >= WIDE_CHUNK_BYTES * WIDE_CHUNKS_PER_WORKER * max(1, workers))
    chunk = max(1 << 16, min(WIDE_CHUNK_BYTES if wide else CHUNK_BYTES, nbytes))
    workers = max(1, min(workers, -(-nbytes // chunk)))
    guess = {}
    if header is not None:
        guess = dict(guess_depth=RESYNC_DEPTH, guess_span=RESYNC_SPAN, nsec=header.nsec)
    return dict(chunk=chunk, workers=workers, mapped=mapped, **guess)


class _Programs:
    """Decoded programs by (link type, snapshot length), compiled through program_for once."""

    def __init__(self, _fastcopy, program_for):
        self._fastcopy, self.program_for, self.cache = _fastcopy, program_for, {}

    def get(self, h):
        key = (h.linktype, h.snaplen)
        if key not in self.cache:
            self.cache[key] = _decode(self._fastcopy, self.program_for(h.linktype, h.snaplen, False))
        return self.cache[key]


def _count_files(_fastcopy, sources, program_for, progress, announce, workers):
    """Count the matches of several files, `workers` threads each taking every workers-th file
    (one pass each, GIL released); each file opened once, its program compiled on first need
    (link types may differ: nothing is written). None when a file is not for the fast path."""
    started = time.perf_counter()
    h0 = _peek_input(sources[0])
    if h0 is None:
        return None
    programs = _Programs(_fastcopy, program_for)
    programs.get(h0)                      # compiled (and refused) before any pass
    if announce is not None:              # the files are passed at once: each announced now
        heads = [h0] + [_peek_input(s) for s in sources[1:]]
        if any(h is None for h in heads):
            return None                   # (before announcing any: the general path will)
        for i, (s, h) in enumerate(zip(sources, heads)):
            announce(s, h.linktype, h.snaplen, i)
    import threading
    lock = threading.Lock()
    jobs = [None] * len(sources)
    stop = threading.Event()
    failed = []

    def share(k):
        for i in range(k, len(sources), workers):
            if stop.is_set() or failed:
                return
            opened = _open_input(sources[i])
            if opened is None:
                failed.append(i)
                return
            fd, h = opened
            try:
                with lock:
                    decoded, clear_mem = programs.get(h)
                job_size = os.fstat(fd).st_size
                job = _job(_fastcopy, h, decoded, clear_mem, fd, -1, -1, 0, False,
                           _sized(job_size, 1, h, counting=True))
                jobs[i] = job
                if _unless_cut(job.run(), fd, job_size) != "eof":
                    failed.append(i)
                    return
            finally:
                os.close(fd)

    # (the sizes are a stat() per file: only for the progress callback)
    total = total_size(sources) if progress is not None else 0
    sizes = None
    threads = [threading.Thread(target=_catching(share, k, failed), name="pfilter-files", daemon=True)
               for k in range(min(workers, len(sources)))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(PROGRESS_INTERVAL)
                if progress is not None:
                    sizes = sizes or [total_size([s]) for s in sources]
                    progress(_done(jobs, sizes), total, _sum(jobs, sources))
    except BaseException:
        stop.set()
        for j in jobs:
            if j is not None:
                j.cancel()
        for t in threads:
            t.join()
        raise
    errors = [f for f in failed if isinstance(f, BaseException)]
    if errors:
        raise errors[0]
    if failed:
        return None           # the general path says what is wrong, file by file
    stats = _sum(jobs, sources)
    stats.seconds = time.perf_counter() - started
    if progress is not None:
        progress(total, total, stats)
    return stats


def _catching(fn, k, failed):
    def run():
        try:
            fn(k)
        except BaseException as e:        # raised again by the calling thread
            failed.append(e)
    return run


def _done(jobs, sizes):
    return sum(sizes[i] if j is not None and j.status == 0 and j.done >= sizes[i] else (j.done if j else 0)
               for i, j in enumerate(jobs))


def _sum(jobs, sources):
    stats = FilterStats(files=[os.fspath(s) for s in sources])
    for j in jobs:
        if j is not None:
            stats.read += j.read
            stats.matched += j.matched
    return stats


def _many_files(_fastcopy, sources, headers, dst, program_for, count, progress, announce, workers):
    """Several files in order into one output (or counted), each pass shared by the workers."""
    started = time.perf_counter()
    programs = _Programs(_fastcopy, program_for)
    for h in headers:
        programs.get(h)                   # compiled (and refused) before the output exists
    first = headers[0]
    header = pcap_file_header(first.linktype, max(h.snaplen for h in headers), first.nsec, first.linktype_ext)
    out = running = None
    size = len(header)
    total = _Totals()
    grand = total_size(sources) if progress is not None else 0
    before = 0
    try:
        if dst is not None:
            out = AtomicFile(dst, protect=list(sources))
            out.write(header)
            if not count:
                # at most every input's records: allocated at once, cut on commit (_one_file)
                out.preallocate(total_size(sources), _fastcopy.preallocate)
        for i, (s, h) in enumerate(zip(sources, headers)):
            if announce is not None:
                announce(s, h.linktype, h.snaplen, i)
            opened = _open_input(s)
            if (opened is None or type(opened[1]) is not type(h) or opened[1].linktype != h.linktype
                    or opened[1].snaplen != h.snaplen):
                if opened is not None:
                    os.close(opened[0])
                if out is not None:
                    out.abort()
                return None
            fd, _h = opened
            try:
                decoded, clear_mem = programs.get(h)
                nbytes = os.fstat(fd).st_size
                job = _job(_fastcopy, h, decoded, clear_mem, fd, out.fileno() if out is not None else -1,
                           (count - total.matched) if count else -1, size, first.nsec,
                           _sized(nbytes, workers, h))
                running = job
                report = None
                if progress is not None:
                    def report(done, _total, st, before=before):
                        progress(before + done, grand, st)
                status = _unless_cut(_run(job, report, nbytes, s, total), fd, nbytes)   # (small: in this thread)
            finally:
                os.close(fd)
            total.add(job)
            size, running = job.out_size, None
            before += total_size([s]) if progress is not None else 0
            if not _pass_ended(status, job, out):
                return None
            if status == "count":
                break
        if out is not None:
            out.commit(size)
    except KeyboardInterrupt as err:
        if running is not None:   # the pass that was running has stopped: what it wrote is kept
            total.add(running)
            size = running.out_size
        if out is not None:
            out.commit(size)
        err.stats = _stats(total, out, sources, started)
        raise
    except BaseException:
        if out is not None:
            out.abort()
        raise
    return _stats(total, out, sources, started)


def _one_file(_fastcopy, src, dst, program_for, count, ts_resolution, progress, announce,
              truncate, rotate, workers, byte_range):
    opened = _open_eligible(src)
    if opened is None:
        if truncate is None and rotate is None and byte_range is None:
            return _one_pcapng(_fastcopy, src, dst, program_for, count, ts_resolution, progress, announce,
                               workers)
        return None
    in_fd, h = opened
    out = job = total = None
    number, header = 0, b""
    file_job = None         # the pass writing the current output file (None: none yet)
    whole = False           # the pass ended: its output holds all it will (to be named)
    started = time.perf_counter()
    try:
        if dst is not None and ts_resolution not in (None, h.ts_resolution):
            return None
        decoded, clear_mem = _decode(_fastcopy, program_for(h.linktype, h.snaplen, False))
        if announce is not None:
            announce(src, h.linktype, h.snaplen, 0)
        header = pcap_file_header(h.linktype, truncated_snaplen(h.snaplen, truncate), h.nsec,
                                  h.linktype_ext)
        number = 0
        name = dst if rotate is None else rotate.name(dst, 0, None)
        if dst is not None:
            out = AtomicFile(name, protect=[src])
            out.write(header)
            if rotate is None and not count and byte_range is None and os.fstat(in_fd).st_size >= SMALL_FILE_BYTES:
                # the output holds at most the input's bytes (its records, whole or cut, and
                # a header as long): allocated at once, cut to what was written at the end
                # (a small one is written by one worker: allocating and cutting cost more)
                out.preallocate(os.fstat(in_fd).st_size, _fastcopy.preallocate)
        total = _Totals()
        size0 = os.fstat(in_fd).st_size
        start, end = 24, -1
        if byte_range is not None:
            start = max(24, int(byte_range[0]))
            end = -1 if byte_range[1] is None else max(start, int(byte_range[1]))
        while True:
            sized = _sized(os.fstat(in_fd).st_size - start if end < 0 else end - start, workers, h,
                           counting=out is None)
            args = (decoded, clear_mem, in_fd, out.fileno() if out is not None else -1, start,
                    min(h.snaplen, h.maxcap), (count - total.matched) if count else -1)
            kw = dict(truncate=truncate or 0, rotate_size=min(rotate.size, NO_LIMIT) if rotate is not None else -1,
                      out_size=len(header), end=end, **sized)
            members = None
            if _forks(sized["workers"], count, rotate, out):
                job, members = _fork_ring(_fastcopy, args, kw)
            else:
                job = _fastcopy.PcapCopy(*args, **kw)
            file_job = job
            try:
                status = _run(job, progress, os.fstat(in_fd).st_size, src, total, members)
            finally:
                if members is not None and not members.reap():
                    status = "ring-failed"      # a member died: the general path starts over
            total.add(job)
            if status != "rotate":
                break
            # tcpdump -C: this file is complete; the next one starts with the record at
            # stop_offset (the numbers wrap around after -W files)
            if rotate.files is not None and number + 1 >= rotate.files:
                number = 0
            else:
                number += 1
            done, out = out, None
            done.commit()
            out = AtomicFile(rotate.name(dst, number, None), protect=[src])
            out.write(header)
            file_job = None
            start = job.stop_offset
        walked = job.done
        job = total
        status = _unless_cut(status, in_fd, size0)
        if not _pass_ended(status, job, out):
            # the general path starts over and says what is wrong, if anything (files of a
            # rotation named already are written again by it, whole, under the same names)
            return None
        whole = True
        if out is not None:
            out.commit(job.out_size)
    except KeyboardInterrupt as err:
        # Interrupted (Ctrl-C, SIGTERM, SIGHUP): the pass has stopped between chunks, so the
        # output holds whole records; keep them as a valid capture, as tcpdump does.
        if total is not None and job is not total:
            total.add(job)
            job = total
        if out is not None:
            if not whole and (job is None or (number > 0 and (file_job is None
                                                               or file_job.out_size <= len(header)))):
                out.abort()         # (-C: a next file with no record yet; tcpdump makes none)
            else:
                out.commit(job.out_size)
        err.stats = _stats(job, out, src, started if job is not None else time.perf_counter())
        err.complete = whole        # (the output was whole before the signal came)
        raise
    except BaseException:
        if out is not None:
            out.abort()
        raise
    finally:
        os.close(in_fd)
    stats = _stats(job, out, src, started)
    if byte_range is not None and status == "eof":
        stats.range_end = walked
    return stats


class NgHeader:
    """What the pcapng fast path knows of a file before its pass: its first interface's link
    type, snapshot length and timestamp resolution, and whether that interface is the only one
    before the first packet (the general path's output header then takes its snapshot length)."""

    __slots__ = ("linktype", "snaplen", "ts_resolution", "alone")
    format = "pcapng"
    linktype_ext = 0

    def __init__(self, linktype, snaplen, ts_resolution, alone):
        self.linktype, self.snaplen, self.ts_resolution, self.alone = linktype, snaplen, ts_resolution, alone

    @property
    def nsec(self):
        return self.ts_resolution == "ns"


def _open_input(src):
    """(file descriptor, PcapHeader or NgHeader) of src when a fast path can read it, else None."""
    return _open_eligible(src) or _open_pcapng(src)


def _peek_input(src):
    """The PcapHeader or NgHeader of src when a fast path can read it, else None (closed)."""
    return _peek(src, _open_input)


def _job(_fastcopy, h, decoded, clear_mem, fd, out_fd, count, out_size, nsec, sized):
    """The pass over one input open as fd: a PcapCopy (sized: _sized's keywords) for a pcap
    file, an NgCopy (one worker, records in nsec or us; sized unused) for a pcapng one."""
    if isinstance(h, NgHeader):
        return _fastcopy.NgCopy(decoded, clear_mem, fd, out_fd, h.linktype, max_blocksize(h.linktype), nsec=nsec,
                                max_count=count, out_size=out_size)
    return _fastcopy.PcapCopy(decoded, clear_mem, fd, out_fd, 24, min(h.snaplen, h.maxcap), count,
                              out_size=out_size, **sized)


def _open_pcapng(src):
    """(file descriptor, NgHeader) of src when it is a
    pcapng file NgCopy can start on: a regular file (_open_regular) whose first
    section is in this host's (little-endian) byte order, of version 1.0 or 1.2, and whose first
    interface the scanner reads within its first PEEK_BYTES with a snapshot length libpcap keeps
    as it is; else None (the general path reads it, with libpcap's messages)."""
    fd = _open_regular(src)
    if fd is None:
        return None
    try:
        head = os.pread(fd, PEEK_BYTES, 0)
        if len(head) >= 28:
            btype, total, bom, major, minor = struct.unpack_from("<IIIHH", head)
            if (btype == PCAPNG_SHB and bom == PCAPNG_BOM and (major, minor) in ((1, 0), (1, 2))
                    and 28 <= total <= SHB_INSANE_MAX):
                from ._fastcopy import ng_first_interface
                first = ng_first_interface(head, INITIAL_MAX_BLOCKSIZE)
                if first is not None and adjust_snaplen(first[0], first[1]) == first[1]:
                    return fd, NgHeader(first[0], first[1], pcapng_resolution(first[2]), first[3])
    except (OSError, ValueError, struct.error):
        pass
    os.close(fd)
    return None


#: how much of a pcapng file _open_pcapng reads to find its first interface
PEEK_BYTES = 1 << 16


def _one_pcapng(_fastcopy, src, dst, program_for, count, ts_resolution, progress, announce, workers=1):
    """_one_file for a pcapng input (NgCopy; pcap output or a count, which `workers` share on a
    file of NG_SHARED_BYTES or more: _ng_shared), or None. NgCopy only maps its input:
    with PFILTER_NO_MMAP=1 the general path reads it."""
    if os.environ.get("PFILTER_NO_MMAP", "") not in ("", "0"):
        return None
    opened = _open_pcapng(src)
    if opened is None:
        return None
    in_fd, h = opened
    out = job = None
    whole = False
    started = time.perf_counter()
    try:
        decoded, clear_mem = _decode(_fastcopy, program_for(h.linktype, h.snaplen, False))
        if announce is not None:
            announce(src, h.linktype, h.snaplen, 0)
        nsec = (ts_resolution or h.ts_resolution) == "ns"
        header = pcap_file_header(h.linktype, h.snaplen, nsec, h.linktype_ext)
        size0 = os.fstat(in_fd).st_size
        if dst is not None:
            out = AtomicFile(dst, protect=[src])
            out.write(header)
            if not count and size0 >= SMALL_FILE_BYTES:
                # the output is smaller than the input (a block's 28 bytes or more of framing
                # become a record's 16): allocated at once, cut to what was written at the end
                out.preallocate(size0, _fastcopy.preallocate)
        if out is None and not count and workers > 1 and size0 >= NG_SHARED_BYTES:
            shared = _ng_shared(_fastcopy, in_fd, h, decoded, clear_mem, size0, workers, progress, src)
            if shared is not None:
                whole = True
                return _stats(shared, None, src, started)
        job = _job(_fastcopy, h, decoded, clear_mem, in_fd, out.fileno() if out is not None else -1, count or -1,
                   len(header), nsec, None)
        status = _unless_cut(_run(job, progress, size0, src), in_fd, size0)
        if not _pass_ended(status, job, out):
            return None         # the general path starts over and says what is wrong, if anything
        whole = True
        if out is not None:
            out.commit(job.out_size)
    except KeyboardInterrupt as err:
        # as _one_file: the pass stopped between batches, the output holds whole records
        if out is not None:
            out.commit(job.out_size if job is not None else len(header))
        err.stats = _stats(job, out, src, started)
        err.complete = whole
        raise
    except BaseException:
        if out is not None:
            out.abort()
        raise
    finally:
        os.close(in_fd)
    return _stats(job, out, src, started)


#: a pcapng file is counted by several workers (_ng_shared) from this size on (each range costs a
#: thread, a read of the interfaces and a search for its first block)
NG_SHARED_BYTES = 32 << 20


def _ng_shared(_fastcopy, fd, h, decoded, clear_mem, size, workers, progress, src):
    """Count a pcapng file's matches with `workers` NgCopy passes over ranges of it at once (GIL
    released), each from the first packet block found at or after its share of the file
    (_fastcopy.ng_sync); the totals (a _Totals), or None when the ranges do not join up (a
    range's last block does not end where the next starts, or holds a section header or an
    interface: the next range's start did not know them), or one fails: the caller then counts
    the file in one pass."""
    starts = [0]
    for k in range(1, workers):
        at = _fastcopy.ng_sync(fd, size * k // workers, max_blocksize(h.linktype))
        if at > starts[-1]:
            starts.append(at)
    if len(starts) < 2:
        return None
    ends = starts[1:] + [-1]
    jobs = [_fastcopy.NgCopy(decoded, clear_mem, fd, -1, h.linktype, max_blocksize(h.linktype), start=a, stop=b)
            for a, b in zip(starts, ends)]
    waits = [_start_thread(job.run) for job in jobs]
    try:
        for ended in waits:
            while not ended(PROGRESS_INTERVAL):
                if progress is not None:
                    progress(sum(max(0, j.done - j.start) for j in jobs), size, _sum(jobs, [src]))
    except BaseException:
        for job in jobs:
            job.cancel()
        for ended in waits:
            ended(None)
        raise
    if any(j.status != 0 for j in jobs) or any(j.range_end != b or j.meta_changed for j, b in zip(jobs, ends[:-1])):
        return None
    total = _Totals()
    for job in jobs:
        total.add(job)
    if progress is not None:
        progress(size, size, _sum(jobs, [src]))
    return total


def _forks(workers, count, rotate, out):
    """Whether a pass's workers are processes (_fork_ring) rather than threads: several workers,
    no -c or -C (decided in chunk order by one process's threads), a seekable output or none,
    a process that can fork and has no other thread (a forked child keeps only the forking
    thread), and PFILTER_NO_FORK not set. Processes do not share a mapping lock and page tables
    with each other: each maps, populates and drops its chunks' pages without making the
    others wait or take TLB shootdowns (bench/results/latest_scale.md)."""
    if workers < 2 or count or rotate is not None or not hasattr(os, "fork"):
        return False
    if os.environ.get("PFILTER_NO_FORK", "") not in ("", "0") or other_threads():
        return False
    if out is not None:
        try:
            os.lseek(out.fileno(), 0, os.SEEK_CUR)
        except OSError:
            return False
    return True


def ring_bytes(_fastcopy, blocks):
    """The size of a mapping that holds a ring's `blocks` blocks of turns (whole pages)."""
    import mmap
    return -(-blocks * _fastcopy.RING_BLOCK_BYTES // mmap.PAGESIZE) * mmap.PAGESIZE


def _fork_ring(_fastcopy, args, kw):
    """The workers of one pass as processes: a ring (PcapCopy's ring) whose turns live in an
    anonymous shared mapping; members 1 .. workers - 1 forked, each running its PcapCopy and
    exiting (killed if this process dies; signals left to this one, which cancels the ring);
    (member 0's PcapCopy, which this process runs, the forked _Members)."""
    import mmap
    workers = kw.pop("workers")
    ring = mmap.mmap(-1, ring_bytes(_fastcopy, 1))
    _fastcopy.ring_init(ring, 1, kw["out_size"], args[4])
    jobs = [_fastcopy.PcapCopy(*args, workers=1, ring=ring, member=m, members=workers, **kw)
            for m in range(workers)]
    parent, members = os.getpid(), _Members(jobs[0])
    try:
        for m in range(1, workers):
            pid = os.fork()
            if pid == 0:
                code = 4
                try:
                    if _fastcopy.ring_child(parent):
                        jobs[m].run()
                        code = 0
                finally:
                    _fastcopy.ring_child_exit(code)
            members.pids[pid] = None
    except BaseException:
        members.reap()
        raise
    return jobs[0], members


class _Members:
    """A ring's forked members (process id: wait status once reaped) and member 0's PcapCopy."""

    def __init__(self, job):
        self.job, self.pids = job, {}

    def poll(self):
        """Reap the members that have exited; one that failed (a signal, a status other than 0)
        before the pass ended cancels the ring at once, rather than after its wait."""
        for pid, status in self.pids.items():
            if status is None:
                try:
                    got, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    got, status = pid, -1
                if got:
                    self.pids[pid] = status
                    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
                        self.job.cancel()

    def reap(self):
        """Wait for every member (after member 0's pass, or on its way out: the ring then
        cancelled first, so that they stop at their next chunk); whether all of them ran to
        their end and every chunk of an ended pass was written."""
        if self.job.status != 0 or sys.exc_info()[0] is not None:
            self.job.cancel()
        for pid, status in self.pids.items():
            while status is None:
                try:
                    status = os.waitpid(pid, 0)[1]
                except KeyboardInterrupt:
                    self.job.cancel()
                except ChildProcessError:
                    status = -1
            self.pids[pid] = status
        ok = all(os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0 for st in self.pids.values())
        done, chunks = self.job.ring_chunks
        return ok and (self.job.status != 0 or done == chunks)


def _unless_cut(status, fd, size):
    """A pass's status, or "input-cut" when its input (open as fd) has become shorter than the
    `size` it had when the pass started: a pass over a file cut while it was read may have
    taken the cut for its end, or read pages the cut emptied. The general path then starts over
    on the file as it is (and says where a record is cut short)."""
    try:
        return "input-cut" if os.fstat(fd).st_size < size else status
    except OSError:
        return status


def _pass_ended(status, job, out):
    """True when a pass stopped at the end of its input or of -c; a write error raises its
    OSError; any other stop (damage, a record the fast path leaves to the general one) drops
    the output and gives False: the caller returns None and the general path starts over."""
    if status == "write-error":
        raise OSError(job.error, os.strerror(job.error), out.path)
    if status in ("eof", "count"):
        return True
    if out is not None:
        out.abort()
    return False


def _stats(job, out, src, started):
    files = [os.fspath(s) for s in src] if isinstance(src, list) else [os.fspath(src)]
    if job is None:
        return FilterStats(seconds=time.perf_counter() - started, files=files)
    stats = FilterStats(read=job.read, matched=job.matched, written=job.written,
                        bytes=job.bytes if out is not None else 0,
                        seconds=time.perf_counter() - started, files=files)
    stats.matched_bytes = job.bytes
    return stats


def _decode(_fastcopy, tuples):
    """(decoded program, whether it reads scratch memory) of validated (code, jt, jf, k) tuples:
    _fastcopy's decode, the VM's own (pfilter/_vm_core.pxi)."""
    from ..validate import COMPILED_MAX_INSNS, validate
    tuples = [tuple(int(v) for v in t) for t in tuples]
    validate(tuples, COMPILED_MAX_INSNS)
    raw = b"".join(struct.pack("<HBBI", *t) for t in tuples)
    return _fastcopy.decode(raw), bool(_fastcopy.reads_scratch(raw))


class _Totals:
    """The counts of the passes of a rotated copy, added up (and the last pass's status)."""

    def __init__(self):
        self.read = self.matched = self.written = self.bytes = 0
        self.error = 0
        self.out_size = 0

    def add(self, job):
        self.read += job.read
        self.matched += job.matched
        self.written += job.written
        self.bytes += job.bytes
        self.error = job.error
        self.out_size = job.out_size


def other_threads():
    """How many threads besides this one the interpreter started (by threading or _thread)."""
    import _thread
    count = getattr(_thread, "_count", None)
    if count is None:                     # (not in this Python: threading knows its own)
        import threading
        return threading.active_count() - 1
    return count()


def _start_thread(fn):
    """fn() in a new thread; a function ended(timeout) telling whether that thread is gone
    (waiting up to timeout seconds, None: until it is), not only fn returned: threading.Thread
    and its join without importing threading, whose imports (functools, collections) are a
    visible share of the command's start (bench/results/latest_scale.md, "start s")."""
    import _thread
    if hasattr(_thread, "start_joinable_thread"):          # Python 3.13+
        handle = _thread.start_joinable_thread(fn, daemon=True)

        def ended(timeout):
            handle.join(timeout)
            return handle.is_done()
        return ended
    ready, gone = _thread.allocate_lock(), []
    # the sentinel taken once (the thread is gone); when fn was first seen returned
    state = {"returned": False, "gone": False, "since": None}
    ready.acquire()

    def boot():
        sentinel = _thread._set_sentinel()      # released as this thread's state goes
        sentinel.acquire()
        gone.append(sentinel)
        ready.release()
        try:
            fn()
        finally:
            state["returned"] = True
    _thread.start_new_thread(boot, ())
    ready.acquire()
    import time

    def ended(timeout):
        # A Ctrl-C (KeyboardInterrupt from the signal handler) may land between the sentinel's
        # acquire and its release, leaving it held by this thread: the caller's next wait would
        # then never end. The wait is therefore taken in short steps, and a sentinel still held
        # a second after fn returned is taken to be that one (the thread goes in microseconds).
        if state["gone"]:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic()))
            if gone[0].acquire(True, step):
                state["gone"] = True
                gone[0].release()
                return True
            if state["returned"]:
                if state["since"] is None:
                    state["since"] = time.monotonic()
                elif time.monotonic() - state["since"] > 1.0:
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
    return ended


def _run(job, progress, total, src, base=None, members=None):
    """job.run() in a helper thread, so that this one can report progress and take Ctrl-C (the
    pass itself runs without the GIL). base: the counts of the passes before (a _Totals);
    members: a ring's forked _Members, watched while the pass runs."""
    r0 = base.read if base is not None else 0
    m0 = base.matched if base is not None else 0
    if members is None and total < SMALL_FILE_BYTES:       # (SMALL_FILE_BYTES: in this thread)
        status = job.run()
        if progress is not None and status != "rotate":
            progress(job.done, total, FilterStats(read=r0 + job.read, matched=m0 + job.matched, files=[src]))
        return status
    outcome = {}

    def work():
        try:
            outcome["status"] = job.run()
        except BaseException as e:      # handed to the calling thread
            outcome["error"] = e

    ended = _start_thread(work)
    try:
        while not ended(PROGRESS_INTERVAL):
            if members is not None:
                members.poll()
            if progress is not None:
                progress(job.done, total, FilterStats(read=r0 + job.read, matched=m0 + job.matched,
                                                      files=[src]))
    except BaseException:
        job.cancel()
        ended(None)
        raise
    if "error" in outcome:
        raise outcome["error"]
    if progress is not None and outcome.get("status") != "rotate":
        progress(job.done, total, FilterStats(read=r0 + job.read, matched=m0 + job.matched, files=[src]))
    return outcome["status"]
