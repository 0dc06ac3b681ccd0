"""`pfilter -r big -w out EXPR` against `tcpdump -r big -w out EXPR`, same run, same file: wall time
of the whole command (interpreter start-up included) and peak resident memory, for the issue's
five expressions on the generated 2M-packet (about 1 GB) capture. Target: pfilter's time <= 0.5x
tcpdump's; peak memory < 200 MB whatever the file size.

Imports bench/conftest.py's fixtures (huge_capture, STANDARD_EXPRESSIONS, result_table, require).
Runs both commands as child processes, interleaved round by round, and reads each child's own
rusage (os.wait4; the peak through GNU time when installed), so the figures are the commands',
not pytest's. Both outputs must be identical, byte for byte. The ratio is not asserted (a shared
machine's load moves it); the table records it.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import (HUGE_PACKETS, READY_NOTE, ROUNDS, STANDARD_EXPRESSIONS, before_timed, command_env,
                      expression_id, pfilter_launcher, result_table, run_command, tcpdump_path)

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.5
MEMORY_LIMIT_MB = 200


def _best(runs):
    """Fastest wall time, its CPU time, and the highest peak of several runs."""
    fastest = min(runs)
    return fastest[0], fastest[1], max(r[2] for r in runs)


def _same_file(a, b):
    import filecmp
    return filecmp.cmp(a, b, shallow=False)


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_filter_file_against_tcpdump(benchmark, huge_capture, tmp_path, expr):
    tcpdump, env = tcpdump_path(), command_env()
    ours, theirs = tmp_path / "pfilter.pcap", tmp_path / "tcpdump.pcap"
    script = Path(sys.executable).with_name("pfilter")      # the installed console script
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "pfilter"]
    pf_cmd = launcher + ["--quiet", "-r", str(huge_capture), "-w", str(ours), expr]
    td_cmd = [tcpdump, "-r", str(huge_capture), "-w", str(theirs), expr]
    rounds = max(1, ROUNDS)

    # Byte-compile pfilter as `pip install` would (this environment sets PYTHONDONTWRITEBYTECODE,
    # which would make every run compile pfilter's sources again).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "pfilter")], check=False,
                   env=dict(env, PYTHONDONTWRITEBYTECODE=""), capture_output=True)
    run_command(pf_cmd, env)                     # warm the page cache and check it works
    td_runs, pf_runs = [], []
    for _ in range(rounds):               # interleaved, so both see the same machine load
        td_runs.append(run_command(td_cmd, tmp=tmp_path, out=theirs))
        pf_runs.append(run_command(pf_cmd, env, tmp=tmp_path, out=ours))
    benchmark.pedantic(lambda: pf_runs.append(run_command(pf_cmd, env, tmp=tmp_path, out=ours)), rounds=1, iterations=1)
    td_wall, td_cpu, td_mem = _best(td_runs)
    pf_wall, pf_cpu, pf_mem = _best(pf_runs)
    ratio = pf_wall / td_wall

    assert _same_file(ours, theirs), "pfilter's output differs from tcpdump's"
    benchmark.extra_info.update(packets=HUGE_PACKETS, tcpdump_s=round(td_wall, 3),
                                pfilter_s=round(pf_wall, 3), ratio=round(ratio, 3),
                                tcpdump_cpu_s=round(td_cpu, 3), pfilter_cpu_s=round(pf_cpu, 3),
                                pfilter_peak_mb=round(pf_mem, 1), tcpdump_peak_mb=round(td_mem, 1))
    size_mb = huge_capture.stat().st_size / 2**20
    table = result_table("filter_file", "pfilter -r -w vs tcpdump -r -w (same run, interleaved)",
                         ["expression", "matched MB", "tcpdump s", "pfilter s", "ratio",
                          "tcpdump CPU s", "pfilter CPU s", "pfilter peak MB", "tcpdump peak MB",
                          "pfilter in-process s", "general path in-process s"],
                         notes=[f"Input: {HUGE_PACKETS} generated packets, {size_mb:.0f} MB; fastest of "
                                f"{rounds} interleaved runs each (wall; CPU = user + system of that "
                                f"run); target ratio <= {TARGET_RATIO}, peak < {MEMORY_LIMIT_MB} MB. "
                                f"'in-process': pfilter.filter_file called from Python, start-up excluded "
                                f"(fast path, and the general numpy-batch path for comparison).", READY_NOTE])
    table.add(expr, **{"expression": expression_id(expr), "matched MB": ours.stat().st_size / 2**20,
                       "tcpdump s": td_wall, "pfilter s": pf_wall, "ratio": ratio,
                       "tcpdump CPU s": td_cpu, "pfilter CPU s": pf_cpu,
                       "pfilter peak MB": pf_mem, "tcpdump peak MB": td_mem})
    assert pf_mem < MEMORY_LIMIT_MB, f"peak memory {pf_mem:.0f} MB"


def test_reader_throughput(benchmark, huge_capture):
    """pfilter.open over the whole file (batches of the filter path's size), no filtering."""
    import pfilter
    from pfilter.capture.filterfile import CACHE_BATCH_BYTES

    def read():
        n = 0
        with pfilter.open(huge_capture, batch_bytes=CACHE_BATCH_BYTES) as cap:
            for batch in cap:
                n += len(batch)
        return n
    n = benchmark.pedantic(read, rounds=max(1, min(ROUNDS, 3)), iterations=1)
    assert n == HUGE_PACKETS
    size = huge_capture.stat().st_size
    best = benchmark.stats["min"] if getattr(benchmark, "stats", None) else None
    if best:
        benchmark.extra_info.update(gb_per_s=round(size / best / 1e9, 2), ns_per_packet=round(best * 1e9 / n, 1))
        result_table("reader", "pfilter.open throughput (in process)", ["what", "seconds", "GB/s", "ns/packet"]).add(
            "read", what=f"{n} packets, {size / 2**20:.0f} MB", seconds=best, **{"GB/s": size / best / 1e9,
                                                                                "ns/packet": best * 1e9 / n})


@pytest.mark.parametrize("path", ["fast", "general"])
@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS, ids=expression_id)
def test_filter_file_in_process(benchmark, huge_capture, tmp_path, monkeypatch, expr, path):
    """pfilter.filter_file called from Python (no interpreter start-up, program compiled
    beforehand): the engine's own time for the command's work, on the fast path (the default
    for a plain pcap file) and on the general path (PFILTER_NO_FASTPATH=1: batches in numpy
    arrays, the path every other input takes)."""
    import pfilter
    if path == "general":
        monkeypatch.setenv("PFILTER_NO_FASTPATH", "1")
    prog = pfilter.compile(expr)
    out = tmp_path / "o.pcap"
    def fresh():                          # as in run_command: no previous output to free or flush
        before_timed(out)
    stats = benchmark.pedantic(lambda: pfilter.filter_file(huge_capture, out, prog), setup=fresh,
                               rounds=max(1, min(ROUNDS, 3)), iterations=1)
    assert stats.read == HUGE_PACKETS
    best = benchmark.stats["min"] if getattr(benchmark, "stats", None) else None
    if best:
        column = "pfilter in-process s" if path == "fast" else "general path in-process s"
        result_table("filter_file", "", []).add(expr, **{column: best})


@pytest.fixture(scope="module")
def huge_pcapng():
    """The generated 2M-packet capture written as pcapng (one section, one interface, microsecond
    timestamps: what dumpcap and Wireshark save by default), cached across runs."""
    from conftest import generated_capture, settled
    return settled(generated_capture(HUGE_PACKETS, pcapng=True))


@pytest.mark.parametrize("expr", STANDARD_EXPRESSIONS + ["--count tcp"], ids=expression_id)
def test_pcapng_against_tcpdump(benchmark, huge_pcapng, tmp_path, expr):
    """`pfilter -r big.pcapng -w out EXPR` (the pcapng fast path, _fastcopy.NgCopy) against
    tcpdump's same command and against pfilter's general path (PFILTER_NO_FASTPATH=1: the path
    every pcapng input took before), interleaved; outputs identical byte for byte. --count: the
    packets counted (tcpdump has no count without printing: its -w to /dev/null)."""
    tcpdump, env = tcpdump_path(), command_env()
    general_env = dict(env, PFILTER_NO_FASTPATH="1")
    counting = expr.startswith("--count ")
    text = expr.split(" ", 1)[1] if counting else expr
    ours, theirs, slow = tmp_path / "pfilter.pcap", tmp_path / "tcpdump.pcap", tmp_path / "general.pcap"
    launcher = pfilter_launcher()
    if counting:
        pf_cmd = launcher + ["--quiet", "-r", str(huge_pcapng), "--count", text]
        gp_cmd = pf_cmd
        td_cmd = [tcpdump, "-r", str(huge_pcapng), "-w", "/dev/null", text]
    else:
        pf_cmd = launcher + ["--quiet", "-r", str(huge_pcapng), "-w", str(ours), text]
        gp_cmd = launcher + ["--quiet", "-r", str(huge_pcapng), "-w", str(slow), text]
        td_cmd = [tcpdump, "-r", str(huge_pcapng), "-w", str(theirs), text]
    rounds = max(1, ROUNDS)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "pfilter")], check=False,
                   env=dict(env, PYTHONDONTWRITEBYTECODE=""), capture_output=True)
    run_command(pf_cmd, env)                     # warm the page cache and check it works
    td_runs, pf_runs, gp_runs = [], [], []
    for _ in range(rounds):
        td_runs.append(run_command(td_cmd, tmp=tmp_path, out=None if counting else theirs))
        pf_runs.append(run_command(pf_cmd, env, tmp=tmp_path, out=None if counting else ours))
        gp_runs.append(run_command(gp_cmd, general_env, tmp=tmp_path, out=None if counting else slow))
    benchmark.pedantic(lambda: pf_runs.append(run_command(pf_cmd, env, tmp=tmp_path, out=None if counting else ours)),
                       rounds=1, iterations=1)
    td_wall, td_cpu, _ = _best(td_runs)
    pf_wall, pf_cpu, pf_mem = _best(pf_runs)
    gp_wall, gp_cpu, _ = _best(gp_runs)
    if not counting:
        assert _same_file(ours, theirs), "pfilter's output differs from tcpdump's"
        assert _same_file(ours, slow), "the fast path's output differs from the general path's"
    benchmark.extra_info.update(tcpdump_s=round(td_wall, 3), pfilter_s=round(pf_wall, 3),
                                general_s=round(gp_wall, 3), tcpdump_cpu_s=round(td_cpu, 3),
                                pfilter_cpu_s=round(pf_cpu, 3), general_cpu_s=round(gp_cpu, 3))
    size_mb = huge_pcapng.stat().st_size / 2**20
    table = result_table("filter_pcapng", "pfilter -r IN.pcapng -w vs tcpdump, and vs pfilter's general path (same run)",
                         ["command", "tcpdump s", "tcpdump CPU s", "pfilter s", "pfilter CPU s", "wall ratio",
                          "CPU ratio", "general path s", "general path CPU s", "fast / general CPU",
                          "pfilter peak MB"],
                         notes=[f"Input: the {HUGE_PACKETS}-packet generated capture as pcapng ({size_mb:.0f} MB, "
                                f"microsecond timestamps); fastest of {rounds} interleaved runs each (wall; CPU = "
                                f"user + system). Ratios: pfilter over tcpdump. General path: the same pfilter "
                                f"command with PFILTER_NO_FASTPATH=1 (numpy batches: every pcapng input before "
                                f"the pcapng fast path). --count's tcpdump: -w /dev/null.", READY_NOTE])
    table.add(expr, **{"command": ("--count " if counting else "-w ") + expression_id(text),
                       "tcpdump s": td_wall, "tcpdump CPU s": td_cpu, "pfilter s": pf_wall, "pfilter CPU s": pf_cpu,
                       "wall ratio": pf_wall / td_wall, "CPU ratio": pf_cpu / td_cpu,
                       "general path s": gp_wall, "general path CPU s": gp_cpu,
                       "fast / general CPU": pf_cpu / gp_cpu, "pfilter peak MB": pf_mem})
    assert pf_mem < MEMORY_LIMIT_MB, f"peak memory {pf_mem:.0f} MB"
