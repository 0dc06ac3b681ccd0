"""Fuzzing the reader, filter_file and classify over mutated captures: corpus and generated pcap
and pcapng files with bytes flipped, fields set to edge values, ranges cut, duplicated or spliced,
structured pcapng block sequences, and all of these compressed (gzip, xz, bzip2, zstd) before or
after the damage. Only CaptureFormatError, other FilterErrors and OSError may escape; every input
ends within the per-input time bound (the harness kills a hang); delivered batches are consistent;
classify counts no more packets than the reader delivers."""
import bz2
import gzip
import lzma
import struct
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

import fuzzlib
import pfilter
import seeds
from pfilter.errors import CaptureFormatError, FilterError
from test_capture_fuzz import MAGICS, _ng_block, ng_blocks

ALLOWED = (FilterError, OSError)
EDGE = [0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFF, 0x10000, 262144, 262145, 16, 24, 28]


def _zstd(data):
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


COMPRESS = {"gzip": gzip.compress, "xz": lzma.compress, "bzip2": bz2.compress, "zstd": _zstd}

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 255)),
    st.tuples(st.just("word"), st.integers(0, 2**20), st.sampled_from(EDGE), st.sampled_from("<>")),
    st.tuples(st.just("cut"), st.integers(0, 2**20)),
    st.tuples(st.just("dup"), st.integers(0, 2**20), st.integers(1, 200)),
    st.tuples(st.just("delete"), st.integers(0, 2**20), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("splice"), st.integers(0, 10**6), st.integers(0, 2**20)),
)


def mutate(data, steps):
    data = bytearray(data)
    for step in steps:
        kind, pos = step[0], step[1] % (len(data) + 1)
        if kind == "flip" and data:
            data[pos % len(data)] = step[2]
        elif kind == "word":
            data[pos:pos + 4] = struct.pack(step[3] + "I", step[2])
        elif kind == "cut":
            del data[pos:]
        elif kind == "dup":
            data[pos:pos] = data[pos:pos + step[2]]
        elif kind == "delete":
            del data[pos:pos + step[2]]
        elif kind == "insert":
            data[pos:pos] = step[2]
        elif kind == "splice":
            other = seeds.captures()[step[1] % len(seeds.captures())]
            data[pos:] = other[step[2] % (len(other) + 1):]
    return bytes(data)


@st.composite
def structured_pcapng(draw):
    order = draw(st.sampled_from("<>"))
    head = _ng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    first = _ng_block(order, 1, struct.pack(order + "HHI", 1, 0, 0)) if draw(st.integers(0, 4)) else b""
    return head + first + b"".join(draw(st.lists(ng_blocks(order), max_size=10)))


@st.composite
def capture_files(draw):
    """(file bytes, description) of a damaged, maybe compressed capture."""
    kind = draw(st.sampled_from(["seed", "seed", "seed", "magic", "pcapng"]))
    if kind == "seed":
        data = draw(st.sampled_from(seeds.captures()))
    elif kind == "magic":
        data = draw(st.sampled_from(MAGICS)) + draw(st.binary(max_size=300))
    else:
        data = draw(structured_pcapng())
    steps = draw(st.lists(mutation, max_size=4))
    how = draw(st.sampled_from([None, None, None, "gzip", "xz", "bzip2", "zstd"]))
    if how is None:
        return mutate(data, steps)
    if draw(st.booleans()):
        return COMPRESS[how](mutate(data, steps))          # damaged capture, intact compression
    return mutate(COMPRESS[how](data), steps)              # damaged compressed stream


reader_inputs = st.tuples(capture_files(), st.sampled_from([None, 1, 3, 64]),
                          st.sampled_from([None, 1, 17, 100, 4096]), st.booleans(), st.booleans())


def read_all(source, **options):
    """Packets delivered before the end or the error, checking every batch's consistency."""
    pkts = 0
    with pfilter.open(source, **options) as cap:
        for b in cap:
            n = len(b)
            assert len(b.caplen) == len(b.wirelen) == len(b.timestamps) == len(b.offsets) == n
            if n:
                assert int(b.offsets.min()) >= 0
                assert int((b.offsets + b.caplen.astype(np.int64)).max()) <= len(b.data)
            pkts += n
    return pkts


def _path(data):
    f = tempfile.NamedTemporaryFile(prefix="pfilter-fuzz-", suffix=".cap", delete=False)
    f.write(data)
    f.close()
    return Path(f.name)


@fuzzlib.target("reader", reader_inputs)
def check_reader(x):
    data, batch_packets, window, reuse, as_file_object = x
    path = _path(data)
    try:
        options = {k: v for k, v in (("batch_packets", batch_packets), ("window_bytes", window)) if v}
        if as_file_object:
            with open(path, "rb") as f:
                r = fuzzlib.outcome(read_all, f, reuse_buffer=reuse, allowed=ALLOWED, **options)
        else:
            r = fuzzlib.outcome(read_all, path, reuse_buffer=reuse, allowed=ALLOWED, **options)
        if isinstance(r, CaptureFormatError):
            assert r.offset is None or 0 <= r.offset <= max(len(data), 1 << 40)
            str(r)
    finally:
        path.unlink()


RULES = {"web": "tcp port 80 or tcp port 443", "dns": "udp port 53", "v6": "ip6", "arp": "arp"}


@fuzzlib.target("filter_file", st.tuples(capture_files(), st.sampled_from(["tcp", "udp port 53", "ip or ip6", ""]),
                                          st.sampled_from(["out.pcap", "out.pcapng"])))
def check_filter_file(x):
    data, expr, name = x
    path = _path(data)
    with tempfile.TemporaryDirectory(prefix="pfilter-fuzz-") as tmp:
        try:
            stats = fuzzlib.outcome(pfilter.filter_file, path, Path(tmp) / name, expr, allowed=ALLOWED)
            if not isinstance(stats, BaseException) and (Path(tmp) / name).exists():
                fuzzlib.outcome(read_all, Path(tmp) / name, allowed=ALLOWED)
        finally:
            path.unlink()


@fuzzlib.target("classify", st.tuples(capture_files(), st.booleans(), st.booleans(), st.sampled_from([1, 2])),
                examples=120)
def check_classify(x):
    data, packed, counts_only, threads = x
    path = _path(data)
    try:
        res = fuzzlib.outcome(pfilter.classify, path, RULES, packed=packed, counts_only=counts_only,
                              threads=threads, allowed=ALLOWED)
        if isinstance(res, BaseException):
            return
        delivered = fuzzlib.outcome(read_all, path, allowed=ALLOWED)
        if isinstance(delivered, int):
            assert res.packets == delivered, f"classify saw {res.packets} packets, the reader {delivered}"
        assert all(0 <= int(c) <= res.packets for c in res.counts)
    finally:
        path.unlink()


def test_fuzz_reader_over_damaged_captures():
    fuzzlib.run("reader")


def test_fuzz_filter_file_over_damaged_captures():
    fuzzlib.run("filter_file")


def test_fuzz_classify_over_damaged_captures():
    fuzzlib.run("classify")
