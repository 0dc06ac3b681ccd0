"""The CLI compiles as tcpdump does: netmask 0 for `ip broadcast`, live-handle semantics for
`-y DLT -d` without a file, and for DLT_NULL captures written on a host of the other byte order
the address family in that byte order."""
import struct
import subprocess
import sys

import pytest

import reference as ref

ROOT = ref.ROOT


def pfilter_cli(*args):
    return subprocess.run([sys.executable, "-m", "pfilter", *args], capture_output=True, text=True,
                          env={"PFILTER_NO_CACHE": "1", "PATH": "/usr/bin:/bin"}, cwd=ROOT)


def test_ip_broadcast_works_on_a_file_as_in_tcpdump():
    sample = str(ROOT / "data" / "sample.pcap")
    ours = pfilter_cli("-r", sample, "--count", "ip broadcast or arp")
    theirs = subprocess.run([ref.tcpdump(), "-r", sample, "--count", "ip broadcast or arp"], capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    count = int(theirs.stdout.split()[0])
    assert count > 0 and f"{count} packets" in ours.stdout + ours.stderr


@pytest.mark.parametrize("dlt,expr", [("NULL", "ip6"), ("LOOP", "ip6 and udp"), ("EN10MB", "ip broadcast")])
def test_dump_without_a_file_matches_tcpdump_y_d(dlt, expr):
    ours = pfilter_cli("-y", dlt, "-d", expr)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == ref.tcpdump_dump(expr, dlt, "d", optimize=True)


def _null_capture(path, big_endian):
    """A DLT_NULL capture as a host of the given byte order writes it: the AF word in that order."""
    e = ">" if big_endian else "<"
    v4 = bytes.fromhex("450000140001000040060000c0000201c0000202")
    v6 = bytes.fromhex("6000000000003a40") + bytes(15) + b"\x01" + bytes(15) + b"\x02"
    recs = b""
    for i, (af, body) in enumerate([(2, v4), (24, v6), (28, v6), (30, v6), (2, v4)]):
        pkt = struct.pack(e + "I", af) + body
        recs += struct.pack(e + "IIII", 1000 + i, 0, len(pkt), len(pkt)) + pkt
    path.write_bytes(struct.pack(e + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 0) + recs)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("expr", ["ip6", "ip", "ip6 or ip"])
def test_null_captures_of_either_byte_order_are_filtered_like_tcpdump(tmp_path, big_endian, expr):
    src = tmp_path / "null.pcap"
    _null_capture(src, big_endian)
    ours, theirs = tmp_path / "ours.pcap", tmp_path / "theirs.pcap"
    r = pfilter_cli("-r", str(src), "-w", str(ours), expr)
    assert r.returncode == 0, r.stderr
    subprocess.run([ref.tcpdump(), "-r", str(src), "-w", str(theirs), expr], check=True, capture_output=True)
    assert ours.read_bytes()[24:] == theirs.read_bytes()[24:]
    assert len(theirs.read_bytes()) > 24
