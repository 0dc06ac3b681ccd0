"""The VM and the classifier against themselves before issue 11's refactor, in the same run.

Imports pfilter (compile, pfilter._vm, pfilter.classification.plan/run), the helpers of
bench/conftest.py and bench_rules from bench/test_bench_classify.py; git, Cython and a C compiler
at bench time.

The "base" is commit b332a55, the last commit before issue 11 rewrote pfilter/_vm.pyx and
pfilter/_classify.pyx over one shared definition of the cBPF steps (pfilter/_cbpf.pxd). Both files
of that commit (neither cimports anything from pfilter) are built here, renamed `_vm_b332a55` and
`_classify_b332a55`, with the Cython directives and C flags setup.py gives pfilter's own
extensions, into the bench cache (kept per commit, Cython version and interpreter). Without git
history (a shallow clone, a tarball) the suite skips.

Then base and head run interleaved round by round (conftest.interleaved_best, rotated), and each
contender's figure is its best CPU time (time.process_time) per packet:

* VM: `run_batch` of each module on the five standard expressions (pfilter.compile(expr), decoded
  by each module's own `decode` and `reads_scratch`), streaming over the 1M-packet batch and in
  cache (conftest.hot_batch_of); verdicts must be identical.
* Classification: each module's `RuleEngine`, built by the same Plan.engine() call from one plan
  of 16, 64 and 256 rules (test_bench_classify.bench_rules), over the 1M-packet batch into a
  verdict matrix; matrices, counts and byte counts must be identical.

Each contender is also recorded with pytest-benchmark (its own rounds, wall time, as
test_bench_vm.py records; the interleaved CPU figures in extra_info), the base and head rows of
one case in one group, so `pytest-benchmark compare --group-by=group` lists them side by side. The
table (bench/results/latest_history.md) gives base and head ns/packet and head/base (target <= 1.0).
"""
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import (ROOT, ROUNDS, STANDARD_EXPRESSIONS, TWENTY_HOSTS, cache_dir, expression_id, hot_batch_of,
                      interleaved_best, record_rate, require, result_table)
from test_bench_classify import bench_rules

import pfilter

BASE_COMMIT = "b332a55"
BASE_SOURCES = {"_vm": "pfilter/_vm.pyx", "_classify": "pfilter/_classify.pyx"}
CONTENDERS = ("base", "head")
RULE_COUNTS = (16, 64, 256)
#: interleaved rounds per case (a VM pass is a few ms to tens of ms; a classification pass up to 0.5 s)
VM_ROUNDS = 3 * ROUNDS
CLASSIFY_ROUNDS = ROUNDS + 2

# Mirrors setup.py's `directives` (PFILTER_DEBUG unset), its `extra` compile flags (-O3) and its
# Extension arguments (NumPy include directory and macro): keep these in step with setup.py.
DIRECTIVES = {"language_level": "3", "boundscheck": False, "wraparound": False, "initializedcheck": False,
              "cdivision": True, "embedsignature": True}
COMPILE_ARGS = ["-O3"]
DEFINE_MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]

SETUP_SCRIPT = """\
# Written by pfilter's bench/test_bench_history.py: builds the C files next to it in place.
import numpy
from setuptools import Extension, setup

setup(name="pfilter-history", ext_modules=[
    Extension(name, [name + ".c"], include_dirs=[numpy.get_include()], extra_compile_args={args!r},
              define_macros={macros!r})
    for name in {names!r}])
"""

# ----------------------------------------------------------------------------- the base build

def _git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


def _base_commit():
    """The full hash of BASE_COMMIT; skips (fails when CI=true) without git or that history."""
    require(shutil.which("git") is not None, "git (the base build reads its sources from the history)")
    done = _git("rev-parse", "--verify", "--quiet", BASE_COMMIT + "^{commit}")
    require(done.returncode == 0, f"git history with commit {BASE_COMMIT} (a shallow clone or a tarball has none)")
    return done.stdout.strip()


def _build(commit, where):
    """Cython and the C compiler (through setuptools) over BASE_SOURCES of `commit`, in `where`."""
    names = []
    for short, path in BASE_SOURCES.items():
        name = f"{short}_{BASE_COMMIT}"
        source = _git("show", f"{commit}:{path}")
        assert source.returncode == 0, source.stderr
        (where / f"{name}.pyx").write_text(source.stdout)
        flags = ",".join(f"{k}={v}" for k, v in DIRECTIVES.items())
        done = subprocess.run([sys.executable, "-m", "cython", "-X", flags, f"{name}.pyx"], cwd=where,
                              capture_output=True, text=True)
        require(done.returncode == 0, f"Cython on {path} of {BASE_COMMIT} failed: {done.stderr.strip()[-2000:]}")
        names.append(name)
    (where / "setup_history.py").write_text(SETUP_SCRIPT.format(args=COMPILE_ARGS, macros=DEFINE_MACROS,
                                                                names=names))
    done = subprocess.run([sys.executable, "setup_history.py", "-q", "build_ext", "--inplace"], cwd=where,
                          capture_output=True, text=True)
    require(done.returncode == 0, f"building the {BASE_COMMIT} extensions failed (a C compiler, Python "
                                  f"headers?): {done.stderr.strip()[-2000:]}")


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base():
    """{"_vm": module, "_classify": module} built from BASE_COMMIT, once per commit, Cython version,
    interpreter and build settings (built in a temporary directory, then renamed into place)."""
    import Cython
    commit = _base_commit()
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    settings = hashlib.sha1(repr((DIRECTIVES, COMPILE_ARGS, DEFINE_MACROS, suffix)).encode()).hexdigest()[:8]
    where = cache_dir() / f"history-{commit[:12]}-cython{Cython.__version__}-{settings}"
    names = {short: f"{short}_{BASE_COMMIT}" for short in BASE_SOURCES}
    if not all((where / (name + suffix)).exists() for name in names.values()):
        tmp = where.with_name(f".{where.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _build(commit, tmp)
            shutil.rmtree(where, ignore_errors=True)
            os.replace(tmp, where)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {short: _load(where / (name + suffix), name) for short, name in names.items()}


def _head_note():
    """`head` as committed, or with uncommitted changes to the native sources."""
    if shutil.which("git") is None:
        return "no git"
    head = _git("rev-parse", "--short", "HEAD").stdout.strip() or "?"
    dirty = _git("status", "--porcelain", "--", "pfilter/*.pyx", "pfilter/*.pxd", "pfilter/*.pxi").stdout.strip()
    return head + (" + uncommitted changes to pfilter's Cython sources" if dirty else "")


HEAD = _head_note()
TABLE = result_table(
    "history", f"VM and classifier: head vs {BASE_COMMIT} (before issue 11's refactor), same run",
    ["case", "packets", "base ns/pkt", "head ns/pkt", "head/base CPU", "head/base wall"],
    notes=[f"base: pfilter/_vm.pyx and pfilter/_classify.pyx of {BASE_COMMIT}, built by the bench with setup.py's "
           "Cython directives and flags (-O3); head: this checkout's pfilter._vm and pfilter._classify "
           f"({HEAD}). "
           "ns/pkt: best CPU time (time.process_time) of the rounds, base and head interleaved round by round "
           f"(rotated; {VM_ROUNDS} rounds for the VM, {CLASSIFY_ROUNDS} for classification); `head/base wall`: "
           "the same from wall time. VM: `run_batch` on pfilter.compile(expr), streaming over the 1M-packet "
           "batch and in cache (4096 packets 64 times over); classify: RuleEngine.run over the 1M-packet batch "
           "into a verdict matrix, one plan for both engines. Verdicts identical (asserted). Target: head/base "
           "<= 1.0 (no slower); differences under about 3% are within code-placement noise on this machine."])


# ----------------------------------------------------------------------------- timing

_measured = {}     # case -> {"packets", "runs": {contender: (prepare, run)}, "cpu": {contender: s}, "wall"}


def _measure(case, packets, runs, rounds):
    """Best CPU and wall seconds of each contender's run (runs: {contender: (prepare or None, run)};
    prepare runs off the clock), base and head interleaved and rotated, and the case's table row."""
    cpu = {c: float("inf") for c in CONTENDERS}
    wall = dict(cpu)

    def timed(contender):
        prepare, run = runs[contender]

        def once():
            if prepare is not None:
                prepare()
            w0, c0 = time.perf_counter(), time.process_time()
            run()
            cpu[contender] = min(cpu[contender], time.process_time() - c0)
            wall[contender] = min(wall[contender], time.perf_counter() - w0)
        return once

    _measured[case] = {"packets": packets, "runs": runs, "cpu": cpu, "wall": wall}
    if not rounds:      # --benchmark-disable: the verdicts are checked, nothing is timed
        return
    interleaved_best([timed(c) for c in CONTENDERS], rounds=rounds, rotate=True)
    TABLE.add(case, **{"case": case, "packets": packets, "base ns/pkt": cpu["base"] * 1e9 / packets,
                       "head ns/pkt": cpu["head"] * 1e9 / packets, "head/base CPU": cpu["head"] / cpu["base"],
                       "head/base wall": wall["head"] / wall["base"]})


def _record(benchmark, case, contender, rounds):
    """The contender's own pytest-benchmark rounds (wall time), with the interleaved CPU figures."""
    m = _measured[case]
    prepare, run = m["runs"][contender]
    benchmark.group = f"history {case}"
    benchmark.pedantic(run, setup=prepare, rounds=rounds, warmup_rounds=0)
    if benchmark.enabled:
        record_rate(benchmark, m["packets"], engine=f"{contender} ({BASE_COMMIT if contender == 'base' else HEAD})",
                    cpu_ns_per_packet=round(m["cpu"][contender] * 1e9 / m["packets"], 3),
                    cpu_ratio_head_to_base=round(m["cpu"]["head"] / m["cpu"]["base"], 4))
    if contender == CONTENDERS[-1]:
        del m["runs"]      # the case is done: let its outputs (up to 256 MB) go


# ----------------------------------------------------------------------------- VM

@pytest.fixture(scope="module")
def hot_batch(bench_batch):
    return hot_batch_of(bench_batch)


def _vm_runs(modules, expr, batch):
    """{contender: (None, run)} of run_batch over batch, each module decoding the program itself;
    asserts that both return the same verdicts."""
    raw = pfilter.compile(expr)._raw
    outs, runs = {}, {}
    for contender, vm in modules.items():
        decoded, clear = vm.decode(raw), bool(vm.reads_scratch(raw))
        out = outs[contender] = np.empty(len(batch), dtype=np.uint32)

        def run(vm=vm, decoded=decoded, clear=clear, out=out):
            bad = vm.run_batch(decoded, clear, batch.data, batch.offsets, batch.caplen, batch.wirelen, out)
            assert bad == -1
        run()
        runs[contender] = (None, run)
    differ = np.flatnonzero(outs["base"] != outs["head"])
    assert len(differ) == 0, f"{expr}: {len(differ)} verdicts differ from {BASE_COMMIT}'s, first at {differ[:5]}"
    assert 0 < np.count_nonzero(outs["head"]) < len(batch), "a standard expression should match some packets"
    return runs


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("mode", ["streaming", "in cache"])
@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_history_vm(benchmark, base, bench_batch, hot_batch, expr, mode, contender):
    from pfilter import _vm
    batch = bench_batch if mode == "streaming" else hot_batch
    case = f"VM {mode}: {'20-host or' if expr == TWENTY_HOSTS else expr}"
    if case not in _measured:
        _measure(case, len(batch), _vm_runs({"base": base["_vm"], "head": _vm}, expr, batch),
                 VM_ROUNDS if benchmark.enabled else 0)
    _record(benchmark, case, contender, ROUNDS)


# ----------------------------------------------------------------------------- classification

def _engines(base_classify, rules):
    """{contender: RuleEngine} from one plan of `rules`. Plan.engine() passes the plan's arrays to
    pfilter.classification.run._engine.RuleEngine; RuleEngine's constructor takes the same
    arguments at BASE_COMMIT, so the base engine comes from the same call with the base module
    put in its place for the duration."""
    from pfilter.classification import run as run_module
    from pfilter.classification.plan import plan
    require(run_module._engine is not None, "the compiled pfilter._classify (PFILTER_PUREPYTHON unset)")
    progs = [pfilter.compile(e, linktype="EN10MB", optimize="shareable") for e in rules]
    the_plan = plan(progs)
    head = the_plan.engine()
    saved = run_module._engine
    run_module._engine = base_classify
    try:
        base_engine = the_plan.engine()
    finally:
        run_module._engine = saved
    return {"base": base_engine, "head": head}


def _classify_runs(engines, nrules, batch):
    """{contender: (prepare, run)}: RuleEngine.run over batch into a verdict matrix, which prepare
    zeroes (with the counts) off the clock; asserts identical matrices, counts and byte counts."""
    results, runs = {}, {}
    for contender, engine in engines.items():
        out = np.zeros((len(batch), nrules), dtype=np.uint8)
        counts, nbytes = np.zeros(nrules, np.int64), np.zeros(nrules, np.int64)
        results[contender] = (out, counts, nbytes)

        def prepare(arrays=(out, counts, nbytes)):
            for a in arrays:
                a.fill(0)

        def run(engine=engine, out=out, counts=counts, nbytes=nbytes):
            engine.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, None, out, False, counts, nbytes)
        run()
        runs[contender] = (prepare, run)
    (bo, bc, bb), (ho, hc, hb) = results["base"], results["head"]
    assert np.array_equal(bc, hc) and np.array_equal(bb, hb), f"{nrules} rules: counts differ from {BASE_COMMIT}'s"
    differ = np.flatnonzero((bo != ho).any(axis=1))
    assert len(differ) == 0, f"{nrules} rules: {len(differ)} rows differ from {BASE_COMMIT}'s, first at {differ[:5]}"
    assert hc.any(), "the rules should match some packets"
    return runs


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("nrules", RULE_COUNTS)
def test_history_classify(benchmark, base, bench_batch, nrules, contender):
    case = f"classify {nrules} rules"
    if case not in _measured:
        runs = _classify_runs(_engines(base["_classify"], bench_rules(nrules)), nrules, bench_batch)
        _measure(case, len(bench_batch), runs, CLASSIFY_ROUNDS if benchmark.enabled else 0)
    _record(benchmark, case, contender, ROUNDS if nrules <= 64 else 2)
