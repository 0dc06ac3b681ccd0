"""The capture index's header walk (pfilter/capture/_fastcopy.pyx, record_index and
record_window): a classic pcap file in host byte order is mapped a window at a time and walked in
chains from guessed record boundaries, as the fast path's mapped chunks are. Its records, where it
stops and why must be those of a plain walk, one header after the other: checked here against
such a walk written out in Python and against the reading walk (mapped=False), on captures whose
guesses hold, captures whose data carries chains of fake record headers (guesses wrong), records
longer than a window, files cut inside a record or a header, a stop offset, arrays that fill up
before the end, nanosecond and byte-swapped files. record_window (the --after/--before byte range,
no array kept) is checked against the window found in the index build_index makes.
"""
import os
import random
import struct
import subprocess
import sys

import numpy as np
import pytest

from pfilter.capture import _fastcopy
from pfilter.capture.files import RESYNC_SPAN
from pfilter.capture import index
from pfilter.capture.index import build_index, window_range
from test_capture_fastcopy_guess import _fake_chain

WINDOW = 1 << 18            # four chains of 64 KB a window
T0 = 1_700_000_000


def _write(path, records, nsec=False, order="<", tail=b""):
    """records: (seconds, fraction, data, caplen written or None); a classic pcap file."""
    with open(path, "wb") as f:
        f.write(struct.pack(order + "IHHiIII", 0xA1B23C4D if nsec else 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for sec, frac, data, cap in records:
            f.write(struct.pack(order + "IIII", sec, frac, len(data) if cap is None else cap, len(data) + 4) + data)
        f.write(tail)
    return path


def _records(n=12000, fakes=False, big=(), seed=5, times=None, nsec=False):
    """n records of 60-1500 bytes; fakes: every 7th record's data a chain of fake headers; big:
    indexes of records of 3 MB (longer than a window and the room mapped after it); times: the
    seconds of each record (default: one a millisecond)."""
    rng = random.Random(seed)
    unit = 1_000_000_000 if nsec else 1_000_000
    out = []
    for i in range(n):
        if i in big:
            data = bytes(3 << 20)
        elif fakes and i % 7 == 3:
            data = bytes(14) + _fake_chain(20 + rng.randrange(40))
        else:
            data = rng.randbytes(rng.choice([60, 200, 590, 1500]))
        sec, frac = (T0 + i // 1000, (i % 1000) * (unit // 1000)) if times is None else times[i]
        out.append((sec, frac, data, None))
    return out


def _plain_walk(path, end=-1, order="<"):
    """(offsets, seconds, fractions, caplens, wirelens), offset reached, status: one header after
    the other, as record_index's contract says."""
    data = open(path, "rb").read()
    size, pos, rows, status = len(data), 24, [], 0
    while not (end >= 0 and pos >= end):
        if pos >= size:
            break
        if size - pos < 16:
            status = 2
            break
        sec, frac, cap, wire = struct.unpack_from(order + "IIII", data, pos)
        rows.append((pos, sec, frac, cap, wire))
        pos += 16 + cap
    cols = list(zip(*rows)) if rows else [()] * 5
    return [np.array(c, t) for c, t in zip(cols, (np.int64, np.int64, np.int64, np.uint32, np.uint32))], pos, status


def _index_walk(path, mapped, room=1 << 20, end=-1, chained=True, swapped=False, nsec=False):
    """record_index called until it stops (arrays of `room` records a call), its results joined."""
    fd = os.open(path, os.O_RDONLY)
    first = int.from_bytes(os.pread(fd, 4, 24), "big" if swapped else "little") if chained else -1
    parts, pos, calls = [], 24, 0
    try:
        while True:
            arrays = [np.empty(room, t) for t in (np.int64, np.int64, np.int64, np.uint32, np.uint32)]
            n, pos, status = _fastcopy.record_index(fd, pos, end, *arrays, swapped, first_sec=first, nsec=nsec,
                                                    guess_span=RESYNC_SPAN, mapped=mapped, window=WINDOW)
            parts.append([a[:n] for a in arrays])
            calls += 1
            if status != 1:
                break
    finally:
        os.close(fd)
    return [np.concatenate([p[k] for p in parts]) for k in range(5)], pos, status, calls


def _same(a, b):
    (ra, pa, sa), (rb, pb, sb) = a[:3], b[:3]
    assert (pa, sa) == (pb, sb)
    for x, y in zip(ra, rb):
        assert np.array_equal(x, y)


@pytest.mark.parametrize("fakes", [False, True])
@pytest.mark.parametrize("nsec", [False, True])
def test_mapped_walk_finds_the_records_a_plain_walk_finds(tmp_path, fakes, nsec):
    src = _write(tmp_path / "in.pcap", _records(fakes=fakes, nsec=nsec), nsec=nsec)
    assert os.path.getsize(src) > 8 * WINDOW
    want = _plain_walk(src)
    assert want[2] == 0 and len(want[0][0]) == 12000
    for chained in (True, False):
        _same(_index_walk(src, True, chained=chained, nsec=nsec), want)
    _same(_index_walk(src, False), want)


@pytest.mark.parametrize("room", [1, 997, 4096])
def test_arrays_that_fill_up_hand_on_where_the_walk_stopped(tmp_path, room):
    src = _write(tmp_path / "in.pcap", _records(n=6000 if room > 1 else 900, fakes=True))
    want = _plain_walk(src)
    got = _index_walk(src, True, room=room)
    _same(got, want)
    assert got[3] >= len(want[0][0]) // room       # (each full call returned status 1)


@pytest.mark.parametrize("tail", [b"", b"\x01" * 7, struct.pack("<IIII", T0 + 99, 0, 5000, 5000) + bytes(100)])
def test_long_records_and_a_cut_end(tmp_path, tail):
    """Records longer than a window and the room after it (their headers read one at a time), a
    file ending inside a header (status 2) or inside a record's data (indexed, as the plain walk
    does: build_index leaves it out)."""
    src = _write(tmp_path / "in.pcap", _records(n=3000, big=(5, 1200, 2999)), tail=tail)
    want = _plain_walk(src)
    assert want[2] == (2 if len(tail) == 7 else 0)
    _same(_index_walk(src, True), want)
    _same(_index_walk(src, False), want)
    index = build_index(src)
    whole = len(want[0][0]) - (1 if len(tail) > 16 else 0)
    assert len(index) == whole and np.array_equal(index.offsets, want[0][0][:whole])


def test_a_stop_offset_ends_the_walk_there(tmp_path):
    src = _write(tmp_path / "in.pcap", _records(n=6000, fakes=True))
    offsets = _plain_walk(src)[0][0]
    for end in (int(offsets[2500]), int(offsets[2500]) + 1, int(offsets[4000]) - 1, 24):
        want = _plain_walk(src, end=end)
        _same(_index_walk(src, True, end=end), want)
        _same(_index_walk(src, False, end=end), want)


def test_a_byte_swapped_file_is_read_and_swapped(tmp_path):
    recs = _records(n=3000)
    src = _write(tmp_path / "in.pcap", recs, order=">")
    want = _plain_walk(src, order=">")
    _same(_index_walk(src, True, swapped=True), want)
    index = build_index(src)
    assert np.array_equal(index.offsets, want[0][0])
    assert list(index.timestamps[:3]) == [(s * 1_000_000 + f) * 1000 for s, f, _d, _c in recs[:3]]


def _same_window(got, path, after, before):
    """got holds the records of the index's window (an empty window: any empty range)."""
    index = build_index(path)
    assert index.sorted
    i, j = index.window(after, before)
    if i == j:
        assert got[0] == got[1]
    else:
        assert got == index.byte_range(i, j)


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("guesses", ["resync", "wrong"])
def test_window_range_is_the_index_window(tmp_path, monkeypatch, workers, guesses):
    """window_range (one walk, or parts walked by threads from resync's guesses) finds the range
    of the index's window; guesses that are not record boundaries (here: a byte past each) cost a
    walk again, never a different range."""
    monkeypatch.setattr(index, "WINDOW_SPLIT_BYTES", 1 << 18)
    if guesses == "wrong":
        real = index.resync
        monkeypatch.setattr(index, "resync", lambda *a, **kw: real(*a, **kw) + 1)
    rng = random.Random(8)
    records = _records(n=8000, fakes=True)
    src = _write(tmp_path / "in.pcap", records)
    lo, hi = T0 * 10**9, (T0 + 8) * 10**9
    cases = [(None, None), (lo - 1, None), (None, hi + 10**9), (hi + 10**9, None), (None, lo)]
    cases += [tuple(sorted(rng.randrange(lo, hi) for _ in range(2))) for _ in range(12)]
    for after, before in cases:
        _same_window(window_range(src, after, before, workers=workers), src, after, before)
    # damage (a record cut by the end of the file, a header no walk takes, inside the window
    # or past it): no range, so that the general path's scan reports it where it is
    cut = _write(tmp_path / "cut.pcap", records, tail=struct.pack("<IIII", T0 + 99, 0, 5000, 5000) + bytes(10))
    bad = list(records)
    bad[6000] = bad[6000][:3] + (0x7FFFFFF0,)
    bad = _write(tmp_path / "bad.pcap", bad[:6001])
    for path in (cut, bad):
        for after, before in cases[:5]:
            assert window_range(path, after, before, workers=workers) is None


def test_record_window_mapped_or_read_says_the_same(tmp_path):
    src = _write(tmp_path / "in.pcap", _records(n=8000, fakes=True))
    offsets = _plain_walk(src)[0][0]
    fd = os.open(src, os.O_RDONLY)
    try:
        for a, b in [(24, -1), (int(offsets[100]), int(offsets[5000])), (int(offsets[100]), int(offsets[5000]) + 3)]:
            for after, before in [(T0 * 10**9, (T0 + 3) * 10**9), ((T0 + 2) * 10**9, (T0 + 9) * 10**9)]:
                got = {mapped: _fastcopy.record_window(fd, after, before, False, False, first_sec=T0,
                                                       guess_span=RESYNC_SPAN, mapped=mapped, window=WINDOW,
                                                       start=a, end=b) for mapped in (True, False)}
                assert got[True] == got[False]
                first_in, first_past, whole_end, first_t, last_t, reached, back = got[True]
                assert not back and first_t <= last_t and whole_end <= reached
                assert reached == (os.path.getsize(src) if b < 0 else int(offsets[offsets >= b][0]))
    finally:
        os.close(fd)


def test_times_that_go_back_where_a_part_starts_have_no_window(tmp_path, monkeypatch):
    """Each part of a shared walk in order, the time going back just where the second part begins:
    the parts are put together and no window is found."""
    monkeypatch.setattr(index, "WINDOW_SPLIT_BYTES", 1 << 18)
    src = _write(tmp_path / "in.pcap", _records(n=5000))
    offsets = _plain_walk(src)[0][0].tolist()
    size = os.path.getsize(src)
    with open(src, "rb") as f:
        from pfilter.capture.files import parse_pcap_header
        guess = index.resync(f.fileno(), parse_pcap_header(f.read(24), str(src)), 24 + (size - 24) // 2, size)
    cut = offsets.index(guess)
    times = [(T0 + i // 1000, (i % 1000) * 1000) for i in range(5000)]
    times[cut:] = [(T0 + i // 1000, (i % 1000) * 1000) for i in range(5000 - cut)]    # (from the start again)
    _write(src, _records(n=5000, times=times))
    assert _plain_walk(src)[0][0].tolist() == offsets
    assert window_range(src, None, None, workers=1) is None
    assert window_range(src, None, None, workers=2) is None


def test_times_that_go_back_have_no_window(tmp_path):
    times = [(T0 + i // 1000, (i % 1000) * 1000) for i in range(5000)]
    times[4321] = (T0, 0)                   # one record late, far from the first window
    src = _write(tmp_path / "in.pcap", _records(n=5000, times=times))
    assert not build_index(src).sorted
    assert window_range(src, (T0 + 1) * 10**9, (T0 + 2) * 10**9) is None
    assert window_range(tmp_path, None, None) is None            # (not a regular file)


def test_the_command_takes_a_window_on_the_fast_path(tmp_path):
    """--after/--before on one pcap file: the fast pass over the window's records, neither numpy
    nor the argument parser imported; the same packets as the general path, which scans for them (the window given to a
    capture read from standard input)."""
    src = _write(tmp_path / "in.pcap", _records(n=5000))
    run = ("import json, sys\nfrom pfilter import cli\nstatus = cli.main(sys.argv[1:])\n"
           "print(json.dumps([status, 'numpy' in sys.modules, 'argparse' in sys.modules]), file=sys.stderr)\n")
    args = ["--after", str(T0 + 1.5), "--before", str(T0 + 3), "-w"]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    env.pop("PFILTER_NO_CACHE", None)
    for imports_numpy in ("true", "false"):         # (the first run compiles; the second has it cached)
        fast = subprocess.run([sys.executable, "-c", run, "--quiet", "-r", str(src), *args,
                               str(tmp_path / "fast.pcap"), "len >= 100"], capture_output=True, text=True,
                              check=True, env=env)
        assert fast.stderr.strip().splitlines()[-1] == f"[0, {imports_numpy}, false]"
    with open(src, "rb") as f:
        slow = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", "-", *args, str(tmp_path / "slow.pcap"),
                               "len >= 100"], stdin=f, capture_output=True, text=True, check=True)
    assert slow.returncode == 0
    fast_bytes = (tmp_path / "fast.pcap").read_bytes()
    assert len(fast_bytes) > 24 and fast_bytes == (tmp_path / "slow.pcap").read_bytes()


SHRINK = """
import os, sys, threading, time
sys.path[:0] = [sys.argv[3]]
import numpy as np
from pfilter.capture import _fastcopy
src, keep, want = sys.argv[1], int(sys.argv[2]), np.load(sys.argv[4])   # (the records' offsets)
full = open(src, "rb").read()
first = int.from_bytes(full[24:28], "little")
def walk(fd, arrays):
    return _fastcopy.record_index(fd, 24, -1, *arrays, False, first_sec=first, window=1 << 20)
fd = os.open(src, os.O_RDONLY)
arrays = [np.empty(1 << 20, t) for t in (np.int64, np.int64, np.int64, np.uint32, np.uint32)]
walk(fd, arrays)                                   # (its pages in: the walks below take as long)
took = time.perf_counter()
walk(fd, arrays)
took = time.perf_counter() - took                  # (the cuts come over one and a half walks)
os.close(fd)
outcomes = []
for step in range(18):
    with open(src, "r+b") as f:                     # (whole again)
        f.seek(keep)
        f.write(full[keep:])
    fd = os.open(src, os.O_RDONLY)
    arrays = [np.empty(1 << 20, t) for t in (np.int64, np.int64, np.int64, np.uint32, np.uint32)]
    got = []
    t = threading.Thread(target=lambda: got.append(walk(fd, arrays)))
    t.start()
    time.sleep(took * step / 12)
    os.truncate(src, keep)                          # shrink it under the walk
    t.join()
    os.close(fd)
    n, pos, status = got[0]
    outcomes.append((n, pos, status, bool(np.array_equal(arrays[0][:n], want[:n]))))
print(repr(outcomes))
"""


def test_a_file_shrinking_under_the_walk_is_read_on_from_where_it_was(tmp_path):
    """A file cut short while its mapped windows are walked (SIGBUS on the pages past its new end,
    caught) is walked on by reading: the records found are the file's (those walked before the
    cut, then those it still holds), whenever the cut comes (cuts spread over one and a half
    walks); a cut that comes in the middle of the walk ends it there."""
    block = _records(n=4000)
    src = tmp_path / "shrinking.pcap"
    _write(src, block * 16)                          # (about 25 MB: a few ms to walk)
    offsets = _plain_walk(src)[0][0]
    np.save(tmp_path / "offsets.npy", offsets)
    offsets = offsets.tolist()
    keep = os.path.getsize(src) // 3
    root = os.path.dirname(os.path.dirname(os.path.abspath(_fastcopy.__file__ + "/..")))
    proc = subprocess.run([sys.executable, "-c", SHRINK, str(src), str(keep), root, str(tmp_path / "offsets.npy")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]          # never killed by SIGBUS
    outcomes = eval(proc.stdout.strip())
    kept = sum(1 for o in offsets if o + 16 <= keep)
    assert any(kept < o[0] < len(offsets) for o in outcomes), "no cut came in the middle of a walk"
    for n, pos, status, same in outcomes:
        assert same                                 # the offsets found are the first n records
        if n < len(offsets):
            assert status in (0, 2) and n >= kept - 1
