"""The block-graph IR the code generator builds: statements, basic blocks, and libpcap's
and/or/not combinators over them. Imports pfilter.opcodes only.

A `Block` is a basic block: a list of side-effect statements followed by one conditional
jump (or a `ret`). While an expression is being lowered, each partial result is a block
whose unresolved exits form a linked list threaded through the `jt`/`jf` fields, the way
libpcap does it: `sense` says which of the two fields is the link. `gen_and`, `gen_or` and
`gen_not` combine partial results in O(length of the shorter lists), so left-deep chains of
thousands of `or`s stay linear.

A block may carry its `origin`: the (start, end) span of the primitive of the expression
whose lowering made it (set only when the compiler tracks provenance, see gencode.Codegen).

Statements may carry block-local jumps (`jt`/`jf` pointing at other `Stmt` objects of the
same block): libpcap uses them for `protochain`, Geneve and 802.11 header parsing.
"""

from pfilter.opcodes import BPF_JMP, BPF_K, BPF_RET

__all__ = ["Stmt", "Block", "new_block", "gen_and", "gen_or", "gen_not", "backpatch", "merge",
           "JMP"]


def JMP(op):
    """Opcode of a conditional jump against the constant k."""
    return op | BPF_JMP | BPF_K


class Stmt:
    """One non-branch instruction (or a block-local jump) of a block."""

    __slots__ = ("code", "k", "jt", "jf")

    def __init__(self, code, k=0):
        self.code = code
        self.k = k & 0xFFFFFFFF
        self.jt = None
        self.jf = None

    def __repr__(self):
        return f"Stmt(0x{self.code:02x}, {self.k})"


class Block:
    """A basic block: `stmts`, then the branch `code`/`k` to `jt` (true) or `jf` (false)."""

    __slots__ = ("code", "k", "stmts", "jt", "jf", "sense", "head", "longjt", "longjf", "origin")

    def __init__(self, code, k=0, stmts=None):
        self.code = code
        self.k = k & 0xFFFFFFFF
        self.stmts = stmts if stmts is not None else []
        self.jt = self.jf = self.origin = None
        self.sense = False
        self.head = self
        self.longjt = self.longjf = 0

    @property
    def is_ret(self):
        return (self.code & 0x07) == BPF_RET

    def __repr__(self):
        return f"Block(0x{self.code:02x}, {self.k}, {len(self.stmts)} stmts)"


def new_block(code, k=0, stmts=None):
    return Block(code, k, stmts)


def backpatch(lst, target):
    """Point every unresolved exit on the list starting at `lst` to `target`."""
    # libpcap: backpatch()
    while lst is not None:
        if not lst.sense:
            nxt = lst.jt
            lst.jt = target
        else:
            nxt = lst.jf
            lst.jf = target
        lst = nxt


def merge(b0, b1):
    """Append the exit list `b1` to the end of the exit list starting at `b0`."""
    # libpcap: merge()
    p = b0
    while True:
        if not p.sense:
            nxt = p.jt
            if nxt is None:
                p.jt = b1
                return
        else:
            nxt = p.jf
            if nxt is None:
                p.jf = b1
                return
        p = nxt


def gen_and(b0, b1):
    """b1 becomes `b0 and b1` (b1 is the partial result to keep using); returns b1."""
    # libpcap: gen_and()
    backpatch(b0, b1.head)
    b0.sense = not b0.sense
    b1.sense = not b1.sense
    merge(b1, b0)
    b1.sense = not b1.sense
    b1.head = b0.head
    return b1


def gen_or(b0, b1):
    """b1 becomes `b0 or b1`; returns b1."""
    # libpcap: gen_or()
    b0.sense = not b0.sense
    backpatch(b0, b1.head)
    b0.sense = not b0.sense
    merge(b1, b0)
    b1.head = b0.head
    return b1


def gen_not(b):
    # libpcap: gen_not()
    b.sense = not b.sense
