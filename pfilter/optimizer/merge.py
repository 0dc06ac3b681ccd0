"""Passes: edge clean-up, chain merging and merging of identical blocks.

Imports pfilter.optimizer.cfg only.

  - `simplify_edges`: a test whose two edges reach the same block is dropped (a test has no
    side effect); edges into a block that is only `goto` skip it.
  - `merge_chains`: a block ending in `goto S`, when S has no other predecessor, absorbs S.
  - `merge_identical`: blocks with the same statements, terminator and successors become one
    (bottom-up, so whole identical tails collapse, e.g. libpcap's many `ret #0`). The later
    block of a pair is kept, so every edge still points forward in `order`.
Each terminates: it removes a conditional jump or a block.
"""

from .cfg import COND, GOTO

__all__ = ["simplify_edges", "merge_chains", "merge_identical"]


def _skip_empty(b, memo):
    """The first block from b that is not an empty `goto` (memoized along the way)."""
    path = []
    while b.kind == GOTO and not b.stmts:
        t = memo.get(b.id)
        if t is not None:
            b = t
            break
        path.append(b.id)
        b = b.succ[0]
    for i in path:
        memo[i] = b
    return b


def simplify_edges(graph, ctx):
    changed = False
    memo = {}
    entry = _skip_empty(graph.entry, memo)
    if entry is not graph.entry:
        graph.entry = entry
        changed = True
    for b in graph.blocks():
        for i, s in enumerate(b.succ):
            t = _skip_empty(s, memo)
            if t is not s:
                b.succ[i] = t
                changed = True
        if b.kind == COND and b.succ[0] is b.succ[1]:
            b.set_goto(b.succ[0])
            changed = True
    return changed


def merge_chains(graph, ctx):
    order = graph.link_preds()
    changed = False
    gone = set()
    for b in order:
        if b.id in gone:
            continue
        while b.kind == GOTO:
            s = b.succ[0]
            if len(s.preds) != 1 or s is graph.entry:
                break
            b.stmts.extend(s.stmts)
            if s.origins:
                b.origins = b.origins | s.origins
            b.kind, b.rcode, b.rk, b.jcode, b.jk, b.succ = s.kind, s.rcode, s.rk, s.jcode, s.jk, list(s.succ)
            for t in s.succ:
                t.preds = [b if p is s else p for p in t.preds]
            gone.add(s.id)
            changed = True
    return changed


def merge_identical(graph, ctx):
    order = graph.blocks()
    canon = {}
    seen = {}
    changed = False
    for b in reversed(order):
        for i, s in enumerate(b.succ):
            c = canon.get(s.id)
            if c is not None:
                b.succ[i] = c
        sig = b.signature()
        other = seen.get(sig)
        if other is None:
            seen[sig] = b
        else:
            canon[b.id] = other
            if b.origins:
                other.origins = other.origins | b.origins
            changed = True
    if graph.entry.id in canon:
        graph.entry = canon[graph.entry.id]
    return changed
