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
from .values import A, NREGS, Analysis, State, anticipated_block, decide_jump, edge_fact, \
    evaluate, live_block

__all__ = ["thread_jumps"]


def thread_jumps(graph, ctx):
    vals = ctx.vals
    an = Analysis(graph, vals)
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
        entry_regs = list(st.regs)
        loads = []
        ok = True
        for code, k in b.stmts:
            dest, v, check = evaluate(vals, st, code, k)
            if not st.satisfied(check):
                if check is None or check[0] != "abs":
                    ok = False
                    break
                loads.append(check[1])
            st.note(check)
            st.regs[dest] = v
        if not ok:
            continue
        d = decide_jump(vals, st, b.jcode, b.jk)
        if d is None:
            continue
        s = b.succ[0] if d else b.succ[1]
        if loads and max(loads) > ant[s.id]:
            continue
        live = live_in[s.id]
        for r in range(NREGS):
            if live >> r & 1 and st.regs[r] != entry_regs[r]:
                c = st.const(vals, st.regs[r])
                if c is None or c != st.const(vals, entry_regs[r]):
                    break
        else:
            p.succ[slot] = s
            changed = True
    return changed
