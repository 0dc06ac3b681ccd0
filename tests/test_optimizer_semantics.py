"""The optimizer keeps bpf_filter's semantics, including where libpcap's optimizer did not:
each of libpcap's known wrong-code bugs has a test here, plus loads past the captured length,
division by zero, scratch-memory stores that a jump bypass must not skip, long jumps, backward
jumps, rejects_all, and the termination measure every pass must decrease.
"""
import pytest

import pfilter
import reference
from pfilter.optimizer import PASSES, Context, optimize_program, rejects_all
from pfilter.optimizer.cfg import COND, RET, build_graph
from pfilter.optimizer.linearize import linearize
from pfilter.optimizer.values import stmt_rank
from test_optimizer_probes import base_packets, disagreements, probe_batch, probe_packets

ACCEPT = 262144


def libpcap_unopt(expr, dlt=1):
    """libpcap's unoptimized program (reference.compile skips, or fails under CI=true, when
    libpcap is missing)."""
    return reference.compile(expr, dlt, optimize=False)


def run(insns, packet, wirelen=None):
    return pfilter.Program.from_tuples(insns).run(packet, wirelen)


def same_everywhere(insns, extra=()):
    """Optimized and original agree on probe packets grown from corpus packets."""
    opt = optimize_program(insns)
    batch = probe_batch(insns, base_packets())
    assert not len(disagreements(insns, opt, batch))
    for p in extra:
        assert run(insns, p) == run(opt, p)
    return opt


# --------------------------------------------------------------------- libpcap's known bugs

def test_constant_divisions_compare_as_integers_libpcap_1699():
    insns = libpcap_unopt("1/2=1/3&&1>4/5&&1>6/7")
    opt = optimize_program(insns)
    assert opt == [(0x06, 0, 0, ACCEPT)]
    assert run(opt, b"") == ACCEPT
    assert not rejects_all(insns)


def test_masking_with_all_ones_keeps_the_test_libpcap_1698():
    insns = libpcap_unopt("link[0:1] & 0xffffffff != 0")
    opt = same_everywhere(insns)
    assert run(opt, b"\x00" * 20) == 0
    assert run(opt, b"\x01" + b"\x00" * 19) != 0
    assert run(opt, b"") == 0


def test_load_on_one_side_of_an_or_is_not_dropped_libpcap_430():
    insns = libpcap_unopt("ether[1] > tcp[100] or ip")
    opt = same_everywhere(insns)
    # a short IPv4 TCP packet: tcp[100] is past the captured length, which ends the whole
    # program with 0 before `ip` is tried (libpcap -O accepted it)
    short = bytes(12) + b"\x08\x00" + b"\x45" + bytes(8) + b"\x06" + bytes(20)
    assert run(opt, short) == run(insns, short) == 0
    long_ = bytes(12) + b"\x08\x00" + b"\x45" + bytes(8) + b"\x06" + bytes(200)
    assert run(opt, long_) == run(insns, long_) == ACCEPT
    other = b"\x00\x05" + bytes(10) + b"\x86\xdd" + bytes(40)
    assert run(opt, other) == run(insns, other) == 0


def test_stores_survive_jump_bypass_libpcap_1670():
    # the second test of [12] is decided on both incoming edges, but the block holding it also
    # stores A into M[1], which both successors read: bypassing it must not skip the store
    prog = [
        (0x28, 0, 0, 12),        # 0 ldh [12]
        (0x15, 0, 2, 0x800),     # 1 jeq #0x800 jt 2 jf 4
        (0x00, 0, 0, 7),         # 2 ld #7
        (0x05, 0, 0, 1),         # 3 ja 5
        (0x00, 0, 0, 9),         # 4 ld #9
        (0x02, 0, 0, 1),         # 5 st M[1]
        (0x28, 0, 0, 12),        # 6 ldh [12]
        (0x15, 0, 2, 0x800),     # 7 jeq #0x800 jt 8 jf 10
        (0x60, 0, 0, 1),         # 8 ld M[1]
        (0x16, 0, 0, 0),         # 9 ret a
        (0x60, 0, 0, 1),         # 10 ld M[1]
        (0x04, 0, 0, 1),         # 11 add #1
        (0x16, 0, 0, 0),         # 12 ret a
    ]
    opt = optimize_program(prog)
    ip = bytes(12) + b"\x08\x00" + bytes(20)
    arp = bytes(12) + b"\x08\x06" + bytes(20)
    assert run(opt, ip) == 7
    assert run(opt, arp) == 10


def test_store_in_a_bypassed_block_is_kept_when_a_later_block_reads_it():
    # two ways into a block that stores and tests; one edge decides the test; the store's
    # value (the packet's byte 20) is read after the bypass
    prog = [
        (0x28, 0, 0, 12),        # 0 ldh [12]
        (0x15, 0, 3, 0x800),     # 1 jeq #0x800 jt 2 jf 5
        (0x30, 0, 0, 20),        # 2 ldb [20]
        (0x02, 0, 0, 3),         # 3 st M[3]
        (0x28, 0, 0, 12),        # 4 ldh [12]
        (0x15, 0, 2, 0x800),     # 5 jeq #0x800 jt 6 jf 8
        (0x61, 0, 0, 3),         # 6 ldx M[3]
        (0x87, 0, 0, 0),         # 7 txa ; ret a below
        (0x16, 0, 0, 0),         # 8 ret a
    ]
    opt = optimize_program(prog)
    ip = bytes(12) + b"\x08\x00" + bytes(6) + b"\x2a" + bytes(5)
    assert run(opt, ip) == run(prog, ip) == 0x2a
    arp = bytes(12) + b"\x08\x06" + bytes(20)
    assert run(opt, arp) == run(prog, arp)


# --------------------------------------------------------------------- bpf_filter semantics

def test_unused_load_past_caplen_still_rejects():
    prog = [(0x20, 0, 0, 100), (0x00, 0, 0, 5), (0x06, 0, 0, 1)]
    opt = optimize_program(prog)
    assert run(opt, bytes(50)) == 0
    assert run(opt, bytes(104)) == 1


def test_unused_load_covered_by_a_later_load_is_dropped():
    prog = [(0x20, 0, 0, 10), (0x20, 0, 0, 100), (0x06, 0, 0, 1)]
    opt = optimize_program(prog)
    assert opt == [(0x20, 0, 0, 100), (0x06, 0, 0, 1)]
    assert run(opt, bytes(103)) == 0 and run(opt, bytes(104)) == 1


def test_load_is_not_dropped_when_another_path_accepts_without_it():
    prog = [(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (0x20, 0, 0, 60), (0x06, 0, 0, 1)]
    opt = optimize_program(prog)
    ip = bytes(12) + b"\x08\x00" + bytes(10)
    assert run(opt, ip) == 0
    assert run(opt, bytes(14)) == 1


def test_division_by_zero_x_rejects_even_when_the_quotient_is_unused():
    prog = [(0x01, 0, 0, 0), (0x00, 0, 0, 5), (0x3C, 0, 0, 0), (0x06, 0, 0, 1)]
    assert optimize_program(prog) == [(0x06, 0, 0, 0)]
    assert rejects_all(prog)


def test_division_by_packet_dependent_x_is_kept():
    prog = [(0x30, 0, 0, 0), (0x07, 0, 0, 0), (0x00, 0, 0, 5), (0x3C, 0, 0, 0), (0x06, 0, 0, 1)]
    opt = optimize_program(prog)
    assert run(opt, b"\x00") == 0 and run(opt, b"\x02") == 1


def test_shifts_of_32_or_more_give_zero():
    prog = [(0x01, 0, 0, 40), (0x00, 0, 0, 0xFFFF), (0x6C, 0, 0, 0), (0x15, 0, 1, 0),
            (0x06, 0, 0, 1), (0x06, 0, 0, 2)]
    opt = optimize_program(prog)
    assert opt == [(0x06, 0, 0, 1)]


def test_arithmetic_wraps_at_32_bits():
    prog = [(0x00, 0, 0, 0xFFFFFFFF), (0x04, 0, 0, 2), (0x15, 0, 1, 1), (0x06, 0, 0, 1), (0x06, 0, 0, 2)]
    assert optimize_program(prog) == [(0x06, 0, 0, 1)]


def test_x_relative_load_at_constant_x_becomes_absolute():
    prog = [(0x01, 0, 0, 12), (0x48, 0, 0, 0), (0x15, 0, 1, 0x800), (0x06, 0, 0, 1), (0x06, 0, 0, 0)]
    opt = optimize_program(prog)
    assert opt[0] == (0x28, 0, 0, 12) and len(opt) == 4


# --------------------------------------------------------------------- whole programs

@pytest.mark.parametrize("expr", reference.corpus_params(lambda: reference.corpus_lines("expressions/rejects_all.txt")))
def test_expressions_that_never_match_optimize_to_ret_0(expr):
    insns = libpcap_unopt(expr)
    assert rejects_all(insns)
    assert optimize_program(insns) == [(0x06, 0, 0, 0)]


@pytest.mark.parametrize("expr", ["ip", "tcp port 80", "not ip and not ip6", "len > 60", "ip or not ip"])
def test_expressions_that_can_match_are_not_reported_as_rejecting_all(expr):
    assert not rejects_all(libpcap_unopt(expr))


def test_far_jumps_get_trampolines_and_stay_equivalent():
    # scattered addresses: a run of consecutive ones would shrink to a few range tests
    hosts = [(10, i % 7, i // 7, (i * 37) % 250 + 1) for i in range(120)]
    expr = " or ".join("host %d.%d.%d.%d" % h for h in hosts)
    insns = libpcap_unopt(expr)
    opt = optimize_program(insns)
    assert len(opt) > 256
    assert all(jt <= 255 and jf <= 255 for _, jt, jf, _ in opt)
    prog = pfilter.Program.from_tuples(opt)
    hits = [bytes(12) + b"\x08\x00" + bytes(12) + bytes(hosts[i]) + bytes(8) for i in (0, 60, 119)]
    assert all(prog.run(p) == ACCEPT for p in hits)
    miss = bytes(12) + b"\x08\x00" + bytes(12) + bytes([10, 0, 9, 9]) + bytes(8)
    assert prog.run(miss) == 0
    batch = pfilter.PacketBatch.from_packets(probe_packets(insns, base_packets()[:4], per_base=16) + hits + [miss])
    assert not len(disagreements(insns, opt, batch))


def test_program_with_a_backward_jump_is_returned_unchanged():
    prog = [(0x00, 0, 0, 1), (0x15, 1, 0, 1), (0x06, 0, 0, 0), (0x05, 0, 0, 0xFFFFFFFD), (0x06, 0, 0, 1)]
    assert optimize_program(prog) == prog


def test_optimizing_twice_changes_nothing_more():
    for row in reference.corpus_expected("en10mb")[::10]:
        once = optimize_program(row["unopt"])
        assert optimize_program(once) == once, row["expr"]


# --------------------------------------------------------------------- termination

def measure(graph):
    """The quantity every pass must strictly decrease when it reports a change (compared
    lexicographically): statements, conditional jumps, cheapness deficit, blocks, and how far
    back edges point."""
    blocks = graph.blocks()
    n = max(b.order for b in blocks) + 1
    stmts = sum(len(b.stmts) for b in blocks)
    conds = sum(b.kind == COND for b in blocks)
    deficit = sum(4 - stmt_rank(c) for b in blocks for c, _ in b.stmts)
    deficit += sum(1 for b in blocks if b.kind == COND and b.jcode & 0x08)
    deficit += sum(1 for b in blocks if b.kind == RET and b.rcode & 0x18 == 0x10)
    edges = sum(n - s.order for b in blocks for s in b.succ)
    return (stmts, conds, deficit, len(blocks), edges)


def test_every_pass_that_changes_the_graph_decreases_the_measure():
    for row in reference.corpus_expected("en10mb")[::3]:
        graph = build_graph([tuple(i) for i in row["unopt"]])
        if graph is None:
            continue
        ctx = Context()
        changed = True
        while changed:
            changed = False
            for p in PASSES:
                before = measure(graph)
                if p(graph, ctx):
                    changed = True
                    ctx.invalidate()
                    after = measure(graph)
                    assert after < before, f"{p.__name__} on {row['expr']!r}: {before} -> {after}"
        linearize(graph)


@pytest.mark.parametrize("expr", [
    " or ".join(f"host 10.0.0.{i}" for i in range(1, 7)),
    " or ".join(f"port {p}" for p in (21, 22, 25, 80, 443)),
    " or ".join(f"net {n}.0.0.0/8" for n in (10, 11, 12, 13)),
    " or ".join(f"src host 192.168.0.{i}" for i in range(1, 5)) + " or dst host 10.9.9.9",
])
def test_long_or_chains_exit_early_and_stay_equivalent(expr):
    insns = libpcap_unopt(expr)
    opt = same_everywhere(insns)
    assert len(opt) < len(insns)


def test_host_list_loads_each_address_once_on_the_ipv4_path():
    # exit_early: the source address is tested against every host before the destination is
    # loaded (a match exits through a block that still loads the destination)
    insns = libpcap_unopt(" or ".join(f"host 10.0.0.{i}" for i in range(1, 7)))
    opt = optimize_program(insns)
    assert sum(1 for c, _, _, k in opt if c == 0x20 and k == 26) == 1
    src_match = bytes(12) + b"\x08\x00" + bytes(12) + bytes([10, 0, 0, 4]) + bytes([1, 2, 3, 4])
    assert run(opt, src_match) == ACCEPT
    assert run(opt, src_match[:30]) == run(insns, src_match[:30]) == 0
