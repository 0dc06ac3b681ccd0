"""Differential fuzzing of the code generator against libpcap 1.10.3.

Random expressions are built from primitives of every kind (qualified ids, protocol
abbreviations, encapsulations that shift offsets, packet loads and arithmetic) joined with
and/or/not and parentheses; for about fifty link types, pfilter's unoptimized program must be
libpcap's instruction for instruction, or both must refuse the expression with the same
message. Deterministic (fixed seeds) so a failure reproduces.
"""
import random

import pytest

import reference
from pfilter.compiler.driver import compile_to_tuples
from pfilter.errors import FilterError

PRIMITIVES = [
    "ip", "ip6", "arp", "rarp", "tcp", "udp", "icmp", "icmp6", "sctp", "igmp", "pim", "vrrp", "ah",
    "esp", "stp", "ipx", "iso", "clnp", "esis", "isis", "l1", "l2", "iih", "lsp", "snp", "csnp",
    "psnp", "atalk", "aarp", "decnet", "lat", "sca", "moprc", "mopdl", "netbeui", "llc", "llc i",
    "llc s", "llc ui", "llc rr", "pppoed", "vlan", "vlan 7", "mpls", "mpls 12", "pppoes",
    "pppoes 9", "geneve", "geneve 3", "host 10.1.2.3", "src host 10.1.2.3", "dst net 10.2",
    "net 172.16.0.0/12", "net 192.168 mask 255.255", "ip6 host 2001:db8::5", "ip6 net fe80::/10",
    "src or dst host ::1", "src and dst net 10.0.0.0/8", "ether host 0:1:2:3:4:5",
    "ether src 0:1:2:3:4:5", "ether dst ff:ff:ff:ff:ff:ff", "ether broadcast", "ether multicast",
    "ip multicast", "ip6 multicast", "port 53", "tcp port 80", "udp dst port 67", "src port 1024",
    "portrange 1-1023", "tcp portrange 8000-8080", "udp src portrange 10-20", "port domain",
    "ip proto 47", "ip6 proto 17", "proto \\udp", "ether proto 0x88cc", "ether proto \\ip6",
    "ip protochain 6", "ip6 protochain 58", "iso proto \\esis", "isis proto 18", "decnet host 1.2",
    "less 100", "greater 60", "len >= 64", "byte 3 = 1", "byte 5 < 2", "byte 6 > 7",
    "ip[0] & 0xf > 5", "tcp[tcpflags] & tcp-syn != 0", "icmp[icmptype] = icmp-echo",
    "icmp6[0] = 128", "udp[2:2] = 53", "ether[12:2] = 0x0800", "arp[6:2] = 1", "ip6[6] = 6",
    "ip[ip[0] & 0xf] > 1", "tcp[tcp[12] >> 4] = 0", "len - 14 > ip[2:2]", "-len < 3",
    "ip[2:2] * 2 / 3 % 5 ^ 1 | 2 & 6 << 1 >> 1 != 0", "sctp[0:4] = 1", "igmp[0] = 0x11",
    "vrrp[1] = 3", "pim[0] = 1", "link[0] = 1", "ip[len - 20] = 1",
]
LINK_TYPES = [1, 1, 1, 1, 113, 12, 127, 9, 0, 276, 105,            # Ethernet weighted up
              6, 7, 8, 10, 11, 15, 16, 19, 50, 51, 99, 104, 107, 108, 109, 112, 114, 117, 119,
              122, 123, 129, 130, 132, 136, 138, 140, 163, 164, 165, 166, 178, 192, 226, 228,
              229, 239, 240, 241]


def _expr(rng, depth=0):
    r = rng.random()
    if depth >= 3 or r < 0.35:
        return rng.choice(PRIMITIVES)
    if r < 0.45:
        return "not " + _expr(rng, depth + 1)
    if r < 0.55:
        return "(" + _expr(rng, depth + 1) + ")"
    op = rng.choice([" and ", " or ", " && ", " || "])
    return _expr(rng, depth + 1) + op + _expr(rng, depth + 1)


def _cases(seed, n):
    rng = random.Random(seed)
    return [(rng.choice(LINK_TYPES), _expr(rng)) for _ in range(n)]


def _both(expr, dlt):
    try:
        ref = list(reference.compile(expr, dlt, optimize=False))
    except reference.RefError as err:
        ref = f"error: {err}"
    try:
        ours = compile_to_tuples(expr, dlt, 262144, savefile=False)
    except FilterError as err:
        ours = f"error: {str(err).splitlines()[0]}"
    return ref, ours


@pytest.mark.parametrize("seed", range(6))
def test_random_expressions_compile_exactly_as_libpcap_or_fail_alike(seed):
    mismatches = []
    for dlt, expr in _cases(seed, 600):
        mismatch = reference.bytecode_mismatch(dlt, expr, *_both(expr, dlt))
        if mismatch:
            mismatches.append(mismatch)
    assert not mismatches, mismatches[:10]
