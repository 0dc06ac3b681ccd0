"""The writers: pcap (micro/nanosecond) and pcapng round-trip through pfilter's reader and
libpcap's; wire lengths and timestamps survive; output is atomic (nothing at the destination
until it is complete, the old file intact after a failure) and never overwrites an input; the
Cython record assembly and its pure-Python fallback write the same bytes.
"""
import os
import struct
import subprocess

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter.capture import writer as writer_mod
from pfilter.capture.writer import PcapngWriter, PcapWriter, open_writer
from test_capture_formats import epb, idb, read_all, shb, write

PKTS = [b"\x01" * 60, b"\x02" * 1, b"", b"\x03" * 1514, b"\x04" * 7]
WIRE = [60, 1, 0, 9000, 7]
TS = [1_700_000_000_123_456_789, 1_700_000_001_000_000_000, 5, -1_500_000_000, 2**40 * 10**9 // 1000]


def batch(linktype=1):
    return pfilter.PacketBatch.from_packets(PKTS, wirelens=WIRE, linktype=linktype,
                                            timestamps=np.array(TS, np.int64))


def us(ts):
    return ts // 1000 * 1000


def in_pcap(ts):
    """The time a pcap record gives back for ts: its seconds are unsigned 32-bit (the README's
    "Differences from tcpdump"), so one before 1970 comes back as its low 32 bits, as libpcap
    1.11 writes and reads it."""
    return ts // 10**9 % 2**32 * 10**9 + ts % 10**9


@pytest.mark.parametrize("resolution", ["us", "ns"])
def test_pcap_round_trip_keeps_bytes_wire_lengths_and_times(tmp_path, resolution):
    dst = tmp_path / "o.pcap"
    with PcapWriter(dst, linktype=1, snaplen=65535, ts_resolution=resolution) as w:
        assert w.write(batch()) == len(PKTS)
    got, attrs = read_all(dst)
    assert [(p, wl) for p, wl, *_ in got] == list(zip(PKTS, WIRE))
    assert [t for _, _, t, _, _ in got] == [in_pcap(t if resolution == "ns" else us(t)) for t in TS]
    assert attrs["ts_resolution"] == resolution and attrs["snaplen"] == 65535
    magic = struct.unpack("<I", dst.read_bytes()[:4])[0]
    assert magic == (0xA1B23C4D if resolution == "ns" else 0xA1B2C3D4)


def test_libpcap_reads_pcap_output_as_written(tmp_path):
    dst = tmp_path / "o.pcap"
    with PcapWriter(dst, linktype=1, ts_resolution="ns") as w:
        w.write(batch())
    _dlt, _snap, pkts, err = ref.read_capture(str(dst))
    assert err is None
    assert [(p, wl, t) for p, wl, t in pkts] == list(zip(PKTS, WIRE, map(in_pcap, TS)))


def test_writes_only_the_selected_packets_by_mask_or_index(tmp_path):
    dst = tmp_path / "o.pcap"
    with PcapWriter(dst) as w:
        w.write(batch(), np.array([True, False, False, True, False]))
        w.write(batch(), np.array([4, 0]))
    got, _ = read_all(dst)
    assert [p for p, *_ in got] == [PKTS[0], PKTS[3], PKTS[4], PKTS[0]]


@pytest.mark.parametrize("resolution", ["us", "ns"])
def test_pcapng_round_trip_with_interfaces_of_several_link_types(tmp_path, resolution):
    src = write(tmp_path, "in.pcapng", shb() + idb(linktype=1, name="eth0", tsresol=9) + idb(linktype=113, tsresol=9)
                + epb("<", 0, 1_000_000_123, b"ether", wirelen=99) + epb("<", 1, 2_000_000_456, b"cooked"))
    dst = tmp_path / "out.pcapng"
    with pfilter.open(src) as cap:
        with open_writer(dst, linktype=cap.linktype, ts_resolution=resolution, interfaces=cap.interfaces) as w:
            assert w.format == "pcapng"
            for b in cap:
                w.write(b)
    got, attrs = read_all(dst)
    expect_ts = [1_000_000_123, 2_000_000_456] if resolution == "ns" else [1_000_000_000, 2_000_000_000]
    assert [(p, wl, t, lt) for p, wl, t, lt, _ in got] == [(b"ether", 99, expect_ts[0], 1), (b"cooked", 6, expect_ts[1], 113)]
    with pfilter.open(dst) as cap:
        assert cap.interfaces[0]["name"] == "eth0"


def test_libpcap_reads_pcapng_output(tmp_path):
    """pcapng timestamps are unsigned: the pre-1970 packet is left out here."""
    dst = tmp_path / "o.pcapng"
    keep = np.array([0, 1, 2, 4])
    with PcapngWriter(dst, linktype=1, ts_resolution="ns") as w:
        w.write(batch(), keep)
    _dlt, _snap, pkts, err = ref.read_capture(str(dst))
    assert err is None
    assert [(p, wl, t) for p, wl, t in pkts] == [(PKTS[i], WIRE[i], TS[i]) for i in keep]


def test_pcap_writer_refuses_packets_of_another_link_type(tmp_path):
    b = batch()
    b.linktypes = np.array([1, 1, 113, 1, 1], np.uint16)
    with pytest.raises(pfilter.FilterError, match="link type 113"):
        with PcapWriter(tmp_path / "o.pcap", linktype=1) as w:
            w.write(b)
    assert not (tmp_path / "o.pcap").exists()


def test_nothing_appears_at_the_destination_before_close(tmp_path):
    dst = tmp_path / "o.pcap"
    w = PcapWriter(dst)
    w.write(batch())
    assert not dst.exists()
    w.close()
    assert dst.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["o.pcap"]


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    dst = tmp_path / "o.pcap"
    dst.write_bytes(b"previous contents")
    with pytest.raises(RuntimeError):
        with PcapWriter(dst) as w:
            w.write(batch())
            raise RuntimeError("boom")
    assert dst.read_bytes() == b"previous contents"
    assert [p.name for p in tmp_path.iterdir()] == ["o.pcap"]


def test_output_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with PcapWriter(tmp_path / "o.pcap") as w:
            w.write(batch())
    finally:
        os.umask(old)
    assert (tmp_path / "o.pcap").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("how", ["same", "hardlink", "symlink"])
def test_writer_refuses_to_overwrite_its_input(tmp_path, how):
    src = tmp_path / "in.pcap"
    with PcapWriter(src) as w:
        w.write(batch())
    before = src.read_bytes()
    dst = src
    if how == "hardlink":
        dst = tmp_path / "link.pcap"
        os.link(src, dst)
    elif how == "symlink":
        dst = tmp_path / "sym.pcap"
        os.symlink(src, dst)
    with pytest.raises(pfilter.FilterError, match="refusing to overwrite the input"):
        PcapWriter(dst, protect=[src])
    assert src.read_bytes() == before


def test_pure_python_assembly_writes_the_same_bytes(tmp_path, monkeypatch):
    outputs = {}
    for mode in ("native", "python"):
        if mode == "python":
            monkeypatch.setattr(writer_mod, "_native", None)
        for cls in (PcapWriter, PcapngWriter):
            for res in ("us", "ns"):
                dst = tmp_path / f"{mode}-{cls.__name__}-{res}"
                with cls(dst, ts_resolution=res) as w:
                    w.write(batch(), np.array([3, 1, 4, 0, 2]))
                outputs[mode, cls.__name__, res] = dst.read_bytes()
    for key in [k for k in outputs if k[0] == "native"]:
        assert outputs[key] == outputs[("python",) + key[1:]], key


def test_pcap_header_keeps_link_type_extension_bits(tmp_path):
    dst = tmp_path / "o.pcap"
    with PcapWriter(dst, linktype=1, linktype_ext=0x14000000) as w:
        w.write(batch())
    assert struct.unpack("<I", dst.read_bytes()[20:24])[0] == 0x14000001


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("native", [True, False])
def test_out_of_range_fractions_are_copied_as_tcpdump_writes_them(tmp_path, monkeypatch, order, native):
    import subprocess
    from test_capture_formats import build_pcap
    if not native:
        monkeypatch.setattr(writer_mod, "_native", None)
    src = tmp_path / "in.pcap"
    src.write_bytes(build_pcap([b"\x00" * 20, b"\x01" * 30], [(1544488577, 1159821166), (-5, -7)], order=order))
    pfilter.filter_file(src, tmp_path / "p.pcap", "")
    subprocess.run([ref.tcpdump(), "-r", str(src), "-w", str(tmp_path / "t.pcap")], capture_output=True)
    assert (tmp_path / "p.pcap").read_bytes() == (tmp_path / "t.pcap").read_bytes()
    assert struct.unpack("<ii", (tmp_path / "p.pcap").read_bytes()[24:32]) == (1544488577, 1159821166)


@pytest.mark.parametrize("snaplen", [65535, 25])
def test_records_copied_verbatim_from_the_input_equal_assembled_ones(tmp_path, monkeypatch, snaplen):
    """pcap in, pcap out: records whose header already reads right go out with writev straight
    from the input's map; a cut record (caplen > snaplen) makes the batch assemble instead."""
    from test_capture_formats import build_pcap
    if writer_mod._native is None:
        pytest.skip("the writev path is pfilter.capture._writer's (PFILTER_PUREPYTHON=1 or not built)")
    rng = np.random.default_rng(3)
    pkts = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 60, 400)]
    src = tmp_path / "in.pcap"
    src.write_bytes(build_pcap(pkts, [(i, i) for i in range(len(pkts))], snaplen=snaplen))
    prog = pfilter.Program.from_tuples([(0x30, 0, 0, 0), (0x45, 0, 1, 1), (6, 0, 0, 65535), (6, 0, 0, 0)])  # odd first byte
    outputs, calls = [], []
    real = writer_mod._native.write_runs
    monkeypatch.setattr(writer_mod._native, "write_runs", lambda *a: calls.append(a[-1]) or real(*a))
    for minimum in (0, 10**12):
        monkeypatch.setattr(writer_mod, "VERBATIM_MIN_BYTES", minimum)
        pfilter.filter_file(src, tmp_path / f"o{minimum}.pcap", prog, batch_packets=37)
        outputs.append((tmp_path / f"o{minimum}.pcap").read_bytes())
    assert outputs[0] == outputs[1]
    assert (len(calls) > 5) == (snaplen == 65535)      # no verbatim batch holds a cut record
    got = [p for p in read_all(tmp_path / "o0.pcap")[0]]
    assert [p for p, *_ in got] == [p[:snaplen] for p in pkts if p and p[0] & 1]


def test_a_pcapng_output_without_packets_still_describes_its_interfaces(tmp_path):
    """No packet matched: the pcapng file still holds the input's interfaces (one of its link type
    for a pcap input), as mergecap and editcap write it; tcpdump refuses a pcapng file without any
    ('the capture file has no Interface Description Blocks')."""
    sample = ref.ROOT / "data" / "sample.pcap"
    out = tmp_path / "none.pcapng"
    assert pfilter.filter_file(str(sample), str(out), "len > 100000").written == 0
    r = subprocess.run([ref.tcpdump(), "-r", str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and "link-type EN10MB" in r.stderr and r.stdout == ""
    with pfilter.open(str(out)) as cap:
        assert [i["linktype"] for i in cap.interfaces] == [1] and sum(len(b) for b in cap) == 0
    two = ref.corpus_file("pcaps/pcapplusplus__Pcap++Test__PcapExamples__pcapng-example.pcapng")
    with pfilter.open(str(two)) as cap:
        want = [(i["linktype"], i["snaplen"]) for i in cap.interfaces]
    pfilter.filter_file(str(two), str(out), "len > 100000")
    with pfilter.open(str(out)) as cap:
        assert [(i["linktype"], i["snaplen"]) for i in cap.interfaces] == want
