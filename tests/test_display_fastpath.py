"""The compiled printer (pfilter/display/_fast.pyx) against the Python printer it stands in for:
the same text for every packet of the corpus and of damaged variants (cut headers, odd lengths,
TCP options, VLAN tags), with the TCP state shared between the two in packet order."""
import io
import random

import pytest

import pfilter
import reference as ref
from pfilter import display
from pfilter.batch import PacketBatch

pytestmark = pytest.mark.skipif(display._fast is None, reason="pfilter.display._fast is not built")


def _text(batches, fast, **opts):
    saved = display._fast
    try:
        if not fast:
            display._fast = None
        p = display.Printer(**opts)
        out = io.StringIO()
        for b in batches:
            p.write_batch(b, range(len(b)), out)
        return out.getvalue()
    finally:
        display._fast = saved


def _corpus_batches(row):
    try:
        with pfilter.open(row["file"]) as cap:
            return list(cap)
    except pfilter.FilterError:
        return []


@pytest.mark.parametrize("opts", [{}, {"t": 4}, {"t": 2, "S": True}, {"t": 1}], ids=["plain", "tttt", "tt-S", "t"])
def test_compiled_and_python_printers_agree_on_the_corpus(opts):
    done = 0
    for row in ref.corpus_pcaps():
        if row["linktype"] != "1":
            continue
        batches = _corpus_batches(row)
        if batches:
            assert _text(batches, True, **opts) == _text(batches, False, **opts), row["copied_as"]
            done += 1
    assert done > 300


def test_compiled_and_python_printers_agree_on_damaged_packets():
    """Every corpus Ethernet packet cut at random lengths and with random bytes changed."""
    rng = random.Random(16)
    packets, wirelens = [], []
    for row in ref.corpus_pcaps():
        if row["linktype"] != "1":
            continue
        for b in _corpus_batches(row)[:1]:
            for i in range(min(len(b), 20)):
                pkt = bytearray(b.packet(i))
                for _ in range(3):
                    cut = bytearray(pkt[:rng.randrange(0, len(pkt) + 1)])
                    if cut and rng.random() < 0.5:
                        cut[rng.randrange(len(cut))] = rng.randrange(256)
                    packets.append(bytes(cut))
                    wirelens.append(len(pkt) + rng.choice((0, 0, 7)))
    batch = PacketBatch.from_packets(packets, wirelens=wirelens, linktype=1)
    assert _text([batch], True) == _text([batch], False)
