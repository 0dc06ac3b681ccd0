"""Property: for random valid cBPF programs (forward jumps, every load mode, ALU with K and X,
scratch memory, division by a possibly-zero X), the optimized program returns the same value as
the original on random packets and on probe packets steered into its branches.
"""
import random

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import pfilter
from pfilter.optimizer import optimize_program
from test_optimizer_probes import probe_packets

CONSTS = [0, 1, 2, 3, 4, 6, 0x11, 0x45, 0x800, 0x86DD, 0xFF, 0xFFFF, 0x80000000, 0xFFFFFFFF]


@st.composite
def programs(draw):
    n = draw(st.integers(4, 40))
    body = [(0x02, 0, 0, i) for i in range(4)]          # st M[0..3]: no read of unset memory
    for i in range(n):
        kind = draw(st.sampled_from(["ld", "ld", "ldx", "alu", "alu", "mem", "misc", "jmp", "jmp", "jmp", "ret"]))
        k = draw(st.sampled_from(CONSTS + list(range(0, 48))))
        if kind == "ld":
            mode = draw(st.sampled_from([0x20, 0x20, 0x40, 0x80, 0x00]))
            size = draw(st.sampled_from([0x00, 0x08, 0x10])) if mode in (0x20, 0x40) else 0x00
            off = draw(st.integers(0, 44)) if mode in (0x20, 0x40) else k
            body.append((mode | size, 0, 0, off))
        elif kind == "ldx":
            code = draw(st.sampled_from([0x01, 0x81, 0xB1]))       # ldx #k, ldx len, ldxb 4*([k]&0xf)
            body.append((code, 0, 0, draw(st.integers(0, 30)) if code != 0x81 else 0))
        elif kind == "alu":
            op = draw(st.sampled_from([0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0]))
            if op == 0x80:
                body.append((0x84, 0, 0, 0))
            elif draw(st.booleans()):
                body.append((0x04 | op | 0x08, 0, 0, 0))
            else:
                if op in (0x30, 0x90) and k == 0:
                    k = 3
                if op in (0x60, 0x70):
                    k %= 32
                body.append((0x04 | op, 0, 0, k))
        elif kind == "mem":
            body.append((draw(st.sampled_from([0x60, 0x61, 0x02, 0x03])), 0, 0, draw(st.integers(0, 3))))
        elif kind == "misc":
            body.append((draw(st.sampled_from([0x07, 0x87])), 0, 0, 0))
        elif kind == "ret":
            body.append(draw(st.sampled_from([(0x06, 0, 0, 0), (0x06, 0, 0, 1), (0x06, 0, 0, 0xFFFF), (0x16, 0, 0, 0)])))
        else:
            op = draw(st.sampled_from([0x10, 0x20, 0x30, 0x40, 0x00]))
            body.append(("jmp", op, draw(st.booleans()), k))
    body.append((0x06, 0, 0, 7))
    body.append((0x16, 0, 0, 0))
    m = len(body)
    prog = []
    for i, ins in enumerate(body):
        if ins[0] == "jmp":
            _, op, xsrc, k = ins
            room = m - 1 - (i + 1)
            jt = draw(st.integers(0, room))
            jf = draw(st.integers(0, room))
            if op == 0x00:
                prog.append((0x05, 0, 0, jt))
            else:
                prog.append((0x05 | op | (0x08 if xsrc else 0), jt, jf, k))
        else:
            prog.append(ins)
    return prog


def packets(seed):
    rng = random.Random(seed)
    out = []
    for _ in range(40):
        n = rng.choice([0, 1, 5, 14, 20, 30, 34, 40, 47, 54, 60, 80])
        out.append(bytes(rng.choice([0, 0, 1, 6, 0x45, 0x08, 0xFF, rng.randrange(256)]) for _ in range(n)))
    return out


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(0, 1000))
def test_optimized_random_programs_return_what_the_originals_do(prog, seed):
    original = pfilter.Program.from_tuples(prog)
    opt = optimize_program(prog)
    optimized = pfilter.Program.from_tuples(opt)
    pkts = packets(seed)
    pkts += probe_packets(prog, pkts[:6], per_base=8, tries=200)
    batch = pfilter.PacketBatch.from_packets(pkts, wirelens=[len(p) + seed % 3 for p in pkts])
    want, got = original.run_batch(batch), optimized.run_batch(batch)
    bad = [(i, int(want[i]), int(got[i])) for i in range(len(pkts)) if want[i] != got[i]]
    assert not bad, (prog, opt, [(pkts[i].hex(), w, g) for i, w, g in bad[:3]])


PRIMITIVES = ["ip", "ip6", "arp", "tcp", "udp", "icmp", "port 80", "port 53", "src port 443", "dst port 22",
              "host 10.0.0.1", "src host 192.168.1.1", "net 10.0.0.0/8", "ip6 net 2001:db8::/32",
              "tcp[13] & 2 != 0", "len > 100", "ether[0] & 1 = 1", "ip[6:2] & 0x1fff = 0",
              "udp[8] = 0x45", "ether host ff:ff:ff:ff:ff:ff", "portrange 1-1023", "ip proto 47",
              "vlan", "tcp[tcpflags] & tcp-syn != 0", "icmp[0] = 8", "ip[2:2] > 576", "mpls", "icmp6",
              "ip[2:2] - ((ip[0] & 0xf) << 2) > 100", "tcp[((tcp[12:1] & 0xf0) >> 2)] = 0x16",
              "ether src 00:11:22:33:44:55", "ip multicast", "len < 100", "udp[4:2] < 16",
              "ip6 proto 58", "tcp dst portrange 8000-8080", "ip[0] & 0xf > 5", "arp[6:2] = 1"]


@st.composite
def expressions(draw, depth=0):
    if depth > 2 or draw(st.integers(0, 2)) == 0:
        e = draw(st.sampled_from(PRIMITIVES))
    else:
        op = draw(st.sampled_from(["and", "or"]))
        e = f"({draw(expressions(depth + 1))}) {op} ({draw(expressions(depth + 1))})"
    return f"not ({e})" if draw(st.integers(0, 4)) == 0 else e


@pytest.fixture(scope="module")
def corpus_packets():
    """The corpus packets the probes start from: a missing corpus skips the test here, before
    Hypothesis runs its explicit example (which would report the skip as a failing example)."""
    from test_optimizer_probes import base_packets
    return base_packets()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions())
@example(expr="not ((tcp) and (not (((not (ip)) and (not (ip6))) and (not (arp)))))")  # empty value set
def test_optimized_random_filter_expressions_return_what_unoptimized_ones_do(corpus_packets, expr):
    import reference
    from test_optimizer_probes import disagreements, probe_batch
    try:
        insns = reference.compile(expr, 1, optimize=False)
    except reference.RefError:          # e.g. `mpls` then `arp`: libpcap refuses the pair
        assume(False)
    opt = optimize_program(insns)
    d = disagreements(insns, opt, probe_batch(insns, corpus_packets))
    assert not len(d), (expr, len(d))
