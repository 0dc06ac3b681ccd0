"""The lexer reproduces flex's choices in libpcap's scanner.l: longest match first, then the
rule listed first; and every corpus expression parses."""

import pytest

from pfilter.compiler import lexer as L
from pfilter.compiler.names import NAMED_CONSTANTS
from pfilter.compiler.parser import parse
from pfilter.errors import FilterSyntaxError

import reference


def kinds(text):
    return [(t.kind, t.text) for t in L.tokenize(text)[:-1]]


@pytest.mark.parametrize("text,expected", [
    ("tcp", [(L.PNAME, "tcp")]),
    ("tcpx", [(L.ID, "tcpx")]),
    ("80", [(L.NUM, "80")]),
    ("80-90", [(L.ID, "80-90")]),
    ("ssh-http", [(L.ID, "ssh-http")]),
    ("len-1", [(L.ID, "len-1")]),
    ("len -1", [("LEN", "len"), ("-", "-"), (L.NUM, "1")]),
    ("1.2.3.4", [(L.HID, "1.2.3.4")]),
    ("10.1", [(L.HID, "10.1")]),
    ("1.2.3.4.5", [(L.ID, "1.2.3.4.5")]),
    ("1.2.3.4.5.6", [(L.EID, "1.2.3.4.5.6")]),
    ("aabbccddeeff", [(L.EID, "aabbccddeeff")]),
    ("aabb.ccdd.eeff", [(L.EID, "aabb.ccdd.eeff")]),
    ("fe80::1", [(L.HID6, "fe80::1")]),
    ("::ffff:1.2.3.4", [(L.HID6, "::ffff:1.2.3.4")]),
    ("::", [(L.HID6, "::")]),
    ("2001:db8:::1", [(L.HID6, "2001:db8::"), (":", ":"), (L.NUM, "1")]),
    ("ab:cd", [(L.ID, "ab"), (":", ":"), (L.ID, "cd")]),
    ("\\tcp", [(L.ID, "\\tcp")]),
    ("\\tcp[0]", [(L.ID, "\\tcp[0]")]),
    ("$1f", [(L.AID, "$1f")]),
    ("a>=b", [(L.ID, "a"), ("GEQ", ">="), (L.ID, "b")]),
    ("!x", [("!", "!"), (L.ID, "x")]),
    ("not&&and||or", [("!", "not"), ("AND", "&&"), ("AND", "and"), ("OR", "||"), ("OR", "or")]),
    ("1==2", [(L.NUM, "1"), ("=", "=="), (L.NUM, "2")]),
    ("a<<b>>c", [(L.ID, "a"), ("LSH", "<<"), (L.ID, "b"), ("RSH", ">>"), (L.ID, "c")]),
    ("icmp-echo", [(L.NUM, "icmp-echo")]),
    ("icmp-echoreply", [(L.NUM, "icmp-echoreply")]),
    ("icmp-echox", [(L.ID, "icmp-echox")]),
    ("es-is", [(L.PNAME, "es-is")]),
    ("TCP", [(L.ID, "TCP")]),
    ("host.", [(L.ID, "host.")]),
    ("0x1F", [(L.NUM, "0x1F")]),
    ("08x", [(L.ID, "08x")]),
])
def test_longest_match_then_first_rule(text, expected):
    assert kinds(text) == expected


def test_every_keyword_is_its_own_token():
    for word, (kind, _value) in L.KEYWORDS.items():
        tokens = L.tokenize(word)
        assert (tokens[0].kind, tokens[0].text, len(tokens)) == (kind, word, 2), word


def test_every_named_constant_is_a_number():
    for word, value in NAMED_CONSTANTS.items():
        tok = L.tokenize(word)[0]
        assert (tok.kind, tok.value) == (L.NUM, value), word


def test_numbers_in_decimal_hex_and_octal():
    assert [t.value for t in L.tokenize("10 0x10 010 0 4294967295")[:-1]] == \
        [10, 16, 8, 0, 4294967295]


def test_positions_are_offsets_in_the_text():
    toks = L.tokenize("  tcp  port 80")
    assert [(t.pos, t.end) for t in toks] == [(2, 5), (7, 11), (12, 14), (14, 14)]


@pytest.mark.parametrize("text", ["host 1.2.3.4 @", "tcp #", "port \"80\"", "tcp ,", "\x0b",
                                  "tcp\u00e9"])
def test_characters_outside_the_language_are_syntax_errors(text):
    with pytest.raises(FilterSyntaxError):
        L.tokenize(text)


def _corpus():
    return [(dlt, e) for dlt, exprs in reference.corpus_expressions().items() for e in exprs]


def test_corpus_is_there():
    assert len(_corpus()) > 500


def test_every_corpus_expression_parses():
    failures = []
    for dlt, expr in _corpus():
        try:
            parse(expr)
        except Exception as err:  # noqa: BLE001 - collect every failure
            failures.append((dlt, expr, str(err)))
    assert failures == []
