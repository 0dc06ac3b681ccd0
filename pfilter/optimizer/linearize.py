"""Linearization: lay the block graph out as a cBPF program.

Imports pfilter.opcodes and pfilter.optimizer.cfg only.

Order: a topological order that places the target of a `goto` right after its block when it
can (saving the `ja`), bare `ret` blocks last (accepting ones first, as libpcap does). A `goto`
to a bare `ret` elsewhere becomes a copy of that `ret` (same size as `ja`, one step shorter).

Emission runs from the last block to the first, so every jump target is already placed and
its distance known exactly. A conditional jump offset is 8 bits: when a target is more than 255
instructions away, a trampoline is placed right after the jumping block (a copy of the `ret`
for a `ret` block, else `ja` to the target, whose offset is 32 bits), and later (earlier in the
program) jumps reuse a trampoline while it is in range. Placing a trampoline never moves what
is already placed, so one pass suffices.
"""

import heapq

from pfilter.opcodes import BPF_JA, BPF_JMP

from .cfg import GOTO, RET

__all__ = ["linearize", "layout"]

MAX_JUMP = 255


def _bare_ret(b):
    return b.kind == RET and not b.stmts


def layout(graph):
    """The blocks in emission order."""
    order = graph.link_preds()
    indeg = {b.id: 0 for b in order}
    for b in order:
        for s in set(s.id for s in b.succ):
            indeg[s] += 1
    rets = [b for b in order if _bare_ret(b)]
    out = []
    heap = [(graph.entry.order, graph.entry.id, graph.entry)]
    prefer = None
    while heap or prefer is not None:
        if prefer is not None:
            b, prefer = prefer, None
        else:
            b = heapq.heappop(heap)[2]
        out.append(b)
        for s in {s.id: s for s in b.succ}.values():
            indeg[s.id] -= 1
            if indeg[s.id] == 0 and not _bare_ret(s):
                if b.kind == GOTO:
                    prefer = s
                else:
                    heapq.heappush(heap, (s.order, s.id, s))
    if graph.entry in rets:
        return [graph.entry]
    rets.sort(key=lambda b: (b.rcode == 0x06 and b.rk == 0, b.order))
    return out + rets


def linearize(graph, origins=None):
    """The program as a list of (code, jt, jf, k). A list `origins` receives each instruction's
    origins (its block's; a trampoline's are those of the block that jumps through it)."""
    blocks = layout(graph)
    rev_origins = []
    rev = []            # instructions in reverse order; jump fields hold final offsets
    pos = {}            # block id -> reverse index of its first instruction
    tramps = {}         # block id -> reverse indices of trampolines to it (ascending)
    for b in reversed(blocks):
        if b.kind == RET:
            rev.append((b.rcode, 0, 0, b.rk))
        elif b.kind == GOTO:
            s = b.succ[0]
            t = pos[s.id]
            if t != len(rev) - 1:
                if _bare_ret(s):
                    rev.append((s.rcode, 0, 0, s.rk))     # a copy of the `ret` beats `ja` to it
                else:
                    rev.append((BPF_JMP | BPF_JA, 0, 0, len(rev) - t - 1))
        else:
            targets = list({s.id: s for s in b.succ}.values())
            base = len(rev)
            far = []
            while True:
                r = base + len(far)
                nfar = [s for s in targets if r - _nearest(s, pos, tramps) - 1 > MAX_JUMP]
                if len(nfar) == len(far):
                    break
                far = nfar
            for s in far:
                at = len(rev)
                if _bare_ret(s):
                    rev.append((s.rcode, 0, 0, s.rk))
                else:
                    rev.append((BPF_JMP | BPF_JA, 0, 0, at - pos[s.id] - 1))
                tramps.setdefault(s.id, []).append(at)
            r = len(rev)
            jt = r - _nearest(b.succ[0], pos, tramps) - 1
            jf = r - _nearest(b.succ[1], pos, tramps) - 1
            rev.append((b.jcode, jt, jf, b.jk))
        for code, k in reversed(b.stmts):
            rev.append((code, 0, 0, k))
        pos[b.id] = len(rev) - 1
        if origins is not None:
            rev_origins.extend([b.origins] * (len(rev) - len(rev_origins)))
    rev.reverse()
    if origins is not None:
        origins.extend(reversed(rev_origins))
    return rev


def _nearest(s, pos, tramps):
    t = tramps.get(s.id)
    return t[-1] if t else pos[s.id]
