"""Every Ethernet corpus expression as XDP and tc programs (optimized, as pfilter.compile gives
them; for XDP also unoptimized): the running kernel's verifier accepts each (those with a
backward jump, libpcap's `protochain` loop, are counted: they loop under the VM's loop budget),
and BPF_PROG_TEST_RUN gives pfilter's VM verdict on every Ethernet corpus packet and on
truncated copies of each.

What the kernel cannot run is said, counted and asserted small: BPF_PROG_TEST_RUN takes frames of
14 bytes up to about a page (a longer packet is run as its copy truncated to the largest size
the hook takes, a shorter one not at all; the skb programs' harness, tc's, also refuses an IPv4
frame shorter than 14 + 20 bytes and an IPv6 one shorter than 14 + 40). The VM runs the same bytes with the wire length equal
to the captured length, as the hooks see a packet. The programs run 31 at a time inside one
harness program (tests/ebpf_harness.py: the emitted instructions unchanged, as subprograms), so
each test run gives 31 verdicts.
"""
import os
import time

import numpy as np
import pytest

import reference as ref
from ebpf_harness import is_verifier_refusal, require_kernel, verdict_matrix

import pfilter
from pfilter.ebpf import insn as I, load, syscall

pytestmark = ref.needs_corpus("expressions/en10mb.txt")

#: (hook, optimized): the targets checked
TARGETS = [("xdp", True), ("tc", True), ("xdp", False)]
TARGET_IDS = ["xdp", "tc", "xdp-unoptimized"]
SEED = 14
TIMES = {}


def _has_backward_jump(prog):
    return any(c == 0x05 and k & 0x80000000 for c, _, _, k in prog.to_tuples())


@pytest.fixture(scope="module")
def corpus_programs():
    """{optimized: [(expression, Program)]} for every Ethernet corpus expression pfilter compiles."""
    out = {}
    for optimize in (True, False):
        progs, refused = [], 0
        for expr in ref.corpus_lines("expressions/en10mb.txt"):
            try:
                progs.append((expr, pfilter.compile(expr, optimize=optimize)))
            except pfilter.FilterError:
                refused += 1
        assert len(progs) > 400, f"only {len(progs)} corpus expressions compile ({refused} refused)"
        out[optimize] = progs
    return out


def _largest_run(prog_type):
    """The largest frame BPF_PROG_TEST_RUN runs whole for this program type: binary search on a
    program returning data_end - data (the linear part it sees)."""
    code = [I.ldx(I.BPF_W, I.R2, I.R1, 0 if prog_type == syscall.BPF_PROG_TYPE_XDP else 76),
            I.ldx(I.BPF_W, I.R0, I.R1, 4 if prog_type == syscall.BPF_PROG_TYPE_XDP else 80),
            I.alu64(I.BPF_SUB, I.R0, I.R2), I.exit_()]
    fd = syscall.prog_load(prog_type, I.encode(code))
    try:
        run = syscall.TestRun(fd)
        lo, hi = 14, 1 << 16
        while lo < hi:
            mid = (lo + hi + 1) // 2
            try:
                ok = run.run(bytes(mid))[0] == mid
            except OSError:
                ok = False
            lo, hi = (mid, hi) if ok else (lo, mid - 1)
        return lo
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def corpus_packets():
    """A PacketBatch of every distinct Ethernet corpus packet the kernel runs, and of three
    truncated copies of each (one byte short, and two cuts at seeded offsets inside the headers),
    wire length = captured length; with the counts of what was cut or left out."""
    require_kernel()
    limit = min(_largest_run(syscall.BPF_PROG_TYPE_XDP), _largest_run(syscall.BPF_PROG_TYPE_SCHED_CLS))
    packets, too_short, cut_to_limit = [], 0, 0
    for (dlt, _snap), batch in ref.corpus_batches().items():
        if dlt == 1:
            packets += [batch.packet(i) for i in range(len(batch))]
    total = len(packets)
    rng = np.random.default_rng(SEED)
    seen, batch_packets = set(), []
    for p in packets:
        if len(p) < 14:
            too_short += 1
            continue
        if len(p) > limit:
            cut_to_limit += 1
            p = p[:limit]
        n = len(p)
        cuts = {n, n - 1, int(rng.integers(14, min(n, 64) + 1)), int(rng.integers(14, min(n, 160) + 1))}
        for c in sorted(cuts):
            if c >= 14 and p[:c] not in seen:
                seen.add(p[:c])
                batch_packets.append(p[:c])
    assert too_short <= 10 and cut_to_limit <= 100, (too_short, cut_to_limit)
    print(f"\n{total} Ethernet corpus packets; {len(batch_packets)} distinct frames with truncated copies; "
          f"{too_short} shorter than 14 bytes (no hook sees them), {cut_to_limit} longer than {limit} "
          f"bytes run as their first {limit}")
    return pfilter.PacketBatch.from_packets(batch_packets)


@pytest.fixture(scope="module")
def emitted(corpus_programs):
    """{(hook, optimized): [(expr, Program, EbpfProgram)]}."""
    return {(hook, optimize): [(expr, prog, prog.to_ebpf(hook)) for expr, prog in corpus_programs[optimize]]
            for hook, optimize in TARGETS}


@pytest.mark.parametrize("hook,optimize", TARGETS, ids=TARGET_IDS)
def test_every_corpus_expression_loads_in_the_kernel_verifier(hook, optimize, corpus_programs, emitted):
    require_kernel()
    ok = emitted[hook, optimize]
    loops = [expr for expr, prog, _ in ok if _has_backward_jump(prog)]
    assert loops, "the corpus has protochain expressions: their loops must load too"
    t0 = time.perf_counter()
    refused = []
    for expr, _prog, eb in ok:
        try:
            os.close(load(eb))
        except OSError as e:
            if not is_verifier_refusal(e):
                raise
            refused.append(f"{expr!r}: {str(e).splitlines()[-2:]}")
    TIMES[f"load {hook}"] = time.perf_counter() - t0
    print(f"\n{hook}{'' if optimize else ' unoptimized'}: {len(ok)} programs loaded, {len(loops)} of them with a loop (protochain)")
    assert not refused, f"the verifier refused {len(refused)} {hook} programs:\n" + "\n".join(refused[:10])


@pytest.mark.parametrize("hook,optimize", TARGETS, ids=TARGET_IDS)
def test_kernel_verdicts_equal_the_vm_on_every_corpus_packet(hook, optimize, emitted, corpus_packets):
    require_kernel()
    ok = emitted[hook, optimize]
    t0 = time.perf_counter()
    got, refused = verdict_matrix([eb for _, _, eb in ok], corpus_packets)
    label = hook if optimize else f"{hook} unoptimized"
    TIMES[f"run {label}"] = time.perf_counter() - t0
    # the kernel's skb test harness refuses an IPv4 frame shorter than 14 + 20 bytes and an IPv6
    # one shorter than 14 + 40: those frames only, and only for skb programs
    sizes = corpus_packets.caplen.astype(int)
    assert hook == "tc" or not refused.any()
    assert (sizes[refused] < 54).all()
    wrong = []
    for j, (expr, prog, _eb) in enumerate(ok):
        want = prog.run_batch(corpus_packets) != 0
        differ = np.flatnonzero((got[:, j] != want) & ~refused)
        if len(differ):
            i = int(differ[0])
            wrong.append(f"{expr!r}: {len(differ)} packets differ, first {i} ({len(corpus_packets.packet(i))} bytes, "
                         f"VM {'match' if want[i] else 'miss'})")
    matched = int(got.sum())
    print(f"\n{label}: {len(ok)} programs x {len(corpus_packets)} frames, {matched} matches, "
          f"{TIMES[f'run {label}']:.1f} s; {int(refused.sum())} short IP frames the kernel does not test-run")
    assert matched > 0 and matched < got.size
    assert not wrong, f"{len(wrong)} {label} programs differ from the VM:\n" + "\n".join(wrong[:20])
