"""Path length against libpcap -O on the standard benchmark expressions, and the search that
replaces long chains of equality tests (pfilter/optimizer/search.py): it keeps every verdict,
truncated packets included, it only appears for chains longer than LEAF_MAX, and optimizing
its output again changes nothing.

The standard expressions come from bench/conftest.py (loaded by path: one list for the
benchmarks and for this test).
"""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

import pfilter
import reference
from pfilter.optimizer import optimize_program
from pfilter.optimizer.search import LEAF_MAX
from test_optimizer_probes import base_packets, disagreements, probe_batch

_spec = importlib.util.spec_from_file_location(
    "bench_standard_expressions", Path(__file__).resolve().parents[1] / "bench" / "conftest.py")
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
STANDARD_EXPRESSIONS = _bench.STANDARD_EXPRESSIONS
TWENTY_HOSTS = _bench.TWENTY_HOSTS

JGT_K = 0x25


@pytest.fixture(scope="module")
def en10mb_batches():
    return [b for (dlt, _snap), b in reference.corpus_batches().items() if dlt == 1]


def _mean_steps(prog, batches):
    return sum(int(prog.count_steps(b).sum()) for b in batches) / sum(len(b) for b in batches)


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=_bench.expression_id)
def test_standard_expression_runs_no_more_instructions_per_corpus_packet_than_libpcap_o(expr, en10mb_batches):
    ours = pfilter.compile(expr)
    plain = pfilter.Program.from_tuples(reference.compile(expr, 1, optimize=False))
    theirs = pfilter.Program.from_tuples(reference.compile(expr, 1, optimize=True))
    for b in en10mb_batches:
        assert np.array_equal(ours.run_batch(b), plain.run_batch(b))
    assert _mean_steps(ours, en10mb_batches) <= _mean_steps(theirs, en10mb_batches)


def test_twenty_host_or_walks_a_search_instead_of_twenty_tests_per_address():
    prog = pfilter.compile(TWENTY_HOSTS)
    miss = bytes(12) + b"\x08\x00" + bytes(12) + bytes([10, 200, 0, 1, 10, 200, 0, 2]) + bytes(8)
    batch = pfilter.PacketBatch.from_packets([miss])
    assert prog.run(miss) == 0
    assert int(prog.count_steps(batch)[0]) <= 24
    assert any(code == JGT_K for code, _, _, _ in prog.to_tuples())


def _scattered_hosts(n):
    return " or ".join(f"host 10.{i % 5}.{(i * 7) % 250}.{(i * 37) % 250 + 1}" for i in range(n))


@pytest.mark.parametrize("expr", [
    pytest.param(TWENTY_HOSTS, id="20-host-or"),
    pytest.param(_scattered_hosts(LEAF_MAX + 1), id="leaf-max-plus-one-hosts"),
    pytest.param(_scattered_hosts(50), id="50-hosts"),
    pytest.param("not (" + _scattered_hosts(30) + ")", id="not-30-hosts"),
    pytest.param(" or ".join(f"port {p}" for p in range(1000, 1040)), id="40-consecutive-ports"),
    pytest.param(" or ".join(f"dst port {p}" for p in (7, 9, 13, 21, 22, 23, 25, 53, 80, 110, 443, 8080)),
                 id="12-dst-ports"),
    pytest.param(" or ".join(f"host {h}" for h in (
        "0.0.0.0", "255.255.255.255", "0.0.0.1", "255.255.255.254", "128.0.0.0", "127.255.255.255",
        "1.2.3.4", "1.2.3.4", "9.9.9.9", "10.0.0.1")), id="extreme-and-repeated-hosts"),
    pytest.param(" or ".join(f"ip proto {p}" for p in range(1, 20)), id="19-ip-protocols"),
    pytest.param("tcp and (" + _scattered_hosts(12) + ") and not port 22", id="12-hosts-inside-and"),
    pytest.param("ether[0] > 10 and (" + " or ".join(f"ether[0] = {v}" for v in range(3, 30)) + ")",
                 id="constants-partly-excluded-by-an-earlier-test"),
    pytest.param("not (" + " or ".join(f"ether[0] >> 4 = {v}" for v in range(16)) + ")",
                 id="not-every-value-a-byte-shift-can-have"),
])
def test_search_trees_return_what_the_unoptimized_program_does(expr):
    insns = reference.compile(expr, 1, optimize=False)
    opt = optimize_program(insns)
    assert not len(disagreements(insns, opt, probe_batch(insns, base_packets())))
    assert optimize_program(opt) == opt


def test_chains_of_at_most_leaf_max_constants_stay_chains():
    opt = optimize_program(reference.compile(_scattered_hosts(LEAF_MAX), 1, optimize=False))
    assert not any(code == JGT_K for code, _, _, _ in opt)


def test_consecutive_constants_shrink_to_range_tests():
    insns = reference.compile(" or ".join(f"port {p}" for p in range(1000, 1040)), 1, optimize=False)
    opt = optimize_program(insns)
    assert len(opt) < 80
    assert not len(disagreements(insns, opt, probe_batch(insns, base_packets())))


def test_a_chain_of_every_value_a_can_have_leaves_only_the_load():
    # the byte must still be there (a load past the captured length returns 0)
    insns = reference.compile(" or ".join(f"ether[0] & 15 = {v}" for v in range(16)), 1, optimize=False)
    opt = optimize_program(insns)
    assert opt == [(0x30, 0, 0, 0), (0x06, 0, 0, 262144)]
