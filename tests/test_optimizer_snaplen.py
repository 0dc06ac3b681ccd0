"""The optimizer's work is shared across snapshot lengths (pfilter/compiler/driver.py, _optimized):
an expression compiled at one snaplen and then at another is optimized once, and the second
program is the very one a fresh optimization at that snaplen makes (instruction for instruction),
for every corpus expression of every link type, optimized and shareable; the standard expressions
without the corpus."""
import random

import pytest

import pfilter
import pfilter.optimizer
import reference as ref
from pfilter.compiler import driver
from pfilter.optimizer import optimize_program

STANDARD = ["ip and tcp port 80", "tcp", "udp port 53 or icmp", "vlan and ip",
            " or ".join(f"host 10.0.0.{i}" for i in range(20)), "ip6 and udp", "tcp[13] & 2 != 0"]
#: the snaplen that warms the cache, then the ones compiled from it (the default, tcpdump's old
#: default, a small one, the largest)
WARM, OTHERS = 65535, (262144, 96, 0xFFFFFFFF)


@pytest.fixture
def optimizer_calls(monkeypatch):
    """The number of optimizer runs compile() has made (the cache of programs cleared first)."""
    calls = []
    real = pfilter.optimizer.optimize_program

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(pfilter.optimizer, "optimize_program", counted)
    driver._cache_clear()
    yield calls
    driver._cache_clear()


def _fresh(expr, dlt, snap, optimize):
    tuples, optimizable = driver._generate(expr, dlt, snap)
    if not optimizable:
        return tuples
    return optimize_program(tuples, merge_twins=optimize != driver.SHAREABLE)


def _check(exprs, dlt, optimize, snaps, calls):
    """Every expression compiled at WARM, then at each of snaps: one optimizer run each, and the
    programs a fresh run gives. The number of expressions checked."""
    checked = 0
    for expr in exprs:
        try:
            warm = pfilter.compile(expr, linktype=dlt, snaplen=WARM, optimize=optimize)
        except pfilter.FilterError:
            continue
        before = len(calls)
        for snap in snaps:
            got = pfilter.compile(expr, linktype=dlt, snaplen=snap, optimize=optimize)
            assert got.to_tuples() == _fresh(expr, dlt, snap, optimize), (expr, dlt, snap, optimize)
            assert got.snaplen == snap
        assert len(calls) == before, f"{expr!r} on {dlt}: optimized again at another snaplen"
        assert warm.to_tuples() == _fresh(expr, dlt, WARM, optimize)
        checked += 1
    return checked


@pytest.mark.parametrize("optimize", [True, driver.SHAREABLE])
def test_standard_expressions_are_optimized_once_for_every_snaplen(optimizer_calls, optimize):
    assert _check(STANDARD, 1, optimize, OTHERS, optimizer_calls) == len(STANDARD)


@ref.needs_corpus("pcaps.tsv")
def test_every_corpus_expression_at_another_snaplen_is_what_a_fresh_optimization_gives(optimizer_calls):
    rng = random.Random(7)
    checked = 0
    for name, exprs in sorted(ref.corpus_expressions().items()):
        dlt = driver.resolve_linktype(name)
        checked += _check(exprs, dlt, True, (262144,), optimizer_calls)
        sample = rng.sample(exprs, min(25, len(exprs)))
        checked += _check(sample, dlt, True, OTHERS[1:], optimizer_calls)
        checked += _check(sample, dlt, driver.SHAREABLE, OTHERS, optimizer_calls)
    assert checked > 500
