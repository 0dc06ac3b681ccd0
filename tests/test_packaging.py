"""A new user's view of the repository (issue 19): the suite runs without the third-party corpus
(skipping, named, what needs it; failing instead when CI=true), the docs point at nothing outside
the repository, every PFILTER_* setting is documented, the version is written once, and the sdist
carries every Cython source. `scripts/release_check.sh` builds and installs the real package."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib   # Python 3.11+
except ImportError:  # pragma: no cover - Python 3.10
    tomllib = None

import pfilter
import reference

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _pyproject():
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pytest(*args, **env):
    """(status, output) of a pytest run in a subprocess with the given environment changes."""
    full = {k: v for k, v in os.environ.items() if k not in ("CI", "PFILTER_CORPUS")}
    full.update(env)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
                          cwd=ROOT, env=full, capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize("ci", ["", "true"])
def test_the_whole_suite_collects_without_the_corpus(tmp_path, ci):
    status, out = _pytest("--collect-only", "tests", PFILTER_CORPUS=str(tmp_path / "none"), CI=ci)
    assert status == 0, out[-3000:]
    assert "error" not in out.splitlines()[-1], out[-3000:]
    assert "corpus-missing" in out   # the placeholders of the parametrized corpus tests


def test_without_the_corpus_tests_skip_naming_the_file_and_the_summary_names_them(tmp_path):
    missing = tmp_path / "none"
    status, out = _pytest("tests/test_parser_errors.py", "tests/test_capture_equality.py",
                          PFILTER_CORPUS=str(missing))
    assert status == 0, out[-3000:]
    assert f"corpus file {missing / 'expressions' / 'bad.tsv'}" in out
    assert f"corpus file {missing / 'pcaps.tsv'}" in out
    summary = out[out.index("tests skipped: third-party files missing"):]
    assert "tests/test_parser_errors.py::test_libpcap_syntax_errors_are_syntax_errors_with_a_position" in summary
    assert "tests/test_capture_equality.py::test_every_capture_libpcap_reads_gives_libpcaps_packets" in summary
    assert re.search(r"\d+ passed, \d+ skipped", out)


def test_without_the_corpus_under_ci_the_same_tests_fail(tmp_path):
    status, out = _pytest("tests/test_parser_errors.py", "tests/test_capture_equality.py",
                          PFILTER_CORPUS=str(tmp_path / "none"), CI="true")
    assert status == 1
    assert " skipped" not in out.splitlines()[-1]
    assert "CI=true: the test command must install it" in out


def test_a_corpus_capture_path_skips_the_test_using_it_when_absent(monkeypatch, tmp_path):
    monkeypatch.setattr(reference, "IN_CI", False)
    path = reference._CorpusPath(tmp_path / "pcaps") / "absent.pcap"
    assert path.name == "absent.pcap" and "absent.pcap" in repr(path)   # no check without use
    with pytest.raises(pytest.skip.Exception, match="absent.pcap"):
        str(path)
    with pytest.raises(pytest.skip.Exception, match="absent.pcap"):
        path.read_bytes()
    monkeypatch.setattr(reference, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="absent.pcap"):
        os.fspath(path)
    (tmp_path / "pcaps").mkdir()
    (tmp_path / "pcaps" / "absent.pcap").write_bytes(b"x")
    assert path.read_bytes() == b"x"


def test_no_test_module_builds_its_own_path_to_the_corpus():
    """Every test and benchmark reaches the corpus through reference.CORPUS (PFILTER_CORPUS)."""
    own = []
    for path in sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py")):
        if path.name in ("reference.py", "test_packaging.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""["']shared["']|["']\.\./shared/corpus""", line):   # a path being built
                own.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert own == []


def test_docs_and_help_point_at_nothing_outside_the_repository():
    outside = re.compile(r"\.\./shared|/work/")
    lines = [l for l in README.splitlines() if outside.search(l)]
    # the one kind of mention allowed: the default of a PFILTER_* setting naming such a directory
    assert all(re.search(r"PFILTER_[A-Z_]+`?[ ,].*default `\.\./shared/[a-z]+`", l) for l in lines), lines
    assert not outside.search(pfilter.__doc__)
    for name in pfilter.__all__:
        assert not outside.search(getattr(pfilter, name).__doc__ or ""), name
    done = subprocess.run([sys.executable, "-m", "pfilter", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and not outside.search(done.stdout)


def test_every_pfilter_setting_is_in_the_readme_table():
    """Every PFILTER_* name read by the package, its build, scripts, CI, tests or benchmarks is a
    row of the one settings table; every row is read somewhere; the README names no other."""
    setting = re.compile(r"\bPFILTER_[A-Z][A-Z_]*[A-Z]\b")
    used = set()
    sources = [ROOT / "setup.py", *ROOT.glob(".ci/*")]
    for top in ("pfilter", "scripts", "tests", "bench"):
        sources += [p for p in (ROOT / top).rglob("*") if p.suffix in (".py", ".pyx", ".pxd", ".pxi", ".sh")]
    for path in sources:
        if path.is_file():
            used |= set(setting.findall(path.read_text(errors="replace")))
    rows = [(n, m.group(1)) for n, line in enumerate(README.splitlines())
            for m in [re.match(r"\| `(PFILTER_[A-Z_]+)", line)] if m]
    table = {name for _, name in rows}
    assert used, "no settings found: the search is broken"
    assert {"PFILTER_ASAN", "PFILTER_TEST_JOBS", "PFILTER_FUZZ_DURATION"} <= used   # shell scripts were read
    assert used - table == set()
    assert table - used == set()
    assert [n for n, _ in rows] == list(range(rows[0][0], rows[0][0] + len(rows)))   # one table
    assert set(setting.findall(README)) == table


def test_the_version_is_written_once():
    meta = _pyproject()
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pfilter.__version__"}
    written = [p for p in [ROOT / "setup.py", *ROOT.glob("pfilter/**/*.py")]
               if re.search(r"^\s*(__version__|version)\s*=\s*['\"]", p.read_text(), re.M)]
    assert written == [ROOT / "pfilter" / "__init__.py"]
    done = subprocess.run([sys.executable, "-m", "pfilter", "--version"], capture_output=True, text=True)
    assert pfilter.__version__ in done.stdout
    assert f"## {pfilter.__version__}" in (ROOT / "CHANGELOG.md").read_text()


def test_the_sdist_manifest_takes_every_cython_source_and_no_generated_c():
    manifest = (ROOT / "MANIFEST.in").read_text()
    patterns = re.search(r"^recursive-include pfilter (.*)$", manifest, re.M).group(1).split()
    sources = [p for ext in ("pyx", "pxd", "pxi") for p in (ROOT / "pfilter").rglob(f"*.{ext}")]
    assert sources
    assert all(any(p.match(pat) for pat in patterns) for p in sources)
    assert re.search(r"^recursive-exclude pfilter .*\*\.c\b", manifest, re.M)
    meta = _pyproject()
    assert meta["project"]["name"] != "pfilter"   # taken on PyPI by another project
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")
    assert meta["project"]["license"] == {"text": "BSD-3-Clause"}


def test_the_readme_quick_start_is_two_commands_the_first_making_a_venv():
    block = re.search(r"## Quick start\n.*?```sh\n(.*?)```", README, re.S).group(1)
    commands = block.strip().splitlines()
    assert len(commands) == 2
    assert commands[0].startswith("python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/pfilter -r data/")
    assert commands[1] == "bash scripts/test.sh"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_the_suite_keeps_compiled_programs_out_of_the_users_cache(tmp_path, monkeypatch):
    """tests/conftest.py points XDG_CACHE_HOME at a directory of the test session: filter_file
    and the command (which cache compiled programs by default) fill that one, not ~/.cache."""
    from pfilter.compiler import cache
    monkeypatch.delenv("PFILTER_NO_CACHE", raising=False)
    session = Path(os.environ["XDG_CACHE_HOME"])
    users = Path(os.path.expanduser("~")) / ".cache"
    assert Path(cache._cache_dir()) == session / "pfilter" / "programs"
    assert users not in [session, *session.parents]
    expr = f"udp port {os.getpid() % 60000 + 1} or tcp"   # a program not cached before in this session
    before = set((session / "pfilter").rglob("*.txt"))
    pfilter.filter_file(ROOT / "data" / "sample.pcap", tmp_path / "a.pcap", expr)
    done = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(ROOT / "data" / "sample.pcap"),
                           "-w", str(tmp_path / "b.pcap"), expr + " or icmp"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert len(set((session / "pfilter").rglob("*.txt")) - before) == 2


#: a measured performance figure: a number with a speed unit or a speed-up
MEASURED_FIGURE = re.compile(
    r"\b\d[\d,.]*\s*(?:ns(?:/| per | a )(?:packet|pkt|record|run)|[mµu]s (?:to|per|for) |x (?:faster|slower)"
    r"|times (?:faster|slower)|[KMG]i?B/s|s (?:per|a) GB|s/GB|MB peak|% (?:faster|slower|quicker))", re.I)


def test_the_readme_links_to_measured_figures_instead_of_copying_them():
    """Figures live in bench/results (issue 11): the README links there. A link's own text may
    quote a figure; a line stating a target ("target <= 0.7x") may give the target."""
    for sample in ("12.5 ns/packet", "3x faster", "1.2 GB/s", "0.9 ms to lower", "40 MB/s", "2 s per GB"):
        assert MEASURED_FIGURE.search(sample), sample
    copied = []
    for n, line in enumerate(README.splitlines(), 1):
        text = re.sub(r"\[[^\]]*\]\(bench/results/[^)]*\)", "", line)
        if MEASURED_FIGURE.search(text) and not re.search(r"\btargets?:?\s*(?:[<>=≤≥]|under|below|above)", text, re.I):
            copied.append(f"README.md:{n}: {line.strip()}")
    assert copied == []
