"""The kernel's rules where they differ from the packet VM's (libpcap's): a shift by X. Imports
pfilter.semantics and pfilter.validate only.

libpcap's bpf_filter() (and so pfilter's VM) gives 0 for `A <<= X` / `A >>= X` when X >= 32; the
kernel runs a seccomp filter as 32-bit eBPF, whose shifts take X modulo 32 (the interpreter's
`SRC & 31`, x86's `shl %cl`): tests/test_seccomp_kernel.py checks it on the running kernel.
Programs with such a shift (opcodes 0x6c, 0x7c; libseccomp never writes one) run here, one record
at a time in Python; every other seccomp program runs in the VM's seccomp mode, whose other rules
(division by X = 0 returns 0, `ld #len` is 64) are the kernel's already.
"""
from __future__ import annotations

import sys

from ..semantics import alu, jump_taken
from ..validate import SECCOMP_DATA_SIZE

#: `A <<= X`, `A >>= X`
SHIFT_BY_X = (0x6C, 0x7C)


def needs_kernel_rules(insns) -> bool:
    """Whether the program has a shift by X, where the kernel and libpcap differ."""
    return any(code in SHIFT_BY_X for code, _jt, _jf, _k in insns)


def run_one(insns, rec: bytes) -> int:
    """The return value of a validated seccomp program (code, jt, jf, k) on one 64-byte record,
    as the kernel computes it."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls = code & 0x07
        if code == 0x06:
            return k
        if code == 0x16:
            return a
        if code == 0x20:                    # ld [k]: aligned, inside the record (validated)
            a = int.from_bytes(rec[k:k + 4], sys.byteorder)
        elif code == 0x80:
            a = SECCOMP_DATA_SIZE
        elif code == 0x81:
            x = SECCOMP_DATA_SIZE
        elif code == 0x00:
            a = k
        elif code == 0x01:
            x = k
        elif code == 0x60:
            a = mem[k]
        elif code == 0x61:
            x = mem[k]
        elif code == 0x02:
            mem[k] = a
        elif code == 0x03:
            mem[k] = x
        elif code == 0x07:
            x = a
        elif code == 0x87:
            a = x
        elif code == 0x05:                  # ja: forward only in a seccomp filter
            pc += k
        elif cls == 0x05:
            pc += jt if jump_taken(code & 0xF0, a, x if code & 0x08 else k) else jf
        elif code == 0x6C:
            a = (a << (x & 31)) & 0xFFFFFFFF
        elif code == 0x7C:
            a >>= x & 31
        elif cls == 0x04:
            a = alu(code & 0xF0, a, x if code & 0x08 else k)
            if a is None:                   # division by X = 0: the kernel returns 0
                return 0
        else:
            raise AssertionError(f"unvalidated seccomp opcode 0x{code:x}")


def run_records(insns, data, out):
    """out[i] = the program's return value on record i of `data` (uint8, whole 64-byte records)."""
    raw = data.tobytes()
    for i in range(len(out)):
        out[i] = run_one(insns, raw[i * SECCOMP_DATA_SIZE:(i + 1) * SECCOMP_DATA_SIZE])
    return out
