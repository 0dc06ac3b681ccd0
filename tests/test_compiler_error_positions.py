"""Every error the compiler raises for an expression points into it.

Every expression of the corpus (the invalid ones of expressions/bad.tsv and the valid ones, which
many link types refuse) is compiled for every link type among the corpus captures. Each
FilterError, syntax or semantic, must carry `.position` inside the expression and a `.length`,
and its text must show the expression with a caret line whose carets start at that position.
A semantic error's span (its primitive's, or the token's) must not cut a word.
"""
import pytest

import reference
from pfilter.compiler.driver import compile_to_tuples, resolve_linktype
from pfilter.errors import FilterError, FilterSyntaxError


def _expressions():
    exprs = [line.split("\t", 1)[0] for line in reference.corpus_lines("expressions/bad.tsv")]
    for group in reference.corpus_expressions().values():
        exprs.extend(group)
    return list(dict.fromkeys(e for e in exprs if e.strip()))


def _link_types():
    return sorted({resolve_linktype(int(row["linktype"])) for row in reference.corpus_pcaps()})


@pytest.fixture(scope="module")
def expressions():
    return _expressions()


def _cuts(expr, i):
    """Whether offset i falls inside a word of expr."""
    return 0 < i < len(expr) and expr[i - 1].isalnum() and expr[i].isalnum()


def _check(expr, err):
    """A problem with err's position, or None."""
    pos, length = getattr(err, "position", None), getattr(err, "length", None)
    if not isinstance(pos, int) or not isinstance(length, int) or length < 1:
        return f"no position ({type(err).__name__}: {err})"
    if not 0 <= pos <= len(expr):
        return f"position {pos} outside the expression"
    lines = str(err).split("\n")
    if len(lines) < 3 or lines[-2] != "  " + "".join(" " if c.isspace() else c for c in expr):
        return f"text does not show the expression: {str(err)!r}"
    caret = lines[-1]
    if caret[2:].index("^") != pos or set(caret[2:].strip()) != {"^"}:
        return f"caret line {caret!r} is not at position {pos}"
    if not isinstance(err, FilterSyntaxError):
        start, end = pos, min(pos + length, len(expr))
        if start < len(expr) and (_cuts(expr, start) or _cuts(expr, end)):
            return f"span {expr[start:end]!r} cuts a word"
    return None


def test_every_error_over_the_corpus_carries_a_position(expressions):
    problems = []
    semantic = syntax = 0
    for dlt in _link_types():
        for expr in expressions:
            try:
                compile_to_tuples(expr, dlt)
            except FilterError as err:
                if isinstance(err, FilterSyntaxError):
                    syntax += 1
                else:
                    semantic += 1
                problem = _check(expr, err)
                if problem:
                    problems.append((dlt, expr, problem))
    assert not problems, problems[:10]
    # the check saw both kinds, from the parser and from the code generator
    assert syntax > 100 and semantic > 1000, (syntax, semantic)
