"""Fuzzing the reader: random bytes behind a valid magic, and corpus files with bytes flipped,
cut, or spliced. Whatever the input: no crash, no hang, no exception other than FilterError
(CaptureFormatError); every delivered batch is consistent (offsets and lengths inside its data);
and the Cython scanners agree with their pure-Python twin, packet for packet and error for error.
"""
import signal
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pfilter
import reference as ref
from pfilter.capture import _pyscan
from pfilter.capture import reader as reader_mod

SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

MAGICS = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1),
          struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 0, 1),
          struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 100, 1),
          struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 2, 0, 0, 65535, 1),
          struct.pack("<III", 0x0A0D0D0A, 28, 0x1A2B3C4D) + struct.pack("<HHqI", 1, 0, -1, 28)
          + struct.pack("<IIHHI", 1, 20, 1, 0, 64) + struct.pack("<I", 20),
          struct.pack(">III", 0x0A0D0D0A, 28, 0x1A2B3C4D) + struct.pack(">HHqI", 1, 0, -1, 28)
          + struct.pack(">IIHHI", 1, 20, 113, 0, 0) + struct.pack(">I", 20)]


def _corpus_sample():
    rows = ref.corpus_pcaps() if ref.CORPUS.exists() else []
    picked = [r["file"] for r in rows if 0 < int(r["size"]) < 6000][::7]
    return [p.read_bytes() for p in picked[:60]]


CORPUS = _corpus_sample()


class _Timeout(Exception):
    pass


def _alarm(_sig, _frame):
    raise _Timeout()


def read_everything(path, scanner=None, **options):
    """('ok' | error text, [(bytes, wirelen, ts, linktype)]) reading with the given scanner."""
    saved = reader_mod._scan
    if scanner is not None:
        reader_mod._scan = scanner
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    pkts = []
    try:
        with pfilter.open(path, **options) as cap:
            for b in cap:
                n = len(b)
                assert len(b.caplen) == len(b.wirelen) == len(b.timestamps) == n
                if n:
                    assert int(b.offsets.min()) >= 0
                    assert int((b.offsets + b.caplen.astype(np.int64)).max()) <= len(b.data)
                for i in range(n):
                    pkts.append((b.packet(i), int(b.wirelen[i]), int(b.timestamps[i]), b.linktype_of(i)))
        return "ok", pkts
    except pfilter.CaptureFormatError as e:
        assert e.offset is None or e.offset >= 0
        return str(e), pkts
    except pfilter.FilterError as e:
        return str(e), pkts
    except _Timeout:
        pytest.fail(f"reader hung on {path}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        reader_mod._scan = saved


def check(tmp_path, data, **options):
    path = tmp_path / "fuzz.cap"
    path.write_bytes(data)
    native = read_everything(path, **options)
    twin = read_everything(path, _pyscan, **options)
    assert native == twin


@SETTINGS
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=600))
def test_random_bytes_after_a_valid_header_never_crash(tmp_path, magic, tail):
    check(tmp_path, magic + tail)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes_alone_never_crash(tmp_path, data):
    check(tmp_path, data)


def require_corpus():
    if not CORPUS:
        ref._missing(f"shared corpus {ref.CORPUS}")


@SETTINGS
@given(pick=st.integers(0, 10**6), flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                    min_size=1, max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)))
def test_mutated_corpus_files_never_crash(tmp_path, pick, flips, cut):
    require_corpus()
    data = bytearray(CORPUS[pick % len(CORPUS)])
    for pos, value in flips:
        data[pos % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    check(tmp_path, bytes(data))


def _ng_block(order, btype, body, total=None, trailer=None):
    body += b"\0" * ((-len(body)) % 4)
    n = 12 + len(body)
    return (struct.pack(order + "II", btype, n if total is None else total) + body
            + struct.pack(order + "I", n if trailer is None else trailer))


def ng_blocks(o):
    """Strategy: one pcapng block of byte order o, mostly well-formed, sometimes not."""
    return st.one_of(
        st.builds(lambda lt, snap, opts: _ng_block(o, 1, struct.pack(o + "HHI", lt, 0, snap) + opts),
                  st.sampled_from([1, 101, 113, 0, 65535]), st.sampled_from([0, 64, 65535, 2**31]),
                  st.sampled_from([b"", struct.pack(o + "HHB3x", 9, 1, 9), struct.pack(o + "HHB3x", 9, 1, 0x94),
                                   struct.pack(o + "HH", 14, 8) + b"\xff" * 8, struct.pack(o + "HHB3x", 9, 1, 200),
                                   struct.pack(o + "HH", 0, 0), struct.pack(o + "HH", 2, 3) + b"eth\0"])),
        st.builds(lambda i, hi, lo, cap, data: _ng_block(o, 6, struct.pack(o + "IIIII", i, hi, lo, cap, len(data)) + data),
                  st.integers(0, 3), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                  st.integers(0, 80), st.binary(max_size=64)),
        st.builds(lambda data: _ng_block(o, 6, struct.pack(o + "IIIII", 0, 0, 7, len(data), len(data)) + data),
                  st.binary(max_size=64)),
        st.builds(lambda data: _ng_block(o, 3, struct.pack(o + "I", len(data) + 3) + data), st.binary(max_size=64)),
        st.builds(lambda i, data: _ng_block(o, 2, struct.pack(o + "HHIIII", i, 0, 0, 5, len(data), len(data)) + data),
                  st.integers(0, 2), st.binary(max_size=32)),
        st.builds(lambda o2, major: _ng_block(o2, 0x0A0D0D0A, struct.pack(o2 + "IHHq", 0x1A2B3C4D, major, 0, -1)),
                  st.sampled_from("<>"), st.sampled_from([1, 1, 2])),
        st.builds(lambda t, body: _ng_block(o, t, body), st.sampled_from([4, 5, 0xBAD]), st.binary(max_size=20)),
        st.builds(lambda t, total, trailer: _ng_block(o, t, b"\0" * 8, total, trailer),
                  st.sampled_from([1, 6, 3]), st.sampled_from([None, 8, 13, 2**31]), st.sampled_from([None, 0, 24])),
    )


@SETTINGS
@given(order=st.sampled_from("<>"), data=st.data())
def test_structured_pcapng_block_sequences_never_crash(tmp_path, order, data):
    """Blocks of the section's byte order (a new SHB may switch it; later blocks then read wrong,
    which is damage too), starting with an interface most of the time."""
    head = _ng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    first = data.draw(st.sampled_from([_ng_block(order, 1, struct.pack(order + "HHI", 1, 0, 0))] * 4 + [b""]))
    blocks = data.draw(st.lists(ng_blocks(order), max_size=12))
    check(tmp_path, head + first + b"".join(blocks))


@SETTINGS
@given(pick=st.integers(0, 10**6), window=st.integers(1, 3000), batch=st.integers(1, 20))
def test_mutated_files_read_the_same_through_tiny_windows(tmp_path, pick, window, batch):
    require_corpus()
    data = bytearray(CORPUS[pick % len(CORPUS)])
    data[(pick * 31) % len(data)] ^= 0x40
    path = tmp_path / "fuzz.cap"
    path.write_bytes(bytes(data))
    assert read_everything(path) == read_everything(path, window_bytes=window, batch_packets=batch)
    assert read_everything(path) == read_everything(path, window_bytes=window, batch_packets=batch,
                                                    reuse_buffer=True)
