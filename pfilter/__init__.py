"""pfilter: tcpdump's filter language compiled to classic BPF and run at native speed over
batches of packets from pcap/pcapng files.

    prog = pfilter.compile("ip and tcp port 80")
    with pfilter.open("capture.pcap") as cap:
        for batch in cap:
            hits = prog.match_batch(batch)

This module only re-exports the public API (README.md describes it). Program and PacketBatch
are imported on first use, so that `import pfilter.cli` stays light until it needs numpy (the
command sets numpy's thread options before that).
"""
from __future__ import annotations

from .errors import CaptureFormatError, FilterError, FilterSyntaxError, InvalidProgramError

# The one place the version is written: the package metadata (pyproject.toml) reads it.
__version__ = "0.1.0"

__all__ = ["compile", "open", "write", "filter_file", "classify", "Program", "PacketBatch", "Capture",
           "Writer", "FilterStats", "Classification", "FilterError", "FilterSyntaxError",
           "InvalidProgramError", "CaptureFormatError", "RuleLinkTypeWarning", "__version__"]

# The classes below load on first use (numpy and the VM with them). Type checkers see them as
# plain imports; `typing` itself is not imported at run time, to keep the command's start fast.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, Literal, overload

    import numpy as np
    from numpy.typing import NDArray

    from ._typing import (CaptureFormat, InputArg, LinkTypeArg, OptimizeArg, PathArg, ProgressArg,
                          TsResolution)
    from .batch import PacketBatch
    from .capture.fastpath import FilterStats
    from .capture.output import Writer
    from .capture.reader import Capture
    from .classification import Classification, RuleLinkTypeWarning
    from .program import Program
else:
    def overload(func):
        """typing.overload's run-time effect: none (the last definition wins)."""
        return func

    _LAZY = {"Program": "program", "PacketBatch": "batch", "Capture": "capture.reader",
             "Writer": "capture.output", "FilterStats": "capture.fastpath",
             "Classification": "classification", "RuleLinkTypeWarning": "classification"}

    def __getattr__(name):
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'pfilter' has no attribute {name!r}")
        from importlib import import_module
        return getattr(import_module(f".{module}", __name__), name)

    def __dir__():
        return sorted(set(globals()) | set(_LAZY))


def compile(expr: str, linktype: LinkTypeArg = "EN10MB", snaplen: int = 262144,
            optimize: OptimizeArg = True, *, netmask: int | None = None, swapped: bool = False,
            savefile: bool = True, backend: Literal["vm", "native", "auto"] = "vm") -> Program:
    """Compile a pcap-filter expression into a validated Program (libpcap 1.10.3's meaning).

    linktype: the link type the packets have, a DLT name or number ("EN10MB", "RAW", 1, ...).
    snaplen: what the program returns for an accepted packet.
    optimize: True (smallest program), False, or "shareable" (optimized, but IPv4 and IPv6
    copies of a test kept apart: what pfilter.classify shares best across many rules).
    netmask: the IPv4 netmask `ip broadcast` needs (None: unknown, `ip broadcast` is an error;
    0 is what tcpdump uses when reading a file).
    swapped: the capture was written by a host of the other byte order (NULL and ENC headers
    then hold the address family in that order).
    savefile: False compiles as libpcap does without a capture file (`tcpdump -y DLT -d`).
    backend: what runs the Program's batches (pfilter.backend): "vm", "native" (machine code,
    the `native` extra) or "auto" (native code for large batches where llvmlite is installed).
    Raises FilterSyntaxError (with the position) or FilterError."""
    from .compiler.driver import compile_expression
    prog: Program = compile_expression(expr, linktype=linktype, snaplen=snaplen, optimize=optimize,
                                       netmask=netmask, swapped=swapped, savefile=savefile)
    return prog if backend == "vm" else prog.with_backend(backend)


@overload
def open(path: InputArg, mode: Literal["r", "rb"] = "r", *, batch_packets: int | None = None,
         batch_bytes: int | None = None, window_bytes: int | None = None,
         reuse_buffer: bool = False) -> Capture: ...
@overload
def open(path: PathArg, mode: Literal["w", "wb"], *, format: CaptureFormat | None = None,
         linktype: LinkTypeArg | None = None, snaplen: int | None = None,
         ts_resolution: TsResolution = "us") -> Writer: ...
def open(path: InputArg, mode: str = "r", *, batch_packets: int | None = None,
         batch_bytes: int | None = None, window_bytes: int | None = None, reuse_buffer: bool = False,
         format: CaptureFormat | None = None, linktype: LinkTypeArg | None = None,
         snaplen: int | None = None, ts_resolution: TsResolution | None = None) -> Capture | Writer:
    """Open a capture file to read (mode "r", the default) or to write (mode "w").

    Reading returns a Capture: a context manager and an iterator of PacketBatch. The format
    (pcap or pcapng) comes from the magic bytes; gzip, zstd, xz and bzip2 compression is
    undone on the fly. `path` is a file name, "-" (standard input) or a binary file object.
      batch_packets / batch_bytes: the most packets / packet bytes in one batch (None: the
      reader's defaults, which keep a batch's arrays in memory a few MB long).
      window_bytes: how much of the file is read (or mapped) at a time (None: the default).
      reuse_buffer: read every window into one reused buffer; each batch is then valid only
      until the next one is read.

    Writing returns a Writer: a context manager whose write(batch, index=None) appends packets
    and whose file appears at `path`, complete, when it closes without an exception (atomic;
    see pfilter.Writer).
      format: "pcap" or "pcapng" (None: pcapng for a .pcapng name, else pcap).
      linktype: DLT name or number (None: the first batch's).
      snaplen: the header's snapshot length (None: the link type's maximum).
      ts_resolution: "us" (default) or "ns".

    Missing or unreadable files raise the matching OSError (FileNotFoundError, ...); a damaged
    capture raises CaptureFormatError."""
    reading: dict[str, Any] = {"batch_packets": batch_packets, "batch_bytes": batch_bytes,
               "window_bytes": window_bytes, "reuse_buffer": reuse_buffer or None}
    writing: dict[str, Any] = {"format": format, "linktype": linktype, "snaplen": snaplen,
               "ts_resolution": ts_resolution}
    if mode in ("r", "rb"):
        _only_options(mode, writing)
        from .capture.reader import Capture
        return Capture(path, **{k: v for k, v in reading.items() if v is not None})
    if mode in ("w", "wb"):
        _only_options(mode, reading)
        if hasattr(path, "write") or hasattr(path, "read"):
            raise FilterError("pfilter.open(..., 'w') needs a file name or '-', not a file object")
        from .capture.output import Writer
        return Writer(path, format=format, linktype=linktype, snaplen=snaplen,
                      ts_resolution=ts_resolution or "us")
    raise FilterError(f"mode must be 'r' or 'w', not {mode!r}")


def _only_options(mode: str, others: Mapping[str, object]) -> None:
    given = [k for k, v in others.items() if v is not None]
    if given:
        raise FilterError(f"{', '.join(given)}: not an option of pfilter.open in mode {mode!r}")


def write(path: PathArg, batches: PacketBatch | Iterable[PacketBatch], *,
          format: CaptureFormat | None = None, linktype: LinkTypeArg | None = None,
          snaplen: int | None = None, ts_resolution: TsResolution | None = None) -> int:
    """Write every packet of `batches` into a new capture file at `path` (atomically: the file
    appears complete, or whatever was there stays); returns how many packets were written.

    batches: a PacketBatch, an iterable of them, or an open Capture (whose link type, snapshot
    length, timestamp resolution and pcapng interfaces are then the defaults; `path` may not be
    the capture's own file).
    format: "pcap" or "pcapng" (None: pcapng for a .pcapng name, else pcap).
    linktype: DLT name or number (None: the first batch's; EN10MB for no packets at all).
    snaplen: the header's snapshot length (None: the link type's maximum); longer packets are
    refused.
    ts_resolution: "us" or "ns" (None: "us", as tcpdump writes).

        with pfilter.open("big.pcap") as cap:
            pfilter.write("web.pcap", (b.select(prog.match_batch(b)) for b in cap))"""
    from .capture.output import write as _write
    return _write(path, batches, format=format, linktype=linktype, snaplen=snaplen,
                  ts_resolution=ts_resolution)


def filter_file(src: InputArg | Capture | Sequence[InputArg | Capture], dst: PathArg | None,
                expr: str | Program, *, linktype: LinkTypeArg | None = None,
                snaplen: int | None = None, count: int | None = None, optimize: OptimizeArg = True,
                progress: ProgressArg = None, format: CaptureFormat | None = None,
                ts_resolution: TsResolution | None = None, batch_packets: int | None = None,
                batch_bytes: int | None = None,
                on_batch: Callable[[PacketBatch, NDArray[np.int64]], object] | None = None,
                compiler: Callable[..., Program] | None = None, truncate: int | None = None,
                dedup: int | bool | None = None, rotate: Any = None,
                backend: Literal["vm", "native", "auto"] | None = None, workers: int | None = None,
                merge: bool = False, after: int | str | None = None,
                before: int | str | None = None, cache: bool = True,
                announce: Callable[[str, int, int, int], object] | None = None,
                on_damage: Callable[[CaptureFormatError], object] | None = None) -> FilterStats:
    """Copy the packets of capture(s) `src` that match `expr` into a new capture `dst`, as
    `tcpdump -r SRC -w DST EXPR` does (the same bytes, but for a nanosecond input's resolution,
    kept unless ts_resolution="us": tcpdump writes microseconds); returns a FilterStats.

    src: a file name, "-" (standard input), a binary file object, an open Capture, or a list of
    them (read in order into one output).
    dst: a file name, "-" (standard output), or None to count without writing. The output is
    atomic and never one of the inputs.
    expr: a pcap-filter expression (compiled for each input's link type) or a Program.
    linktype / snaplen: compile for this link type / snapshot length instead of the capture's
    (like tcpdump -y / -s).
    count: stop after this many matching packets (tcpdump -c).
    optimize: as for pfilter.compile.
    progress: True shows a progress bar on standard error (tqdm's when installed); a callable
    is called as progress(bytes_done, bytes_total, stats) as the pass goes on.
    format: "pcap" or "pcapng" (None: from dst's name, else pcap).
    ts_resolution: "us" or "ns" for pcap output (None: the input's; several: "ns" when any
    input has nanoseconds).
    batch_packets / batch_bytes: batch size limits (None: the defaults, sized for the CPU cache).
    on_batch: called as on_batch(batch, indices) with the matched packets of each batch; the
    batch's data may be reused once it returns (copy what must outlive it).
    compiler: called like pfilter.compile to make each link type's Program.
    cache: without a compiler, compile through the on-disk program cache
    ($XDG_CACHE_HOME/pfilter, pfilter.compiler.cache; PFILTER_NO_CACHE=1 turns it off): the
    same programs, and a repeated expression skips the compiler. False: pfilter.compile.
    truncate: cut written packets to this many bytes, wire length kept (editcap -s).
    dedup: drop a packet equal to one of the W - 1 before it (editcap -D W; True: W = 5).
    rotate: tcpdump's -C/-G/-W as pfilter.capture.rotate.Rotation(size=BYTES, seconds=S,
    files=W) or a dict of those; the files are named from dst as tcpdump names them.
    A dst ending in .gz, .zst, .xz or .bz2 is compressed (.zst needs the zstd extra).
    backend: "vm", "native" or "auto" (as for pfilter.compile; None: a Program's own, else "vm").
    workers: threads sharing the work (the parts of one pcap file, or several files counted at
    a time; None: the usable cores); the output does not depend on it.
    merge: several inputs in timestamp order, as mergecap (else concatenated in order).
    after / before: only packets with after <= timestamp < before (editcap -A / -B), as ns
    since 1970 or text (epoch seconds with a fraction, ISO 8601); a sorted pcap input finds the
    window through its index (pfilter.capture.index) without reading the rest.
    announce: called as announce(path, linktype, snaplen, index) as the index-th input is
    opened, before its packets (every input's at once when several are counted in parallel):
    where `pfilter -r` prints tcpdump's "reading from file" line.
    on_damage: called as on_damage(error) with the CaptureFormatError of a damaged input of a
    concatenation instead of raising it: that input ends at its damage and the inputs after it
    are read, as `tcpdump -V` reads on (with merge, the error ends the run, as in mergecap).

    A damaged input raises CaptureFormatError after the packets before the damage were written
    and the output committed (as tcpdump leaves them); so does an interruption
    (KeyboardInterrupt: Ctrl-C, or one raised by a callback), which keeps the whole packets
    written so far as a valid capture at `dst`, as tcpdump does (pfilter.open(..., "w") and
    pfilter.write leave `dst` as it was instead). Either exception carries the stats as `.stats`.
    Any other exception, from a callback too, leaves `dst` as it was. File-system failures raise
    the matching OSError (FileNotFoundError, ...)."""
    from .capture.filterfile import filter_file as _filter_file
    extra = {} if batch_bytes is None else {"batch_bytes": batch_bytes}
    stats: FilterStats = _filter_file(src, dst, expr, linktype=linktype, snaplen=snaplen, count=count,
                                      optimize=optimize, progress=progress, format=format,
                                      ts_resolution=ts_resolution, batch_packets=batch_packets,
                                      on_batch=on_batch, compiler=compiler, truncate=truncate,
                                      dedup=dedup, rotate=rotate, backend=backend, workers=workers,
                                      merge=merge, after=after, before=before, cache=cache,
                                      announce=announce, on_damage=on_damage, **extra)
    return stats


def classify(source: PathArg | PacketBatch | Iterable[PathArg | PacketBatch],
             rules: Mapping[str, str | Program] | Iterable[str | Program] | PathArg, *,
             linktype: LinkTypeArg | None = None, order: Sequence[str] | None = None,
             default: str | None = None, packed: bool = False, counts_only: bool = False,
             optimize: bool = True, snaplen: int = 262144, threads: int | None = 1,
             progress: ProgressArg = None, split: PathArg | None = None, first_match: bool = False,
             unmatched: PathArg | None = None, format: CaptureFormat | None = None,
             truncate: int | None = None, dedup: int | bool | None = None,
             rotate: Any = None, backend: Literal["vm", "native", "auto"] = "vm",
             on_damage: Callable[[CaptureFormatError], object] | None = None,
             on_block: Callable[[Any], object] | None = None) -> Classification:
    """Evaluate many named filters over every packet of `source` in one pass; returns a
    Classification (per-rule counts and bytes, the packets x rules matrix, labels).

    source: a capture file name (or a list of them, read with pfilter.open), a PacketBatch, or
    an iterable of batches.
    rules: a mapping name -> expression (or Program), a list of expressions (each its own
    name), or the file name of a rules file (`name: expression` lines, `#` comments).
    Expressions are compiled with optimize="shareable" (IPv4 and IPv6 copies of a test kept
    apart, so that rules share them); compile Programs meant for classify that way too.
    linktype: compile for this link type instead of each batch's own.
    order / default: the first-match order (rule names; rules left out never label a packet)
    and the label of packets no rule in the order accepts, used by .labels().
    packed: keep the matrix as np.packbits(matrix, axis=1).
    counts_only: keep no per-packet data (streams captures of any size).
    optimize / snaplen: for compiling expressions (optimize False: unoptimized).
    threads: split each large batch over this many threads (None: one per CPU).
    progress: True shows a progress bar on standard error (tqdm's when installed); a callable
    is called as progress(bytes_done, bytes_total, packets_done) after each batch (bytes_total
    is 0 when the source's size is not known beforehand).
    split: a file name template with {rule} ("out/{rule}.pcap"): each rule's packets into its
    own file in the same pass, as `tcpdump -r SRC -w FILE RULE` writes it (first_match: only
    into the first rule of `order` that matches); unmatched: a file for the packets no rule
    accepts; format / truncate / dedup / rotate: as filter_file's. The files appear together
    at the end; a damaged input or an interruption ends the pass there and they hold the
    packets before it (whole records, as filter_file keeps them); on any other error none
    appears. Classification.write() does the same from a result.

    A rule that has no meaning on a link type of the input (`ether host ...` on a NULL capture)
    matches no packet of that link type: a RuleLinkTypeWarning says so and the result's
    `inapplicable` lists it (with `linktype` given, it is an error instead). A damaged capture
    raises CaptureFormatError after the packets before the damage were classified; its
    `partial` attribute is the Classification of those packets; with on_damage (a callable)
    the error is passed to it instead and the next capture read (as filter_file's on_damage).
    File-system failures raise the matching OSError.
    on_block: called with each batch's rows of the packets x rules matrix as the pass goes
    (numpy uint8, packbits rows when packed or counts_only, else 0/1 bytes), in input order:
    with counts_only=True, per-packet results streamed with no matrix kept (the command's
    --labels; pfilter.classification.result.block_codes gives a block's first-match codes).
    backend: "vm", "native" or "auto" (pfilter.backend): a rule set runs the shared-test engine
    (pfilter._classify) under "vm", its native code (pfilter.native.classifier_for) under
    "native", and under "auto" native code for large inputs where llvmlite is installed; a single
    rule runs as its own Program with that backend. "native" raises NativeUnavailableError when
    native code is not available."""
    from .classification import classify as _classify
    result: Classification = _classify(source, rules, linktype=linktype, order=order, default=default,
                                       packed=packed, counts_only=counts_only, optimize=optimize,
                                       snaplen=snaplen, threads=threads, progress=progress,
                                       split=split, first_match=first_match, unmatched=unmatched,
                                       format=format, truncate=truncate, dedup=dedup, rotate=rotate,
                                       backend=backend, on_damage=on_damage, on_block=on_block)
    return result
