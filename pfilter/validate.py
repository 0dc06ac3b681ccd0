"""The cBPF validator: refuses, before anything runs, every program that could misbehave.

Imports only pfilter.errors and pfilter.opcodes. Runs once per program; the VMs then trust it
(they still bound backward jumps, the one thing no static check can decide).

What it refuses, each with InvalidProgramError naming the instruction:
  an empty program; more than BPF_MAXINSNS (4096) instructions (COMPILED_MAX_INSNS for programs
  pfilter's compiler made); an unknown opcode (`ret x`
  included); a jump whose target is outside the program; a scratch-memory index >= 16; a constant
  division or modulo by zero; a constant shift by 32 or more; a last instruction that is not `ret`.

Divergence: libpcap's bpf_validate() refuses every backward `ja`, yet libpcap's own code generator
emits one for `ip6 protochain`; this validator accepts a backward `ja` that stays inside the program.
The VMs bound the instructions a packet may spend in loops (loop_budget below), so every program
runs in a time bounded by the packet's length.

validate(insns, seccomp=True) applies the kernel's rules for seccomp filters on top (Linux
kernel/seccomp.c: seccomp_check_filter(), and net/core/filter.c: bpf_check_classic()'s
check_load_and_stores()): only the opcodes of SECCOMP_OPCODES; loads from `struct seccomp_data`
only as aligned 32-bit absolute loads inside its 64 bytes (`ld #len` reads 64); no backward
jump; no scratch-memory load that some path reaches before a store to that word.
"""
from .errors import InvalidProgramError
from .opcodes import (BPF_ABS, BPF_ALU, BPF_DIV, BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LSH,
                      BPF_MAXINSNS, BPF_MEM, BPF_MEMWORDS, BPF_MOD, BPF_RET, BPF_RSH, BPF_ST,
                      BPF_STX, VALID_OPCODES, BPF_CLASS, BPF_MODE, BPF_OP, BPF_SRC)

#: The loop budget, the one rule every VM (pfilter._vm, pfilter._pyvm, pfilter._classify) follows.
#: Each taken backward `ja` charges the instructions its loop spans (from its target through the
#: `ja` itself); once one packet's charges pass loop_budget(caplen) the program returns 0. So no
#: packet runs more than loop_budget(caplen) + len(program) instructions.
#: Divergence: libpcap's bpf_filter() loops for as long as the program does (and counted
#: 262144 backward jumps here before, ~1e9 instructions for a 4096-instruction loop). libpcap's
#: own loop, `protochain`, advances at least 8 captured bytes per pass and charges at most 28
#: (its longest backward `ja`): under 4 per byte, far inside the budget, so its answers never
#: change (tests/test_robust_vm.py runs 8000 extension headers against libpcap).
LOOP_BUDGET_BASE = 1 << 16
LOOP_BUDGET_PER_BYTE = 32
LOOP_BUDGET_MAX = 1 << 24


def loop_budget(caplen):
    """Instructions a packet of `caplen` captured bytes may spend in loops."""
    return min(LOOP_BUDGET_BASE + LOOP_BUDGET_PER_BYTE * caplen, LOOP_BUDGET_MAX)


#: the length limit for programs pfilter's own compiler produced. Divergence: the kernel and
#: libpcap's bpf_validate() stop at BPF_MAXINSNS (4096), the limit every program from outside
#: gets here too; libpcap's userland compiler and interpreter have no limit, and a filter naming
#: 1,000 hosts compiles to more than 4096 instructions. Such programs run in pfilter's VMs (and
#: in libpcap's bpf_filter) but Program.sock_fprog() refuses them, as the kernel would.
COMPILED_MAX_INSNS = 1 << 22

#: sizeof(struct seccomp_data): the record a seccomp filter reads
SECCOMP_DATA_SIZE = 64

#: The opcodes the kernel's seccomp_check_filter() accepts (no `mod`, no packet loads other than
#: `ld [k]`, no `ldxb 4*([k]&0xf)`); tests/test_seccomp_validate.py checks each of the 256
#: against the running kernel.
SECCOMP_OPCODES = frozenset({
    0x00, 0x01, 0x02, 0x03, 0x07, 0x87,            # ld #k, ldx #k, st, stx, tax, txa
    0x20, 0x80, 0x81, 0x60, 0x61,                  # ld [k], ld #len, ldx #len, ld M[k], ldx M[k]
    0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c,   # add sub mul div or and
    0x64, 0x6c, 0x74, 0x7c, 0x84, 0xa4, 0xac,      # lsh rsh neg xor
    0x05, 0x15, 0x1d, 0x25, 0x2d, 0x35, 0x3d, 0x45, 0x4d,                     # ja, jeq jgt jge jset
    0x06, 0x16,                                    # ret #k, ret a
})


def validate(insns, max_insns=BPF_MAXINSNS, seccomp=False):
    """Check a sequence of (code, jt, jf, k) tuples; raise InvalidProgramError or return None.
    With seccomp=True, the kernel's seccomp rules too (see the module's docstring)."""
    n = len(insns)
    if n == 0:
        raise InvalidProgramError("empty program: a cBPF program needs at least a `ret`")
    if n > max_insns:
        raise InvalidProgramError(f"program has {n} instructions, more than the limit of {max_insns}")
    for i, (code, jt, jf, k) in enumerate(insns):
        if code not in VALID_OPCODES:
            what = "`ret x` is not a cBPF instruction" if code == (BPF_RET | 0x08) else f"unknown opcode 0x{code:x}"
            raise InvalidProgramError(what, i)
        cls = BPF_CLASS(code)
        if cls in (BPF_LD, BPF_LDX) and BPF_MODE(code) == BPF_MEM or cls in (BPF_ST, BPF_STX):
            if k >= BPF_MEMWORDS:
                raise InvalidProgramError(f"scratch memory index {k} out of range (M[0]..M[{BPF_MEMWORDS - 1}])", i)
        elif cls == BPF_ALU and BPF_SRC(code) == BPF_K:
            op = BPF_OP(code)
            if op in (BPF_DIV, BPF_MOD) and k == 0:
                raise InvalidProgramError("division by constant zero" if op == BPF_DIV else "modulo by constant zero", i)
            if op in (BPF_LSH, BPF_RSH) and k >= 32:
                raise InvalidProgramError(f"constant shift by {k} (must be < 32)", i)
        elif cls == BPF_JMP:
            if BPF_OP(code) == BPF_JA:
                off = k - (1 << 32) if k & 0x80000000 else k
                target = i + 1 + off
                if not 0 <= target < n:
                    raise InvalidProgramError(f"jump to {target}, outside the program (0..{n - 1})", i)
            else:
                for label, off in (("true", jt), ("false", jf)):
                    if i + 1 + off >= n:
                        raise InvalidProgramError(
                            f"{label} branch jumps to {i + 1 + off}, past the end of the program ({n} instructions)", i)
    if BPF_CLASS(insns[-1][0]) != BPF_RET:
        raise InvalidProgramError("the last instruction must be `ret`", n - 1)
    if seccomp:
        _validate_seccomp(insns)


def _validate_seccomp(insns):
    """The kernel's extra rules for seccomp filters, on a program validate() has accepted."""
    for i, (code, _jt, _jf, k) in enumerate(insns):
        if code not in SECCOMP_OPCODES:
            raise InvalidProgramError(f"opcode 0x{code:02x} is not allowed in a seccomp filter (only `ld [k]` "
                                      "reads struct seccomp_data; no `mod`, no indirect or 8/16-bit loads)", i)
        if code == BPF_LD | BPF_ABS and (k >= SECCOMP_DATA_SIZE or k & 3):
            raise InvalidProgramError(f"seccomp load `ld [{k}]` is not an aligned 32-bit word inside "
                                      f"struct seccomp_data (offset 0..{SECCOMP_DATA_SIZE - 4}, a multiple of 4)", i)
        if code == BPF_JMP | BPF_JA and k & 0x80000000:
            raise InvalidProgramError("backward jump: the kernel accepts only forward jumps", i)
    # linux: check_load_and_stores(): a scratch word may be read only once every path to the
    # load has stored it
    n = len(insns)
    masks = [0xFFFF] * n
    valid = 0
    for i, (code, jt, jf, k) in enumerate(insns):
        valid &= masks[i]
        if code in (BPF_ST, BPF_STX):
            valid |= 1 << k
        elif code in (BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM):
            if not valid >> k & 1:
                raise InvalidProgramError(f"reads scratch memory M[{k}] before every path to it has stored it", i)
        elif BPF_CLASS(code) == BPF_JMP:
            if BPF_OP(code) == BPF_JA:
                masks[i + 1 + k] &= valid
            else:
                masks[i + 1 + jt] &= valid
                masks[i + 1 + jf] &= valid
            valid = 0xFFFF
