"""Every link type in the corpus: the compiler's program, or its error, is libpcap's.

For each link type among the corpus captures, libpcap 1.10.3 compiles a set of probe
expressions on that capture's own savefile handle (as `tcpdump -r` does), and pfilter compiles
them for the same DLT and snaplen: the unoptimized bytecode must be identical, or both must
refuse with the same message.
"""
import pytest

import reference
from pfilter.compiler.driver import compile_to_tuples
from pfilter.errors import FilterError

PROBES = [
    "ip", "ip6", "arp", "rarp", "tcp", "udp port 53", "host 1.2.3.4", "net 10.0.0.0/8",
    "ether host 1:2:3:4:5:6", "ether src 1:2:3:4:5:6", "ether broadcast", "ether multicast",
    "vlan", "vlan 5 and ip", "mpls", "mpls 3 and ip6", "pppoes", "pppoes 1 and tcp", "pppoed",
    "geneve", "geneve 1 and ip", "llc", "llc u", "stp", "ipx", "iso", "decnet", "atalk", "aarp",
    "netbeui", "clnp", "isis", "l1", "sca", "lat", "moprc", "link[0] = 1", "link[2:2] > 5",
    "inbound", "outbound", "ifindex 1", "ip6 protochain 6", "ip protochain 17", "ip multicast",
    "ip6 multicast", "tcp[13] = 2", "icmp6[0] = 1", "udp[8:4] = 1", "radio[0] = 1",
    "wlan type mgt", "wlan subtype beacon", "dir tods", "wlan addr2 1:2:3:4:5:6",
    "wlan ra 1:2:3:4:5:6", "len > 100", "proto 17", "ether proto 0x88cc", "ip host 1.2.3.4 and udp",
    "on eth0", "rnr 3", "action pass", "not ip and not ip6",
]


def _capture_per_link_type():
    seen = {}
    for row, dlt, snap, _pkts in reference.readable_captures():
        seen.setdefault(dlt, (row["file"], snap))
    return sorted(seen.items())


@pytest.fixture(scope="module")
def captures():
    return _capture_per_link_type()


def test_probe_expressions_match_libpcap_on_every_corpus_link_type(captures):
    assert len(captures) > 30
    mismatches = []
    for dlt, (path, snap) in captures:
        for expr in PROBES:
            try:
                ref = list(reference.compile_for_capture(str(path), expr))
            except reference.RefError as err:
                ref = f"error: {err}"
            try:
                ours = compile_to_tuples(expr, dlt, snap)
            except FilterError as err:
                ours = f"error: {str(err).splitlines()[0]}"
            mismatch = reference.bytecode_mismatch(dlt, expr, ref, ours)
            if mismatch:
                mismatches.append(mismatch)
    assert not mismatches, mismatches[:20]


def _null_capture(path, big_endian):
    import struct
    e = ">" if big_endian else "<"
    af = struct.pack(e + "I", 2)                        # AF_INET in the writer's byte order
    ip = bytes.fromhex("450000140000000040060000c0a80001c0a80002")
    pkt = af + ip
    path.write_bytes(struct.pack(e + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 0) +
                     struct.pack(e + "IIII", 0, 0, len(pkt), len(pkt)) + pkt)
    return pkt


@pytest.mark.parametrize("big_endian", [False, True])
def test_null_address_family_follows_the_byte_order_of_the_capture_writer(tmp_path, big_endian):
    path = tmp_path / "null.pcap"
    pkt = _null_capture(path, big_endian)
    for expr in ("ip", "ip6", "tcp or ip6"):
        ref = list(reference.compile_for_capture(str(path), expr))
        assert compile_to_tuples(expr, 0, 65535, swapped=big_endian) == ref
    from pfilter.compiler.driver import compile_expression
    assert compile_expression("ip", linktype="NULL", swapped=big_endian).run(pkt)
    assert not compile_expression("ip", linktype="NULL", swapped=not big_endian).run(pkt)
