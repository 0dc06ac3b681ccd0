"""Pass: jump threading (tests decided by the path that reaches them are bypassed).

Imports pfilter.optimizer.{cfg,values} only.

Two rewrites, over blocks in reverse topological order:
  - a test settled by what holds on every path into its block (the meet of the incoming
    states: after `ldh [12]; jeq #0x800` true, `jeq #0x86dd` is false) becomes a `goto`;
  - an edge P -> B whose own facts settle B's test, B -> S, is redirected to P -> S when
    skipping B's statements changes nothing observable along that edge: every register live at
    S holds the same value with or without B (so stores survive the bypass: libpcap #1670),
    and none of B's statements could abort there (its loads were proven by earlier loads on
    the edge, or every path from S loads those bytes again before any nonzero return).

Soundness of one analysis for the whole pass: processing in reverse topological order, a
block's incoming edges only ever lose members before it is processed (its state can only get
more precise), and liveness/anticipation of a block are recomputed once its out-edges are
final. Terminates: each redirection moves an edge to a later block (the sum over edges of
their targets' positions grows, bounded), each settled test removes a conditional jump.
"""

from .cfg import COND, GOTO
from pfilter.opcodes import BPF_JEQ

from .values import ALWAYS, A, NREGS, State, add_fact_to, anticipated_block, decide_jump, \
    edge_fact, evaluate, live_block

__all__ = ["thread_jumps"]


def thread_jumps(graph, ctx):
    vals = ctx.vals
    an = ctx.analysis(graph)
    live_in = {}
    ant = {}
    changed = False
    for b in reversed(an.order):
        if b.kind == COND:
            d = decide_jump(vals, an.outs[b.id], b.jcode, b.jk)
            if d is not None:
                b.set_goto(b.succ[0] if d else b.succ[1])
                changed = True
            elif b.succ[0] is not b.succ[1]:
                for p in set(b.preds):
                    if _thread_edges(vals, an, p, b, live_in, ant):
                        changed = True
        live_in[b.id] = live_block(b, live_in)
        ant[b.id] = anticipated_block(b, ant)
    return changed


WALK_BUDGET = 24    # blocks visited per edge while looking for a later target


def _thread_edges(vals, an, p, b, live_in, ant):
    out = an.outs[p.id]
    changed = False
    for slot, target in enumerate(p.succ):
        if target is not b:
            continue
        if p.kind == COND and p.succ[0] is not p.succ[1]:
            st = State(list(out.regs), edge_fact(vals, out, p.jcode, p.jk, slot == 0), out.proven, out.pind)
        else:
            st = out.copy()
        budget = [WALK_BUDGET]
        found = _walk(vals, st, list(st.regs), b, 0, live_in, ant, budget)
        if found:
            best = max(found, key=lambda blk: blk.order)
            p.succ[slot] = best
            changed = True
    return changed


def _walk(vals, st, entry_regs, b, need, live_in, ant, budget):
    """Blocks after b that every execution from state st (at b's entry) reaches with the same
    values in all registers live there, and without skipping a load that could abort (other
    than ones the target re-checks: `need` is the largest such byte count so far)."""
    budget[0] -= 1
    if budget[0] < 0:
        return []
    st = st.copy()
    for code, k in b.stmts:
        dest, v, check = evaluate(vals, st, code, k)
        if not st.satisfied(check):
            if check is None or check is ALWAYS or check[0] != "abs":
                return []
            if check[1] > need:
                need = check[1]
        st.advance(dest, v, check)
    if b.kind == GOTO:
        return _arrive(vals, st, entry_regs, b.succ[0], need, live_in, ant, budget)
    if b.kind != COND:
        return []
    d = decide_jump(vals, st, b.jcode, b.jk)
    if d is not None:
        return _arrive(vals, st, entry_regs, b.succ[0] if d else b.succ[1], need, live_in, ant, budget)
    if b.jcode & 0x08:
        return []
    a = st.regs[A]
    vs = st.fact(a)[5]
    if not vs or len(vs) > 8:      # unknown, too many, or none (a path that cannot happen)
        return []
    common = None
    for c in vs:
        sub = State(st.regs, add_fact_to(st.facts, a, BPF_JEQ, c, True), st.proven, st.pind)
        d = decide_jump(vals, sub, b.jcode, b.jk)
        found = _arrive(vals, sub, entry_regs, b.succ[0] if d else b.succ[1], need, live_in, ant, budget)
        ids = {blk.id: blk for blk in found}
        common = ids if common is None else {i: blk for i, blk in common.items() if i in ids}
        if not common:
            return []
    return list(common.values())


def _arrive(vals, st, entry_regs, s, need, live_in, ant, budget):
    found = []
    if need <= ant[s.id] and _same_live(vals, st, entry_regs, live_in[s.id]):
        found.append(s)
    return found + _walk(vals, st, entry_regs, s, need, live_in, ant, budget)


def _same_live(vals, st, entry_regs, live):
    for r in range(NREGS):
        if live >> r & 1 and st.regs[r] != entry_regs[r]:
            c = st.const(vals, st.regs[r])
            if c is None or c != st.const(vals, entry_regs[r]):
                return False
    return True
