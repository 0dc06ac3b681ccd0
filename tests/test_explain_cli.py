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


# ---------------------------------------------------------------------------- fixed problems

def _pfilter(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "pfilter", *args], capture_output=True, text=True, timeout=120,
                          **kwargs)


def _tcpdump_count(expr, path=SAMPLE):
    import reference as ref
    r = subprocess.run([ref.tcpdump(), "-nr", str(path), expr], capture_output=True, text=True, timeout=60)
    return len(r.stdout.splitlines())


def _empty_capture(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(SAMPLE.read_bytes()[:24])          # the file header, no packet
    return path


def _damaged_capture(tmp_path, intact=5):
    """sample.pcap's first `intact` packets, then a record header with an impossible length."""
    import struct
    data = SAMPLE.read_bytes()
    off = 24
    for _ in range(intact):
        off += 16 + struct.unpack("<I", data[off + 8:off + 12])[0]
    path = tmp_path / "damaged.pcap"
    path.write_bytes(data[:off] + struct.pack("<IIII", 0, 0, 0xFFFFFF00, 0xFFFFFF00) + b"x" * 40)
    return path, off


def test_explain_into_a_closed_pipe_ends_quietly_with_the_status_of_pfilter():
    from pfilter._signals import BROKEN_PIPE_STATUS
    p = subprocess.Popen([sys.executable, "-m", "pfilter", "explain", "-r", str(SAMPLE), "tcp"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline().startswith(b"packet 1: ")
    p.stdout.close()                                    # `| head -1`
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == BROKEN_PIPE_STATUS and err == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_explain_says_a_failed_write_is_on_standard_output_and_a_failed_read_names_the_input(tmp_path):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "pfilter", "explain", "-r", str(SAMPLE), "-c", "2", "tcp"],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr == "pfilter: standard output: No space left on device\n"
    damaged, off = _damaged_capture(tmp_path)
    r = _pfilter("explain", "-r", str(damaged), "tcp")
    assert r.returncode == 1 and r.stderr.startswith(f"pfilter: {damaged}: offset {off}: ")
    assert r.stdout.count("packet ") == 5


@pytest.mark.parametrize("count", [None, "0"])
def test_explain_reports_a_syntax_error_even_when_no_packet_is_read(count, tmp_path, capsys):
    empty = _empty_capture(tmp_path)
    expr = "bogus junk !!"
    argv = ["explain", "-r", str(empty)] + (["-c", count] if count else []) + [expr]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("pfilter: 'bogus' is not a primitive") and err.endswith(f"(at offset 0 of '{expr}')\n")
    assert main(["profile", "-r", str(empty), expr]) == 1        # as profile says it
    assert capsys.readouterr().err == err
    import reference as ref
    assert subprocess.run([ref.tcpdump(), "-r", str(empty), expr], capture_output=True).returncode != 0
    assert main(["explain", "-r", str(SAMPLE), "-c", "0", "tcp"]) == 0       # a good one is still fine


def test_debug_says_what_a_bad_argument_should_have_been():
    script = "\n".join(["break x", "run x", "step -2", "step 0", "step", "print Q", "select y", "quit"]) + "\n"
    r = _debug(script, "-r", str(SAMPLE), "tcp")
    errors = [l for l in r.stdout.splitlines() if l.startswith("error: ")]
    assert len(errors) == 6 and not any("invalid literal" in l for l in errors), errors
    assert "instruction number" in errors[0] and "'x'" in errors[0]
    assert "packets" in errors[1] and "'x'" in errors[1]
    assert "1 or more" in errors[2] and "'-2'" in errors[2] and "'0'" in errors[3]
    assert "A" in errors[4] and "X" in errors[4] and "M" in errors[4] and "'Q'" in errors[4]
    assert "packet number" in errors[5]
    assert r.stdout.count("(000) ldh") == 1            # only `step` ran an instruction
    assert r.returncode == 1


def test_debug_refuses_a_program_and_an_expression_together(tmp_path):
    asm = tmp_path / "arp.s"
    asm.write_text("ldh [12]\njne #0x806, drop\nret #-1\ndrop: ret #0\n")
    r = _debug("quit\n", "--asm", str(asm), "tcp")
    assert r.returncode == 1 and "not both" in r.stderr and "instructions" not in r.stdout


def test_debug_loads_the_packets_before_the_damage_and_warns(tmp_path):
    damaged, off = _damaged_capture(tmp_path)
    r = _debug("run\nquit\n", "-r", str(damaged), "tcp")
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "5 packets"
    assert out[1].startswith(f"warning: {damaged}: offset {off}: invalid packet capture length")
    assert f"{_tcpdump_count('tcp', damaged)} of 5 packets matched" in out


def _entered_by_trace(prog, span):
    """Packets of sample.pcap that ran any instruction of the primitive (span None: any ret)."""
    origins = prog.origins
    mine = {i for i, o in enumerate(origins) if (span in o if span is not None else not o)}
    return sum(bool(mine & {s.pc for s in prog.trace(p, w).steps}) for p, w in _packets())


def _primitive_rows(out):
    at = next(i for i, l in enumerate(out) if l.startswith("# instructions"))
    return {l.split("  ")[-1]: l.split()[2] for l in out[at + 1:] if not l.startswith("#")}


def test_profile_counts_the_packets_that_entered_each_primitive(capsys):
    expr = "tcp port 80 or udp port 53"
    assert main(["profile", "-r", str(SAMPLE), expr]) == 0
    rows = _primitive_rows(capsys.readouterr().out.splitlines())
    # optimized, `udp port 53` is reached by the IPv4 and IPv6 packets that are not TCP
    assert rows["`udp port 53`"] == str(_tcpdump_count("(ip and ip[9] != 6) or (ip6 and ip6[6] != 6)")) == "1006"
    assert rows["`tcp port 80`"] == rows["(returns)"] == "3000"
    assert main(["profile", "-O", "-r", str(SAMPLE), expr]) == 0
    rows = _primitive_rows(capsys.readouterr().out.splitlines())
    assert rows["`udp port 53`"] == str(_tcpdump_count("not tcp port 80"))    # unoptimized: or's right side
    for expr in ("tcp or udp", "src host 10.0.0.1 and dst host 10.0.0.2", "udp and udp[4:2] < 16"):
        for opt in ([], ["-O"]):
            assert main(["profile", *opt, "-r", str(SAMPLE), expr]) == 0
            rows = _primitive_rows(capsys.readouterr().out.splitlines())
            prog = pfilter.compile(expr, optimize=not opt)
            for span, _neg in [((a, b), n) for (a, b), n in pfilter.explain.primitives(expr)] + [(None, False)]:
                name = f"`{expr[span[0]:span[1]]}`" if span else "(returns)"
                if name in rows and rows[name] != "-":
                    assert int(rows[name]) == _entered_by_trace(prog, span), (expr, opt, name)
