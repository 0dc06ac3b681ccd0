"""The parser's trees: qualifier inheritance, precedence, spans and every primitive's node."""
import pytest

from pfilter.compiler import ast
from pfilter.compiler.ast import Qualifiers as Q
from pfilter.compiler.parser import parse


def strip(node):
    """A tree without positions, for comparing shapes."""
    if isinstance(node, ast.Node):
        fields = {k: strip(v) for k, v in vars(node).items() if k not in ("pos", "end")}
        return (type(node).__name__, tuple(sorted(fields.items())))
    if isinstance(node, tuple):
        return tuple(strip(x) for x in node)
    return node


def Id(quals, kind, value, **extra):
    return ast.Id(0, 0, quals, kind, value, **extra)


def same(a, b):
    return strip(a) == strip(b)


HOST = Q(kind="host")


def test_bare_value_after_or_inherits_host():
    tree = parse("host 1.2.3.4 or 5.6.7.8")
    assert same(tree, ast.Or(0, 0, Id(HOST, "ipv4", "1.2.3.4"), Id(HOST, "ipv4", "5.6.7.8")))


def test_service_names_inherit_protocol_direction_and_port():
    q = Q(proto="tcp", dir="dst", kind="port", proto_word="tcp")
    tree = parse("tcp dst port ftp or ftp-data or domain")
    expected = ast.Or(0, 0, ast.Or(0, 0, Id(q, "name", "ftp"), Id(q, "name", "ftp-data")),
                      Id(q, "name", "domain"))
    assert same(tree, expected)


def test_not_covers_only_the_first_primitive_and_its_qualifiers_pass_on():
    tree = parse("not host 1.2.3.4 and 5.6.7.8")
    assert same(tree, ast.And(0, 0, ast.Not(0, 0, Id(HOST, "ipv4", "1.2.3.4")),
                              Id(HOST, "ipv4", "5.6.7.8")))


def test_values_in_parentheses_inherit_from_before_the_parenthesis():
    tree = parse("host 1.1.1.1 and (2.2.2.2 or 3.3.3.3)")
    inner = ast.Or(0, 0, Id(HOST, "ipv4", "2.2.2.2"), Id(HOST, "ipv4", "3.3.3.3"))
    assert same(tree, ast.And(0, 0, Id(HOST, "ipv4", "1.1.1.1"), inner))


def test_parenthesized_expression_passes_on_what_preceded_it():
    tree = parse("host 1.1.1.1 and (tcp) and 2.2.2.2")
    assert same(tree.right, Id(HOST, "ipv4", "2.2.2.2"))


def test_numbers_inherit_port_qualifiers():
    q = Q(proto="tcp", kind="port", proto_word="tcp")
    assert same(parse("tcp port 80 or 443"), ast.Or(0, 0, Id(q, "num", 80), Id(q, "num", 443)))


def test_negated_bare_value_inherits():
    tree = parse("host 1.2.3.4 and not 5.6.7.8")
    assert same(tree.right, ast.Not(0, 0, Id(HOST, "ipv4", "5.6.7.8")))


def test_and_or_have_equal_precedence_left_to_right():
    tree = parse("tcp or udp and arp")
    assert isinstance(tree, ast.And) and isinstance(tree.left, ast.Or)
    tree = parse("tcp and udp or arp")
    assert isinstance(tree, ast.Or) and isinstance(tree.left, ast.And)


def test_not_binds_tighter_than_and():
    tree = parse("not tcp and udp")
    assert isinstance(tree, ast.And) and isinstance(tree.left, ast.Not)


def test_symbolic_operators_are_synonyms():
    assert same(parse("! tcp && udp || arp"), parse("not tcp and udp or arp"))


def arith(text):
    return parse(f"{text} = 0").left


def test_multiplication_binds_tighter_than_addition():
    t = arith("1 + 2 * 3")
    assert t.op == "+" and t.right.op == "*"


def test_subtraction_is_left_associative():
    t = arith("9 - 2 - 3")
    assert t.op == "-" and t.left.op == "-"


def test_and_binds_tighter_than_or_and_shift_tighter_than_and():
    t = arith("1 | 2 & 3 << 4")
    assert t.op == "|" and t.right.op == "&" and t.right.right.op == "<<"


def test_modulo_and_xor_take_everything_to_their_right():
    t = arith("1 % 2 * 3")
    assert t.op == "%" and t.right.op == "*"
    t = arith("1 * 2 % 3")
    assert t.op == "*" and t.right.op == "%"
    t = arith("1 & 2 ^ 3")
    assert t.op == "&" and t.right.op == "^"


def test_unary_minus_binds_tightest_except_before_modulo():
    t = arith("-1 * 2")
    assert t.op == "*" and isinstance(t.left, ast.Negate)
    t = arith("-1 % 2")
    assert isinstance(t, ast.Negate) and t.operand.op == "%"


def test_load_with_size_and_expression_index():
    t = arith("tcp[(tcp[12] >> 2):4]")
    assert isinstance(t, ast.Load) and t.proto == "tcp" and t.size == 4
    assert t.index.op == ">>" and isinstance(t.index.left, ast.Load)


def test_ether_load_keeps_its_word_and_means_link():
    t = arith("ether[12:2]")
    assert (t.proto, t.proto_word, t.size) == ("link", "ether", 2)


def test_named_constants_are_numbers():
    t = parse("tcp[tcpflags] & tcp-syn != 0")
    assert t.op == "!=" and t.left.left.index == ast.Number(4, 12, 13)
    assert strip(t.left.right) == strip(ast.Number(0, 0, 2))


def test_double_equals_is_equals_and_irelops_keep_their_direction():
    assert parse("len == 1").op == "="
    assert [parse(f"len {op} 1").op for op in ("<", "<=", ">", ">=", "!=")] == \
        ["<", "<=", ">", ">=", "!="]


def test_relation_on_both_sides_and_length_synonyms():
    t = parse("length > len")
    assert isinstance(t.left, ast.Length) and isinstance(t.right, ast.Length)


@pytest.mark.parametrize("text,proto,word", [
    ("ether", "link", "ether"), ("fddi", "link", "fddi"), ("tr", "link", "tr"),
    ("wlan", "link", "wlan"), ("link", "link", "link"), ("ppp", "link", "ppp"),
    ("ip6", "ip6", "ip6"), ("icmp6", "icmp6", "icmp6"), ("es-is", "esis", "es-is"),
    ("is-is", "isis", "is-is"), ("l1", "l1", "l1"), ("radio", "radio", "radio"),
])
def test_protocol_words_map_to_qualifier_protocols(text, proto, word):
    assert parse(text) == ast.ProtoAbbrev(0, len(text), proto, word)


@pytest.mark.parametrize("text,direction", [
    ("src or dst", "src or dst"), ("dst or src", "src or dst"), ("src and dst", "src and dst"),
    ("dst and src", "src and dst"), ("addr1", "addr1"), ("address4", "addr4"), ("ra", "ra"),
    ("ta", "ta"),
])
def test_direction_qualifiers(text, direction):
    tree = parse(f"{text} host 1.2.3.4")
    assert tree.quals == Q(dir=direction, kind="host")


def test_head_without_kind_and_with_protocol():
    assert parse("ip src 10.1").quals == Q(proto="ip", dir="src", proto_word="ip")


def test_gateway_proto_and_protochain_qualifiers():
    assert parse("gateway foo").quals.kind == "gateway"
    t = parse("ip6 protochain \\tcp")
    assert (t.quals.kind, t.value_kind, t.value) == ("protochain", "name", "tcp")
    t = parse("ether proto 0x800")
    assert (t.quals.proto, t.quals.proto_word, t.value) == ("link", "ether", 0x800)


@pytest.mark.parametrize("text,mac", [
    ("aa:bb:cc:dd:ee:ff", "aabbccddeeff"), ("aa-bb-cc-dd-ee-ff", "aabbccddeeff"),
    ("aa.bb.cc.dd.ee.ff", "aabbccddeeff"), ("aabb.ccdd.eeff", "aabbccddeeff"),
    ("aabbccddeeff", "aabbccddeeff"), ("1:2:3:4:5:6", "010203040506"),
    ("1.2.3.4.5.6", "010203040506"),
])
def test_every_mac_notation(text, mac):
    t = parse(f"ether host {text}")
    assert (t.value_kind, t.value) == ("mac", bytes.fromhex(mac))


def test_ipv4_shorthand_networks_and_masks():
    t = parse("net 10.1")
    assert (t.value_kind, t.value, t.masklen, t.mask) == ("ipv4", "10.1", None, None)
    t = parse("net 10.0.0.0/8")
    assert (t.value, t.masklen) == ("10.0.0.0", 8)
    t = parse("net 192.168 mask 255.255")
    assert (t.value, t.mask) == ("192.168", "255.255")
    assert parse("host 168496141").value == 168496141


@pytest.mark.parametrize("text", ["::1", "fe80::1", "2001:db8::1", "::ffff:192.0.2.1", "::",
                                  "1:2:3:4:5:6:7:8", "2001:db8::/32"])
def test_ipv6_addresses(text):
    t = parse(f"host {text}")
    assert t.value_kind == "ipv6" and t.value == text.split("/")[0]


def test_numbers_in_every_base():
    assert [parse(f"port {n}").value for n in ("80", "0x50", "0120", "0")] == [80, 80, 80, 0]


def test_port_ranges_from_numbers_and_service_names():
    assert parse("portrange 1-1023").value == ("1", "1023")
    assert parse("portrange ssh-http").value == ("ssh", "http")
    t = parse("tcp portrange 80")
    assert (t.value_kind, t.value) == ("range", ("80", "80"))


def test_backslash_makes_a_keyword_a_name():
    t = parse("ip proto \\tcp")
    assert (t.value_kind, t.value) == ("name", "tcp")


@pytest.mark.parametrize("text,node", [
    ("less 64", ast.Less(0, 7, 64)),
    ("greater 1500", ast.Greater(0, 12, 1500)),
    ("byte 14 > 0x40", ast.ByteOp(0, 14, 14, ">", 0x40)),
    ("inbound", ast.Inbound(0, 7)),
    ("outbound", ast.Outbound(0, 8)),
    ("ifindex 3", ast.Ifindex(0, 9, 3)),
    ("vlan", ast.Vlan(0, 4, None)),
    ("vlan 100", ast.Vlan(0, 8, 100)),
    ("vlan (100)", ast.Vlan(0, 10, 100)),
    ("mpls 16", ast.Mpls(0, 7, 16)),
    ("pppoed", ast.Pppoed(0, 6)),
    ("pppoes 0x27", ast.Pppoes(0, 11, 0x27)),
    ("geneve", ast.Geneve(0, 6, None)),
    ("llc", ast.Llc(0, 3, None)),
    ("llc rnr", ast.Llc(0, 7, "rnr")),
    ("llc XID", ast.Llc(0, 7, "xid")),
    ("broadcast", ast.Broadcast(0, 9, None)),
    ("ether multicast", ast.Multicast(0, 15, "link")),
    ("ip6 multicast", ast.Multicast(0, 13, "ip6")),
    ("on eth0", ast.PfField(0, 7, "ifname", "eth0")),
    ("ruleset foo", ast.PfField(0, 11, "ruleset", "foo")),
    ("rulenum 3", ast.PfField(0, 9, "rnr", 3)),
    ("srnr 2", ast.PfField(0, 6, "srnr", 2)),
    ("reason bad-offset", ast.PfField(0, 17, "reason", 1)),
    ("action block", ast.PfField(0, 12, "action", 1)),
    ("type mgt", ast.Wlan(0, 8, "type", 0)),
    ("wlan type data subtype qos-data", ast.Wlan(0, 31, "type_subtype", (8, 0x80))),
    ("subtype beacon", ast.Wlan(0, 14, "type_subtype", (0, 0x80))),
    ("subtype ack", ast.Wlan(0, 11, "type_subtype", (4, 0xd0))),
    ("dir fromds", ast.Wlan(0, 10, "dir", 2)),
    ("dir 3", ast.Wlan(0, 5, "dir", 3)),
])
def test_other_primitives(text, node):
    assert parse(text) == node


def test_spans_point_at_the_source():
    text = "tcp port 80 or host 10.0.0.1"
    tree = parse(text)
    assert (tree.pos, tree.end) == (0, len(text))
    assert text[tree.left.pos:tree.left.end] == "tcp port 80"
    assert text[tree.right.pos:tree.right.end] == "host 10.0.0.1"
    tree = parse("host a or b")
    assert tree.right.pos == 10


def test_empty_expression_is_none():
    assert parse("") is None
    assert parse("  \t\n") is None
