"""`pfilter --ebpf HOOK -o OUT.o [--on-match V] [--on-miss V] EXPR`: what the command refuses
(one line, status 1, no object written) and how it reads verdicts. The link types a hook sees
(Ethernet, raw IP) are checked against the kernel in tests/test_ebpf_api.py.
"""
import subprocess
import sys

import pytest

import pfilter


def _cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "pfilter", *args], capture_output=True, text=True, cwd=tmp_path)


def _refused(r, *words):
    assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pfilter: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    assert "on_match" not in lines[0] and "on_miss" not in lines[0] and "int()" not in lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- link types

@pytest.mark.parametrize("hook", ["xdp", "tc", "socket"])
@pytest.mark.parametrize("linktype", ["LINUX_SLL", "LINUX_SLL2", "IEEE802_11_RADIO", "NULL", "PPP", "113"])
def test_a_link_type_the_hook_does_not_see_is_refused(hook, linktype, tmp_path):
    r = _cli(tmp_path, "--ebpf", hook, "-y", linktype, "-o", "x.o", "tcp")
    line = _refused(r, f"--ebpf {hook}", "Ethernet", "-y EN10MB")
    assert ("XDP program" if hook == "xdp" else "tc program" if hook == "tc" else "socket filter") in line
    assert not (tmp_path / "x.o").exists()


@pytest.mark.parametrize("hook", ["xdp", "tc", "socket"])
@pytest.mark.parametrize("linktype", ["EN10MB", "RAW", "101", "IPV4", "IPV6"])
def test_ethernet_and_raw_ip_link_types_are_written(hook, linktype, tmp_path):
    r = _cli(tmp_path, "--ebpf", hook, "-y", linktype, "-o", "x.o", "udp port 53")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    want = pfilter.compile("udp port 53", linktype=linktype).to_ebpf(hook).object()
    assert (tmp_path / "x.o").read_bytes() == want


def test_a_capture_is_not_read_for_its_link_type(tmp_path):
    """-r FILE with --ebpf is refused (it was silently ignored): the hook, not a capture, says
    what the program sees; -y chooses among the link types it can be."""
    (tmp_path / "in.pcap").write_bytes(b"")
    (tmp_path / "list.txt").write_text("in.pcap\n")
    for read in (["-r", "in.pcap"], ["-r", "missing.pcap"], ["-V", "list.txt"]):
        _refused(_cli(tmp_path, "--ebpf", "xdp", *read, "-o", "x.o", "tcp"), read[0] + " FILE", "-y")
    assert not (tmp_path / "x.o").exists()


# ----------------------------------------------------------------------------- verdicts

@pytest.mark.parametrize("hook,args", [
    ("xdp", ["--on-match", "redirect"]), ("xdp", ["--on-match", "4"]), ("xdp", ["--on-miss", "REDIRECT"]),
    ("tc", ["--on-match", "redirect"]), ("tc", ["--on-match", "7"]), ("tc", ["--on-miss", "redirect"]),
])
def test_redirect_without_a_target_is_refused(hook, args, tmp_path):
    for out in (["-o", "x.o"], ["--ebpf-dump"]):
        line = _refused(_cli(tmp_path, "--ebpf", hook, *args, *out, "tcp"), f"{args[0]} redirect", "bpf_redirect()")
        assert "verdicts are" in line and "redirect," not in line.split("verdicts are")[1]
    assert not (tmp_path / "x.o").exists()


@pytest.mark.parametrize("hook,given,want", [
    ("xdp", "0x2", "pass"), ("xdp", "0X3", "tx"), ("xdp", "003", "tx"), ("xdp", " 2 ", "pass"), ("xdp", "PASS", "pass"),
    ("xdp", "Tx", "tx"), ("tc", "-1", "unspec"), ("tc", "0x0", "ok"), ("tc", "00", "ok"), ("tc", "Stolen", "stolen"),
    ("socket", "0x100", 256), ("socket", "0100", 100), ("socket", "96", 96),
])
def test_verdicts_by_decimal_or_hex_number_or_name(hook, given, want, tmp_path):
    r = _cli(tmp_path, "--ebpf", hook, "--ebpf-dump", "--on-match", given, "tcp")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == pfilter.compile("tcp").to_ebpf(hook, on_match=want).dump().splitlines()
    assert f"match -> {want}," in r.stdout.splitlines()[0]


@pytest.mark.parametrize("args,words", [
    (["--ebpf", "xdp", "--on-match", "010"], ["--on-match: 10 is not an XDP verdict", "pass (2)"]),
    (["--ebpf", "xdp", "--on-match", "0x10"], ["--on-match: 16 is not an XDP verdict"]),
    (["--ebpf", "xdp", "--on-miss", "accept"], ["--on-miss: 'accept' is not an XDP verdict", "aborted, drop, pass"]),
    (["--ebpf", "tc", "--on-miss", "drop"], ["--on-miss: 'drop' is not a tc verdict"]),
    (["--ebpf", "socket", "--on-match", "pass"], ["--on-match for a socket filter is the number of bytes to keep"]),
    (["--ebpf", "socket", "--on-match", "0"], ["--on-match for a socket filter is the number of bytes to keep"]),
    (["--ebpf", "socket", "--on-miss", "pass"], ["--on-miss: 'pass' is not a socket filter verdict"]),
    (["--ebpf", "tc", "--on-match", "shot"], ["--on-match and --on-miss are both 'shot'"]),
    (["--ebpf", "xdp", "--on-match", "0x"], ["--on-match: '0x' is not an XDP verdict"]),
])
def test_verdict_errors_name_the_options(args, words, tmp_path):
    _refused(_cli(tmp_path, *args, "-o", "x.o", "tcp"), *words)
    assert not (tmp_path / "x.o").exists()


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize("args,shown", [
    (["-w", "out.pcap"], "-w FILE"), (["-d"], "-d"), (["-dd"], "-dd"), (["--count"], "--count"),
    (["-c", "3"], "-c COUNT"), (["-c", "3", "--count"], "-c COUNT, --count"), (["-tttt"], "-tttt"),
    (["-X"], "-X"), (["--nano"], "--nano"), (["-C", "1"], "-C"), (["--after", "0"], "--after"),
    (["--snaplen", "60"], "--snaplen"),
])
def test_capture_options_are_refused_with_ebpf(args, shown, tmp_path):
    for ebpf in (["--ebpf", "tc", "-o", "x.o"], ["--ebpf", "xdp", "--ebpf-dump"], ["--ebpf-dump"]):
        line = _refused(_cli(tmp_path, *ebpf, *args, "tcp"), f": {shown} do")
        assert line.startswith("pfilter: --ebpf") and ("--ebpf-dump prints" in line) == args[0].startswith("-d")
    assert not (tmp_path / "x.o").exists() and not (tmp_path / "out.pcap").exists()


@pytest.mark.parametrize("args,shown", [
    (["--on-match", "pass"], "--on-match is the verdict"), (["--on-miss", "drop"], "--on-miss is the verdict"),
    (["--on-match", "pass", "--on-miss", "drop"], "--on-match and --on-miss are the verdicts"),
])
def test_verdicts_without_ebpf_are_refused_as_o_is(args, shown, tmp_path):
    (tmp_path / "in.pcap").write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    for more in ([], ["-r", "in.pcap"], ["-d"]):
        _refused(_cli(tmp_path, *args, *more, "tcp"), shown, "--ebpf xdp, tc or socket")
    _refused(_cli(tmp_path, "-o", "x.o", "tcp"), "-o FILE", "--ebpf xdp, tc or socket")


def test_ebpf_dump_alone_is_the_xdp_listing_with_the_options(tmp_path):
    r = _cli(tmp_path, "--ebpf-dump", "--on-match", "tx", "--on-miss", "0", "-y", "RAW", "ip")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == pfilter.compile("ip", linktype="RAW").to_ebpf(
        "xdp", on_match="tx", on_miss="aborted").dump().splitlines()
