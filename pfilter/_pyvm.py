"""The pure-Python twin of pfilter/_vm.pyx: the same semantics, instruction for instruction.

Imports pfilter.semantics (loads, ALU and jumps, the Python definition the optimizer folds with)
and pfilter.validate (loop_budget) only. Selected instead of the
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

from .semantics import alu, jump_taken, load_abs, load_ind, load_msh
from .validate import loop_budget

#: load sizes by their BPF_SIZE bits
_SIZE = {0x00: 4, 0x08: 2, 0x10: 1}


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
        elif code == 0x20 or code == 0x28 or code == 0x30:      # ld, ldh, ldb [k]
            A = load_abs(pkt, k, _SIZE[code & 0x18], order)
            if A is None:
                return 0
        elif code == 0x40 or code == 0x48 or code == 0x50:      # ld, ldh, ldb [x + k]
            A = load_ind(pkt, X, k, _SIZE[code & 0x18], order)
            if A is None:
                return 0
        elif code == 0xB1:      # ldxb 4*([k]&0xf)
            X = load_msh(pkt, k)
            if X is None:
                return 0
        elif code == 0x80:      # ld #pktlen
            A = wirelen
        elif code == 0x81:      # ldx #pktlen
            X = wirelen
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
        elif code & 0x07 == 0x05:   # jeq, jgt, jge, jset: #k or x (ja is above)
            pc += jt if jump_taken(code & 0xF0, A, X if code & 0x08 else k) else jf
        elif code & 0x07 == 0x04:   # ALU
            A = alu(code & 0xF0, A, X if code & 0x08 else k)
            if A is None:
                return 0
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
