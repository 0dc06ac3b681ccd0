"""The eBPF emitter: a Lowering (pfilter.lowering) -> eBPF instructions for one hook.

Imports pfilter.lowering, pfilter.validate (the loop budget) and pfilter.ebpf.insn. The model is the kernel's own
cBPF-to-eBPF mapping (net/core/filter.c: bpf_convert_filter), with the packet read through
direct packet access for XDP and tc:

  R6  packet start (XDP, tc) or the skb (socket: the legacy loads read through R6)
  R7  A, R8  X (32-bit values: every write is a 32-bit ALU op or a zero-extending load)
  R9  packet end (XDP, tc)
  R2  the packet pointer X + packet start while indirect loads see one value of X
  R0, R3, R4  scratch;  R1 the context at entry
  stack  M[k] at R10 - 4 * (k + 1);  the wire length at R10 - 68 (XDP, tc)

A block's hoisted length guard (`Block.length_check`) is one compare of R6 + length against R9
that also tells the verifier how far R6 may be read; `IndirectCheck`s do the same for R2. A
failed guard, like a division by a zero X, goes to the `miss` exit, as a load past the end
makes libpcap's bpf_filter() return 0. cBPF compares are unsigned 32-bit: JMP32.

A backward jump (libpcap's `protochain` loop) keeps the VM's meaning: the prologue computes the
packet's loop budget (pfilter.validate.loop_budget of the readable length) into a stack slot,
each taken backward jump subtracts its charge and misses once the budget is spent, exactly as
the VM returns 0, and then loops through `may_goto` (Linux 6.9+), which lets the verifier accept
a loop it cannot count (the kernel bounds it at 8M iterations at run time, more than a budget
over a 64 KiB packet allows). XDP and tc take the readable length as packet end - packet
start, a pointer difference the verifier allows with CAP_PERFMON (root).
"""
from __future__ import annotations

from typing import Any

from ..lowering import INDIRECT_LOADS, LOAD_SIZE, Lowering
from ..validate import LOOP_BUDGET_BASE, LOOP_BUDGET_MAX, LOOP_BUDGET_PER_BYTE
from . import insn as I
from .insn import R0, R1, R2, R3, R4, R6, R7, R8, R9, R10, Insn

#: the kernel's helper numbers (include/uapi/linux/bpf.h, __BPF_FUNC_MAPPER)
BPF_FUNC_skb_pull_data = 39
BPF_FUNC_xdp_get_buff_len = 188
HELPER_NAMES = {BPF_FUNC_skb_pull_data: "bpf_skb_pull_data", BPF_FUNC_xdp_get_buff_len: "bpf_xdp_get_buff_len"}

#: the verifier follows packet pointers up to this offset (MAX_PACKET_OFF, include/linux/bpf_verifier.h)
MAX_PACKET_OFF = 0xFFFF
#: legacy loads take a signed 32-bit offset
MAX_LEGACY_OFF = 0x7FFFFFFF

SKB_LEN, SKB_DATA, SKB_DATA_END = 0, 76, 80       # struct __sk_buff
XDP_DATA, XDP_DATA_END = 0, 4                     # struct xdp_md
WIRELEN_SLOT = -68
LEFT_SLOT = -80                                   # what is left of the loop budget (u64)
#: BPF_JMP | BPF_JCOND with src BPF_MAY_GOTO: `may_goto +off` jumps once the kernel's own
#: loop count (BPF_MAX_LOOPS, 8M) is spent; the verifier then needs no bound on the loop
MAY_GOTO = I.BPF_JMP | 0xE0

_SIZE = {4: I.BPF_W, 2: I.BPF_H, 1: I.BPF_B}
_ALU_OP = {0x00: I.BPF_ADD, 0x10: I.BPF_SUB, 0x20: I.BPF_MUL, 0x30: I.BPF_DIV, 0x40: I.BPF_OR,
           0x50: I.BPF_AND, 0x60: I.BPF_LSH, 0x70: I.BPF_RSH, 0x90: I.BPF_MOD, 0xA0: I.BPF_XOR}
_JMP_OP = {0x10: I.BPF_JEQ, 0x20: I.BPF_JGT, 0x30: I.BPF_JGE, 0x40: I.BPF_JSET}
_NEGATE = {I.BPF_JEQ: I.BPF_JNE, I.BPF_JGT: I.BPF_JLE, I.BPF_JGE: I.BPF_JLT}


def _mem(k: int) -> int:
    return -4 * (k + 1)


class _Asm:
    """Instructions with symbolic jump targets, resolved by `finish()`. A jump whose target lies
    beyond a 16-bit offset becomes `gotol` (BPF_JMP32 | BPF_JA, a 32-bit offset in imm; Linux
    6.4+); a conditional one then jumps over a `gotol` to the far target:
    `if cond goto +1; goto +1; gotol target`."""

    def __init__(self) -> None:
        self.code: list[Insn] = []
        self.fixups: dict[int, object] = {}       # index in code -> label
        self.labels: dict[object, int] = {}

    def __call__(self, *insns: Insn) -> None:
        self.code.extend(insns)

    def jump(self, insn: Insn, label: object) -> None:
        self.fixups[len(self.code)] = label
        self.code.append(insn)

    def label(self, label: object) -> None:
        self.labels[label] = len(self.code)

    def finish(self) -> list[Insn]:
        n = len(self.code)
        far: set[int] = set()                       # conditional jumps expanded to three instructions
        while True:
            addr, at = [], 0
            for i in range(n + 1):
                addr.append(at)
                at += 3 if i in far else 1
            grown = False
            for i, label in self.fixups.items():
                insn = self.code[i]
                if insn.code == I.BPF_JMP | I.BPF_JA or i in far:
                    continue
                off = addr[self.labels[label]] - addr[i] - 1
                if not -0x8000 <= off <= 0x7FFF:
                    far.add(i)
                    grown = True
            if not grown:
                break
        out: list[Insn] = []
        for i, insn in enumerate(self.code):
            if i not in self.fixups:
                out.append(insn)
                continue
            target = addr[self.labels[self.fixups[i]]]
            if i in far:
                out += [insn._replace(off=1), I.ja(1), Insn(I.BPF_JMP32 | I.BPF_JA, imm=target - addr[i] - 3)]
                continue
            off = target - addr[i] - 1
            if insn.code == I.BPF_JMP | I.BPF_JA and not -0x8000 <= off <= 0x7FFF:
                out.append(Insn(I.BPF_JMP32 | I.BPF_JA, imm=off))
            else:
                out.append(insn._replace(off=off))
        return out


MISS, MATCH = "miss", "match"


def emit(low: Lowering, hook: str, match: int | None, miss: int) -> list[Insn]:
    """eBPF for the lowered program at `hook` ("xdp", "tc", "socket"): returns `match` where the
    cBPF program returns nonzero (None, socket only: the cBPF return value itself, the bytes to
    keep), `miss` where it returns 0."""
    legacy = hook == "socket"
    a = _Asm()
    # ------------------------------------------------------------------ prologue
    if hook == "xdp":
        if low.uses_wirelen:     # the frame's whole length, fragments included
            a(I.mov64(R6, R1), I.call(BPF_FUNC_xdp_get_buff_len), I.stx(I.BPF_W, R10, WIRELEN_SLOT, R0),
              I.mov64(R1, R6))
        a(I.ldx(I.BPF_W, R6, R1, XDP_DATA), I.ldx(I.BPF_W, R9, R1, XDP_DATA_END))
    elif hook == "tc":
        # tc sees an skb whose tail may lie outside its linear part: pull it in first (only then),
        # so that direct packet access reads the whole packet, as the VM does
        a(I.mov64(R6, R1), I.ldx(I.BPF_W, R2, R1, SKB_LEN))
        if low.uses_wirelen:
            a(I.stx(I.BPF_W, R10, WIRELEN_SLOT, R2))
        a(I.ldx(I.BPF_W, R3, R1, SKB_DATA), I.ldx(I.BPF_W, R4, R1, SKB_DATA_END))
        a.jump(I.jmp(I.BPF_JGT, R2, imm=MAX_PACKET_OFF), "pull")
        a(I.alu64(I.BPF_ADD, R3, R2))
        a.jump(I.jmp(I.BPF_JLE, R3, R4), "linear")
        a.label("pull")
        a(I.call(BPF_FUNC_skb_pull_data))                         # R1 = skb, R2 = skb->len
        a.label("linear")
        a(I.ldx(I.BPF_W, R9, R6, SKB_DATA_END), I.ldx(I.BPF_W, R6, R6, SKB_DATA))
    elif hook == "socket":
        a(I.mov64(R6, R1))
    else:
        raise ValueError(f"hook must be 'xdp', 'tc' or 'socket', not {hook!r}")
    if low.has_loops:
        # the VM's loop budget for this packet: loop_budget(caplen), caplen the bytes readable
        if legacy:
            a(I.ldx(I.BPF_W, R2, R6, SKB_LEN))
        else:
            a(I.mov64(R2, R9), I.alu64(I.BPF_SUB, R2, R6))
        a(I.alu64(I.BPF_MUL, R2, imm=LOOP_BUDGET_PER_BYTE), I.alu64(I.BPF_ADD, R2, imm=LOOP_BUDGET_BASE))
        # Divergence: a packet of more than (LOOP_BUDGET_MAX - BASE) / PER_BYTE bytes (510 KiB,
        # more than XDP or a tc skb's head holds) misses rather than looping under the cap: the
        # verifier must see the budget as a range, never as the constant cap, or it walks the
        # loop iteration by iteration
        a.jump(I.jmp(I.BPF_JGT, R2, imm=LOOP_BUDGET_MAX), MISS)
        # a no-op on the value (<= LOOP_BUDGET_MAX) that makes the verifier's lower bound 0, so
        # that the loop's states fall within the first one's and the walk converges
        a(I.alu64(I.BPF_AND, R2, imm=2 * LOOP_BUDGET_MAX - 1), I.stx(I.BPF_DW, R10, LEFT_SLOT, R2))
    for reg in sorted(low.zero_init):
        if reg == "A":
            a(I.mov32(R7, imm=0))
        elif reg == "X":
            a(I.mov32(R8, imm=0))
        else:
            a(I.st(I.BPF_W, R10, _mem(int(reg[1:])), 0))

    # ------------------------------------------------------------------ blocks
    blocks = low.blocks
    for blk in blocks:
        a.label(("block", blk.index))
        if not legacy and blk.length_check:
            if blk.length_check > MAX_PACKET_OFF:
                # Divergence: the verifier follows packet pointers only to MAX_PACKET_OFF, so a
                # load past 65,535 bytes misses (an XDP frame or a tc skb's head is shorter)
                a.jump(I.ja(), MISS)
                continue
            a(I.mov64(R3, R6), I.alu64(I.BPF_ADD, R3, imm=blk.length_check))
            a.jump(I.jmp(I.BPF_JGT, R3, R9), MISS)
        guards = {c.at: c for c in blk.indirect}
        for pc, (code, _jt, _jf, k) in blk.body:
            if pc in guards and not legacy:
                size = guards[pc].size
                if size > MAX_PACKET_OFF:
                    a.jump(I.ja(), MISS)            # Divergence: as for length_check above
                    break
                a(I.mov64(R3, R8))             # Divergence: X + size past 65,535 misses (above)
                a.jump(I.jmp(I.BPF_JGT, R3, imm=MAX_PACKET_OFF - size), MISS)
                a(I.mov64(R2, R6), I.alu64(I.BPF_ADD, R2, R3), I.mov64(R3, R2), I.alu64(I.BPF_ADD, R3, imm=size))
                a.jump(I.jmp(I.BPF_JGT, R3, R9), MISS)
            if _body(a, code, k, low, hook, legacy):
                break          # an unconditional miss: the rest of the block is dead
        else:
            _terminator(a, blk, blocks, hook, match)
    # ------------------------------------------------------------------ exits
    a.label(MISS)
    a(I.mov64(R0, imm=miss), I.exit_())
    if match is not None:
        a.label(MATCH)
        a(I.mov64(R0, imm=match), I.exit_())
    return drop_unreachable(a.finish())


def _offset(insn: Insn) -> int:
    """A jump's offset: `imm` for gotol (BPF_JMP32 | BPF_JA), else `off`."""
    return insn.imm if insn.code == I.BPF_JMP32 | I.BPF_JA else insn.off


def _successors(i: int, insn: Insn) -> tuple[int, ...]:
    cls, op = insn.code & 7, insn.code & 0xF0
    if cls not in (I.BPF_JMP, I.BPF_JMP32) or op == I.BPF_CALL:
        return (i + 1,)
    if op == I.BPF_EXIT:
        return ()
    if op == I.BPF_JA:
        return (i + 1 + _offset(insn),)
    return (i + 1, i + 1 + insn.off)


def drop_unreachable(code: list[Insn]) -> list[Insn]:
    """code without the instructions no path from the first reaches (the verifier refuses
    unreachable code: a guard that always fails cuts off what follows) and without jumps to
    the next instruction, jumps renumbered."""
    seen, stack = {0}, [0]
    while stack:
        for t in _successors(stack[-1], code[stack.pop()]):
            if t not in seen:
                seen.add(t)
                stack.append(t)
    seen -= {i for i in seen if code[i].code == I.BPF_JMP | I.BPF_JA and code[i].off == 0}
    if len(seen) == len(code):
        return code
    new_at, n = {}, 0
    for i in range(len(code) + 1):
        new_at[i] = n
        n += i in seen
    out = []
    for i, insn in enumerate(code):
        if i in seen:
            if insn.code == I.BPF_JMP32 | I.BPF_JA:
                insn = insn._replace(imm=new_at[i + 1 + insn.imm] - new_at[i] - 1)
            elif insn.code & 7 in (I.BPF_JMP, I.BPF_JMP32) and insn.code & 0xF0 not in (I.BPF_CALL, I.BPF_EXIT):
                insn = insn._replace(off=new_at[i + 1 + insn.off] - new_at[i] - 1)
            out.append(insn)
    return out


def _packet_load(a: _Asm, size: int, dst: int, base: int, off: int) -> None:
    """dst = big-endian `size`-byte value at base + off (direct packet access)."""
    if off > 0x7FFF:
        a(I.mov64(R4, base), I.alu64(I.BPF_ADD, R4, imm=off))
        base, off = R4, 0
    a(I.ldx(_SIZE[size], dst, base, off))
    if size > 1:
        a(I.be(dst, size * 8))


def _body(a: _Asm, code: int, k: int, low: Lowering, hook: str, legacy: bool) -> bool:
    """One non-terminator instruction; True when it always misses (the rest of the block is dead)."""
    if code in LOAD_SIZE:
        size = LOAD_SIZE[code]
        dst = R8 if code == 0xB1 else R7
        if code in INDIRECT_LOADS:
            if legacy:
                if k + size > MAX_LEGACY_OFF:
                    a.jump(I.ja(), MISS)
                    return True
                # the legacy load adds X and k as a signed int: keep the sum nonnegative
                a(I.mov64(R3, R8), I.alu64(I.BPF_ADD, R3, imm=k))
                a.jump(I.jmp(I.BPF_JGT, R3, imm=MAX_LEGACY_OFF - size), MISS)
                a(I.ld_ind(_SIZE[size], R8, k), I.mov32(dst, R0))
            else:
                _packet_load(a, size, dst, R2, k)
        else:
            if legacy:
                if k + size > MAX_LEGACY_OFF:
                    a.jump(I.ja(), MISS)
                    return True
                a(I.ld_abs(_SIZE[size], k), I.mov32(dst, R0))
            else:
                _packet_load(a, size, dst, R6, k)   # the block's guard covers it
        if code == 0xB1:                             # ldxb 4*([k]&0xf)
            a(I.alu32(I.BPF_AND, R8, imm=0xF), I.alu32(I.BPF_LSH, R8, imm=2))
        return False
    if code in (0x00, 0x01):                         # ld #k, ldx #k
        a(I.mov32(R7 if code == 0x00 else R8, imm=k))
    elif code in (0x80, 0x81):                       # ld #pktlen, ldx #pktlen
        dst = R7 if code == 0x80 else R8
        if legacy:
            a(I.ldx(I.BPF_W, dst, R6, SKB_LEN))
        else:
            a(I.ldx(I.BPF_W, dst, R10, WIRELEN_SLOT))
    elif code in (0x60, 0x61):                       # ld M[k], ldx M[k]
        a(I.ldx(I.BPF_W, R7 if code == 0x60 else R8, R10, _mem(k)))
    elif code in (0x02, 0x03):                       # st M[k], stx M[k]
        a(I.stx(I.BPF_W, R10, _mem(k), R7 if code == 0x02 else R8))
    elif code == 0x07:                               # tax
        a(I.mov32(R8, R7))
    elif code == 0x87:                               # txa
        a(I.mov32(R7, R8))
    elif code == 0x84:                               # neg
        a(I.alu32(I.BPF_NEG, R7))
    elif code & 0x07 == 0x04:
        op = _ALU_OP[code & 0xF0]
        if not code & 0x08:
            a(I.alu32(op, R7, imm=k))
        elif op in (I.BPF_DIV, I.BPF_MOD):
            a.jump(I.jmp(I.BPF_JEQ, R8, imm=0, wide=False), MISS)
            a(I.alu32(op, R7, R8))
        elif op in (I.BPF_LSH, I.BPF_RSH):           # shifts by 32 or more give 0
            a(I.jmp(I.BPF_JLT, R8, imm=32, off=2, wide=False), I.mov32(R7, imm=0), I.ja(1), I.alu32(op, R7, R8))
        else:
            a(I.alu32(op, R7, R8))
    else:
        raise AssertionError(f"opcode 0x{code:x} in a block body")
    return False


def _terminator(a: _Asm, blk: Any, blocks: Any, hook: str, match: int | None) -> None:
    nxt = ("block", blk.index + 1)

    def goto(target: int) -> None:
        if target != blk.index + 1:
            a.jump(I.ja(), ("block", target))

    if blk.term == "fall":
        goto(blk.succs[0])
    elif blk.term == "ja" and blk.charge:
        # a backward jump: charge the loop budget as the VM does, then loop under may_goto
        a(I.ldx(I.BPF_DW, R3, R10, LEFT_SLOT))
        a.jump(I.jmp(I.BPF_JLT, R3, imm=blk.charge), MISS)
        a(I.alu64(I.BPF_SUB, R3, imm=blk.charge), I.stx(I.BPF_DW, R10, LEFT_SLOT, R3))
        # Divergence: the kernel stops a may_goto loop after BPF_MAX_LOOPS (8M) laps; the VM's
        # budget allows more only to a one-instruction loop over a packet of more than 256 KiB
        a.jump(Insn(MAY_GOTO), MISS)
        a.jump(I.ja(), ("block", blk.succs[0]))
    elif blk.term == "ja":
        goto(blk.succs[0])
    elif blk.term == "ret_k":
        k = blk.term_insn[1][3]
        if match is None:                            # socket: the cBPF value itself
            a(I.mov32(R0, imm=k), I.exit_())
        else:
            a.jump(I.ja(), MATCH if k else MISS)
    elif blk.term == "ret_a":
        if match is None:
            a(I.mov32(R0, R7), I.exit_())
        else:
            a.jump(I.jmp(I.BPF_JNE, R7, imm=0, wide=False), MATCH)
            a.jump(I.ja(), MISS)
    else:                                            # jcond
        code, _jt, _jf, k = blk.term_insn[1]
        op = _JMP_OP[code & 0xF0]
        src = R8 if code & 0x08 else None
        if src is not None:
            k = 0                                    # the immediate of a register compare is reserved
        t, f = blk.succs
        if t == blk.index + 1 and op in _NEGATE:
            a.jump(I.jmp(_NEGATE[op], R7, src, imm=k, wide=False), ("block", f))
        else:
            a.jump(I.jmp(op, R7, src, imm=k, wide=False), ("block", t))
            goto(f)
    del nxt
