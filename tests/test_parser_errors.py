"""Errors the front end raises: always a FilterError, a FilterSyntaxError for syntax, with a
caret under the offending token and words that say what was expected."""

import pytest

import reference
from pfilter.compiler.lexer import tokenize
from pfilter.compiler.parser import MAX_NESTING, parse
from pfilter.errors import FilterError, FilterSyntaxError


def _bad_rows():
    rows = []
    for line in reference.corpus_file("expressions/bad.tsv").read_text().splitlines():
        if line.strip():
            expr, message = line.split("\t", 1)
            rows.append((expr, message))
    return rows


def _syntax_bad():
    return [e for e, m in _bad_rows() if "syntax error" in m]


def test_the_corpus_of_bad_expressions_is_there():
    assert len(_syntax_bad()) >= 50


@pytest.mark.parametrize("expr", reference.corpus_params(_syntax_bad))
def test_libpcap_syntax_errors_are_syntax_errors_with_a_position(expr):
    with pytest.raises(FilterSyntaxError) as info:
        parse(expr)
    err = info.value
    assert 0 <= err.position <= len(expr)
    assert err.expression == expr
    caret_line = str(err).splitlines()[-1]
    assert caret_line.strip().startswith("^")
    assert caret_line.index("^") - 2 == err.position


@pytest.mark.parametrize("expr,message", reference.corpus_params(
    lambda: [e for e in _bad_rows() if "syntax error" not in e[1]], 2))
def test_other_bad_expressions_parse_or_raise_a_filter_error(expr, message):
    try:
        parse(expr)
    except FilterError:
        pass


def error_of(expr):
    with pytest.raises(FilterSyntaxError) as info:
        parse(expr)
    return info.value


def test_missing_port_says_what_was_expected():
    err = error_of("tcp port")
    assert "expected a port number or service name" in err.message
    assert "after 'port'" in err.message and err.position == 8


def test_trailing_and_says_end_of_expression():
    err = error_of("tcp and")
    assert err.message.startswith("unexpected end of expression after 'and'")


def test_unclosed_parenthesis_points_at_the_parenthesis():
    err = error_of("tcp and (udp or arp")
    assert "unbalanced parenthesis" in err.message and err.position == 8


def test_stray_closing_parenthesis_is_unbalanced():
    err = error_of("tcp)")
    assert "unbalanced parenthesis" in err.message and err.position == 3


def test_keyword_where_a_name_is_wanted_suggests_the_backslash():
    err = error_of("ip proto tcp")
    assert "\\tcp" in err.message and err.position == 9 and err.length == 3


def test_bare_value_without_qualifiers_to_inherit_is_pointed_at():
    err = error_of("tcp and 80")
    assert err.position == 8 and "80" in err.message


def test_hyphenated_arithmetic_explains_the_single_name():
    assert "spaces around '-'" in error_of("len-1 > 10").message


def test_unknown_character_is_a_syntax_error():
    err = error_of("host 1.2.3.4 # comment")
    assert err.position == 13


@pytest.mark.parametrize("expr,fragment", [
    ("port 4294967296", "overflows 32 bits"),
    ("port 0x100000000", "overflows 32 bits"),
    ("port 09", "non-octal"),
    ("ether host 00:11:22:33:44:55:66", "bogus ethernet address"),
    ("host ::1.2.3.256", "bogus IPv6 address"),
])
def test_lexical_errors_point_at_the_token(expr, fragment):
    err = error_of(expr)
    assert fragment in err.message and err.position == expr.index(expr.split()[-1])


@pytest.mark.parametrize("expr,fragment", [
    ("ip[0:3] = 1", "data size must be 1, 2, or 4"),
    ("llc foo", 'unknown LLC type name "foo"'),
    ("type foo", 'unknown 802.11 type name "foo"'),
    ("type 3", "invalid 802.11 type value"),
    ("type mgt subtype ack", 'unknown 802.11 subtype name "ack"'),
    ("subtype foo", "unknown 802.11 type name"),
    ("dir sideways", "unknown 802.11 direction"),
    ("reason bogus", 'unknown PF reason "bogus"'),
    ("action bogus", 'unknown PF action "bogus"'),
    ("port 1.2.3.4", "'port' modifier applied to ip host"),
])
def test_semantic_errors_of_the_grammar_are_filter_errors(expr, fragment):
    with pytest.raises(FilterError) as info:
        parse(expr)
    assert fragment in str(info.value)
    assert not isinstance(info.value, FilterSyntaxError)


@pytest.mark.parametrize("expr", [
    "(" * 5000 + "tcp" + ")" * 5000,
    "not " * 5000 + "tcp",
    "-" * 5000 + "1 = 1",
    "ip[" * 3000 + "0" + "]" * 3000 + " = 1",
    "1 % " * 3000 + "1 = 1",
    "host 1.1.1.1 and " + "(" * 3000 + "2.2.2.2" + ")" * 3000,
    "vlan " + "(" * 3000 + "1" + ")" * 3000,
])
def test_deep_nesting_is_a_clear_syntax_error(expr):
    err = error_of(expr)
    assert "nested too deeply" in err.message


def test_nesting_up_to_the_limit_parses():
    depth = MAX_NESTING - 5
    assert parse("(" * depth + "tcp" + ")" * depth).proto == "tcp"


def test_long_flat_chains_parse_without_recursion():
    tree = parse(" or ".join(["tcp"] * 5000))
    assert tree.end == len(" or ".join(["tcp"] * 5000))


def test_non_string_input_is_a_filter_error():
    with pytest.raises(FilterError):
        tokenize(b"tcp")


@pytest.mark.parametrize("expr", [
    "port " + "9" * 5000, "portrange " + "1" * 5000 + "-2", "host " + "1" * 5000 + ".1",
    "ip[0] = 0x" + "f" * 5000, "port 0" + "7" * 5000,
])
def test_enormous_numbers_are_filter_errors_not_crashes(expr):
    try:
        parse(expr)
    except FilterError:
        pass


def test_leading_zeros_do_not_overflow():
    assert parse("ip[0] = 0x" + "0" * 50 + "1").right.value == 1
    assert parse("portrange " + "0" * 30 + "80-90").value == ("80", "90")
