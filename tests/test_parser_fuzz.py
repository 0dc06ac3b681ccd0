"""Fuzzing the front end: whatever the text, parse() returns a tree (or None) or raises a
FilterError, never anything else. A differential round against libpcap checks that random
token strings are accepted exactly when libpcap accepts them, with the same meaning."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reference
from pfilter.compiler import ast
from pfilter.compiler.lexer import KEYWORDS
from pfilter.compiler.names import NAMED_CONSTANTS
from pfilter.compiler.parser import parse
from pfilter.errors import FilterError, FilterSyntaxError
from test_parser_reference import explicit, is_libpcap_syntax_error, libpcap_outcome


VALUES = ["1.2.3.4", "10.1", "10.0.0.0/8", "0", "80", "0x50", "017", "4294967295", "::1",
          "fe80::/10", "::ffff:1.2.3.4", "aa:bb:cc:dd:ee:ff", "aabb.ccdd.eeff", "$1f",
          "localhost", "ftp", "ftp-data", "ssh-http", "1-100", "\\tcp", "\\ip", "eth0",
          "255.255.0.0", "1.2.3.4.5.6", "len-1", "beacon", "tods", "mgt", "qos-data", "i", "xid"]
PUNCT = ["(", ")", "[", "]", ":", "=", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%",
         "&", "|", "^", "<<", ">>", "!", "&&", "||"]
VOCABULARY = sorted(KEYWORDS) + sorted(NAMED_CONSTANTS)[:10] + VALUES + PUNCT


def _corpus_expressions():
    path = reference.CORPUS / "expressions" / "en10mb.txt"
    exprs = reference.corpus_lines(path) if path.exists() else []
    return exprs or ["tcp port 80 and host 1.2.3.4"]   # the mutation test still runs without the corpus


CORPUS_EXPRS = _corpus_expressions()

token_strings = st.lists(st.sampled_from(VOCABULARY), min_size=0, max_size=12).map(" ".join)


@st.composite
def mutated_corpus(draw):
    text = draw(st.sampled_from(CORPUS_EXPRS))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "token"]))
        if action == "insert":
            text = text[:i] + draw(st.text(min_size=1, max_size=3)) + text[i:]
        elif action == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 4)):]
        else:
            text = text[:i] + " " + draw(st.sampled_from(VOCABULARY)) + " " + text[i:]
    return text


def parses_or_refuses_cleanly(text):
    try:
        tree = parse(text)
    except FilterError as err:
        if isinstance(err, FilterSyntaxError):
            assert 0 <= err.position <= len(text)
        str(err)
        return None
    assert tree is None or isinstance(tree, ast.Node)
    return tree


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token_strings)
def test_random_token_strings_parse_or_raise_filter_errors(text):
    parses_or_refuses_cleanly(text)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_corpus())
def test_mutated_corpus_expressions_parse_or_raise_filter_errors(text):
    parses_or_refuses_cleanly(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_text_parses_or_raises_filter_errors(text):
    parses_or_refuses_cleanly(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(token_strings, mutated_corpus()))
def test_random_expressions_are_accepted_exactly_when_libpcap_accepts_them(text):
    reference.libpcap()
    if "\0" in text:
        text = text.replace("\0", " ")    # libpcap would stop reading at the NUL
    outcome, detail = libpcap_outcome(text)
    try:
        tree = parse(text)
    except FilterError:
        assert outcome == "error", f"libpcap accepts {text!r}"
        return
    if outcome == "error":
        assert not is_libpcap_syntax_error(detail), f"libpcap: {detail}; pfilter parsed {text!r}"
        return
    assert libpcap_outcome(explicit(tree)) == (outcome, detail), f"{text!r} -> {explicit(tree)!r}"


def test_fuzz_vocabulary_covers_every_keyword():
    assert set(KEYWORDS) <= set(VOCABULARY)
    with pytest.raises(FilterSyntaxError):
        parse(" ".join(PUNCT))
