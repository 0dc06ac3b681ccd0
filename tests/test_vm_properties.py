"""Property tests (hypothesis): random valid programs on random packets give the same result in
the Cython VM, the pure-Python VM and libpcap's bpf_filter(), and never crash; random invalid
programs are always refused."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pfilter
from pfilter import _pyvm, program
from pfilter.opcodes import *  # noqa: F403
from test_validator_vs_kernel import reasons_kernel_refuses
import reference as ref

CODES = sorted(VALID_OPCODES)
K_VALUES = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 12, 13, 14, 15, 16, 20, 23, 31, 32, 54, 0x800,
                                      0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFFF000, 0xFFFFF02C]),
                     st.integers(0, 0xFFFFFFFF))


@st.composite
def valid_programs(draw, max_len=24):
    n = draw(st.integers(1, max_len))
    insns = []
    for i in range(n - 1):
        code = draw(st.sampled_from(CODES))
        k = draw(K_VALUES)
        cls, op = BPF_CLASS(code), BPF_OP(code)
        if cls in (BPF_LD, BPF_LDX) and BPF_MODE(code) == BPF_MEM or cls in (BPF_ST, BPF_STX):
            k %= 16
        if cls == BPF_ALU and BPF_SRC(code) == BPF_K:
            if op in (BPF_DIV, BPF_MOD) and k == 0:
                k = 3
            if op in (BPF_LSH, BPF_RSH):
                k %= 32
        room = n - 1 - (i + 1)
        jt = jf = 0
        if cls == BPF_JMP:
            if op == BPF_JA:
                k = draw(st.integers(0, room))
            else:
                jt, jf = draw(st.integers(0, room)), draw(st.integers(0, room))
        insns.append((code, jt, jf, k))
    insns.append(draw(st.sampled_from([(BPF_RET | BPF_A, 0, 0, 0), (BPF_RET | BPF_K, 0, 0, 1), (BPF_RET | BPF_K, 0, 0, 0)])))
    return insns


packets = st.lists(st.binary(min_size=0, max_size=80), min_size=1, max_size=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_programs(), packets)
def test_random_valid_programs_agree_on_both_vms_and_never_crash(insns, pkts):
    prog = pfilter.Program.from_tuples(insns)
    batch = pfilter.PacketBatch.from_packets(pkts, wirelens=[len(p) + 3 for p in pkts])
    fast = prog.run_batch(batch) if program._cvm is not None else None
    slow = np.array([_pyvm.run_one(prog.to_tuples(), p, len(p) + 3) for p in pkts], dtype=np.uint32)
    if fast is not None:
        assert np.array_equal(fast, slow)
    if not reasons_kernel_refuses(insns) & {"uninitialized-scratch"}:
        # libpcap leaves M[] uninitialized: compare only programs that store before they load
        assert np.array_equal(ref.bpf_filter_batch(insns, batch), slow)


@st.composite
def invalid_programs(draw):
    insns = draw(valid_programs(max_len=10))
    i = draw(st.integers(0, len(insns) - 1))
    kind = draw(st.sampled_from(["opcode", "mem", "div", "shift", "jump", "last", "retx", "long"]))
    code, jt, jf, k = insns[i]
    if kind == "opcode":
        insns[i] = (draw(st.integers(0, 0xFFFF).filter(lambda c: c not in VALID_OPCODES)), jt, jf, k)
    elif kind == "mem":
        insns[i] = (draw(st.sampled_from([BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM, BPF_ST, BPF_STX])), 0, 0, draw(st.integers(16, 0xFFFFFFFF)))
    elif kind == "div":
        insns[i] = (draw(st.sampled_from([BPF_ALU | BPF_DIV | BPF_K, BPF_ALU | BPF_MOD | BPF_K])), 0, 0, 0)
    elif kind == "shift":
        insns[i] = (draw(st.sampled_from([BPF_ALU | BPF_LSH | BPF_K, BPF_ALU | BPF_RSH | BPF_K])), 0, 0, draw(st.integers(32, 0xFFFFFFFF)))
    elif kind == "jump":
        room = len(insns) - i - 1
        insns[i] = (BPF_JMP | BPF_JEQ | BPF_K, draw(st.integers(room, 255)), 0, 0)
    elif kind == "last":
        insns.append((BPF_LD | BPF_IMM, 0, 0, 0))
    elif kind == "retx":
        insns[i] = (BPF_RET | BPF_X, 0, 0, 0)
    else:
        insns = insns[:-1] + [(BPF_LD | BPF_IMM, 0, 0, 0)] * 4096 + insns[-1:]
    return insns


@settings(max_examples=300, deadline=None)
@given(invalid_programs())
def test_random_invalid_programs_are_always_refused(insns):
    try:
        pfilter.Program.from_tuples(insns)
    except pfilter.InvalidProgramError:
        return
    raise AssertionError(f"accepted an invalid program: {insns[:12]}")
