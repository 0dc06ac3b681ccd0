"""-j/--workers (issue 20): the fast path shared by N threads writes what one writes and what
tcpdump writes, whatever the number of workers and wherever the chunks cut the records; byte
ranges and the capture index (pfilter.capture.index) cut files on record boundaries."""
import os
import random
import struct
import subprocess
import sys

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter.capture import _fastcopy
from pfilter.capture.fastpath import check_workers, default_workers, fast_filter_file
from pfilter.capture.index import CaptureIndex, build_index, parse_time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import gen_capture  # noqa: E402

EXPRESSIONS = ["tcp", "udp port 53 or icmp", "vlan and ip", "ip and tcp port 80"]


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "gen.pcap"
    gen_capture.generate(path, 6000, seed=3)
    return str(path)


def tcpdump_write(src, dst, expr, *extra):
    subprocess.run([ref.tcpdump(), "-r", str(src), "-w", str(dst), *extra, expr], check=True,
                   stderr=subprocess.DEVNULL)
    return open(dst, "rb").read()


def tcpdump_count(src, expr):
    out = subprocess.run([ref.tcpdump(), "-n", "-r", str(src), expr], check=True, capture_output=True)
    return len(out.stdout.splitlines())


def program_for(expr):
    return lambda lt, snap, swapped: pfilter.compile(expr, linktype=lt, snaplen=snap, netmask=0).to_tuples()


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_every_number_of_workers_writes_tcpdumps_bytes(tmp_path, capture, small_chunks, expr):
    want = tcpdump_write(capture, tmp_path / "ref.pcap", expr)
    for workers in (1, 2, 3, 8):
        out = tmp_path / f"w{workers}.pcap"
        stats = fast_filter_file(capture, str(out), program_for(expr), workers=workers)
        # no more workers than the file has chunks (of the default size: 1 MB)
        assert stats is not None and small_chunks[-1].workers == min(workers, -(-os.path.getsize(capture) // _fastcopy.CHUNK_BYTES))
        assert out.read_bytes() == want, workers
        assert stats.read == 6000 and stats.written == tcpdump_count(capture, expr)


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_count_and_stop_after_c_matches_as_tcpdump(tmp_path, capture, small_chunks, workers):
    for c in (1, 17, 999, 2500):
        want = tcpdump_write(capture, tmp_path / "ref.pcap", "tcp", "-c", str(c))
        out = tmp_path / "out.pcap"
        stats = fast_filter_file(capture, str(out), program_for("tcp"), count=c, workers=workers)
        assert out.read_bytes() == want and stats.written == c
    n = fast_filter_file(capture, None, program_for("udp port 53 or icmp"), workers=workers)
    assert n.matched == tcpdump_count(capture, "udp port 53 or icmp")


def test_rotation_and_snaplen_do_not_depend_on_the_workers(tmp_path, capture, small_chunks):
    from pfilter.capture.rotate import Rotation
    outs = {}
    for workers in (1, 3):
        d = tmp_path / f"w{workers}"
        d.mkdir()
        fast_filter_file(capture, str(d / "o.pcap"), program_for("tcp"), workers=workers,
                         rotate=Rotation.make(dict(size=200_000)), truncate=None)
        fast_filter_file(capture, str(d / "s.pcap"), program_for("tcp"), workers=workers, truncate=96)
        outs[workers] = {p.name: p.read_bytes() for p in d.iterdir()}
    assert len(outs[1]) > 3 and outs[1] == outs[3]
    ed = tmp_path / "ed.pcap"
    tcpdump_write(capture, tmp_path / "t.pcap", "tcp")
    subprocess.run([ref.editcap(), "-F", "pcap", "-s", "96", str(tmp_path / "t.pcap"), str(ed)], check=True)
    # editcap -s keeps the input's header snapshot length; the records must agree
    assert outs[1]["s.pcap"][24:] == ed.read_bytes()[24:]


def test_workers_option_checked_and_defaulted():
    assert default_workers() == len(os.sched_getaffinity(0))
    assert check_workers(None) == default_workers() and check_workers(3) == 3
    for bad in (0, -1, 257, 1.5, True, "2"):
        with pytest.raises(pfilter.FilterError):
            check_workers(bad)
    r = subprocess.run([sys.executable, "-m", "pfilter", "-r", "x.pcap", "-j", "0", "tcp"], capture_output=True, text=True)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "pfilter: argument -j/--workers: must be positive, not 0"


def test_index_matches_the_reader_and_cuts_ranges(tmp_path, capture):
    ix = build_index(capture)
    recs = []
    with pfilter.open(capture) as cap:
        for b in cap:
            recs.append((b.file_offsets.copy(), b.timestamps.copy(), b.caplen.copy(), b.wirelen.copy()))
    offs, ts, cap_, wire = (np.concatenate(x) for x in zip(*recs))
    # the reader's file offsets address the record header; the index's too
    assert len(ix) == 6000 and (ix.timestamps == ts).all() and (ix.caplen == cap_).all() and (ix.wirelen == wire).all()
    assert (ix.offsets == offs).all()
    assert ix.end == os.path.getsize(capture) and (ix.linktypes == 1).all()
    with open(capture, "rb") as f:
        data = f.read()
    for i in (0, 1, 2999, 5999):
        o = int(ix.offsets[i])
        assert ix.packet(i) == data[o + 16:o + 16 + int(ix.caplen[i])]
    # ranges: on record boundaries, covering every record once; each range's copies joined
    # in order are the whole file's output
    ranges = ix.ranges(5)
    assert len(ranges) == 5 and ranges[0][0] == 24 and ranges[-1][1] == ix.end
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    assert all(int(np.searchsorted(ix.offsets, s)) < len(ix) and ix.offsets[np.searchsorted(ix.offsets, s)] == s
               for s, _e in ranges)
    whole = tcpdump_write(capture, tmp_path / "ref.pcap", "tcp")
    parts = b""
    for k, r in enumerate(ranges):
        out = tmp_path / f"part{k}.pcap"
        fast_filter_file(capture, str(out), program_for("tcp"), byte_range=r, workers=2)
        parts += out.read_bytes()[24:]
    assert whole[24:] == parts
    # saved and loaded
    ix.save(tmp_path / "ix.npz")
    back = CaptureIndex.load(tmp_path / "ix.npz")
    assert (back.offsets == ix.offsets).all() and (back.timestamps == ix.timestamps).all() and back.end == ix.end
    assert os.path.isabs(back.path)
    # what is not an index, and the index of a capture changed since, are FilterErrors
    bad = tmp_path / "bad.npz"
    for data in (b"", b"PK\x03\x04 cut short", open(capture, "rb").read(1000)):
        bad.write_bytes(data)
        with pytest.raises(pfilter.FilterError, match="not a pfilter capture index"):
            CaptureIndex.load(bad)
    changed = tmp_path / "changed.pcap"
    changed.write_bytes(open(capture, "rb").read())
    build_index(changed).save(tmp_path / "changed.npz")
    with open(changed, "ab") as f:
        f.write(bytes(100))
    with pytest.raises(pfilter.FilterError, match="stale"):
        CaptureIndex.load(tmp_path / "changed.npz")


def test_the_index_walk_takes_only_arrays_it_can_fill(capture):
    """record_index writes through the buffer protocol (the fast path's extension has no typed
    memoryviews): arrays of another item size or kind, read-only or too short are refused
    before anything is written, and the right ones give build_index's records."""
    fd = os.open(capture, os.O_RDONLY)
    try:
        def arrays(n=8, **change):
            kinds = dict(offsets=np.int64, seconds=np.int64, fractions=np.int64, caplens=np.uint32,
                         wirelens=np.uint32)
            kinds.update(change)
            return [np.zeros(n, k) for k in kinds.values()]
        for bad in (dict(offsets=np.int32), dict(seconds=np.float64), dict(caplens=np.int64),
                    dict(wirelens=np.float32)):
            with pytest.raises(ValueError):
                _fastcopy.record_index(fd, 24, -1, *arrays(**bad), False)
        frozen = arrays()
        frozen[2].flags.writeable = False
        with pytest.raises((ValueError, BufferError)):
            _fastcopy.record_index(fd, 24, -1, *frozen, False)
        short = arrays()
        short[4] = np.zeros(3, np.uint32)
        with pytest.raises(ValueError):
            _fastcopy.record_index(fd, 24, -1, *short, False)
        good = arrays()
        n, _pos, status = _fastcopy.record_index(fd, 24, -1, *good, False)
    finally:
        os.close(fd)
    ix = build_index(capture)
    assert (n, status) == (8, 1)
    assert (good[0] == ix.offsets[:8]).all() and (good[3] == ix.caplen[:8]).all() and (good[4] == ix.wirelen[:8]).all()


def test_index_of_pcapng_nanosecond_and_cut_files(tmp_path):
    ng = tmp_path / "g.pcapng"
    gen_capture.generate(ng, 500, seed=4, pcapng=True)
    ns = tmp_path / "n.pcap"
    gen_capture.generate(ns, 500, seed=4, nanosecond=True)
    a, b = build_index(ng), build_index(ns)
    assert a.format == "pcapng" and len(a) == 500 and len(b) == 500
    # the pcapng generator writes microseconds: the same instants to the microsecond
    assert (a.timestamps == b.timestamps // 1000 * 1000).all() and (a.caplen == b.caplen).all()
    assert (b.timestamps % 1000 != 0).any()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(ns.read_bytes()[:-10])
    c = build_index(cut)
    assert len(c) == 499 and c.end == int(b.offsets[499])


def test_index_of_a_compressed_capture_has_its_records_but_no_file_offsets(tmp_path, capture):
    """A gzip capture's index: the same times, lengths and link types as the plain file's, its
    offsets those of the decompressed stream: packet(i), ranges() and byte_range() refuse
    rather than read the compressed bytes there (saved and loaded alike)."""
    import gzip
    packed = tmp_path / "c.pcap.gz"
    packed.write_bytes(gzip.compress(open(capture, "rb").read()))
    plain, ix = build_index(capture), build_index(packed)
    assert plain.compression is None and ix.compression == "gzip" and len(ix) == len(plain)
    for k in ("offsets", "timestamps", "caplen", "wirelen", "linktypes"):
        assert (getattr(ix, k) == getattr(plain, k)).all(), k
    ix.save(tmp_path / "c.npz")
    for index in (ix, CaptureIndex.load(tmp_path / "c.npz")):
        for call in (lambda: index.packet(0), lambda: index.ranges(2), lambda: index.byte_range(0, 3)):
            with pytest.raises(pfilter.FilterError, match="gzip-compressed: its index's offsets are those of the "
                                                          "decompressed stream"):
                call()
        assert index.window(None, None) == (0, len(plain))


def test_index_caplen_is_what_libpcap_reads_of_records_longer_than_the_snaplen(tmp_path, capture):
    """Records stored longer than the file header's snapshot length (128 here): libpcap gives
    their first 128 bytes, and so does the index, plain or compressed alike (the walk of the
    plain file's headers reads the stored length)."""
    import gzip
    data = bytearray(open(capture, "rb").read())
    data[16:20] = struct.pack("<I", 128)
    cut = tmp_path / "snap128.pcap"
    cut.write_bytes(bytes(data))
    packed = tmp_path / "snap128.pcap.gz"
    packed.write_bytes(gzip.compress(bytes(data)))
    _dlt, _snap, pkts, err = ref.read_capture(str(cut))
    assert err is None and any(len(p[0]) == 128 for p in pkts)
    plain, ix = build_index(cut), build_index(packed)
    assert plain.caplen.tolist() == ix.caplen.tolist() == [len(p[0]) for p in pkts]
    assert [plain.packet(i) for i in range(len(plain))] == [p[0] for p in pkts]
    assert plain.end == len(data) and plain.offsets.tolist() == build_index(capture).offsets.tolist()


def test_index_window_takes_times_as_filter_file_does(capture):
    ix = build_index(capture)
    t = int(ix.timestamps[100])
    text = f"{t // 10**9}.{t % 10**9:09d}"
    assert ix.window(text, None) == ix.window(t, None) == ix.window(np.int64(t), None)
    assert ix.window(text, None)[0] <= 100 < ix.window(None, t + 1)[1]
    iso = __import__("datetime").datetime.fromtimestamp(t // 10**9, __import__("datetime").timezone.utc)
    assert ix.window(iso.strftime("%Y-%m-%dT%H:%M:%SZ"), None) == ix.window(t // 10**9 * 10**9, None)
    with pytest.raises(pfilter.FilterError, match="as a float"):
        ix.window(t / 1e9, None)
    with pytest.raises(TypeError):
        ix.packet(1.5)


def test_cli_index_file_is_written_only_when_asked(tmp_path, capture):
    out = tmp_path / "ix.npz"
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", capture, "--index", str(out), "--count",
                        "tcp"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{tcpdump_count(capture, 'tcp')} packets"
    assert len(CaptureIndex.load(out)) == 6000
    assert sorted(os.listdir(os.path.dirname(capture))) == ["gen.pcap"]     # nothing beside the input


def test_parse_time():
    assert parse_time("1700000000") == 1700000000 * 10**9
    assert parse_time("1700000000.000123456") == 1700000000000123456
    assert parse_time("2023-11-14T22:13:20.5Z") == 1700000000500000000
    assert parse_time("2023-11-14 23:13:20+01:00") == 1700000000 * 10**9
    assert parse_time("2023-11-14T22:13Z") == 1700000000 * 10**9 - 20 * 10**9
    assert parse_time("2023-11-14T23:13:20+01") == parse_time("2023-11-14T21:43:20-0030") == 1700000000 * 10**9
    assert parse_time("2023-11-14T22:13:20.1234567899Z") == 1700000000123456789
    for bad in ("yesterday", "2023-13-01T00:00:00Z", "nan", "", "2023-11-14", "2023-11-14T22:13:20 +01:00"):
        with pytest.raises(pfilter.FilterError):
            parse_time(bad)


def test_an_index_that_runs_out_of_memory_says_the_output_is_complete(tmp_path, capture, monkeypatch, capsys):
    """--index built after the pass: out of memory there (an index is 26 bytes a packet) is one
    line saying no index was written and that the -w output, already whole, is complete."""
    from pfilter import cli
    from pfilter.capture import index

    def short_of_memory(path):
        raise MemoryError
    monkeypatch.setattr(index, "build_index", short_of_memory)
    out, ix = tmp_path / "out.pcap", tmp_path / "ix.npz"
    assert cli.main(["--quiet", "-r", capture, "--index", str(ix), "-w", str(out), "tcp"]) == 1
    assert capsys.readouterr().err == f"pfilter: out of memory building the index (no index written); {out} is complete\n"
    assert not ix.exists() and out.read_bytes() == tcpdump_write(capture, tmp_path / "ref.pcap", "tcp")
