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


def _random_frame(rng):
    """An Ethernet frame whose headers are mostly plausible (so that the compiled printer takes
    it) and whose fields and lengths are random: VLAN tags, IPv4/IPv6, TCP options, DNS, ARP."""
    kind = rng.choice(("tcp", "udp", "dns", "icmp", "icmp6", "arp", "stp", "text"))
    eth = bytes(12) + (b"\x81\x00" + rng.randbytes(2) if rng.random() < 0.2 else b"")
    if kind == "arp":
        return eth + b"\x08\x06" + bytes([0, 1, 8, 0, 6, 4, 0, rng.choice((1, 2, 3))]) + rng.randbytes(rng.randrange(0, 30))
    if kind == "stp":
        return bytes(12) + rng.randrange(0, 1501).to_bytes(2, "big") + b"\x42\x42\x03\x00\x00" + bytes(
            [rng.choice((0, 2, 3, 5)), rng.choice((0, 2, 0x80))]) + rng.randbytes(rng.randrange(0, 40))
    v6 = kind == "icmp6" or rng.random() < 0.3
    proto = {"tcp": 6, "text": 6, "udp": 17, "dns": 17, "icmp": 1, "icmp6": 58}[kind]
    if kind == "tcp" or kind == "text":
        port = rng.choice((80, 8080, 25, 21, 22, 23, 443, 53, 554, 6633, rng.randrange(65536)))
        opts = rng.choice((b"", b"\x02\x04\x05\xb4", b"\x01\x01\x08\x0a" + rng.randbytes(8), b"\x01\x03\x03\x07",
                           b"\x04\x02\x01\x01", b"\x05\x0a" + rng.randbytes(8), rng.randbytes(rng.randrange(0, 12))))
        opts += bytes(-len(opts) % 4)
        payload = rng.choice((b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"HTTP/1.1 200 OK\r\n", b"220 ready\r\n",
                              b"SSH-2.0-x\r\n", rng.randbytes(rng.randrange(0, 40)), b"GET /x"))
        l4 = (port.to_bytes(2, "big") + rng.randbytes(2) + rng.randbytes(8) + bytes([(5 + len(opts) // 4) << 4])
              + rng.randbytes(1) + rng.randbytes(6) + opts + payload)
    elif kind in ("udp", "dns"):
        port = rng.choice((53, 5353, 123, 514, 161, rng.randrange(65536)))
        if kind == "dns":
            payload = (rng.randbytes(2) + rng.choice((b"\x01\x00", b"\x81\x80", rng.randbytes(2)))
                       + bytes([0, rng.choice((0, 1, 2)), 0, rng.choice((0, 1, 3)), 0, 0, 0, rng.choice((0, 1))])
                       + rng.choice((b"\x03www\x07example\x03com\x00", b"\xc0\x0c", b"\x00", rng.randbytes(6)))
                       + rng.randbytes(rng.randrange(0, 40)))
        else:
            payload = rng.choice((b"<13>hello", b"\x23" + bytes(47), rng.randbytes(rng.randrange(0, 30))))
        ulen = len(payload) + 8 + rng.choice((0, 0, 0, -3, 5))
        l4 = rng.randbytes(2) + port.to_bytes(2, "big") + max(0, ulen).to_bytes(2, "big") + rng.randbytes(2) + payload
    else:
        l4 = bytes([rng.choice((0, 8, 11, 3, 128, 129, 133, 134, 135, 136, 143)), rng.randrange(3)]) + rng.randbytes(
            rng.randrange(2, 40))
    if v6:
        ip = (b"\x60" + rng.randbytes(3) + (len(l4) + rng.choice((0, 0, -2, 4))).to_bytes(2, "big") + bytes([proto])
              + rng.randbytes(33))
        return eth + b"\x86\xdd" + ip + l4
    ihl = rng.choice((5, 5, 5, 6, 4))
    total = 4 * ihl + len(l4) + rng.choice((0, 0, 0, -3, 9))
    frag = rng.choice((0, 0, 0, 0x4000, 0x2000, 0x0010))
    ip = (bytes([0x40 | ihl, 0]) + max(0, total).to_bytes(2, "big") + rng.randbytes(2) + frag.to_bytes(2, "big")
          + bytes([64, proto]) + rng.randbytes(10) + rng.randbytes(4 * max(0, ihl - 5)))
    return eth + b"\x08\x00" + ip + l4


def test_compiled_and_python_printers_agree_on_random_frames():
    rng = random.Random(1600)
    packets, wirelens = [], []
    for _ in range(20000):
        frame = _random_frame(rng)
        cut = len(frame) if rng.random() < 0.8 else rng.randrange(len(frame) + 1)
        packets.append(frame[:cut])
        wirelens.append(len(frame) + rng.choice((0, 0, 0, 4)))
    batches = [PacketBatch.from_packets(packets[i:i + 4096], wirelens=wirelens[i:i + 4096], linktype=1)
               for i in range(0, len(packets), 4096)]
    assert _text(batches, True) == _text(batches, False)
