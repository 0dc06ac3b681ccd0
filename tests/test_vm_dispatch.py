"""The VM's dispatch is C `switch`es on the opcode (jump tables), not chains of ifs, and the
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


def _switch_cases(c_source, function, var):
    body = _function_body(c_source, function)
    assert body.count(f"switch ({var})") == 1, f"{function}: not one switch on {var}"
    switch = body[body.index(f"switch ({var})"):]
    return re.findall(r"case (0x[0-9a-fA-F]+|\d+|__pyx_e_\w+):", switch)


def test_opcode_dispatch_compiles_to_c_switches(generated_c):
    # dispatch (pfilter/_vm_cases.pxi), on the slot: the 8 conditional jumps and 56 load+jump pairs,
    # then ret #k, JEQ_RUN and the rest, every slot a case; bpf_run, on the opcode: the rest's hot
    # ones (ret a, loads, ja); step (pfilter/_cbpf.pxd): every other statement
    slots = _switch_cases(generated_c, "dispatch", "__pyx_v_slot")
    assert len(slots) == 64 + 3, f"{len(slots)} case labels in dispatch"
    hot = _switch_cases(generated_c, "bpf_run", "__pyx_v_pc->op")
    assert len(hot) >= 8, f"only {len(hot)} case labels in bpf_run: its dispatch is not a switch"
    stmts = _switch_cases(generated_c, "_cbpf_step", "__pyx_v_op")
    assert len(stmts) >= 37, f"only {len(stmts)} case labels in step: its dispatch is not a switch"


def test_batch_loop_releases_the_gil(generated_c):
    for name in ("run_rows", "run_records"):     # run_rows: run_batch, run_indexed, count_steps...
        m = re.search(r"def (?:\w+ )*" + name + r"\(.*?\n(.*?)\n\ndef ", PYX.read_text() + "\n\ndef ", re.S)
        assert m and "with nogil:" in m.group(1), name
    assert "Py_UNBLOCK_THREADS" in generated_c or "PyEval_SaveThread" in generated_c


def test_vm_cases_are_what_their_generator_writes():
    gen = PYX.parents[1] / "scripts" / "gen_vm.py"
    r = subprocess.run([sys.executable, str(gen), "--check"])
    assert r.returncode == 0, "pfilter/_vm_cases.pxi is out of date: run python3 scripts/gen_vm.py and rebuild"
