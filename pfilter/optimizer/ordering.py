"""Final pass: order two-way dispatches so common packets leave early.

Imports pfilter.optimizer.cfg only.

Two consecutive equality tests of the same value against different constants,

    B: jeq #c1 -> T1, else C        C (no statements, only reached from B): jeq #c2 -> T2, else F

are mutually exclusive and free of side effects, so they may run in either order. Where c2 is
the more common value (IPv4 before IPv6 before ARP as an ethertype; TCP before UDP before ICMP
as an IP protocol) the tests are swapped, so the common packet takes one test instead of two.
Only path length changes, never the result or the size. Runs once, after the other passes:
each chain of such tests sorted stably by a fixed rank.
"""

from .cfg import COND

__all__ = ["order_dispatch"]

_RANK = {0x0800: 0, 0x86DD: 1, 0x0806: 2, 0x8100: 3, 6: 0, 17: 1, 1: 2, 58: 3}
_JEQ_K = 0x15


def _rank(c):
    return _RANK.get(c, len(_RANK))


def _next_in_chain(b):
    """The test that b's false edge leads to, when the two may swap: both equality tests, the
    second with no statements (so it tests the same value) and no other predecessor."""
    if b.kind != COND or b.jcode != _JEQ_K:
        return None
    c = b.succ[1]
    if c.kind != COND or c.jcode != _JEQ_K or c.stmts or len(c.preds) != 1:
        return None
    return c


def order_dispatch(graph, ctx):
    """Each chain of swappable tests (b, b's false successor, its false successor, ...) sorted
    once, stably, by rank: the order a bubble sort of adjacent swaps would reach, but in one
    pass (a bubble sort took a pass per position a test moved: minutes for an `or` of 3000
    ports, where port 2048 ranks as IPv4's ethertype)."""
    order = graph.link_preds()
    following = {}
    for b in order:
        c = _next_in_chain(b)
        if c is not None:
            following[b.id] = c
    inside = {c.id for c in following.values()}
    changed = False
    for b in order:
        if b.id not in following or b.id in inside:
            continue                    # not a chain's first test
        chain = [b]
        while chain[-1].id in following:
            chain.append(following[chain[-1].id])
        pairs = [(t.jk, t.succ[0]) for t in chain]
        ranked = sorted(range(len(pairs)), key=lambda i: _rank(pairs[i][0]))
        if ranked != list(range(len(pairs))):
            for t, i in zip(chain, ranked):
                t.jk, t.succ[0] = pairs[i]
            changed = True
    if changed:
        graph.renumber()
    return changed
