"""Several workers walk their chunks from a guess at each chunk's first record (PcapCopy
guess_depth: resync's rule, pfilter.capture.files.RESYNC_DEPTH), without waiting for the walk
of the chunk before; the walk turn keeps a walk whose guess was right and walks the chunk again
otherwise. Both happen here, and the output is byte for byte the one-worker output: on plain
captures (guesses right), and on captures whose large records carry chains of fake record
headers in their data (guesses wrong wherever a chunk starts inside one), mapped or read.
"""
import os
import random
import struct

import pytest

from pfilter.capture import _fastcopy
from pfilter.capture.files import RESYNC_DEPTH, RESYNC_SPAN
from test_capture_fastpath import packet, write_pcap
from test_fastpath_mapped import _program

EXPRESSIONS = ["", "tcp", "udp port 53 or icmp"]


def _fake_chain(n, first_ts=1700000000):
    """Data that reads as n sane pcap records (16-byte headers, 60-byte packets)."""
    out = b""
    for i in range(n):
        out += struct.pack("<IIII", first_ts + i, 0, 60, 60) + bytes([0x5A]) * 60
    return out


def _capture(tmp_path, fakes):
    rng = random.Random(11)
    recs = []
    for i in range(3000):
        if fakes and i % 25 == 7:
            # a record (an Ethernet frame) whose data holds more fake records than the guess checks
            recs.append((packet(rng, size=0) + _fake_chain(RESYNC_DEPTH + 40 + rng.randrange(60)), None, None))
        else:
            recs.append((packet(rng), None, None))
    return write_pcap(tmp_path / f"in-{fakes}.pcap", recs)


def _pass(src, dst, expr, workers, mapped, guess):
    decoded, clear = _program(expr)
    fd = os.open(src, os.O_RDONLY)
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(out, open(src, "rb").read(24))
        job = _fastcopy.PcapCopy(decoded, clear, fd, out, 24, 262144, out_size=24, chunk=1 << 16, workers=workers,
                                 mapped=mapped, guess_depth=RESYNC_DEPTH if guess else 0, guess_span=RESYNC_SPAN)
        assert job.run() == "eof"
    finally:
        os.close(fd)
        os.close(out)
    return open(dst, "rb").read(), (job.read, job.matched, job.bytes, job.done), job.guesses


@pytest.mark.parametrize("fakes", [False, True])
@pytest.mark.parametrize("mapped", [True, False])
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_guessed_walks_write_what_one_worker_writes(tmp_path, fakes, mapped, expr):
    src = _capture(tmp_path, fakes)
    want = _pass(src, tmp_path / "one.pcap", expr, 1, mapped, False)
    assert want[2] == (0, 0)                      # one worker: no guess
    for workers in (2, 3):
        got = _pass(src, tmp_path / f"w{workers}.pcap", expr, workers, mapped, True)
        assert got[:2] == want[:2]
        kept, missed = got[2]
        assert kept > 0
        if fakes:
            assert missed > 0                     # chunks that start inside a fake chain
        else:
            assert missed == 0
    assert _pass(src, tmp_path / "noguess.pcap", expr, 2, mapped, False)[2] == (0, 0)
