"""A wrong optimized program the compile fuzzer found (tests/fuzz/test_fuzz_compile.py), fixed in
pfilter/optimizer/reorder.py.

`port 80 or 443 or 8080 or not (ip) and not (port 80 or 443 or 8080)` parses as
`(... or not ip) and not (port 80 or 443 or 8080)` (and/or have equal precedence, as in libpcap),
so an IPv6 TCP packet from port 8080 is rejected. group_tests regrouped two chains in one call
from one analysis: the second chain began by testing the value it found in A at its entry
(the source port, left there by the first chain), while the first chain's rewrite left the
destination port there instead. A chain now tests its entry value without reloading it only
when no chain rewritten in the same call can pass A to its entry."""
import pfilter

EXPR = "port 80 or 443 or 8080 or not (ip) and not (port 80 or 443 or 8080)"


def _ipv6_tcp_from_8080():
    eth = bytes.fromhex("0200fe94f82a02005e0000fe86dd")
    ip6 = bytes.fromhex("6000000005b40639" "20010db8000000ff0000000000000013" "20010db8000000010000000000000002")
    tcp = bytes.fromhex("1f90b99c8a2a0000000000005010ffff00000000")
    return eth + ip6 + tcp + bytes(1514 - 14 - 40 - 20)


def test_unoptimized_program_rejects_the_packet():
    batch = pfilter.PacketBatch.from_packets([_ipv6_tcp_from_8080()], wirelens=[1516], linktype=1)
    assert pfilter.compile(EXPR, optimize=False).run_batch(batch).tolist() == [0]


def test_optimized_program_rejects_the_packet_too():
    batch = pfilter.PacketBatch.from_packets([_ipv6_tcp_from_8080()], wirelens=[1516], linktype=1)
    assert pfilter.compile(EXPR, optimize=True).run_batch(batch).tolist() == [0]
