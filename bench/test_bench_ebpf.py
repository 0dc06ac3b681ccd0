"""The Linux kernel's eBPF JIT as a measured anchor: pfilter's eBPF programs (pfilter.ebpf) for
the five standard expressions, timed by the kernel itself (BPF_PROG_TEST_RUN with `repeat`),
beside pfilter's batch VM and libpcap's bpf_filter() on the same packets.

Imports pfilter's public API (Program, PacketBatch, pfilter.ebpf) and the helpers of
bench/conftest.py. Needs root (or CAP_BPF + CAP_NET_ADMIN) on Linux: without it the benchmarks
skip, and FAIL when CI=true.

Every engine runs libpcap's optimized program for the expression (the eBPF is emitted from it).
The kernel runs each of the first TIMED packets of the 1M-packet batch REPEAT times in a row and
reports its mean ns per run: the packet is hot in cache and the branch predictor has seen it
REPEAT times, so the VM and libpcap are timed the same way (each of those packets REPEAT times
in a row, one batch whose offsets repeat), and also streaming once over the first SAMPLE
packets. (An XDP test run with a repeat count swaps the kernel's XDP dispatcher twice, two RCU
grace periods, some 30 ms per call: hence few packets, many repeats.) The kernel's figure
includes its test loop's own cost per run, measured with a program that returns at once (given
in the notes). The kernel's verdicts must equal the VM's on all SAMPLE packets.
"""
import os
import time

import numpy as np
import pytest
from conftest import (IN_CI, STANDARD_EXPRESSIONS, TWENTY_HOSTS, expression_id, interleaved_best,
                      record_rate, result_table)

from pfilter import PacketBatch, Program

SAMPLE = 20000
TIMED = 100
REPEAT = 10000
ROUNDS = 3
EMIT_ROUNDS = 20

_empty = {}


def _notes():
    jit = open("/proc/sys/net/core/bpf_jit_enable").read().strip() if os.path.exists(
        "/proc/sys/net/core/bpf_jit_enable") else "?"
    empty = ", ".join(f"{h} {v:.1f}" for h, v in sorted(_empty.items())) or "not measured"
    return [f"ns per packet, libpcap's optimized program. `kernel xdp/tc`: BPF_PROG_TEST_RUN of pfilter.ebpf's "
            f"program on each of the first {TIMED} packets of the 1M-packet batch, {REPEAT} times in a row: the "
            f"kernel's mean ns/run, averaged over the packets (per packet the best of {ROUNDS} rounds); "
            f"bpf_jit_enable={jit}, kernel {os.uname().release}; the test loop's own cost (a program that "
            f"returns at once): {empty} ns/run. `repeated`: pfilter's VM (Program.run_batch) and libpcap's "
            f"bpf_filter() in a C loop over one batch holding each of those packets {REPEAT} times in a row, "
            f"as the kernel runs them; `stream`: the same over the first {SAMPLE} packets once each (best of 5); "
            f"`matched`: of those {SAMPLE}, where the kernel's verdicts equal the VM's; `emit ms`: lowering and "
            f"emitting the XDP program from the cBPF program (Program.to_ebpf), best of {EMIT_ROUNDS}."]


TABLE = result_table(
    "ebpf", "The kernel's eBPF JIT (BPF_PROG_TEST_RUN) beside pfilter's VM and libpcap's bpf_filter(), same packets",
    ["expression", "cBPF insns", "eBPF insns xdp", "emit ms", "matched", "kernel xdp", "kernel tc", "pfilter VM repeated",
     "libpcap repeated", "pfilter VM stream", "libpcap stream"], notes=_notes())


def _row(expr):
    return "20-host or" if expr == TWENTY_HOSTS else expr


def _kernel():
    from pfilter.ebpf import insn, syscall
    try:
        fd = syscall.prog_load(syscall.BPF_PROG_TYPE_XDP, insn.encode([insn.mov64(0, imm=2), insn.exit_()]))
    except OSError as e:
        (pytest.fail if IN_CI else pytest.skip)(f"the kernel does not load eBPF here: {e} (run as root)")
    return fd


@pytest.fixture(scope="module")
def sample(bench_batch):
    n = min(SAMPLE, len(bench_batch))
    return PacketBatch.from_packets([bench_batch.packet(i) for i in range(n)], wirelens=bench_batch.wirelen[:n],
                                    linktype=bench_batch.linktype)


@pytest.fixture(scope="module")
def timed(sample):
    return PacketBatch.from_packets([sample.packet(i) for i in range(TIMED)], linktype=sample.linktype)


@pytest.fixture(scope="module")
def repeated(timed):
    """The TIMED packets, each REPEAT times in a row (offsets repeat; the bytes are shared)."""
    return PacketBatch(timed.data, np.repeat(timed.offsets, REPEAT), np.repeat(timed.caplen, REPEAT),
                       np.repeat(timed.wirelen, REPEAT), np.repeat(timed.timestamps, REPEAT), timed.linktype)


def _kernel_ns(fd, batch):
    """The kernel's mean ns/run over the packets of batch, each run REPEAT times (per packet the
    best of ROUNDS rounds)."""
    from pfilter.ebpf import test_run_fd
    best = np.full(len(batch), np.inf)
    for _ in range(ROUNDS):
        best = np.minimum(best, test_run_fd(fd, batch, repeat=REPEAT)[1])
    return float(best.mean())


def test_bench_kernel_test_loop_floor(timed):
    """The kernel's ns/run for programs that return at once: the part of the figures below that
    is BPF_PROG_TEST_RUN's own loop, not the filter."""
    from pfilter.ebpf import insn, syscall
    os.close(_kernel())
    for hook, kind in (("xdp", syscall.BPF_PROG_TYPE_XDP), ("tc", syscall.BPF_PROG_TYPE_SCHED_CLS)):
        fd = syscall.prog_load(kind, insn.encode([insn.mov64(0, imm=0), insn.exit_()]))
        try:
            _empty[hook] = _kernel_ns(fd, timed)
        finally:
            os.close(fd)
    TABLE.notes[:] = _notes()


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_bench_kernel_ebpf(benchmark, expr, sample, timed, libpcap_program):
    from pfilter.ebpf import load, test_run_fd
    os.close(_kernel())
    benchmark.group = f"ebpf {expression_id(expr)}"
    prog = Program.from_tuples(libpcap_program(expr))
    want = prog.match_batch(sample)
    cells = {"expression": _row(expr), "cBPF insns": len(prog), "matched": int(want.sum())}
    emit = []
    for _ in range(EMIT_ROUNDS):
        t0 = time.perf_counter()
        prog.to_ebpf("xdp")
        emit.append(time.perf_counter() - t0)
    cells["emit ms"] = min(emit) * 1e3
    for hook in ("xdp", "tc"):
        eb = prog.to_ebpf(hook)
        fd = load(eb)
        try:
            got = eb.matches(test_run_fd(fd, sample)[0])
            assert np.array_equal(got, want), f"{hook}: {int((got != want).sum())} verdicts differ from the VM"
            if hook == "xdp":
                ns = benchmark.pedantic(_kernel_ns, args=(fd, timed), rounds=1, iterations=1)
                cells["eBPF insns xdp"] = len(eb)
            else:
                ns = _kernel_ns(fd, timed)
        finally:
            os.close(fd)
        cells[f"kernel {hook}"] = ns
        benchmark.extra_info[f"kernel_{hook}_ns_per_run"] = round(ns, 2)
    assert 0 < cells["matched"] < len(sample)
    TABLE.add(expr, **cells)


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_bench_vm_and_libpcap_same_packets(benchmark, expr, sample, repeated, libpcap_program, c_baseline):
    """pfilter's VM and libpcap's bpf_filter() on the packets the kernel ran, the same way."""
    benchmark.group = f"ebpf {expression_id(expr)}"
    tuples = libpcap_program(expr)
    prog = Program.from_tuples(tuples)
    insns = c_baseline.insn_array(tuples)
    out_r = np.empty(len(repeated), dtype=np.uint32)
    benchmark.pedantic(prog.run_batch, args=(repeated,), kwargs={"out": out_r}, rounds=5, warmup_rounds=1)
    vm_rep = record_rate(benchmark, len(repeated), engine="pfilter run_batch, each packet repeated")
    base_r = np.empty(len(repeated), dtype=np.uint32)
    c_baseline.run(insns, repeated, base_r)
    assert np.array_equal(out_r, base_r)
    out_s = np.empty(len(sample), dtype=np.uint32)
    vm_rep_i, lp_rep, vm_s, lp_s = interleaved_best([
        lambda: prog.run_batch(repeated, out=out_r), lambda: c_baseline.run(insns, repeated, base_r),
        lambda: prog.run_batch(sample, out=out_s), lambda: c_baseline.run(insns, sample, out_s)])
    TABLE.add(expr, **{"expression": _row(expr),
                       "pfilter VM repeated": min(vm_rep or float("inf"), vm_rep_i * 1e9 / len(repeated)),
                       "libpcap repeated": lp_rep * 1e9 / len(repeated),
                       "pfilter VM stream": vm_s * 1e9 / len(sample), "libpcap stream": lp_s * 1e9 / len(sample)})
