"""The validator refuses every program that could misbehave, naming the instruction."""
import pytest

import pfilter
import pfilter.validate
from pfilter.opcodes import *  # noqa: F403

OK = (BPF_RET | BPF_K, 0, 0, 1)


def refused(insns):
    with pytest.raises(pfilter.InvalidProgramError) as info:
        pfilter.Program.from_tuples(insns)
    return info.value


def test_empty_program_is_refused():
    assert "empty" in str(refused([]))


def test_program_longer_than_4096_instructions_is_refused():
    err = refused([(BPF_LD | BPF_IMM, 0, 0, 0)] * 4096 + [OK])
    assert "4096" in str(err)
    assert len(pfilter.Program.from_tuples([(BPF_LD | BPF_IMM, 0, 0, 0)] * 4095 + [OK])) == 4096


@pytest.mark.parametrize("code", [0x0E, 0xFF, 0x08, 0x27, 0xC4, 0x55, 0x1E, 0x100])
def test_unknown_opcode_is_refused_with_its_index(code):
    err = refused([(BPF_LD | BPF_IMM, 0, 0, 0), (code, 0, 0, 0), OK])
    assert err.index == 1 and "instruction 1" in str(err)


def test_ret_x_is_refused():
    assert "ret x" in str(refused([(BPF_RET | BPF_X, 0, 0, 0)]))


@pytest.mark.parametrize("insn", [(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 0), (BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),
                                  (BPF_JMP | BPF_JA, 0, 0, 1), (BPF_JMP | BPF_JA, 0, 0, 0xFFFFFFFE)])
def test_jump_out_of_range_is_refused(insn):
    err = refused([insn, OK])
    assert err.index == 0


@pytest.mark.parametrize("code", [BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM, BPF_ST, BPF_STX])
def test_scratch_index_16_or_more_is_refused(code):
    assert "scratch" in str(refused([(code, 0, 0, 16), OK]))
    pfilter.Program.from_tuples([(code, 0, 0, 15), OK])


@pytest.mark.parametrize("op", [BPF_DIV, BPF_MOD])
def test_constant_division_by_zero_is_refused(op):
    assert "zero" in str(refused([(BPF_ALU | op | BPF_K, 0, 0, 0), OK]))


@pytest.mark.parametrize("op", [BPF_LSH, BPF_RSH])
def test_constant_shift_of_32_or_more_is_refused(op):
    refused([(BPF_ALU | op | BPF_K, 0, 0, 32), OK])
    pfilter.Program.from_tuples([(BPF_ALU | op | BPF_K, 0, 0, 31), OK])


def test_last_instruction_must_be_ret():
    err = refused([OK, (BPF_LD | BPF_IMM, 0, 0, 0)])
    assert err.index == 1 and "ret" in str(err)


def test_backward_jump_inside_the_program_is_accepted():
    prog = pfilter.Program.from_tuples([(BPF_LD | BPF_IMM, 0, 0, 0), (BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 1),
                                        (BPF_JMP | BPF_JA, 0, 0, 0xFFFFFFFE), OK])
    assert len(prog) == 4


def test_malformed_tuples_are_refused_not_crashed():
    for bad in ([(1, 2, 3)], [("a", 0, 0, 0)], [(0x06, 256, 0, 0)], [(0x06, 0, 0, 1 << 32)], [None]):
        refused(bad)


def test_invalid_program_error_is_a_filter_error_and_a_value_error():
    err = refused([])
    assert isinstance(err, pfilter.FilterError) and isinstance(err, ValueError)


def test_compiled_programs_may_exceed_4096_instructions_but_not_the_kernel():
    big = [(BPF_LD | BPF_IMM, 0, 0, 0)] * 5000 + [OK]
    prog = pfilter.Program.from_tuples(big, max_insns=pfilter.validate.COMPILED_MAX_INSNS)
    assert len(prog) == 5001 and prog.run(b"") == 1
    with pytest.raises(pfilter.InvalidProgramError, match="4096"):
        prog.sock_fprog()
