"""eBPF instructions: opcode constants (the kernel's names), one encoder, one disassembler.

Imports nothing from pfilter. An instruction is `Insn(code, dst, src, off, imm)`, laid out as the
kernel's `struct bpf_insn` (8 bytes, host byte order):

    byte 0     byte 1               bytes 2-3     bytes 4-7
   +--------+----------+----------+-------------+----------------+
   | code   | src (4)  | dst (4)  | off (s16)   | imm (s32)      |   (nibbles: dst low on little-endian)
   +--------+----------+----------+-------------+----------------+

The code byte is, as in classic BPF, op | source | class for ALU/JMP and mode | size | class for
loads and stores; eBPF adds the classes JMP32 and ALU64 and the ops MOV, ARSH, END, JNE, JLT, ...
"""
from __future__ import annotations

import struct
import sys
from typing import NamedTuple

# classes
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)
# sizes
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
# modes
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM = 0x00, 0x20, 0x40, 0x60
# ALU ops
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV, BPF_ARSH, BPF_END = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0
# jump ops
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50
BPF_JSGT, BPF_JSGE, BPF_CALL, BPF_EXIT, BPF_JLT, BPF_JLE = 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0
# operand source; for BPF_END the byte order converted to
BPF_K, BPF_X = 0x00, 0x08
BPF_TO_LE, BPF_TO_BE = 0x00, 0x08

# registers: R0 return value, R1-R5 arguments (clobbered by calls), R6-R9 callee-saved, R10 frame pointer
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

_LITTLE = sys.byteorder == "little"
_PACK = struct.Struct("=BBhi")


class Insn(NamedTuple):
    """One eBPF instruction; `off` is a signed 16-bit offset, `imm` a signed 32-bit immediate."""
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        regs = (self.src << 4 | self.dst) if _LITTLE else (self.dst << 4 | self.src)
        imm = self.imm - (1 << 32) if self.imm >= 1 << 31 else self.imm
        return _PACK.pack(self.code, regs, self.off, imm)


def encode(insns: list[Insn]) -> bytes:
    """The `struct bpf_insn` array of insns, in host byte order."""
    return b"".join(i.encode() for i in insns)


def decode(raw: bytes) -> list[Insn]:
    """The inverse of encode()."""
    out = []
    for code, regs, off, imm in _PACK.iter_unpack(raw):
        dst, src = (regs & 15, regs >> 4) if _LITTLE else (regs >> 4, regs & 15)
        out.append(Insn(code, dst, src, off, imm))
    return out


# ----------------------------------------------------------------------------- builders
def alu32(op: int, dst: int, src: int | None = None, imm: int = 0) -> Insn:
    """dst = (u32)(dst OP src) with a register src, else with the immediate."""
    return Insn(BPF_ALU | op | (BPF_X if src is not None else BPF_K), dst, src or 0, 0, imm)


def alu64(op: int, dst: int, src: int | None = None, imm: int = 0) -> Insn:
    return Insn(BPF_ALU64 | op | (BPF_X if src is not None else BPF_K), dst, src or 0, 0, imm)


def mov32(dst: int, src: int | None = None, imm: int = 0) -> Insn:
    return alu32(BPF_MOV, dst, src, imm)


def mov64(dst: int, src: int | None = None, imm: int = 0) -> Insn:
    return alu64(BPF_MOV, dst, src, imm)


def be(dst: int, bits: int) -> Insn:
    """dst = big-endian value of its low `bits` bits (a byte swap on a little-endian host)."""
    return Insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits)


def ldx(size: int, dst: int, src: int, off: int) -> Insn:
    """dst = *(size *)(src + off), zero-extended."""
    return Insn(BPF_LDX | BPF_MEM | size, dst, src, off, 0)


def stx(size: int, dst: int, off: int, src: int) -> Insn:
    """*(size *)(dst + off) = src."""
    return Insn(BPF_STX | BPF_MEM | size, dst, src, off, 0)


def st(size: int, dst: int, off: int, imm: int) -> Insn:
    return Insn(BPF_ST | BPF_MEM | size, dst, 0, off, imm)


def ld_abs(size: int, imm: int) -> Insn:
    """R0 = packet[imm] (legacy socket-filter load through R6 = skb; the program returns 0 when
    the load falls past the packet)."""
    return Insn(BPF_LD | BPF_ABS | size, 0, 0, 0, imm)


def ld_ind(size: int, src: int, imm: int) -> Insn:
    """R0 = packet[src + imm], legacy, as ld_abs."""
    return Insn(BPF_LD | BPF_IND | size, 0, src, 0, imm)


def jmp(op: int, dst: int, src: int | None = None, imm: int = 0, off: int = 0, wide: bool = True) -> Insn:
    """if (dst OP src/imm) goto +off; 64-bit compare when wide, else 32-bit (JMP32)."""
    cls = BPF_JMP if wide else BPF_JMP32
    return Insn(cls | op | (BPF_X if src is not None else BPF_K), dst, src or 0, off, imm)


def ja(off: int = 0) -> Insn:
    return Insn(BPF_JMP | BPF_JA, 0, 0, off, 0)


def call(helper: int) -> Insn:
    return Insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper)


def exit_() -> Insn:
    return Insn(BPF_JMP | BPF_EXIT)


# ----------------------------------------------------------------------------- listing
_ALU = {BPF_ADD: "+=", BPF_SUB: "-=", BPF_MUL: "*=", BPF_DIV: "/=", BPF_OR: "|=", BPF_AND: "&=",
        BPF_LSH: "<<=", BPF_RSH: ">>=", BPF_MOD: "%=", BPF_XOR: "^=", BPF_MOV: "=", BPF_ARSH: "s>>="}
_JMP = {BPF_JEQ: "==", BPF_JGT: ">", BPF_JGE: ">=", BPF_JSET: "&", BPF_JNE: "!=", BPF_JSGT: "s>",
        BPF_JSGE: "s>=", BPF_JLT: "<", BPF_JLE: "<=", 0xC0: "s<", 0xD0: "s<="}
_SIZE = {BPF_W: "u32", BPF_H: "u16", BPF_B: "u8", BPF_DW: "u64"}


def _off(off: int) -> str:
    return f"{off:+d}"


def text(insn: Insn, helpers: dict[int, str] | None = None) -> str:
    """One instruction in the kernel verifier log's notation (`r7 = *(u16 *)(r6 +12)`)."""
    code, dst, src, off, imm = insn
    cls, op = code & 7, code & 0xF0
    if cls in (BPF_ALU, BPF_ALU64):
        r = "w" if cls == BPF_ALU else "r"
        if op == BPF_NEG:
            return f"{r}{dst} = -{r}{dst}"
        if op == BPF_END:
            return f"r{dst} = {'be' if code & BPF_X else 'le'}{imm} r{dst}"
        operand = f"{r}{src}" if code & BPF_X else str(imm)
        return f"{r}{dst} {_ALU.get(op, '?=')} {operand}"
    if cls in (BPF_JMP, BPF_JMP32):
        if op == BPF_EXIT:
            return "exit"
        if op == BPF_CALL:
            name = (helpers or {}).get(imm)
            return f"call {name}#{imm}" if name else f"call {imm}"
        if op == BPF_JA:
            return f"gotol pc{_off(imm)}" if cls == BPF_JMP32 else f"goto pc{_off(off)}"
        r = "r" if cls == BPF_JMP else "w"
        operand = f"{r}{src}" if code & BPF_X else (str(imm) if imm < 10 else hex(imm & 0xFFFFFFFF))
        return f"if {r}{dst} {_JMP.get(op, '?')} {operand} goto pc{_off(off)}"
    size = _SIZE[code & 0x18]
    mode = code & 0xE0
    if cls == BPF_LDX:
        return f"r{dst} = *({size} *)(r{src} {_off(off)})"
    if cls == BPF_STX:
        return f"*({size} *)(r{dst} {_off(off)}) = r{src}"
    if cls == BPF_ST:
        return f"*({size} *)(r{dst} {_off(off)}) = {imm}"
    if mode == BPF_ABS:
        return f"r0 = *({size} *)skb[{imm}]"
    if mode == BPF_IND:
        return f"r0 = *({size} *)skb[r{src} + {imm}]"
    return f"r{dst} = {imm} ll"


def listing(insns: list[Insn], helpers: dict[int, str] | None = None) -> str:
    """The program as numbered lines, one per instruction (newline-terminated)."""
    return "".join(f"{i:4d}: {text(insn, helpers)}\n" for i, insn in enumerate(insns))
