"""cBPF's semantics in Python, written once: the pure-Python VM (pfilter._pyvm) runs programs with
these functions and the optimizer (pfilter.optimizer.values) folds constants with them.

Imports pfilter.opcodes only. The native twin is pfilter/_cbpf.pxd (the Cython VM and the
classifier's engine); tests/test_semantics_native.py checks that the two agree. The loop budget
is pfilter.validate.loop_budget.

Semantics are libpcap's bpf_filter(): 32-bit unsigned arithmetic; a division or modulo by zero
returns 0 from the program (None here); a shift by 32 or more gives 0; loads are big-endian
(host order on request: the seccomp mode's records) and a load that would read past the
captured length returns 0 from the program (None here).
"""
from .opcodes import (BPF_ADD, BPF_AND, BPF_DIV, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JSET, BPF_LSH,
                      BPF_MOD, BPF_MUL, BPF_NEG, BPF_OR, BPF_RSH, BPF_SUB, BPF_XOR)

M32 = 0xFFFFFFFF

__all__ = ["M32", "alu", "jump_taken", "load_abs", "load_ind", "load_msh"]


def alu(op, a, b):
    """A <op> b for the ALU operation op (BPF_OP bits; b unused by neg), 32-bit; None for a
    division or modulo by zero (the program returns 0)."""
    if op == BPF_ADD:
        return (a + b) & M32
    if op == BPF_SUB:
        return (a - b) & M32
    if op == BPF_MUL:
        return (a * b) & M32
    if op == BPF_DIV:
        return None if b == 0 else a // b
    if op == BPF_MOD:
        return None if b == 0 else a % b
    if op == BPF_OR:
        return a | b
    if op == BPF_AND:
        return a & b
    if op == BPF_XOR:
        return a ^ b
    if op == BPF_LSH:
        return (a << b) & M32 if b < 32 else 0
    if op == BPF_RSH:
        return a >> b if b < 32 else 0
    if op == BPF_NEG:
        return (-a) & M32
    raise ValueError(f"unknown ALU operation {op:#x}")


def jump_taken(op, a, b):
    """Whether the conditional jump op (BPF_OP bits: jeq, jgt, jge, jset) comparing a with b is
    taken."""
    if op == BPF_JEQ:
        return a == b
    if op == BPF_JGT:
        return a > b
    if op == BPF_JGE:
        return a >= b
    if op == BPF_JSET:
        return bool(a & b)
    raise ValueError(f"unknown conditional jump {op:#x}")


def load_abs(pkt, k, size, order="big"):
    """`ld [k]` of size (4, 2 or 1) bytes of the captured bytes pkt; None past their end."""
    if k > len(pkt) or size > len(pkt) - k:
        return None
    return int.from_bytes(pkt[k:k + size], order if size == 4 else "big")


def load_ind(pkt, x, k, size, order="big"):
    """`ld [x + k]` of size bytes; None past the captured bytes (checked without overflow, as
    bpf_filter() does with 32-bit operands)."""
    if k > len(pkt) or x > len(pkt) - k:
        return None
    return load_abs(pkt, x + k, size, order)


def load_msh(pkt, k):
    """`ldxb 4*([k]&0xf)`: the IPv4 header length at byte k; None when it is not captured."""
    if k >= len(pkt):
        return None
    return (pkt[k] & 0xF) << 2
