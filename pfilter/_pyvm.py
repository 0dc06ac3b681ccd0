"""The pure-Python twin of pfilter/_vm.pyx: the same semantics, instruction for instruction.

Imports pfilter.validate (for loop_budget) only. Selected instead of the
Cython VM when PFILTER_PUREPYTHON=1 is set at import time or the extension is not built; the test
suite runs every VM test against both.

Semantics are libpcap's bpf_filter(): registers A and X start at 0, scratch memory M[] at 0; loads
are big-endian; a load past the captured length, or a division/modulo by X = 0, makes the program
return 0; a shift by X >= 32 gives 0; `len` is the wire length. Linux metadata loads (SKF_AD_*)
read past any real packet and so return 0, as in libpcap's userland. A taken backward `ja`
charges its loop's span against pfilter.validate.loop_budget(caplen); past it the program returns 0.

The seccomp mode (run_records) is run_one with host-order 32-bit loads over 64-byte
`struct seccomp_data` records whose length is 64, as in pfilter/_vm.pyx.
"""
import sys

import numpy as np

from .validate import loop_budget

M32 = 0xFFFFFFFF


#: the seccomp mode's record: sizeof(struct seccomp_data)
SECCOMP_RECORD = 64


def run_one(insns, pkt, wirelen, steps=None, order="big", trace=None):
    """Run a validated program (list of (code, jt, jf, k)) on one packet (bytes); return u32.
    `steps`, a one-element list, receives the number of instructions executed; `order` is the
    byte order of 32-bit loads ("big" for packets, sys.byteorder for seccomp records); `trace`,
    a list, receives (index, A, X) before every instruction executed (as _vm.trace_one)."""
    A = X = 0
    mem = [0] * 16
    buflen = len(pkt)
    pc = 0
    spent, budget = 0, loop_budget(buflen)
    while True:
        code, jt, jf, k = insns[pc]
        if trace is not None:
            trace.append((pc, A, X))
        pc += 1
        if steps is not None:
            steps[0] += 1
        if code == 0x06:        # ret #k
            return k
        elif code == 0x16:      # ret a
            return A
        elif code == 0x20:      # ld [k]
            if k > buflen or 4 > buflen - k:
                return 0
            A = int.from_bytes(pkt[k:k + 4], order)
        elif code == 0x28:      # ldh [k]
            if k > buflen or 2 > buflen - k:
                return 0
            A = (pkt[k] << 8) | pkt[k + 1]
        elif code == 0x30:      # ldb [k]
            if k >= buflen:
                return 0
            A = pkt[k]
        elif code == 0x80:      # ld #pktlen
            A = wirelen
        elif code == 0x81:      # ldx #pktlen
            X = wirelen
        elif code == 0x40:      # ld [x + k]
            o = (X + k) & M32
            if k > buflen or X > buflen - k or 4 > buflen - o:
                return 0
            A = int.from_bytes(pkt[o:o + 4], order)
        elif code == 0x48:      # ldh [x + k]
            o = (X + k) & M32
            if k > buflen or X > buflen - k or 2 > buflen - o:
                return 0
            A = (pkt[o] << 8) | pkt[o + 1]
        elif code == 0x50:      # ldb [x + k]
            if k >= buflen or X >= buflen - k:
                return 0
            A = pkt[X + k]
        elif code == 0xB1:      # ldxb 4*([k]&0xf)
            if k >= buflen:
                return 0
            X = (pkt[k] & 0xF) << 2
        elif code == 0x00:      # ld #k
            A = k
        elif code == 0x01:      # ldx #k
            X = k
        elif code == 0x60:      # ld M[k]
            A = mem[k]
        elif code == 0x61:      # ldx M[k]
            X = mem[k]
        elif code == 0x02:      # st M[k]
            mem[k] = A
        elif code == 0x03:      # stx M[k]
            mem[k] = X
        elif code == 0x05:      # ja
            if k & 0x80000000:  # backward: charge the loop's span, target through this ja
                spent += (1 << 32) - k
                if spent > budget:
                    return 0
                pc += k - (1 << 32)
            else:
                pc += k
        elif code == 0x15:      # jeq #k
            pc += jt if A == k else jf
        elif code == 0x25:      # jgt #k
            pc += jt if A > k else jf
        elif code == 0x35:      # jge #k
            pc += jt if A >= k else jf
        elif code == 0x45:      # jset #k
            pc += jt if A & k else jf
        elif code == 0x1D:      # jeq x
            pc += jt if A == X else jf
        elif code == 0x2D:      # jgt x
            pc += jt if A > X else jf
        elif code == 0x3D:      # jge x
            pc += jt if A >= X else jf
        elif code == 0x4D:      # jset x
            pc += jt if A & X else jf
        elif code & 0x07 == 0x04:   # ALU
            op = code & 0xF0
            if op == 0x80:
                A = (-A) & M32
                continue
            v = X if code & 0x08 else k
            if op == 0x00:
                A = (A + v) & M32
            elif op == 0x10:
                A = (A - v) & M32
            elif op == 0x20:
                A = (A * v) & M32
            elif op == 0x30:
                if v == 0:
                    return 0
                A //= v
            elif op == 0x90:
                if v == 0:
                    return 0
                A %= v
            elif op == 0x50:
                A &= v
            elif op == 0x40:
                A |= v
            elif op == 0xA0:
                A ^= v
            elif op == 0x60:
                A = (A << v) & M32 if v < 32 else 0
            elif op == 0x70:
                A = A >> v if v < 32 else 0
            else:
                raise AssertionError(f"unvalidated opcode 0x{code:x}")
        elif code == 0x07:      # tax
            X = A
        elif code == 0x87:      # txa
            A = X
        else:
            raise AssertionError(f"unvalidated opcode 0x{code:x}")


def run_batch(insns, data, offsets, caplen, wirelen, out):
    """Fill out[i] with the program's return value for packet i of the batch arrays."""
    raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    for i in range(len(offsets)):
        o = int(offsets[i])
        out[i] = run_one(insns, raw[o:o + int(caplen[i])], int(wirelen[i]))
    return out


def run_records(insns, records, out):
    """The seccomp mode: out[i] = the program's return value on 64-byte record i of `records`."""
    raw = records.tobytes() if isinstance(records, np.ndarray) else bytes(records)
    for i in range(len(out)):
        out[i] = run_one(insns, raw[i * SECCOMP_RECORD:(i + 1) * SECCOMP_RECORD], SECCOMP_RECORD, order=sys.byteorder)
    return out
