"""Native code (Program.jit(), pfilter.native through llvmlite) against pfilter's VM and libpcap's
bpf_filter() C loop, over the same 1M generated packets, in the same run.

Imports pfilter's public API, bench/conftest.py's fixtures and helpers, and bench/test_bench_classify.py's
rule list. For each of the five standard expressions, libpcap's optimized program and pfilter's own
(optimized) program each run as native code, in the VM and (libpcap's program) in the C loop;
verdicts must agree packet for packet; the `memory floor` row does the same for a program that
reads one byte per packet. Streaming: the whole 1M-packet batch (memory bound: the floor row's
native time is what memory costs per packet); in cache: the first HOT_PACKETS packets HOT_LOOPS
times in shuffled orders (as in bench/test_bench_vm.py). Ratios come from runs alternating the
contenders round by round, each round starting with the next one (conftest.interleaved_best,
rotate=True: streaming, a pass is slower right after the VM's), steadier on a loaded machine.
Targets (issue 13): native <= 0.5x the VM in cache, <= 0.7x streaming. Compile time: the median
over the corpus's EN10MB expressions (or the bench rules when the corpus is absent), the total for
the 256 bench rules compiled one by one, and the 64- and 256-rule sets compiled as one function
each; classification of the 1M packets with 64 and 256 rules, backend='native' against the Cython
engine (target: at least 4x faster). Needs llvmlite (skips without it; fails with CI=true).
"""
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (HOT_LOOPS, HOT_PACKETS, ROUNDS, STANDARD_EXPRESSIONS, expression_id, hot_batch_of,
                      interleaved_best, record_rate, require, result_table)

import pfilter
from pfilter import Program, native

TABLE = result_table(
    "native", "Native code (llvmlite) vs pfilter's VM vs libpcap bpf_filter(), same packets, same run",
    ["expression", "program", "insns", "compile ms", "native ns/pkt", "VM ns/pkt", "libpcap ns/pkt",
     "native/VM", "native/libpcap", "native in-cache", "VM in-cache", "libpcap in-cache",
     "in-cache native/VM", "in-cache native/libpcap"],
    notes=["ns/packet: the fastest of interleaved rounds over the 1M-packet batch (streaming) or over "
           f"{HOT_PACKETS} packets {HOT_LOOPS} times in shuffled orders (in cache). `program`: libpcap's "
           "optimized program (pcap_compile -O) or pfilter's own. libpcap: bpf_filter() in a C loop "
           "(bench/baseline/bpf_loop.c, cc -O2), one ctypes call per batch. Targets: native/VM <= 0.5 in "
           "cache, <= 0.7 streaming. `memory floor`: a program reading one byte of each packet (`ldb [12]; "
           "ret a`), the least any filter costs; streaming, its native ns/packet is what memory costs."])

COMPILE = result_table(
    "native_compile", "Native code: compile time and classification",
    ["what", "programs", "median ms", "total ms", "ns/pkt", "vs classify engine"],
    notes=["compile: Lowering + LLVM IR + optimisation (new pass manager, speed level 2) + MCJIT machine "
           "code, cache cleared: per program (median and total), and per rule set (one function, "
           "pfilter.native.classifier_for); classification: pfilter.classify(batch, rules) over the 1M "
           "packets, backend='native' (that function) against backend='vm' (the Cython engine), best of "
           "interleaved rounds, compile and plan excluded for both (cached by pfilter.classify after the first call). Target (issue 13): 64 and 256 rules at least 4x faster."])


def _require_native():
    require(native.available(), f"llvmlite ({native.EXTRA_HINT})")


@pytest.fixture(scope="module")
def hot(bench_batch):
    return hot_batch_of(bench_batch)


def _row(expr):
    return "20-host or" if expr.startswith("host 10.0.0.7 or") else expr


#: the memory floor: a program that reads one byte of each packet's first cache line and returns
#: it (the least any filter does); streaming, its native time is what memory costs per packet
FLOOR = [(0x30, 0, 0, 12), (0x16, 0, 0, 0)]


@pytest.mark.parametrize("source", ["libpcap", "pfilter"])
@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_bench_native_vs_vm_vs_libpcap(benchmark, expr, source, bench_batch, hot, libpcap_program, c_baseline):
    _require_native()
    benchmark.group = f"native {expression_id(expr)}"
    tuples = libpcap_program(expr) if source == "libpcap" else pfilter.compile(expr).to_tuples()
    _compare(benchmark, (expr, source), _row(expr), source, tuples, bench_batch, hot, c_baseline)


def test_bench_native_memory_floor(benchmark, bench_batch, hot, c_baseline):
    _require_native()
    benchmark.group = "native memory floor"
    _compare(benchmark, "floor", "memory floor: ldb [12]; ret a", "-", FLOOR, bench_batch, hot, c_baseline)


def _compare(benchmark, key, row, source, tuples, bench_batch, hot, c_baseline):
    """Time native code, the VM and libpcap's C loop on `tuples`, streaming and in cache: one row."""
    prog = Program.from_tuples(tuples)
    native._cache.clear()
    started = time.perf_counter()
    nat = prog.jit()
    compile_ms = (time.perf_counter() - started) * 1e3
    insns = c_baseline.insn_array(tuples)
    cells = {"expression": row, "program": source, "insns": len(tuples), "compile ms": compile_ms}
    for name, batch in (("", bench_batch), (" in-cache", hot)):
        n = len(batch)
        o_nat, o_vm, o_c = (np.empty(n, np.uint32) for _ in range(3))
        if not name:
            benchmark.pedantic(nat.run_batch, args=(batch,), kwargs={"out": o_nat}, rounds=ROUNDS, warmup_rounds=1)
        t_nat, t_vm, t_c = interleaved_best([lambda: nat.run_batch(batch, out=o_nat),
                                             lambda: prog.run_batch(batch, out=o_vm),
                                             lambda: c_baseline.run(insns, batch, o_c)], rotate=True)
        assert np.array_equal(o_nat, o_vm), "native and VM verdicts differ"
        assert np.array_equal(o_nat, o_c), "native and libpcap verdicts differ"
        ns = [t * 1e9 / n for t in (t_nat, t_vm, t_c)]
        cells[f"native{name}" + (" ns/pkt" if not name else "")] = ns[0]
        cells[f"VM{name}" + (" ns/pkt" if not name else "")] = ns[1]
        cells[f"libpcap{name}" + (" ns/pkt" if not name else "")] = ns[2]
        prefix = "in-cache " if name else ""
        cells[f"{prefix}native/VM"] = ns[0] / ns[1]
        cells[f"{prefix}native/libpcap"] = ns[0] / ns[2]
    record_rate(benchmark, len(bench_batch), engine="pfilter native", program=source, instructions=len(tuples),
                compile_ms=round(compile_ms, 2), ratio_vm=round(cells["native/VM"], 3),
                ratio_vm_in_cache=round(cells["in-cache native/VM"], 3))
    TABLE.add(key, **cells)


def _corpus_expressions():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    try:
        import reference as ref
        exprs = ref.corpus_expressions().get("EN10MB", [])
    except Exception:
        exprs = []
    return exprs


def _compile_ms(programs):
    native._cache.clear()
    times = []
    for p in programs:
        started = time.perf_counter()
        native.jit(p)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def test_bench_native_compile_time():
    _require_native()
    from test_bench_classify import bench_rules
    exprs = _corpus_expressions()
    what = "corpus EN10MB expressions" if exprs else "bench rules (no corpus)"
    progs = []
    for e in exprs or bench_rules(256):
        try:
            progs.append(pfilter.compile(e))
        except pfilter.FilterError:
            pass
    times = _compile_ms(progs)
    COMPILE.add("corpus", **{"what": f"compile, {what}", "programs": len(times),
                             "median ms": statistics.median(times), "total ms": sum(times)})
    rules = [pfilter.compile(e, optimize="shareable") for e in bench_rules(256)]
    times = _compile_ms(rules)
    COMPILE.add("rules", **{"what": "compile, the 256 bench rules (one function each)", "programs": len(times),
                            "median ms": statistics.median(times), "total ms": sum(times)})
    assert statistics.median(times) < 1000


@pytest.mark.parametrize("n", [64, 256])
def test_bench_native_classification(n, bench_batch):
    _require_native()
    from test_bench_classify import bench_rules
    from pfilter.classification.plan import plan
    rules = {e: pfilter.compile(e, optimize="shareable") for e in bench_rules(n)}
    native._cache.clear()
    started = time.perf_counter()
    native.classifier_for(plan(list(rules.values())))
    compile_ms = (time.perf_counter() - started) * 1e3
    got = {}

    def run(backend):
        got[backend] = pfilter.classify(bench_batch, rules, backend=backend, counts_only=True).counts

    run("native")     # warm: the compiled rule set comes from the cache from now on
    t_nat, t_eng = interleaved_best([lambda: run("native"), lambda: run("vm")], rounds=max(2, ROUNDS // 2))
    assert np.array_equal(got["native"], got["vm"])
    k = len(bench_batch)
    COMPILE.add(("compile set", n), **{"what": f"compile, the {n} bench rules as one rule set", "programs": n,
                                       "total ms": compile_ms})
    COMPILE.add(("classify", n), **{"what": f"classify {n} rules: native (one function per rule set)",
                                    "programs": n, "ns/pkt": t_nat * 1e9 / k, "vs classify engine": t_nat / t_eng})
    COMPILE.add(("engine", n), **{"what": f"classify {n} rules: pfilter.classify engine (backend vm)",
                                  "programs": n, "ns/pkt": t_eng * 1e9 / k, "vs classify engine": 1.0})
