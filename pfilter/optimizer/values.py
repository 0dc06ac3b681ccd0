"""Value numbering, facts learned from branches, and the dataflow analyses every pass shares.

Imports pfilter.opcodes, pfilter.semantics and pfilter.optimizer.cfg only.

Values. Every quantity a program computes gets a value number (an int) naming a pure
expression over the packet: ('k', c) a constant, ('abs', size, off) packet bytes at a fixed
offset, ('ind', size, xvn, off) bytes at X + off, ('msh', off) the IP header length byte,
('len',) the wire length, ('alu', op, a, b) and ('neg', a) arithmetic, ('phi', block, reg)
"whatever reached this block", ('init', reg) scratch memory never written. The packet never
changes while a program runs, so equal expressions are equal values everywhere in the graph.

Facts. A conditional jump teaches something about the value it tested, on each outgoing edge:
an interval [lo, hi], a set of excluded constants, bits known to be zero, and masks known to
have a set bit. Facts about a value stay true downstream of the edge; at a merge only what holds
on every incoming edge survives (a meet over a finite lattice: the sets are capped).

State. At a program point: the value in A, X and M[0..15], the facts, `proven` (the packet is
known to have at least that many captured bytes: an earlier load succeeded) and `pind`
(X-relative loads known to succeed, per value of X).

Semantics followed (libpcap: bpf_filter()): a load past the captured length, a division or
modulo by zero, return 0 from the whole program; shifts by 32 or more give 0; arithmetic is
32-bit unsigned. Constants fold with pfilter.semantics (alu, jump_taken), the definition the
pure-Python VM runs.
"""

from pfilter.opcodes import (BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_H, BPF_IMM,
                             BPF_IND, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET, BPF_LD, BPF_LDX,
                             BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL,
                             BPF_NEG, BPF_OR, BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TXA, BPF_W,
                             BPF_XOR)

from pfilter.semantics import M32, jump_taken
from pfilter.semantics import alu as fold_alu

from .cfg import COND, RET

A, X = 0, 1
NREGS = 18          # A, X, M[0..15]; M[i] is register 2 + i
FACT_CAP = 16       # facts kept per state (oldest dropped first)
SET_CAP = 24        # excluded constants / set-bit masks kept per value
LOAD_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1}
ALWAYS = "always"   # a statement that always makes the program return 0

__all__ = ["Values", "State", "Analysis", "evaluate", "decide", "edge_fact", "add_fact",
           "forward_states", "backward", "liveness", "live_block", "live_out", "stmt_uses", "stmt_def", "anticipated",
           "anticipated_block", "decide_jump", "ALWAYS", "A", "X", "NREGS", "M32"]


_COMMUTATIVE = (BPF_ADD, BPF_MUL, BPF_AND, BPF_OR, BPF_XOR)


class Values:
    """The value-number table: hash-consed expressions, with constant folding."""

    def __init__(self):
        self.ids = {}
        self.exprs = []
        self.consts = []
        self._bounds = {}

    def get(self, expr):
        v = self.ids.get(expr)
        if v is None:
            v = len(self.exprs)
            self.ids[expr] = v
            self.exprs.append(expr)
            self.consts.append(expr[1] if expr[0] == "k" else None)
        return v

    def k(self, c):
        return self.get(("k", c & M32))

    def bound(self, v, depth=0):
        """An upper bound of value v (over all packets).

        Looks at most 32 operations deep. Memoized per (value, depth): values are shared
        (`x + x` names x once), so an unmemoized walk of `A = A + A` repeated n times would
        take 2**n steps."""
        key = (v, depth)
        r = self._bounds.get(key)
        if r is None:
            r = self._bounds[key] = self._bound(v, depth)
        return r

    def _bound(self, v, depth):
        e = self.exprs[v]
        if depth > 32:
            return M32
        kind = e[0]
        if kind == "k":
            return e[1]
        if kind == "msh":
            return 60
        if kind in ("abs", "ind"):
            return (1 << (8 * LOAD_BYTES[e[1]])) - 1
        if kind == "alu":
            op, a, b = e[1], e[2], e[3]
            cb = self.consts[b]
            if op == BPF_AND:
                return min(self.bound(a, depth + 1), self.bound(b, depth + 1))
            if op == BPF_RSH and cb is not None:
                return self.bound(a, depth + 1) >> cb if cb < 32 else 0
            if op == BPF_LSH and cb is not None and cb < 32:
                return min(M32, self.bound(a, depth + 1) << cb)
            if op == BPF_ADD:
                return min(M32, self.bound(a, depth + 1) + self.bound(b, depth + 1))
        return M32

    def split_offset(self, v):
        """(base, c) with v == base + c exactly (no 32-bit wraparound), c a constant >= 0."""
        e = self.exprs[v]
        if e[0] == "alu" and e[1] == BPF_ADD:
            a, b = e[2], e[3]
            for base, other in ((a, b), (b, a)):
                c = self.consts[other]
                if c is not None and self.bound(base) + c <= M32:
                    return base, c
        return v, 0

    def alu(self, op, a, b, ca, cb):
        """Value number of `a op b` (ca, cb: their constants or None); None if it divides by 0."""
        if op == BPF_NEG:
            return self.k(fold_alu(op, ca, 0)) if ca is not None else self.get(("neg", a))
        if ca is not None and cb is not None:
            r = fold_alu(op, ca, cb)
            return None if r is None else self.k(r)
        if cb is not None:
            if cb == 0:
                if op in (BPF_ADD, BPF_SUB, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH):
                    return a
                if op in (BPF_AND, BPF_MUL):
                    return self.k(0)
                if op in (BPF_DIV, BPF_MOD):
                    return None
            if cb == 1 and op in (BPF_MUL, BPF_DIV):
                return a
            if cb == 1 and op == BPF_MOD:
                return self.k(0)
            if cb == M32 and op == BPF_AND:
                return a
            if cb == M32 and op == BPF_OR:
                return self.k(M32)
            if cb >= 32 and op in (BPF_LSH, BPF_RSH):
                return self.k(0)
        if ca == 0 and op in (BPF_AND, BPF_MUL, BPF_LSH, BPF_RSH, BPF_DIV, BPF_MOD):
            return self.k(0)   # for 0 / X the caller still checks X != 0
        if ca is not None and op in (BPF_ADD, BPF_OR, BPF_XOR) and ca == 0:
            return b
        if a == b and op in (BPF_SUB, BPF_XOR):
            return self.k(0)
        if a == b and op in (BPF_AND, BPF_OR):
            return a
        if op in _COMMUTATIVE and b < a:
            a, b = b, a
        return self.get(("alu", op, a, b))


# ---------------------------------------------------------------------------------------- facts
# A fact is (lo, hi, excluded frozenset, zero_bits, nonzero_masks frozenset, possible values):
# the last is a frozenset of the only values possible, or None when unknown.
TOP = (0, M32, frozenset(), 0, frozenset(), None)
VS_CAP = 16         # possible values kept per value


def decide(f, op, c):
    """True/False when fact f settles `value op c`, else None."""
    lo, hi, ex, zero, nz, vs = f
    if vs is not None:
        outcomes = {jump_taken(op, a, c) for a in vs}
        if len(outcomes) == 1:
            return outcomes.pop()
    if op == BPF_JEQ:
        if lo == hi:
            return lo == c
        if c < lo or c > hi or c in ex or c & zero:
            return False
        for m in nz:
            if not c & m:
                return False
        return None
    if op == BPF_JGT:
        if lo > c:
            return True
        if hi <= c:
            return False
        return None
    if op == BPF_JGE:
        if lo >= c:
            return True
        if hi < c:
            return False
        return None
    if op == BPF_JSET:
        if lo == hi:
            return bool(lo & c)
        if not c & ~zero & M32:
            return False
        for m in nz:
            if not m & ~c:
                return True
        if lo > 0 and not ~zero & ~c & M32:
            return True
        if hi.bit_length() <= (c & -c).bit_length() - 1:
            return False
        return None
    return None


def add_fact(f, op, c, taken):
    """Fact f refined by the outcome `taken` of `value op c`."""
    lo, hi, ex, zero, nz, vs = f
    if vs is not None:
        vs = frozenset(a for a in vs if jump_taken(op, a, c) == taken)
    if op == BPF_JEQ:
        if taken:
            return (c, c, frozenset(), 0, frozenset(), frozenset((c,)))
        if c == lo and lo < hi:
            return (lo + 1, hi, ex, zero, nz, vs)
        if c == hi and lo < hi:
            return (lo, hi - 1, ex, zero, nz, vs)
        if lo <= c <= hi and c not in ex and len(ex) < SET_CAP:
            return (lo, hi, ex | {c}, zero, nz, vs)
        return (lo, hi, ex, zero, nz, vs)
    if op == BPF_JGT:
        return (max(lo, c + 1), hi, ex, zero, nz, vs) if taken else (lo, min(hi, c), ex, zero, nz, vs)
    if op == BPF_JGE:
        return (max(lo, c), hi, ex, zero, nz, vs) if taken else (lo, min(hi, c - 1), ex, zero, nz, vs)
    if op == BPF_JSET:
        if taken:
            if c in nz or len(nz) >= SET_CAP:
                return (lo, hi, ex, zero, nz, vs)
            return (lo, hi, ex, zero, nz | {c}, vs)
        return (lo, hi, ex, zero | c, nz, vs)
    return f


def meet_fact(f, g):
    if f == g:
        return f
    ex = frozenset(c for c in (f[2] | g[2]) if decide(f, BPF_JEQ, c) is False
                   and decide(g, BPF_JEQ, c) is False)
    nz = frozenset(m for m in (f[4] | g[4]) if decide(f, BPF_JSET, m) is True
                   and decide(g, BPF_JSET, m) is True)
    vs = None
    if f[5] is not None and g[5] is not None:
        vs = f[5] | g[5]
        if len(vs) > VS_CAP:
            vs = None
    return (min(f[0], g[0]), max(f[1], g[1]), ex, f[3] & g[3], nz, vs)


class State:
    """What is known at one program point (see the module docstring)."""

    __slots__ = ("regs", "facts", "proven", "pind")

    def __init__(self, regs, facts, proven, pind):
        self.regs = regs
        self.facts = facts
        self.proven = proven
        self.pind = pind

    def const(self, vals, v):
        """The constant value v is known to have here, or None."""
        c = vals.consts[v]
        if c is None:
            f = self.facts.get(v)
            if f is not None and f[0] == f[1]:
                return f[0]
        return c

    def fact(self, v):
        f = self.facts.get(v)
        return TOP if f is None else f

    def copy(self):
        return State(list(self.regs), self.facts, self.proven, self.pind)

    def satisfied(self, check):
        """Is the abort condition `check` (from evaluate) known never to fire here?"""
        if check is None:
            return True
        if check is ALWAYS:
            return False
        kind = check[0]
        if kind == "abs":
            return check[1] <= self.proven
        if kind == "ind":
            return check[2] <= self.pind.get(check[1], -1)
        if kind == "div":
            return decide(self.fact(check[1]), BPF_JEQ, 0) is False
        return False

    def note(self, check):
        """Record that `check` passed (execution went on past the statement)."""
        if check is None or check is ALWAYS:
            return
        kind = check[0]
        if kind == "abs":
            if check[1] > self.proven:
                self.proven = check[1]
        elif kind == "ind":
            if check[2] > self.pind.get(check[1], -1):
                pind = dict(self.pind)
                pind[check[1]] = check[2]
                self.pind = pind
            if check[3] > self.proven:
                self.proven = check[3]
        elif kind == "div":
            self.facts = add_fact_to(self.facts, check[1], BPF_JEQ, 0, False)

    def advance(self, dest, v, check):
        """Move past a statement evaluate() gave (dest, v, check): its check passed, dest holds v."""
        self.note(check)
        self.regs[dest] = v


def add_fact_to(facts, v, op, c, taken):
    old = facts.get(v, TOP)
    new = add_fact(old, op, c, taken)
    if new == old:
        return facts
    facts = dict(facts)
    facts.pop(v, None)
    facts[v] = new
    if len(facts) > FACT_CAP:
        del facts[next(iter(facts))]
    return facts


def stmt_rank(code):
    """How cheap a statement form is (higher is better): constant 4, register copy 3, scratch
    load 2, absolute load or K-operand ALU 1, X-relative load or X-operand ALU 0. Rewrites only ever raise it."""
    cls = code & 7
    if cls in (BPF_LD, BPF_LDX):
        mode = code & 0xE0
        if mode == BPF_IMM:
            return 4
        if mode == BPF_MEM:
            return 2
        if mode == BPF_IND:
            return 0
        return 1
    if cls == BPF_MISC:
        return 3
    if cls == BPF_ALU and code & 0x08:
        return 0
    return 1


def evaluate(vals, st, code, k):
    """Execute one statement abstractly in state st (not modified).

    Returns (dest register, value number, check): check is None (cannot abort), ALWAYS, or the
    condition under which it aborts: ('abs', bytes needed), ('ind', xvn, bytes after X, bytes),
    ('div', xvn)."""
    cls = code & 7
    regs = st.regs
    if cls == BPF_LD or cls == BPF_LDX:
        dest = A if cls == BPF_LD else X
        mode = code & 0xE0
        if mode == BPF_IMM:
            return dest, vals.k(k), None
        if mode == BPF_MEM:
            return dest, regs[2 + k], None
        if mode == BPF_LEN:
            return dest, vals.get(("len",)), None
        if mode == BPF_MSH:
            return dest, vals.get(("msh", k)), ("abs", k + 1)
        size = code & 0x18
        nb = LOAD_BYTES[size]
        if mode == BPF_ABS:
            return dest, vals.get(("abs", size, k)), ("abs", k + nb)
        if mode == BPF_IND:
            xv = regs[X]
            xc = st.const(vals, xv)
            if xc is not None:
                # an indexed load whose X is known becomes the absolute load at X + k, the sum
                # taken modulo 2^32 as libpcap's optimizer takes it (`ldx #2; ldh [x + -2]`,
                # BACnet MS/TP's `ip[2:2]`, becomes `ldh [0]`: what tcpdump runs), where the
                # unoptimized program (and libpcap's interpreter) finds X + k past the packet
                off = (xc + k) & M32
                return dest, vals.get(("abs", size, off)), ("abs", off + nb)
            base, extra = vals.split_offset(xv)
            if extra and k + extra <= M32:
                xv, k = base, k + extra
            return dest, vals.get(("ind", size, xv, k)), ("ind", xv, k + nb, k + nb)
        raise ValueError(f"unknown load mode in {code:#x}")
    if cls == BPF_ST:
        return 2 + k, regs[A], None
    if cls == BPF_STX:
        return 2 + k, regs[X], None
    if cls == BPF_ALU:
        op = code & 0xF0
        a = regs[A]
        ca = st.const(vals, a)
        if op == BPF_NEG:
            return A, vals.alu(op, a, None, ca, None), None
        if code & 0x08:
            b = regs[X]
            cb = st.const(vals, b)
        else:
            b = vals.k(k)
            cb = k
        v = vals.alu(op, a, b, ca, cb)
        if op in (BPF_DIV, BPF_MOD):
            if cb == 0:
                return A, vals.k(0), ALWAYS
            if cb is None:
                if v is None:
                    v = vals.get(("alu", op, a, b))
                return A, v, ("div", b)
        return A, v, None
    if cls == BPF_MISC:
        if code & 0xF8 == BPF_TXA:
            return A, regs[X], None
        return X, regs[A], None
    raise ValueError(f"not a statement: {code:#x}")


def edge_fact(vals, st, jcode, jk, taken):
    """The facts of state st (at a conditional jump) refined by the jump's outcome."""
    op = jcode & 0xF0
    a = st.regs[A]
    if jcode & 0x08:
        c = st.const(vals, st.regs[X])
        if c is None:
            return st.facts
    else:
        c = jk
    return add_fact_to(st.facts, a, op, c, taken)


def decide_jump(vals, st, jcode, jk):
    """True/False when state st settles the conditional jump, else None."""
    op = jcode & 0xF0
    a = st.regs[A]
    if jcode & 0x08:
        xv = st.regs[X]
        c = st.const(vals, xv)
        if c is None:
            if xv == a:
                return {BPF_JEQ: True, BPF_JGT: False, BPF_JGE: True}.get(op)
            return None
    else:
        c = jk
    ca = st.const(vals, a)
    if ca is not None:
        return jump_taken(op, ca, c)
    return decide(st.fact(a), op, c)


class Analysis:
    """Forward dataflow over the DAG: `ins[id]` and `outs[id]` (state before the terminator)
    of every reachable block, in one pass in topological order. The states may be shared
    between blocks and edges: copy one (State.copy) before changing it."""

    def __init__(self, graph, vals):
        self.vals = vals
        self.order = graph.link_preds()
        self.ins = {}
        self.outs = {}
        init_regs = [vals.k(0), vals.k(0)] + [vals.get(("init", r)) for r in range(16)]
        for b in self.order:
            if b is graph.entry and not b.preds:
                st = State(list(init_regs), {}, 0, {})
            else:
                st = self.meet(b, [self.edge_state(p, b) for p in b.preds])
            self.ins[b.id] = st
            if b.stmts:
                st = st.copy()
                for code, k in b.stmts:
                    dest, v, check = evaluate(vals, st, code, k)
                    st.advance(dest, v, check)
            self.outs[b.id] = st

    def edge_state(self, p, b):
        """State on the edge p -> b (p's out state plus what its jump taught)."""
        st = self.outs[p.id]
        if p.kind != COND or p.succ[0] is p.succ[1]:
            return st
        facts = edge_fact(self.vals, st, p.jcode, p.jk, p.succ[0] is b)
        if facts is st.facts:
            return st
        return State(st.regs, facts, st.proven, st.pind)

    def meet(self, b, states):
        if len(states) == 1:
            return states[0]        # states are never changed in place (users copy them)
        vals = self.vals
        first = states[0]
        regs = list(first.regs)
        for s in states[1:]:
            sr = s.regs
            for r in range(NREGS):
                if regs[r] != sr[r]:
                    regs[r] = -1
        for r in range(NREGS):
            if regs[r] == -1:
                regs[r] = vals.get(("phi", b.id, r))
        smallest = min(states, key=lambda s: len(s.facts))
        facts = {}
        for v, f in smallest.facts.items():
            for s in states:
                g = s.facts.get(v)
                if g is None:
                    break
                f = meet_fact(f, g)
            else:
                facts[v] = f
        proven = min(s.proven for s in states)
        pind = {}
        for xv, n in first.pind.items():
            m = min(s.pind.get(xv, -1) for s in states)
            if m >= 0:
                pind[xv] = m
        return State(regs, facts, proven, pind)


# ------------------------------------------------------------------------------------ liveness
ALL_REGS = (1 << NREGS) - 1


def stmt_uses(code, k):
    """Bit set of registers a statement reads (A = bit 0, X = bit 1, M[i] = bit 2 + i)."""
    cls = code & 7
    if cls == BPF_LD or cls == BPF_LDX:
        mode = code & 0xE0
        if mode == BPF_MEM:
            return 1 << (2 + k)
        if mode == BPF_IND:
            return 2
        return 0
    if cls == BPF_ST:
        return 1
    if cls == BPF_STX:
        return 2
    if cls == BPF_ALU:
        if code & 0xF0 == BPF_NEG:
            return 1
        return 3 if code & 0x08 else 1
    if cls == BPF_MISC:
        return 2 if code & 0xF8 == BPF_TXA else 1
    return 0


def stmt_def(code, k):
    """The register a statement writes."""
    cls = code & 7
    if cls == BPF_LD or cls == BPF_ALU:
        return A
    if cls == BPF_LDX:
        return X
    if cls == BPF_ST or cls == BPF_STX:
        return 2 + k
    return A if code & 0xF8 == BPF_TXA else X


def term_uses(b):
    if b.kind == RET:
        return 1 if b.rcode & 0x18 == 0x10 else 0
    if b.kind == COND:
        return 3 if b.jcode & 0x08 else 1
    return 0


def live_out(b, live_in, live=0):
    """`live` and the registers live at the entry of any of b's successors."""
    for s in b.succ:
        live |= live_in[s.id]
    return live


def live_block(b, live_in):
    """Registers live at b's entry, given live_in of its successors."""
    live = live_out(b, live_in, term_uses(b))
    for code, k in reversed(b.stmts):
        live = (live & ~(1 << stmt_def(code, k))) | stmt_uses(code, k)
    return live


def forward_states(an):
    """(block, a copy of the abstract state at its entry) for every block of the analysis, in
    order: what a pass that rewrites statements walks (it advances the state past each)."""
    for b in an.order:
        yield b, an.ins[b.id].copy()


def backward(order, transfer):
    """{block id: transfer(b, results so far)} for the blocks from last to first: a backward
    data-flow problem over the acyclic graph, each block's value from its successors'."""
    out = {}
    for b in reversed(order):
        out[b.id] = transfer(b, out)
    return out


def liveness(order):
    """live_in[id]: bit set of registers read before written on some path from the block."""
    return backward(order, live_block)


INF = 1 << 40


def anticipated_block(b, ant):
    """A byte count n such that on every path from b's entry, either the program returns 0 or
    an absolute load needing n captured bytes executes before any nonzero return. A load
    needing <= n bytes there may be skipped without changing any result."""
    if b.kind == RET:
        a = INF if (b.rcode & 0x18 == 0 and b.rk == 0) else 0
    else:
        a = min(ant[s.id] for s in b.succ)
    for code, k in reversed(b.stmts):
        n = abs_load_bytes(code, k)
        if n > a:
            a = n
    return a


def anticipated(order):
    """ant_in[id] (see anticipated_block) for every block."""
    return backward(order, anticipated_block)


def abs_load_bytes(code, k):
    """Bytes an absolute load (or msh) needs, else 0."""
    cls = code & 7
    if cls == BPF_LD or cls == BPF_LDX:
        mode = code & 0xE0
        if mode == BPF_ABS:
            return k + LOAD_BYTES[code & 0x18]
        if mode == BPF_MSH:
            return k + 1
    return 0
