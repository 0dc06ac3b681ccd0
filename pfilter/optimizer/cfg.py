"""The optimizer's control-flow graph: basic blocks built from a linear cBPF program.

Imports pfilter.opcodes only. The graph is independent of the compiler's own block IR, so the
optimizer can take any program (ours, libpcap's, hand-written) as a list of (code, jt, jf, k).

A `Block` holds straight-line statements `stmts` (a list of (code, k) pairs: loads, stores, ALU,
tax/txa) and one terminator:

    kind == RET    `ret` (code, k in `rcode`/`rk`)
    kind == GOTO   unconditional edge to `succ[0]`
    kind == COND   conditional jump `jcode`/`jk`: true edge `succ[0]`, false edge `succ[1]`

Every block has `origins`, a frozenset of the (start, end) source spans its instructions came
from (empty unless build_graph was given them): passes that merge blocks, or move tests
between them, give the result the union, so a merged instruction keeps all its origins.

Programs with only forward jumps make the graph a DAG; `order` is a topological key (the
position the block had in the input; `renumber` recomputes it after a pass that needs to).
"""

import heapq

from pfilter.opcodes import BPF_CLASS, BPF_JA, BPF_JMP, BPF_OP, BPF_RET

RET, GOTO, COND = 0, 1, 2
NO_ORIGINS = frozenset()

__all__ = ["RET", "GOTO", "COND", "Block", "Graph", "build_graph"]


class Block:
    """One basic block: statements then a terminator (see the module docstring)."""

    __slots__ = ("id", "order", "stmts", "kind", "rcode", "rk", "jcode", "jk", "succ", "preds", "origins")

    def __init__(self, bid, order):
        self.id = bid
        self.order = order
        self.stmts = []
        self.kind = RET
        self.rcode = 0x06
        self.rk = 0
        self.jcode = 0
        self.jk = 0
        self.succ = []
        self.preds = []
        self.origins = NO_ORIGINS

    def set_ret(self, code, k):
        self.kind, self.rcode, self.rk, self.succ = RET, code, k, []

    def set_goto(self, target):
        self.kind, self.succ = GOTO, [target]

    def set_cond(self, code, k, jt, jf):
        self.kind, self.jcode, self.jk, self.succ = COND, code, k, [jt, jf]

    def signature(self):
        """Everything that makes two blocks interchangeable (statements, terminator, targets)."""
        if self.kind == RET:
            term = (RET, self.rcode, self.rk)
        elif self.kind == GOTO:
            term = (GOTO, self.succ[0].id)
        else:
            term = (COND, self.jcode, self.jk, self.succ[0].id, self.succ[1].id)
        return (tuple(self.stmts), term)

    def __repr__(self):
        return f"<Block {self.id} @{self.order} {len(self.stmts)} stmts kind={self.kind}>"


class Graph:
    """A rooted DAG of blocks; `entry` is the first block executed."""

    def __init__(self, entry, next_id):
        self.entry = entry
        self.next_id = next_id

    def new_block(self, order):
        b = Block(self.next_id, order)
        self.next_id += 1
        return b

    def blocks(self):
        """Reachable blocks in topological order (by `order`, which every edge increases)."""
        seen = {self.entry.id: self.entry}
        stack = [self.entry]
        while stack:
            b = stack.pop()
            for s in b.succ:
                if s.id not in seen:
                    seen[s.id] = s
                    stack.append(s)
        return sorted(seen.values(), key=lambda b: b.order)

    def link_preds(self):
        """Recompute every reachable block's `preds` (a list with one entry per edge); returns
        the blocks in topological order."""
        order = self.blocks()
        for b in order:
            b.preds = []
        for b in order:
            for s in b.succ:
                s.preds.append(b)
        return order

    def renumber(self):
        """Make `order` topological again (Kahn's algorithm, old order breaking ties)."""
        blocks = self.link_preds()
        indeg = {b.id: len(b.preds) for b in blocks}
        heap = [(self.entry.order, self.entry.id, self.entry)]
        n = 0
        while heap:
            b = heapq.heappop(heap)[2]
            b.order = n
            n += 1
            for s in {s.id: s for s in b.succ}.values():
                indeg[s.id] -= sum(1 for t in b.succ if t is s)
                if indeg[s.id] == 0:
                    heapq.heappush(heap, (s.order, s.id, s))

    def size(self):
        return sum(len(b.stmts) + 1 for b in self.blocks())

    def clone(self):
        """An independent copy of the reachable graph (same ids and order; preds left empty
        until link_preds)."""
        copies = {}
        for b in self.blocks():
            c = Block(b.id, b.order)
            c.stmts = list(b.stmts)
            c.kind, c.rcode, c.rk, c.jcode, c.jk = b.kind, b.rcode, b.rk, b.jcode, b.jk
            c.origins = b.origins
            copies[b.id] = c
        for b in self.blocks():
            copies[b.id].succ = [copies[s.id] for s in b.succ]
        return Graph(copies[self.entry.id], self.next_id)


def build_graph(insns, origins=None):
    """The graph of a linear program, or None when it has a backward (or zero-length-loop) jump
    or a jump out of range: such programs are left as they are. `origins` (one iterable of
    spans per instruction) gives each block the union of its instructions' origins."""
    n = len(insns)
    if n == 0:
        return None
    leaders = {0}
    for i, (code, jt, jf, k) in enumerate(insns):
        cls = BPF_CLASS(code)
        if cls == BPF_JMP:
            if BPF_OP(code) == BPF_JA:
                targets = (i + 1 + k,)
            else:
                targets = (i + 1 + jt, i + 1 + jf)
            for t in targets:
                if t >= n or t <= i:
                    return None
                leaders.add(t)
            leaders.add(i + 1)
        elif cls == BPF_RET:
            leaders.add(i + 1)
    starts = sorted(x for x in leaders if x < n)
    blocks = {s: Block(idx, s) for idx, s in enumerate(starts)}
    for idx, s in enumerate(starts):
        end = starts[idx + 1] if idx + 1 < len(starts) else n
        b = blocks[s]
        if origins is not None:
            b.origins = frozenset().union(*origins[s:end])
        i = s
        while i < end:
            code, jt, jf, k = insns[i]
            cls = BPF_CLASS(code)
            if cls == BPF_RET:
                b.set_ret(code, k)
                break
            if cls == BPF_JMP:
                if BPF_OP(code) == BPF_JA:
                    b.set_goto(blocks[i + 1 + k])
                else:
                    b.set_cond(code, k, blocks[i + 1 + jt], blocks[i + 1 + jf])
                break
            b.stmts.append((code, k))
            i += 1
        else:
            if end >= n:
                return None  # falls off the end: not a valid program
            b.set_goto(blocks[end])
    return Graph(blocks[0], len(starts))
