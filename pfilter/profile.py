"""Profiles, as perf does for code: how often each instruction of a program ran over a whole
capture, and how much of that each primitive of the expression accounts for.

Imports pfilter.errors, pfilter.program, pfilter.capture (pfilter.open) and pfilter.explain
(for provenance). The counts come from the VM itself in batch mode: pfilter/_vm.pyx
`profile_batch` is the batch loop compiled with a per-instruction counter (fused pairs and
JEQ_RUN scans counted as the instructions they stand for), releasing the GIL like run_batch;
the pure-Python VM counts from its trace rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import FilterError
from ._argparse import capture_parser, parse

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .batch import PacketBatch
    from .program import Program

__all__ = ["Profile", "profile_batch", "profile_file"]

#: a line of the listing whose count is at least this share of the busiest one is marked hot
HOT_SHARE = 0.5


@dataclass
class Profile:
    """`hits[i]`: how often instruction i ran; `packets`, `matched`: over how many packets, and
    how many the program accepted."""

    program: Program
    hits: NDArray[np.uint64]
    packets: int = 0
    matched: int = 0

    def add(self, other: Profile) -> None:
        self.hits += other.hits
        self.packets += other.packets
        self.matched += other.matched

    @property
    def executed(self) -> int:
        return int(self.hits.sum())

    def per_primitive(self) -> list[tuple[tuple[int, int] | None, int, int]]:
        """(span, instructions run, packets that entered it) per primitive, in source order;
        span None gathers the instructions of no primitive (the final `ret`s). An instruction
        shared by several primitives counts for each of them; the packets that entered a
        primitive are the runs of its most-run instruction."""
        origins = self.program.origins
        if origins is None:
            return []
        runs: dict[Any, int] = {}
        entered: dict[Any, int] = {}
        for i, spans in enumerate(origins):
            h = int(self.hits[i])
            for span in (spans or (None,)):
                runs[span] = runs.get(span, 0) + h
                entered[span] = max(entered.get(span, 0), h)
        keys = sorted((s for s in runs if s is not None)) + ([None] if None in runs else [])
        return [(s, runs[s], entered[s]) for s in keys]

    def report(self, title: str = "") -> str:
        """The `-d` listing with each instruction's count, share and hot marks, then the table per
        primitive."""
        from .program import image
        expr = self.program.source or ""
        total = max(self.executed, 1)
        top = max(int(self.hits.max()) if len(self.hits) else 0, 1)
        origins = self.program.origins
        lines = [f"# {title}{': ' if title else ''}{self.packets} packets, {self.matched} matched, "
                 f"{self.executed} instructions run ({self.executed / max(self.packets, 1):.2f} per packet)",
                 f"# {'count':>12} {'share':>6}  instruction"]
        for i, insn in enumerate(self.program.to_tuples()):
            h = int(self.hits[i])
            hot = "*" if h and h >= HOT_SHARE * top else " "
            bar = "#" * int(round(10 * h / top))
            where = ""
            if origins is not None and origins[i]:
                where = "  " + ", ".join(f"`{expr[a:b]}`" for a, b in sorted(origins[i]))
            text = image(insn, i).replace("\t", " ")
            lines.append(f"{hot} {h:>12} {100 * h / total:5.1f}%  {text:<44} {bar:<10}{where}")
        table = self.per_primitive()
        if table:
            lines.append("")
            lines.append(f"# {'instructions':>12} {'share':>6} {'packets':>12}  primitive")
            for span, runs, entered in table:
                name = f"`{expr[span[0]:span[1]]}`" if span is not None else "(returns)"
                lines.append(f"  {runs:>12} {100 * runs / total:5.1f}% {entered:>12}  {name}")
        return "\n".join(lines) + "\n"


def profile_batch(prog: Program, batch: PacketBatch) -> Profile:
    """The Profile of prog over one PacketBatch."""
    from . import program as _program
    from .batch import PacketBatch
    from .trace import trace_rows
    if not isinstance(batch, PacketBatch):
        raise FilterError(f"profile needs a PacketBatch, not {type(batch).__name__}")
    data, offsets, caplen, wirelen = batch.native_arrays()
    n = len(offsets)
    hits = np.zeros(len(prog), dtype=np.uint64)
    out = np.empty(n, dtype=np.uint32)
    cvm = _program._cvm
    if cvm is not None and prog._decoded is not None:
        bad = cvm.profile_batch(prog._decoded, data, offsets, caplen, wirelen, hits, out)
        if bad >= 0:
            raise batch.bounds_error(bad)
    else:
        batch.check()
        for i in range(n):
            result, rows = trace_rows(prog, batch.packet(i), int(wirelen[i]), "python")
            out[i] = result
            for pc, _a, _x in rows:
                hits[pc] += 1
    return Profile(prog, hits, n, int(np.count_nonzero(out)))


def profile_file(expression: str, path: str, count: int | None = None, optimize: bool = True) -> Profile:
    """The Profile of `expression` (compiled for the capture's link type) over a capture file,
    or its first `count` packets."""
    from . import compile as _compile
    from . import open as _open
    prof = None
    seen = 0
    with _open(path) as cap:
        for batch in cap:
            if count is not None and seen >= count:
                break
            if count is not None and seen + len(batch) > count:
                batch = batch.select(np.arange(len(batch)) < count - seen)
            if batch.linktypes is not None and len(set(batch.linktypes.tolist())) > 1:
                raise FilterError("profile needs a capture of one link type (this pcapng mixes several)")
            lt = batch.linktype if batch.linktypes is None or not len(batch) else int(batch.linktypes[0])
            if prof is None:
                prog = _compile(expression, linktype=lt, optimize=optimize)
                prof = Profile(prog, np.zeros(len(prog), dtype=np.uint64))
            elif lt != prof.program.linktype:
                raise FilterError("profile needs a capture of one link type")
            prof.add(profile_batch(prof.program, batch))
            seen += len(batch)
    if prof is None:
        prog = _compile(expression, optimize=optimize)
        prof = Profile(prog, np.zeros(len(prog), dtype=np.uint64))
    return prof


# ---------------------------------------------------------------------------- the command

def _parser() -> Any:
    ap = capture_parser("pfilter profile",
                        "Count, per instruction and per primitive of the expression, how often the filter's "
                        "program ran it over a whole capture (the VM's batch loop with a counter), and print "
                        "the -d listing with the counts, the hot instructions marked with *.",
                        "only the first N packets")
    ap.add_argument("-O", dest="no_optimize", action="store_true", help="profile the unoptimized program")
    ap.add_argument("expression", nargs="+", metavar="EXPR", help="the filter expression")
    return ap


def cli_main(argv: list[str]) -> int:
    """`pfilter profile -r FILE EXPR`."""
    import sys

    from .cli import _fail, _one_line
    args = parse(_parser(), argv)
    if args is None:
        return 1
    expr = " ".join(args.expression)
    try:
        prof = profile_file(expr, args.read, args.count, optimize=not args.no_optimize)
    except ValueError as e:
        return _fail(_one_line(e))
    except OSError as e:
        return _fail(f"{e.filename or args.read}: {e.strerror or e}")
    sys.stdout.write(prof.report(f"`{expr}` over {args.read}"))
    sys.stdout.flush()
    return 0
