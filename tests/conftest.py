"""Shared fixtures: the VM under test (Cython and pure-Python twin) and corpus access."""
import os
import signal
import sys
from pathlib import Path

import pytest

# A test run started in the background by a non-interactive shell (`cmd &`, nohup, some CI
# runners) inherits SIGINT ignored, and so would every pfilter process the tests start, which
# then cannot be interrupted: the Ctrl-C tests need the disposition of an interactive start.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference  # noqa: E402  (tests/ is on sys.path from here on)

# A printer's exception (a pfilter bug) is raised, here and in the commands the tests run, rather
# than ending a packet line with " [|pfilter]" (pfilter.display.STRICT_ENV): no test passes over it.
os.environ.setdefault("PFILTER_DISPLAY_STRICT", "1")


def pytest_configure(config):
    config.addinivalue_line("markers", "missing_reference(what): a placeholder case standing for "
                            "corpus cases that could not be built; skips (fails when CI=true) naming what")
    config.addinivalue_line("markers", "needs_corpus(path): the test reads this corpus file (present)")


#: the modules whose tests take longest (tens of seconds each, on a 2 GHz core), run first: with
#: pytest-xdist's workers (scripts/test.sh) a long test started last keeps one worker busy while
#: the others have nothing left to do. Longest first; the rest keep their order.
LONGEST_FIRST = ("test_native_random", "test_display_vs_tcpdump", "test_native_corpus",
                 "test_agreement_corpus", "test_native_classify", "test_robust_compiler",
                 "test_optimizer_probes", "test_cli_tcpdump_identical", "test_vm_vs_libpcap",
                 "test_native_sets", "test_program_text", "test_ebpf_corpus")


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(getattr(getattr(item, "module", None), "__name__", "").rsplit(".", 1)[-1],
                                         len(rank)))


def pytest_runtest_setup(item):
    reference.check_missing_reference(item)


def pytest_terminal_summary(terminalreporter):
    """Name the tests skipped for lack of third-party files outside the repository (the corpus,
    $PFILTER_CORPUS; libseccomp's tools, $PFILTER_REFERENCE): one line per test function."""
    import re
    names = {}
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        setting = re.search(r"\(set (PFILTER_[A-Z_]+)", reason)
        if setting:
            key = (rep.nodeid.split("[", 1)[0], setting.group(1))
            names[key] = names.get(key, 0) + 1
    if names:
        settings = sorted({v for _, v in names})
        terminalreporter.write_sep("-", f"{sum(names.values())} tests skipped: third-party files missing "
                                        f"(corpus: {reference.CORPUS}; set {', '.join(settings)})")
        for (name, setting), n in sorted(names.items()):
            terminalreporter.write_line(f"{name}" + (f" ({n} cases)" if n > 1 else "") + f"  [{setting}]")


@pytest.fixture(scope="session", autouse=True)
def _private_cache_home(tmp_path_factory):
    """Point XDG_CACHE_HOME at a directory of this test session, for this process and the
    pfilter processes the tests start: pfilter.filter_file and the command use the
    compiled-program cache (pfilter.compiler.cache) by default and must not fill the user's
    ~/.cache/pfilter. A test of the cache sets its own directory (monkeypatch.setenv) on top."""
    home = str(tmp_path_factory.mktemp("xdg-cache"))
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = home
    yield home
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


@pytest.fixture(params=["cython", "python"])
def vm(request, monkeypatch):
    """Runs the test once with the Cython VM and once with the pure-Python VM."""
    from pfilter import program
    if request.param == "cython":
        from pfilter._impl import PURE
        if PURE:        # the run asked for the twins alone (.ci/run's PFILTER_PUREPYTHON=1 step)
            pytest.skip("PFILTER_PUREPYTHON=1: the pure-Python twins only")
        if program._cvm is None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail("the Cython VM is not built")
            pytest.skip("the Cython VM is not built")
    else:
        if os.environ.get("PFILTER_SANITIZED") == "1":
            # (scripts/asan.sh: the sanitizers check native code, and the pure-Python VM has none;
            # the suite runs it)
            pytest.skip("under the sanitizers: the compiled VM only")
        monkeypatch.setattr(program, "_cvm", None)
    return request.param


@pytest.fixture
def small_chunks(monkeypatch):
    """The fast path's PcapCopy jobs made with chunks of 64 KiB (the smallest it takes), so that
    a small capture makes many chunks; the list of the jobs run (of a pass whose workers are
    forked processes, a ring: member 0's, which shows the whole ring's totals)."""
    from pfilter.capture import _fastcopy
    runs = []
    real = _fastcopy.PcapCopy

    def make(*args, **kw):
        kw["chunk"] = 1 << 16
        job = real(*args, **kw)
        if kw.get("member", 0) == 0:
            runs.append(job)
        return job
    monkeypatch.setattr(_fastcopy, "PcapCopy", make)
    return runs
