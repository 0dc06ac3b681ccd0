"""Tests of scripts/gen_capture.py, the generator of data/ and of the benchmark captures: it is
deterministic, reproduces data/sample.pcap, writes what dpkt, libpcap and tcpdump read back, and
gives the traffic mix it promises; and the benchmark's C baseline (bench/baseline/bpf_loop.c)
counts on it what tcpdump counts. Imports dpkt, numpy and the script (by path), not pfilter.
"""
import ipaddress
import os
import re
import shutil
import struct
import subprocess
from collections import Counter
from pathlib import Path

import dpkt
import numpy as np
import pytest

import reference

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.pcap"
IN_CI = os.environ.get("CI", "").lower() == "true"


gen = reference.load_by_path("pfilter_gen_capture", ROOT / "scripts" / "gen_capture.py")


def _tcpdump():
    path = shutil.which("tcpdump") or ("/usr/bin/tcpdump" if os.path.exists("/usr/bin/tcpdump") else None)
    if path is None:
        if IN_CI:
            pytest.fail("tcpdump is missing (CI=true: the test command must install it)")
        pytest.skip("tcpdump is missing")
    return path


def _tcpdump_count(path, expr=""):
    done = subprocess.run([_tcpdump(), "--count", "-r", str(path)] + ([expr] if expr else []),
                          capture_output=True, text=True, check=True)
    return int(re.search(r"(\d+) packets?", done.stdout).group(1))


def _records(path):
    """[(ts, bytes)] as dpkt reads a pcap or pcapng file."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        fh.seek(0)
        reader = dpkt.pcapng.Reader(fh) if head == b"\x0a\x0d\x0d\x0a" else dpkt.pcap.Reader(fh)
        return list(reader)


@pytest.fixture(scope="module")
def sample_packets():
    return _records(SAMPLE)


def test_documented_command_reproduces_sample_pcap(tmp_path):
    readme = (ROOT / "data" / "README.md").read_text()
    command = re.search(r"`python3 (scripts/gen_capture\.py [^`]*--out data/sample\.pcap)`", readme).group(1)
    args = command.split()[1:]
    out = tmp_path / "sample.pcap"
    args[args.index("data/sample.pcap")] = str(out)
    gen.main(args + ["--quiet"])
    assert out.read_bytes() == SAMPLE.read_bytes()


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a, b, c = tmp_path / "a.pcap", tmp_path / "b.pcap", tmp_path / "c.pcap"
    gen.generate(a, 500, seed=7)
    gen.generate(b, 500, seed=7)
    gen.generate(c, 500, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_record_stream_spans_several_chunks_with_non_decreasing_timestamps(tmp_path, monkeypatch):
    monkeypatch.setattr(gen, "CHUNK", 64)
    out = tmp_path / "chunks.pcap"
    stats = gen.generate(out, 1000, seed=3, templates=50)
    records = _records(out)
    assert len(records) == stats["packets"] == 1000
    assert out.stat().st_size == stats["bytes"]
    times = [ts for ts, _ in records]
    assert all(later >= earlier for earlier, later in zip(times, times[1:]))
    assert times[-1] - times[0] > 0.01


def test_sample_holds_the_promised_traffic_mix(sample_packets):
    kinds, ports = Counter(), Counter()
    for _, buf in sample_packets:
        eth = dpkt.ethernet.Ethernet(buf)
        kinds["vlan"] += buf[12:14] == b"\x81\x00"
        net = eth.data
        kinds[type(net).__name__] += 1
        if isinstance(net, (dpkt.ip.IP, dpkt.ip6.IP6)):
            kinds[type(net.data).__name__] += 1
            if isinstance(net.data, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                ports.update({net.data.sport, net.data.dport} & {53, 80, 443})
    n = len(sample_packets)
    assert 0.60 < kinds["IP"] / n < 0.80
    assert 0.15 < kinds["IP6"] / n < 0.30
    assert 0.02 < kinds["ARP"] / n < 0.07
    assert 0.03 < kinds["vlan"] / n < 0.08
    for proto in ("TCP", "UDP", "ICMP", "ICMP6"):
        assert kinds[proto] > 0.01 * n, proto
    for port in (53, 80, 443):
        assert ports[port] > 0.05 * n, port


def test_sample_has_small_and_full_size_frames(sample_packets):
    sizes = np.array([len(buf) for _, buf in sample_packets])
    assert sizes.min() <= 60
    assert sizes.max() == 1518                      # a full-size frame with an 802.1Q tag
    assert 0.1 < np.mean(sizes >= 1514) < 0.4
    assert np.mean(sizes <= 128) > 0.3


def test_every_ipv4_header_checksum_is_valid_after_identification_patching(sample_packets):
    checked = 0
    for _, buf in sample_packets:
        start = 18 if buf[12:14] == b"\x81\x00" else 14
        if buf[start - 2:start] != b"\x08\x00":
            continue
        header = buf[start:start + (buf[start] & 0x0F) * 4]
        assert dpkt.in_cksum(header) == 0, f"bad IPv4 header checksum in {header.hex()}"
        checked += 1
    assert checked > 1000


def test_identifications_vary_between_copies_of_one_template(tmp_path):
    out = tmp_path / "few.pcap"
    gen.generate(out, 2000, seed=5, templates=20)
    ids_by_frame = {}
    for _, buf in _records(out):
        start = 18 if buf[12:14] == b"\x81\x00" else 14
        if buf[start - 2:start] != b"\x08\x00":
            continue
        masked = bytearray(buf)
        masked[start + 4:start + 6] = masked[start + 10:start + 12] = b"\x00\x00"
        ids_by_frame.setdefault(bytes(masked), set()).add(buf[start + 4:start + 6])
    assert ids_by_frame
    assert max(len(ids) for ids in ids_by_frame.values()) > 50


def test_hosts_come_from_the_documented_ranges(sample_packets):
    ranges = [ipaddress.ip_network(n) for n in ("10.0.0.0/16", "192.0.2.0/24", "198.51.100.0/24",
                                                "203.0.113.0/24", "224.0.0.0/4", "2001:db8::/32",
                                                "fe80::/10", "ff00::/8")]
    seen = Counter()
    for _, buf in sample_packets:
        net = dpkt.ethernet.Ethernet(buf).data
        if isinstance(net, (dpkt.ip.IP, dpkt.ip6.IP6)):
            for raw in (net.src, net.dst):
                addr = ipaddress.ip_address(raw)
                assert any(addr in r for r in ranges if r.version == addr.version), addr
                seen[addr] += 1
    assert len(seen) > 150


def test_pcapng_and_nanosecond_outputs_carry_the_same_packets(tmp_path):
    base = tmp_path / "base.pcap"
    gen.generate(base, 300, seed=2)
    expected = _records(base)
    for options in ({"nanosecond": True}, {"pcapng": True}, {"pcapng": True, "nanosecond": True}):
        out = tmp_path / ("x.pcapng" if options.get("pcapng") else "x.pcap")
        gen.generate(out, 300, seed=2, **options)
        got = _records(out)
        assert [buf for _, buf in got] == [buf for _, buf in expected], options
        assert all(abs(float(t1) - float(t2)) < 2e-6 for (t1, _), (t2, _) in zip(got, expected)), options


def test_nanosecond_pcap_has_the_nanosecond_magic_and_sub_microsecond_times(tmp_path):
    out = tmp_path / "ns.pcap"
    gen.generate(out, 50, seed=2, nanosecond=True)
    raw = out.read_bytes()
    assert struct.unpack_from("<I", raw)[0] == 0xA1B23C4D
    fractions = [struct.unpack_from("<I", raw, pos + 4)[0] for pos in _record_positions(raw)]
    assert any(f % 1000 for f in fractions)


def _record_positions(raw):
    pos = 24
    while pos + 16 <= len(raw):
        yield pos
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]


def test_snaplen_truncates_captured_bytes_but_keeps_wire_lengths(tmp_path):
    full, cut = tmp_path / "full.pcap", tmp_path / "cut.pcap"
    gen.generate(full, 300, seed=4)
    gen.generate(cut, 300, seed=4, snaplen=96)
    raw_full, raw_cut = full.read_bytes(), cut.read_bytes()
    assert struct.unpack_from("<I", raw_cut, 16)[0] == 96
    for p, q in zip(_record_positions(raw_full), _record_positions(raw_cut)):
        incl_full, orig_full = struct.unpack_from("<II", raw_full, p + 8)
        incl_cut, orig_cut = struct.unpack_from("<II", raw_cut, q + 8)
        assert orig_cut == orig_full == incl_full
        assert incl_cut == min(96, orig_full)


@pytest.mark.parametrize("options", [{}, {"nanosecond": True}, {"pcapng": True}], ids=["pcap", "pcap-ns", "pcapng"])
def test_tcpdump_reads_every_generated_packet(tmp_path, options):
    out = tmp_path / "t.cap"
    gen.generate(out, 400, seed=6, **options)
    assert _tcpdump_count(out) == 400


def test_tcpdump_filters_find_each_protocol_in_the_sample():
    counts = {expr: _tcpdump_count(SAMPLE, expr) for expr in
              ("ip", "ip6", "arp", "vlan", "tcp port 80", "tcp port 443", "udp port 53", "icmp", "icmp6",
               "ip[6:2] & 0x1fff != 0", "ip[0] & 0xf > 5", "stp")}
    assert all(n > 0 for n in counts.values()), counts
    assert counts["ip"] + counts["ip6"] + counts["arp"] < 3000


def test_the_benchmark_twenty_host_filter_matches_some_but_not_most_packets():
    conftest = reference.load_by_path("pfilter_bench_conftest", ROOT / "bench" / "conftest.py")
    matched = _tcpdump_count(SAMPLE, conftest.TWENTY_HOSTS)
    assert 0.02 * 3000 < matched < 0.5 * 3000
    for expr in conftest.STANDARD_EXPRESSIONS:
        assert 0 < _tcpdump_count(SAMPLE, expr) < 3000, expr


def test_bench_c_baseline_matches_what_tcpdump_counts_on_the_sample(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        if IN_CI:
            pytest.fail("no C compiler (CI=true: the test command must install gcc)")
        pytest.skip("no C compiler")
    exe = tmp_path / "bpf_loop"
    subprocess.run([cc, "-O2", "-o", str(exe), str(ROOT / "bench" / "baseline" / "bpf_loop.c"), "-lpcap"],
                   check=True, capture_output=True)
    for expr in ("ip and tcp port 80", "vlan and ip", "udp port 53 or icmp"):
        program = subprocess.run([_tcpdump(), "-ddd", "-r", str(SAMPLE), expr], capture_output=True, text=True,
                                 check=True).stdout
        report = subprocess.run([str(exe), "-n", "1", str(SAMPLE)], input=program, capture_output=True, text=True,
                                check=True).stdout
        counts = dict(re.findall(r'"(packets|matched)": (\d+)', report))
        assert (int(counts["packets"]), int(counts["matched"])) == (3000, _tcpdump_count(SAMPLE, expr)), expr
