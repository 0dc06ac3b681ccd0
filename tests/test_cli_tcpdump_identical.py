"""`pfilter -r IN -w OUT EXPR` writes the same file as `tcpdump -r IN -w OUT EXPR`, byte for byte,
for every corpus capture tcpdump reads and each benchmark expression (and the empty one, which
copies every packet); where tcpdump refuses (the
file or the expression for that link type) pfilter refuses too, and where tcpdump stops on a
damaged record both keep the packets before it and exit non-zero.

tcpdump writes microsecond files unless told --nano; pfilter keeps the input's resolution, so
nanosecond inputs are compared with `tcpdump --nano`.
"""
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pfilter
import reference as ref
from pfilter import cli

TWENTY_HOSTS = " or ".join(f"host {h}" for h in (
    "10.0.0.7", "10.0.0.42", "10.0.1.13", "10.0.1.99", "192.0.2.17",
    "192.0.2.38", "198.51.100.5", "198.51.100.33", "203.0.113.9", "203.0.113.20",
    "172.16.0.1", "172.16.5.4", "172.31.255.1", "100.64.0.1", "10.9.9.9",
    "192.168.1.1", "192.168.1.254", "8.8.8.8", "1.1.1.1", "9.9.9.9"))
EXPRESSIONS = ["ip and tcp port 80", "tcp", "udp port 53 or icmp", "vlan and ip", TWENTY_HOSTS, ""]
IDS = ["ip-tcp-80", "tcp", "dns-or-icmp", "vlan-ip", "20-host-or", "every-packet"]

# pcapng files with interfaces of several link types or snapshot lengths: tcpdump (libpcap)
# stops at the second interface, pfilter reads on (see test_capture_equality.DIVERGENT).
DIVERGENT = {"pcapplusplus__Pcap++Test__PcapExamples__pcapng-example.pcapng",
             "pcapplusplus__Pcap++Test__PcapExamples__too_many_interfaces.pcapng"}


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.pcap"


@pytest.fixture(autouse=True)
def private_program_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _resolution(path):
    try:
        with pfilter.open(path) as cap:
            return cap.ts_resolution
    except pfilter.FilterError:
        return "us"


def run_tcpdump(path, out, expr):
    cmd = [ref.tcpdump(), "-r", str(path), "-w", str(out)]
    if _resolution(path) == "ns":
        cmd.append("--nano")
    done = subprocess.run(cmd + [expr], capture_output=True, text=True)
    return done.returncode, done.stderr


def run_pfilter(path, out, expr, capsys):
    status = cli.main(["--quiet", "-r", str(path), "-w", str(out), expr])
    err = capsys.readouterr().err
    return status, err


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=IDS)
def test_pfilter_writes_what_tcpdump_writes_for_every_corpus_capture(tmp_path, capsys, expr):
    rows = ref.corpus_pcaps()
    ours = tmp_path / "pfilter.pcap"
    theirs_of = [tmp_path / f"tcpdump-{i}.pcap" for i in range(len(rows))]
    with ThreadPoolExecutor(max_workers=4) as pool:     # tcpdump runs in parallel, pfilter after
        tcpdump_results = list(pool.map(lambda a: run_tcpdump(*a, expr), zip((r["file"] for r in rows), theirs_of)))
    compared = refused = stopped = 0
    failures = []
    for row, theirs, (t_status, t_err) in zip(rows, theirs_of, tcpdump_results):
        name = row["copied_as"]
        ours.unlink(missing_ok=True)
        if name in DIVERGENT:
            assert t_status != 0
            continue
        p_status, p_err = run_pfilter(row["file"], ours, expr, capsys)
        t_last = t_err.strip().splitlines()[-1] if t_err.strip() else ""
        if t_status != 0 and not theirs.exists():
            if p_status == 0 or ours.exists():
                failures.append(f"{name}: tcpdump refused ({t_last}), pfilter did not")
            refused += 1
            continue
        if (p_status == 0) != (t_status == 0):
            failures.append(f"{name}: tcpdump status {t_status} ({t_last}), pfilter {p_status} ({p_err.strip()})")
            continue
        stopped += t_status != 0
        if ours.read_bytes() != theirs.read_bytes():
            failures.append(f"{name}: output differs")
            continue
        compared += 1
    assert not failures, f"{len(failures)} captures differ:\n" + "\n".join(failures)
    assert compared >= 550, (compared, refused, stopped)


def test_a_damaged_capture_keeps_the_good_packets_and_fails_like_tcpdump(tmp_path, capsys):
    from test_capture_formats import build_pcap
    src = tmp_path / "in.pcap"
    src.write_bytes(build_pcap() + b"\x01\x02\x03")
    t_status, _ = run_tcpdump(src, tmp_path / "t.pcap", "")
    p_status, p_err = run_pfilter(src, tmp_path / "p.pcap", "", capsys)
    assert t_status == 1 and p_status == 1
    assert p_err.startswith("pfilter: ") and "truncated dump file" in p_err and p_err.count("\n") == 1
    assert (tmp_path / "t.pcap").read_bytes() == (tmp_path / "p.pcap").read_bytes()


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_a_file_cut_inside_its_header_fails_in_tcpdump_s_words(tmp_path, capsys, fmt):
    """Each length a file's header can be cut to: pfilter's line says what tcpdump's says (libpcap
    counts the bytes it got after the 4-byte magic number), after pfilter's 'NAME: offset 0: '."""
    whole = tmp_path / f"whole.{fmt}"
    pfilter.filter_file(str(SAMPLE), str(whole), "", format=fmt)
    data = whole.read_bytes()
    header = 24 if fmt == "pcap" else 28 + 4      # (pcapng: the section header's fixed part)
    for n in range(header):
        cut = tmp_path / f"cut{n}.{fmt}"
        cut.write_bytes(data[:n])
        t_status, t_err = run_tcpdump(cut, tmp_path / "t.pcap", "")
        p_status, p_err = run_pfilter(cut, tmp_path / "p.pcap", "", capsys)
        said = t_err.strip().splitlines()[-1].removeprefix("tcpdump: ")
        assert t_status == p_status == 1, (n, t_err, p_err)
        assert p_err.strip() == f"pfilter: {cut}: offset 0: {said}", n


def _pcapng(interfaces, packets):
    from test_capture_formats import epb, idb, shb
    return shb() + b"".join(idb(linktype=lt) for lt in interfaces) + b"".join(
        epb("<", iface, 1_700_000_000_000_000 + k, data) for k, (iface, data) in enumerate(packets))


def test_an_interface_on_which_the_expression_matches_nothing_matches_nothing(tmp_path, capsys):
    """`arp` on a pcapng file of an Ethernet and a raw IP interface (a file libpcap refuses):
    the raw IP interface's packets match nothing and the Ethernet one's ARP packets are written,
    as tcpdump writes them from the Ethernet packets alone; with a raw IP first interface (the
    file's link type, as libpcap sees it), tcpdump's refusal on raw IP packets."""
    import struct
    frames = [p[0] for p in ref.read_capture(str(SAMPLE))[2][:200]]
    arp = bytes.fromhex("ffffffffffff02000000000108060001080006040001020000000001c0000201000000000000c0000202")
    ip = [f[14:] for f in frames if f[12:14] == b"\x08\x00"][:50]
    eth = [(0, f) for f in frames[:100]] + [(0, arp)] * 3 + [(0, f) for f in frames[100:]]
    mixed = [(0, f) for f in frames[:100]] + [(1, p) for p in ip] + [(0, arp)] * 3 + [(0, f) for f in frames[100:]]
    (tmp_path / "eth.pcapng").write_bytes(_pcapng([1], eth))
    (tmp_path / "mixed.pcapng").write_bytes(_pcapng([1, 101], mixed))
    (tmp_path / "raw-first.pcapng").write_bytes(_pcapng([101, 1], [(1 - i, p) for i, p in mixed]))
    assert run_tcpdump(tmp_path / "eth.pcapng", tmp_path / "ref.pcap", "arp")[0] == 0
    want = [p[0] for p in ref.read_capture(str(tmp_path / "ref.pcap"))[2]]
    assert len(want) > 3 and want.count(arp) == 3
    for optimize in ([], ["-O"]):
        assert cli.main(["--quiet", *optimize, "-r", str(tmp_path / "mixed.pcapng"), "-w",
                         str(tmp_path / "out.pcapng"), "arp"]) == 0
        assert [p[0] for p in ref.read_capture(str(tmp_path / "out.pcapng"))[2]] == want
    capsys.readouterr()
    raw = tmp_path / "raw.pcap"
    raw.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101) + b"".join(
        struct.pack("<IIII", 1, k, len(p), len(p)) + p for k, p in enumerate(ip)))
    status, err = run_tcpdump(raw, tmp_path / "r.pcap", "arp")
    assert status != 0 and "expression rejects all packets" in err
    assert cli.main(["--quiet", "-r", str(tmp_path / "raw-first.pcapng"), "--count", "arp"]) == 1
    assert capsys.readouterr().err.strip() == "pfilter: expression rejects all packets"
