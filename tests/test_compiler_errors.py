"""Expressions the compiler must refuse, and expressions that can never match.

Golden data: the corpus's expressions/bad.tsv (invalid expressions with tcpdump 4.99.3's
message) and rejects_all.txt. libpcap's semantic messages are kept word for word; its bare
"syntax error" is replaced by the parser's more specific FilterSyntaxError.
"""
import pytest

import reference
import pfilter
from pfilter.compiler.driver import compile_expression, compile_to_tuples
from pfilter.errors import FilterError, FilterSyntaxError

_SYNTAX = ("can't parse filter expression: syntax error", "syntax error in filter expression")


def _bad_rows():
    path = reference.corpus_file("expressions/bad.tsv")
    rows = []
    for line in path.open():
        if line.strip():
            expr, msg = line.rstrip("\n").split("\t", 1)
            rows.append(pytest.param(expr, msg.removeprefix("tcpdump: "), id=expr))
    return rows


@pytest.mark.parametrize("expr,libpcap_msg", reference.corpus_params(_bad_rows, 2))
def test_invalid_expression_raises_filter_error_never_anything_else(expr, libpcap_msg):
    with pytest.raises(FilterError) as err:
        compile_expression(expr)
    if libpcap_msg in _SYNTAX:
        assert isinstance(err.value, FilterSyntaxError)
    else:
        assert str(err.value).splitlines()[0] == libpcap_msg


def _rejects_all():
    return reference.corpus_lines("expressions/rejects_all.txt")


@pytest.mark.parametrize("optimize", [False, True])
def test_expression_that_can_never_match_compiles_to_a_program_rejecting_all(optimize):
    for expr in _rejects_all():
        prog = compile_expression(expr, optimize=optimize)
        assert prog.rejects_all, expr


def test_unoptimized_never_matching_program_returns_zero_on_every_corpus_packet():
    batches = reference.corpus_batches()
    for expr in _rejects_all():
        for (dlt, snap), batch in batches.items():
            if dlt != 1:
                continue
            prog = compile_expression(expr, linktype=dlt, snaplen=snap, optimize=False)
            assert not prog.run_batch(batch).any(), expr


def test_empty_or_blank_expression_accepts_every_packet_with_the_snaplen():
    for expr in ("", "   ", "\t"):
        assert compile_expression(expr, snaplen=1500).to_tuples() == [(0x06, 0, 0, 1500)]


def test_ip_broadcast_needs_a_netmask_like_libpcap():
    with pytest.raises(FilterError, match="netmask not known"):
        compile_expression("ip broadcast")
    prog = compile_to_tuples("ip broadcast", 1, netmask=0xFFFFFF00)
    assert (0x54, 0, 0, 0xFF) in prog                   # the host part of the destination
    assert [k for c, _, _, k in prog if c == 0x15][-2:] == [0, 0xFF]


@pytest.mark.parametrize("expr,linktype,msg", [
    ("vlan", "LINUX_SLL", "no VLAN support for Linux cooked v1"),
    ("ether host 1:2:3:4:5:6", "RAW", "ethernet addresses supported only on ethernet/FDDI/"
                                      "token ring/802.11/ATM LANE/Fibre Channel"),
    ("inbound", "EN10MB", "inbound/outbound not supported on Ethernet when reading savefiles"),
    ("ifindex 1", "LINUX_SLL", "ifindex not supported on Linux cooked v1 when reading savefiles"),
    ("vlan and mpls and vlan", "EN10MB", "no VLAN match after MPLS"),
    ("mpls and arp", "EN10MB", "unsupported protocol over mpls"),
    ("ip6 protochain 6", "IEEE802_11", "'protochain' not supported with variable length headers"),
    ("ip[0:3] = 1", "EN10MB", "data size must be 1, 2, or 4"),
    ("tcp host ::1", "EN10MB", "'tcp' modifier applied to ip6 host"),
])
def test_link_type_dependent_errors_use_libpcaps_words(expr, linktype, msg):
    with pytest.raises(FilterError) as err:
        compile_expression(expr, linktype=linktype)
    assert str(err.value).splitlines()[0] == msg


def test_too_many_live_registers_is_a_filter_error():
    deep = "ip[0]"
    for _ in range(20):
        deep = f"ip[0] + ({deep})"
    with pytest.raises(FilterError, match="too many registers"):
        compile_expression(deep + " > 0")


def test_unknown_link_type_is_a_filter_error():
    with pytest.raises(FilterError):
        compile_expression("ip", linktype="NO_SUCH_LINK")
    with pytest.raises(FilterError, match="unknown data link type"):
        compile_expression("ip", linktype=99999)


def test_non_string_expression_is_a_filter_error():
    with pytest.raises(FilterError):
        pfilter.compile(b"ip")


def test_numpy_integers_are_accepted_for_link_type_snaplen_and_netmask():
    import numpy as np
    prog = compile_expression("ip broadcast", linktype=np.uint16(113), snaplen=np.int64(1500),
                              netmask=np.uint32(0xFFFFFF00))
    assert prog.linktype == 113 and type(prog.linktype) is int and prog.snaplen == 1500


@pytest.mark.parametrize("snaplen", [-1, 2**32, True, "100", 1.0])
def test_bad_snaplen_is_a_filter_error(snaplen):
    with pytest.raises(FilterError):
        compile_expression("ip", snaplen=snaplen)


_PROTOS = ("ip ip6 arp rarp tcp udp icmp icmp6 sctp igmp igrp pim vrrp carp ah esp atalk aarp decnet "
           "lat sca moprc mopdl iso esis isis clnp stp ipx netbeui l1 l2 iih snp csnp psnp lsp radio "
           "link").split()
_TAILS = ("host 1.2.3.4", "net 10.0.0.0/8", "host ::1", "net fe80::/10", "proto 1", "protochain 1",
          "port 1", "portrange 1-2", "net loopback", "1.2.3.4", "host 1:2:3:4:5:6", "proto \\tcp",
          "broadcast", "multicast", "[0] = 1", "src 10.1", "dst and src host 10.1.2")


def test_every_protocol_qualifier_with_every_kind_of_id_is_libpcaps_program_or_error():
    mismatches = []
    for proto in _PROTOS:
        for tail in _TAILS:
            expr = f"{proto}{tail}" if tail.startswith("[") else f"{proto} {tail}"
            try:
                ref = list(reference.compile(expr, 1))
            except reference.RefError as err:
                ref = f"error: {err}".rstrip("\n")
            try:
                ours = compile_to_tuples(expr, 1, savefile=False)
            except FilterSyntaxError:
                if isinstance(ref, str) and "syntax error" in ref:
                    continue
                ours = "syntax error"
            except FilterError as err:
                ours = f"error: {err.message}".rstrip("\n")
            if ours != ref:
                mismatches.append((expr, ref if isinstance(ref, str) else len(ref),
                                   ours if isinstance(ours, str) else len(ours)))
    assert not mismatches, mismatches[:10]
