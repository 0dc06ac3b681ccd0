"""The compiler's programs select exactly the packets libpcap 1.10.3's select, on real captures.

For every corpus capture libpcap reads (grouped by link type and snapshot length) and every
corpus expression for that link type, pfilter's program runs on pfilter's VM and libpcap's
unoptimized program runs on libpcap's own bpf_filter(); the return values must be equal.
This covers the expressions whose bytecode is not instruction-for-instruction libpcap's, and
the optimized programs pfilter.compile() returns by default.
"""
import pytest

import reference
from pfilter.compiler.driver import compile_expression
from pfilter.errors import FilterError

# Deliberate differences from libpcap 1.10.3 (README, "Differences from tcpdump").
DIVERGENT = {"byte 0 & 1"}

_DLT_NAMES = {1: "EN10MB", 12: "RAW", 113: "LINUX_SLL", 276: "LINUX_SLL2", 0: "NULL", 108: "LOOP",
              127: "IEEE802_11_RADIO", 105: "IEEE802_11", 9: "PPP", 117: "PFLOG"}


@pytest.fixture(scope="module")
def corpus():
    """{dlt: (PacketBatch of every corpus packet of that link type, a capture path)}."""
    import pfilter
    groups = {}
    for row, dlt, _snap, pkts in reference.readable_captures():
        if pkts:
            entry = groups.setdefault(dlt, ([], row["file"]))
            entry[0].extend(pkts)
    return {dlt: (pfilter.PacketBatch.from_packets([p for p, _, _ in pkts], wirelens=[w for _, w, _ in pkts],
                                                   linktype=dlt), path)
            for dlt, (pkts, path) in groups.items()}


@pytest.fixture(scope="module")
def expressions():
    return reference.corpus_expressions()


def _ref_program(expr, path):
    # libpcap compiling for a savefile, as `tcpdump -r` and the agreement tool do
    try:
        return list(reference.compile_for_capture(str(path), expr, optimize=False))
    except reference.RefError:
        return None


@pytest.mark.parametrize("optimize", [False, True], ids=["unoptimized", "optimized"])
def test_programs_agree_with_libpcap_on_every_corpus_packet(corpus, expressions, optimize):
    compared = 0
    disagreements = []
    for dlt, (batch, path) in sorted(corpus.items()):
        name = _DLT_NAMES.get(dlt)
        for expr in expressions.get(name, []):
            if expr in DIVERGENT:
                continue
            ref = _ref_program(expr, path)
            try:
                prog = compile_expression(expr, linktype=dlt, optimize=optimize)
            except FilterError as err:
                if ref is not None:
                    disagreements.append((name, expr, f"pfilter refuses: {err}"))
                continue
            if ref is None:
                disagreements.append((name, expr, "libpcap refuses, pfilter compiles"))
                continue
            ours = prog.run_batch(batch) != 0
            theirs = reference.bpf_filter_batch(ref, batch) != 0
            if (ours != theirs).any():
                disagreements.append((name, expr, f"{int((ours != theirs).sum())} packets differ"))
            compared += len(batch)
    assert not disagreements, disagreements[:20]
    assert compared > 1_000_000


def test_byte_and_follows_the_manual_not_libpcaps_unloaded_accumulator(corpus):
    # Divergence: libpcap's `byte 0 & 1` never matches; pfilter tests the byte, like ether[0] & 1 != 0.
    batch = corpus[1][0]
    ours = compile_expression("byte 0 & 1").run_batch(batch)
    manual = compile_expression("ether[0] & 1 != 0").run_batch(batch)
    assert ((ours != 0) == (manual != 0)).all() and (ours != 0).any()


def test_byte_operators_on_a_handmade_frame():
    frame = bytes([0x01, 0x80]) + bytes(58)
    assert compile_expression("byte 0 & 1").run(frame)
    assert not compile_expression("byte 1 & 1").run(frame)
    assert compile_expression("byte 1 | 0").run(frame)
    assert not compile_expression("byte 2 | 0").run(frame)
    assert compile_expression("byte 1 > 0x7f").run(frame)
    assert compile_expression("byte 1 < 0x81").run(frame)
    assert compile_expression("byte 0 = 1").run(frame)
