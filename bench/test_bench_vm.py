"""Throughput of pfilter's batch VM against libpcap's bpf_filter() over the same 1M generated packets.

Imports pfilter's public API (Program) and the helpers of bench/conftest.py.

For each standard expression libpcap compiles its optimized program; the C baseline
(bench/baseline/bpf_loop.c: libpcap's bpf_filter() in a C loop, one ctypes call per batch) and
pfilter's `Program.run_batch` run it over the same PacketBatch in the same run, their verdicts
must agree packet for packet, and the table printed at the end gives ns/packet for both and the
ratio pfilter/libpcap (target <= 1.0). The C program also times itself over the pcap file, as a
cross-check free of Python. The same pair also runs "in cache": HOT_LOOPS shuffled copies of the
order of the first HOT_PACKETS packets (one batch whose offsets revisit the same 2 MB of packet
bytes), so the headers stay in L2 and the figure is the interpreter's own speed rather than memory
latency; shuffled, because a branch predictor learns a sequence that merely repeats. The
pure-Python VM runs on a small slice.
"""
import numpy as np
import pytest
from conftest import (BATCH_INFO, HOT_LOOPS, HOT_PACKETS, ROUNDS, STANDARD_EXPRESSIONS, TWENTY_HOSTS,
                      expression_id, head_batch, hot_batch_of, interleaved_best, record_rate, result_table)

from pfilter import Program

PYTHON_VM_PACKETS = 2000

TABLE = result_table(
    "vm", "VM throughput: pfilter batch VM vs libpcap bpf_filter(), same packets, same run",
    ["expression", "insns", "matched", "pfilter ns/pkt", "libpcap ns/pkt", "ratio", "ratio interleaved",
     "C self-timed ns/pkt", "pfilter in-cache", "libpcap in-cache", "in-cache ratio interleaved",
     "python VM ns/pkt"],
    notes=["ns/packet from the fastest round over the 1M-packet batch. `libpcap`: bpf_filter() in a C loop "
           "(bpf_loop.c, cc -O2) over the same PacketBatch arrays; `C self-timed`: the same loop timed inside "
           "the C program over the pcap file; ratio = pfilter / libpcap (target <= 1.0); `ratio interleaved`: "
           "the same, from runs alternating pfilter and libpcap round by round (steadier on a loaded "
           "machine); `in-cache`: the "
           f"first {HOT_PACKETS} packets {HOT_LOOPS} times over in shuffled orders (interpreter speed, not "
           "memory latency); "
           f"python VM on the first {PYTHON_VM_PACKETS} packets."])

_baseline = {}     # expr -> (ns/packet, verdicts) from the libpcap benchmark


def _row(expr):
    return "20-host or" if expr == TWENTY_HOSTS else expr


def _libpcap_verdicts(expr, batch, tuples, c_baseline):
    if expr not in _baseline:
        out = np.empty(len(batch), dtype=np.uint32)
        c_baseline.run(c_baseline.insn_array(tuples), batch, out)
        _baseline[expr] = (None, out)
    return _baseline[expr]


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_bench_libpcap_bpf_filter(benchmark, expr, bench_batch, big_capture, libpcap_program, c_baseline):
    benchmark.group = f"vm {expression_id(expr)}"
    tuples = libpcap_program(expr)
    insns = c_baseline.insn_array(tuples)
    out = np.empty(len(bench_batch), dtype=np.uint32)
    matched = benchmark.pedantic(c_baseline.run, args=(insns, bench_batch, out), rounds=ROUNDS, warmup_rounds=1)
    assert 0 < matched < len(bench_batch), "a benchmark expression should match some packets, not all"
    report = c_baseline.run_file(big_capture, tuples)
    assert (report["packets"], report["matched"]) == (len(bench_batch), matched)
    ns = record_rate(benchmark, len(bench_batch), engine="libpcap bpf_filter, C loop", instructions=len(tuples),
                     matched=int(matched), c_self_timed_ns_per_packet=report["best_ns_per_packet"],
                     reader=BATCH_INFO.get("reader"))
    _baseline[expr] = (ns, out)
    TABLE.add(expr, **{"expression": _row(expr), "insns": len(tuples), "matched": int(matched),
                       "libpcap ns/pkt": ns, "C self-timed ns/pkt": report["best_ns_per_packet"]})


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_bench_pfilter_run_batch(benchmark, expr, bench_batch, libpcap_program, c_baseline):
    benchmark.group = f"vm {expression_id(expr)}"
    tuples = libpcap_program(expr)
    prog = Program.from_tuples(tuples)
    verdicts = benchmark.pedantic(prog.run_batch, args=(bench_batch,), rounds=ROUNDS, warmup_rounds=1)
    base_ns, expected = _libpcap_verdicts(expr, bench_batch, tuples, c_baseline)
    differ = np.flatnonzero(verdicts != expected)
    assert len(differ) == 0, f"{len(differ)} verdicts differ from libpcap's, first at packet {differ[:5]}"
    ns = record_rate(benchmark, len(bench_batch), baseline_ns=base_ns, engine="pfilter Program.run_batch",
                     instructions=len(tuples), matched=int(np.count_nonzero(verdicts)),
                     reader=BATCH_INFO.get("reader"))
    cells = {"expression": _row(expr), "insns": len(tuples), "matched": int(np.count_nonzero(verdicts)),
             "pfilter ns/pkt": ns}
    if ns and base_ns:
        cells["ratio"] = ns / base_ns
        cells["ratio interleaved"] = _interleaved_ratio(prog, tuples, bench_batch, c_baseline)
        benchmark.extra_info["ratio_interleaved"] = round(cells["ratio interleaved"], 3)
    TABLE.add(expr, **cells)


def _interleaved_ratio(prog, tuples, batch, c_baseline):
    """pfilter's time over libpcap's on batch, timed in alternation."""
    insns = c_baseline.insn_array(tuples)
    out = np.empty(len(batch), dtype=np.uint32)
    mine, base = interleaved_best([lambda: prog.run_batch(batch, out=out), lambda: c_baseline.run(insns, batch, out)])
    return mine / base


@pytest.fixture(scope="module")
def hot_batch(bench_batch):
    """HOT_LOOPS random permutations of the first HOT_PACKETS packets, over one shared buffer."""
    return hot_batch_of(bench_batch)


@pytest.fixture(scope="module")
def small_batch(bench_batch):
    return head_batch(bench_batch, PYTHON_VM_PACKETS)


_hot = {}     # expr -> libpcap in-cache ns/packet


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_bench_libpcap_bpf_filter_in_cache(benchmark, expr, hot_batch, libpcap_program, c_baseline):
    benchmark.group = f"vm in-cache {expression_id(expr)}"
    insns = c_baseline.insn_array(libpcap_program(expr))
    out = np.empty(len(hot_batch), dtype=np.uint32)
    benchmark.pedantic(c_baseline.run, args=(insns, hot_batch, out), rounds=ROUNDS, warmup_rounds=1)
    ns = record_rate(benchmark, len(hot_batch), engine="libpcap bpf_filter, C loop, in cache")
    _hot[expr] = ns
    TABLE.add(expr, **{"expression": _row(expr), "libpcap in-cache": ns})


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_bench_pfilter_run_batch_in_cache(benchmark, expr, hot_batch, libpcap_program, c_baseline):
    benchmark.group = f"vm in-cache {expression_id(expr)}"
    tuples = libpcap_program(expr)
    prog = Program.from_tuples(tuples)
    out = np.empty(len(hot_batch), dtype=np.uint32)
    benchmark.pedantic(prog.run_batch, args=(hot_batch,), kwargs={"out": out}, rounds=ROUNDS, warmup_rounds=1)
    expected = np.empty(len(hot_batch), dtype=np.uint32)
    c_baseline.run(c_baseline.insn_array(tuples), hot_batch, expected)
    assert np.array_equal(out, expected)
    base = _hot.get(expr)
    ns = record_rate(benchmark, len(hot_batch), baseline_ns=base, engine="pfilter run_batch, in cache")
    cells = {"expression": _row(expr), "pfilter in-cache": ns}
    if ns and base:
        cells["in-cache ratio interleaved"] = _interleaved_ratio(prog, tuples, hot_batch, c_baseline)
        benchmark.extra_info["ratio_interleaved"] = round(cells["in-cache ratio interleaved"], 3)
    TABLE.add(expr, **cells)


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_bench_python_vm_run_batch(benchmark, expr, small_batch, libpcap_program, c_baseline, monkeypatch):
    from pfilter import program as program_module
    monkeypatch.setattr(program_module, "_cvm", None)      # the switch PFILTER_PUREPYTHON=1 sets at import
    benchmark.group = f"python vm {expression_id(expr)}"
    tuples = libpcap_program(expr)
    prog = Program.from_tuples(tuples)
    verdicts = benchmark.pedantic(prog.run_batch, args=(small_batch,), rounds=3, warmup_rounds=0)
    expected = np.empty(len(small_batch), dtype=np.uint32)
    c_baseline.run(c_baseline.insn_array(tuples), small_batch, expected)
    assert np.array_equal(verdicts, expected)
    ns = record_rate(benchmark, len(small_batch), engine="pfilter pure-Python VM")
    TABLE.add(expr, **{"expression": _row(expr), "python VM ns/pkt": ns})
