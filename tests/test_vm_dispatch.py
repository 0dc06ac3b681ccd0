"""The VM's dispatch is one C `switch` on the opcode (a jump table), not a chain of ifs, and the
packet loop runs without the GIL."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

PYX = Path(__file__).resolve().parents[1] / "pfilter" / "_vm.pyx"


@pytest.fixture(scope="module")
def generated_c(tmp_path_factory):
    out = tmp_path_factory.mktemp("cython") / "_vm.c"
    r = subprocess.run([sys.executable, "-m", "cython", "-3", str(PYX), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out.read_text()


def _function_body(c_source, name):
    m = re.search(r"__pyx_f\w*" + name + r"\([^;]*?\)\s*\{", c_source)
    assert m, f"function {name} not found in the generated C"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(c_source[i], 0)
        i += 1
    return c_source[m.end():i]


def test_opcode_dispatch_compiles_to_a_single_c_switch(generated_c):
    body = _function_body(generated_c, "bpf_run")
    assert body.count("switch (__pyx_v_pc->op)") == 1
    switch = body[body.index("switch (__pyx_v_pc->op)"):]
    cases = re.findall(r"case (0x[0-9a-fA-F]+|\d+|__pyx_e_\w+):", switch)
    assert len(cases) >= 49 + 28, f"only {len(cases)} case labels: the dispatch is not one switch"


def test_batch_loop_releases_the_gil(generated_c):
    for name in ("run_batch", "run_indexed", "count_steps"):
        m = re.search(r"def " + name + r"\(.*?\n(.*?)\n\ndef ", PYX.read_text() + "\n\ndef ", re.S)
        assert m and "with nogil:" in m.group(1), name
    assert "Py_UNBLOCK_THREADS" in generated_c or "PyEval_SaveThread" in generated_c


def test_vm_source_is_what_its_generator_writes():
    gen = PYX.parents[1] / "scripts" / "gen_vm.py"
    r = subprocess.run([sys.executable, str(gen), "--check"])
    assert r.returncode == 0, "pfilter/_vm.pyx is out of date: run python3 scripts/gen_vm.py"
