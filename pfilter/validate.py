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
"""
from .errors import InvalidProgramError
from .opcodes import (BPF_ALU, BPF_DIV, BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LSH,
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


def validate(insns, max_insns=BPF_MAXINSNS):
    """Check a sequence of (code, jt, jf, k) tuples; raise InvalidProgramError or return None."""
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
