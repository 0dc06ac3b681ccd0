"""Pass: fold the last ALU operation of a block into its conditional jump.

Imports pfilter.opcodes and pfilter.optimizer.{cfg,values} only.

When A is not read after the jump (dead in both successors), a block ending in

    add #c; jeq #d     ->  jeq #(d - c)       (32-bit wraparound: adding c is a bijection)
    sub #c; jeq #d     ->  jeq #(d + c)
    xor #c; jeq #d     ->  jeq #(d ^ c)
    and #m; jeq #0     ->  jset #m with the targets swapped
    and #m; jeq #d     ->  goto false, when d has a bit outside m
    and #m; jset #n    ->  jset #(m & n)

loses the ALU statement.

`narrow_masked_loads` reads only the bytes a mask keeps, when A is not read after the jump:

    ld [k]; and #0xffff0000; jeq #(v << 16)   ->   ldh [k]; jeq #v
    ld [k]; and #0x000000ff; jeq #v           ->   ldb [k + 3]; jeq #v
    (any mask that keeps one or two whole, adjacent bytes of a word or halfword load)

The narrower load checks fewer captured bytes; so unless it ends where the wide one ended, it
is used only where every path after the block either returns 0 or loads at least as far before
any nonzero return (libpcap's IPv6 `net` code has such a load: `ip6 src net 2001:db8:1::/48`).

`fold_index_arithmetic` rewrites libpcap's way of reaching a transport-header field,

    ld #c; ldxb 4*([k]&0xf); add x; tax; ldh [x + d]   ->   ldxb 4*([k]&0xf); ldh [x + d + c]
    ld #c; add x; tax; ldh [x + d]                     ->   ldh [x + d + c]

(either order of the first two) when X is not read afterwards and X + c cannot wrap around:
the same bytes, the same bounds check. Terminates: each rewrite removes statements.
"""

from pfilter.opcodes import (BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_JEQ, BPF_JMP,
                             BPF_JSET, BPF_K, BPF_LD, BPF_SUB, BPF_W, BPF_XOR)

from .cfg import COND
from .values import M32, X, anticipated, evaluate, live_block, live_out, liveness, stmt_def, stmt_uses, term_uses

__all__ = ["fold_into_jumps", "fold_index_arithmetic", "narrow_masked_loads"]


def fold_into_jumps(graph, ctx):
    order = graph.link_preds()
    live_in = {}
    changed = False
    for b in reversed(order):
        if b.kind == COND and b.stmts and not b.jcode & 0x08:
            code, k = b.stmts[-1]
            a_dead = not any(live_in[s.id] & 1 for s in b.succ)
            if a_dead and code & 0x0F == BPF_ALU | BPF_K and _fold(b, code & 0xF0, k):
                b.stmts.pop()
                changed = True
        live_in[b.id] = live_block(b, live_in)
    return changed


def _fold(b, alu, c):
    op, d = b.jcode & 0xF0, b.jk
    if op == BPF_JEQ:
        if alu == BPF_ADD:
            b.jk = (d - c) & M32
            return True
        if alu == BPF_SUB:
            b.jk = (d + c) & M32
            return True
        if alu == BPF_XOR:
            b.jk = d ^ c
            return True
        if alu == BPF_AND:
            if d & ~c & M32:
                b.set_goto(b.succ[1])
                return True
            if d == 0:
                b.set_cond(BPF_JMP | BPF_JSET | BPF_K, c, b.succ[1], b.succ[0])
                return True
        return False
    if op == BPF_JSET and alu == BPF_AND:
        b.jk = c & d
        return True
    return False


_WIDTH = {BPF_W: 4, BPF_H: 2}
_SIZE_CODE = {1: BPF_B, 2: BPF_H}


def _kept_bytes(mask, width):
    """(first byte, count) when mask keeps exactly 1 or 2 whole adjacent bytes of a
    width-byte big-endian value, else None."""
    kept = [i for i in range(width) if (mask >> (8 * (width - 1 - i))) & 0xFF]
    if not kept or any((mask >> (8 * (width - 1 - i))) & 0xFF != 0xFF for i in kept):
        return None
    if mask >> (8 * width):
        return None
    if len(kept) not in (1, 2) or kept[-1] - kept[0] != len(kept) - 1:
        return None
    return kept[0], len(kept)


def narrow_masked_loads(graph, ctx):
    order = graph.link_preds()
    live_in = None
    ant = None
    changed = False
    for b in order:
        if b.kind != COND or b.jcode != BPF_JMP | BPF_JEQ | BPF_K or len(b.stmts) < 2:
            continue
        (lcode, k), (acode, m) = b.stmts[-2], b.stmts[-1]
        if acode != BPF_ALU | BPF_AND | BPF_K or lcode & 0xE7 != BPF_LD | BPF_ABS or lcode & 0x18 not in _WIDTH:
            continue
        width = _WIDTH[lcode & 0x18]
        field = _kept_bytes(m, width)
        if field is None or k >= 0x10000000:
            continue
        first, size = field
        shift = 8 * (width - first - size)
        if b.jk & ~m & M32:
            continue                        # never equal: fold_into_jumps drops the test
        if live_in is None:
            live_in = liveness(order)
            ant = anticipated(order)
        if any(live_in[s.id] & 1 for s in b.succ):
            continue
        end = k + first + size
        if end < k + width and min(ant[s.id] for s in b.succ) < k + width:
            continue
        b.stmts[-2:] = [(BPF_LD | _SIZE_CODE[size] | BPF_ABS, k + first)]
        b.jk = b.jk >> shift
        changed = True
    return changed


_ADD_X = BPF_ALU | BPF_ADD | 0x08
_TAX = 0x07


def fold_index_arithmetic(graph, ctx):
    if not any(_has_index_arithmetic(b.stmts) for b in graph.blocks()):
        return False
    vals = ctx.vals
    an = ctx.analysis(graph)
    live_in = {}
    changed = False
    for b in reversed(an.order):
        live = live_out(b, live_in)
        if len(b.stmts) >= 5:
            stmts = b.stmts
            # registers live after each statement
            after = [0] * len(stmts)
            lv = live | term_uses(b)
            for i in range(len(stmts) - 1, -1, -1):
                after[i] = lv
                code, k = stmts[i]
                lv = (lv & ~(1 << stmt_def(code, k))) | stmt_uses(code, k)
            st = an.ins[b.id].copy()
            xvals = [st.regs[X]]
            for code, k in stmts:
                dest, v, check = evaluate(vals, st, code, k)
                st.advance(dest, v, check)
                xvals.append(st.regs[X])
            # xvals[i]: X before statement i
            out = []
            i = 0
            while i < len(stmts):
                if i + 4 < len(stmts) and _index_pattern(vals, stmts, i, xvals, after):
                    first, second = stmts[i], stmts[i + 1]
                    c, ldx = (first[1], i + 1) if first[0] == 0x00 else (second[1], i)
                    code, k = stmts[i + 4]
                    out.append(stmts[ldx])
                    out.append((code, k + c))
                    i += 5
                    changed = True
                    continue
                if i + 3 < len(stmts) and _short_index_pattern(vals, stmts, i, xvals, after):
                    code, k = stmts[i + 3]
                    out.append((code, k + stmts[i][1]))
                    i += 4
                    changed = True
                    continue
                out.append(stmts[i])
                i += 1
            b.stmts = out
        live_in[b.id] = live_block(b, live_in)
    return changed


def _index_pattern(vals, stmts, i, xvals, after):
    first, second = stmts[i], stmts[i + 1]
    if first[0] == 0x00 and second[0] & 7 == 1:
        c, ldx = first[1], i + 1
    elif second[0] == 0x00 and first[0] & 7 == 1:
        c, ldx = second[1], i
    else:
        return False
    if stmts[i + 2][0] != _ADD_X or stmts[i + 3][0] != _TAX:
        return False
    code, k = stmts[i + 4]
    if code & 0xE7 != 0x40 or k + c > M32:
        return False
    if after[i + 4] & 2:
        return False
    return vals.bound(xvals[ldx + 1]) + c <= M32


def _short_index_pattern(vals, stmts, i, xvals, after):
    """ld #c; add x; tax; ld [x + d] with X already holding the base."""
    if stmts[i][0] != 0x00 or stmts[i + 1][0] != _ADD_X or stmts[i + 2][0] != _TAX:
        return False
    code, k = stmts[i + 3]
    c = stmts[i][1]
    if code & 0xE7 != 0x40 or k + c > M32 or after[i + 3] & 2:
        return False
    return vals.bound(xvals[i]) + c <= M32


def _has_index_arithmetic(stmts):
    for i in range(len(stmts) - 2):
        if stmts[i][0] == _ADD_X and stmts[i + 1][0] == _TAX and stmts[i + 2][0] & 0xE7 == 0x40:
            return True
    return False
