"""Issue 11: the writers' pure-Python twin (pfilter.capture._pywriter) assembles the same bytes and
returns the same failure codes as the Cython assemblers (pfilter.capture._writer); the backend
switch (pfilter._impl) picks every twin under PFILTER_PUREPYTHON=1; files written through the
twin read back through libpcap as written."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter.capture import _pywriter
from pfilter.capture import writer as writer_mod

try:
    from pfilter.capture import _writer
except ImportError:
    if os.environ.get("CI") == "true":      # CI builds the extension: a missing one is a failure
        raise
    pytest.skip("pfilter.capture._writer is not built", allow_module_level=True)


def random_batch(rng, n):
    sizes = rng.integers(0, 90, n)
    gap = 24
    offsets = np.zeros(n, np.int64)
    pos = gap
    for i, s in enumerate(sizes):
        offsets[i] = pos
        pos += int(s) + gap
    data = rng.integers(0, 256, pos, dtype=np.uint8)
    caplen = sizes.astype(np.uint32)
    wirelen = (caplen + rng.integers(0, 40, n)).astype(np.uint32)
    stamps = rng.integers(-(2**62), 2**62, n).astype(np.int64)
    stamps[: n // 4] = rng.integers(-3 * 10**9, 3 * 10**9, n // 4)     # near the epoch, both sides
    return data, offsets, caplen, wirelen, stamps


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("nsec", [False, True])
def test_pcap_records_twin_writes_the_same_bytes(seed, nsec):
    rng = np.random.default_rng(seed)
    data, offsets, caplen, wirelen, stamps = random_batch(rng, 60)
    index = rng.permutation(60)[:45].astype(np.int64)
    room = 16 * len(index) + int(caplen[index].sum())
    for raw_back, raw_swapped in ((0, False), (16, False), (16, True), (24, True)):
        outs = []
        for mod in (_writer, _pywriter):
            out = np.full(room + 7, 0xAA, np.uint8)
            r = mod.pcap_records(data, offsets, caplen, wirelen, stamps, index, nsec, out, raw_back, raw_swapped)
            outs.append((r, out.tobytes()))
        assert outs[0] == outs[1]
        assert outs[0][0] == room


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("nsec", [False, True])
def test_pcapng_epbs_twin_writes_the_same_bytes(seed, nsec):
    rng = np.random.default_rng(seed)
    data, offsets, caplen, wirelen, stamps = random_batch(rng, 50)
    index = rng.integers(0, 50, 70).astype(np.int64)          # repeats allowed
    ifaces = rng.integers(0, 5, 70).astype(np.uint32)
    room = 32 * len(index) + int(((caplen[index].astype(np.int64) + 3) & ~3).sum())
    outs = []
    for mod in (_writer, _pywriter):
        out = np.full(room, 0xAA, np.uint8)
        r = mod.pcapng_epbs(data, offsets, caplen, wirelen, stamps, index, ifaces, nsec, out)
        outs.append((r, out.tobytes()))
    assert outs[0] == outs[1]
    assert outs[0][0] == room


def damaged_cases(rng):
    data, offsets, caplen, wirelen, stamps = random_batch(rng, 20)
    index = np.arange(20, dtype=np.int64)
    yield "index past the end", (data, offsets, caplen, wirelen, stamps), np.r_[index[:5], 20, index[5:]], None
    yield "negative index", (data, offsets, caplen, wirelen, stamps), np.r_[index[:3], -1], None
    bad, caps = offsets.copy(), caplen.copy()
    bad[7], caps[7] = len(data) - 2, 50
    yield "packet past data", (data, bad, caps, wirelen, stamps), index, None
    bad = offsets.copy()
    bad[4] = -5
    yield "negative offset", (data, bad, caplen, wirelen, stamps), index, None
    big = caplen.copy()
    big[9] = 2**32 - 1
    yield "huge caplen", (data, offsets, big, wirelen, stamps), index, None
    yield "out too small", (data, offsets, caplen, wirelen, stamps), index, 300


@pytest.mark.parametrize("fn", ["pcap_records", "pcapng_epbs"])
def test_twin_returns_the_same_failure_codes(fn):
    rng = np.random.default_rng(11)
    seen = set()
    for what, arrays, index, room in damaged_cases(rng):
        results = []
        for mod in (_writer, _pywriter):
            out = np.zeros(room if room is not None else 32 * len(index) + 4 * 200 + len(arrays[0]), np.uint8)
            if fn == "pcap_records":
                r = mod.pcap_records(*arrays, index, True, out, 16 if what == "negative offset" else 0)
            else:
                r = mod.pcapng_epbs(*arrays, index, np.zeros(len(index), np.uint32), True, out)
            results.append(r)
        assert results[0] == results[1], what
        assert results[0] < 0, what
        seen.add(results[0])
    assert len(seen) >= 4          # the cases fail at different packets


def test_twin_refuses_arrays_of_different_lengths_as_the_extension_does():
    rng = np.random.default_rng(2)
    data, offsets, caplen, wirelen, stamps = random_batch(rng, 5)
    for mod in (_writer, _pywriter):
        with pytest.raises(ValueError):
            mod.pcap_records(data, offsets, caplen[:4], wirelen, stamps, np.arange(5), True, np.zeros(999, np.uint8))
        with pytest.raises(ValueError):
            mod.pcapng_epbs(data, offsets, caplen, wirelen, stamps, np.arange(5), np.zeros(2, np.uint32), True,
                            np.zeros(999, np.uint8))


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_files_written_through_the_twin_equal_the_extensions_and_libpcap_reads_them(tmp_path, monkeypatch, fmt):
    rng = np.random.default_rng(5)
    pkts = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(14, 200, 300)]
    stamps = rng.integers(0, 2**31, 300).astype(np.int64) * 1000 + rng.integers(0, 10**6, 300)
    which = rng.permutation(300)[:200]
    outputs = []
    for twin in (False, True):
        if twin:
            monkeypatch.setattr(writer_mod, "_native", None)
        dst = tmp_path / f"{twin}.{fmt}"
        with writer_mod.open_writer(str(dst), format=fmt, ts_resolution="ns") as w:
            b = pfilter.PacketBatch.from_packets(pkts, timestamps=stamps)
            w.write(b, which)
        outputs.append(dst)
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    _dlt, _snap, got, err = ref.read_capture(str(outputs[1]))
    assert err is None
    assert got == [(pkts[i], len(pkts[i]), int(stamps[i])) for i in which]


def test_purepython_switch_picks_every_twin():
    code = ("import pfilter._impl as i, pfilter.program as p, pfilter.batch as b\n"
            "from pfilter.capture import reader as r, writer as w, fastpath as f\n"
            "print(i.PURE, p._cvm, b._native, r._scan.__name__, w._native, w._assembler().__name__, f._native())\n")
    for value, want in (("1", "True None None pfilter.capture._pyscan None pfilter.capture._pywriter None"),
                        ("0", None)):
        env = dict(os.environ, PFILTER_PUREPYTHON=value)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        if want is not None:
            assert done.stdout.split() == want.split()
        else:
            assert done.stdout.split()[0] == "False" and "_pyscan" not in done.stdout
