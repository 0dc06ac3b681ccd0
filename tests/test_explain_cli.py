"""The commands: pfilter explain, pfilter profile, pfilter debug (driven through standard input,
and through a terminal with tmux send-keys when tmux is installed)."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pfilter
from pfilter.cli import main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.pcap"


def _packets():
    with pfilter.open(str(SAMPLE)) as cap:
        for batch in cap:
            for i in range(len(batch)):
                yield batch.packet(i), int(batch.wirelen[i])


def test_explain_prints_each_packet_with_the_caret_and_the_programs_verdict(capsys):
    expr = "tcp port 80 and not host 10.0.0.1"
    assert main(["explain", "-r", str(SAMPLE), "-c", "5", expr]) == 0
    out = capsys.readouterr().out.splitlines()
    prog = pfilter.compile(expr)
    heads = [l for l in out if l.startswith(("yes: ", "no: "))]
    assert len(heads) == 5 and sum(l.startswith("packet ") for l in out) == 5
    for head, (pkt, wl) in zip(heads, _packets()):
        assert head.startswith("yes" if prog.run(pkt, wl) else "no")
    assert all(l == "  " + expr for l in out if l.startswith("  t"))


def test_explain_one_packet_and_only_matches(capsys):
    assert main(["explain", "-r", str(SAMPLE), "--packet", "2", "tcp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("packet 2: ") and out.count("packet ") == 1
    assert main(["explain", "-r", str(SAMPLE), "--matched", "-c", "3", "udp port 53"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [l.split(":")[0] for l in out if l[:3] in ("yes", "no:")] == ["yes"] * 3


@pytest.mark.parametrize("argv, message", [
    (["explain", "-r", "/nonexistent.pcap", "tcp"], "No such file"),
    (["explain", "-r", str(SAMPLE), "tcp port"], "pfilter: "),
    (["explain", "-r", str(SAMPLE), "--packet", "999999", "tcp"], "no packet 999999"),
    (["profile", "-r", str(SAMPLE), "ether proto"], "pfilter: "),
    (["explain", "tcp"], "-r"),
])
def test_command_errors_are_one_line_and_a_failure_status(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_profile_lists_counts_next_to_the_listing_and_per_primitive(capsys):
    expr = "tcp port 80 or udp port 53"
    assert main(["profile", "-r", str(SAMPLE), expr]) == 0
    out = capsys.readouterr().out.splitlines()
    prog = pfilter.compile(expr)
    listing = prog.dump("d").splitlines()
    rows = [l for l in out if "(0" in l and l[2:14].strip().isdigit()]
    assert len(rows) == len(prog)
    steps = pfilter.PacketBatch.from_packets([p for p, _ in _packets()])
    total = int(prog.count_steps(steps).sum())
    assert sum(int(l[2:14]) for l in rows) == total
    for row, line in zip(rows, listing):
        assert line.replace("\t", " ").split()[:3] == row[23:].split()[:3]
    assert any(l.startswith("*") for l in rows)                      # hot marks
    assert any("`tcp port 80`" in l and "%" in l for l in out[-3:])  # the table per primitive
    assert f"{len(steps)} packets" in out[0]


def _debug(script, *args):
    return subprocess.run([sys.executable, "-m", "pfilter", "debug", *args], input=script, text=True,
                          capture_output=True, timeout=120, env={**os.environ, "PFILTER_HISTORY": os.devnull})


def test_debug_steps_breaks_prints_and_runs_from_standard_input():
    script = "\n".join(["select 1", "step 2", "print A", "break 9", "continue", "print X", "break",
                        "run", "explain", "disassemble", "quit"]) + "\n"
    r = _debug(script, "-r", str(SAMPLE), "tcp port 443")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    prog = pfilter.compile("tcp port 443")
    t = prog.trace(next(_packets())[0])
    at = next(i for i, l in enumerate(out) if l.startswith("packet 1: "))
    assert out[:at] == ["3000 packets", f"{len(prog)} instructions"]
    assert out[at + 1] == str(t.steps[0]) and out[at + 2] == str(t.steps[1])
    assert out[at + 3] == f"A = 0x{t.steps[2].a_before:x} ({t.steps[2].a_before})"
    assert "breakpoints: 9" in r.stdout
    matched = sum(prog.run(p, w) != 0 for p, w in _packets())
    assert "-- breakpoint at 9" in r.stdout or f"{matched} of 3000 packets matched" in r.stdout
    assert "yes: `tcp port 443`" in r.stdout or "no: `tcp port 443`" in r.stdout


def test_debug_loads_programs_in_bpf_asm_and_reports_bad_commands(tmp_path):
    asm = tmp_path / "arp.s"
    asm.write_text("ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0\n")
    r = _debug(f"load asm {asm}\nload pcap {SAMPLE}\nrun\nbogus\nquit\n")
    arp = sum(p[12:14] == b"\x08\x06" for p, _ in _packets())
    assert f"{arp} of 3000 packets matched" in r.stdout
    assert "unknown command 'bogus'" in r.stdout and r.returncode == 1


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_debug_in_a_terminal_keeps_readline_history(tmp_path):
    hist = tmp_path / "history"
    sock = str(tmp_path / "tmux.sock")
    env = {**os.environ, "PFILTER_HISTORY": str(hist), "TERM": "xterm"}
    cmd = f"{sys.executable} -m pfilter debug -r {SAMPLE} tcp"
    subprocess.run(["tmux", "-S", sock, "new-session", "-d", "-x", "200", "-y", "50", cmd], env=env, check=True)
    try:
        def screen():
            return subprocess.run(["tmux", "-S", sock, "capture-pane", "-p"], capture_output=True, text=True).stdout

        def wait_for(text):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if text in screen():
                    return
                time.sleep(0.2)
            pytest.fail(f"{text!r} never appeared:\n{screen()}")

        wait_for("(pfilter)")
        for keys in ("select 3", "step"):
            subprocess.run(["tmux", "-S", sock, "send-keys", keys, "Enter"], check=True)
        wait_for("(000) ldh")
        subprocess.run(["tmux", "-S", sock, "send-keys", "Up", "Enter"], check=True)   # history: step again
        wait_for("(001) jeq")
        subprocess.run(["tmux", "-S", sock, "send-keys", "quit", "Enter"], check=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not hist.exists():
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "-S", sock, "kill-server"], capture_output=True)
    lines = hist.read_text().splitlines()
    assert lines[0] == "select 3" and lines[-1] == "quit" and "step" in lines
