"""Every common link type against libpcap: the corpus's IP and ARP packets re-encapsulated in each
link layer, every corpus expression plus link-specific ones, compiled by libpcap and by pfilter.

For each (link type, expression): libpcap refuses it exactly when pfilter raises FilterError, and
otherwise both programs give the same verdict on every packet. The link headers carry varied
field values (packet types, interface indexes, address families, PFLOG actions and rule numbers)
so that direction, interface and PFLOG primitives are exercised, not just parsed.
"""
import random
import struct

import numpy as np
import pytest

import pfilter
import reference as ref

ETH_IP, ETH_IP6, ETH_ARP = 0x0800, 0x86DD, 0x0806

LINK_EXPRESSIONS = {
    "LINUX_SLL": ["inbound", "outbound", "inbound and tcp", "outbound or arp", "not inbound and ip6",
                  "ether proto 0x88cc", "link[0:2] = 4", "vlan", "ifindex 2", "ether host 00:11:22:33:44:55"],
    "LINUX_SLL2": ["inbound", "outbound", "ifindex 2", "ifindex 2 and udp", "ifindex 3 or ifindex 1",
                   "not ifindex 1", "link[4:4] = 2", "vlan"],
    "NULL": ["link[0] = 2", "ip6 and tcp"], "LOOP": ["link[3] = 2", "ip6 and udp"],
    "PFLOG": ["on em0", "ifname em0 and tcp", "rnr 5", "rulenum 5 or rnr 6", "srnr 1", "subrulenum 2",
              "reason match", "reason 1", "action pass", "action block", "action pass and inbound",
              "on em0 and action block", "ruleset main", "inbound", "outbound", "ip6 and action drop",
              "ether host 00:11:22:33:44:55"],
    "PPP": ["link[2:2] = 0x0021", "ether host 00:11:22:33:44:55", "vlan"],
    "PPP_SERIAL": ["link[2:2] = 0x0021"], "C_HDLC": ["link[2:2] = 0x0800", "iso"],
    "RAW": ["link[0] & 0xf0 = 0x40", "ether host 00:11:22:33:44:55", "vlan", "inbound"],
    "IPV4": ["link[0] & 0xf0 = 0x40", "ip6"], "IPV6": ["ip", "ip6 and icmp6"],
}


def payloads():
    """(ethertype, network-layer bytes, wirelen) of the corpus's IPv4, IPv6 and ARP frames."""
    out = []
    for (dlt, _), batch in ref.corpus_batches().items():
        if dlt != 1:
            continue
        for i in range(0, len(batch), 3):
            pkt = batch.packet(i)
            if len(pkt) >= 15:
                et = int.from_bytes(pkt[12:14], "big")
                if et in (ETH_IP, ETH_IP6, ETH_ARP):
                    out.append((et, pkt[14:], int(batch.wirelen[i]) - 14))
    return out


def af_for(et, rng):
    return 2 if et == ETH_IP else rng.choice([24, 28, 30, 10]) if et == ETH_IP6 else rng.choice([0, 7])


def link_header(dlt, et, rng):
    if dlt in (12, 228, 229):
        return b""
    if dlt == 0:
        return struct.pack("<I", af_for(et, rng))
    if dlt == 108:
        return struct.pack(">I", af_for(et, rng))
    if dlt == 113:
        return struct.pack(">HHH8sH", rng.choice([0, 1, 2, 3, 4]), 1, 6, rng.randbytes(8), et)
    if dlt == 276:
        return struct.pack(">HHIHBB8s", et, 0, rng.choice([1, 2, 3]), 1, rng.choice([0, 1, 2, 3, 4]), 6, rng.randbytes(8))
    if dlt in (9, 50):
        proto = {ETH_IP: 0x0021, ETH_IP6: 0x0057}.get(et, 0x8021)
        return b"\xff\x03" + struct.pack(">H", proto)
    if dlt == 104:
        return struct.pack(">BBH", rng.choice([0x0F, 0x8F]), 0, et)
    if dlt == 117:
        ifname = rng.choice([b"em0", b"em1", b"lo0"]).ljust(16, b"\0")
        ruleset = rng.choice([b"", b"main"]).ljust(16, b"\0")
        return struct.pack(">BBBB16s16sIIIIIIB3s", 61, af_for(et, rng), rng.choice([0, 1, 2, 3]),
                           rng.choice([0, 1, 2, 3]), ifname, ruleset, rng.choice([4, 5, 6]),
                           rng.choice([0, 1, 2, 0xFFFFFFFF]), 0, 0, 0, 0, rng.choice([0, 1, 2]), b"\0\0\0")
    raise AssertionError(dlt)


@pytest.fixture(scope="module")
def corpus_payloads():
    return payloads()


@pytest.mark.parametrize("name", sorted(LINK_EXPRESSIONS))
def test_link_type_agrees_with_libpcap_on_reencapsulated_packets(name, corpus_payloads):
    from pfilter.linktypes import linktype_number
    dlt = linktype_number(name)
    rng = random.Random(dlt)
    pkts, wirelens = [], []
    for et, body, wl in corpus_payloads:
        if dlt == 228 and et != ETH_IP or dlt == 229 and et != ETH_IP6:
            continue
        hdr = link_header(dlt, et, rng)
        pkts.append(hdr + body)
        wirelens.append(len(hdr) + wl)
    batch = pfilter.PacketBatch.from_packets(pkts, wirelens=wirelens, linktype=dlt)
    exprs = [e for e in ref.corpus_expressions()["EN10MB"] + LINK_EXPRESSIONS[name] if e not in ref.DOCUMENTED_DIVERGENCES]
    problems, compiled = [], 0
    for expr in exprs:
        try:
            theirs = ref.compile_savefile(expr, dlt, False, 262144)
        except ref.RefError as e:
            theirs = e
        try:
            ours = pfilter.compile(expr, linktype=dlt, snaplen=262144)
        except pfilter.FilterError as e:
            ours = e
        if isinstance(theirs, Exception) or isinstance(ours, Exception):
            if isinstance(theirs, Exception) != isinstance(ours, Exception):
                problems.append(f"{expr!r}: libpcap {'refuses: ' + str(theirs) if isinstance(theirs, Exception) else 'compiles'};"
                                f" pfilter {'refuses: ' + str(ours).splitlines()[0] if isinstance(ours, Exception) else 'compiles'}")
            continue
        compiled += 1
        want = ref.bpf_filter_batch(theirs, batch) != 0
        got = ours.match_batch(batch)
        if not np.array_equal(want, got):
            i = int(np.flatnonzero(want != got)[0])
            problems.append(f"{expr!r}: {int((want != got).sum())} verdicts differ, first packet {i}")
    if name == "PFLOG" or name == "LINUX_SLL2" or name == "LINUX_SLL":
        assert compiled >= len(LINK_EXPRESSIONS[name]) // 2
    assert problems == [], f"{name}: {len(problems)} of {len(exprs)} expressions disagree:\n" + "\n".join(problems[:25])
