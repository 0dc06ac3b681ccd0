"""The harness itself: a worker that segfaults, hangs or raises is reported as a failure of the
test (not a dead pytest), with its input saved and replayable; a clean target reports its count."""
import ctypes
import os
import pickle
import time

import pytest
from hypothesis import strategies as st

import fuzzlib


@fuzzlib.target("selftest_crash", st.integers(0, 50), examples=40)
def crash_on_large(x):
    if x >= 7:
        ctypes.c_char.from_address(8).value       # SIGSEGV: reads address 8


@fuzzlib.target("selftest_hang", st.integers(0, 50), examples=40, input_seconds=2)
def hang_on_large(x):
    if x >= 7:
        time.sleep(3600)


@fuzzlib.target("selftest_raise", st.integers(0, 50), examples=40)
def raise_on_large(x):
    if x >= 7:
        raise TypeError("not a FilterError")


@fuzzlib.target("selftest_clean", st.integers(0, 50), examples=40)
def clean(x):
    pass


def _fails(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PFILTER_FUZZ_ARTIFACTS", str(tmp_path))
    for var in ("PFILTER_FUZZ_SECONDS", "PFILTER_FUZZ_EXAMPLES", "PFILTER_FUZZ_REPORT", "PFILTER_FUZZ_JOBS"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(pytest.fail.Exception) as info:
        fuzzlib.run(name)
    saved = list(tmp_path.glob(f"{name}-*.pkl"))
    assert len(saved) == 1
    case = pickle.loads(saved[0].read_bytes())
    assert case["target"] == name and case["input"] >= 7
    return str(info.value)


def test_a_segfaulting_input_fails_the_test_with_the_input_saved(tmp_path, monkeypatch):
    assert "crash (killed by SIGSEGV)" in _fails("selftest_crash", tmp_path, monkeypatch)


def test_a_hanging_input_fails_the_test_within_the_bound(tmp_path, monkeypatch):
    started = time.monotonic()
    assert "hang" in _fails("selftest_hang", tmp_path, monkeypatch)
    assert time.monotonic() - started < 60


def test_an_unexpected_exception_fails_the_test_with_the_shrunk_input(tmp_path, monkeypatch):
    message = _fails("selftest_raise", tmp_path, monkeypatch)
    assert "TypeError: not a FilterError" in message
    # hypothesis shrank it to the smallest failing input before the worker stopped
    assert pickle.loads(next(tmp_path.glob("*.pkl")).read_bytes())["input"] == 7


def test_a_clean_target_reports_its_volume(tmp_path, monkeypatch):
    report = tmp_path / "report.jsonl"
    monkeypatch.setenv("PFILTER_FUZZ_REPORT", str(report))
    monkeypatch.setenv("PFILTER_FUZZ_EXAMPLES", "150")
    monkeypatch.delenv("PFILTER_FUZZ_SECONDS", raising=False)
    monkeypatch.delenv("PFILTER_FUZZ_JOBS", raising=False)
    inputs = fuzzlib.run("selftest_clean")
    assert 0 < inputs <= 40
    line = report.read_text().splitlines()[-1]
    assert f'"inputs": {inputs}' in line and os.path.getsize(report) > 0
