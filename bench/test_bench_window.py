"""Time windows on the 1 GB capture: `pfilter -r IN --after A --before B -w OUT EXPR` against
what a user runs today, `editcap -A A -B B IN TMP` then `tcpdump -r TMP -w OUT EXPR` (same run,
interleaved, outputs byte-identical: asserted). pfilter finds the window's byte range by one walk
of the record headers (pfilter.capture.index.window_range: the file mapped a window at a time,
walked in chains, no array kept; with -j 2 two threads walk a half each) and filters only those
bytes on the fast path; "walk alone" is the same command with a window past the capture's end (no
record to filter: the start and the walk). Results: bench/results/latest_scale_window.md.
"""
import os
import subprocess

import pytest

from conftest import (READY_NOTE, ROUNDS, command_env, pfilter_launcher, require, result_table, run_command,
                      tcpdump_path)

EXPR = "ip and tcp port 80"
# (name, start, end) as fractions of the capture's time span
WINDOWS = [("middle half", 0.25, 0.75), ("1% at 60%", 0.60, 0.61)]


def _editcap():
    import shutil
    path = shutil.which("editcap")
    require(path, "editcap (Debian package wireshark-common)")
    return path


def _span(path):
    from pfilter.capture.index import build_index
    ix = build_index(path)
    return int(ix.timestamps[0]), int(ix.timestamps[-1])


def _seconds(ns):
    return f"{ns // 10**9}.{ns % 10**9:09d}"


def _table():
    return result_table(
        "scale_window", "Time windows: pfilter --after/--before vs editcap -A/-B then tcpdump (1 GB, same run)",
        ["window", "command", "wall s", "CPU s", "wall ratio", "CPU ratio", "peak MB"],
        notes=[f"Input: the generated 2M-packet capture (about 1 GB); expression '{EXPR}'; best of "
               f"{max(1, ROUNDS)} interleaved runs (CPU = user + system, the shell's children included); "
               "ratios against editcap then tcpdump in the same rounds; outputs byte-identical (asserted). "
               "'walk alone': pfilter with a window after the capture's last packet (start-up and the "
               "walk of the record headers that finds the window, nothing filtered).", READY_NOTE])


@pytest.mark.parametrize("window", WINDOWS, ids=[w[0] for w in WINDOWS])
def test_window_against_editcap_then_tcpdump(huge_capture, tmp_path, window):
    name, lo, hi = window
    first, last = _span(huge_capture)
    a = _seconds(first + int((last - first) * lo))
    b = _seconds(first + int((last - first) * hi))
    ed, td_out = tmp_path / "ed.pcap", tmp_path / "td.pcap"
    baseline = ["sh", "-c", '"$0" -F pcap -A "$1" -B "$2" "$3" "$4" && "$5" -r "$4" -w "$6" "$7"',
                _editcap(), a, b, str(huge_capture), str(ed), tcpdump_path(), str(td_out), EXPR]
    pf = {w: pfilter_launcher() + ["--quiet", "-j", str(w), "-r", str(huge_capture), "--after", a, "--before", b,
                                   "-w", str(tmp_path / f"pf{w}.pcap"), EXPR] for w in (1, 2)}
    walk = {w: pfilter_launcher() + ["--quiet", "-j", str(w), "-r", str(huge_capture), "--after",
                                     _seconds(last + 10**9), "--count", EXPR] for w in (1, 2)}
    env = command_env()
    runs = {"td": [], 1: [], 2: [], "walk1": [], "walk2": []}
    for _ in range(max(1, ROUNDS)):
        runs["td"].append(run_command(baseline, tmp=tmp_path, out=td_out))
        os.unlink(ed)
        for w in (1, 2):
            runs[w].append(run_command(pf[w], env, tmp=tmp_path, out=tmp_path / f"pf{w}.pcap"))
            runs[f"walk{w}"].append(run_command(walk[w], env, tmp=tmp_path))
    want = td_out.read_bytes()
    assert len(want) > 24
    assert (tmp_path / "pf1.pcap").read_bytes() == want and (tmp_path / "pf2.pcap").read_bytes() == want
    for w in (1, 2):
        assert subprocess.run(walk[w], env=env, capture_output=True, text=True, check=True).stdout == "0 packets\n"
    tw, tc = min(r[0] for r in runs["td"]), min(r[1] for r in runs["td"])
    rows = [("td", "editcap -A -B, then tcpdump -r -w"), (1, "pfilter --after --before -w, -j 1"),
            (2, "pfilter --after --before -w, -j 2"), ("walk1", "pfilter, walk alone, -j 1"),
            ("walk2", "pfilter, walk alone, -j 2 (two threads)")]
    for key, what in rows:
        wall, cpu, peak = min(r[0] for r in runs[key]), min(r[1] for r in runs[key]), max(r[2] for r in runs[key])
        _table().add(f"{name}/{key}", window=f"{name} ({a} - {b})" if key == "td" else name, command=what,
                     **{"wall s": wall, "CPU s": cpu, "wall ratio": wall / tw, "CPU ratio": cpu / tc, "peak MB": peak})
