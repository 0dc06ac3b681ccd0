"""The Python definition of cBPF's steps (pfilter.semantics, pfilter.validate's loop budget) and
the native one (pfilter/_cbpf.pxd, through pfilter._vm and pfilter._classify) agree: the exported
constants, and random ALU, jump and load cases run by the Cython VM, the pure-Python VM and the
classifier's engine."""
import random
import struct

import numpy as np
import pytest

import pfilter
from pfilter import _pyvm, semantics, validate
from pfilter.opcodes import (BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_H, BPF_IMM, BPF_IND,
                             BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LSH,
                             BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR, BPF_RET, BPF_RSH, BPF_SUB, BPF_W,
                             BPF_X, BPF_XOR)

_vm = pytest.importorskip("pfilter._vm", reason="the Cython VM is not built")
_classify = pytest.importorskip("pfilter._classify", reason="the classifier engine is not built")

ALU_OPS = (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_MOD, BPF_OR, BPF_AND, BPF_XOR, BPF_LSH, BPF_RSH, BPF_NEG)
JUMP_OPS = (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET)
EDGES = (0, 1, 2, 7, 31, 32, 33, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF)
RET_A = (BPF_RET | 0x10, 0, 0, 0)


def _operands(rng, n):
    pairs = [(a, b) for a in EDGES for b in EDGES]
    pairs += [(rng.getrandbits(32), rng.choice((rng.getrandbits(32), rng.randrange(40)))) for _ in range(n)]
    return pairs


def _native(insns, packet=b"", wirelen=None):
    raw = b"".join(struct.pack("=HBBI", *i) for i in insns)
    validate.validate(insns)
    return _vm.run_one(np.frombuffer(_vm.decode(raw), np.uint8), packet, len(packet) if wirelen is None else wirelen)


def _python(insns, packet=b"", wirelen=None):
    validate.validate(insns)
    return _pyvm.run_one(insns, packet, len(packet) if wirelen is None else wirelen)


def test_loop_budget_constants_are_the_python_ones():
    want = (validate.LOOP_BUDGET_BASE, validate.LOOP_BUDGET_PER_BYTE, validate.LOOP_BUDGET_MAX)
    assert tuple(_vm.LOOP_BUDGET_VALUES) == want
    assert tuple(_classify.LOOP_BUDGET_VALUES) == want


@pytest.mark.parametrize("caplen", [0, 1, 64, 1514])
def test_loop_budget_matches_a_looping_program(caplen):
    """An endless loop of span 2 (`ld #0; ja -2; ret #1`) stops on both VMs after the same number of
    instructions: passes until its charges (2 a pass) pass validate.loop_budget(caplen)."""
    insns = [(BPF_LD | BPF_IMM, 0, 0, 0), (BPF_JMP | 0x00, 0, 0, 0xFFFFFFFE), (BPF_RET | BPF_K, 0, 0, 1)]
    validate.validate(insns)
    budget = validate.loop_budget(caplen)
    assert budget == min(validate.LOOP_BUDGET_BASE + validate.LOOP_BUDGET_PER_BYTE * caplen,
                         validate.LOOP_BUDGET_MAX)
    want = 2 * (budget // 2 + 1)
    steps = [0]
    assert _pyvm.run_one(insns, bytes(caplen), caplen, steps=steps) == 0
    assert steps[0] == want
    raw = b"".join(struct.pack("=HBBI", *i) for i in insns)
    native = np.zeros(1, np.uint64)
    _vm.count_steps(np.frombuffer(_vm.decode(raw), np.uint8), np.zeros(max(caplen, 1), np.uint8),
                    np.zeros(1, np.int64), np.array([caplen], np.uint32), np.array([caplen], np.uint32), native)
    assert int(native[0]) == want


@pytest.mark.parametrize("op", ALU_OPS)
def test_alu_agrees(op):
    rng = random.Random(op)
    for a, b in _operands(rng, 200):
        want = semantics.alu(op, a, b)
        want = 0 if want is None else want
        x_prog = [(BPF_LD | BPF_IMM, 0, 0, a), (BPF_LDX | BPF_IMM, 0, 0, b), (BPF_ALU | op | BPF_X, 0, 0, 0), RET_A]
        if op == BPF_NEG:
            x_prog[2] = (BPF_ALU | BPF_NEG, 0, 0, 0)
        assert _native(x_prog) == want == _python(x_prog), (hex(op), a, b)
        if op in (BPF_DIV, BPF_MOD) and b == 0 or op in (BPF_LSH, BPF_RSH) and b >= 32 or op == BPF_NEG:
            continue     # refused by the validator as constants
        k_prog = [(BPF_LD | BPF_IMM, 0, 0, a), (BPF_ALU | op | BPF_K, 0, 0, b), RET_A]
        assert _native(k_prog) == want == _python(k_prog), (hex(op), a, b)


@pytest.mark.parametrize("op", JUMP_OPS)
def test_jumps_agree(op):
    rng = random.Random(op + 1)
    for a, b in _operands(rng, 200):
        want = 1 if semantics.jump_taken(op, a, b) else 2
        for src, k in ((BPF_K, b), (BPF_X, 0)):
            prog = [(BPF_LD | BPF_IMM, 0, 0, a), (BPF_LDX | BPF_IMM, 0, 0, b), (BPF_JMP | op | src, 0, 1, k),
                    (BPF_RET | BPF_K, 0, 0, 1), (BPF_RET | BPF_K, 0, 0, 2)]
            assert _native(prog) == want == _python(prog), (hex(op), src, a, b)


@pytest.mark.parametrize("size,name", [(BPF_W, 4), (BPF_H, 2), (BPF_B, 1)])
def test_loads_agree(size, name):
    rng = random.Random(name)
    for _ in range(300):
        pkt = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 24)))
        k = rng.choice((rng.randrange(0, 28), 0xFFFFFFFF, 0xFFFFFFFC, 0x80000000))
        x = rng.choice((rng.randrange(0, 28), 0xFFFFFFFF, 0xFFFFFFFE))
        want = semantics.load_abs(pkt, k, name)
        prog = [(BPF_LD | BPF_ABS | size, 0, 0, k), RET_A]
        assert _native(prog, pkt) == (0 if want is None else want) == _python(prog, pkt), (pkt, k)
        want = semantics.load_ind(pkt, x, k, name)
        prog = [(BPF_LDX | BPF_IMM, 0, 0, x), (BPF_LD | BPF_IND | size, 0, 0, k), RET_A]
        assert _native(prog, pkt) == (0 if want is None else want) == _python(prog, pkt), (pkt, x, k)
    for _ in range(100):
        pkt = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 8)))
        k = rng.randrange(0, 10)
        want = semantics.load_msh(pkt, k)
        prog = [(BPF_LDX | BPF_MSH | BPF_B, 0, 0, k), (0x87, 0, 0, 0), RET_A]
        assert _native(prog, pkt) == (0 if want is None else want) == _python(prog, pkt), (pkt, k)


def test_classifier_engine_agrees():
    """Rules `ld [4]; tax; ldb [0]; <alu> x; <jump> #c` over random packets: the classifier engine's
    verdicts are pfilter.semantics' (several rules share value nodes, so the engine runs)."""
    rng = random.Random(11)
    packets = [bytes(rng.getrandbits(8) for _ in range(rng.choice((8, 8, 8, 6)))) for _ in range(300)]
    batch = pfilter.PacketBatch.from_packets(packets)
    rules, want = {}, {}
    for i, op in enumerate(ALU_OPS):
        for jop in JUMP_OPS:
            c = rng.choice((0, 1, 5, 0x1000, rng.getrandbits(32)))
            insns = [(BPF_LD | BPF_ABS | BPF_W, 0, 0, 4), (0x07, 0, 0, 0), (BPF_LD | BPF_ABS | BPF_B, 0, 0, 0)]
            insns += [(BPF_ALU | op | BPF_X, 0, 0, 0) if op != BPF_NEG else (BPF_ALU | BPF_NEG, 0, 0, 0),
                      (BPF_JMP | jop | BPF_K, 0, 1, c), (BPF_RET | BPF_K, 0, 0, 1), (BPF_RET | BPF_K, 0, 0, 0)]
            name = f"r{i}_{jop:x}"
            rules[name] = pfilter.Program.from_tuples(insns)
            col = []
            for p in packets:
                if len(p) < 8:
                    col.append(False)
                    continue
                v = semantics.alu(op, p[0], int.from_bytes(p[4:8], "big"))
                col.append(v is not None and semantics.jump_taken(jop, v, c))
            want[name] = col
    result = pfilter.classify(batch, rules)
    for name, col in want.items():
        assert list(map(bool, result.column(name))) == col, name
