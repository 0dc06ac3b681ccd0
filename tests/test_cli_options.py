"""The `pfilter` command's options and messages: tcpdump's meanings for -r/-w/-d/-dd/-ddd/-y/-s/
-c/-O/-F/--count/-n, several inputs and directories, summaries without -w, one-line errors with
a non-zero status (never a traceback), "expression rejects all packets", --help with examples,
`python -m pfilter`, and the `classify` sub-command's dispatch.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pfilter
import reference as ref
from pfilter import cli
from test_capture_formats import build_pcap, epb, idb, shb, optional_package

ROOT = Path(__file__).resolve().parents[1]
HTTP = ref.PCAPS / "dpkt__http.pcap"
DNS_ICMP = ref.PCAPS / "dpkt__dns_icmp.pcap"


@pytest.fixture(autouse=True)
def no_program_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def run(capsys, *argv):
    status = cli.main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return status, out, err


def packets(path):
    with pfilter.open(path) as cap:
        return [b.packet(i) for b in cap for i in range(len(b))]


def test_dump_formats_equal_tcpdumps(capsys):
    for flag, fmt in (("-d", "d"), ("-dd", "dd"), ("-ddd", "ddd")):
        status, out, _ = run(capsys, flag, "ip and tcp port 80")
        assert status == 0
        assert out == ref.tcpdump_dump("ip and tcp port 80", "EN10MB", fmt, optimize=True)


def test_dump_unoptimized_and_for_another_link_type(capsys):
    status, out, _ = run(capsys, "-O", "-y", "LINUX_SLL", "-d", "tcp")
    assert status == 0
    assert out == ref.tcpdump_dump("tcp", "LINUX_SLL", "d", optimize=False)


def test_dump_with_a_capture_compiles_for_its_link_type(capsys):
    sll = next(r["file"] for r in ref.corpus_pcaps() if r["linktype"] == "113")
    status, out, _ = run(capsys, "-r", sll, "-ddd", "udp")
    theirs = subprocess.run([ref.tcpdump(), "-r", str(sll), "-ddd", "udp"], capture_output=True, text=True)
    assert status == 0 and out == theirs.stdout


def test_summary_lines_without_w_look_like_tcpdump_n(capsys):
    status, out, err = run(capsys, "-r", DNS_ICMP, "-n", "icmp")
    assert status == 0
    lines = out.splitlines()
    theirs = subprocess.run([ref.tcpdump(), "-n", "-r", str(DNS_ICMP), "icmp"], capture_output=True,
                            text=True, env=dict(os.environ, TZ="UTC")).stdout.splitlines()
    assert len(lines) == len(theirs) > 0
    for ours, their in zip(lines, theirs):
        assert ours.split(" ")[0][-7:] == their.split(" ")[0][-7:]     # same seconds and microseconds
        assert ours.split(": ")[0].split(" ", 1)[1] == their.split(": ")[0].split(" ", 1)[1]   # IP a > b
        assert "ICMP" in ours and ours.endswith(their.rsplit(",", 1)[1])    # same length
    assert f"{len(lines)} packets matched" in err and err.startswith("reading from file")


def test_tcp_and_udp_summaries_show_ports_and_lengths(capsys):
    status, out, _ = run(capsys, "-r", HTTP, "-c", "3", "tcp")
    assert status == 0
    first = out.splitlines()[0]
    assert " IP " in first and " > " in first and "Flags [" in first and ", length " in first
    status, out, _ = run(capsys, "-r", DNS_ICMP, "-c", "1", "udp port 53")
    assert ".53: " in out and "? " in out and out.rstrip().endswith(")")   # tcpdump's DNS query summary


def test_count_prints_the_number_like_tcpdump(capsys):
    status, out, _ = run(capsys, "-r", HTTP, "--count", "tcp port 80")
    theirs = subprocess.run([ref.tcpdump(), "-r", str(HTTP), "--count", "tcp port 80"], capture_output=True, text=True)
    assert status == 0 and out.strip() == theirs.stdout.strip()


def test_c_stops_after_count_matches(tmp_path, capsys):
    status, _, err = run(capsys, "-r", HTTP, "-c", "5", "-w", tmp_path / "o.pcap", "tcp")
    assert status == 0 and len(packets(tmp_path / "o.pcap")) == 5
    assert "5 packets written" in err


def test_expression_from_file_with_comments_ignores_trailing_words(tmp_path, capsys):
    f = tmp_path / "filter.txt"
    f.write_text("# web traffic\ntcp port 80   # only http\n")
    status, _, _ = run(capsys, "-r", HTTP, "-F", f, "-w", tmp_path / "a.pcap", "udp")
    run(capsys, "-r", HTTP, "-w", tmp_path / "b.pcap", "tcp port 80")
    assert status == 0 and packets(tmp_path / "a.pcap") == packets(tmp_path / "b.pcap")


def test_options_may_follow_the_expression_words(tmp_path, capsys):
    status, _, _ = run(capsys, "tcp", "port", "80", "-r", HTTP, "-w", tmp_path / "o.pcap")
    assert status == 0 and len(packets(tmp_path / "o.pcap")) > 0


def test_several_inputs_and_a_directory_go_into_one_output(tmp_path, capsys):
    d = tmp_path / "caps"
    d.mkdir()
    (d / "a.pcap").write_bytes(build_pcap([b"\x00" * 14 + b"a"], [(1, 0)]))
    (d / "b.pcap").write_bytes(build_pcap([b"\x00" * 14 + b"b", b"\x00" * 14 + b"c"], [(2, 0), (3, 0)]))
    (d / "notes.txt").write_text("not a capture")
    status, _, err = run(capsys, "-r", d, "-r", d / "a.pcap", "-w", tmp_path / "o.pcap")
    assert status == 0
    assert [p[-1:] for p in packets(tmp_path / "o.pcap")] == [b"a", b"b", b"c", b"a"]
    assert "4 packets written, 4 read from 3 files" in err


def test_nanosecond_input_gives_nanosecond_output_unless_micro(tmp_path, capsys):
    src = tmp_path / "ns.pcap"
    src.write_bytes(build_pcap([b"\x00" * 20], [(5, 123456789)], nsec=True))
    run(capsys, "-r", src, "-w", tmp_path / "a.pcap")
    run(capsys, "-r", src, "--micro", "-w", tmp_path / "b.pcap")
    with pfilter.open(tmp_path / "a.pcap") as a, pfilter.open(tmp_path / "b.pcap") as b:
        assert a.ts_resolution == "ns" and next(iter(a)).timestamps[0] == 5_123_456_789
        assert b.ts_resolution == "us" and next(iter(b)).timestamps[0] == 5_123_456_000


@pytest.mark.parametrize("merge", [[], ["--merge"]], ids=["concatenated", "merged"])
def test_several_inputs_keep_nanoseconds_whatever_their_order(tmp_path, capsys, merge):
    """A microsecond input before a nanosecond one does not cut the second's timestamps: the
    output is in nanoseconds when any input is (merged: mergecap -F nsecpcap's bytes)."""
    us, ns = tmp_path / "us.pcap", tmp_path / "ns.pcap"
    us.write_bytes(build_pcap([b"\x01" * 20, b"\x02" * 20], [(5, 1), (7, 3)]))
    ns.write_bytes(build_pcap([b"\x03" * 20, b"\x04" * 20], [(5, 1500), (6, 999_999_999)], nsec=True))
    for order in ((us, ns), (ns, us)):
        out = tmp_path / "out.pcap"
        status, _out, err = run(capsys, "--quiet", *merge, "-r", order[0], "-r", order[1], "-w", out, "")
        assert status == 0, err
        with pfilter.open(out) as cap:
            stamps = [int(t) for b in cap for t in b.timestamps]
            assert cap.ts_resolution == "ns"
        assert sorted(stamps) == [5_000_001_000, 5_000_001_500, 6_999_999_999, 7_000_003_000]
        if merge:
            theirs = tmp_path / "mergecap.pcap"
            subprocess.run([ref.mergecap(), "-F", "nsecpcap", "-w", str(theirs), *map(str, order)], check=True)
            assert out.read_bytes()[24:] == theirs.read_bytes()[24:]


def test_pcapng_output_by_name_or_format(tmp_path, capsys):
    run(capsys, "-r", HTTP, "-c", "3", "-w", tmp_path / "o.pcapng", "tcp")
    run(capsys, "-r", HTTP, "-c", "3", "--format", "pcapng", "-w", tmp_path / "o.cap", "tcp")
    for name in ("o.pcapng", "o.cap"):
        with pfilter.open(tmp_path / name) as cap:
            assert cap.format == "pcapng"
    assert packets(tmp_path / "o.pcapng") == packets(tmp_path / "o.cap")


def test_mixed_link_type_pcapng_is_filtered_per_interface(tmp_path, capsys):
    eth = bytes(12) + b"\x08\x00" + bytes([0x45]) + bytes(8) + b"\x11" + bytes(10)
    sll = bytes(14) + b"\x08\x00" + bytes([0x45]) + bytes(8) + b"\x11" + bytes(10)
    arp = bytes(12) + b"\x08\x06" + bytes(28)
    src = tmp_path / "mixed.pcapng"
    src.write_bytes(shb() + idb(linktype=1) + idb(linktype=113)
                    + epb("<", 0, 1, eth) + epb("<", 1, 2, sll) + epb("<", 0, 3, arp))
    status, _, _ = run(capsys, "-r", src, "-w", tmp_path / "o.pcapng", "udp")
    assert status == 0 and packets(tmp_path / "o.pcapng") == [eth, sll]
    status, _, err = run(capsys, "-r", src, "-w", tmp_path / "o.pcap", "udp")
    assert status == 1 and "pcapng" in err


@pytest.mark.parametrize("argv,message", [
    (["-r", HTTP, "tcp", "and", "not", "tcp"], "pfilter: expression rejects all packets"),
    (["-d", "tcp and not tcp"], "pfilter: expression rejects all packets"),
    (["-r", HTTP, "tcp", "port"], "pfilter: "),
    (["-r", "/nonexistent/x.pcap", "tcp"], "pfilter: /nonexistent/x.pcap: No such file or directory"),
    (["-r", ref.PCAPS / "libpcap__pcap-invalid-version-2.pcap"], "unsupported pcap savefile version 2.5"),
    (["tcp"], "pfilter: no input"),
    (["-r", HTTP, "-y", "NO_SUCH_LINK", "tcp"], "pfilter: "),
    (["-r", HTTP, "-c", "0", "tcp"], "pfilter: invalid packet count"),
    (["--no-such-option"], "pfilter: unrecognized arguments"),
])
def test_errors_are_one_line_with_nonzero_status(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status != 0
    last = err.strip().splitlines()[-1]
    assert last.startswith("pfilter: ") and message in last
    assert "Traceback" not in err


def test_rejects_all_is_allowed_unoptimized(tmp_path, capsys):
    status, _, _ = run(capsys, "-O", "-r", HTTP, "-w", tmp_path / "o.pcap", "tcp and not tcp")
    assert status == 0 and packets(tmp_path / "o.pcap") == []


def test_writing_over_the_input_is_refused(tmp_path, capsys):
    src = tmp_path / "in.pcap"
    src.write_bytes(HTTP.read_bytes())
    status, _, err = run(capsys, "-r", src, "-w", src, "tcp")
    assert status == 1 and "refusing to overwrite the input" in err
    assert src.read_bytes() == HTTP.read_bytes()


def test_help_has_examples(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "examples:" in out and "pfilter -r in.pcap -w out.pcap" in out


def test_classify_subcommand_dispatches_to_classify_cli(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "classify_main", lambda argv: seen.append(argv) or 7)
    assert cli.main(["classify", "-r", "x.pcap", "-R", "rules.txt"]) == 7
    assert seen == [["-r", "x.pcap", "-R", "rules.txt"]]


def test_python_dash_m_and_a_compiled_program_cache(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "pfilter", "-r", str(HTTP), "-w", str(tmp_path / "o.pcap"), "tcp port 80"]
    for _ in range(2):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr
        assert done.stderr.splitlines()[-1].startswith(f"{len(packets(tmp_path / 'o.pcap'))} packets written")
    assert list((tmp_path / "cache" / "pfilter" / "programs").rglob("*.txt"))
    done = subprocess.run(cmd[:3] + ["-X", "importtime"] + cmd[3:], capture_output=True, text=True, env=env)
    assert "pfilter.compiler.driver" not in done.stderr       # the second run skipped the compiler


def test_standard_input_is_read_once(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = tmp_path / "o.pcap"
    done = subprocess.run([sys.executable, "-m", "pfilter", "-r", "-", "-w", str(out), "tcp port 80"],
                          input=HTTP.read_bytes(), capture_output=True, env=env)
    assert done.returncode == 0, done.stderr
    theirs = subprocess.run([ref.tcpdump(), "-r", "-", "-w", "-", "tcp port 80"], input=HTTP.read_bytes(),
                            capture_output=True).stdout
    assert out.read_bytes() == theirs


def test_progress_bar_on_a_terminal_for_large_inputs(monkeypatch, tmp_path, capsys):
    optional_package("tqdm")
    monkeypatch.setattr(cli, "PROGRESS_MIN_BYTES", 1000)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    status, _, err = run(capsys, "-r", HTTP, "-w", tmp_path / "o.pcap", "tcp")
    assert status == 0 and "\rpfilter:" in err and "/25.2k [" in err
    monkeypatch.setattr(cli, "PROGRESS_MIN_BYTES", 10**12)
    status, _, err = run(capsys, "-r", HTTP, "-w", tmp_path / "o.pcap", "tcp")
    assert status == 0 and "\r" not in err


@pytest.mark.parametrize("with_tqdm", [True, False], ids=["tqdm", "built-in"])
def test_the_reading_line_is_written_above_the_bar_not_after_it(monkeypatch, tmp_path, capsys, with_tqdm):
    """A bar shows from the start; the 'reading from file' line then clears it, takes its line,
    and the bar is drawn again below (the line followed the bar on the bar's line)."""
    if with_tqdm:
        optional_package("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(cli, "PROGRESS_MIN_BYTES", 1000)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    for argv in (["-w", tmp_path / "o.pcap"], ["--count"]):
        status, _, err = run(capsys, "-r", HTTP, *argv, "tcp")
        assert status == 0
        before, line, after = err.partition(f"reading from file {HTTP}, link-type")
        assert line and (before == "" or before.rstrip(" ").endswith("\r")), repr(before)   # (cleared)
        assert after.split("\n", 1)[1].startswith("\r") or "pfilter:" not in after.split("\n", 1)[1]


def test_snaplen_option_is_ignored_with_a_capture_like_tcpdump(capsys):
    status, out, _ = run(capsys, "-r", HTTP, "-s", "100", "-d", "tcp")
    theirs = subprocess.run([ref.tcpdump(), "-r", str(HTTP), "-s", "100", "-d", "tcp"], capture_output=True, text=True)
    assert status == 0 and out == theirs.stdout
    status, out, _ = run(capsys, "-s", "100", "-d", "tcp")
    assert status == 0 and out == ref.tcpdump_dump("tcp", "EN10MB", "d", optimize=True).replace("#262144", "#100")


def test_reading_line_names_the_link_type_as_tcpdump_does(capsys, tmp_path):
    """One capture per corpus link type: pfilter's 'reading from file' line is tcpdump's."""
    seen = set()
    checked = 0
    for row in ref.corpus_pcaps():
        if row["dlt"] in seen or row["malformed_flags"]:
            continue
        seen.add(row["dlt"])
        done = subprocess.run([ref.tcpdump(), "-r", str(row["file"]), "-c", "1", "-w", os.devnull],
                              capture_output=True, text=True)
        theirs = [line for line in done.stderr.splitlines() if line.startswith("reading from file")]
        if not theirs:
            continue
        cli.main(["-r", str(row["file"]), "-c", "1", "-w", str(tmp_path / "o.pcap")])
        ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("reading from file")]
        assert ours == theirs, row["copied_as"]
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("opts", [["-c", "99999999999999999999999"], ["-C", "18446744073709552"],
                                  ["-C", "18446744073709552", "-W", "3"]])
def test_limits_beyond_any_file_are_no_limit(tmp_path, capsys, opts):
    """-c or -C larger than any file (and than a 64-bit number) mean no limit, as tcpdump's
    (they gave "internal error: OverflowError" on the fast path): the output is the whole
    filtered input, under tcpdump's names."""
    out = tmp_path / "out"
    out.mkdir()
    status, _out, err = run(capsys, "--quiet", "-r", HTTP, "-w", out / "o.pcap", *opts, "tcp")
    assert status == 0 and err == ""
    want = tmp_path / "want.pcap"
    assert run(capsys, "--quiet", "-r", HTTP, "-w", want, "tcp")[0] == 0
    name = "o.pcap0" if "-W" in opts else "o.pcap"
    assert [p.name for p in out.iterdir()] == [name]
    assert (out / name).read_bytes() == want.read_bytes()


def test_a_snaplen_beyond_the_format_is_one_line(tmp_path, capsys):
    status, _out, err = run(capsys, "-r", HTTP, "-w", tmp_path / "o.pcap", "--snaplen", "4294967296", "tcp")
    assert status == 1 and err == ("pfilter: invalid length to cut packets to: 4294967296 (--snaplen, truncate=: "
                                   "a positive number of bytes)\n")
    assert not (tmp_path / "o.pcap").exists()


def test_an_optional_attached_value_shows_attached(capsys):
    """--dedup takes its window attached (--dedup=5: a bare --dedup leaves the next word to the
    expression): usage, --help and the manual page show --dedup[=WINDOW], not --dedup WINDOW."""
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "[--dedup[=WINDOW]]" in out and "--dedup WINDOW" not in out and "--dedup [=" not in out
    assert "\\fB\\-\\-dedup\\fR\\fI[=WINDOW]\\fR" in (ROOT / "man" / "pfilter.1").read_text()


@pytest.mark.parametrize("argv", [["-i", "eth0"], ["-i", "eth0", "-r", "SAMPLE"], ["-D"], ["--list-interfaces"],
                                  ["-L"], ["-I", "-r", "SAMPLE"], ["--interface=eth0"]])
def test_live_capture_options_say_pfilter_reads_files(capsys, argv):
    """tcpdump's live-capture options (-i, -D, -L, -I) got the 17-line usage and 'unrecognized
    arguments': one line now, saying to capture with tcpdump and read the file."""
    argv = [str(ROOT / "data" / "sample.pcap") if a == "SAMPLE" else a for a in argv]
    status, out, err = run(capsys, *argv, "tcp")
    assert status == 1 and out == "" and err.count("\n") == 1
    assert "pfilter reads capture files, it does not capture" in err and "tcpdump -i" in err


@pytest.mark.parametrize("argv, message", [
    (["-s", "300000"], "invalid snaplen 300000 (must be >= 0 and <= 262144)"),
    (["-s", "-1"], "invalid snaplen -1 (must be >= 0 and <= 262144)"),
    (["-tttttt"], "only -t, -tt, -ttt, -tttt and -ttttt are supported"),
])
def test_values_tcpdump_refuses_are_refused_in_its_words(capsys, argv, message):
    theirs = subprocess.run([ref.tcpdump(), *argv, "-r", str(HTTP), "-c", "1"], capture_output=True, text=True)
    assert theirs.returncode != 0 and theirs.stderr.strip() == f"tcpdump: {message}"
    status, out, err = run(capsys, *argv, "-r", HTTP, "-c", "1")
    assert status == 1 and out == "" and err == f"pfilter: {message}\n"


def test_standard_input_on_a_terminal_is_refused(tmp_path):
    """-r - with a terminal on standard input waited for two Ctrl-D: refused at once."""
    import pty
    master, slave = pty.openpty()
    try:
        r = subprocess.run([sys.executable, "-m", "pfilter", "-r", "-", "tcp"], stdin=slave, capture_output=True,
                           text=True, timeout=60)
    finally:
        os.close(master)
        os.close(slave)
    assert r.returncode == 1 and r.stderr == (
        "pfilter: -r -: standard input is a terminal, not a capture: redirect a file or a pipe into it\n")


def test_minus_l_sends_printed_lines_on_batch_by_batch(tmp_path, monkeypatch, capsys):
    """tcpdump -l: the lines of each batch are flushed to standard output as it is printed (a
    pipe to grep sees them during the run, not at its end); the lines are those without -l."""
    import io
    with pfilter.open(ROOT / "data" / "sample.pcap") as cap:
        batches = list(cap)
    big = tmp_path / "big.pcap"
    pfilter.write(big, batches * 4)         # about 6 MB: more than one batch of the reader
    seen = {}
    for flags in ([], ["-l"]):
        class Counting(io.StringIO):
            flushes = 0

            def flush(self):
                Counting.flushes += 1
                super().flush()
        out = Counting()
        monkeypatch.setattr(sys, "stdout", out)
        assert cli.main(["--quiet", "-r", str(big), *flags, "udp"]) == 0
        seen[tuple(flags)] = (out.getvalue(), Counting.flushes)
    assert seen[("-l",)][0] == seen[()][0] and seen[()][0].count("\n") > 1000
    assert seen[("-l",)][1] >= seen[()][1] + 2


def test_minus_l_and_minus_U_are_taken_as_tcpdump_takes_them(tmp_path):
    src = ROOT / "data" / "sample.pcap"
    env = dict(os.environ, TZ="UTC")
    ours = subprocess.run([sys.executable, "-m", "pfilter", "-r", str(src), "-l", "-c", "20", "tcp"],
                          capture_output=True, text=True, env=env)
    theirs = subprocess.run([ref.tcpdump(), "-n", "-r", str(src), "-l", "-c", "20", "tcp"],
                            capture_output=True, text=True, env=env)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    ours = subprocess.run([sys.executable, "-m", "pfilter", "-r", str(src), "-U", "-w", "-", "tcp"],
                          capture_output=True, env=env)
    theirs = subprocess.run([ref.tcpdump(), "-r", str(src), "-U", "-w", "-", "tcp"], capture_output=True, env=env)
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout
