"""ALU instructions: 32-bit wraparound, division by zero, shifts of 32 or more. Both VMs."""
import pytest
from vmcase import *  # noqa: F403

CASES = [  # (op, a, operand, expected)
    (BPF_ADD, 0xFFFFFFFF, 2, 1), (BPF_SUB, 1, 2, 0xFFFFFFFF), (BPF_MUL, 0x10000, 0x10000, 0),
    (BPF_MUL, 3, 7, 21), (BPF_DIV, 100, 7, 14), (BPF_MOD, 100, 7, 2), (BPF_AND, 0xF0F0, 0xFF00, 0xF000),
    (BPF_OR, 0xF0, 0x0F, 0xFF), (BPF_XOR, 0xFF, 0x0F, 0xF0), (BPF_LSH, 1, 31, 0x80000000),
    (BPF_LSH, 0xFFFFFFFF, 4, 0xFFFFFFF0), (BPF_RSH, 0x80000000, 31, 1), (BPF_DIV, 0xFFFFFFFF, 0xFFFFFFFF, 1),
]


@pytest.mark.parametrize("op,a,v,want", CASES)
def test_alu_with_constant_operand(vm, op, a, v, want):
    assert run([(BPF_LD | BPF_IMM, 0, 0, a), (BPF_ALU | op | BPF_K, 0, 0, v), RET_A]) == want


@pytest.mark.parametrize("op,a,v,want", CASES)
def test_alu_with_x_operand(vm, op, a, v, want):
    prog = [(BPF_LD | BPF_IMM, 0, 0, a), (BPF_LDX | BPF_IMM, 0, 0, v), (BPF_ALU | op | BPF_X, 0, 0, 0), RET_A]
    assert run(prog) == want


@pytest.mark.parametrize("op", [BPF_DIV, BPF_MOD])
def test_division_by_zero_in_x_returns_zero(vm, op):
    prog = [(BPF_LD | BPF_IMM, 0, 0, 5), (BPF_LDX | BPF_IMM, 0, 0, 0), (BPF_ALU | op | BPF_X, 0, 0, 0), ACCEPT]
    assert run(prog) == 0


@pytest.mark.parametrize("op", [BPF_LSH, BPF_RSH])
@pytest.mark.parametrize("shift", [32, 33, 0xFFFFFFFF])
def test_shift_by_x_of_32_or_more_gives_zero(vm, op, shift):
    prog = [(BPF_LD | BPF_IMM, 0, 0, 0xFFFFFFFF), (BPF_LDX | BPF_IMM, 0, 0, shift),
            (BPF_ALU | op | BPF_X, 0, 0, 0), RET_A]
    assert run(prog) == 0


def test_negate_is_twos_complement(vm):
    assert run([(BPF_LD | BPF_IMM, 0, 0, 1), (BPF_ALU | BPF_NEG, 0, 0, 0), RET_A]) == 0xFFFFFFFF
    assert run([(BPF_LD | BPF_IMM, 0, 0, 0), (BPF_ALU | BPF_NEG, 0, 0, 0), RET_A]) == 0


def test_tax_and_txa_copy_registers(vm):
    prog = [(BPF_LD | BPF_IMM, 0, 0, 77), (BPF_MISC | BPF_TAX, 0, 0, 0), (BPF_LD | BPF_IMM, 0, 0, 0),
            (BPF_MISC | BPF_TXA, 0, 0, 0), RET_A]
    assert run(prog) == 77
