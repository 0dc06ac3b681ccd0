"""Final pass: long chains of equality tests become a search over sorted constants.

Imports pfilter.optimizer.{cfg,values} only.

A set test is a chain of equality tests of the value in A, all leaving to one exit T,

    B: jeq #c1 -> T, else C2     C2: jeq #c2 -> T, else C3   ...   Cn: jeq #cn -> T, else F

where C2..Cn have no statements and no other predecessor. It means "A in {c1..cn} -> T, else
F", so the tests may run in any order and in any shape: a packet whose value is in none of
them (usually most packets: `host a or host b or ...` against busy traffic) walks all n. Here
the constants are split at their (unsigned) median by one `jgt`, recursively, until each part
holds at most LEAF_MAX constants, which stay a chain in their original order:

    jgt #c(m) -> (jeq chain of the upper half), else (jeq chain of the lower half)

A part that holds every value A can have below its `jgt` tests and what the dataflow analysis
knows of A at the chain (a run of consecutive constants: `port 1000 or port 1001 or ...`)
needs no test at all: it goes straight to T. Constants A cannot have are not tested. When a
whole chain decides nothing, `ctx.resimplify` asks for the PASSES again (what computed A may
be dead now).

Each `jgt` costs one instruction and halves the tests every packet walks; an or of 20 hosts
walks 7 tests per address instead of 20, an or of 1,000 hosts 15 instead of 1,000. No load
moves and A is not changed, so every verdict, truncated packets included, is the same.
Divergence: libpcap's optimizer keeps the chain (and drops the second address's load on a
match to save a step; pfilter keeps the load, and the search is what makes its path shorter).
Runs once, after the other passes, right before linearization: it adds conditional jumps, so
it is not one of the PASSES (whose measure only decreases). Each chain is rewritten once and
the recursion halves the constants, so it ends.
"""

from .cfg import COND
from .values import A

__all__ = ["split_sets", "LEAF_MAX"]

_JEQ_K = 0x15
_JGT_K = 0x25
M32 = 0xFFFFFFFF
LEAF_MAX = 8        # a chain of more constants than this is split


def _set_chain(b):
    """The blocks of the set test starting at b (b itself first)."""
    t = b.succ[0]
    chain = [b]
    cur = b
    while True:
        nxt = cur.succ[1]
        if nxt is t or nxt.kind != COND or nxt.jcode != _JEQ_K or nxt.stmts or len(nxt.preds) != 1 \
                or nxt.succ[0] is not t:
            return chain
        chain.append(nxt)
        cur = nxt


def _search(graph, consts, t, f, order, lo=-1, hi=M32, origins=frozenset()):
    """The first block of a search for consts (distinct, in test order, all in lo < c <= hi,
    which is all A can be here): T when found, else F."""
    if len(consts) == hi - lo:
        return t            # every value A can have here is one of them
    if len(consts) <= LEAF_MAX:
        nxt = f
        for c in reversed(consts):
            blk = graph.new_block(order)
            blk.origins = origins
            blk.set_cond(_JEQ_K, c, t, nxt)
            nxt = blk
        return nxt
    ranked = sorted(consts)
    pivot = ranked[len(ranked) // 2 - 1]
    high = _search(graph, [c for c in consts if c > pivot], t, f, order, pivot, hi, origins)
    low = _search(graph, [c for c in consts if c <= pivot], t, f, order, lo, pivot, origins)
    if high is t and low is t:
        return t
    blk = graph.new_block(order)
    blk.origins = origins
    blk.set_cond(_JGT_K, pivot, high, low)
    return blk


def split_sets(graph, ctx):
    order = graph.link_preds()
    seen = set()
    changed = False
    an = None           # the analysis of the graph as it was (a rewrite keeps every value)
    for b in order:
        if b.id in seen or b.kind != COND or b.jcode != _JEQ_K or b.succ[0] is b.succ[1]:
            continue
        chain = _set_chain(b)
        seen.update(c.id for c in chain)
        t, f = b.succ[0], chain[-1].succ[1]
        consts = list(dict.fromkeys(c.jk for c in chain))
        if len(consts) <= LEAF_MAX or f is t:
            continue
        if an is None:
            an = ctx.analysis(graph)
        st = an.outs[b.id]
        a = st.regs[A]
        lo, hi = st.fact(a)[0], min(st.fact(a)[1], ctx.vals.bound(a))
        consts = [c for c in consts if lo <= c <= hi]
        origins = frozenset().union(*(c.origins for c in chain))
        b.origins = origins
        root = _search(graph, consts, t, f, b.order, lo - 1, hi, origins)
        if root is t or root is f:
            b.set_goto(root)        # the chain decided nothing: what computed A may be dead now
            ctx.resimplify = True
        else:
            b.set_cond(root.jcode, root.jk, root.succ[0], root.succ[1])
        changed = True
    if changed:
        ctx.invalidate()
        graph.renumber()
    return changed
