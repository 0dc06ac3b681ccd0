"""Native code (pfilter.native, llvmlite) against the VM: 10,000 random valid programs (backward
jumps included, so the loop budget is exercised) on random and truncated packets give the VM's
return value for every packet, through run_batch, run_indexed and run; the batch safety checks
hold for native calls too. llvmlite missing skips these tests, and fails them with CI=true."""
import os
import random

import numpy as np
import pytest

import pfilter
from pfilter import native
from pfilter.errors import FilterError
from test_lowering import random_packet, random_program

if not native.available():
    if os.environ.get("CI") == "true":
        pytest.fail(f"llvmlite is missing under CI=true: {native.EXTRA_HINT}", pytrace=False)
    pytest.skip(f"llvmlite not installed ({native.EXTRA_HINT})", allow_module_level=True)


def _batch(rng, count=24):
    pkts = [random_packet(rng, 90) for _ in range(count)]
    # truncated copies of one packet: every captured length from 0 to its end
    base = random_packet(rng, 60)
    pkts += [base[:n] for n in range(len(base) + 1)]
    wl = [rng.choice([len(p), len(p) + rng.randint(0, 1500), rng.randint(0, 0xFFFFFFFF)]) for p in pkts]
    return pfilter.PacketBatch.from_packets(pkts, wirelens=wl)


@pytest.mark.parametrize("seed", range(10))
def test_random_programs_match_the_vm(seed):
    # compiled 50 at a time (native.jit_many: one module each), the time of this test is LLVM's
    rng = random.Random(1000 + seed)
    batch = _batch(rng)
    progs = [pfilter.Program.from_tuples(random_program(rng, max_len=rng.choice([8, 40, 120])))
             for _ in range(1000)]
    natives = [nat for k in range(0, len(progs), 50) for nat in native.jit_many(progs[k:k + 50])]
    for prog, nat in zip(progs, natives):
        want = prog.run_batch(batch)
        got = nat.run_batch(batch)
        if not np.array_equal(got, want):
            bad = int(np.flatnonzero(got != want)[0])
            pytest.fail(f"{prog.to_tuples()} on {batch.packet(bad).hex()} (wirelen {batch.wirelen[bad]}): "
                        f"native {got[bad]}, VM {want[bad]}")


def test_jit_many_gives_each_program_what_jit_gives():
    rng = random.Random(9)
    progs = [pfilter.Program.from_tuples(random_program(rng)) for _ in range(30)]
    progs.append(progs[3])                                        # a program given twice
    progs.append(pfilter.compile("udp port 5353 and ip6"))
    native.jit(progs[-1])                                         # one already in the cache
    batch = _batch(rng)
    fresh = {d for d in (native.lower(p).digest for p in progs) if d not in native._cache}
    assert len(fresh) > 10
    many = native.jit_many(progs)
    assert [n.program for n in many] == progs
    # compile time is reported once per program compiled now (its share), else 0.0 as jit says
    timed = [n.lowering.digest for n in many if n.compile_seconds > 0]
    assert sorted(timed) == sorted(fresh) and many[-1].compile_seconds == 0.0
    for prog, nat in zip(progs, many):
        assert np.array_equal(nat.run_batch(batch), prog.run_batch(batch))
        assert np.array_equal(native.jit(prog).run_batch(batch), nat.run_batch(batch))
        assert native.jit(prog)._run is nat._run                  # the same code, from the cache


def test_run_and_run_indexed_match():
    rng = random.Random(5)
    batch = _batch(rng)
    for _ in range(200):
        prog = pfilter.Program.from_tuples(random_program(rng))
        nat = native.jit(prog)
        idx = np.array(sorted(rng.sample(range(len(batch)), 10)), np.int64)
        want = np.zeros(len(batch), np.uint32)
        got = np.zeros(len(batch), np.uint32)
        prog.run_indexed(batch, idx, want)
        nat.run_indexed(batch, idx, got)
        assert np.array_equal(got, want)
        for i in idx[:3]:
            pkt = batch.packet(int(i))
            assert nat.run(pkt, int(batch.wirelen[i])) == prog.run(pkt, int(batch.wirelen[i]))


def test_loop_budget_reached_gives_the_vm_result():
    # a tight loop: `ja -1` forever; the budget ends it with 0, as in the VM
    prog = pfilter.Program.from_tuples([(0x00, 0, 0, 7), (0x05, 0, 0, 0xFFFFFFFF), (0x16, 0, 0, 0)])
    batch = pfilter.PacketBatch.from_packets([b"", bytes(100), bytes(2000)])
    assert np.array_equal(native.jit(prog).run_batch(batch), prog.run_batch(batch))
    # a loop that ends by itself inside the budget returns its value
    loop = [(0x01, 0, 0, 0), (0x87, 0, 0, 0), (0x04, 0, 0, 1), (0x07, 0, 0, 0), (0x15, 1, 0, 1000),
            (0x05, 0, 0, (-5) & 0xFFFFFFFF), (0x16, 0, 0, 0)]
    prog = pfilter.Program.from_tuples(loop)
    assert prog.run(b"") == 1000 and native.jit(prog).run(b"") == 1000


def test_many_looping_packets_return_between_chunks():
    prog = pfilter.Program.from_tuples([(0x05, 0, 0, 0xFFFFFFFF), (0x16, 0, 0, 0)])
    batch = pfilter.PacketBatch.from_packets([bytes(64)] * 300)
    assert not native.jit(prog).run_batch(batch).any()


def test_a_damaged_batch_is_refused_not_read():
    prog = pfilter.compile("ip and tcp port 80")
    nat = native.jit(prog)
    batch = pfilter.PacketBatch.from_packets([bytes(60)] * 4)
    batch.offsets[2] = 10 ** 9
    with pytest.raises(FilterError):
        nat.run_batch(batch)
    batch = pfilter.PacketBatch.from_packets([bytes(60)] * 4)
    batch.caplen[3] = 61
    with pytest.raises(FilterError):
        nat.run_batch(batch)
    batch = pfilter.PacketBatch.from_packets([bytes(60)] * 4)
    batch.offsets = batch.offsets.astype(np.int32)
    with pytest.raises(FilterError):
        nat.run_batch(batch)
    with pytest.raises(FilterError):
        nat.run_batch(pfilter.PacketBatch.from_packets([bytes(60)]), out=np.zeros(2, np.uint32))
    with pytest.raises(FilterError):
        nat.run_batch([b"x"])


def test_compiled_code_is_cached_by_program_hash():
    prog = pfilter.compile("udp port 5353 and ip6")
    first = native.jit(prog)
    again = native.jit(pfilter.Program.from_tuples(prog.to_tuples()))
    assert again.compile_seconds == 0.0 and again._run is first._run


def test_empty_batch_and_empty_packet():
    nat = native.jit(pfilter.compile("ip"))
    assert len(nat.run_batch(pfilter.PacketBatch.from_packets([]))) == 0
    assert nat.run(b"") == 0


def _udp_dns(ip6=False, vlan=False):
    eth = b"\x00" * 12 + (b"\x81\x00\x00\x05" if vlan else b"") + (b"\x86\xdd" if ip6 else b"\x08\x00")
    udp = b"\x30\x39\x00\x35\x00\x10\x00\x00" + bytes(range(8))
    if ip6:
        return eth + b"\x60" + bytes(3) + b"\x00\x10\x11\x40" + bytes(range(32)) + udp
    return eth + b"\x46\x00\x00\x30\x00\x00\x00\x00\x40\x11\x00\x00" + bytes(range(8)) + b"\x01\x01\x01\x01" + udp


@pytest.mark.parametrize("expr", ["udp port 53 or icmp", "ip and udp port 53", "vlan and ip", "ip6 and udp"])
def test_straight_line_code_on_every_length_around_its_fast_path(expr):
    # the straight-line code has a fast path for packets at least _fast_length bytes long (no
    # length guards) and the general code below it: every captured length of packets that take
    # the program's accepting paths (IPv4 with options, IPv6, VLAN) gives the VM's result
    prog = pfilter.compile(expr)
    low = native.lower(prog)
    assert native._straight_line(low) and native._fast_length(low) > 0
    pkts = [p[:n] for p in (_udp_dns(), _udp_dns(ip6=True), _udp_dns(vlan=True)) for n in range(len(p) + 1)]
    batch = pfilter.PacketBatch.from_packets(pkts)
    want = prog.run_batch(batch)
    assert np.array_equal(native.jit(prog).run_batch(batch), want)
    assert want.any() and not want.all()
