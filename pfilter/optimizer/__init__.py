"""The cBPF optimizer: a program in, an equivalent (usually smaller, faster) program out.

Imports pfilter.opcodes and its own modules only; the compiler driver calls it, and it works
on any valid cBPF program (ours, libpcap's, hand-written).

    build graph (cfg.py) -> PASSES (but merge_identical), repeated until none changes anything
        -> exit_early (shorter paths for long test chains; once) -> PASSES to their fixpoint
        -> order_dispatch (common packets first; once) -> PASSES again if it swapped
        -> split_sets (long jeq chains become a search over sorted constants; once)
        -> PASSES again if a chain turned out to decide nothing
        -> merge_rebased (IPv6 tails into their IPv4 twins; repeated, then PASSES) -> linearize
    (a second run merges the twin tails first, before exit_early; the smaller program wins)

Each pass is a function `pass(graph, ctx) -> bool` (True when it changed the graph), in its
own module. Why the loop terminates: every change strictly decreases the measure
(statements, conditional jumps, sum of (4 - stmt_rank), blocks, sum over edges of
(N - position of the target)), compared lexicographically, and no pass increases an earlier
component while decreasing a later one. No pass count limit is needed or used.

Equivalent means: the same return value for every packet (every captured length, every wire
length), following libpcap's bpf_filter(): loads past the captured length and division by
zero return 0, shifts by 32 or more give 0, arithmetic wraps at 32 bits. Programs with a
backward jump (libpcap's protochain) are returned unchanged.
"""

import gc

from .cfg import build_graph
from .constants import fold_constants
from .deadcode import drop_covered_loads, prune_zero_paths, remove_dead_code
from .jumps import thread_jumps
from .linearize import linearize
from .peephole import fold_index_arithmetic, fold_into_jumps, narrow_masked_loads
from .ordering import order_dispatch
from .merge import merge_chains, merge_identical, simplify_edges
from .redundancy import remove_redundant, remove_redundant_blocks
from .rebase import merge_rebased
from .reorder import exit_early, group_tests
from .search import split_sets
from .values import Analysis, Values

__all__ = ["optimize_program", "optimize_with_origins", "rejects_all", "PASSES"]

PASSES = (
    fold_constants,             # constant folding and propagation (A, X, M[], branch facts)
    remove_redundant,           # value numbering, redundant-load elimination, copies
    remove_redundant_blocks,    # ... for a whole block whose net effect is already in place
    fold_into_jumps,            # peephole: `and #m; jeq #0` -> `jset #m`, ...
    fold_index_arithmetic,      # peephole: `ld #c; add x; tax; ld [x+d]` -> `ld [x+d+c]`
    narrow_masked_loads,        # peephole: `ld [k]; and #0xffff0000; jeq` -> `ldh [k]; jeq`
    thread_jumps,               # jump threading: tests decided by the path are bypassed
    simplify_edges,             # tests with one target, empty blocks
    remove_dead_code,           # dead code and dead stores (never a load that may abort)
    drop_covered_loads,         # unread loads that a later load re-checks on every path
    prune_zero_paths,           # blocks that can only reject become `ret #0`
    merge_chains,               # a block and its only successor become one
    merge_identical,            # identical blocks (and so identical tails) become one
    group_tests,                # and/or pull-up: tests sharing an exit grouped by value
)


class Context:
    """State shared by the passes of one optimization: the value-number table, the last
    dataflow analysis while it still describes the graph, and whether a one-shot pass left
    work for PASSES (`resimplify`)."""

    def __init__(self):
        self.vals = Values()
        self._analysis = None
        self.resimplify = False

    def analysis(self, graph):
        if self._analysis is None:
            self._analysis = Analysis(graph, self.vals)
        return self._analysis

    def invalidate(self):
        self._analysis = None


# Until exit_early has run, identical tails of different chains stay apart (merging them first
# would hide the chains it looks for).
PASSES_BEFORE_EXITS = tuple(p for p in PASSES if p is not merge_identical)

# Passes whose rewrites keep every value where it was (they only swap a statement for one
# computing the same value, or drop one recomputing a value already in place), so the
# analysis made before them still holds after them.
PRESERVE_ANALYSIS = (fold_constants, remove_redundant)


def optimize_graph(graph, passes=PASSES):
    ctx = Context()
    changed = True
    while changed:
        changed = False
        for p in passes:
            if p(graph, ctx):
                changed = True
                if p not in PRESERVE_ANALYSIS:
                    ctx.invalidate()
    return ctx


def _rebase_all(graph, ctx):
    """merge_rebased until it finds nothing more; whether it changed the graph."""
    rebased = False
    while merge_rebased(graph, ctx):
        rebased = True
    return rebased


def _finish(graph, ctx, merge_twins=True, origins=None):
    """Everything after the first round of passes, up to the linear program (its instructions'
    origins into the list `origins`, when given)."""
    exit_early(graph, ctx)
    ctx = optimize_graph(graph)
    if order_dispatch(graph, ctx):
        ctx = optimize_graph(graph)
    if split_sets(graph, ctx) and ctx.resimplify:
        optimize_graph(graph)
    if merge_twins and _rebase_all(graph, ctx):
        optimize_graph(graph)
    return linearize(graph, origins)


def optimize_program(insns, merge_twins=True):
    """An equivalent program, usually smaller: list of (code, jt, jf, k) in, the same out.

    When the program has both absolute and X-indexed packet loads (so maybe twin tails for
    merge_rebased), the passes after the first round run twice: on the graph as it is, and on
    a copy whose twin tails were merged first (before exit_early reshapes each tail its own
    way); the smaller program wins (the first on a tie). merge_twins=False skips merge_rebased
    altogether (for rule sets, whose per-family tests are shared across rules)."""
    return _optimize(insns, merge_twins, None)[0]


def optimize_with_origins(insns, origins, merge_twins=True):
    """optimize_program that also carries each instruction's origins (one iterable of source
    spans per instruction) through every pass: (program, origins of its instructions)."""
    return _optimize(insns, merge_twins, [frozenset(o) for o in origins])


def _optimize(insns, merge_twins, origins):
    insns = [tuple(int(f) for f in i) for i in insns]
    graph = build_graph(insns, origins)
    if graph is None:
        return insns, origins
    # The optimizer allocates millions of small objects and frees nothing until it ends:
    # Python's cyclic collector would rescan them all again and again (quadratic time on
    # 100,000-instruction programs). Block cycles are collected once, afterwards.
    enabled = gc.isenabled()
    gc.disable()
    try:
        ctx = optimize_graph(graph, PASSES_BEFORE_EXITS)
        twin = None
        if merge_twins and {0x20, 0x40} <= {code & 0xE7 for code, _jt, _jf, _k in insns}:
            twin = graph.clone()
        out_origins = [] if origins is not None else None
        out = _finish(graph, ctx, merge_twins, out_origins)
        if twin is not None:
            tctx = Context()
            if _rebase_all(twin, tctx):
                alt_origins = [] if origins is not None else None
                alt = _finish(twin, optimize_graph(twin, PASSES_BEFORE_EXITS), origins=alt_origins)
                if len(alt) < len(out):
                    out, out_origins = alt, alt_origins
    finally:
        if enabled:
            gc.enable()
    return (out, out_origins) if len(out) <= len(insns) else (insns, origins)


def rejects_all(insns):
    """True when the program provably returns 0 for every packet."""
    out = optimize_program(insns)
    return len(out) == 1 and out[0][0] == 0x06 and out[0][3] == 0
