"""The two passes that close most of the size gap to libpcap -O without its wrong code:
merge_rebased (IPv6 tails of absolute loads become a jump into their IPv4 twins of X-indexed
loads, with X set to the difference) and narrow_masked_loads (`ld [k]; and #0xffff0000; jeq`
reads only the kept bytes, where a later load still checks the captured length). Each must give
the same result as the unoptimized program on every packet, short ones included.
"""
import random

import pytest

import pfilter
import reference
from pfilter.optimizer import optimize_program
from test_optimizer_probes import base_packets, disagreements, probe_batch

ACCEPT = 262144


def run(insns, packet):
    return pfilter.Program.from_tuples(insns).run(packet)


def short_and_long(insns, seed=5):
    """Probe packets plus every prefix (0..95 bytes) of a few of them."""
    probes = probe_batch(insns, base_packets())
    rng = random.Random(seed)
    picks = [probes.packet(i) for i in rng.sample(range(len(probes)), min(40, len(probes)))]
    cut = [p[:n] for p in picks for n in range(min(len(p), 96) + 1)]
    return probes, pfilter.PacketBatch.from_packets(cut, wirelens=[1514] * len(cut), linktype=1)


@pytest.mark.parametrize("expr", ["tcp port 80", "port 80 or port 443", "udp portrange 1000-2000",
                                  "tcp src port 22 and tcp dst port 1024", "sctp port 5060",
                                  "port 53 or port 67 or port 123", "tcp port 110 or tcp port 995 or tcp port 143"])
def test_ipv6_tail_jumps_into_the_ipv4_one_and_means_the_same(expr):
    unopt = reference.compile(expr, 1, optimize=False)
    opt = optimize_program(unopt)
    assert (0x01, 0, 0, 40) in opt                      # ldx #40: IPv6's fixed header length
    for batch in short_and_long(unopt):
        assert not len(disagreements(unopt, opt, batch)), expr
    assert len(opt) <= len(reference.compile(expr, 1, optimize=True))


def _twin_program(after_x_read=False, offset_ipv6=54):
    """ldh [12]; IPv6 -> ldh [offset_ipv6]; jeq 80 / IPv4 -> ldxb; ldh [x+14]; jeq 80; the
    accept path optionally returns X (txa; ret a), which makes X live after the region."""
    acc = [(0x87, 0, 0, 0), (0x16, 0, 0, 0)] if after_x_read else [(0x06, 0, 0, ACCEPT)]
    prog = [(0x28, 0, 0, 12), (0x15, 0, 4, 0x86DD),
            (0x28, 0, 0, offset_ipv6), (0x15, 7, 0, 80),
            (0x28, 0, 0, offset_ipv6 + 2), (0x15, 5, 5 + len(acc), 80),
            (0xB1, 0, 0, 14), (0x48, 0, 0, 14), (0x15, 2, 0, 80),
            (0x48, 0, 0, 16), (0x15, 0, len(acc), 80)]
    return prog + acc + [(0x06, 0, 0, 0)]


def test_twin_program_is_merged_and_stays_equivalent():
    prog = _twin_program()
    pfilter.Program.from_tuples(prog)                    # valid
    opt = optimize_program(prog)
    assert (0x01, 0, 0, 40) in opt and len(opt) < len(prog)
    for batch in short_and_long(prog):
        assert not len(disagreements(prog, opt, batch))


def test_no_merge_when_x_is_read_after_the_region():
    prog = _twin_program(after_x_read=True)
    pfilter.Program.from_tuples(prog)
    opt = optimize_program(prog)
    assert (0x01, 0, 0, 40) not in opt
    for batch in short_and_long(prog):
        assert not len(disagreements(prog, opt, batch))


def test_no_merge_when_the_offset_would_be_negative():
    prog = _twin_program(offset_ipv6=10)                 # [10] vs [x + 14]: c = -4
    opt = optimize_program(prog)
    assert not any(code == 0x01 for code, _jt, _jf, _k in opt)
    for batch in short_and_long(prog):
        assert not len(disagreements(prog, opt, batch))


@pytest.mark.parametrize("expr,size", [("ip6 src net 2001:db8:1::/48", 9), ("ip6 dst net ff00::/8", 7),
                                       ("net fd00::/8", 11)])
def test_masked_word_becomes_a_narrow_load_where_a_later_load_checks_the_length(expr, size):
    unopt = reference.compile(expr, 1, optimize=False)
    opt = optimize_program(unopt)
    assert len(opt) == size
    for batch in short_and_long(unopt):
        assert not len(disagreements(unopt, opt, batch)), expr


def test_masked_word_stays_wide_when_nothing_after_it_checks_the_length():
    # `src net 10.0.0.0/8` accepts right after the test: a 28-byte packet must still be refused
    # for want of the whole address, so `ld [26]` cannot become `ldb [26]`.
    unopt = reference.compile("src net 10.0.0.0/8", 1, optimize=False)
    opt = optimize_program(unopt)
    assert (0x20, 0, 0, 26) in opt
    pkt = bytes(12) + b"\x08\x00" + bytes(12) + b"\x0a\x01"       # 28 bytes, src starts 10.1
    assert run(opt, pkt) == run(unopt, pkt) == 0
    assert run(opt, pkt + b"\x02\x03") == run(unopt, pkt + b"\x02\x03") != 0


def _random_twins(rng):
    """A program whose two arms (picked by one packet byte) run the same random tail, one with
    absolute loads [k + c], the other after `ldxb 4*([0]&0xf)` with indexed loads [x + k]; tails
    may use A, M[], ALU, even X (which must stop the merge), and the exits may read X."""
    c = rng.choice([0, 4, 20, 40])
    tail = []
    for _ in range(rng.randint(2, 7)):
        kind = rng.choice(["load", "load", "alu", "st", "ldm", "jmp", "jmp", "x"])
        if kind == "load":
            size = rng.choice([0x00, 0x08, 0x10])
            tail.append(("load", size, rng.randint(0, 30)))
        elif kind == "alu":
            tail.append(((0x04 | rng.choice([0x00, 0x10, 0x50, 0x40, 0xA0]), 0, 0, rng.choice([1, 3, 0xFF]))))
        elif kind == "st":
            tail.append((0x02, 0, 0, rng.randint(0, 3)))
        elif kind == "ldm":
            tail.append((0x60, 0, 0, rng.randint(0, 3)))
        elif kind == "x":
            tail.append(rng.choice([(0x87, 0, 0, 0), (0x0C, 0, 0, 0)]))   # txa, add x
        else:
            tail.append(("jmp", rng.choice([0x15, 0x25, 0x45]), rng.choice([0, 1, 2, 0x45, 0x80])))
    exits = rng.choice([[(0x06, 0, 0, 7)], [(0x87, 0, 0, 0), (0x16, 0, 0, 0)], [(0x16, 0, 0, 0)]])

    def arm(indexed):
        out = [(0xB1, 0, 0, 0)] if indexed else []
        for t in tail:
            if t[0] == "load":
                out.append(((0x40 if indexed else 0x20) | t[1], 0, 0, t[2] if indexed else t[2] + c))
            elif t[0] == "jmp":
                out.append(("jmp", t[1], t[2]))
            else:
                out.append(t)
        return out
    first, second = arm(False), arm(True)
    body = [(0x02, 0, 0, i) for i in range(4)] + [(0x30, 0, 0, 1), ("split",)] + first + [("goto_end",)] + second
    # lay out: jumps in the arms go to the reject at the very end (forward), split picks an arm
    n_exit = len(exits)
    total = len(body) + n_exit + 1
    prog = []
    for i, ins in enumerate(body):
        if ins[0] == "split":
            prog.append((0x45, 0, len(first) + 1, 0x80))            # jset #0x80: indexed arm
        elif ins[0] == "goto_end":
            prog.append((0x05, 0, 0, len(second)))                  # ja to the exits
        elif ins[0] == "jmp":
            to_reject = total - 1 - (i + 1)
            prog.append((ins[1], 0, to_reject, ins[2]))
        else:
            prog.append(ins)
    return prog + exits + [(0x06, 0, 0, 0)]


def test_random_twin_tails_merge_only_when_it_means_the_same():
    rng = random.Random(11)
    pkts = [bytes(rng.getrandbits(8) for _ in range(n)) for n in list(range(0, 80)) * 3]
    batch = pfilter.PacketBatch.from_packets(pkts, wirelens=[100] * len(pkts), linktype=1)
    merged = 0
    for _ in range(600):
        prog = _random_twins(rng)
        pfilter.Program.from_tuples(prog)
        opt = optimize_program(prog)
        assert not len(disagreements(prog, opt, batch)), prog
        merged += any(code == 0x01 for code, _jt, _jf, _k in opt)
    assert merged >= 10                     # the pass did fire on some of them


def test_shareable_programs_keep_the_twins_apart_and_mean_the_same():
    merged = pfilter.compile("tcp port 80 or udp port 53")
    apart = pfilter.compile("tcp port 80 or udp port 53", optimize="shareable")
    assert (0x01, 0, 0, 40) in merged.to_tuples()
    assert (0x01, 0, 0, 40) not in apart.to_tuples()
    for batch in short_and_long(reference.compile("tcp port 80 or udp port 53", 1, optimize=False)):
        assert (merged.run_batch(batch) == apart.run_batch(batch)).all()


def test_classify_compiles_text_rules_shareable(monkeypatch):
    from pfilter.compiler import driver
    seen = []
    real = driver.compile_expression

    def spy(expr, **kw):
        seen.append(kw.get("optimize"))
        return real(expr, **kw)
    monkeypatch.setattr(driver, "compile_expression", spy)
    monkeypatch.setenv("PFILTER_NO_CACHE", "1")      # a cache hit would skip the compiler
    batch = pfilter.PacketBatch.from_packets([bytes(60)], linktype=1)
    pfilter.classify(batch, {"a": "tcp port 80", "b": "udp"})
    assert seen and all(o == driver.SHAREABLE for o in seen)
