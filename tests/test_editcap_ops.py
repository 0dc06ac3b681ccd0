"""--snaplen, --dedup and compressed output (issue 12): `--snaplen N` equals `editcap -s N` and
`--dedup[=W]` equals `editcap -D W` packet for packet (Debian's wireshark-common), across batch
boundaries and on split files too; .gz/.xz/.bz2/.zst outputs are read back by pfilter and, once
decompressed, by tcpdump (which does not read compressed files itself)."""
import bz2
import gzip
import lzma
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import pfilter
import reference as ref

CORPUS = [
    "pcapplusplus__Pcap++Test__PcapExamples__example.pcap",
    "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap",
    "tcpdump__pptp.pcap",                      # big-endian
    "tcpdump__of13_ericsson.pcapng",
]


def _packets(path):
    """[(timestamp ns, caplen, wirelen, bytes)] of a capture, and its snapshot length."""
    out = []
    with pfilter.open(path) as cap:
        snaplen = cap.snaplen
        for b in cap:
            for i in range(len(b)):
                out.append((int(b.timestamps[i]), int(b.caplen[i]), int(b.wirelen[i]), b.packet(i)))
    return out, snaplen


def _editcap(src, dst, *opts):
    r = subprocess.run([ref.editcap(), "-F", "pcap", *opts, str(src), str(dst)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return dst


@pytest.fixture(scope="module")
def dup_capture(tmp_path_factory):
    """A generated capture with duplicates 1 to 12 packets apart, some differing only in length
    or in one byte, some cut (caplen < wirelen)."""
    rng = np.random.default_rng(7)
    base = [bytes(rng.integers(0, 256, int(n), dtype=np.uint8)) for n in rng.integers(40, 300, 60)]
    packets, wire = [], []
    for i in range(3000):
        r = rng.random()
        if r < 0.35 and packets:
            p = packets[-int(rng.integers(1, min(12, len(packets)) + 1))]        # an exact copy
        elif r < 0.45 and packets:
            p = bytearray(packets[-1])
            p[int(rng.integers(0, len(p)))] ^= 1                                 # one bit differs
            p = bytes(p)
        elif r < 0.5 and packets:
            p = packets[-1] + b"\0"                                              # one byte longer
        else:
            p = base[int(rng.integers(0, len(base)))]
        packets.append(p)
        wire.append(len(p) + int(rng.integers(0, 2)) * 100)
    ts = 1_600_000_000_000_000_000 + np.arange(3000, dtype=np.int64) * 1_000_000
    path = tmp_path_factory.mktemp("dups") / "dups.pcap"
    pfilter.write(path, pfilter.PacketBatch.from_packets(packets, wirelens=wire, linktype=1, timestamps=ts))
    return path


@pytest.mark.parametrize("snaplen", [1, 54, 60, 200, 1500])
@pytest.mark.parametrize("name", CORPUS)
def test_snaplen_equals_editcap_s(tmp_path, name, snaplen):
    src = ref.corpus_file(f"pcaps/{name}")
    want, want_snap = _packets(_editcap(src, tmp_path / "e.pcap", "-s", str(snaplen)))
    pfilter.filter_file(src, tmp_path / "p.pcap", "", truncate=snaplen)
    got, got_snap = _packets(tmp_path / "p.pcap")
    assert got == want
    assert got_snap == snaplen       # the header says it, as editcap writes it for a pcap input
    if name.endswith(".pcap"):
        assert want_snap == snaplen
    assert any(c < w for _t, c, w, _d in got) or snaplen >= 1500


@pytest.mark.parametrize("how", [dict(workers=1), dict(workers=2), dict(dedup=1)], ids=["fast", "fast-j2", "general"])
def test_snaplen_above_the_input_s_keeps_its_header_as_editcap(tmp_path, how):
    """--snaplen N over an input whose header says less than N: editcap -s N keeps the input's
    snapshot length; every path writes editcap's file byte for byte, above and below it."""
    cut = tmp_path / "cut100.pcap"
    pfilter.filter_file(ref.ROOT / "data" / "sample.pcap", cut, "", truncate=100)
    for n in (60, 100, 101, 65535):
        want = _editcap(cut, tmp_path / f"e{n}.pcap", "-s", str(n))
        got = tmp_path / f"p{n}.pcap"
        pfilter.filter_file(cut, got, "", truncate=n, **how)
        assert got.read_bytes() == want.read_bytes(), n


@pytest.mark.parametrize("window", [1, 2, 3, 5, 10, 100])
def test_dedup_equals_editcap_D_across_batches(tmp_path, dup_capture, window):
    want, _ = _packets(_editcap(dup_capture, tmp_path / "e.pcap", "-D", str(window)))
    # small batches: the window is carried from one batch to the next
    pfilter.filter_file(dup_capture, tmp_path / "p.pcap", "", dedup=window, batch_packets=7)
    got, _ = _packets(tmp_path / "p.pcap")
    assert got == want
    assert (len(got) < 3000) == (window > 1)


@pytest.mark.parametrize("name", CORPUS[:2])
def test_dedup_and_snaplen_together_equal_editcap_on_the_command_line(tmp_path, name):
    src = ref.corpus_file(f"pcaps/{name}")
    want = _editcap(src, tmp_path / "e.pcap", "-s", "64", "-D", "5")
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(src), "-w", str(tmp_path / "p.pcap"),
                        "--snaplen", "64", "--dedup"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert _packets(tmp_path / "p.pcap") == _packets(want)
    assert (tmp_path / "p.pcap").read_bytes() == want.read_bytes()      # the same bytes, in fact


def test_split_files_dedup_and_truncate_each_as_editcap_on_tcpdumps_output(tmp_path, dup_capture):
    rules = {"v4": "ip", "big": "greater 200"}
    pfilter.classify(dup_capture, rules, split=str(tmp_path / "{rule}.pcap"), dedup=4, truncate=100)
    for rule, expr in rules.items():
        plain = tmp_path / f"t-{rule}.pcap"
        subprocess.run([ref.tcpdump(), "-r", str(dup_capture), "-w", str(plain), expr], capture_output=True, check=True)
        want = _editcap(plain, tmp_path / f"e-{rule}.pcap", "-s", "100", "-D", "4")
        assert _packets(tmp_path / f"{rule}.pcap") == _packets(want)


DECOMPRESS = {".gz": gzip.decompress, ".xz": lzma.decompress, ".bz2": bz2.decompress}


def _zstd_decompress(data):
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


@pytest.mark.parametrize("suffix", [".gz", ".xz", ".bz2", ".zst"])
def test_compressed_outputs_read_back_by_pfilter_and_by_tcpdump_after_decompression(tmp_path, suffix):
    src = ref.corpus_file(f"pcaps/{CORPUS[1]}")
    plain, packed = tmp_path / "plain.pcap", tmp_path / f"out.pcap{suffix}"
    pfilter.filter_file(src, plain, "tcp")
    r = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(src), "-w", str(packed), "tcp"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = packed.read_bytes()
    assert data != plain.read_bytes()
    raw = (_zstd_decompress if suffix == ".zst" else DECOMPRESS[suffix])(data)
    assert raw == plain.read_bytes()
    assert _packets(packed) == _packets(plain)
    # tcpdump reads the decompressed stream from standard input and writes the same file
    r = subprocess.run([ref.tcpdump(), "-r", "-", "-w", "-"], input=raw, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == raw


def test_zcat_into_tcpdump_reads_the_gzip_output(tmp_path):
    if shutil.which("zcat") is None:
        ref._missing("zcat (gzip)")
    src = ref.corpus_file(f"pcaps/{CORPUS[0]}")
    pfilter.filter_file(src, tmp_path / "out.pcap.gz", "udp")
    pfilter.filter_file(src, tmp_path / "out.pcap", "udp")
    r = subprocess.run(f"zcat '{tmp_path}/out.pcap.gz' | '{ref.tcpdump()}' -r - -w -", shell=True,
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (tmp_path / "out.pcap").read_bytes()


def test_zstd_output_without_zstandard_names_the_extra_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "zstandard", None)      # import zstandard fails
    batch = pfilter.PacketBatch.from_packets([b"\0" * 60])
    with pytest.raises(pfilter.FilterError, match=r"pfilter\[zstd\]"):
        pfilter.write(tmp_path / "out.pcap.zst", batch)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("value", [0, -1, True, 1.5, 1000001])
def test_bad_dedup_windows_are_filter_errors(tmp_path, dup_capture, value):
    if value is True:                      # True means editcap's default window
        pfilter.filter_file(dup_capture, tmp_path / "p.pcap", "", dedup=value)
        want, _ = _packets(_editcap(dup_capture, tmp_path / "e.pcap", "-D", "5"))
        assert _packets(tmp_path / "p.pcap")[0] == want
        return
    if value == 0:                         # 0: no duplicate removal, as editcap -D 0
        pfilter.filter_file(dup_capture, tmp_path / "p.pcap", "", dedup=value)
        assert len(_packets(tmp_path / "p.pcap")[0]) == 3000
        return
    with pytest.raises(pfilter.FilterError, match="dedup window"):
        pfilter.filter_file(dup_capture, tmp_path / "p.pcap", "", dedup=value)
    assert not (tmp_path / "p.pcap").exists()


@pytest.mark.parametrize("name", ["sample.pcap", "cut100.pcap"])
def test_snaplen_into_pcapng_keeps_the_interfaces_as_editcap(tmp_path, name):
    """--snaplen N with pcapng output from a pcap input: the packets cut, the interface's
    snapshot length the input's, as `editcap -F pcapng -s N` writes it (it said N)."""
    src = ref.ROOT / "data" / "sample.pcap"
    if name == "cut100.pcap":
        pfilter.filter_file(src, tmp_path / name, "", truncate=100)
        src = tmp_path / name
    want = tmp_path / "e.pcapng"
    r = subprocess.run([ref.editcap(), "-F", "pcapng", "-s", "64", str(src), str(want)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    got = tmp_path / "p.pcapng"
    pfilter.filter_file(src, got, "", truncate=64)
    with pfilter.open(want) as e, pfilter.open(got) as p:
        assert [b.packet(i) for b in p for i in range(len(b))] == [b.packet(i) for b in e for i in range(len(b))]
        assert [i["snaplen"] for i in p.interfaces] == [i["snaplen"] for i in e.interfaces] == [
            262144 if name == "sample.pcap" else 100]
