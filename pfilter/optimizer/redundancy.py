"""Pass: value numbering and redundant-load elimination.

Imports pfilter.opcodes and pfilter.optimizer.{cfg,values} only.

A statement whose destination already holds the value it computes (on every path into it: the
analysis meets states at merges) is removed; `ldh [12]` after `ldh [12]; jeq #0x800` is the
typical case. A statement whose value already sits in another register becomes a copy
(`tax`, `txa`, `ld M[i]`), which frees the code that computed it for dead-code removal. A load
is only removed or turned into a copy where it cannot abort (the same bytes were loaded before,
or the register holding the value proves it). `remove_redundant_blocks` does the same for a
whole block whose net effect leaves every live register as it was. Terminates: each change
removes statements or raises a `stmt_rank`.
"""

from pfilter.opcodes import BPF_ABS, BPF_IND, BPF_LD, BPF_LDX, BPF_MEM, BPF_MISC, BPF_MSH, BPF_TAX, BPF_TXA

from .values import forward_states, NREGS, A, X, evaluate, live_block, live_out, stmt_rank, term_uses

__all__ = ["remove_redundant", "remove_redundant_blocks"]

_RANK_MEM = stmt_rank(BPF_LD | BPF_MEM)
_RANK_COPY = stmt_rank(BPF_MISC | BPF_TAX)


def _is_packet_load(code):
    return code & 7 in (BPF_LD, BPF_LDX) and code & 0xE0 in (BPF_ABS, BPF_IND, BPF_MSH)


def remove_redundant(graph, ctx):
    """Drop recomputations, turn computations of values held elsewhere into copies."""
    vals = ctx.vals
    an = ctx.analysis(graph)
    changed = False
    for b, st in forward_states(an):
        new = []
        for code, k in b.stmts:
            dest, v, check = evaluate(vals, st, code, k)
            ok = st.satisfied(check)
            cur = st.regs[dest]
            if ok and (cur == v or (vals.consts[v] is not None and st.const(vals, cur) == vals.consts[v])):
                changed = True
                continue
            form = (code, k)
            if ok and dest in (A, X):
                rank = stmt_rank(code)
                other = X if dest == A else A
                if st.regs[other] == v and rank < _RANK_COPY:
                    form = (BPF_MISC | (BPF_TXA if dest == A else BPF_TAX), 0)
                elif rank < _RANK_MEM and not _is_packet_load(code):
                    for i in range(16):
                        if st.regs[2 + i] == v:
                            form = ((BPF_LD if dest == A else BPF_LDX) | BPF_MEM, i)
                            break
            if form != (code, k):
                changed = True
            new.append(form)
            st.advance(dest, v, check)
        b.stmts = new
    return changed


def remove_redundant_blocks(graph, ctx):
    """Drop every statement of a block that, taken as a whole, recomputes what is already in
    place: `ldb [x]; and #0xfc` again after `ldb [x]; and #0xfc; jeq #0xc0` false leaves A as it
    was, though neither statement alone is redundant (the load changes A in between)."""
    vals = ctx.vals
    an = ctx.analysis(graph)
    live_in = {}
    changed = False
    for b in reversed(an.order):
        if b.stmts:
            live = live_out(b, live_in, term_uses(b))
            entry = an.ins[b.id]
            st = entry.copy()
            ok = True
            for code, k in b.stmts:
                dest, v, check = evaluate(vals, st, code, k)
                if not st.satisfied(check):
                    ok = False
                    break
                st.advance(dest, v, check)
            if ok:
                for r in range(NREGS):
                    if live >> r & 1 and st.regs[r] != entry.regs[r]:
                        c = st.const(vals, st.regs[r])
                        if c is None or c != entry.const(vals, entry.regs[r]):
                            ok = False
                            break
            if ok:
                b.stmts = []
                changed = True
        live_in[b.id] = live_block(b, live_in)
    return changed
