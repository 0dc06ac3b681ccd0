"""The compiler's unoptimized output against libpcap 1.10.3's, instruction for instruction.

Golden data: the corpus's expected/*_libpcap-1.10.3.jsonl (tests/reference.py finds it), produced by libpcap 1.10.3
(`tcpdump -y DLT -O -ddd`, a dead handle, snaplen 262144, netmask 0 as tcpdump passes it).
Every corpus expression must match exactly, except the deliberate differences listed in
DIVERGENT (their meaning is tested in test_compiler_semantics.py).
"""
import pytest

import reference
from pfilter.errors import FilterError
from pfilter.compiler.driver import compile_to_tuples, resolve_linktype

# Expressions whose bytecode differs from libpcap's on purpose (see gencode.gen_byteop).
DIVERGENT = reference.DOCUMENTED_DIVERGENCES


def _cases(kind):
    rows = reference.corpus_expected(kind)
    return [pytest.param(r["dlt"], r["expr"], r["unopt"], id=f'{r["dlt"]}:{r["expr"]}') for r in rows
            if r["expr"] not in DIVERGENT]


def _ours(dlt, expr):
    return compile_to_tuples(expr, resolve_linktype(dlt), 262144, netmask=0, savefile=False)


@pytest.mark.parametrize("dlt,expr,unopt", reference.corpus_params(lambda: _cases("en10mb"), 3))
def test_ethernet_expression_compiles_to_libpcaps_exact_unoptimized_program(dlt, expr, unopt):
    assert _ours(dlt, expr) == [tuple(x) for x in unopt]


@pytest.mark.parametrize("dlt,expr,unopt", reference.corpus_params(lambda: _cases("other_dlt"), 3))
def test_other_link_type_expression_compiles_to_libpcaps_exact_unoptimized_program(dlt, expr, unopt):
    assert _ours(dlt, expr) == [tuple(x) for x in unopt]


def test_exact_matches_cover_the_whole_corpus_but_the_listed_divergences():
    rows = reference.corpus_expected("en10mb") + reference.corpus_expected("other_dlt")
    exact = [r["expr"] for r in rows if _ours(r["dlt"], r["expr"]) == [tuple(x) for x in r["unopt"]]]
    assert len(exact) == len(rows) - len(DIVERGENT)


def test_total_unoptimized_size_is_within_budget_of_libpcaps():
    rows = reference.corpus_expected("en10mb")
    ours = sum(len(_ours(r["dlt"], r["expr"])) for r in rows)
    theirs = sum(len(r["unopt"]) for r in rows)
    assert ours <= 1.5 * theirs


@pytest.mark.parametrize("n", [30, 200, 1000])
def test_or_of_many_hosts_matches_libpcap_including_inserted_long_jumps(n):
    expr = " or ".join(f"host 10.{i >> 8}.{i & 255}.1" for i in range(n))
    ours = compile_to_tuples(expr, 1, 262144)
    assert ours == list(reference.compile(expr, 1, optimize=False))
    if n >= 200:
        assert any(code == 0x05 for code, _, _, _ in ours)   # needed `ja` for far branches


@pytest.mark.parametrize("expr", [
    "tcp port 80 and (" + " or ".join(f"net 10.{i}.0.0/16" for i in range(120)) + ")",
    "(" + " or ".join(f"port {p}" for p in range(1, 40)) + ") and not (" +
    " or ".join(f"host 192.168.{i}.1" for i in range(40)) + ")",
    "vlan and " + " or ".join(f"ether host 00:11:22:33:44:{i:02x}" for i in range(100)),
])
def test_long_programs_with_mixed_far_branches_match_libpcap(expr):
    assert compile_to_tuples(expr, 1, 262144) == list(reference.compile(expr, 1, optimize=False))


@pytest.mark.parametrize("dlt,expr", [
    (1, "vlan 10 and mpls 5 and ip"), (1, "pppoes 3 and udp port 53 or ip"),
    (1, "geneve 7 and ether host 1:2:3:4:5:6 and ip6 and tcp[2:2] > 5"),
    (1, "vlan and vlan and ip[ip[0] & 0xf] > 3 and len > 60 - 2 * 3"),
    (1, "icmp6[icmp6type] = icmp6-echo and ip6 protochain 17"),
    (1, "-(len % 7) ^ 3 | 2 != len >> 1"), (1, "ip[1] + ip[2] + ip[3] + ip[4] > ip[5] * ip[6]"),
    (113, "vlan or arp and inbound"), (276, "outbound and ifindex 3"),
    (127, "wlan host 1:2:3:4:5:6 and tcp port 80"), (105, "wlan ta 1:2:3:4:5:6 or wlan ra 1:2:3:4:5:6"),
    (127, "ether multicast or ether broadcast and radio[3] = 1"),
    (119, "ip and wlan src 1:2:3:4:5:6"), (163, "udp port 53"), (192, "tcp"),
    (117, "ip and rset foo and srnr 2 and reason short"), (0, "ip6 or ip"), (12, "ip6 protochain 6"),
    (9, "mpls and ip"), (104, "iso proto \\isis"), (107, "ip or ip6 or iso"),
    (228, "ip and not ip6"), (229, "ip6"), (226, "ip or ip6 and inbound"),
])
def test_assorted_primitives_match_libpcap_on_their_link_types(dlt, expr):
    try:
        ref = list(reference.compile(expr, dlt, optimize=False))
    except reference.RefError as e:
        with pytest.raises(FilterError) as ours:
            compile_to_tuples(expr, dlt, 262144, savefile=False)
        assert ours.value.message == str(e)
        return
    assert compile_to_tuples(expr, dlt, 262144, savefile=False) == ref


def test_linktype_names_and_numbers_resolve_to_libpcaps_dlt_values():
    assert resolve_linktype("EN10MB") == resolve_linktype(1) == resolve_linktype("DLT_EN10MB") == 1
    assert resolve_linktype("RAW") == resolve_linktype(101) == resolve_linktype(14) == 12
    assert resolve_linktype("LINUX_SLL2") == 276
    assert resolve_linktype("LINKTYPE_IEEE802_11_RADIOTAP") == 127


def test_offsets_shifted_by_vlan_do_not_leak_into_the_next_compilation():
    plain = compile_to_tuples("ip", 1)
    assert compile_to_tuples("vlan and ip", 1) != plain
    assert compile_to_tuples("ip", 1) == plain
    assert compile_to_tuples("geneve and ip", 1) != plain
    assert compile_to_tuples("ip", 1) == plain == [(0x28, 0, 0, 12), (0x15, 0, 1, 0x800),
                                                   (0x06, 0, 0, 262144), (0x06, 0, 0, 0)]


def test_lowering_api_takes_an_ast_and_a_link_context():
    from pfilter.compiler.emit import linearize
    from pfilter.compiler.gencode import lower
    from pfilter.compiler.linkctx import link_context
    from pfilter.compiler.parser import parse
    root = lower(parse("udp port 53"), link_context(113), snaplen=96)
    assert linearize(root) == list(reference.compile("udp port 53", 113, snaplen=96))
    assert linearize(lower(None, link_context(1), snaplen=5)) == [(0x06, 0, 0, 5)]
