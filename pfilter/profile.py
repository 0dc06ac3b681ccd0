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

    def per_primitive(self) -> list[tuple[tuple[int, int] | None, int, int | None]]:
        """(span, instructions run, packets that entered it) per primitive, in source order;
        span None gathers the instructions of no primitive (the final `ret`s: the packets that
        entered them are those that reached a `ret`, not rejected by a load past the end). An
        instruction shared by several primitives counts for each of them. A packet entered a
        primitive when it ran any of its instructions: the runs of its instructions reached
        from outside it (_entered); None where the counts cannot tell that exactly."""
        origins = self.program.origins
        if origins is None:
            return []
        runs: dict[Any, int] = {}
        members: dict[Any, set[int]] = {}
        for i, spans in enumerate(origins):
            h = int(self.hits[i])
            for span in (spans or (None,)):
                runs[span] = runs.get(span, 0) + h
                members.setdefault(span, set()).add(i)
        keys = sorted((s for s in runs if s is not None)) + ([None] if None in runs else [])
        tuples = self.program.to_tuples()
        return [(s, runs[s], _entered(tuples, self.hits, members[s])) for s in keys]

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
                shown = "-" if entered is None else entered
                lines.append(f"  {runs:>12} {100 * runs / total:5.1f}% {shown:>12}  {name}")
            if any(e is None for _, _, e in table):
                lines.append("# packets: how many ran any of its instructions; -: the counts cannot tell")
        return "\n".join(lines) + "\n"


def _successors(insn: tuple[int, int, int, int], pc: int) -> tuple[int, ...]:
    code, jt, jf, k = insn
    if code & 0x07 == 0x06:                           # ret
        return ()
    if code & 0x07 == 0x05:
        return (pc + 1 + k,) if code == 0x05 else (pc + 1 + jt, pc + 1 + jf)
    return (pc + 1,)


def _cannot_abort(code: int) -> bool:
    """An instruction that always goes on to the next one: no packet load (which ends the run
    past the captured bytes), no division or modulo (which ends it dividing by zero)."""
    cls = code & 0x07
    if cls in (0x00, 0x01):                           # ld, ldx: immediate, length, M[] only
        return code & 0xE0 in (0x00, 0x60, 0x80)
    if cls == 0x04:                                   # alu
        return code & 0xF0 not in (0x30, 0x90)
    return cls in (0x02, 0x03, 0x07)                  # st, stx, tax/txa


def _entered(tuples: list[tuple[int, int, int, int]], hits: Any, group: set[int]) -> int | None:
    """How many packets ran at least one instruction of `group`, from the per-instruction counts:
    the runs that came into the group from outside it (pc 0 included). Every instruction runs at
    most once per packet (jumps go forward) and, when no path leaves the group and comes back,
    each packet enters it at most once; an instruction reached both from inside the group and
    from outside counts the runs of the outside edges, each known from the counts when its
    target has no other predecessor, when it is the other branch of such a jump, or when its
    source cannot end the run. None when any of that does not hold."""
    n = len(tuples)
    if any(t[0] == 0x05 and t[3] & 0x80000000 for t in tuples):
        return None                                   # a loop (backward ja): counts are not packets
    preds: list[set[int]] = [set() for _ in range(n)]
    for pc, insn in enumerate(tuples):
        for t in _successors(insn, pc):
            if t < n:
                preds[t].add(pc)

    def edge(src: int, dst: int) -> int | None:
        if preds[dst] == {src}:
            return int(hits[dst])
        code, jt, jf, _k = tuples[src]
        if code & 0x07 == 0x05 and code != 0x05 and jt != jf:
            other = src + 1 + (jf if src + 1 + jt == dst else jt)
            return int(hits[src]) - int(hits[other]) if preds[other] == {src} else None
        if code & 0x07 == 0x05 or _cannot_abort(code):
            return int(hits[src])
        return None

    # a path out of the group and back into it: a packet may enter it twice
    stack = [t for pc in group for t in _successors(tuples[pc], pc) if t < n and t not in group]
    seen: set[int] = set()
    while stack:
        pc = stack.pop()
        if pc in seen:
            continue
        seen.add(pc)
        for t in _successors(tuples[pc], pc):
            if t in group:
                return None
            if t < n:
                stack.append(t)
    total = 0
    for pc in group:
        outside = preds[pc] - group
        if outside == preds[pc]:
            total += int(hits[pc])                    # entered here only (pc 0 has no predecessor)
            continue
        for src in outside:
            e = edge(src, pc)
            if e is None:
                return None
            total += e
    return total


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
