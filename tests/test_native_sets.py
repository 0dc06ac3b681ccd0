"""Native code's set tests (pfilter.native._jeq_sets): a region of `jeq/jgt/jge/jset #k` on one
value of A that leaves to one block exactly when A is one of some constants is compiled as one
vector compare. Random regions (chains, search trees, a test with a load in the middle, shared
tails, several exits, regions cut at REGION_MAX) on packets that hold the constants, their
neighbours and random words must give the VM's results, and a 20-host filter (libpcap's chains,
through tests/reference.py, and pfilter's search tree) must be compiled that way. llvmlite
missing skips these tests, and fails them with CI=true."""
import os
import random
import struct

import numpy as np
import pytest

import pfilter
import reference
from pfilter import native
from pfilter.lowering import lower

if not native.available():
    if os.environ.get("CI") == "true":
        pytest.fail(f"llvmlite is missing under CI=true: {native.EXTRA_HINT}", pytrace=False)
    pytest.skip(f"llvmlite not installed ({native.EXTRA_HINT})", allow_module_level=True)

TESTS = [0x15] * 6 + [0x25, 0x35, 0x45]


def _region(rng, pool):
    """`ld [0]`, then tests of A (sometimes `ld [4]` before one), then `ret #1`, `ret #2`, `ret #3`:
    mostly a region whose tests reach `ret #1` only through `jeq`s taken (a set test), else
    (one program in 5) not quite one."""
    m = rng.randint(2, 30)
    spoil = rng.randrange(m) if rng.random() < 0.2 else -1
    nodes = []   # (load before?, code, k, true node, false node); nodes m, m+1, m+2 are the returns
    for i in range(m):
        code = rng.choice(TESTS)
        k = rng.choice(pool)
        inside = list(range(i + 1, m)) + [m + 1] + ([m + 2] if rng.random() < 0.05 else [])
        jt, jf = rng.choice(inside), rng.choice(inside)
        if code == 0x15 and rng.random() < 0.7:      # chain-like: true -> ret #1, false -> next
            jt, jf = m, (i + 1 if i + 1 < m else m + 1)
        if i == spoil:
            jt, jf = rng.choice([(m, jf), (jt, m)])
        nodes.append((rng.random() < 0.15, code, k, jt, jf))
    pc, at = 1, []
    for load, *_ in nodes:
        at.append(pc + load)
        pc += 1 + load
    at += [pc, pc + 1, pc + 2]
    insns = [(0x20, 0, 0, 0)]
    for i, (load, code, k, jt, jf) in enumerate(nodes):
        if load:
            insns.append((0x20, 0, 0, 4))
        insns.append((code, at[jt] - at[i] - 1, at[jf] - at[i] - 1, k))
    return insns + [(0x06, 0, 0, 1), (0x06, 0, 0, 2), (0x06, 0, 0, 3)]


def _packets(rng, pool, n=300):
    values = pool + [(v + d) & 0xFFFFFFFF for v in pool for d in (-1, 1)]
    pkts = [struct.pack(">II", rng.choice(values) if rng.random() < 0.9 else rng.getrandbits(32), rng.choice(values))
            for _ in range(n)]
    return pkts + [b"", b"\x00\x01", pkts[0][:5]]   # short ones: the region is never reached


@pytest.mark.parametrize("seed, region_max", [(0, 256), (1, 256), (2, 4), (3, 4)])
def test_random_regions_of_tests_give_the_vm_results(seed, region_max, monkeypatch):
    monkeypatch.setattr(native, "STRAIGHT_MAX_BLOCKS", 0)    # set tests are made in branching code
    monkeypatch.setattr(native, "JEQ_SET_MIN", 2)            # of two constants or more, here
    monkeypatch.setattr(native, "REGION_MAX", region_max)    # 4: long regions cut in pieces
    rng = random.Random(7000 + seed)
    used = 0
    for _ in range(250):
        pool = [rng.getrandbits(32) for _ in range(rng.randint(1, 10))] + [0, 1, 0xFFFFFFFF]
        prog = pfilter.Program.from_tuples(_region(rng, pool))
        used += bool(native._jeq_sets(lower(prog), frozenset()))
        batch = pfilter.PacketBatch.from_packets(_packets(rng, pool))
        assert np.array_equal(native.jit(prog).run_batch(batch), prog.run_batch(batch)), prog.to_tuples()
    assert used >= 100   # the generator does make set regions


def _host_packet(src, dst, ethertype=0x0800):
    eth = b"\x00" * 12 + struct.pack(">H", ethertype)
    if ethertype == 0x0800:
        return eth + bytes.fromhex("450000280000000040060000") + src + dst + bytes(20)
    return eth + bytes(14) + src + bytes(6) + dst   # ARP: sender at 28, target at 38


@pytest.mark.parametrize("compiler", ["libpcap", "pfilter"])
def test_the_20_host_filter_is_a_set_test_with_the_vm_results(compiler):
    hosts = [f"10.0.{i}.{i + 7}" for i in range(20)]
    expr = " or ".join(f"host {h}" for h in hosts)
    prog = (pfilter.Program.from_tuples(reference.compile(expr, optimize=True)) if compiler == "libpcap"
            else pfilter.compile(expr))
    low = lower(prog)
    sets = native._jeq_sets(low, frozenset())
    assert sum(len(ks) for ks, _yes, _no in sets.values()) >= 3 * (len(hosts) - 1)
    rng = random.Random(3)
    addrs = [bytes(int(x) for x in h.split(".")) for h in hosts] + [bytes([10, 0, 0, 1]), bytes([10, 0, 1, 7])]
    pkts = [_host_packet(rng.choice(addrs), rng.choice(addrs), rng.choice([0x0800, 0x0806, 0x8035, 0x86DD]))
            for _ in range(500)]
    batch = pfilter.PacketBatch.from_packets(pkts + [p[:n] for p in pkts[:3] for n in range(0, 43, 3)])
    got = native.jit(prog).run_batch(batch)
    assert np.array_equal(got, prog.run_batch(batch))
    assert 0 < np.count_nonzero(got) < len(batch)
