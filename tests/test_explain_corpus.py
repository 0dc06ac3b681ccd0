"""Program.explain on the corpus: the primitive the explanation names, compiled alone, gives on
that packet the verdict the explanation states for it; the caret sits under its span; the
verdict is the program's."""
import functools

import pytest

import pfilter
from pfilter.compiler import ast as A
from pfilter.compiler.emit import linearize
from pfilter.compiler.gencode import Codegen
from pfilter.compiler.linkctx import link_context
from pfilter.compiler.parser import parse
from pfilter.linktypes import linktype_number

import reference as ref

# primitives that change how the rest of the expression is compiled (offsets after them move):
# a primitive to their right means something else compiled alone
_SHIFTING = (A.Vlan, A.Mpls, A.Pppoes, A.Geneve)


def _nodes(root):
    stack, out = [root], []
    while stack:
        n = stack.pop()
        out.append(n)
        for name in ("left", "right", "operand"):
            c = getattr(n, name, None)
            if isinstance(c, A.Node):
                stack.append(c)
    return out


@functools.lru_cache(maxsize=None)
def _alone(expr, span, dlt):
    """The primitive at `span` of `expr` compiled on its own (its qualifiers as resolved in the
    expression), or None when its meaning depends on what precedes it."""
    nodes = _nodes(parse(expr))
    if any(isinstance(n, _SHIFTING) and n.pos < span[0] for n in nodes):
        return None
    node = next(n for n in nodes if (n.pos, n.end) == span and not isinstance(n, (A.And, A.Or, A.Not)))
    root = Codegen(link_context(dlt), snaplen=262144).compile(node)
    return pfilter.Program.from_tuples(linearize(root))


@pytest.fixture(scope="module")
def pools():
    return ref.corpus_pools()


def _sample(prog, batch, per_verdict=4):
    """Up to per_verdict accepted and rejected packets with distinct path lengths."""
    first, out = ref.distinct_paths(prog, batch)
    acc = [i for i in first if out[i]][:per_verdict]
    rej = [i for i in first if not out[i]][:per_verdict]
    return acc + rej


@pytest.mark.parametrize("dlt", ref.corpus_params(ref.corpus_dlts_with_captures))
def test_explanations_name_a_primitive_whose_own_verdict_is_the_stated_one(dlt, pools):
    n = linktype_number(dlt)
    pool = pools[n]
    checked = alone_checked = 0
    for e in ref.corpus_expressions()[dlt]:
        try:
            prog = pfilter.compile(e, linktype=dlt)
        except pfilter.FilterError:
            continue
        for i in _sample(prog, pool):
            whole = pool.packet(i)
            for pkt in (whole, whole[:max(len(whole) - 20, 0)]):
                x = prog.explain(pkt)
                assert x.verdict == (prog.run(pkt) != 0), (e, i)
                checked += 1
                if x.span is None:
                    assert not e.strip() or x.reason
                    continue
                start, end = x.span
                assert 0 <= start < end <= len(e)
                text, carets = x.caret().split("\n")
                assert text == e and carets == " " * start + "^" * (end - start), (e, x.span)
                assert str(x).startswith(("yes: `", "no: `")) and f"`{e[start:end]}`" in x.headline()
                alone = _alone(e, x.span, n)
                if alone is not None:
                    assert (alone.run(pkt) != 0) == x.primitive_verdict, (e, e[start:end], i, str(x))
                    alone_checked += 1
    assert checked and alone_checked >= checked // 2


def test_example_from_the_issue():
    eth = bytes.fromhex("ffffffffffff000000000001080045000028000100004006000"
                        "0c0a80001c0a80002c82201bb00000000000000005002200000000000")
    x = pfilter.compile("tcp port 80 and not host 10.0.0.1").explain(eth)
    assert (x.verdict, x.span, x.primitive_verdict) == (False, (0, 11), False)
    assert x.headline() == "no: `tcp port 80`: TCP ports 51234 -> 443, neither is 80"
    assert x.caret().splitlines()[1] == "^" * 11


def test_a_primitive_under_not_states_its_own_verdict():
    eth = bytes.fromhex("ffffffffffff000000000001080045000028000100004006000"
                        "0c0a800010a000001c82200500000000000000000500220000000 0000".replace(" ", ""))
    x = pfilter.compile("tcp port 80 and not host 10.0.0.1").explain(eth)
    assert x.verdict is False and x.primitive == "host 10.0.0.1" and x.primitive_verdict is True
    assert "10.0.0.1" in x.reason


def test_a_load_past_the_end_is_named_as_the_reason():
    eth = bytes.fromhex("ffffffffffff000000000001080045000028000100004006000"
                        "0c0a80001c0a80002")
    x = pfilter.compile("not tcp port 80").explain(eth)
    assert x.verdict is False and x.aborted and x.primitive_verdict is False
    assert "past the end" in x.reason


def test_explain_needs_a_compiled_expression():
    prog = pfilter.Program.from_asm("ret #1")
    with pytest.raises(pfilter.FilterError, match="compiled from an expression"):
        prog.explain(b"")


def test_origins_survive_the_optimizer_and_merged_instructions_keep_every_origin():
    e = "host 10.0.0.1 or host 10.0.0.2"
    prog = pfilter.compile(e)
    spans = set().union(*prog.origins)
    assert spans == {(0, 13), (17, 30)}
    # the EtherType test the two primitives share is one instruction with both origins
    assert any(len(o) == 2 for o in prog.origins)
    assert prog.origins[-1] == frozenset()      # the final ret belongs to no primitive
    assert pfilter.Program.from_tuples(prog.to_tuples()).origins is None
