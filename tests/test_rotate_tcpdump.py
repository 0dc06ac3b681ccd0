"""Rotation (issue 12): `pfilter -r IN -w OUT -C/-G/-W` and `classify --split ... -C` produce the
same file names holding the same bytes as tcpdump with the same options reading the same file.

tcpdump 4.99 times -G by the wall clock even when reading a file; pfilter by the packets'
timestamps (a Divergence, README). To compare the two, tcpdump runs with a small LD_PRELOAD
library whose time() returns the timestamp of the packet being handled (and, before the first
packet, the first packet's): tcpdump's own rotation logic and names, on the packets' clock."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import pfilter
import reference as ref

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <pcap/pcap.h>

static time_t packet_time = (time_t)-1;
static pcap_handler real_handler;

static void handler(u_char *user, const struct pcap_pkthdr *h, const u_char *sp)
{
    packet_time = h->ts.tv_sec;
    real_handler(user, h, sp);
}

int pcap_loop(pcap_t *p, int cnt, pcap_handler cb, u_char *user)
{
    int (*real)(pcap_t *, int, pcap_handler, u_char *) =
        (int (*)(pcap_t *, int, pcap_handler, u_char *))dlsym(RTLD_NEXT, "pcap_loop");
    real_handler = cb;
    return real(p, cnt, handler, user);
}

time_t time(time_t *out)
{
    time_t t = packet_time;
    if (t == (time_t)-1) {
        const char *start = getenv("SHIM_START");
        t = start ? (time_t)atoll(start) : 0;
    }
    if (out)
        *out = t;
    return t;
}
"""


@pytest.fixture(scope="module")
def packet_clock():
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not Path("/usr/include/pcap/pcap.h").exists():
        ref._missing("a C compiler and libpcap headers (apt-get install gcc libpcap0.8-dev)")
    out = Path(tempfile.mkdtemp(prefix="pfilter-clock-"))
    (out / "shim.c").write_text(SHIM)
    r = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out / "shim.so"), str(out / "shim.c"), "-ldl"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    yield out / "shim.so"
    shutil.rmtree(out, ignore_errors=True)


def _first_second(path):
    with pfilter.open(path) as cap:
        for batch in cap:
            if len(batch):
                return int(batch.timestamps[0] // 1_000_000_000)
    return 0


def _tcpdump(shim, src, outdir, opts, expr=()):
    env = dict(os.environ, TZ="UTC", LD_PRELOAD=str(shim), SHIM_START=str(_first_second(src)))
    # -Z root: tcpdump would otherwise give up root for its files after the first
    r = subprocess.run([ref.tcpdump(), "-Z", "root", "-r", str(src), *opts, *expr],
                       cwd=outdir, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _pfilter(src, outdir, opts, expr=()):
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(src), *opts, *expr],
                       cwd=outdir, env=dict(os.environ, TZ="UTC"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def _files(d):
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir())}


@pytest.fixture(scope="module")
def timed_capture(tmp_path_factory):
    """A generated capture spread over about 13 minutes of packet time (irregular gaps, one
    jump backwards), large enough for -C 1 to rotate inside a -G 60 period."""
    rng = np.random.default_rng(12)
    n = 6000
    gaps = rng.integers(0, 260, n).astype(np.int64) * 1_000_000    # up to 0.26 s
    gaps[n // 2] = -40_000_000_000                                   # the clock steps back 40 s
    ts = 1_700_000_123_456_789_000 + np.cumsum(gaps)
    sizes = rng.integers(60, 1500, n)
    packets = []
    for i, size in enumerate(sizes):
        frame = bytearray(rng.integers(0, 256, int(size), dtype=np.uint8).tobytes())
        frame[12:14] = b"\x08\x00" if i % 3 else b"\x86\xdd"
        packets.append(bytes(frame))
    path = tmp_path_factory.mktemp("timed") / "timed.pcap"
    pfilter.write(path, pfilter.PacketBatch.from_packets(packets, linktype=1, timestamps=ts))
    return path


@pytest.mark.parametrize("opts", [
    ["-C", "1"],
    ["-C", "1", "-W", "3"],
    ["-C", "1", "-W", "1"],
    ["-C", "1", "-W", "12"],
])
def test_size_rotation_matches_tcpdump(tmp_path, packet_clock, opts):
    src = ref.corpus_file("pcaps/pcapplusplus__Pcap++Test__PcapExamples__example.pcap")
    a, b = tmp_path / "tcpdump", tmp_path / "pfilter"
    a.mkdir()
    b.mkdir()
    _tcpdump(packet_clock, src, a, [*opts, "-w", "out.pcap"])
    _pfilter(src, b, [*opts, "-w", "out.pcap"])
    want = _files(a)
    assert len(want) >= 2 or opts[-1] == "1"
    assert _files(b) == want


@pytest.mark.parametrize("opts", [
    ["-G", "60"],
    ["-G", "60", "-W", "3"],
    ["-G", "60", "-C", "1"],
    ["-G", "120", "-C", "1", "-W", "2"],
    ["-G", "3600", "-C", "1"],
])
def test_time_rotation_matches_tcpdump_on_the_packet_clock(tmp_path, packet_clock, timed_capture, opts):
    a, b = tmp_path / "tcpdump", tmp_path / "pfilter"
    a.mkdir()
    b.mkdir()
    name = ["-w", "cap-%Y%m%d-%H%M%S.pcap"]
    _tcpdump(packet_clock, timed_capture, a, [*opts, *name], ["ip"])
    _pfilter(timed_capture, b, [*opts, *name], ["ip"])
    want = _files(a)
    assert len(want) >= 2
    assert _files(b) == want


def test_split_files_rotate_as_tcpdump_does_for_each_rule(tmp_path, packet_clock):
    src = ref.corpus_file("pcaps/pcapplusplus__Pcap++Test__PcapExamples__example.pcap")
    rules = {"tcp": "tcp", "web": "tcp port 80", "udp": "udp"}
    (tmp_path / "rules.txt").write_text("".join(f"{k}: {v}\n" for k, v in rules.items()))
    b = tmp_path / "split"
    b.mkdir()
    r = subprocess.run([sys.executable, "-m", "pfilter", "classify", "-r", str(src), "-R",
                        str(tmp_path / "rules.txt"), "--split", str(b / "{rule}.pcap"), "-C", "1", "-W", "3"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    want = {}
    for rule, expr in rules.items():
        a = tmp_path / f"tcpdump-{rule}"
        a.mkdir()
        _tcpdump(packet_clock, src, a, ["-C", "1", "-W", "3", "-w", f"{rule}.pcap"], [expr])
        want.update(_files(a))
    assert len(want) > len(rules)
    assert _files(b) == want


def test_rotation_needs_a_file_name(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pfilter", "-r", "x.pcap", "-C", "1", "tcp"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "-w" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("general", [False, True], ids=["fast-path", "general-path"])
@pytest.mark.parametrize("name, opts", [
    ("out.pcap1", ["-C", "1"]),
    ("out.pcap2", ["-C", "1", "-W", "3"]),
    ("out.pcap07", ["-C", "1", "-W", "12"]),
    ("out.pcap1", ["-C", "1", "-G", "3600"]),
])
def test_a_rotation_into_the_input_is_refused_before_any_file_is_written(tmp_path, general, name, opts):
    # The input is one of the names the rotation would write (tcpdump writes over it): refused
    # before the first file, so that no output is left from a refused run.
    shutil.copy(ref.ROOT / "data" / "sample.pcap", tmp_path / name)
    r = subprocess.run([sys.executable, "-m", "pfilter", "-r", name, *opts, "-w", "out.pcap", "tcp"],
                       capture_output=True, text=True, cwd=tmp_path,
                       env=dict(os.environ, **({"PFILTER_NO_FASTPATH": "1"} if general else {})))
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-1] == (f"pfilter: out.pcap: -C would rotate into the input file {name}: "
                                         f"refusing to overwrite it")
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    # from Python too, and a name the rotation never writes is no clash ("out.pcap01" without -W)
    rotate = {"size": 1000000, **({"files": int(opts[opts.index("-W") + 1])} if "-W" in opts else {})}
    with pytest.raises(pfilter.FilterError, match="-C would rotate into the input file"):
        pfilter.filter_file(tmp_path / name, tmp_path / "out.pcap", "tcp", rotate=rotate)
    os.rename(tmp_path / name, tmp_path / "out.pcap01")
    stats = pfilter.filter_file(tmp_path / "out.pcap01", tmp_path / "out.pcap", "tcp", rotate={"size": 1000000})
    assert stats.written > 0 and (tmp_path / "out.pcap").exists()


@pytest.mark.parametrize("opts", [["-C", "1", "-W", "3"], ["--snaplen", "100", "-C", "1"], ["--snaplen", "64"]])
def test_the_fast_path_rotates_and_truncates_as_the_general_path(tmp_path, opts):
    from pfilter.capture.fastpath import fast_filter_file
    from pfilter.capture.rotate import C_UNIT, Rotation
    src = ref.corpus_file("pcaps/pcapplusplus__Pcap++Test__PcapExamples__example.pcap")
    fast, general = tmp_path / "fast", tmp_path / "general"
    fast.mkdir()
    general.mkdir()
    _pfilter(src, fast, [*opts, "-w", "out.pcap"], ["tcp"])
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(src), *opts, "-w", "out.pcap", "tcp"],
                       cwd=general, env=dict(os.environ, PFILTER_NO_FASTPATH="1"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _files(fast) == _files(general)
    # and the fast path did take it
    size = int(opts[opts.index("-C") + 1]) * C_UNIT if "-C" in opts else None
    files = int(opts[opts.index("-W") + 1]) if "-W" in opts else None
    trunc = int(opts[opts.index("--snaplen") + 1]) if "--snaplen" in opts else None
    other = tmp_path / "in-process"
    other.mkdir()
    stats = fast_filter_file(src, str(other / "out.pcap"),
                             lambda lt, snap, sw: pfilter.compile("tcp", linktype=lt, snaplen=snap).to_tuples(),
                             truncate=trunc, rotate=Rotation(size=size, files=files) if size else None)
    assert stats is not None and stats.written > 0
    assert _files(other) == _files(fast)


def test_a_damaged_input_after_rotations_gives_tcpdumps_files(tmp_path, packet_clock):
    src = ref.corpus_file("pcaps/pcapplusplus__Pcap++Test__PcapExamples__example.pcap")
    data = src.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 3 // 4 + 7])        # ends inside a record, after 2 MB
    a, b = tmp_path / "tcpdump", tmp_path / "pfilter"
    a.mkdir()
    b.mkdir()
    env = dict(os.environ, TZ="UTC", LD_PRELOAD=str(packet_clock), SHIM_START="0")
    subprocess.run([ref.tcpdump(), "-Z", "root", "-r", str(cut), "-C", "1", "-w", "out.pcap"], cwd=a, env=env,
                   capture_output=True)
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(cut), "-C", "1", "-w", "out.pcap"],
                       cwd=b, capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    want = _files(a)
    assert len(want) >= 3
    assert _files(b) == want


@pytest.mark.parametrize("opts", [["-C", "1"], ["-C", "1", "-W", "2"], ["-G", "60", "-C", "1"]])
@pytest.mark.parametrize("suffix", [".pcap.gz", ".pcapng.xz"])
def test_every_file_of_a_compressed_rotation_is_compressed(tmp_path, timed_capture, opts, suffix):
    """A compressed output name rotated: every file of the series is compressed as the name
    says ('out.pcap.gz1' too, whose name no longer ends in .gz), holding what the uncompressed
    rotation's file of the same number holds (-C counts the bytes before compression)."""
    import gzip
    import lzma
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir()
    packed.mkdir()
    plain_ext = suffix.rsplit(".", 1)[0]
    name = "out-%H%M" if "-G" in opts else "out"
    _pfilter(timed_capture, plain, [*opts, "-w", name + plain_ext])
    _pfilter(timed_capture, packed, [*opts, "-w", name + suffix])
    want, got = _files(plain), _files(packed)
    assert len(want) >= 2
    opener = gzip.decompress if suffix.endswith(".gz") else lzma.decompress
    assert {name.replace(suffix, plain_ext): opener(data) for name, data in got.items()} == want


def test_a_split_rotating_into_the_input_is_refused_before_any_file_is_written(tmp_path):
    shutil.copy(ref.ROOT / "data" / "sample.pcap", tmp_path / "tcp.pcap1")
    (tmp_path / "rules.txt").write_text("udp: udp\ntcp: tcp\n")
    r = subprocess.run([sys.executable, "-m", "pfilter", "classify", "-r", "tcp.pcap1", "-R", "rules.txt",
                        "--split", "{rule}.pcap", "-C", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == ("pfilter classify: tcp.pcap: -C would rotate into the input file tcp.pcap1: "
                        "refusing to overwrite it\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rules.txt", "tcp.pcap1"]
