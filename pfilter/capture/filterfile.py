"""filter_file: copy the packets of one or more captures that match an expression into a new
capture (the `pfilter -r IN -w OUT EXPR` path), streaming batch by batch.

Imports the reader and writers of pfilter.capture, pfilter.errors, pfilter._signals,
pfilter._progress, and pfilter.compile / pfilter.Program (the compiler and the VM) through the
public package.

For pcapng input whose interfaces have different link types, the expression is compiled once per
link type and each packet is judged by its own link type's program. Memory stays bounded: a batch
and its window are dropped once written.
"""
import os
import signal
import stat
import sys
import threading
import time

import numpy as np

from .._progress import progress_callback
from .._signals import deferred, interruptible
from ..errors import CaptureFormatError, FilterError, RejectsAllError
from .fastpath import FilterStats, fast_filter_file, fast_path_applies
from .files import MAXIMUM_SNAPLEN, Inputs, file_linktype, max_snaplen_for_linktype
from .reader import PEEK_WINDOW_BYTES, Capture, open_capture
from .writer import format_for_path, open_writer


# Batches small enough to stay in the CPU cache between reading, filtering and writing (each
# packet comes from DRAM once), large enough that the per-batch Python work stays small. Measured
# on 1 GB (2 MB L2, 32 MB L3): 32 MB batches 0.53 s to read and filter, 1 MB 0.13 s; with the
# reused read buffer and writing, 4 MB beat 1, 2, 8 and 16 MB (0.22 s vs 0.27 s at 1 MB).
CACHE_BATCH_BYTES = 4 << 20
# Read windows into one reused buffer of this size (instead of mapping the file), so the packets
# are still in the CPU cache when they are filtered and written.
REUSE_BUFFER = os.environ.get("PFILTER_MMAP", "") in ("", "0")
REUSE_WINDOW_BYTES = 4 << 20
# Batches a helper thread reads ahead of the filtering (0: read in the calling thread). Off by
# default: on the 2-core machine it was measured on (shared, loaded), filtering 1 GB took
# 0.205 s without it and 0.226 s with 2 batches ahead; PFILTER_READ_AHEAD=N turns it on.
READ_AHEAD = int(os.environ.get("PFILTER_READ_AHEAD", "0"))


class ProgramSet:
    """The expression's Program per link type, compiled on first need."""

    def __init__(self, expr, snaplen=None, optimize=True, linktype=None, compiler=None):
        self.expr = expr
        self.snaplen = snaplen
        self.optimize = optimize
        if linktype is not None:
            from ..linktypes import linktype_number
            linktype = linktype_number(linktype)         # (a name: "RAW")
        self.forced_linktype = linktype
        self.compiler = compiler
        self._programs = {}
        self._no_match = set()   # (link type, snaplen, swapped) of match(): another interface's, refused
        self.native = False      # run the programs as native code (pfilter.backend decides)

    def for_linktype(self, linktype, snaplen=None, swapped=False):
        """The Program for a link type, compiled as `tcpdump -r` does for a savefile: netmask 0
        (so `ip broadcast` works) and, for NULL/ENC, the AF value in the file's byte order
        (`swapped`: the file was written on a host of the other byte order)."""
        import pfilter
        lt = self.forced_linktype if self.forced_linktype is not None else int(linktype)
        if isinstance(self.expr, pfilter.Program):
            # a Program runs only on the link type it was compiled for (FilterError otherwise)
            self.expr.check_linktype([lt], "the packets" if self.forced_linktype is None
                                     else "the packets (linktype=)")
            return self.expr
        key = (lt, self.snaplen or snaplen or 262144, bool(swapped))
        prog = self._programs.get(key)
        if prog is None:
            compile_ = self.compiler or pfilter.compile
            prog = compile_(self.expr, linktype=lt, snaplen=key[1], optimize=self.optimize,
                            netmask=0, swapped=key[2])
            self._programs[key] = prog
        return prog

    def _engine(self, linktype, snaplen, swapped):
        prog = self.for_linktype(linktype, snaplen, swapped)
        return prog.jit() if self.native else prog

    def match(self, batch, snaplen=None, swapped=False, own=None):
        """Bool mask of the batch's packets the expression accepts (each program chosen for its
        packets' link type here: run without the Program's own check). own: the capture's link
        type (a pcapng file's: its first interface's, the one libpcap gives the whole file).
        Another interface's link type on which the expression can match nothing (the
        command's compiler refuses its program: RejectsAllError) gives its packets no match
        rather than end the run, as on `arp` and a raw IP interface beside Ethernet ones."""
        from ..program import matches_unchecked
        if batch.linktypes is None or self.forced_linktype is not None:
            return matches_unchecked(self._engine(batch.linktype, snaplen, swapped), batch)
        kinds = np.unique(batch.linktypes)
        mask = np.zeros(len(batch), dtype=bool)
        for lt in kinds:
            if (int(lt), snaplen, swapped) in self._no_match:
                continue
            try:
                engine = self._engine(int(lt), snaplen, swapped)
            except RejectsAllError:
                if own is None or int(lt) == own:
                    raise
                self._no_match.add((int(lt), snaplen, swapped))
                continue
            if len(kinds) == 1:
                return matches_unchecked(engine, batch)
            mask |= matches_unchecked(engine, batch) & (batch.linktypes == lt)
        return mask


def _read_ahead(cap, depth, stop):
    """The capture's batches, read by a helper thread up to `depth` batches ahead: the scanner
    and the VM both release the GIL, so reading overlaps filtering and writing on a second core.
    A reader error arrives in order, after the batches before it."""
    import queue
    import threading
    q = queue.Queue(maxsize=depth)
    done = object()

    def produce():
        try:
            for batch in cap:
                while not stop.is_set():
                    try:
                        q.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:   # handed to the consumer, raised there in order
            q.put(e)

    thread = threading.Thread(target=produce, name="pfilter-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()


def keep_written(writer, stats, started, err=None):
    """Close `writer` (the caller has already dropped it, so that its `finally` does not abort
    it): its whole packets so far make a valid capture. The stats get the time since `started`;
    an error `err` (a damaged input, an interruption) carries them as err.stats, unless an inner
    handler gave it stats already."""
    if err is not None and getattr(err, "stats", None) is None:
        stats.seconds = time.perf_counter() - started
        err.stats = stats
    if writer is not None:
        writer.close()


def open_for_filtering(path, batch_bytes=CACHE_BATCH_BYTES, batch_packets=None):
    """A Capture opened the way filter_file reads: cache-sized batches, and (unless a thread
    reads ahead) one reused read buffer, since each batch is finished with before the next."""
    options = dict(batch_bytes=batch_bytes)
    if batch_packets:
        options["batch_packets"] = batch_packets
    if REUSE_BUFFER and not READ_AHEAD:
        options.update(reuse_buffer=True, window_bytes=REUSE_WINDOW_BYTES)
    return open_capture(path, **options)


def _inputs(src):
    if isinstance(src, (list, tuple)):
        return [_path(s) for s in src]
    return [_path(src)]


def _path(p):
    """A bytes file name as str (the reader and writers name files in messages)."""
    return os.fsdecode(p) if isinstance(p, bytes) else p


def filter_file(src, dst, expr, linktype=None, snaplen=None, count=None, optimize=True,
                progress=None, format=None, ts_resolution=None, batch_packets=None,
                batch_bytes=CACHE_BATCH_BYTES, on_batch=None, compiler=None, *, truncate=None,
                dedup=None, rotate=None, backend=None, workers=None, merge=False, after=None,
                before=None, cache=True, announce=None, on_damage=None):
    """Write the packets of capture(s) `src` matching `expr` (a string or a Program) to `dst`.

    src: a path, '-', a file object, an open Capture, or a list of them (read in order into one
    output).
    dst: a path, '-' for standard output, or None to count without writing.
    linktype / snaplen: override the capture's for compiling (like tcpdump -y / -s).
    count: stop after this many matching packets (tcpdump -c); `read` then counts the packets
    up to the last of them.
    progress: True for a progress bar on standard error (tqdm's when installed), or a callable
    called as progress(bytes_done, bytes_total, stats) as the pass goes on.
    format: "pcap" or "pcapng" (default: from dst's name, else pcap).
    ts_resolution: "us" or "ns" for pcap output (default: the input's; several: "ns" when any
    input has nanoseconds, output_header).
    on_batch: called as on_batch(batch, indices) for the matched packets of each batch; the
    batch's data may be reused once the callback returns (copy what must outlive it).
    compiler: called like pfilter.compile to make each link type's Program (default: pfilter.compile
    through the on-disk program cache, pfilter.compiler.cache, unless cache=False or
    PFILTER_NO_CACHE=1).
    truncate: cut every written packet to this many bytes (wire length kept; the header's
    snapshot length says it), as `editcap -s`. dedup: a window W (True: 5): drop a packet whose
    captured bytes equal one of the W - 1 packets before it, as `editcap -D W`. rotate: a
    pfilter.capture.rotate.Rotation (or dict: size bytes, seconds, files) for tcpdump's -C/-G/-W
    (dst is then the name the files' names are made from). A dst ending in .gz, .zst, .xz or
    .bz2 is compressed. backend: "vm", "native" or "auto" (pfilter.backend; None: the Program's
    own, else "vm").
    workers: threads sharing the work on the fast path (the parts of one file, or several files
    counted at a time; default: the usable cores); the output does not depend on it.
    merge: write the inputs' matches in timestamp order, as mergecap does (on equal timestamps
    the later input's packet first); without it the inputs are concatenated in the order given.
    after / before: only packets with after <= timestamp < before (editcap -A / -B): ns since
    1970 (int) or text (epoch seconds, ISO 8601; pfilter.capture.index.parse_time). A sorted
    pcap input finds the window through its index (pfilter.capture.index) and reads nothing
    else; others are scanned.
    announce: called as announce(path, linktype, snaplen, index) when the index-th input is
    opened, before its packets (all of them at once when several files are counted in
    parallel): what `pfilter -r` prints as tcpdump's "reading from file" line for each.
    on_damage: called as on_damage(error) with the CaptureFormatError of a damaged input of a
    concatenation instead of raising it: that input ends at its damage (its packets before it
    kept) and the inputs after it are read, as `tcpdump -V` reads on (--merge stops, as mergecap).

    The output's snapshot length is the input's; with several inputs, the largest of theirs
    (read from their headers before writing), so that no reader cuts a record of a later input.

    Returns a FilterStats. A damaged input raises CaptureFormatError after the packets before
    the damage were written and the output committed (as tcpdump leaves them); so does an
    interruption (KeyboardInterrupt: Ctrl-C, or SIGTERM/SIGHUP under the command), which leaves
    the whole packets written so far as a valid capture. Either exception carries the stats as
    `.stats`. File-system failures raise the OSError subclass of their errno; the destination
    is then left as it was."""
    sources = _inputs(src)
    dst = _path(dst)
    if dst is not None and not isinstance(dst, (str, os.PathLike)):
        raise FilterError(f"dst: a file name, '-' (standard output) or None (count only), not {type(dst).__name__}")
    if not sources:
        raise FilterError("no input capture")
    from .fastpath import check_workers
    from .index import parse_window
    workers = check_workers(workers)
    window = parse_window(*(int(t) if isinstance(t, np.integer) else t for t in (after, before)))
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        # (tcpdump -c 0: "invalid packet count"; count=0 read every packet and matched none)
        raise FilterError(f"count must be a positive number of packets (None: all), not {count!r}")
    if compiler is None and cache:
        from ..compiler.cache import cached_compile as compiler
    report, close_progress = progress_callback(progress, sum(_size(s) for s in sources))
    try:
        with interruptible((signal.SIGINT,)):
            return _filter_file(sources, dst, expr, linktype, snaplen, count, optimize, report, format,
                                ts_resolution, batch_packets, batch_bytes, on_batch, compiler,
                                (truncate, dedup, rotate), backend, workers, merge, window, announce,
                                on_damage)
    finally:
        close_progress()


def _filter_file(sources, dst, expr, linktype, snaplen, count, optimize, progress, format,
                 ts_resolution, batch_packets, batch_bytes, on_batch, compiler, edits=(None, None, None),
                 backend=None, workers=None, merge=False, window=(None, None), announce=None,
                 on_damage=None):
    started = time.perf_counter()
    stats = FilterStats()
    programs = ProgramSet(expr, snaplen, optimize, linktype, compiler)
    from ..backend import use_native
    if backend is None:
        backend = getattr(expr, "backend", "vm")
    programs.native = use_native(backend, nbytes=sum(_size(s) for s in sources))
    truncate, dedup, rotate = edits
    if rotate is not None and dst is None:
        from .rotate import NEEDS_OUTPUT
        raise FilterError(NEEDS_OUTPUT)
    from .rotate import Rotation
    from .split import check_dedup, check_snaplen
    truncate, dedup, rotate = check_snaplen(truncate), check_dedup(dedup), Rotation.make(rotate)
    if rotate is not None:
        rotate.refuse_over_input(dst, sources)
    plain = truncate is None and not dedup and rotate is None
    timed = window != (None, None)

    def writer_for(dst, cap, format, ts_resolution, sources):
        """The output: a plain writer, or an Output that cuts, de-duplicates or rotates."""
        if plain:
            return _writer_for(dst, cap, format, ts_resolution, sources)
        from .split import Output
        return Output(dst, _writer_args(dst, cap, format, ts_resolution, sources),
                      truncate=truncate, dedup=dedup, rotate=rotate)
    if merge and len(sources) > 1:
        from .merge import merge_filter
        return merge_filter([s.path if isinstance(s, Capture) else s for s in sources], dst, programs, count,
                            format, ts_resolution, window, on_batch, writer_for, announce, progress,
                            sum(_size(s) for s in sources))
    byte_range = None
    if timed and len(sources) == 1 and isinstance(sources[0], str):
        from .index import window_range
        byte_range = window_range(sources[0], *window, workers=workers)    # None: scanned below
    if fast_path_applies(per_batch=on_batch is not None, batch_packets=batch_packets, dedup=dedup,
                         native=programs.native, window_found=not timed or byte_range is not None):
        fast = fast_filter_file(sources, dst, lambda lt, snap, swapped: programs.for_linktype(
            lt, snap, swapped).to_tuples(), count=count, format=format, ts_resolution=ts_resolution,
            progress=progress, truncate=truncate, rotate=rotate, workers=workers, byte_range=byte_range,
            announce=announce)
        if fast is not None:
            return fast
    writer = None
    total_bytes = sum(_size(s) for s in sources)
    done_bytes = 0
    selected = 0
    try:
        for s in sources:
            if isinstance(s, Capture):      # opened by the caller (the CLI reads its header first)
                s.batch_bytes = batch_bytes
                if batch_packets:
                    s.batch_packets = batch_packets
                opened = s
            else:
                try:
                    opened = open_for_filtering(s, batch_bytes, batch_packets)
                except CaptureFormatError as err:
                    if on_damage is None:
                        raise
                    on_damage(err)          # (nothing of it read: the next input)
                    continue
            with opened as cap:
                if announce is not None:
                    announce(cap.path, cap.linktype, cap.snaplen, len(stats.files))
                stats.files.append(cap.path)
                swapped = getattr(cap, "byteorder", sys.byteorder) != sys.byteorder
                programs.for_linktype(cap.linktype, cap.snaplen, swapped)
                if writer is None and dst is not None:
                    writer = writer_for(dst, cap, format, ts_resolution, sources)
                if not getattr(writer, "takes", lambda lt: True)(cap.linktype):
                    raise _wrong_linktype(cap.path, cap.linktype, dst, writer.linktype)
                raw = None
                if writer is not None and writer.format == "pcapng":
                    writer.from_input(cap, len(stats.files) - 1)
                elif writer is not None and cap.format == "pcap" and cap.ts_resolution == (
                        "ns" if writer.nsec else "us"):
                    raw = cap.pcap_layout       # timestamps copied as recorded, as tcpdump does
                stop = threading.Event()
                batches = _read_ahead(cap, READ_AHEAD, stop) if READ_AHEAD else cap
                try:
                    for batch in batches:
                        n = len(batch)
                        mask = programs.match(batch, cap.snaplen, swapped, cap.linktype)
                        inside = None
                        if timed:     # editcap -A / -B: the packets outside are not read at all
                            inside = _inside(batch.timestamps, window)
                            mask &= inside
                        idx = np.flatnonzero(mask)
                        with deferred():      # an interruption comes after the batch is counted
                            stats.read += n if inside is None else int(inside.sum())
                            stats.matched += len(idx)
                            if count is not None and selected + len(idx) >= count:
                                cut = count - selected
                                stats.matched -= len(idx) - cut
                                if cut:
                                    last = int(idx[cut - 1])
                                    stats.read -= (n - 1 - last if inside is None
                                                   else int(inside[last + 1:].sum()))
                                idx = idx[:cut]
                            selected += len(idx)
                            if writer is not None and len(idx):
                                if not plain:
                                    before = writer.bytes_written
                                    stats.written += writer.write(batch, idx, raw)
                                    stats.bytes += writer.bytes_written - before
                                else:
                                    if raw is not None:
                                        writer.write(batch, idx, raw)
                                    else:
                                        writer.write(batch, idx)
                                    stats.written += len(idx)
                                    stats.bytes += int(batch.caplen[idx].sum(dtype=np.int64))
                        if on_batch is not None and len(idx):
                            on_batch(batch, idx)
                        if progress is not None and batch.file_offsets is not None and n:
                            at = cap.file_position(int(batch.file_offsets[-1]))
                            if at is not None:
                                progress(done_bytes + at, total_bytes, stats)
                        del batch, mask
                        if count is not None and selected >= count:
                            break
                except (CaptureFormatError, KeyboardInterrupt) as err:
                    # the packets before the damage (or the interruption) make a valid capture;
                    # with on_damage, the damaged input ends there and the next one is read
                    try:
                        if on_damage is None or not isinstance(err, CaptureFormatError):
                            raise
                        on_damage(err)
                    except BaseException as stop:
                        w, writer = writer, None
                        keep_written(w, stats, started, stop)
                        raise
                finally:
                    if READ_AHEAD:
                        batches.close()
                done_bytes += _size(s)
                if progress is not None:
                    progress(done_bytes, total_bytes, stats)
            if count is not None and selected >= count:
                break
        if writer is not None:
            w, writer = writer, None
            w.close()
    except (KeyboardInterrupt, CaptureFormatError) as err:
        # between inputs (opening the next one, or one that is no capture): keep what was written
        w, writer = writer, None
        keep_written(w, stats, started, err)
        raise
    finally:
        if writer is not None:
            writer.abort()
    stats.seconds = time.perf_counter() - started
    return stats


def _inside(timestamps, window):
    """Bool mask of the timestamps t (ns) with after <= t < before (editcap -A / -B)."""
    after, before = window
    inside = np.ones(len(timestamps), bool)
    if after is not None:
        inside &= timestamps >= after
    if before is not None:
        inside &= timestamps < before
    return inside


def _size(s):
    if isinstance(s, Capture):
        s = s.path
    try:
        return os.path.getsize(s) if isinstance(s, (str, os.PathLike)) and s != "-" else 0
    except OSError:
        return 0


def _writer_args(dst, cap, format, ts_resolution, sources):
    """open_writer's keyword arguments for an output of the inputs `sources`, the first open
    as `cap` (also pfilter.capture.split's outputs, so every output says the same)."""
    fmt = format or format_for_path(dst)
    if fmt == "pcap" and cap.format == "pcapng" and len({i["linktype"] for i in cap.interfaces}) > 1:
        raise FilterError(f"{cap.path}: interfaces of several link types need pcapng output "
                          f"(name the output .pcapng)")
    others = [] if fmt == "pcap" else None
    snaplen, resolution = output_header(cap, sources, others)
    for path, linktype in others or ():
        # said before the first packet is written, not when this input's turn comes
        if file_linktype(linktype) != file_linktype(cap.linktype):
            raise _wrong_linktype(path, linktype, dst, cap.linktype)
    args = dict(format=fmt, linktype=cap.linktype, snaplen=snaplen,
                ts_resolution=ts_resolution or resolution,
                linktype_ext=cap.linktype_ext, interfaces=cap.interfaces if fmt == "pcapng" else None,
                protect=Inputs([s.path if isinstance(s, Capture) else s for s in sources
                                if isinstance(s, (str, os.PathLike, Capture))]))
    if fmt == "pcapng":
        # no resolution asked for: each interface keeps its input's (mergecap's way), none is cut
        args["keep_resolution"] = ts_resolution is None
    return args


def _wrong_linktype(path, linktype, dst, output_linktype):
    """The FilterError of an input whose link type a pcap output of another cannot take."""
    return FilterError(f"{path}: link type {linktype} cannot go into {dst}, a pcap file of link type "
                       f"{output_linktype}: write pcapng instead (name the output .pcapng)")


def _writer_for(dst, cap, format, ts_resolution, sources):
    return open_writer(dst, **_writer_args(dst, cap, format, ts_resolution, sources))


def output_header(first, sources, linktypes=None):
    """(snapshot length, timestamp resolution) of the output header when the caller asks for
    neither, decided before writing: the first input's (as tcpdump writes them) when it is the
    only one; with several, the largest snapshot length of the inputs' (mergecap writes 262144
    whatever they say) and nanoseconds when any input has them, read from each header; with an
    input that cannot be looked at beforehand (standard input, a FIFO, a file object), the link
    type's maximum snapshot length (libpcap's 262144 for most) and the first input's resolution.
    A record longer than the header's snapshot length is cut back by every reader, and a
    nanosecond timestamp written into a microsecond file loses its last digits: no input's may.
    linktypes: a list, given (path, link type) of each other classic pcap input looked at."""
    # Divergence: tcpdump -V (a list of files) writes the first file's snapshot length and
    # later, longer records are cut back by every reader; tcpdump -w writes microseconds.
    if len(sources) == 1:
        return first.snaplen, first.ts_resolution
    snaplen, resolution = _capture_snaplen(first), first.ts_resolution
    for s in sources[1:]:
        other = _peek_header(s)
        if other is None:
            return max(snaplen, max_snaplen_for_linktype(first.linktype)), first.ts_resolution
        snaplen = max(snaplen, other[0])
        resolution = "ns" if "ns" in (resolution, other[1]) else resolution
        if linktypes is not None and other[2] is not None:
            linktypes.append((s.path if isinstance(s, Capture) else s, other[2]))
    return snaplen, resolution


def _capture_snaplen(cap):
    """A capture's largest snapshot length (pcapng: over the interfaces seen so far)."""
    return max([cap.snaplen] + [int(i.get("snaplen") or MAXIMUM_SNAPLEN) for i in (cap.interfaces or [])])


def _peek_header(src):
    """(snapshot length, timestamp resolution, link type: None for pcapng) of a capture named by
    a path to a regular file (its header read on a separate open; the pass opens it again
    later), else None."""
    if isinstance(src, Capture):
        return _capture_snaplen(src), src.ts_resolution, src.linktype if src.format == "pcap" else None
    if not isinstance(src, (str, os.PathLike)) or src == "-":
        return None
    try:
        if not stat.S_ISREG(os.stat(src).st_mode):
            return None
        with open_capture(src, window_bytes=PEEK_WINDOW_BYTES) as cap:
            return _capture_snaplen(cap), cap.ts_resolution, cap.linktype if cap.format == "pcap" else None
    except (OSError, FilterError):
        return None       # the pass reports what is wrong with it
