"""Linearization: a finished block graph to a list of (code, jt, jf, k) tuples.
Imports pfilter.errors, pfilter.opcodes and pfilter.compiler.blocks.

The layout is libpcap's (optimize.c: icode_to_fcode / convert_code_r): a depth-first walk
that visits the false successor, then the true successor, then places the block in front of
both, so a block is followed by its true branch's code. A branch whose target is 256 or more
instructions away cannot be encoded in the 8-bit jt/jf fields; such a branch goes through an
inserted `ja` right after the conditional jump. libpcap discovers long branches one at a time
and restarts the layout after each; inserting a `ja` only ever lengthens other branches, so
marking every long branch of a pass at once reaches the same fixed point in a few passes.

Both walks are iterative: an `or` of thousands of hosts is a graph thousands of blocks deep.
"""

from pfilter.errors import FilterError
from pfilter.opcodes import BPF_CLASS, BPF_JA, BPF_JMP

__all__ = ["linearize"]

_JA = BPF_JMP | BPF_JA


def _layout_order(root):
    """Blocks in output order (libpcap's convert_code_r places them from the end)."""
    post = []
    seen = set()
    stack = [(root, False)]
    while stack:
        b, done = stack.pop()
        if done:
            post.append(b)
            continue
        if b is None or id(b) in seen:
            continue
        seen.add(id(b))
        stack.append((b, True))
        stack.append((b.jt, False))
        stack.append((b.jf, False))   # popped first: the false branch is walked first
    post.reverse()
    return post


def _stmt_code(b):
    """The statements of block b as (code, jt, jf, k), block-local jumps resolved."""
    stmts = b.stmts
    slen = len(stmts)
    out = []
    index = None
    for off, s in enumerate(stmts):
        jt = jf = 0
        if BPF_CLASS(s.code) == BPF_JMP and s.code != _JA and off != slen - 2:
            # libpcap: convert_code_r() leaves a conditional jump in the next-to-last slot
            # unresolved (both offsets 0); every other one must name statements of its block.
            if index is None:
                index = {id(t): i for i, t in enumerate(stmts)}
            if s.jt is None or s.jf is None:
                raise FilterError(f"internal error: block-local jump without destination at {off}")
            ti = index.get(id(s.jt))
            fi = index.get(id(s.jf))
            if ti is None or fi is None:
                raise FilterError(f"internal error: block-local jump destination not found at {off}")
            jt, jf = ti - off - 1, fi - off - 1
            if jt >= 256 or jf >= 256:
                raise FilterError(f"internal error: out-of-range block-local jump at {off}")
        out.append((s.code, jt, jf, s.k & 0xFFFFFFFF))
    return out


def linearize(root, origins=None):
    """The program for the graph rooted at `root`, as a list of (code, jt, jf, k). A list
    `origins` receives each instruction's origin: its block's primitive span, or None."""
    # libpcap: icode_to_fcode()
    order = _layout_order(root)
    for b in order:
        b.longjt = b.longjf = 0
    while True:
        offsets = {}
        pos = 0
        for b in order:
            offsets[id(b)] = pos
            pos += len(b.stmts) + 1 + b.longjt + b.longjf
        changed = False
        for b in order:
            if b.jt is None:
                continue
            base = offsets[id(b)] + len(b.stmts)
            if not b.longjt and offsets[id(b.jt)] - base - 1 >= 256:
                b.longjt = 1
                changed = True
            if not b.longjf and offsets[id(b.jf)] - base - 1 >= 256:
                b.longjf = 1
                changed = True
        if not changed:
            break

    prog = []
    for b in order:
        prog.extend(_stmt_code(b))
        if b.jt is None:
            prog.append((b.code, 0, 0, b.k & 0xFFFFFFFF))
            if origins is not None:
                origins.extend([b.origin] * (len(prog) - len(origins)))
            continue
        base = offsets[id(b)] + len(b.stmts)
        offt = offsets[id(b.jt)] - base - 1
        offf = offsets[id(b.jf)] - base - 1
        extra = []
        if b.longjt:
            jt = len(extra)
            extra.append((_JA, 0, 0, offt - len(extra) - 1))
        else:
            jt = offt
        if b.longjf:
            jf = len(extra)
            extra.append((_JA, 0, 0, offf - len(extra) - 1))
        else:
            jf = offf
        prog.append((b.code, jt, jf, b.k & 0xFFFFFFFF))
        prog.extend(extra)
        if origins is not None:
            origins.extend([b.origin] * (len(prog) - len(origins)))
    return prog
