"""Pass: a region of absolute loads becomes a jump into its twin region of indexed loads.

Imports pfilter.opcodes and pfilter.optimizer.{cfg,values} only.

libpcap reads IPv4's transport fields through the header length in X (`ldxb 4*([14]&0xf)`,
`ldh [x + 14]`) and IPv6's at fixed offsets (`ldh [54]`), and then both families test the same
things (`port 80 or port 443`, `portrange`, `tcp[13] & 2 != 0`, ...): two copies of one tail.
`merge_rebased` finds a region P (a block and what it reaches before rejoining) that equals a
region Q statement for statement and edge for edge, except that where P loads [k] Q loads
[x + k - c], for one constant c >= 0. Then P becomes `ldx #c; goto Q`: on P's path the indexed
loads read the same bytes with the same bounds check, and every other statement is the same one
working on the same A and M[]. It applies only when
  - P never reads or writes X, and Q never writes X nor reads it except as a load's index;
  - X is dead where P's region leaves to blocks outside it (so X = c there changes nothing).
Costs one `ldx` (and maybe a `ja`) on P's paths, so it is taken only when it saves at least
two instructions. Terminates: each change removes at least two statements and adds one.
"""

from pfilter.opcodes import BPF_ABS, BPF_IMM, BPF_IND, BPF_LD, BPF_LDX, BPF_W

from .cfg import COND, RET
from .values import X, liveness, stmt_def, stmt_uses

__all__ = ["merge_rebased"]

_X_BIT = 1 << X
# Offsets at and above this are Linux's ancillary loads (negative offsets), not packet bytes.
LIMIT = 0x10000000


def _is_load(code, mode):
    return code & 7 == BPF_LD and code & 0xE0 == mode


def _shape(b, start=0):
    """Blocks that may pair up have the same shape (loads without their mode and offset)."""
    stmts = tuple((code & 0x1F, None) if _is_load(code, BPF_ABS) or _is_load(code, BPF_IND) else (code, k)
                  for code, k in b.stmts[start:])
    if b.kind == RET:
        term = (RET, b.rcode, b.rk)
    elif b.kind == COND:
        term = (COND, b.jcode, b.jk)
    else:
        term = (b.kind,)
    return stmts, term


def _term_reads_x(b):
    if b.kind == COND:
        return b.jcode & 0x08 != 0          # BPF_X source
    if b.kind == RET:
        return b.rcode & 0x18 == 0x08       # never valid cBPF; refuse anyway
    return False


class _Match:
    """Pairs P-region blocks with Q-region blocks and finds the one offset c."""

    def __init__(self, live_in):
        self.live_in = live_in
        self.pq = {}
        self.qp = {}
        self.c = None
        self._expanded = set()              # pairs whose successors are already on the stack

    def blocks(self, p, q, start=0):
        """Whether p pairs with q's statements from `start` on (and their successors pair up).

        Walks the pairs depth-first with an explicit stack (the regions may be thousands of
        blocks deep: an `or` of many ports), in the order a recursive walk would take."""
        stack = [(p, q, start)]
        while stack:
            p, q, start = stack.pop()
            if not self._pair(p, q, start):
                return False
            if p is not q and (p.id, q.id) not in self._expanded:
                self._expanded.add((p.id, q.id))
                stack.extend(reversed(list(zip(p.succ, q.succ, (0,) * len(p.succ)))))
        return True

    def _pair(self, p, q, start):
        """Whether block p can pair with q's statements from `start` on (successors aside);
        records the pair."""
        if p is q:                          # a block both regions reach: X must not matter there
            return not self.live_in[p.id] & _X_BIT
        if p.id in self.pq or q.id in self.qp:
            return self.pq.get(p.id) is q and self.qp.get(q.id) is p
        if p.kind != q.kind or len(p.stmts) != len(q.stmts) - start or len(p.succ) != len(q.succ):
            return False
        if p.id in self.qp or q.id in self.pq:  # the regions must not overlap
            return False
        for (pc, pk), (qc, qk) in zip(p.stmts, q.stmts[start:]):
            if _is_load(pc, BPF_ABS) and qc == (pc & ~0xE0) | BPF_IND and pk < LIMIT and qk < LIMIT:
                c = pk - qk
                if c < 0 or (self.c is not None and c != self.c):
                    return False
                self.c = c
                continue
            if pc != qc or pk != qk or stmt_uses(pc, pk) & _X_BIT or stmt_def(pc, pk) == X:
                return False
        if _term_reads_x(p) or _term_reads_x(q):
            return False
        if p.kind == RET:
            if (p.rcode, p.rk) != (q.rcode, q.rk):
                return False
        elif p.kind == COND and (p.jcode, p.jk) != (q.jcode, q.jk):
            return False
        self.pq[p.id] = q
        self.qp[q.id] = p
        return True


def _removable(order, root, region_ids):
    """The region's blocks that lose every predecessor once root stops leading into them
    (root included); `order` is topological with fresh `preds`."""
    gone = {root.id}
    for b in order:
        if b.id in region_ids and b.id not in gone and b.preds and all(p.id in gone for p in b.preds):
            gone.add(b.id)
    return [b for b in order if b.id in gone]


def merge_rebased(graph, ctx):
    order = graph.link_preds()
    # Q candidates by shape: every block with an indexed load, from each statement on (the
    # IPv4 tail's first block starts with the `ldxb` that sets X: P joins after it).
    with_ind = {}
    for b in order:
        for i, (code, _k) in enumerate(b.stmts):
            if _is_load(code, BPF_IND):
                for start in range(i + 1):
                    with_ind.setdefault(_shape(b, start), []).append((b, start))
                break
    if not with_ind:
        return False
    live_in = liveness(order)
    for p in order:
        if p is graph.entry or not any(_is_load(code, BPF_ABS) for code, _k in p.stmts):
            continue
        for q, start in with_ind.get(_shape(p), ()):
            m = _Match(live_in)
            if not m.blocks(p, q, start) or m.c is None:
                continue
            gone = _removable(order, p, set(m.pq))
            stmts = sum(len(b.stmts) for b in gone)
            if stmts < 2 or stmts + len(gone) - 2 < 1:
                continue
            for qb in m.pq.values():         # the twins' origins join
                qb.origins = qb.origins | m.qp[qb.id].origins
            if start:                       # split q where P joins it
                tail = graph.new_block(q.order)
                tail.origins = q.origins
                tail.stmts = q.stmts[start:]
                tail.kind, tail.rcode, tail.rk, tail.jcode, tail.jk = q.kind, q.rcode, q.rk, q.jcode, q.jk
                tail.succ = list(q.succ)
                q.stmts = q.stmts[:start]
                q.set_goto(tail)
                q = tail
            p.stmts = [(BPF_LDX | BPF_W | BPF_IMM, m.c)]
            p.set_goto(q)
            graph.renumber()
            return True
    return False
