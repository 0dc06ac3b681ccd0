"""The compiler and optimizer on very long expressions (issue 18, items 6 and 19).

Long `or` chains of ports and flat arithmetic chains of 10,000 terms compile (tcpdump compiles
both), with Python's recursion limit at its default, and mean what libpcap 1.10.3's unoptimized
program means: same bytecode unoptimized, same verdict optimized, on generated packets (ports in
and out of the list, IPv4 with options, fragments, IPv6, UDP, VLAN, truncated copies). Every walk
over the expression or the program is iterative or bounded by a constant, which the tests check
by compiling with the recursion limit only a little above the test's own stack depth. Real
nesting (parentheses) keeps its documented limit ("nested too deeply", README).
"""
import os
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pfilter
import reference
from pfilter.compiler.driver import compile_expression, compile_to_tuples
from pfilter.compiler.parser import MAX_NESTING
from pfilter.errors import FilterSyntaxError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECURSION_LIMIT = 1000      # CPython's default (sys.getrecursionlimit() at start-up)
HEADROOM = 150                      # frames above the caller a size-independent walk may use


@pytest.fixture(autouse=True)
def default_recursion_limit():
    """Every test runs with CPython's default recursion limit, whatever ran before it."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(DEFAULT_RECURSION_LIMIT)
    yield
    sys.setrecursionlimit(old)


def _stack_depth():
    depth, f = 0, sys._getframe()
    while f is not None:
        depth, f = depth + 1, f.f_back
    return depth


def _with_little_stack(fn, *args, **kw):
    """fn(*args, **kw) with the recursion limit at the current depth + HEADROOM: a walk that
    recursed once per term or per block would fail here whatever the expression's size."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + HEADROOM)
    try:
        return fn(*args, **kw)
    finally:
        sys.setrecursionlimit(old)


def ports_or(n):
    return " or ".join(f"tcp port {i}" for i in range(1, n + 1))


# ----------------------------------------------------------------------------- packets

_MAC = bytes.fromhex("020000000001" "020000000002")        # destination, source


def _eth(ethertype, payload, vlan=None):
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return _MAC + tag + struct.pack("!H", ethertype) + payload


def _ipv4(proto, payload, ihl=5, frag=0, tos=0, ttl=64, vlan=None):
    opts = b"\x01" * (4 * (ihl - 5))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, 20 + len(opts) + len(payload), 1, frag, ttl,
                      proto, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return _eth(0x0800, hdr + opts + payload, vlan)


def _ipv6(nh, payload):
    hdr = struct.pack("!IHBB16s16s", 0x60000000, len(payload), nh, 64,
                      bytes.fromhex("20010db8" + "0" * 23 + "1"), bytes.fromhex("20010db8" + "0" * 23 + "2"))
    return _eth(0x86DD, hdr + payload)


def _l4(sport, dport):
    return struct.pack("!HH", sport, dport) + bytes(16)


def port_packets(n, seed=18):
    """Packets around a port list 1..n: ports in it, just outside it, at both ends, random,
    as source and destination, TCP and UDP, IPv4 (with options, fragments) and IPv6, VLAN
    tagged, and truncated copies cut inside every header."""
    rng = random.Random(seed)
    ports = sorted({0, 1, 2, n // 2, n - 1, n, n + 1, n + 2, 65535} | {rng.randrange(65536) for _ in range(24)})
    pkts = []
    for p in ports:
        other = rng.choice([0, 65535, rng.randrange(65536)])
        for sport, dport in ((p, other), (other, p)):
            seg = _l4(sport, dport)
            pkts += [_ipv4(6, seg), _ipv4(17, seg), _ipv4(6, seg, ihl=7), _ipv4(6, seg, frag=0x2000),
                     _ipv4(6, seg, frag=3), _ipv6(6, seg), _ipv6(17, seg), _ipv6(132, seg),
                     _ipv4(6, seg, vlan=5)]
    cuts = (0, 13, 14, 20, 23, 24, 34, 35, 36, 37, 38, 54, 55, 56, 57, 58)
    pkts += [p[:c] for p in pkts[::5] for c in cuts]
    return pkts


def arith_packets(seed=19):
    """IPv4 packets with every TOS value and a spread of TTLs, plus truncated ones."""
    rng = random.Random(seed)
    pkts = [_ipv4(6, _l4(1, 2), tos=tos, ttl=rng.randrange(256)) for tos in range(256)]
    pkts += [_ipv4(6, _l4(1, 2), tos=7, ttl=ttl) for ttl in range(0, 256, 3)]
    pkts += [p[:c] for p in pkts[::17] for c in (0, 14, 15, 16, 22, 23)]
    pkts += [_ipv6(6, _l4(1, 2))]
    return pkts


def batch_of(pkts):
    return pfilter.PacketBatch.from_packets(pkts, wirelens=[max(len(p), 60) for p in pkts], linktype=1)


def assert_same_verdicts(expr, batch, optimize=True, reference_program=None, little_stack=True):
    """pfilter's program (optimized by default) selects what libpcap's unoptimized savefile
    program (or `reference_program`, run by libpcap's bpf_filter()) selects, and the packets
    are not all alike for it."""
    ref = reference.compile_savefile(expr) if reference_program is None else reference_program
    theirs = reference.bpf_filter_batch(ref, batch) != 0
    compile_ = (lambda: _with_little_stack(compile_expression, expr, optimize=optimize)) if little_stack \
        else (lambda: compile_expression(expr, optimize=optimize))
    ours = compile_().run_batch(batch) != 0
    assert theirs.any() and not theirs.all()
    mismatches = np.nonzero(ours != theirs)[0]
    assert not len(mismatches), [batch.packet(int(i)).hex() for i in mismatches[:3]]


# ----------------------------------------------------------------------------- long `or` chains

@pytest.mark.parametrize("n", [300, 1000])
def test_long_or_of_ports_compiles_optimized_and_matches_libpcap(n):
    expr = ports_or(n)
    assert_same_verdicts(expr, batch_of(port_packets(n)))


@pytest.mark.parametrize("n", [300, 1000])
def test_long_or_of_ports_for_rule_sets_matches_libpcap(n):
    assert_same_verdicts(ports_or(n), batch_of(port_packets(n)), optimize="shareable")


@pytest.mark.parametrize("n", [300, 1000])
def test_long_or_of_ports_unoptimized_is_libpcaps_bytecode(n):
    expr = ports_or(n)
    assert tuple(_with_little_stack(compile_to_tuples, expr)) == reference.compile_savefile(expr)


@pytest.mark.parametrize("n", [3000])
def test_longer_or_of_ports_means_what_its_unoptimized_program_means(n):
    # libpcap needs ~50 s to compile 3,000 ports (its code generator is quadratic); the tests
    # above show pfilter's unoptimized program is libpcap's for this shape, and here libpcap's
    # bpf_filter() runs it against pfilter's optimized program.
    expr = ports_or(n)
    unoptimized = _with_little_stack(compile_to_tuples, expr)
    assert_same_verdicts(expr, batch_of(port_packets(n)), reference_program=unoptimized)


def test_long_and_of_negated_ports_matches_libpcap():
    expr = " and ".join(f"not tcp port {i}" for i in range(1, 1001))
    assert_same_verdicts(expr, batch_of(port_packets(1000)))


def test_long_or_inside_the_deepest_allowed_parentheses_compiles():
    depth = MAX_NESTING
    expr = "(" * depth + ports_or(1000) + ")" * depth
    # the parser recurses once per parenthesis (at most MAX_NESTING times): default limit
    assert_same_verdicts(expr, batch_of(port_packets(1000)), little_stack=False)
    with pytest.raises(FilterSyntaxError, match="nested too deeply"):
        compile_expression("(" + expr + ")")


def test_command_prints_a_long_or_like_tcpdump(tmp_path):
    # It used to stop with "internal error: RecursionError". Unoptimized, the listing is
    # tcpdump's own; optimized, the command succeeds and prints a program.
    expr = ports_or(300)
    env = dict(os.environ, PYTHONPATH=str(ROOT), PFILTER_NO_CACHE="1")
    cmd = [sys.executable, "-m", "pfilter", "-y", "EN10MB"]
    r = subprocess.run(cmd + ["-O", "-d", expr], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout == reference.tcpdump_dump(expr, "EN10MB", "d", optimize=False)
    r = subprocess.run(cmd + ["-dd", expr], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert r.stdout.splitlines()[-1].startswith("{ 0x6,")


# ----------------------------------------------------------------------------- flat arithmetic

def plus_chain(n, operand="ip[1]"):
    return " + ".join([operand] * n)


@pytest.mark.parametrize("n", [980, 2000, 10000])
def test_flat_sum_chain_is_not_nesting_and_is_libpcaps(n):
    # n copies of the TOS byte sum to 7n exactly when TOS is 7 (n * 255 < 2**32).
    expr = f"{plus_chain(n)} = {7 * n}"
    assert tuple(_with_little_stack(compile_to_tuples, expr)) == reference.compile_savefile(expr)
    assert_same_verdicts(expr, batch_of(arith_packets()))


def test_issue_example_of_ten_thousand_terms_compiles():
    # Same shape as the sum chain above (whose 10,000-term bytecode is libpcap's).
    expr = plus_chain(10000, "ip[0]") + " > 0"
    unoptimized = _with_little_stack(compile_to_tuples, expr)
    assert_same_verdicts(expr, batch_of(arith_packets()), reference_program=unoptimized)


@pytest.mark.parametrize("n", [1000, 4000])
def test_flat_chain_of_mixed_operators_matches_libpcap(n):
    # `+` and `-` chain left to right; each `*` operand binds tighter (a short right operand).
    expr = "ip[8]" + "".join(f" + ip[1] * {k % 5 + 1} - ip[8] | 0" for k in range(n // 3)) + " > 1000"
    assert tuple(_with_little_stack(compile_to_tuples, expr)) == reference.compile_savefile(expr)
    assert_same_verdicts(expr, batch_of(arith_packets()))


def test_parenthesized_arithmetic_keeps_the_nesting_limit():
    inside = "(" * (MAX_NESTING - 2) + "ip[1]" + " + 1)" * (MAX_NESTING - 2) + " > 3"
    compile_expression(inside)
    too_deep = "(" * (MAX_NESTING + 1) + "ip[1]" + " + 1)" * (MAX_NESTING + 1) + " > 3"
    with pytest.raises(FilterSyntaxError, match="nested too deeply"):
        compile_expression(too_deep)


# ----------------------------------------------------------------------------- the optimizer

def test_bound_of_shared_values_takes_linear_time():
    # A = A + A forty times: one value used twice at every step. Walking its operands without
    # memory took 2**n steps (days for n = 40) in Program.rejects_all and the optimizer.
    insns = [(0x20, 0, 0, 0)] + [(0x07, 0, 0, 0), (0x0C, 0, 0, 0)] * 40     # ld [0]; (tax; add x)*
    insns += [(0x07, 0, 0, 0), (0x40, 0, 0, 1), (0x15, 0, 1, 5), (0x06, 0, 0, 1), (0x06, 0, 0, 0)]
    prog = pfilter.Program.from_tuples(insns)    # tax; ld [x+1]; jeq #5; ret #1; ret #0
    start = time.perf_counter()
    rejects = prog.rejects_all
    assert time.perf_counter() - start < 10
    hit = bytes([0, 0, 0, 0, 5]) + bytes(10)    # A doubles to 0 for any word: [1..4] == 5 matches
    assert reference.bpf_filter(insns, hit) == 1
    assert rejects is False
    from pfilter.optimizer import optimize_program
    opt = optimize_program(insns)
    for pkt in (hit, bytes(15), bytes([1, 0, 0, 0, 5]), bytes(4)):
        assert pfilter.Program.from_tuples(opt).run(pkt) == reference.bpf_filter(insns, pkt)
