"""Fuzzing pfilter.compile: random token strings, mutated and composed corpus expressions, hostile
arguments and very long or deep expressions. Only FilterError subclasses may escape; a Program
that comes out is valid, its optimized and unoptimized forms agree, and both VMs agree on it."""
import random

from hypothesis import strategies as st

import fuzzlib
import pfilter
import seeds
from pfilter import _pyvm, program
from pfilter.errors import FilterError
from test_compiler_random import LINK_TYPES
from test_parser_fuzz import VOCABULARY, mutated_corpus, token_strings

OPS = [" and ", " or ", " && ", " || ", " ", "and not "]


@st.composite
def composed(draw):
    """Corpus expressions of one link type joined with and/or/not and parentheses."""
    picks = draw(st.lists(st.sampled_from(seeds.expressions()), min_size=1, max_size=4))
    expr = picks[0][1]
    for _, e in picks[1:]:
        left = f"({expr})" if draw(st.booleans()) else expr
        right = f"not ({e})" if draw(st.integers(0, 3)) == 0 else e
        expr = left + draw(st.sampled_from(OPS)) + right
    return picks[0][0], expr


@st.composite
def mutated(draw):
    """A corpus expression (any link type) with characters or tokens inserted, deleted, swapped."""
    dlt, text = draw(st.sampled_from(seeds.expressions()))
    numbers = ["0", "9", "4294967296", "-1", "0x", "255.", ":", "/33"]
    return dlt, fuzzlib.mutate(draw, text, draw(st.integers(1, 3)), (" ", VOCABULARY), ("", numbers))


linktypes = st.one_of(st.sampled_from(LINK_TYPES), st.sampled_from(["EN10MB", "RAW", "LINUX_SLL", "NULL",
                                                                    "IEEE802_11_RADIO", "PPP"]),
                      st.integers(0, 300))
expressions = st.one_of(token_strings.map(lambda t: (None, t)), mutated_corpus().map(lambda t: (None, t)),
                        composed(), mutated(), st.sampled_from(seeds.expressions()),
                        st.text(max_size=40).map(lambda t: (None, t)))


@st.composite
def compile_inputs(draw):
    own, expr = draw(expressions)
    linktype = own if own is not None and draw(st.integers(0, 3)) else draw(linktypes)
    return (expr, linktype, draw(st.sampled_from([262144, 65535, 96, 68, 1])),
            draw(st.sampled_from([True, False, "shareable"])))


def _packets():
    """Seed packets to run compiled programs on: generated traffic and a few odd lengths."""
    pkts = seeds.pcap_packets(seeds.captures()[0])[:24] + [b"", b"\x00", bytes(13), bytes(range(54)), b"\xff" * 80]
    return pfilter.PacketBatch.from_packets(pkts, wirelens=[len(p) + (i % 3) for i, p in enumerate(pkts)])


_BATCH = []


def packets():
    if not _BATCH:
        _BATCH.append(_packets())
    return _BATCH[0]


def run_both_vms(prog, batch):
    """The program's return values on the batch, checked equal on the Cython and Python VMs (the
    random packets taken as the program's link type: a Program refuses others)."""
    batch.linktype = prog.linktype if prog.linktype is not None else 1
    fast = prog.run_batch(batch)
    if program._cvm is not None and len(prog) <= 600:
        tuples = prog.to_tuples()
        slow = [_pyvm.run_one(tuples, batch.packet(i), int(batch.wirelen[i])) for i in range(len(batch))]
        assert fast.tolist() == slow, "the Cython and Python VMs differ"
    return fast


@fuzzlib.target("compile", compile_inputs())
def check_compile(x):
    expr, linktype, snaplen, optimize = x
    prog = fuzzlib.outcome(pfilter.compile, expr, linktype=linktype, snaplen=snaplen, optimize=optimize,
                           allowed=FilterError)
    if isinstance(prog, FilterError):
        str(prog)
        return
    assert isinstance(prog, pfilter.Program)
    tuples = prog.to_tuples()
    assert pfilter.Program.from_tuples(tuples, max_insns=max(4096, len(tuples))) == prog
    prog.dump("d")
    verdicts = run_both_vms(prog, packets())
    if optimize is not False:
        plain = pfilter.compile(expr, linktype=linktype, snaplen=snaplen, optimize=False)
        assert plain.run_batch(packets()).tolist() == verdicts.tolist(), "optimized and unoptimized differ"


hostile = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                    st.binary(max_size=8), st.text(max_size=8), st.lists(st.integers(0, 9), max_size=2),
                    st.just(object()).map(lambda _: object()))


@st.composite
def hostile_arguments(draw):
    good_expr = draw(st.sampled_from(seeds.expressions()))[1]
    expr = draw(st.one_of(st.just(good_expr), hostile, st.just(good_expr.encode())))
    linktype = draw(st.one_of(linktypes, hostile))
    snaplen = draw(st.one_of(st.sampled_from([262144, 0, -1, 2**32, 2**31]), hostile))
    optimize = draw(st.one_of(st.sampled_from([True, False, "shareable"]), hostile))
    extra = draw(st.one_of(st.just({}), st.builds(lambda v: {"netmask": v}, st.one_of(hostile, st.sampled_from(
        ["255.255.255.0", 0xFFFFFF00, "10.0.0.0/8"])))))
    return expr, linktype, snaplen, optimize, extra


@fuzzlib.target("compile_args", hostile_arguments())
def check_compile_args(x):
    expr, linktype, snaplen, optimize, extra = x
    prog = fuzzlib.outcome(pfilter.compile, expr, linktype=linktype, snaplen=snaplen, optimize=optimize,
                           allowed=FilterError, **extra)
    assert isinstance(prog, (FilterError, pfilter.Program))


TERMS = ["tcp port {i}", "host 10.{a}.{b}.{c}", "udp dst port {i}", "net 10.{a}.{b}.0/24",
         "ip6 host 2001:db8::{i:x}", "ether host 0:1:2:3:{a:x}:{b:x}", "vlan {j}", "len > {i}"]


@st.composite
def long_expressions(draw):
    """Flat chains of hundreds of primitives, long arithmetic chains, deep parentheses."""
    kind = draw(st.sampled_from(["chain", "chain", "arith", "nest", "mixed"]))
    n = draw(st.integers(1, 1000))
    rng = random.Random(draw(st.integers(0, 2**32)))
    term = lambda i: rng.choice(TERMS).format(i=i % 65536, a=rng.randrange(256), b=rng.randrange(256),
                                              c=rng.randrange(256), j=i % 4095)
    if kind == "chain":
        return draw(st.sampled_from([" or ", " and ", " or not "])).join(term(i) for i in range(1, n + 1))
    if kind == "arith":
        return "len" + "".join(f" {rng.choice('+-*|&^')} {rng.randrange(1, 9)}" for _ in range(n * 10)) + " > 0"
    if kind == "nest":
        d = draw(st.integers(1, 150))
        return "(" * d + term(1) + ")" * d
    out = term(0)
    for i in range(1, n // 4 + 1):
        out = f"({out}) {rng.choice(['and', 'or'])} {'not ' * rng.randrange(3)}{term(i)}"
    return out


@fuzzlib.target("compile_long", st.tuples(long_expressions(), st.sampled_from([True, False])),
                examples=4, input_seconds=120)
def check_compile_long(x):
    expr, optimize = x
    prog = fuzzlib.outcome(pfilter.compile, expr, optimize=optimize, allowed=FilterError)
    assert isinstance(prog, (FilterError, pfilter.Program))


def test_fuzz_compile():
    fuzzlib.run("compile")


def test_fuzz_compile_hostile_arguments():
    fuzzlib.run("compile_args")


def test_fuzz_compile_long_and_deep_expressions():
    fuzzlib.run("compile_long")
