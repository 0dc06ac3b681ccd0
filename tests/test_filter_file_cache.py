"""pfilter.filter_file compiles through the on-disk program cache (pfilter.compiler.cache) by
default: the same output as tcpdump's, a repeated expression skips the compiler, and cache=False
or PFILTER_NO_CACHE=1 leaves the cache alone."""
import pytest

import pfilter
import reference as ref

PCAP = ref.PCAPS / "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap"
EXPR = "tcp port 80 or udp port 53"


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PFILTER_NO_CACHE", raising=False)
    return tmp_path / "cache" / "pfilter" / "programs"


def _entries(directory):
    return sorted(directory.rglob("*.txt")) if directory.exists() else []


def test_filter_file_fills_the_cache_and_a_hit_skips_the_compiler(cache_home, tmp_path, monkeypatch):
    first = pfilter.filter_file(PCAP, tmp_path / "a.pcap", EXPR)
    assert first.matched > 0 and len(_entries(cache_home)) == 1
    import subprocess
    subprocess.run([ref.tcpdump(), "-r", str(PCAP), "-w", str(tmp_path / "t.pcap"), EXPR],
                   check=True, capture_output=True)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "t.pcap").read_bytes()
    import pfilter.compiler.driver as driver

    def refuse(*a, **k):
        raise AssertionError("compiled although the program was cached")
    monkeypatch.setattr(driver, "compile_expression", refuse)
    monkeypatch.setattr(pfilter, "compile", refuse)
    # the general path (a per-batch callback) and the fast path both take the cached program
    seen = []
    again = pfilter.filter_file(PCAP, tmp_path / "b.pcap", EXPR, on_batch=lambda b, i: seen.append(len(i)))
    assert again.matched == first.matched == sum(seen)
    assert (tmp_path / "b.pcap").read_bytes() == (tmp_path / "a.pcap").read_bytes()
    assert pfilter.filter_file(PCAP, None, EXPR).matched == first.matched


def test_cache_false_and_pfilter_no_cache_leave_the_cache_alone(cache_home, tmp_path, monkeypatch):
    calls = []
    real = pfilter.compile

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)
    monkeypatch.setattr(pfilter, "compile", counting)
    want = pfilter.filter_file(PCAP, tmp_path / "a.pcap", EXPR, cache=False)
    assert _entries(cache_home) == [] and calls == [EXPR]
    monkeypatch.setenv("PFILTER_NO_CACHE", "1")
    assert pfilter.filter_file(PCAP, tmp_path / "b.pcap", EXPR).matched == want.matched
    assert _entries(cache_home) == [] and calls == [EXPR, EXPR]
    assert (tmp_path / "b.pcap").read_bytes() == (tmp_path / "a.pcap").read_bytes()


def test_cached_programs_equal_compiled_ones_for_every_optimize_level(cache_home):
    from pfilter.compiler.cache import cached_compile
    for optimize in (True, False, "shareable"):
        want = pfilter.compile(EXPR, optimize=optimize).to_tuples()
        for _ in range(2):      # a miss, then a hit
            assert cached_compile(EXPR, optimize=optimize).to_tuples() == want
    assert len(_entries(cache_home)) == 3


def test_a_bad_expression_is_reported_as_without_the_cache(cache_home, tmp_path):
    with pytest.raises(pfilter.FilterSyntaxError) as e:
        pfilter.filter_file(PCAP, tmp_path / "a.pcap", "tcp port")
    assert e.value.position is not None and _entries(cache_home) == []
    assert not (tmp_path / "a.pcap").exists()


def test_a_cached_program_longer_than_the_kernel_takes_runs_again(cache_home, tmp_path):
    """A filter of hundreds of hosts compiles to more than 4096 instructions (the kernel's limit,
    not tcpdump's offline): its cache hit (the second call) runs it as the first call did; it
    was refused there ('more than the limit of 4096')."""
    long = " or ".join(f"(host 10.9.{i // 200}.{i % 200} and port {i + 1})" for i in range(320)) + " or tcp"
    first = pfilter.filter_file(PCAP, tmp_path / "a.pcap", long)
    assert len(pfilter.compile(long)) > 4096 and len(_entries(cache_home)) == 1
    again = pfilter.filter_file(PCAP, tmp_path / "b.pcap", long)
    assert again.matched == first.matched > 0
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    from pfilter.compiler.cache import cached_compile
    assert cached_compile(long).to_tuples() == pfilter.compile(long).to_tuples()
