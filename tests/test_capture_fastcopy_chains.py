"""A mapped chunk is walked as several chains at once (pfilter/capture/_fastcopy.pyx,
_walk_chains): its bytes cut into spans, each span's first record guessed, the spans' records
walked in turn and kept only where the span before ended exactly on the guess. The records, and
so the output, the counts and where a pass stops, are those of a walk with one chain: checked
here against a read pass (which never walks in chains) on plain captures (every guess right),
on captures whose records carry chains of fake record headers in their data (guesses wrong
wherever a span starts inside one), and on captures that stop the walk inside a span (a caplen
above the limit, a file cut inside a record).
"""
import os
import random
import struct

import pytest

import pfilter
from pfilter.capture import _fastcopy
from pfilter.capture.fastpath import fast_filter_file
from pfilter.capture.files import RESYNC_DEPTH, RESYNC_SPAN
from test_capture_fastcopy_guess import _fake_chain
from test_capture_fastpath import packet, write_pcap
from test_fastpath_mapped import _program

EXPRESSIONS = ["", "tcp", "udp port 53 or icmp"]
CHUNK = 1 << 18             # four spans of 64 KB a chunk


def _capture(path, n=9000, fakes=False, big=None, tail=b"", seed=3):
    """n records, 400 distinct ones repeated (building packets is the slow part); fakes: every
    9th record's data holds a chain of fake record headers longer than a span's guess checks;
    big: (index, caplen) of a record larger than the limit the test passes."""
    rng = random.Random(seed)
    distinct = [packet(rng) for _ in range(400)]
    fake = [packet(rng, size=0) + _fake_chain(40 + rng.randrange(80)) for _ in range(20)]
    recs = []
    for i in range(n):
        if big is not None and i == big[0]:
            recs.append((bytes(big[1]), None, None))
        elif fakes and i % 9 == 4:
            recs.append((fake[i % len(fake)], None, None))
        else:
            recs.append((distinct[i % len(distinct)], None, None))
    return write_pcap(path, recs, tail=tail)


def _pass(src, dst, expr, mapped, workers=1, limit=262144):
    """(status, read, matched, bytes, stop_offset, output bytes) of a pass, and its chains."""
    decoded, clear = _program(expr)
    fd = os.open(src, os.O_RDONLY)
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(out, open(src, "rb").read(24))
        job = _fastcopy.PcapCopy(decoded, clear, fd, out, 24, limit, out_size=24, chunk=CHUNK, workers=workers,
                                 mapped=mapped, guess_depth=RESYNC_DEPTH, guess_span=RESYNC_SPAN)
        status = job.run()
    finally:
        os.close(fd)
        os.close(out)
    return (status, job.read, job.matched, job.bytes, job.stop_offset, open(dst, "rb").read()), job.chains


@pytest.mark.parametrize("fakes", [False, True])
@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_chains_walk_the_records_one_chain_walks(tmp_path, fakes, expr):
    src = _capture(tmp_path / "in.pcap", fakes=fakes)
    assert os.path.getsize(src) > 4 * CHUNK
    want, chains = _pass(src, tmp_path / "read.pcap", expr, mapped=False)
    assert want[0] == "eof" and chains == (0, 0)           # a read pass: one chain
    for workers in (1, 2):
        got, (kept, missed) = _pass(src, tmp_path / f"mapped{workers}.pcap", expr, mapped=True, workers=workers)
        assert got == want, workers
        assert kept > 0
        if fakes:
            assert missed > 0                               # spans that start inside a fake chain
        else:
            assert missed == 0


@pytest.mark.parametrize("stop", ["anomaly", "truncated"])
def test_a_walk_stopped_inside_a_span_stops_where_one_chain_stops(tmp_path, stop):
    # the record that stops the walk: in the second span of the fourth chunk (a caplen above the
    # limit), or in the last span of the last chunk, a chunk of three spans (the file's end)
    if stop == "anomaly":
        src = _capture(tmp_path / "in.pcap", big=(1900, 3000))
    else:
        src = _capture(tmp_path / "in.pcap", n=4400, tail=struct.pack("<IIII", 1700009999, 0, 500, 500) + b"x" * 100)
    want, _ = _pass(src, tmp_path / "read.pcap", "tcp", mapped=False, limit=2000)
    got, (kept, _missed) = _pass(src, tmp_path / "mapped.pcap", "tcp", mapped=True, limit=2000)
    assert want[0] == stop and got == want
    assert kept > 0


def test_the_command_walks_in_chains(tmp_path, monkeypatch):
    """pfilter -r -w (one worker) gives its pass the file's first record time: its chunks are
    walked in chains."""
    src = _capture(tmp_path / "in.pcap")
    jobs = []
    real = _fastcopy.PcapCopy

    def make(*args, **kw):
        jobs.append(real(*args, **kw))
        return jobs[-1]
    monkeypatch.setattr(_fastcopy, "PcapCopy", make)
    program = lambda lt, snap, swapped: pfilter.compile("tcp", linktype=lt, snaplen=snap).to_tuples()
    stats = fast_filter_file(src, str(tmp_path / "out.pcap"), program, workers=1)
    assert stats is not None and len(jobs) == 1 and jobs[0].chains[0] > 0
    monkeypatch.setattr(_fastcopy, "PcapCopy", real)
    want, _ = _pass(src, tmp_path / "read.pcap", "tcp", mapped=False)
    assert (tmp_path / "out.pcap").read_bytes() == want[-1]


@pytest.mark.parametrize("seed", range(16))
def test_damaged_captures_stop_where_one_chain_stops(tmp_path, seed):
    """Record headers damaged at random places past the first chunk (a caplen made huge, a few
    bytes longer or shorter, a header overwritten): the walk stops at a caplen above the limit,
    runs out of sync through packet data, or meets the file's end inside a record, and the spans
    after the damage guess wrong. A pass walking in chains gives the status, stop offset, counts
    and output of a read pass."""
    rng = random.Random(seed)
    data = bytearray(_capture(tmp_path / "in.pcap", seed=seed).read_bytes())
    heads, at = [], 24
    while at + 16 <= len(data):
        heads.append(at)
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    for _ in range(rng.choice([1, 2, 3])):
        at = rng.choice([h for h in heads if h > CHUNK])
        cap = struct.unpack_from("<I", data, at + 8)[0]
        how = rng.randrange(4)
        if how == 0:
            struct.pack_into("<I", data, at + 8, rng.randrange(3000, 400000))
        elif how == 1:
            struct.pack_into("<I", data, at + 8, cap + rng.randrange(1, 40))
        elif how == 2:
            struct.pack_into("<I", data, at + 8, max(0, cap - rng.randrange(1, 16)))
        else:
            data[at:at + 16] = bytes(rng.getrandbits(8) for _ in range(16))
    src = tmp_path / "damaged.pcap"
    src.write_bytes(bytes(data))
    for limit in (262144, 2000):
        want, _ = _pass(src, tmp_path / "read.pcap", "tcp", mapped=False, limit=limit)
        got, _ = _pass(src, tmp_path / "mapped.pcap", "tcp", mapped=True, limit=limit)
        assert got == want, (limit, want[:5], got[:5])
