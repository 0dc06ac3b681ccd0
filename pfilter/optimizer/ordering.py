"""Final pass: order two-way dispatches so common packets leave early.

Imports pfilter.optimizer.cfg only.

Two consecutive equality tests of the same value against different constants,

    B: jeq #c1 -> T1, else C        C (no statements, only reached from B): jeq #c2 -> T2, else F

are mutually exclusive and free of side effects, so they may run in either order. Where c2 is
the more common value (IPv4 before IPv6 before ARP as an ethertype; TCP before UDP before ICMP
as an IP protocol) the tests are swapped, so the common packet takes one test instead of two.
Only path length changes, never the result or the size. Runs once, after the other passes:
a bubble sort by a fixed rank, so it ends (each swap removes an inversion).
"""

from .cfg import COND

__all__ = ["order_dispatch"]

_RANK = {0x0800: 0, 0x86DD: 1, 0x0806: 2, 0x8100: 3, 6: 0, 17: 1, 1: 2, 58: 3}
_JEQ_K = 0x15


def _rank(c):
    return _RANK.get(c, len(_RANK))


def order_dispatch(graph, ctx):
    order = graph.link_preds()
    changed = False
    swapped = True
    while swapped:
        swapped = False
        for b in order:
            if b.kind != COND or b.jcode != _JEQ_K:
                continue
            c = b.succ[1]
            if c.kind != COND or c.jcode != _JEQ_K or c.stmts or len(c.preds) != 1 or c.jk == b.jk:
                continue
            if _rank(c.jk) < _rank(b.jk):
                b.jk, c.jk = c.jk, b.jk
                b.succ[0], c.succ[0] = c.succ[0], b.succ[0]
                swapped = changed = True
    if changed:
        graph.renumber()
    return changed
