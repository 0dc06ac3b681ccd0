"""pfilter.lowering: blocks, hoisted length guards, liveness and loop charges. The lowering is
run by a small evaluator here that trusts only what the lowering says (guards at block entry and
before indirect loads, no per-load checks, charges on backward jumps) and must return what the
reference VM (pfilter._pyvm) returns, on random programs (backward jumps included) and random,
truncated packets. `random_program` is the generator the native tests use too."""
import random

import numpy as np
import pytest

import pfilter
from pfilter import _pyvm
from pfilter.lowering import INDIRECT_LOADS, LOAD_SIZE, lower
from pfilter.opcodes import VALID_OPCODES
from pfilter.validate import loop_budget

CODES = sorted(VALID_OPCODES)
LOADS = [0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0xB1]
JUMPS = [0x15, 0x25, 0x35, 0x45, 0x1D, 0x2D, 0x3D, 0x4D]
SPECIAL_K = [0, 1, 2, 3, 4, 12, 13, 14, 20, 23, 31, 32, 0x800, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
             0xFFFFF000, 0xFFFFF02C]


def random_program(rng: random.Random, max_len: int = 40, loops: bool = True):
    """A valid random cBPF program as (code, jt, jf, k) tuples: loads biased to offsets that
    small packets hold, comparisons against values those loads return, and (with loops) backward
    `ja`s, which the loop budget bounds."""
    n = rng.randint(1, max_len)
    insns = []
    for i in range(n - 1):
        r = rng.random()
        if r < 0.3:
            code = rng.choice(LOADS)
        elif r < 0.55:
            code = rng.choice(JUMPS)
        else:
            code = rng.choice(CODES)
        k = rng.choice(SPECIAL_K) if rng.random() < 0.25 else rng.randint(0, 70 if code in LOADS else 300)
        jt = jf = 0
        if code in (0x60, 0x61, 0x02, 0x03):
            k %= 16
        elif code in (0x34, 0x94) and k == 0:
            k = 3
        elif code in (0x64, 0x74):
            k %= 32
        elif code == 0x05:
            if loops and i > 0 and rng.random() < 0.3:
                k = (-rng.randint(1, i + 1)) & 0xFFFFFFFF      # back to i+1-span (>= 0)
            else:
                k = rng.randint(0, n - 2 - i)
        elif code & 0x07 == 0x05:
            room = n - 2 - i
            jt, jf = rng.randint(0, min(room, 255)), rng.randint(0, min(room, 255))
            if rng.random() < 0.5 and code & 0x08 == 0:
                k = rng.choice([0, 1, 0x45, 0x800, 6, 17, 0x86DD, 0xFF, 0xFFFFFFFF])
        elif code & 0x07 == 0x06:
            k = rng.choice([0, 1, 0xFFFF, 262144, 0xFFFFFFFF])
        insns.append((code, jt, jf, k))
    insns.append(rng.choice([(0x16, 0, 0, 0), (0x06, 0, 0, rng.choice([0, 1, 0xFFFFFFFF]))]))
    return insns


def random_packet(rng: random.Random, max_len: int = 80) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, max_len)))


def run_lowered(low, pkt: bytes, wirelen: int) -> int:
    """Evaluate a Lowering: guards only where the lowering puts them, no per-load checks."""
    buflen = len(pkt)
    A = X = 0
    M = [0] * 16
    spent, budget = 0, loop_budget(buflen)
    b = 0
    M32 = 0xFFFFFFFF
    guard_at = {}
    for blk in low.blocks:
        for g in blk.indirect:
            guard_at[g.at] = g.size
    while True:
        blk = low.blocks[b]
        if blk.length_check and buflen < blk.length_check:
            return 0
        assert blk.known_in >= 0 and buflen >= max(blk.known_in, 0) or blk.index == 0
        for pc, (code, _jt, _jf, k) in blk.body:
            if pc in guard_at and buflen < X + guard_at[pc]:
                return 0
            if code in (0x20, 0x28, 0x30, 0xB1) or code in INDIRECT_LOADS:
                off = k + (X if code in INDIRECT_LOADS else 0)
                size = LOAD_SIZE[code]
                assert off + size <= buflen, f"unguarded load at {pc}"
                v = int.from_bytes(pkt[off:off + size], "big")
                if code == 0xB1:
                    X = (v & 0xF) << 2
                else:
                    A = v
            elif code == 0x00: A = k
            elif code == 0x01: X = k
            elif code == 0x80: A = wirelen
            elif code == 0x81: X = wirelen
            elif code == 0x60: A = M[k]
            elif code == 0x61: X = M[k]
            elif code == 0x02: M[k] = A
            elif code == 0x03: M[k] = X
            elif code == 0x07: X = A
            elif code == 0x87: A = X
            elif code == 0x84: A = -A & M32
            else:
                src = X if code & 0x08 else k
                op = code & 0xF0
                if op in (0x30, 0x90) and src == 0:
                    return 0
                A = {0x00: lambda: A + src, 0x10: lambda: A - src, 0x20: lambda: A * src,
                     0x30: lambda: A // src, 0x90: lambda: A % src, 0x40: lambda: A | src,
                     0x50: lambda: A & src, 0xA0: lambda: A ^ src,
                     0x60: lambda: (A << src) if src < 32 else 0,
                     0x70: lambda: (A >> src) if src < 32 else 0}[op]() & M32
        if blk.term == "ret_k":
            return blk.term_insn[1][3]
        if blk.term == "ret_a":
            return A
        if blk.term in ("fall", "ja"):
            if blk.charge:
                spent += blk.charge
                if spent > budget:
                    return 0
            b = blk.succs[0]
            continue
        code, _, _, k = blk.term_insn[1]
        src = X if code & 0x08 else k
        op = code & 0xF0
        cond = {0x10: A == src, 0x20: A > src, 0x30: A >= src, 0x40: bool(A & src)}[op]
        b = blk.succs[0] if cond else blk.succs[1]


def test_blocks_of_a_compiled_filter():
    prog = pfilter.compile("ip and tcp port 80")
    low = lower(prog)
    assert low.blocks[0].start == 0 and low.block_at[0] == 0
    covered = sorted(pc for blk in low.blocks for pc in range(blk.start, blk.end))
    assert covered == sorted(set(covered))                      # blocks do not overlap
    for blk in low.blocks:
        for s in blk.succs:
            assert blk.index in low.blocks[s].preds
    # ldh [12] is guarded once at entry; the later absolute loads of the path need no guard
    assert low.blocks[0].length_check == 14
    assert sum(1 for blk in low.blocks if blk.length_check) < sum(1 for blk in low.blocks if blk.needs)
    assert not low.has_loops and low.zero_init == frozenset()
    assert low.digest == lower(prog.to_tuples()).digest


def test_protochain_loop_charges_and_liveness():
    prog = pfilter.compile("ip6 protochain 6")
    low = lower(prog)
    assert low.has_loops
    backs = [blk for blk in low.blocks if blk.charge]
    for blk in backs:
        pc, (code, _, _, k) = blk.term_insn
        assert code == 0x05 and k & 0x80000000
        assert blk.charge == pc + 1 - low.blocks[blk.succs[0]].start
    assert any("X" in blk.live_in or any(m.startswith("M") for m in blk.live_in) for blk in low.blocks)


def test_indirect_guards_split_where_x_changes():
    insns = [(0x01, 0, 0, 2), (0x40, 0, 0, 0), (0x48, 0, 0, 6), (0x07, 0, 0, 0), (0x50, 0, 0, 1),
             (0x16, 0, 0, 0)]
    low = lower(insns)
    (blk,) = low.blocks
    assert [(g.at, g.size, g.covers) for g in blk.indirect] == [(1, 8, (1, 2)), (4, 2, (4,))]


def test_scratch_read_before_write_is_zero_initialised():
    low = lower([(0x60, 0, 0, 3), (0x02, 0, 0, 5), (0x61, 0, 0, 5), (0x16, 0, 0, 0)])
    assert low.zero_init == frozenset({"M3"}) and low.mem_used == frozenset({3, 5})


def test_dead_code_is_dropped():
    low = lower([(0x05, 0, 0, 1), (0x06, 0, 0, 7), (0x06, 0, 0, 9)])
    assert [blk.start for blk in low.blocks] == [0, 2]


@pytest.mark.parametrize("seed", range(4))
def test_lowering_evaluator_matches_reference_vm(seed):
    rng = random.Random(seed)
    for _ in range(400):
        insns = random_program(rng)
        low = lower(insns)
        for _ in range(6):
            pkt = random_packet(rng)
            wl = rng.choice([len(pkt), rng.randint(0, 0xFFFFFFFF)])
            assert run_lowered(low, pkt, wl) == _pyvm.run_one(insns, pkt, wl), (insns, pkt.hex(), wl)


def test_corpus_like_expressions_through_the_evaluator():
    rng = random.Random(7)
    exprs = ["ip and tcp port 80", "ip6 protochain 6", "vlan and udp", "tcp[tcpflags] & tcp-syn != 0",
             "ip[2:2] > 100 and icmp", "ether[len - 1] = 0"]
    for e in exprs:
        prog = pfilter.compile(e)
        low = lower(prog)
        for _ in range(200):
            pkt = bytearray(random_packet(rng, 120))
            if len(pkt) > 14 and rng.random() < 0.6:
                pkt[12:14] = rng.choice([b"\x08\x00", b"\x86\xdd", b"\x81\x00"])
                if len(pkt) > 23:
                    pkt[14] = 0x45 if pkt[12] == 8 else pkt[14]
                    pkt[23] = rng.choice([6, 17, 1])
                    pkt[20] = pkt[21] = 0
            pkt = bytes(pkt)
            assert run_lowered(low, pkt, len(pkt)) == _pyvm.run_one(prog.to_tuples(), pkt, len(pkt)), e
