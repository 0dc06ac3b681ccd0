"""The target-independent lowering of a validated cBPF program: what every compiled target
(native code through llvmlite, eBPF) builds from, so that they all keep the VM's meaning.

Imports only pfilter.opcodes, pfilter.validate and pfilter.errors (and, lazily, nothing else).
`lower(program)` takes a Program (or a sequence of (code, jt, jf, k) tuples, which it validates)
and returns a `Lowering`. The API below is stable: fields are only ever added.

Lowering (frozen dataclass)
  insns        tuple of (code, jt, jf, k) tuples, the program (k unsigned, as validated)
  blocks       tuple of Block, in program order; blocks[0] is the entry. Only blocks reachable from
               the entry are listed (dead code is dropped); `Block.index` is the position here.
  block_at     dict: first instruction index -> block index
  digest       hex SHA-256 of the instructions as struct bpf_insn[] (little-endian): a cache key
  has_loops    True when some reachable block ends in a backward `ja` (the loop budget applies)
  zero_init    frozenset of registers live at the entry ("A", "X", "M0".."M15"): the ones a target
               must start at 0 (the VM starts A, X and M[] at 0); every other one is written before read
  uses_wirelen True when some reachable instruction reads the wire length (`ld/ldx #pktlen`)
  mem_used     frozenset of scratch words (ints 0..15) some reachable instruction touches

Block (frozen dataclass)
  index        position in Lowering.blocks
  start, end   instructions [start, end) of the program; the last one is the terminator unless
               `term` is "fall"
  body         tuple of (pc, (code, jt, jf, k)) for the non-terminator instructions (loads, stores,
               ALU, tax/txa), in order
  term         "ret_k" (return k), "ret_a" (return A), "ja" (jump), "jcond" (jeq/jgt/jge/jset on
               #k or X: true -> succs[0], false -> succs[1]), or "fall" (the next instruction
               starts another block: succs[0])
  term_insn    (pc, (code, jt, jf, k)) of the terminator, or None for "fall"
  succs        successor block indexes (see term); () for returns
  preds        predecessor block indexes (reachable ones only), sorted
  needs        largest absolute offset + size any load in the block reads (`ld/ldh/ldb [k]`,
               `ldxb 4*([k]&0xf)`), as a Python int (may exceed 2**32 for metadata offsets:
               compare in 64 bits); 0 when the block has no absolute load
  length_check the hoisted guard at block entry: if caplen < length_check the program returns 0.
               0 means no guard: every path into the block has already checked at least `needs`
               (the largest length known on all incoming paths, `known_in`, covers it)
  known_in     bytes every path into the block has already checked (caplen >= known_in)
  indirect     tuple of IndirectCheck: guards for `ld/ldh/ldb [x+k]` (see below)
  charge       the loop-budget charge of a taken backward `ja` ending the block (its span, the
               instructions from its target through the `ja`), else 0
  live_in      frozenset of registers live at block entry ("A", "X", "M0".."M15")
  live_out     frozenset of registers live at block exit

IndirectCheck (frozen dataclass)
  at           instruction index of the first indirect load it covers; the guard runs just before
               it, with X's value at that point: if caplen < X + size (computed in 64 bits) the
               program returns 0
  size         largest k + load size over the indirect loads of the block that see the same X
               (until the next instruction that writes X: ldx, ldxb, tax)
  covers       instruction indexes of those loads

Why hoisting is exact: inside a block nothing leaves the program before the terminator except a
failed load or a division by a zero X, and both return 0. A guard for the largest offset read
fails exactly when one of the block's loads would fail, so returning 0 at the guard returns what
the VM returns. The same holds for the indirect loads that see one value of X.

Rules every target keeps (pfilter._vm and pfilter._pyvm are the reference):
  * A, X, M[0..15] start at 0; loads are big-endian; `ld #pktlen` is the wire length;
  * a load past caplen returns 0 (the guards above); the bound is checked in 64 bits, so an offset
    near 2**32 (Linux SKF_AD_* metadata) is simply past every packet;
  * `div x` / `mod x` with X == 0 return 0 from the program; constant divisors are never 0
    (validated);
  * `lsh x` / `rsh x` with X >= 32 give 0 (not a return); constant shifts are < 32 (validated);
  * arithmetic wraps modulo 2**32; `neg` is 0 - A;
  * the loop budget (pfilter.validate.loop_budget): each taken backward `ja` adds its `charge` to
    the packet's total; once the total exceeds loop_budget(caplen) the program returns 0. Forward
    jumps charge nothing.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Any

from .opcodes import BPF_CLASS, BPF_JMP, BPF_RET, BPF_MEMWORDS
from .validate import COMPILED_MAX_INSNS, validate

__all__ = ["Block", "IndirectCheck", "Lowering", "lower", "LOAD_SIZE", "INDIRECT_LOADS",
           "ABSOLUTE_LOADS", "X_WRITERS"]

#: load opcode -> bytes read
LOAD_SIZE = {0x20: 4, 0x28: 2, 0x30: 1, 0x40: 4, 0x48: 2, 0x50: 1, 0xB1: 1}
ABSOLUTE_LOADS = frozenset({0x20, 0x28, 0x30, 0xB1})
INDIRECT_LOADS = frozenset({0x40, 0x48, 0x50})
#: instructions that write X
X_WRITERS = frozenset({0x01, 0x61, 0x81, 0xB1, 0x07})

MEM = tuple(f"M{i}" for i in range(BPF_MEMWORDS))


@dataclass(frozen=True)
class IndirectCheck:
    at: int
    size: int
    covers: tuple[int, ...]


@dataclass(frozen=True)
class Block:
    index: int
    start: int
    end: int
    body: tuple[tuple[int, tuple[int, int, int, int]], ...]
    term: str
    term_insn: tuple[int, tuple[int, int, int, int]] | None
    succs: tuple[int, ...]
    preds: tuple[int, ...] = ()
    needs: int = 0
    length_check: int = 0
    known_in: int = 0
    indirect: tuple[IndirectCheck, ...] = ()
    charge: int = 0
    live_in: frozenset[str] = field(default_factory=frozenset)
    live_out: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Lowering:
    insns: tuple[tuple[int, int, int, int], ...]
    blocks: tuple[Block, ...]
    block_at: dict[int, int]
    digest: str
    has_loops: bool
    zero_init: frozenset[str]
    uses_wirelen: bool
    mem_used: frozenset[int]


def _uses_defs(code: int, k: int) -> tuple[set[str], set[str]]:
    """Registers an instruction reads and writes (terminators included)."""
    cls = BPF_CLASS(code)
    if code in INDIRECT_LOADS:
        return {"X"}, {"A"}
    if code in (0x20, 0x28, 0x30, 0x00, 0x80):
        return set(), {"A"}
    if code in (0x01, 0x81, 0xB1):
        return set(), {"X"}
    if code == 0x60:
        return {MEM[k]}, {"A"}
    if code == 0x61:
        return {MEM[k]}, {"X"}
    if code == 0x02:
        return {"A"}, {MEM[k]}
    if code == 0x03:
        return {"X"}, {MEM[k]}
    if code == 0x07:
        return {"A"}, {"X"}
    if code == 0x87:
        return {"X"}, {"A"}
    if cls == 0x04:  # ALU
        if code == 0x84:
            return {"A"}, {"A"}
        return ({"A", "X"} if code & 0x08 else {"A"}), {"A"}
    if cls == BPF_JMP:
        if code == 0x05:
            return set(), set()
        return ({"A", "X"} if code & 0x08 else {"A"}), set()
    if cls == BPF_RET:
        return ({"A"} if code == 0x16 else set()), set()
    raise AssertionError(f"opcode 0x{code:x} not validated")


def lower(program: Any) -> Lowering:
    """The Lowering of a Program, or of (code, jt, jf, k) tuples (validated here)."""
    tuples = getattr(program, "_tuples", None)
    if tuples is None:
        tuples = [tuple(int(v) for v in t) for t in program]
        validate(tuples, COMPILED_MAX_INSNS)
    insns = tuple(tuple(t) for t in tuples)
    return _lower(insns)


def _targets(i: int, insn: tuple[int, int, int, int]) -> tuple[int, ...]:
    code, jt, jf, k = insn
    if BPF_CLASS(code) == BPF_RET:
        return ()
    if code == 0x05:
        off = k - (1 << 32) if k & 0x80000000 else k
        return (i + 1 + off,)
    if BPF_CLASS(code) == BPF_JMP:
        return (i + 1 + jt, i + 1 + jf)
    return (i + 1,)


def _lower(insns: tuple[tuple[int, int, int, int], ...]) -> Lowering:
    n = len(insns)
    # leaders: entry, jump targets, instructions after a jump or return
    leaders = {0}
    for i, insn in enumerate(insns):
        cls = BPF_CLASS(insn[0])
        if cls in (BPF_JMP, BPF_RET):
            leaders.update(_targets(i, insn))
            if i + 1 < n:
                leaders.add(i + 1)
    # reachable leaders, in program order
    starts = sorted(leaders)
    end_of = {s: (starts[j + 1] if j + 1 < len(starts) else n) for j, s in enumerate(starts)}
    seen, stack = {0}, [0]
    while stack:
        s = stack.pop()
        last = end_of[s] - 1
        for t in _targets(last, insns[last]):
            if t not in seen:
                seen.add(t)
                stack.append(t)
    order = sorted(seen)
    block_at = {s: b for b, s in enumerate(order)}

    raw_blocks = []
    for b, s in enumerate(order):
        e = end_of[s]
        last = insns[e - 1]
        cls = BPF_CLASS(last[0])
        if cls == BPF_RET:
            term = "ret_a" if last[0] == 0x16 else "ret_k"
            body_end = e - 1
        elif cls == BPF_JMP:
            term = "ja" if last[0] == 0x05 else "jcond"
            body_end = e - 1
        else:
            term = "fall"
            body_end = e
        succs = tuple(block_at[t] for t in _targets(e - 1, last))
        charge = 0
        if term == "ja" and last[3] & 0x80000000:
            charge = e - order[succs[0]]   # the span: target .. the ja
        body = tuple((pc, insns[pc]) for pc in range(s, body_end))
        # absolute needs and indirect guards
        needs = 0
        indirect: list[IndirectCheck] = []
        seg_at, seg_size, seg_cov = -1, 0, []
        for pc, (code, _jt, _jf, k) in body:
            if code in ABSOLUTE_LOADS:
                needs = max(needs, k + LOAD_SIZE[code])
            elif code in INDIRECT_LOADS:
                if seg_at < 0:
                    seg_at = pc
                seg_size = max(seg_size, k + LOAD_SIZE[code])
                seg_cov.append(pc)
            if code in X_WRITERS and seg_at >= 0:
                indirect.append(IndirectCheck(seg_at, seg_size, tuple(seg_cov)))
                seg_at, seg_size, seg_cov = -1, 0, []
        if seg_at >= 0:
            indirect.append(IndirectCheck(seg_at, seg_size, tuple(seg_cov)))
        raw_blocks.append(dict(index=b, start=s, end=e, body=body, term=term,
                               term_insn=None if term == "fall" else (e - 1, last),
                               succs=succs, needs=needs, indirect=tuple(indirect), charge=charge))
    nb = len(raw_blocks)
    preds: list[list[int]] = [[] for _ in range(nb)]
    for b, rb in enumerate(raw_blocks):
        for t in rb["succs"]:
            if b not in preds[t]:
                preds[t].append(b)

    # known lengths: known_out = max(known_in, needs); known_in = min over preds (entry: 0).
    # A must-analysis: start at "infinity" and lower to a fixpoint (loops converge: finite lattice).
    inf = 1 << 40
    known_in = [inf] * nb
    known_in[0] = 0
    changed = True
    while changed:
        changed = False
        for b in range(nb):
            if b == 0:
                val = 0
            else:
                val = min((max(known_in[p], raw_blocks[p]["needs"]) for p in preds[b]), default=0)
            if val != known_in[b]:
                known_in[b] = val
                changed = True

    # liveness (backward may-analysis)
    use_def = []
    for rb in raw_blocks:
        use: set[str] = set()
        defs: set[str] = set()
        items = list(rb["body"]) + ([rb["term_insn"]] if rb["term_insn"] else [])
        for _pc, (code, _jt, _jf, k) in items:
            u, d = _uses_defs(code, k)
            use |= u - defs
            defs |= d
        use_def.append((use, defs))
    live_in: list[set[str]] = [set() for _ in range(nb)]
    live_out: list[set[str]] = [set() for _ in range(nb)]
    changed = True
    while changed:
        changed = False
        for b in reversed(range(nb)):
            out = set().union(*(live_in[s] for s in raw_blocks[b]["succs"])) if raw_blocks[b]["succs"] else set()
            inn = use_def[b][0] | (out - use_def[b][1])
            if out != live_out[b] or inn != live_in[b]:
                live_out[b], live_in[b] = out, inn
                changed = True

    blocks = []
    for b, rb in enumerate(raw_blocks):
        kin = known_in[b]
        blocks.append(Block(preds=tuple(sorted(preds[b])), known_in=kin,
                            length_check=rb["needs"] if rb["needs"] > kin else 0,
                            live_in=frozenset(live_in[b]), live_out=frozenset(live_out[b]), **rb))
    reach = [insn for blk in blocks for _pc, insn in
             list(blk.body) + ([blk.term_insn] if blk.term_insn else [])]
    digest = hashlib.sha256(b"".join(struct.pack("<HBBI", *t) for t in insns)).hexdigest()
    return Lowering(insns=insns, blocks=tuple(blocks), block_at=block_at, digest=digest,
                    has_loops=any(blk.charge for blk in blocks),
                    zero_init=frozenset(live_in[0]),
                    uses_wirelen=any(c in (0x80, 0x81) for c, _, _, _ in reach),
                    mem_used=frozenset(k for c, _, _, k in reach if c in (0x02, 0x03, 0x60, 0x61)))

