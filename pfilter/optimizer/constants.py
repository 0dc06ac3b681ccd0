"""Pass: constant folding and propagation over A, X and M[] (and the facts branches teach).

Imports pfilter.opcodes and pfilter.optimizer.{cfg,values} only.

Rewrites, each to an equivalent and cheaper form (`stmt_rank` only goes up, so the pass
terminates and never undoes itself):
  - a load or computation whose value is a known constant -> `ld #c` / `ldx #c` (when it cannot
    abort here: a load past the captured length must still return 0);
  - an X-relative load with X known -> the absolute load of the same bytes;
  - an ALU operation or jump whose X operand is a known constant -> its K form;
  - a statement that always aborts (constant division by zero reached through X, an X-relative
    load beyond 4 GB) -> `ret #0`, the value bpf_filter returns;
  - `ret a` with A known -> `ret #k`.
"""

from pfilter.opcodes import BPF_ABS, BPF_DIV, BPF_IMM, BPF_IND, BPF_LD, BPF_LDX, BPF_MOD, BPF_RET, BPF_K

from .cfg import COND, RET
from .values import forward_states, ALWAYS, A, X, evaluate, stmt_rank

__all__ = ["fold_constants"]


def fold_constants(graph, ctx):
    """Replace computations with known results by constants; True if anything changed."""
    vals = ctx.vals
    an = ctx.analysis(graph)
    changed = False
    for b, st in forward_states(an):
        new = []
        aborted = False
        for code, k in b.stmts:
            dest, v, check = evaluate(vals, st, code, k)
            if check is ALWAYS:
                aborted = True
                break
            form = (code, k)
            c = st.const(vals, v)
            if c is not None and dest in (A, X) and stmt_rank(code) < 4 and st.satisfied(check):
                form = ((BPF_LD if dest == A else BPF_LDX) | BPF_IMM, c)
            elif code & 0xE0 == BPF_IND and (code & 7) in (BPF_LD, BPF_LDX) and v is not None \
                    and vals.exprs[v][0] == "abs":
                form = ((code & ~0xE0) | BPF_ABS, vals.exprs[v][2])
            elif (code & 7) == 4 and code & 0x08:
                cx = st.const(vals, st.regs[X])
                if cx is not None and not (code & 0xF0 in (BPF_DIV, BPF_MOD) and cx == 0) \
                        and not (code & 0xF0 in (0x60, 0x70) and cx >= 32):
                    form = (code & ~0x08, cx)
            if form != (code, k):
                changed = True
            new.append(form)
            st.advance(dest, v, check)
        if aborted:
            b.stmts = []
            b.set_ret(BPF_RET | BPF_K, 0)
            changed = True
            continue
        b.stmts = new
        if b.kind == COND and b.jcode & 0x08:
            cx = st.const(vals, st.regs[X])
            if cx is not None:
                b.jcode &= ~0x08
                b.jk = cx
                changed = True
        elif b.kind == RET and b.rcode & 0x18 == 0x10:
            ca = st.const(vals, st.regs[A])
            if ca is not None:
                b.set_ret(BPF_RET | BPF_K, ca)
                changed = True
    return changed
