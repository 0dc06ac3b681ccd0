"""The parser against libpcap 1.10.3: what it accepts, and what it means.

Meaning is checked without a code generator: `explicit(tree)` writes the AST back as text with
every qualifier spelled out and every group parenthesized, and libpcap must compile that text
to exactly the bytecode it compiles the original to. Qualifier inheritance, and/or grouping,
`not` scope and arithmetic precedence all show up in that bytecode.
"""
import pytest

import reference
from pfilter.compiler import ast
from pfilter.compiler.parser import PF_ACTIONS, parse
from pfilter.errors import FilterError, FilterSyntaxError

_ACTION_NAMES = {v: k for k, v in reversed(list(PF_ACTIONS.items()))}


def _pf(node):
    if node.field == "action":
        return f"action {_ACTION_NAMES[node.value]}"
    if isinstance(node.value, str):
        return f"{node.field} \\{node.value}"
    return f"{node.field} {node.value}"


def _id(node):
    q = node.quals
    words = [w for w in (q.proto_word or q.proto, q.dir, q.kind) if w]
    return " ".join(words + [_value(node)])


def _optional(word):
    return lambda node: word if node.value is None else f"{word} {node.value}"


# node class -> its text with nothing left to inheritance or precedence
_TEXT = {
    ast.And: lambda n: f"({explicit(n.left)} and {explicit(n.right)})",
    ast.Or: lambda n: f"({explicit(n.left)} or {explicit(n.right)})",
    ast.Not: lambda n: f"(not {explicit(n.operand)})",
    ast.Id: _id,
    ast.ProtoAbbrev: lambda n: n.proto_word or n.proto,
    ast.Broadcast: lambda n: f"{n.proto} broadcast" if n.proto else "broadcast",
    ast.Multicast: lambda n: f"{n.proto} multicast" if n.proto else "multicast",
    ast.Less: lambda n: f"less {n.value}",
    ast.Greater: lambda n: f"greater {n.value}",
    ast.ByteOp: lambda n: f"byte {n.index} {n.op} {n.value}",
    ast.Inbound: lambda n: "inbound",
    ast.Outbound: lambda n: "outbound",
    ast.Ifindex: lambda n: f"ifindex {n.value}",
    ast.Vlan: _optional("vlan"), ast.Mpls: _optional("mpls"), ast.Pppoes: _optional("pppoes"),
    ast.Geneve: _optional("geneve"),
    ast.Pppoed: lambda n: "pppoed",
    ast.Llc: lambda n: "llc" if n.kind is None else f"llc {n.kind}",
    ast.PfField: _pf,
    ast.Wlan: lambda n: (f"type {n.value[0]} subtype {n.value[1]}" if n.field == "type_subtype"
                         else f"{n.field} {n.value}"),
    ast.Relation: lambda n: f"({_arith(n.left)} {n.op} {_arith(n.right)})",
}


def explicit(node):
    """The AST as pcap-filter text with nothing left to inheritance or precedence."""
    if node is None:
        return ""
    text = _TEXT.get(type(node))
    if text is None:
        raise AssertionError(f"unexpected node {node!r}")
    return text(node)


def _value(node):
    kind, value = node.value_kind, node.value
    if kind == "num":
        return str(value)
    if kind == "name":
        return "\\" + value
    if kind == "range":
        return "\\" + f"{value[0]}-{value[1]}"
    if kind == "mac":
        return ":".join(f"{b:02x}" for b in value)
    if kind == "aid":
        return f"${value:02x}"
    text = value
    if node.masklen is not None:
        text += f"/{node.masklen}"
    if node.mask is not None:
        text += f" mask {node.mask}"
    return text


def _arith(node):
    if isinstance(node, ast.Number):
        return str(node.value)
    if isinstance(node, ast.Length):
        return "len"
    if isinstance(node, ast.Load):
        return f"{node.proto_word}[{_arith(node.index)}:{node.size}]"
    if isinstance(node, ast.Negate):
        return f"(-{_arith(node.operand)})"
    if isinstance(node, ast.Binary):
        return f"({_arith(node.left)} {node.op} {_arith(node.right)})"
    raise AssertionError(f"unexpected arithmetic node {node!r}")


def libpcap_outcome(expr, dlt=1):
    """("ok", bytecode) or ("error", message) from libpcap, unoptimized."""
    try:
        return "ok", reference.compile(expr, dlt=dlt, optimize=False)
    except reference.RefError as err:
        return "error", str(err)


def is_libpcap_syntax_error(message):
    return "syntax error" in message


def check_against_libpcap(expr, dlt=1):
    """The agreement every expression must show; returns a short verdict for reporting."""
    outcome, detail = libpcap_outcome(expr, dlt)
    try:
        tree = parse(expr)
    except FilterSyntaxError:
        assert outcome == "error", f"{expr!r}: libpcap accepts it but pfilter raised a syntax error"
        return "both refuse"
    except FilterError as err:
        assert outcome == "error", f"{expr!r}: libpcap accepts it but pfilter raised {err}"
        return "both refuse"
    if outcome == "error":
        assert not is_libpcap_syntax_error(detail), (
            f"{expr!r}: libpcap says {detail!r} but pfilter parsed it")
        return "semantic error left to the code generator"
    text = explicit(tree)
    again = libpcap_outcome(text, dlt)
    assert again == ("ok", detail), \
        f"{expr!r} parsed as {text!r}, which libpcap compiles differently"
    return "same meaning"


def _corpus_cases():
    exprs = reference.corpus_expressions()
    for dlt_name, items in sorted(exprs.items()):
        for e in items:
            yield dlt_name, e


DLT_NUMBERS = {"EN10MB": 1, "RAW": 12, "LINUX_SLL": 113, "LINUX_SLL2": 276, "NULL": 0,
               "LOOP": 108, "PPP": 9, "PFLOG": 117, "IEEE802_11": 105, "IEEE802_11_RADIO": 127}


@pytest.mark.parametrize("dlt_name,expr", reference.corpus_params(_corpus_cases, 2))
def test_corpus_expression_means_what_libpcap_means(dlt_name, expr):
    reference.libpcap()
    dlt = DLT_NUMBERS.get(dlt_name, 1)
    assert check_against_libpcap(expr, dlt) != "both refuse"


INHERITANCE_CASES = [
    "host 1.2.3.4 or 5.6.7.8",
    "tcp dst port ftp or ftp-data or domain",
    "not host 1.2.3.4 and 5.6.7.8",
    "host 1.2.3.4 and (5.6.7.8 or 1.1.1.1)",
    "host 1.2.3.4 and not 5.6.7.8",
    "host 1.2.3.4 and (tcp) and 5.6.7.8",
    "host 1.2.3.4 and ((80) or 81)",
    "host (1.2.3.4 or not 5.6.7.8)",
    "port 80 or 443 and tcp",
    "ip src or dst net 10.0.0.0/8 or 192.168.0.0/16",
    "port (80)",
    "host not 1.2.3.4",
    "vlan (100) and host 1.2.3.4",
    "tcp src port 80 and not (81 or 82)",
    "ether src 00:11:22:33:44:55 or 66:77:88:99:aa:bb",
    "(host 1.2.3.4 or 5.6.7.8) and tcp",
    "not not not host 1.2.3.4 or 2.3.4.5",
    "host 1.2.3.4 and (not (5.6.7.8 or 1.1.1.1) or 2.2.2.2)",
    "host 1.1.1.1 and ((tcp) or 2.2.2.2)",
    "host 1.2.3.4 and (not tcp)",
]

PRECEDENCE_CASES = [
    "tcp or udp and arp", "ip and not tcp or udp", "not ip or arp",
    "ip[0] + 1 * 2 = 3", "ip[0] - 1 - 2 = 3", "ip[0] % 3 * 2 = 1", "ip[0] * 3 % 2 = 1",
    "-ip[0] % 3 = 1", "ip[0] ^ 1 & 2 = 3", "ip[0] & 1 ^ 2 = 3", "ip[0] | 1 & 2 << 1 + 2 = 3",
    "ip[0] >> 1 << 2 = 3", "- - ip[0] = 1", "(ip[0] + 1) * 2 = 4", "((1)) + ip[0] = 2",
    "1 - 2 + 3 = len", "ip[0] / 2 / 2 = 1", "ip[0] & 0xf << 2 > 20", "len - 14 > 1000",
    "ip[ip[0] & 0xf] = 0", "tcp[(tcp[12] >> 2):4] = 0x47455420",
]

SYNTAX_CASES = [
    "tcp and 80", "1=1 and 80", "(tcp) and 80", "host 1.2.3.4 and (tcp or 5.5.5.5)",
    "port 80 and tcp or 53", "(1.2.3.4)", "1.2.3.4", "not 1.2.3.4",
    "host 1.2.3.4 and (5.6.7.8 or port 80)", "(80)", "host (1+2)", "less (64)",
    "ip[0:(2)] = 1", "host 1.2.3.4 and ((5.6.7.8) or 1.1.1.1)",
    "host 1.2.3.4 and ((5.6.7.8 or 1.1.1.1))", "((1.1.1.1))", "host 1.1.1.1 and (((2.2.2.2)))",
    "host 1.1.1.1 and ((2.2.2.2 and 3.3.3.3) or 4.4.4.4)", "src or 1.2.3.4", "ip[0] = 1 and 4",
    "(host 1.2.3.4) and 5.6.7.8",
    "vlan 1 + 2", "not", "src host 1.2.3.4 and (80) = 80 or 5.6.7.8",
]


@pytest.mark.parametrize("expr", INHERITANCE_CASES + PRECEDENCE_CASES)
def test_parse_agrees_with_libpcap(expr):
    reference.libpcap()
    assert check_against_libpcap(expr) == "same meaning"


@pytest.mark.parametrize("expr", SYNTAX_CASES)
def test_libpcap_syntax_error_is_a_pfilter_syntax_error(expr):
    reference.libpcap()
    outcome, message = libpcap_outcome(expr)
    assert outcome == "error" and is_libpcap_syntax_error(message)
    with pytest.raises(FilterSyntaxError):
        parse(expr)
