"""Jump and return instructions, including libpcap's backward `ja`. Both VMs."""
import pytest
from vmcase import *  # noqa: F403

REJECT = (BPF_RET | BPF_K, 0, 0, 0)


def cond(op, src, a, operand):
    ld = [(BPF_LD | BPF_IMM, 0, 0, a)]
    if src == BPF_X:
        ld.append((BPF_LDX | BPF_IMM, 0, 0, operand))
    return run(ld + [(BPF_JMP | op | src, 0, 1, operand if src == BPF_K else 0), (BPF_RET | BPF_K, 0, 0, 1), REJECT])


@pytest.mark.parametrize("src", [BPF_K, BPF_X])
@pytest.mark.parametrize("op,a,v,taken", [
    (BPF_JEQ, 5, 5, True), (BPF_JEQ, 5, 6, False), (BPF_JGT, 6, 5, True), (BPF_JGT, 5, 5, False),
    (BPF_JGE, 5, 5, True), (BPF_JGE, 4, 5, False), (BPF_JSET, 6, 2, True), (BPF_JSET, 5, 2, False),
    (BPF_JGT, 0xFFFFFFFF, 1, True),  # comparisons are unsigned
])
def test_conditional_jump_takes_the_right_branch(vm, src, op, a, v, taken):
    assert cond(op, src, a, v) == (1 if taken else 0)


def test_jump_always_skips_forward(vm):
    assert run([(BPF_JMP | BPF_JA, 0, 0, 1), REJECT, (BPF_RET | BPF_K, 0, 0, 9)]) == 9


def test_backward_jump_loops_and_terminates(vm):
    # A counts down from 3 to 0 through a backward ja: the loop libpcap's protochain uses.
    prog = [(BPF_LD | BPF_IMM, 0, 0, 3),
            (BPF_JMP | BPF_JEQ | BPF_K, 3, 0, 0),       # 1: A == 0 -> 5
            (BPF_ALU | BPF_SUB | BPF_K, 0, 0, 1),       # 2
            (BPF_ST, 0, 0, 0),                          # 3
            (BPF_JMP | BPF_JA, 0, 0, (-4) & 0xFFFFFFFF),  # 4: -> 1
            (BPF_RET | BPF_K, 0, 0, 11)]
    assert run(prog) == 11


def test_endless_backward_loop_is_cut_off_and_rejects(vm):
    prog = [(BPF_LD | BPF_IMM, 0, 0, 1), (BPF_JMP | BPF_JA, 0, 0, 0xFFFFFFFF), ACCEPT]
    assert run(prog) == 0


def test_return_a_and_return_constant(vm):
    assert run([(BPF_LD | BPF_IMM, 0, 0, 1234), RET_A]) == 1234
    assert run([(BPF_RET | BPF_K, 0, 0, 0xFFFFFFFF)]) == 0xFFFFFFFF


def test_jump_into_the_middle_of_a_fused_load_and_compare_pair(vm):
    # insn 2-3 (ldh; jeq) fuse in the Cython VM; insn 1 jumps straight to the jeq at 3 with A = 7.
    prog = [(BPF_LD | BPF_IMM, 0, 0, 7),
            (BPF_JMP | BPF_JA, 0, 0, 1),
            (BPF_LD | BPF_H | BPF_ABS, 0, 0, 0),
            (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 7),
            (BPF_RET | BPF_K, 0, 0, 1), (BPF_RET | BPF_K, 0, 0, 2)]
    assert run(prog, b"\x00\x09") == 1
    assert run(prog[:1] + [(BPF_JMP | BPF_JA, 0, 0, 0)] + prog[2:], b"\x00\x09") == 2


def test_fused_load_past_caplen_still_rejects(vm):
    prog = [(BPF_LD | BPF_W | BPF_ABS, 0, 0, 2), (BPF_JMP | BPF_JGE | BPF_K, 0, 0, 0), ACCEPT]
    assert run(prog, b"\x01\x02\x03\x04\x05") == 0
    assert run(prog, b"\x01\x02\x03\x04\x05\x06") == 0xFFFF


def test_count_steps_counts_cbpf_instructions_on_the_taken_path(vm):
    import pfilter
    prog = pfilter.Program.from_tuples([(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (6, 0, 0, 1), (6, 0, 0, 0)])
    batch = pfilter.PacketBatch.from_packets([b"\x00" * 12 + b"\x08\x00", b"\x00" * 14, b"\x00" * 5])
    assert prog.count_steps(batch).tolist() == [3, 3, 1]
