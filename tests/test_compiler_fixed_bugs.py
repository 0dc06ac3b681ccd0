"""The libpcap 1.10.3 bugs libpcap has fixed since, fixed the same way (README, "Differences
from tcpdump"; `Divergence:` in the compiler).

Each test builds packets of the link type, decodes the field the primitive is about by itself
(the expected verdict), checks that pfilter's verdicts are those, and that libpcap 1.10.3's
differ on the packets the bug is about (so the test shows the difference it documents), and
agree on every other packet.
"""
import struct

import numpy as np
import pytest

import pfilter
import reference as ref

ARCNET, ARCNET_LINUX, C_HDLC, SLIP = 7, 129, 104, 8


def _verdicts(expr, dlt, packets):
    """(pfilter's, libpcap 1.10.3's) verdicts as bool arrays."""
    batch = pfilter.PacketBatch.from_packets(packets, linktype=dlt)
    ours = pfilter.compile(expr, linktype=dlt).run_batch(batch) != 0
    prog = ref.compile_savefile(expr, dlt, True)
    theirs = np.array([ref.bpf_filter(prog, p) != 0 for p in packets])
    return ours, theirs


def _ipv4(proto=6):
    return struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, proto, 0, b"\x0a\0\0\1", b"\x0a\0\0\2") + \
        struct.pack(">HHIIBBHHH", 1234, 80, 1, 0, 0x50, 2, 8192, 0, 0)


# libpcap's ARCnet system codes: RFC 1201 and the older RFC 1051 ones
SC_IP, SC_ARP, SC_IP_RFC1051, SC_ARP_RFC1051, SC_IP6 = 212, 213, 240, 241, 196


@pytest.mark.parametrize("dlt,sc_offset", [(ARCNET, 2), (ARCNET_LINUX, 4)])
def test_arcnet_ip_and_arp_match_rfc1201_system_codes_only(dlt, sc_offset):
    codes = [SC_IP, SC_ARP, SC_IP_RFC1051, SC_ARP_RFC1051, SC_IP6, 0]
    packets = []
    for sc in codes:
        head = bytearray(sc_offset + 1)
        head[sc_offset] = sc
        packets.append(bytes(head) + _ipv4())
    sc_of = np.array(codes)
    for expr, code, old in (("ip", SC_IP, SC_IP_RFC1051), ("arp", SC_ARP, SC_ARP_RFC1051)):
        ours, theirs = _verdicts(expr, dlt, packets)
        assert (ours == (sc_of == code)).all(), expr
        # libpcap 1.10.3 also takes the RFC 1051 code: it differs there, and only there
        assert (ours != theirs).tolist() == (sc_of == old).tolist(), expr


def _chdlc_isis(pdu_type, id_length):
    # Cisco HDLC (address, control, protocol 0xfefe), then the OSI payload: a byte, the IS-IS
    # discriminator 0x83, header length, version, ID length, PDU type, ...
    return bytes([0x0F, 0x00, 0xFE, 0xFE, 0x03, 0x83, 0x1B, 0x01, id_length, pdu_type]) + bytes(30)


ISIS_TYPES = {"csnp": {24, 25}, "psnp": {26, 27}, "lsp": {18, 20}, "iih": {15, 16, 17},
              "l1": {15, 17, 18, 24, 26}, "snp": {24, 25, 26, 27}}


def test_isis_pdu_types_on_c_hdlc_are_read_after_the_discriminator():
    types = [15, 16, 17, 18, 20, 24, 25, 26, 27, 3]
    packets = [_chdlc_isis(t, i) for t in types for i in (0, 24, 18)]
    pdu = np.array([p[9] for p in packets])
    for word, wanted in ISIS_TYPES.items():
        ours, theirs = _verdicts(word, C_HDLC, packets)
        assert (ours == np.isin(pdu, sorted(wanted))).all(), word
        assert (ours != theirs).any(), word     # 1.10.3 reads the ID length byte instead


def test_isis_pdu_types_on_the_corpus_c_hdlc_capture():
    path = ref.corpus_file("pcaps/libpcap__ISIS_p2p_adjacency.pcap")
    dlt, _snap, pkts, _err = ref.read_capture(str(path))
    assert dlt == C_HDLC
    packets = [p for p, _w, _t in pkts]
    decoded = np.array([len(p) > 9 and p[2:4] == b"\xfe\xfe" and p[5] == 0x83 and p[9] in (24, 25)
                        for p in packets])
    ours, theirs = _verdicts("csnp", C_HDLC, packets)
    assert decoded.any() and (ours == decoded).all()
    assert not theirs.any()                    # libpcap 1.10.3 finds none of them


def test_slip_outbound_is_direction_1_only():
    directions = [0, 1, 2, 0x7F, 0xFF]
    packets = [bytes([d]) + bytes(15) + _ipv4() for d in directions]
    d = np.array(directions)
    ours_in, theirs_in = _verdicts("inbound", SLIP, packets)
    ours_out, theirs_out = _verdicts("outbound", SLIP, packets)
    assert (ours_in == (d == 0)).all() and (ours_out == (d == 1)).all()
    assert (theirs_in == ours_in).all()
    # libpcap 1.10.3 takes every direction but 0 as outbound
    assert (ours_out != theirs_out).tolist() == (d > 1).tolist()
    # and pfilter's program is the one libpcap 1.10.3's optimizer makes of its `inbound`
    assert [tuple(i) for i in pfilter.compile("inbound", linktype=SLIP, optimize=False).to_tuples()] \
        == list(ref.compile_savefile("inbound", SLIP, True))
