"""Why a filter accepted or rejected a packet, in the terms of its expression.

Imports pfilter.errors, pfilter.program, pfilter.trace, pfilter.compiler (driver and parser) and,
for the packet's one-line summary, pfilter.display.

How the deciding primitive is found: the expression is compiled again without the optimizer and
with provenance (pfilter.compiler.driver.compile_with_origins), so that every instruction comes
from exactly one primitive, in the order the expression evaluates them (and/or short-circuit left
to right, as libpcap lays the code out). The last instruction executed on the packet that has an
origin belongs to the primitive that decided: its own verdict passes unchanged through every
`and`/`or` above it and is inverted by every `not`, unless one of its loads ran past the
captured bytes, which rejects the packet whatever surrounds it (libpcap's bpf_filter()). The
verdict itself is the program's own (the optimized and unoptimized programs agree on every
packet; the test suite checks both).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .batch import packet_bytes
from .errors import FilterError
from ._argparse import capture_parser, parse
from .trace import Step, Trace, load_range, trace

if TYPE_CHECKING:
    from .program import Program

__all__ = ["Explanation", "explain", "primitives", "unoptimized"]


@dataclass(frozen=True)
class Explanation:
    """`verdict`: the expression's (the program accepted the packet); `span`: (start, end) of the
    primitive that decided, in `expression` (None when no primitive did: the empty expression);
    `primitive_verdict`: that primitive's own verdict on the packet; `reason`: what it saw."""

    expression: str
    verdict: bool
    result: int
    span: tuple[int, int] | None
    primitive_verdict: bool | None
    reason: str
    aborted: bool = False
    summary: str = ""

    @property
    def primitive(self) -> str:
        return "" if self.span is None else self.expression[self.span[0]:self.span[1]]

    def headline(self) -> str:
        """`no: `tcp port 80`: TCP ports 51234 -> 443, neither is 80`."""
        word = "yes" if self.verdict else "no"
        if self.span is None:
            return f"{word}: {self.reason}"
        return f"{word}: `{self.primitive}`: {self.reason}"

    def caret(self) -> str:
        """The expression, and a line of carets under the deciding primitive."""
        if self.span is None:
            return self.expression
        start, end = self.span
        return f"{self.expression}\n{' ' * start}{'^' * max(1, end - start)}"

    def __str__(self) -> str:
        return self.headline() + "\n" + _indent(self.caret())


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@lru_cache(maxsize=256)
def _unoptimized_cached(compiled: tuple[Any, ...]) -> tuple[Program, tuple[frozenset[tuple[int, int]], ...]]:
    from .compiler.driver import compile_with_origins
    from .program import Program
    from .validate import COMPILED_MAX_INSNS
    expr, dlt, snaplen, _optimize, netmask, swapped, savefile = compiled
    tuples, origins = compile_with_origins(expr, dlt, snaplen, False, netmask, swapped, savefile)
    prog = Program.from_tuples(tuples, linktype=dlt, snaplen=snaplen, source=expr, max_insns=COMPILED_MAX_INSNS)
    return prog, tuple(origins)


def unoptimized(prog: Program) -> tuple[Program, tuple[frozenset[tuple[int, int]], ...]]:
    """The program compiled from prog's expression without the optimizer, and its instructions'
    origins (each a frozenset holding one span, or none)."""
    if prog._compiled is None:
        raise FilterError("explain needs a program compiled from an expression (pfilter.compile)")
    return _unoptimized_cached(prog._compiled)


def origins(prog: Program) -> tuple[frozenset[tuple[int, int]], ...] | None:
    """Per instruction of prog, the source spans of the primitives it came from (None for a
    program not compiled from an expression)."""
    if prog._compiled is None:
        return None
    if prog._origins is None:
        from .compiler.driver import compile_with_origins
        expr, dlt, snaplen, optimize, netmask, swapped, savefile = prog._compiled
        tuples, found = compile_with_origins(expr, dlt, snaplen, optimize, netmask, swapped, savefile)
        if [tuple(t) for t in tuples] != prog._tuples:
            raise FilterError("internal error: compiling with provenance changed the program")
        prog._origins = tuple(found)
    return prog._origins  # type: ignore[no-any-return]


def primitives(expression: str) -> list[tuple[tuple[int, int], bool]]:
    """The primitives of an expression in source order: (span, negated), where negated says an
    odd number of `not`s stand above it."""
    from .compiler import ast as A
    from .compiler.parser import parse
    if not expression.strip():
        return []
    out = []
    stack: list[tuple[Any, bool]] = [(parse(expression), False)]
    while stack:
        node, neg = stack.pop()
        if isinstance(node, (A.And, A.Or)):
            stack.append((node.right, neg))
            stack.append((node.left, neg))
        elif isinstance(node, A.Not):
            stack.append((node.operand, not neg))
        else:
            out.append(((node.pos, node.end), neg))
    out.sort()
    return out


def explain(prog: Program, packet: Any, wirelen: int | None = None) -> Explanation:
    """Why `prog` (compiled from an expression) accepts or rejects one packet."""
    pkt = packet_bytes(packet)
    result = prog.run(pkt, wirelen)
    expr = prog.source or ""
    plain, orig = unoptimized(prog)
    t = trace(plain, pkt, wirelen)
    summary = _summary(prog, pkt, wirelen)
    decider = None
    for step in reversed(t.steps):
        if orig[step.pc]:
            decider = step
            break
    if decider is None:
        reason = "the empty filter accepts every packet" if result else "the filter rejects every packet"
        return Explanation(expr, result != 0, result, None, None, reason, summary=summary)
    span = min(orig[decider.pc])
    last = t.steps[-1]
    aborted = last.past_end or (last.insn[0] not in (0x06, 0x16))
    if aborted:
        pverdict = False
        reason = _abort_reason(last, len(pkt))
    else:
        negated = dict(primitives(expr)).get(span, False)
        pverdict = (result != 0) != negated
        mine = {i for i, s in enumerate(t.steps) if span in orig[s.pc]}
        reason = _reason(expr, span, pverdict, mine, t)
    return Explanation(expr, result != 0, result, span, pverdict, reason, aborted, summary)


def _summary(prog: Program, pkt: bytes, wirelen: int | None) -> str:
    if prog.linktype is None:
        return ""
    try:
        from .display import describe
        return str(describe(pkt, prog.linktype, wirelen))
    except Exception:   # a summary is a courtesy: a packet it cannot print still gets explained
        return ""


def _abort_reason(last: Step, caplen: int) -> str:
    if last.past_end:
        rng = load_range(last.insn, last.x_before)
        assert rng is not None
        off, size = rng
        return (f"reads bytes {off}..{off + size - 1} but the packet has {caplen} captured: "
                "a load past the end rejects the packet")
    if last.insn[0] == 0x05:
        return "the header loop ran past its budget: the packet is rejected"
    return "divides by zero: the packet is rejected"


def _field(t: Trace, upto: int) -> str:
    """What A holds before step `upto`, in packet terms: the bytes the last load read, and the
    operations applied to them since (`[23:1]`, `[20:2] & 0x1fff`, `len`)."""
    ops: list[str] = []
    for s in reversed(t.steps[:upto]):
        code, _jt, _jf, k = s.insn
        rng = load_range(s.insn, s.x_before)
        if rng is not None and code != 0xB1:
            base = f"[{rng[0]}:{rng[1]}]"
            break
        if code in (0x80, 0x81):
            base = "len"
            break
        if code & 0x07 == 0x04 and not code & 0x08:
            name = {0x50: "&", 0x40: "|", 0x00: "+", 0x10: "-", 0x20: "*", 0x30: "/", 0x60: "<<",
                    0x70: ">>", 0xA0: "^", 0x90: "%"}.get(code & 0xF0)
            if name is None:
                return "A"
            ops.append(f" {name} 0x{k:x}")
            continue
        if code in (0x02, 0x03) or code & 0x07 == 0x05:
            continue
        return "A"
    else:
        return "A"
    return base + "".join(reversed(ops))


def _reason(expr: str, span: tuple[int, int], verdict: bool, mine: set[int], t: Trace) -> str:
    """The primitive's tests on this packet, in words."""
    from .compiler import ast as A
    from .compiler.parser import parse
    tests = [(i, s) for i, s in enumerate(t.steps) if s.branch is not None and i in mine]
    node = _find(parse(expr), span, A)
    word = "matches" if verdict else "does not match"
    if not tests:
        return word
    kind = getattr(getattr(node, "quals", None), "kind", None)
    value = getattr(node, "value", None)
    proto = (getattr(getattr(node, "quals", None), "proto", None) or "").upper()
    last_i, last = tests[-1]
    k = last.insn[3]
    wanted = None
    if kind in ("port", "portrange") and isinstance(value, int):
        wanted = value
    elif kind in ("port", "portrange") and isinstance(value, tuple) and str(value[0]).isdigit():
        wanted = int(value[0])
    elif kind == "host" and getattr(node, "value_kind", "") == "ipv4" and str(value).count(".") == 3:
        parts = [int(v) for v in str(value).split(".")]
        wanted = parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3]
    if wanted is not None and k == wanted and not last.insn[0] & 0x08:
        same = [s for _, s in tests if s.insn[3] == k and s.insn[0] == last.insn[0]]
        if kind == "host":
            vals = [_ip4(s.a_before) for s in same]
            target = _ip4(k)
            what = "addresses"
        else:
            vals = [str(s.a_before) for s in same]
            target = str(value[0] if kind == "portrange" and isinstance(value, tuple) else value)
            what = f"{proto + ' ' if proto else ''}ports"
        if len(same) >= 2 and not verdict:
            return f"{what} {' -> '.join(vals)}, neither is {target}"
        if len(same) >= 2 and verdict:
            return f"{what} {' -> '.join(vals)}, one is {target}"
        if len(same) == 1 and verdict:
            return f"{what[:-2] if what.endswith('es') else what[:-1]} {vals[0]} is {target}"
    field = _field(t, last_i)
    rhs = f"0x{last.x_before:x} (X)" if last.insn[0] & 0x08 else f"0x{last.insn[3]:x}"
    op = last.insn[0] & 0xF0
    a = last.a_before
    if last.insn[0] == 0x15 and not last.branch and not verdict:
        # every `jeq #k` of the primitive that failed, those on the same value grouped
        fails: list[tuple[str, int, list[str]]] = []
        for i, s in tests:
            if s.insn[0] != 0x15 or s.branch:
                continue
            f = _field(t, i)
            kk = f"0x{s.insn[3]:x}"
            if fails and fails[-1][0] == f and fails[-1][1] == s.a_before:
                if kk not in fails[-1][2]:
                    fails[-1][2].append(kk)
            else:
                fails.append((f, s.a_before, [kk]))
        return f"{word}: " + "; ".join(f"{f} = 0x{v:x} is {'not' if len(ks) == 1 else 'none of'} {', '.join(ks)}"
                                       for f, v, ks in fails)
    if op == 0x10:
        rel = "is" if last.branch else "is not"
    elif op == 0x20:
        rel = ">" if last.branch else "is not >"
    elif op == 0x30:
        rel = ">=" if last.branch else "<"
    else:
        rel = "has bits of" if last.branch else "has none of the bits"
    return f"{word}: {field} = 0x{a:x} {rel} {rhs}"


def _ip4(v: int) -> str:
    return ".".join(str(v >> s & 0xFF) for s in (24, 16, 8, 0))


def _find(root: Any, span: tuple[int, int], A: Any) -> Any:
    stack = [root]
    while stack:
        node = stack.pop()
        if (node.pos, node.end) == span and not isinstance(node, (A.And, A.Or, A.Not)):
            return node
        for name in ("left", "right", "operand"):
            child = getattr(node, name, None)
            if child is not None and hasattr(child, "pos"):
                stack.append(child)
    return None


# ---------------------------------------------------------------------------- the command

def _parser() -> Any:
    ap = capture_parser("pfilter explain",
                        "Say why the filter accepts or rejects packets of a capture, in the expression's "
                        "terms: the verdict, the primitive that decided with a caret under it, and what it "
                        "saw in the packet (the expression compiled for the capture's link type).",
                        "explain at most N packets (after --matched/--unmatched)")
    ap.add_argument("--packet", type=int, default=None, metavar="I",
                    help="explain only packet I (1 is the first, as tcpdump -# numbers them)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--matched", action="store_true", help="only the packets the filter accepts")
    which.add_argument("--unmatched", action="store_true", help="only the packets the filter rejects")
    ap.add_argument("expression", nargs="+", metavar="EXPR", help="the filter expression")
    return ap


def packets(path: str) -> Any:
    """(number from 1, packet bytes, wire length, link type) for every packet of a capture."""
    from . import open as _open
    with _open(path) as cap:
        yield from _numbered(cap)


def _numbered(cap: Any) -> Any:
    n = 0
    for batch in cap:
        for i in range(len(batch)):
            n += 1
            yield n, batch.packet(i), int(batch.wirelen[i]), batch.linktype_of(i)


class _OutputError(Exception):
    """A write to standard output failed (not a closed pipe): said as such, not as the input."""

    def __init__(self, err: OSError) -> None:
        super().__init__(err.strerror or str(err))


def _write(out: Any, text: str, flush: bool = False) -> None:
    """Write to standard output. A closed pipe (BrokenPipeError) goes up to pfilter.cli.main,
    which ends quietly with the status of every command (pfilter._signals.BROKEN_PIPE_STATUS);
    any other failure (`> /dev/full`) is an _OutputError naming standard output."""
    try:
        out.write(text)
        if flush:
            out.flush()
    except BrokenPipeError:
        raise
    except OSError as e:
        raise _OutputError(e) from None


def cli_main(argv: list[str]) -> int:
    """`pfilter explain -r FILE [-c N] [--packet I] EXPR`."""
    import sys

    from . import compile as _compile
    from . import open as _open
    from .cli import _fail, _one_line
    from .compiler.parser import parse as _parse_expression
    args = parse(_parser(), argv)
    if args is None:
        return 1
    if args.packet is not None and args.packet < 1:
        return _fail("--packet counts from 1")
    expr = " ".join(args.expression)
    progs: dict[int, Any] = {}
    shown = 0
    out = sys.stdout
    try:
        with _open(args.read) as cap:
            # the expression is compiled per link type when a packet of it comes; its syntax is
            # checked now (once the input is open, as tcpdump), so that an error is said even
            # when no packet is read (an empty capture, -c 0)
            _parse_expression(expr)
            for n, pkt, wl, lt in _numbered(cap):
                if args.packet is not None and n != args.packet:
                    if n > args.packet:
                        break
                    continue
                if args.count is not None and shown >= args.count:
                    break
                prog = progs.get(lt)
                if prog is None:
                    prog = progs[lt] = _compile(expr, linktype=lt)
                x = explain(prog, pkt, wl)
                if (args.matched and not x.verdict) or (args.unmatched and x.verdict):
                    continue
                shown += 1
                _write(out, f"packet {n}" + (f": {x.summary}" if x.summary else "") + "\n" + str(x) + "\n")
        if args.packet is not None and shown == 0 and not (args.matched or args.unmatched):
            return _fail(f"{args.read}: no packet {args.packet}")
        _write(out, "", flush=True)
    except BrokenPipeError:
        raise                         # pfilter.cli.main: a closed standard output ends quietly
    except _OutputError as e:
        return _fail(f"standard output: {e}")
    except ValueError as e:
        return _fail(_one_line(e))
    except OSError as e:
        return _fail(f"{e.filename or args.read}: {e.strerror or e}")
    return 0
