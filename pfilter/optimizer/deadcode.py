"""Passes: dead-code and dead-store removal, loads covered by later loads, paths that can only
reject.

Imports pfilter.opcodes and pfilter.optimizer.{cfg,values} only.

A statement may be dropped only if its result is never read AND dropping it cannot turn a
"return 0" into something else: a packet load past the captured length, or a division by a
zero X, makes bpf_filter return 0, so such a statement stays unless
  - an earlier load on every path already proved the bytes are there (`remove_dead_code`), or
  - every path after it either returns 0 or loads at least as far before any nonzero return
    (`drop_covered_loads`: the later load aborts in its place, with the same result).
Divergence: libpcap's optimizer drops unread loads outright (`net 0.0.0.0/0` loses its
load of the address), accepting packets too short to hold them; pfilter keeps such a load.
The two justifications point in opposite directions, so they live in separate passes (each
with a fresh analysis) and can never lean on each other in a circle.

`prune_zero_paths` turns a block from which every path ends in `ret #0` into `ret #0`
(its statements can only abort, which also returns 0).
Each pass terminates: it removes statements or blocks, or turns blocks into bare `ret #0`.
"""

from pfilter.opcodes import BPF_K, BPF_RET

from .cfg import RET
from .values import INF, abs_load_bytes, evaluate, live_out, stmt_def, stmt_uses, \
    term_uses

__all__ = ["remove_dead_code", "drop_covered_loads", "prune_zero_paths"]


def remove_dead_code(graph, ctx):
    """Drop statements whose results are never read and which cannot abort."""
    if not _has_dead(graph):
        return False
    vals = ctx.vals
    an = ctx.analysis(graph)
    live_in = {}
    changed = False
    for b in reversed(an.order):
        live = live_out(b, live_in, term_uses(b))
        if b.stmts:
            st = an.ins[b.id].copy()
            safe = []
            for code, k in b.stmts:
                dest, v, check = evaluate(vals, st, code, k)
                safe.append(st.satisfied(check))
                st.advance(dest, v, check)
            keep = []
            for (code, k), ok in zip(reversed(b.stmts), reversed(safe)):
                d = stmt_def(code, k)
                if ok and not live >> d & 1:
                    changed = True
                    continue
                keep.append((code, k))
                live = (live & ~(1 << d)) | stmt_uses(code, k)
            keep.reverse()
            b.stmts = keep
        live_in[b.id] = live
    return changed


def drop_covered_loads(graph, ctx):
    """Drop unread absolute loads that a later load on every path re-checks."""
    order = graph.link_preds()
    live_in = {}
    ant = {}
    changed = False
    for b in reversed(order):
        live = term_uses(b)
        for s in b.succ:
            live |= live_in[s.id]
        if b.kind == RET:
            a = INF if (b.rcode & 0x18 == 0 and b.rk == 0) else 0
        else:
            a = min(ant[s.id] for s in b.succ)
        keep = []
        for code, k in reversed(b.stmts):
            d = stmt_def(code, k)
            n = abs_load_bytes(code, k)
            if n and n <= a and not live >> d & 1:
                changed = True
                continue
            keep.append((code, k))
            live = (live & ~(1 << d)) | stmt_uses(code, k)
            if n > a:
                a = n
        keep.reverse()
        b.stmts = keep
        live_in[b.id] = live
        ant[b.id] = a
    return changed


def prune_zero_paths(graph, ctx):
    """Blocks that can only lead to `ret #0` become `ret #0`."""
    order = graph.link_preds()
    zero = {}
    changed = False
    for b in reversed(order):
        if b.kind == RET:
            z = b.rcode & 0x18 == 0 and b.rk == 0
            if z and b.stmts:
                b.stmts = []
                changed = True
        else:
            z = all(zero[s.id] for s in b.succ)
            if z:
                b.stmts = []
                b.set_ret(BPF_RET | BPF_K, 0)
                changed = True
        zero[b.id] = z
    return changed


def _has_dead(graph):
    live_in = {}
    for b in reversed(graph.blocks()):
        live = term_uses(b)
        for s in b.succ:
            live |= live_in[s.id]
        for code, k in reversed(b.stmts):
            d = stmt_def(code, k)
            if not live >> d & 1:
                return True
            live = (live & ~(1 << d)) | stmt_uses(code, k)
        live_in[b.id] = live
    return False
