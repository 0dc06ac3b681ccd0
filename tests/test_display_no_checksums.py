"""tcpdump's -K (--dont-verify-checksums) in the display: Printer(K=True).

What tcpdump 4.99.3's -K changes, from its sources (ndo_Kflag is read in three places only) and
held here against the binary: with -v, print-ip.c's ip_print() leaves out the IPv4 header's
", bad cksum X (->Y)!"; print-tcp.c's tcp_print() leaves out ", cksum 0x.... (correct)" /
"(incorrect -> 0x....)" (IPv4 and IPv6); print-udp.c's udp_print() leaves out "[udp sum ok] ",
"[bad udp cksum 0x.... -> 0x....!] " and IPv4's "[no cksum] " (-vv). Every other checksum check
(ICMP's "wrong icmp cksum", ICMPv6's "[icmp6 sum ok]", IGMP, PIM, OSPF, ...) stays, and without
-v nothing changes (no checksum is printed then).

The corpus captures below are ones whose -v and -vv lines pfilter already prints as tcpdump does;
the comparison helpers are tests/test_display_vs_tcpdump.py's (the Printer driven in-process over
a capture's first batch, and `tcpdump -n -r`). Corpus files skip through tests/reference.py when
absent (fail when CI=true).
"""
import struct
import subprocess
import sys

import pytest

import reference as ref
from pfilter.display import Printer
from test_capture_fastpath import write_pcap
from test_display_vs_tcpdump import _ours, _tcpdump

#: (capture, packets to print or None for all): IPv4 header checksums (bad ones too), TCP over
#: IPv4 and IPv6 (correct and incorrect), UDP over IPv4 and IPv6 (ok, bad, zero), ICMP (echo,
#: errors quoting a datagram, RFC 4884 extensions), ICMPv6 (neighbour discovery, echo), IPv6
#: fragments, Ethernet, Linux cooked, NULL/loopback, pcapng
CAPTURES = [
    ("pcapplusplus__ExamplesTest__pcap_examples__http-packets.pcap", 300),
    ("pcapplusplus__Packet++Test__PacketExamples__IPv4-NoOptions.pcap", None),
    ("pcapplusplus__Packet++Test__PacketExamples__ipv4-options.pcap", None),
    ("pcapplusplus__Packet++Test__PacketExamples__IcmpPackets.pcap", None),
    ("pcapplusplus__Packet++Test__PacketExamples__Ntp.pcap", None),
    ("pcapplusplus__Packet++Test__PacketExamples__NullLoopback.pcap", None),
    ("pcapplusplus__Packet++Test__PacketExamples__mysql.pcapng", None),
    ("pcapplusplus__Packet++Test__PacketExamples__Sll2Packet.pcap", None),
    ("pcapplusplus__ExamplesTest__pcap_examples__tls.pcap", None),
    ("pcapplusplus__ExamplesTest__pcap_examples__ipv6-frag.pcap", None),
    ("pcapplusplus__ExamplesTest__pcap_examples__frag_http_req.pcap", None),
    ("pcapplusplus__Packet++Test__PacketExamples__IcmpV6_NeighAdvSoli.pcap", None),
    ("pcapplusplus__Pcap++Test__PcapExamples__ICMPv6_echos.cap", None),
    ("libpcap__gateway_or_not.pcap", None),
    ("tcpdump__icmp-rfc5837.pcap", None),
    ("tcpdump__lmp.pcap", None),
    ("tcpdump__udp-length-heapoverflow.pcap", None),
    ("tcpdump__mptcp-aa-v1.pcap", None),
    ("tcpdump__ntp.pcap", None),
]

#: captures whose -v (or -vv) lines carry checksum verdicts that -K removes
WITH_CHECKSUMS = [
    ("pcapplusplus__ExamplesTest__pcap_examples__http-packets.pcap", 300, ["-v"]),   # IPv4 header, TCP
    ("pcapplusplus__Packet++Test__PacketExamples__Ntp.pcap", None, ["-vv"]),          # UDP over IPv4 and IPv6
    ("tcpdump__icmp-rfc5837.pcap", None, ["-vv"]),                                     # "[no cksum]"
]


def _corpus(name):
    return ref.corpus_file(f"pcaps/{name}")


@pytest.mark.parametrize("v", [1, 2], ids=["-v", "-vv"])
@pytest.mark.parametrize("name,count", CAPTURES, ids=[name for name, _ in CAPTURES])
def test_minus_K_prints_what_tcpdump_prints(name, count, v):
    path = _corpus(name)
    flag = "-" + "v" * v
    theirs = _tcpdump(path, flag, "-K", count=count)
    assert theirs
    assert _ours(path, count=count, v=v, K=True) == theirs


@pytest.mark.parametrize("name,count,flags", WITH_CHECKSUMS, ids=[name for name, _, _ in WITH_CHECKSUMS])
def test_minus_K_removes_the_checksum_verdicts(name, count, flags):
    """The same capture without -K prints the verdicts (as tcpdump does): -K has something to
    remove here, and removes it."""
    path = _corpus(name)
    v = len(flags[0]) - 1
    plain, no_check = _ours(path, count=count, v=v), _ours(path, count=count, v=v, K=True)
    assert plain == _tcpdump(path, *flags, count=count)
    assert no_check == _tcpdump(path, *flags, "-K", count=count)
    assert plain != no_check
    marks = (", bad cksum ", ", cksum 0x", "[udp sum ok]", "[bad udp cksum", "[no cksum]")   # ICMP's stay
    assert any(m in line for line in plain for m in marks)
    assert not any(m in line for line in no_check for m in marks)
    assert len(plain) == len(no_check)


def test_minus_K_without_v_changes_nothing():
    """No checksum is printed without -v: -K alone prints the default lines (and keeps the
    compiled printer)."""
    path = _corpus("pcapplusplus__ExamplesTest__pcap_examples__http-packets.pcap")
    theirs = _tcpdump(path, "-K", count=300)
    assert theirs == _tcpdump(path, count=300)
    assert _ours(path, count=300, K=True) == theirs


# ---------------------------------------------------------------------- checksums made to order

def _sum16(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ip4(proto, l4, sum_fix=None, off=0x4000, l4_sum_at=None, l4_sum=None):
    """Ethernet + IPv4 (10.0.0.1 > 10.0.0.2) + l4; l4's checksum at l4_sum_at is computed over the
    pseudo-header unless l4_sum is given; the header's is right unless sum_fix is given."""
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    if l4_sum_at is not None:
        if l4_sum is None:
            l4 = l4[:l4_sum_at] + b"\0\0" + l4[l4_sum_at + 2:]
            pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
            l4_sum = _sum16(pseudo + l4 if proto != 1 else l4)
        l4 = l4[:l4_sum_at] + struct.pack("!H", l4_sum) + l4[l4_sum_at + 2:]
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0x1234, off, 64, proto, 0, src, dst)
    hsum = _sum16(hdr) if sum_fix is None else sum_fix
    hdr = hdr[:10] + struct.pack("!H", hsum) + hdr[12:]
    return b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00" + hdr + l4


def _ip6(nxt, l4, l4_sum_at, l4_sum=None):
    src, dst = bytes.fromhex("20010db8" + "00" * 11 + "01"), bytes.fromhex("20010db8" + "00" * 11 + "02")
    if l4_sum is None:
        l4 = l4[:l4_sum_at] + b"\0\0" + l4[l4_sum_at + 2:]
        l4_sum = _sum16(src + dst + struct.pack("!I3xB", len(l4), nxt) + l4)
    l4 = l4[:l4_sum_at] + struct.pack("!H", l4_sum) + l4[l4_sum_at + 2:]
    hdr = struct.pack("!IHBB16s16s", 0x60000000, len(l4), nxt, 64, src, dst)
    return b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x86\xdd" + hdr + l4


def _tcp(flags, payload=b""):
    return struct.pack("!HHIIBBHHH", 40000, 40001, 1000, 0, 5 << 4, flags, 8192, 0, 0) + payload


def _udp(payload):
    return struct.pack("!HHHH", 40002, 40003, 8 + len(payload), 0) + payload


def _echo(icmp_type):
    return struct.pack("!BBHHH", icmp_type, 0, 0, 7, 1) + b"abcdefgh"


PACKETS = [
    _ip4(6, _tcp(0x02), sum_fix=0xBEEF, l4_sum_at=16, l4_sum=0x1234),   # bad header, bad TCP
    _ip4(6, _tcp(0x18, b"hello"), l4_sum_at=16),                        # good header, good TCP
    _ip4(17, _udp(b"data"), l4_sum_at=6, l4_sum=0),                     # UDP without a checksum
    _ip4(17, _udp(b"data"), l4_sum_at=6, l4_sum=0x4321),                # bad UDP
    _ip4(17, _udp(b"data"), l4_sum_at=6),                               # good UDP
    _ip4(17, _udp(b"frag"), off=0x2000, l4_sum_at=6, l4_sum=0x4321),    # a first fragment: never checked
    _ip4(1, _echo(8), l4_sum_at=2, l4_sum=0x1111),                      # bad ICMP: checked even with -K
    _ip4(1, _echo(0), sum_fix=0x0001, l4_sum_at=2),                     # bad header, good ICMP
    _ip6(6, _tcp(0x02), 16, 0x2222),                                    # bad TCP over IPv6
    _ip6(17, _udp(b"six"), 6),                                          # good UDP over IPv6
    _ip6(17, _udp(b"six"), 6, 0x3333),                                  # bad UDP over IPv6
    _ip6(58, _echo(128), 2, 0x4444),                                    # bad ICMPv6: checked even with -K
    _ip6(58, _echo(129), 2),                                            # good ICMPv6
]


@pytest.mark.parametrize("v", [1, 2, 3], ids=["-v", "-vv", "-vvv"])
def test_minus_K_on_made_checksums(tmp_path, v):
    """Every verdict -K removes, and the ones it keeps (ICMP, ICMPv6), each in its packet."""
    path = write_pcap(tmp_path / "sums.pcap", [(p, None, len(p)) for p in PACKETS])
    flag = "-" + "v" * v
    theirs, theirs_checked = _tcpdump(path, flag, "-K"), _tcpdump(path, flag)
    ours, ours_checked = _ours(path, v=v, K=True), _ours(path, v=v)
    assert ours_checked == theirs_checked
    assert ours == theirs
    text, checked = "\n".join(ours), "\n".join(ours_checked)
    for gone in ("bad cksum beef", "cksum 0x1234 (incorrect", "(correct)", "[no cksum]", "[bad udp cksum",
                 "[udp sum ok]", "cksum 0x2222 (incorrect"):
        assert gone not in text
        if v > 1 or "udp" not in gone and "no cksum" not in gone:
            assert gone in checked
    for kept in ("wrong icmp cksum 1111", "[bad icmp6 cksum 0x4444", "[icmp6 sum ok]"):
        assert kept in text and kept in checked


# ---------------------------------------------------------------------- the command

def test_cli_minus_K():
    """`pfilter -r F -v -K` prints `tcpdump -n -r F -v -K`'s lines."""
    path = _corpus("pcapplusplus__Packet++Test__PacketExamples__IPv4-NoOptions.pcap")
    ours = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(path), "-v", "-K"],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    theirs = _tcpdump(path, "-v", "-K")
    assert theirs and theirs != _tcpdump(path, "-v")
    assert ours.stdout.splitlines() == theirs
