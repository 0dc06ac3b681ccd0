#!/usr/bin/env python3
"""Writes pfilter/_vm_cases.pxi, the VM's dispatch: the cases of conditional jumps and load+jump pairs.

pfilter/_vm.pyx is written by hand; it includes this file, whose one function, dispatch(), its
loop calls (inlined by the C compiler) for every instruction: one C `switch` on the instruction's
slot, one jump table. The 64 cases of jumps and pairs differ only in their load and their test,
so they are written here from two small tables, each load and each test spelled once, their
semantics those of pfilter/_cbpf.pxd; the last three cases send the loop to its own code (ret #k,
a JEQ_RUN, any other instruction). setup.py runs this script
before it compiles the VM, so the file (git-ignored) is never edited or committed;
tests/test_vm_dispatch.py checks it is up to date.

    python3 scripts/gen_vm.py          # (re)write pfilter/_vm_cases.pxi
    python3 scripts/gen_vm.py --check  # exit 1 if it is missing or out of date
"""
import argparse
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "pfilter" / "_vm_cases.pxi"

# The loads that pair with a following conditional jump: (as _vm.pyx's pair_slot numbers them; name;
# the _cbpf.pxd call, False when the program returns 0). Slot 0: a jump on its own.
LOADS = [(0, None, None)] + [
    (1 + 3 * ind + size, f"{name} [{'x+' if ind else ''}k]",
     f"load_{'ind' if ind else 'abs'}(p, buflen, {'X, ' if ind else ''}k, {4 >> size}, host, A)")
    for ind in (0, 1) for size, name in enumerate(("ld", "ldh", "ldb"))
] + [(7, "and #k", "alu(0x54, A, k)")]
JUMPS = ["jeq", "jgt", "jge", "jset"]       # BPF_OP 0x10, 0x20, 0x30, 0x40
# The slots after the pairs' (_vm.pyx's enum): what dispatch() returns for them
ROUTES = [("SLOT_RET_K", "GO_RET_K", "ret #k"), ("SLOT_JEQ_RUN", "GO_JEQ_RUN", "a run of jeq #k (JEQ_RUN)"),
          ("SLOT_OTHER", "GO_OTHER", "any other instruction: the loop's switch on its opcode")]

HEADER = """\
# Written by scripts/gen_vm.py when setup.py builds pfilter/_vm.pyx (which includes it): do not
# edit.

cdef inline inlined_int dispatch(const vm_insn* prog, const vm_insn* pc, const uint8_t* p, uint32_t buflen,
                                 uint32_t* A, uint32_t X, counter_t* counter, order_t* order) noexcept nogil:
    \"\"\"Whether the conditional jump, or load+jump pair (pair_slot), at pc is taken (1) or not (0);
    -1 when the program returns 0; GO_RET_K, GO_JEQ_RUN or GO_OTHER for the loop's own cases. A
    pair's load runs first; once it succeeds, the jump is counted, traced or profiled as the
    instruction it is (pc + 1). Each case returns constants from the arms of an if/else, so that
    once inlined the caller's branch on the result is threaded into each case: a predictable
    branch per case, not a conditional move (which would serialise long chains of tests, as in
    20-host filters).\"\"\"
    cdef uint32_t slot = pc.slot
    cdef uint32_t k = pc.k
    cdef bint host = order_t is HostOrder
"""
CASE = """\
    {kw} slot == {op}:   # {what}
{load}        if jump_taken(0x{jcode:x}, A[0], {rhs}):
            return 1
        return 0
"""
LOAD = """\
        if not {call}:
            return -1
        count(counter, pc - prog + 1, A[0], X)
"""


def cases():
    """The text of pfilter/_vm_cases.pxi."""
    out = [HEADER]
    for slot, name, call in LOADS:
        for j, jump in enumerate(JUMPS):
            for x in (0, 1):
                what = f"{jump} {'x' if x else '#k'}" if slot == 0 else f"{name}; {jump} {'x' if x else '#k2'}"
                out.append(CASE.format(kw="elif" if len(out) > 1 else "if", op=8 * slot + 2 * j + x,
                                       what=what, load=LOAD.format(call=call) if call else "",
                                       jcode=0x15 + 0x10 * j + 8 * x, rhs="X" if x else "pc.k2"))
    for slot, go, what in ROUTES:
        out.append(f"    elif slot == {slot}:   # {what}\n        return {go}\n")
    out.append("    return -1                # not a slot decode() writes\n")
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if pfilter/_vm_cases.pxi is missing or out of date")
    args = ap.parse_args()
    text = cases()
    if args.check:
        return 0 if OUT.exists() and OUT.read_text() == text else 1
    if not OUT.exists() or OUT.read_text() != text:     # unchanged: keep its time, no rebuild
        OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
