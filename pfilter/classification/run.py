"""pfilter.classification.run, the driver behind pfilter.classify(): reads the source in batches,
compiles the rules once per link type, picks the engine (engine_for, the one place), runs it over
each batch (slices of a large batch on threads, without the GIL) and collects a Classification.

Imports numpy, pfilter.errors, pfilter.batch and the package's rules, plan and result modules;
at call time pfilter.open (the reader), pfilter.backend, pfilter.native (for backend "native" /
"auto") and pfilter.capture.split (split files). The engine is the Cython module
pfilter._classify (which imports nothing from pfilter), taken through pfilter._impl; without it
(PFILTER_PUREPYTHON=1, or not built), and for a single rule, each rule's own Program runs instead.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from ..batch import PacketBatch
from ..errors import CaptureFormatError, FilterError
from ..program import matches_unchecked, run_indexed_unchecked
from .plan import plan
from .result import Classification
from .rules import RuleSet, parse_rules

from .._impl import native as _native_extension

#: the Cython engine (pfilter._classify), None under PFILTER_PUREPYTHON=1 or when not built
_engine = _native_extension("pfilter._classify")

__all__ = ["classify", "engine_for"]

#: batches of split runs: large ones mean fewer write calls per output file per batch (the
#: writes go from the read buffer; its staying in the CPU cache matters less than the call count)
SPLIT_BATCH_BYTES = 16 << 20

def _sources(source):
    """source as an iterable of paths and batches, and the bytes of its files when they are
    known beforehand (a path or a list/tuple of paths; 0 otherwise)."""
    if isinstance(source, PacketBatch):
        return [source], 0
    if isinstance(source, bytes):
        source = os.fsdecode(source)
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    elif not hasattr(source, "__iter__"):
        raise FilterError(f"source must be a path, a PacketBatch or an iterable of them, not {type(source).__name__}")
    total = 0
    if isinstance(source, (list, tuple)):
        for item in source:
            if isinstance(item, (str, os.PathLike)):
                try:
                    total += os.path.getsize(item)
                except OSError:
                    pass        # reported when the file is opened
    return source, total


def _iter_batches(source, on_open=None, on_damage=None):
    """(batch, bytes read so far) from the paths and batches of _sources(); the byte count is
    the files' offsets (a batch given directly counts its data bytes). on_open(capture) is
    called as each file is opened (then its batches are read for writing split files).
    on_damage(err): a damaged file's CaptureFormatError, its batches before the damage given,
    and the next file read (without it, the error ends the reading)."""
    from .. import open as open_capture
    done = 0
    for item in source:
        if isinstance(item, PacketBatch):
            done += int(item.data.nbytes)
            yield item, done
        elif isinstance(item, (str, os.PathLike)):
            try:
                opened = _opened(item, open_capture, on_open is not None)
                with opened as cap:
                    if on_open is not None:
                        on_open(cap)
                    for batch in cap:
                        offsets = getattr(batch, "file_offsets", None)
                        yield batch, done + (int(offsets[-1]) if offsets is not None and len(offsets) else 0)
            except CaptureFormatError as err:
                if on_damage is None:
                    raise
                on_damage(err)
            try:
                done += os.path.getsize(item)
            except OSError:
                pass
        else:
            raise FilterError(f"source items must be paths or PacketBatch objects, not {type(item).__name__}")



def _opened(item, open_capture, splitting):
    """The capture `item` open for classifying: for split files (splitting) in large batches
    (SPLIT_BATCH_BYTES): records are written straight from the read buffer, with fewer calls per
    output file (a pipe is read in filter_file's windows and batches: a window waits until it is
    full, and an interruption writes the packets of the full ones)."""
    if not splitting:
        return open_capture(item)
    if item not in ("-", b"-") and os.path.isfile(item):
        return open_capture(item, batch_bytes=SPLIT_BATCH_BYTES)
    from ..capture.filterfile import CACHE_BATCH_BYTES, REUSE_WINDOW_BYTES
    return open_capture(item, batch_bytes=CACHE_BATCH_BYTES, window_bytes=REUSE_WINDOW_BYTES)


def engine_for(progs, backend="vm", nbytes=None):
    """(programs, engine) for one link type's rule programs: the one place classification chooses
    what runs them. The engine (anything with RuleEngine.run's signature) is the native code of
    pfilter.native.classifier_for(plan) under backend "native" (or "auto" for a pass over at
    least pfilter.backend.AUTO_MIN_RULE_SET_BYTES, `nbytes`), else the Cython RuleEngine; None when each
    program runs alone: a single rule (it gains nothing from the engine), or no engine built."""
    from .. import backend as _backend
    if len(progs) > 1 and _backend.use_native(backend, nbytes=nbytes, rules=len(progs)):
        classifier_for = _native_classifier_for(required=backend == "native")
        if classifier_for is not None:
            return progs, classifier_for(_plan(tuple(progs)))
    if len(progs) > 1 and _engine is not None:
        return progs, _plan(tuple(progs)).engine()
    if backend != "vm":
        progs = [p.with_backend(backend) for p in progs]
    return progs, None


#: rule sets whose plans are kept between classify calls (building one is a pass over every rule)
PLAN_CACHE_SIZE = 8


@functools.lru_cache(maxsize=PLAN_CACHE_SIZE)
def _plan(progs):
    """plan(progs), kept for the next classify over the same programs (Programs compare by their
    instructions; a plan is read-only), so a repeated pass pays neither the plan nor, through
    pfilter.native's cache, the native compile."""
    return plan(list(progs))


def _native_classifier_for(required):
    """pfilter.native.classifier_for, or None when this version has none (NativeUnavailableError
    instead when native code was `required`)."""
    from .. import native
    classifier_for = getattr(native, "classifier_for", None)
    if classifier_for is None and required:
        raise native.NativeUnavailableError("native code for rule sets (pfilter.native.classifier_for) "
                                            "is not available in this version; use backend 'vm'")
    return classifier_for


#: fewest packets per thread worth a thread of its own
MIN_PACKETS_PER_THREAD = 16384


def _run_batch(ruleset, batch, linktype, out, packed, counts, nbytes, pool=None, threads=1):
    """Evaluate every rule on one batch into out, counts and nbytes (see RuleEngine.run); with a
    thread pool, disjoint slices of the rows run in parallel (the engine releases the GIL)."""
    batch.check()   # the engine trusts offsets/caplen: a batch changed since it was built stops here
    if linktype is not None or batch.linktypes is None:
        groups = [(batch.linktype if linktype is None else linktype, None)]
    else:
        groups = [(int(lt), np.flatnonzero(batch.linktypes == lt).astype(np.int64))
                  for lt in np.unique(batch.linktypes)]
    for lt, rows in groups:
        progs, eng = ruleset.programs(lt)
        if eng is not None:
            nrows = len(batch) if rows is None else len(rows)
            parts = min(threads, nrows // MIN_PACKETS_PER_THREAD) if pool is not None else 1
            if parts <= 1:
                eng.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, rows, out, packed, counts, nbytes)
                continue
            every = np.arange(nrows, dtype=np.int64) if rows is None else rows
            tallies = [(np.zeros_like(counts), np.zeros_like(nbytes)) for _ in range(parts)]
            jobs = [pool.submit(eng.run, batch.data, batch.offsets, batch.caplen, batch.wirelen, part,
                                out, packed, c, b)
                    for part, (c, b) in zip(np.array_split(every, parts), tallies)]
            for job in jobs:
                job.result()
            for c, b in tallies:
                counts += c
                nbytes += b
            continue
        # a single rule, or no engine: each rule's own Program over the batch
        for r, prog in enumerate(progs):
            if rows is None:
                hit = matches_unchecked(prog, batch)        # (chosen for the link type: RuleSet)
            else:
                verdicts = np.zeros(len(batch), dtype=np.uint32)
                hit = run_indexed_unchecked(prog, batch, rows, verdicts) != 0
            counts[r] += np.count_nonzero(hit)
            nbytes[r] += int(batch.wirelen.sum(dtype=np.int64, where=hit))
            if out is not None:
                if packed:
                    out[:, r >> 3] |= hit.view(np.uint8) << np.uint8(7 - (r & 7))
                else:
                    out[:, r] |= hit.view(np.uint8)


def _row_any(out):
    """out.any(axis=1) for a C-contiguous uint8 matrix, reading whole words where it can
    (numpy's reduction over a short row axis costs more than the classification itself)."""
    n, w = out.shape
    for size, dtype in ((8, np.uint64), (4, np.uint32), (2, np.uint16), (1, np.uint8)):
        if w % size == 0 and w:
            words = out.view(dtype)
            return words[:, 0] != 0 if w == size else words.any(axis=1)
    return np.zeros(n, dtype=bool)


def classify(source, rules, *, linktype=None, order=None, default=None, packed=False,
             counts_only=False, optimize=True, snaplen=262144, threads=1, progress=None,
             split=None, first_match=False, unmatched=None, format=None, truncate=None,
             dedup=None, rotate=None, backend="vm", on_damage=None, on_block=None):
    """Evaluate many named filters over every packet of `source` in one pass.

    source: a capture path (or list of paths, read with pfilter.open), a PacketBatch, or an
    iterable of batches. rules: mapping name -> expression (or Program), list of expressions
    (each its own name), or a rules-file path (`name: expression` lines, `#` comments).
    Expressions are compiled with optimize="shareable" (IPv4 and IPv6 copies of a test kept
    apart, so rules share them); compile Programs meant for classify that way too (shared tests
    run once per packet for all the rules that hold them).
    linktype: compile for this link type instead of each batch's own. order / default: the
    first-match order (rule names; rules left out never label a packet) and the label of packets
    no rule in the order accepts, used by .labels() and the CLI. packed: keep the matrix as
    np.packbits(matrix, axis=1). counts_only: keep no per-packet data (streams any file size).
    optimize / snaplen: for compiling expressions (optimize False: unoptimized). threads: split each large batch over this
    many threads (None: one per CPU), each running the engine without the GIL on its own rows.
    progress: True shows a progress bar on standard error (tqdm's when installed); a callable
    is called as progress(bytes_done, bytes_total, packets_done) after each batch (bytes_total
    is 0 when the source's size is not known beforehand).

    split: a path template containing {rule} ("out/{rule}.pcap", or .pcapng, optionally .gz,
    .zst, .xz, .bz2): every rule's matching packets go into its own file in the same pass, each
    file as `tcpdump -r IN -w FILE RULE` writes it; a packet goes into every rule it matches, or
    with first_match=True only into the first of `order`. unmatched: a file for the packets no
    rule (of `order`, with first_match) accepts. format: "pcap" or "pcapng" for those files
    (default: by name). truncate / dedup / rotate: as filter_file's (editcap -s, editcap -D,
    tcpdump -C/-G/-W), for each file. The files appear together when the pass ends. A damaged
    input or an interruption ends the pass there: the files then appear holding the packets
    before it, whole records, as filter_file keeps them (the exception's `partial`: their
    Classification); on any other error none of them does. Classification.write() writes them
    later from a finished result.

    Returns a Classification. A rule that has no meaning on a link type of the input (`ether
    host ...` on a NULL capture) matches no packet of that link type: a RuleLinkTypeWarning says
    so and the result's `inapplicable` lists it (with `linktype` given, it is an error instead).
    A damaged capture raises CaptureFormatError after the packets before the damage were
    classified; the exception's `partial` attribute is the Classification of those packets.
    With on_damage (a callable) a damaged capture's error is passed to it instead and the next
    capture is read, as filter_file's on_damage.
    Reading errors (a missing file) raise the matching OSError."""
    pairs = parse_rules(rules)
    names = [n for n, _ in pairs]
    if order is not None:
        if isinstance(order, str):
            raise FilterError(f"order: a list of rule names, not a string ({[order]!r} for one)")
        order = list(order)
        unknown = [o for o in order if o not in names]
        if unknown:
            raise FilterError(f"order names unknown rule(s): {', '.join(map(repr, unknown))}")
    if linktype is not None:
        from ..linktypes import linktype_number
        linktype = linktype_number(linktype)
    from ..backend import check, require_native
    check(backend)
    if backend == "native":
        require_native()
        if len(pairs) > 1:
            _native_classifier_for(required=True)     # refused before any output is created
    nr = len(pairs)
    width = (nr + 7) // 8 if packed else nr
    counts = np.zeros(nr, dtype=np.int64)
    nbytes = np.zeros(nr, dtype=np.int64)
    blocks, wirelens, stamps = [], [], []
    packets = total_bytes = matched = matched_bytes = 0
    keep_packed = packed or counts_only   # counts_only: a packed block, just for `matched`
    bwidth = (nr + 7) // 8 if keep_packed else nr
    threads = (os.cpu_count() or 1) if threads is None else threads
    if not isinstance(threads, int) or threads < 1:
        raise FilterError(f"threads must be a positive integer or None, not {threads!r}")
    items, size = _sources(source)
    ruleset = RuleSet(pairs, optimize, snaplen, forced_linktype=linktype is not None,
                      engine_for=lambda progs: engine_for(progs, backend, size or None))
    writing = split is not None or unmatched is not None
    if first_match and not writing:
        raise FilterError("first_match applies to split files: give split= or unmatched=")
    if not writing and (format is not None or truncate is not None or dedup or rotate is not None):
        raise FilterError("format, truncate, dedup and rotate apply to split files: give split= or unmatched=")
    from ..capture.split import SplitSink
    sink = SplitSink(items, names, order, split, first_match, unmatched, format, truncate, dedup,
                      rotate) if writing else None
    from .._progress import progress_callback
    report, close_progress = progress_callback(progress, size, "classify")

    def result():
        matrix = wirelen = timestamps = None
        if not counts_only:
            matrix = blocks[0] if len(blocks) == 1 else (np.concatenate(blocks) if blocks
                                                         else np.zeros((0, width), np.uint8))
            if not packed:
                matrix = matrix.view(bool)
            wirelen = np.concatenate(wirelens) if wirelens else np.zeros(0, np.uint32)
            timestamps = np.concatenate(stamps) if stamps else np.zeros(0, np.int64)
        res = Classification(names, [r for _, r in pairs], matrix, packed, counts.copy(), nbytes.copy(),
                             packets, total_bytes, matched, matched_bytes, wirelen, timestamps, order,
                             default)
        res.inapplicable = list(ruleset.inapplicable)
        return res

    pool = None
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(threads, thread_name_prefix="pfilter-classify")
    done = 0
    try:
        for batch, done in _iter_batches(items, sink.opened if sink is not None else None, on_damage):
            n = len(batch)
            out = np.zeros((n, bwidth), dtype=np.uint8)
            _run_batch(ruleset, batch, linktype, out, keep_packed, counts, nbytes, pool, threads)
            hit = _row_any(out)
            packets += n
            total_bytes += int(batch.wirelen.sum(dtype=np.int64))
            matched += np.count_nonzero(hit)
            matched_bytes += int(batch.wirelen.sum(dtype=np.int64, where=hit))
            if sink is not None:
                sink.write(batch, out, keep_packed)
            if on_block is not None:        # (the command's --labels, written as the pass goes)
                on_block(out)
            if not counts_only:
                blocks.append(out)
                # copies: a batch read for splitting lives only until the next one is read
                wirelens.append(batch.wirelen.copy() if sink is not None else batch.wirelen)
                stamps.append(batch.timestamps.copy() if sink is not None else batch.timestamps)
            if report is not None:
                report(done, size, packets)
        if report is not None:      # the batches' offsets are where their last packets start
            report(size or done, size, packets)
        if sink is not None:
            sink.commit()
    except (CaptureFormatError, KeyboardInterrupt) as err:
        # the packets before the damage are classified (and written, whole records, as
        # filter_file keeps them): the caller gets them with the error
        if sink is not None:
            sink.commit()
        err.partial = result()
        raise
    finally:
        if sink is not None:
            sink.abort()
        if pool is not None:
            pool.shutdown()
        close_progress()
    if not packets and ruleset.pairs and not ruleset._by_linktype:
        # nothing to read: still compile for the requested (or Ethernet) link type, so that a bad
        # rule is reported whatever the source
        ruleset.programs(1 if linktype is None else linktype)
    res = result()
    if sink is not None:
        res.files = sink.files()
    if isinstance(items, (list, tuple)) and all(isinstance(i, (str, os.PathLike)) for i in items):
        res.source = [os.fsdecode(i) for i in items]
    return res


#: batches of split runs: 16 rule files over 1 GB spent 0.77 s of user CPU in 4 MB batches,
