"""The reader under hostile conditions (issue 18 items 5, 10, 12, 20, 21; issue 19): a file
truncated while it is read (no SIGBUS: the intact packets, then libpcap's "truncated dump file"),
file-system failures as OSError subclasses, text-mode file objects refused with a FilterError,
truncated or damaged compressed captures (the intact packets as `zcat | tcpdump -r -` gives them,
then a CaptureFormatError at the decompressed offset), pcapng files with many interfaces and
sections (linear time, small memory), and pcapng timestamps beyond the int64-nanosecond range.
"""
import bz2
import errno
import gzip
import lzma
import os
import resource
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import pfilter
import reference as ref
from test_capture_formats import PKTS, build_pcap, epb, idb, optional_package, shb, write

ROOT = Path(__file__).resolve().parents[1]

# 400 packets of 60..1499 bytes, in several reader windows when window_bytes is small
MANY = [bytes([i % 251]) * (60 + (i * 37) % 1440) for i in range(400)]
MANY_TIMES = [(1_700_000_000 + i, i) for i in range(400)]


def many_pcap():
    return build_pcap(MANY, MANY_TIMES)


def packets_of(path, **options):
    """(packets, error or None): every packet delivered, and the CaptureFormatError after them
    (or raised on opening)."""
    out, err = [], None
    try:
        with pfilter.open(path, **options) as cap:
            for b in cap:
                out.extend(b.packet(i) for i in range(len(b)))
    except pfilter.CaptureFormatError as e:
        err = e
    return out, err


def run_child(code, *args):
    """Run python code in a child (a signal kills only the child); its CompletedProcess."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}"))


# ----------------------------------------------------------------------------- 18.5: truncated while read

TRUNCATE_WHILE_READING = """
    import os, sys
    import pfilter
    from pfilter.capture import reader
    path, cut = sys.argv[1], int(sys.argv[2])
    calls = [0]
    window = reader._Source.window
    def shrinking(self, pos, need):
        calls[0] += 1
        if calls[0] == 2:           # the file is cut (log rotation, copytruncate) between two windows
            os.truncate(path, cut)
        return window(self, pos, need)
    reader._Source.window = shrinking
    n = 0
    try:
        {body}
    except pfilter.CaptureFormatError as e:
        print(n, e.offset, str(e))
        sys.exit(0)
    print(n, "no error")
"""


def test_a_file_truncated_while_read_ends_like_a_truncated_file(tmp_path):
    data = many_pcap()
    path = write(tmp_path, "a.pcap", data)
    cut = len(data) * 2 // 3 + 5
    body = """with pfilter.open(path, window_bytes=65536, batch_packets=16) as cap:
            for b in cap:
                n += len(b)"""
    child = run_child(TRUNCATE_WHILE_READING.format(body=body), path, cut)
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-500:]}"
    n, offset, message = child.stdout.split(" ", 2)
    # libpcap on the file as it is now: the same intact packets, the same message
    _dlt, _snap, want, want_err = ref.read_capture(str(path))
    assert int(n) == len(want) and 0 < len(want) < len(MANY)
    assert want_err is not None and want_err in message
    offsets = np.cumsum([24] + [16 + len(p) for p in MANY])
    assert int(offset) == offsets[len(want)] < cut < offsets[len(want) + 1]


def test_classify_of_a_file_truncated_while_read_raises_no_signal(tmp_path):
    data = many_pcap() * 1
    path = write(tmp_path, "a.pcap", data)
    body = """r = pfilter.classify(path, {"all": "len > 0"})
        n = int(r.counts[0])"""
    code = TRUNCATE_WHILE_READING.format(body=body).replace(
        "from pfilter.capture import reader\n", "from pfilter.capture import reader\n"
        "    init = reader.Capture.__init__\n"
        "    reader.Capture.__init__ = lambda self, p, **o: init(self, p, **dict(o, window_bytes=65536))\n", 1)
    child = run_child(code, path, len(data) // 2)
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-500:]}"
    _dlt, _snap, want, want_err = ref.read_capture(str(path))
    assert want_err is not None and want_err in child.stdout


def test_batches_kept_by_the_caller_stay_intact_while_reading_goes_on(tmp_path):
    path = write(tmp_path, "a.pcap", many_pcap())
    with pfilter.open(path, window_bytes=32768, batch_packets=8) as cap:
        kept = list(cap)
    assert [b.packet(i) for b in kept for i in range(len(b))] == MANY
    assert len({id(b.data.base) for b in kept}) > 3       # several windows, each its own buffer


def test_window_buffers_are_reused_when_no_batch_holds_them(tmp_path):
    path = write(tmp_path, "a.pcap", many_pcap())
    buffers, got = set(), []
    with pfilter.open(path, window_bytes=32768, batch_packets=8) as cap:
        for b in cap:
            buffers.add(b.data.base.ctypes.data if b.data.base is not None else b.data.ctypes.data)
            got.extend(b.packet(i) for i in range(len(b)))
            del b
    assert got == MANY
    assert len(buffers) <= 2           # about 20 windows, two buffers


def test_the_reader_maps_no_file(tmp_path):
    """No memory map anywhere on the read path: /proc/self/maps names no capture file."""
    path = write(tmp_path, "mapped-or-not.pcap", many_pcap())
    with pfilter.open(path) as cap:
        b = next(iter(cap))
        maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
        assert str(path) not in maps
        assert len(b) > 0


# ----------------------------------------------------------------------------- 19, 18.20: errors

def test_file_system_failures_are_oserror_subclasses(tmp_path):
    missing = tmp_path / "missing.pcap"
    with pytest.raises(FileNotFoundError) as e:
        pfilter.open(missing)
    assert e.value.errno == errno.ENOENT and e.value.filename == str(missing)
    with pytest.raises(IsADirectoryError) as e:
        pfilter.open(tmp_path)
    assert e.value.errno == errno.EISDIR and e.value.filename == str(tmp_path)
    with pytest.raises(FileNotFoundError):
        pfilter.classify(str(missing), {"a": "ip"})
    if os.geteuid() != 0:
        locked = write(tmp_path, "locked.pcap", build_pcap())
        locked.chmod(0)
        with pytest.raises(PermissionError) as e:
            pfilter.open(locked)
        assert e.value.errno == errno.EACCES


def test_content_errors_stay_filter_errors(tmp_path):
    path = write(tmp_path, "junk.pcap", b"not a capture at all")
    with pytest.raises(pfilter.CaptureFormatError) as e:
        pfilter.open(path)
    assert not isinstance(e.value, OSError) and e.value.offset == 0


def test_paths_may_be_str_bytes_or_pathlike_and_files_must_be_binary(tmp_path):
    path = write(tmp_path, "a.pcap", build_pcap())
    for p in (str(path), os.fsencode(path), path):
        assert packets_of(p) == (PKTS, None)
    with open(path, "rb") as f:
        assert packets_of(f) == (PKTS, None)
    with open(path) as f:                       # text mode: a clear FilterError, no UnicodeDecodeError
        with pytest.raises(pfilter.FilterError, match="binary"):
            pfilter.open(f)
    for bad in (3, 2.5, None, ["a.pcap"]):
        with pytest.raises(pfilter.FilterError, match="path or a binary file"):
            pfilter.open(bad)


def test_the_cli_reports_a_missing_file_in_one_line(tmp_path):
    missing = tmp_path / "missing.pcap"
    child = subprocess.run([sys.executable, "-m", "pfilter", "-r", str(missing), "ip"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert child.returncode != 0
    assert child.stderr.strip() == f"pfilter: {missing}: No such file or directory"


# ----------------------------------------------------------------------------- 18.10: compressed, truncated

def _zstd(raw):
    zstandard = optional_package("zstandard")
    return zstandard.ZstdCompressor().compress(raw)


COMPRESSORS = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress, "zstd": _zstd}


def tcpdump_reads(raw, tmp_path):
    """(packets, stderr) of `tcpdump -r - -w out` fed the decompressed bytes (as through zcat)."""
    out = tmp_path / "td.pcap"
    child = subprocess.run([ref.tcpdump(), "-r", "-", "-w", str(out)], input=raw, capture_output=True,
                           timeout=60)
    pkts = []
    if out.exists():
        _dlt, _snap, pkts, _err = ref.read_capture(str(out))
        ref.read_capture.cache_clear()
    return [p for p, _, _ in pkts], child.stderr.decode(errors="replace")


# 2000 packets of random bytes (about 1.5 MB that does not compress: bzip2's 900 kB blocks end
# inside it, so a cut stream still holds whole blocks)
_RNG = np.random.default_rng(18)
RANDOM = [_RNG.integers(0, 256, 60 + (i * 37) % 1440, dtype=np.uint8).tobytes() for i in range(2000)]
RANDOM_TIMES = [(1_700_000_000 + i, i) for i in range(2000)]


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
@pytest.mark.parametrize("keep", [0.3, 0.75])
def test_a_truncated_compressed_capture_delivers_its_intact_packets(tmp_path, kind, keep):
    raw = build_pcap(RANDOM, RANDOM_TIMES)
    whole = COMPRESSORS[kind](raw)
    path = write(tmp_path, f"a.pcap.{kind}", whole[:int(len(whole) * keep)])
    got, err = packets_of(path, window_bytes=65536)
    # what the decompressor could recover, as `zcat a.pcap.gz | tcpdump -r -` reads it
    part = subprocess.run({"gzip": ["gzip", "-dc"], "bzip2": ["bzip2", "-dc"], "xz": ["xz", "-dc"],
                           "zstd": ["zstd", "-dc"]}[kind], stdin=open(path, "rb"), capture_output=True).stdout \
        if _have(kind) else None
    assert err is not None, "a truncated stream must not end quietly"
    assert f"{kind} data ends early" in str(err) or f"damaged {kind} data" in str(err)
    assert got == RANDOM[:len(got)] and len(got) < len(RANDOM)
    offsets = np.cumsum([24] + [16 + len(p) for p in RANDOM])
    # the decompressed offset after the last intact packet (0 when not even the header came out)
    assert err.offset == (offsets[len(got)] if got or "header" not in str(err) else 0)
    if part is not None:
        want, stderr = tcpdump_reads(part, tmp_path)
        if kind == "bzip2":     # the bzip2 command loses its last output buffer (5000 bytes) on an error
            assert got[:len(want)] == want and len(got) - len(want) <= 5000 // 60 + 1
        else:
            assert got == want
            if "truncated dump file" in stderr:
                assert stderr.split("truncated dump file", 1)[1].split("\n")[0] in str(err)
    if keep > 0.5:
        assert len(got) > len(RANDOM) // 3


def _have(kind):
    import shutil
    return shutil.which({"gzip": "gzip", "bzip2": "bzip2", "xz": "xz", "zstd": "zstd"}[kind]) is not None


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_a_compressed_stream_cut_at_a_record_boundary_still_says_so(tmp_path, kind):
    raw = build_pcap()
    whole = COMPRESSORS[kind](raw)
    # the decompressed data is complete but the stream's trailer (checksum, end marker) is missing
    path = write(tmp_path, f"a.pcap.{kind}", whole[:-4])
    got, err = packets_of(path)
    assert got == PKTS[:len(got)]
    assert err is not None and err.offset <= len(raw)
    if got == PKTS:
        assert err.offset == len(raw)


@pytest.mark.parametrize("kind", sorted(COMPRESSORS))
def test_concatenated_compressed_streams_are_read_on(tmp_path, kind):
    raw = build_pcap()
    body = build_pcap()[24:]
    data = COMPRESSORS[kind](raw) + COMPRESSORS[kind](body)
    got, err = packets_of(write(tmp_path, f"a.pcap.{kind}", data))
    assert err is None and got == PKTS * 2


# ----------------------------------------------------------------------------- 18.9: -r DIR with a FIFO

def test_a_fifo_in_an_input_directory_is_skipped_not_opened(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    write(d, "a.pcap", build_pcap())
    os.mkfifo(d / "b.pcap")             # nobody ever writes it: opening it to read would block
    write(d, "c.pcap", build_pcap())
    child = subprocess.run([sys.executable, "-m", "pfilter", "-r", str(d), "--count", "ip or not ip"],
                           capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert child.returncode == 0, child.stderr
    assert child.stderr.count("\n") >= 1
    warnings = [line for line in child.stderr.splitlines() if "b.pcap" in line]
    assert warnings == [f"pfilter: warning: {d / 'b.pcap'}: not a regular file, skipped"]
    assert str(2 * len(PKTS)) in child.stdout


# ----------------------------------------------------------------------------- 18.12: many IDBs / SHBs

def _flood(n_ifaces, sections):
    """A pcapng file of `sections` sections, each with n_ifaces IDBs (every 7th named, every
    5th with nanosecond resolution) and one EPB per 1000 interfaces; and the expected packets
    [(data, file-wide interface, ts_ns)]."""
    out, want = [shb()], []
    for s in range(sections):
        if s:
            out.append(shb(">" if s % 2 else "<"))
        order = ">" if s % 2 else "<"
        for i in range(n_ifaces):
            out.append(idb(order, linktype=1 + i % 3, snaplen=1000 + i, tsresol=9 if i % 5 == 0 else None,
                           name=f"if{s}.{i}" if i % 7 == 0 else None))
        for i in range(0, n_ifaces, 1000):
            data = bytes([i % 256]) * (20 + i % 50)
            out.append(epb(order, i, 1_700_000_000_000_000 + i, data))
            units = 10**9 if i % 5 == 0 else 10**6
            want.append((data, s * n_ifaces + i, (1_700_000_000_000_000 + i) * (10**9 // units)))
    return b"".join(out), want


@pytest.mark.parametrize("n_ifaces, sections", [(100_000, 1), (2, 50_000)])
def test_many_interfaces_and_sections_read_in_linear_time(tmp_path, n_ifaces, sections):
    data, want = _flood(n_ifaces, sections)
    path = write(tmp_path, "flood.pcapng", data)
    started = time.perf_counter()
    got = []
    with pfilter.open(path) as cap:
        for b in cap:
            got.extend((b.packet(i), int(b.interfaces[i]), int(b.timestamps[i])) for i in range(len(b)))
        elapsed = time.perf_counter() - started
        ifaces = cap.interfaces
        assert len(ifaces) == n_ifaces * sections
        for k in (0, 1, 5, 7, 8, n_ifaces * sections - 1):
            s, i = divmod(k, n_ifaces)
            assert ifaces[k]["name"] == (f"if{s}.{i}" if i % 7 == 0 else None)
            assert ifaces[k]["snaplen"] == 1000 + i and ifaces[k]["linktype"] == 1 + i % 3
            assert ifaces[k]["units"] == (10**9 if i % 5 == 0 else 10**6)
        assert ifaces[1]["offset"] == data.index(idb("<", linktype=2, snaplen=1001))
        table_bytes = sum(getattr(cap._fmt.ifaces, name).nbytes for name, _ in cap._fmt.ifaces.FIELDS)
    assert got == want
    # libpcap 1.10.3 reads such a file in ~0.05 s; the Python-per-block reader took ~9 s per 1M
    from pfilter.capture import reader
    if reader._scan.__name__.endswith("._reader"):      # the C scanner (not PFILTER_PUREPYTHON=1)
        assert elapsed < 2.0, f"{len(data) / 1e6:.1f} MB of IDBs/SHBs took {elapsed:.2f} s"
    assert table_bytes < 120 * n_ifaces * sections


def test_the_pure_python_scanner_reads_the_flood_the_same(tmp_path):
    from pfilter.capture import _pyscan, reader
    data, want = _flood(3000, 3)
    path = write(tmp_path, "flood.pcapng", data)
    saved = reader._scan
    try:
        reader._scan = _pyscan
        with pfilter.open(path) as cap:
            got = [(b.packet(i), int(b.interfaces[i]), int(b.timestamps[i])) for b in cap for i in range(len(b))]
            names = [i["name"] for i in cap.interfaces]
    finally:
        reader._scan = saved
    assert got == want
    with pfilter.open(path) as cap:
        list(cap)
        assert [i["name"] for i in cap.interfaces] == names


# ----------------------------------------------------------------------------- 18.21: timestamps near 2**64

def test_pcapng_timestamps_beyond_int64_ns_keep_what_libpcap_writes_to_pcap(tmp_path):
    """Seconds that do not fit int64 nanoseconds keep their low 32 bits, as `tcpdump -w` stores
    them in a pcap file; the pcap pfilter writes then equals tcpdump's."""
    stamps = [2**64 - 1, 2**64 - 10**6, 2**63, 2**63 - 1, 10**6 * (2**33 + 5) + 7, 1_700_000_000_123_456]
    data = shb() + idb("<") + idb("<", tsoffset=2**62) + idb("<", tsoffset=-(2**40)) + b"".join(
        epb("<", i % 3, t, bytes([i]) * 60) for i, t in enumerate(stamps))
    src = write(tmp_path, "big-times.pcapng", data)
    with pfilter.open(src) as cap:
        got = [int(t) for b in cap for t in b.timestamps]
    assert len(got) == len(stamps) and all(-2**63 < t < 2**63 for t in got)
    ours, theirs = tmp_path / "ours.pcap", tmp_path / "theirs.pcap"
    pfilter.filter_file(src, ours, "")
    child = subprocess.run([ref.tcpdump(), "-r", str(src), "-w", str(theirs)], capture_output=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert ours.read_bytes() == theirs.read_bytes()
    # and reading pfilter's own view back: the times are what tcpdump wrote, as unsigned 32-bit seconds
    _dlt, _snap, written, _err = ref.read_capture(str(theirs))
    for ns, (_pkt, _len, ref_ns) in zip(got, written):
        sec, frac = divmod(ns, 10**9)
        assert (sec & 0xFFFFFFFF, frac // 1000) == ((ref_ns // 10**9) & 0xFFFFFFFF, ref_ns % 10**9 // 1000)
