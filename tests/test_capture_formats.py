"""The reader on hand-built captures: every pcap and pcapng variant libpcap 1.10.3 reads (both
byte orders, micro/nanosecond, patched headers, old versions with swapped lengths, link-type
upper bits, odd snapshot lengths), what pcapng adds (sections of either byte order, if_tsresol,
if_tsoffset, EPB/SPB/PB, interfaces of several link types), compressed and piped input, and
batches that are bounded and cut at window edges. Also the builders other capture tests use.
"""
import bz2
import gzip
import io
import lzma
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import pfilter
from pfilter.capture import reader as reader_mod

PKTS = [bytes(range(i, i + 20 + 7 * i)) for i in range(6)]
TIMES = [(1_700_000_000 + i, 123_456 + i) for i in range(6)]


def optional_package(name):
    """An optional test package ([test] extra): skipped without it, but required under CI=true."""
    import importlib
    import reference
    if reference.IN_CI:
        return importlib.import_module(name)
    return pytest.importorskip(name)


# ----------------------------------------------------------------------------- builders

def build_pcap(packets=PKTS, times=TIMES, order="<", nsec=False, linktype=1, snaplen=65535,
               version=(2, 4), kuznetzov=False, wirelens=None, caplens=None):
    """A classic pcap file as bytes. caplens override the recorded captured length (the data
    written is still `packets`)."""
    magic = 0xA1B2CD34 if kuznetzov else (0xA1B23C4D if nsec else 0xA1B2C3D4)
    out = [struct.pack(order + "IHHiIII", magic, version[0], version[1], 0, 0, snaplen, linktype)]
    for i, p in enumerate(packets):
        sec, frac = times[i]
        cap = len(p) if caplens is None else caplens[i]
        wire = len(p) if wirelens is None else wirelens[i]
        out.append(struct.pack(order + "iiII", sec, frac, cap, wire))
        if kuznetzov:
            out.append(struct.pack(order + "iHBB", 3, 0x0800, 0, 0))
        out.append(p)
    return b"".join(out)


def _block(order, btype, body):
    body += b"\0" * ((-len(body)) % 4)
    total = 12 + len(body)
    return struct.pack(order + "II", btype, total) + body + struct.pack(order + "I", total)


def _opt(order, code, value):
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * ((-len(value)) % 4)


def shb(order="<", version=(1, 0)):
    return _block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, version[0], version[1], -1))


def idb(order="<", linktype=1, snaplen=65535, tsresol=None, tsoffset=None, name=None):
    opts = b""
    if name is not None:
        opts += _opt(order, 2, name.encode())
    if tsresol is not None:
        opts += _opt(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += _opt(order, 14, struct.pack(order + "q", tsoffset))
    if opts:
        opts += _opt(order, 0, b"")
    return _block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts)


def epb(order, iface, t, data, wirelen=None, caplen=None):
    cap = len(data) if caplen is None else caplen
    return _block(order, 6, struct.pack(order + "IIIII", iface, t >> 32, t & 0xFFFFFFFF, cap,
                                        len(data) if wirelen is None else wirelen) + data)


def spb(order, data, wirelen=None):
    return _block(order, 3, struct.pack(order + "I", len(data) if wirelen is None else wirelen) + data)


def pb(order, iface, t, data):
    return _block(order, 2, struct.pack(order + "HHIIII", iface, 0, t >> 32, t & 0xFFFFFFFF, len(data),
                                        len(data)) + data)


def write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def read_all(path, **options):
    """[(bytes, wirelen, ts_ns, linktype, interface)] and the Capture's attributes."""
    out = []
    with pfilter.open(path, **options) as cap:
        for b in cap:
            assert isinstance(b, pfilter.PacketBatch)
            for i in range(len(b)):
                iface = None if b.interfaces is None else int(b.interfaces[i])
                out.append((b.packet(i), int(b.wirelen[i]), int(b.timestamps[i]), b.linktype_of(i), iface))
        attrs = dict(format=cap.format, linktype=cap.linktype, snaplen=cap.snaplen,
                     ts_resolution=cap.ts_resolution, byteorder=cap.byteorder)
    return out, attrs


def expected_ns(times, nsec=False):
    return [s * 1_000_000_000 + f * (1 if nsec else 1000) for s, f in times]


# ----------------------------------------------------------------------------- classic pcap

@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nsec", [False, True])
def test_pcap_reads_both_byte_orders_and_resolutions(tmp_path, order, nsec):
    path = write(tmp_path, "a.cap", build_pcap(order=order, nsec=nsec))
    pkts, attrs = read_all(path)
    assert [p for p, *_ in pkts] == PKTS
    assert [t for _, _, t, _, _ in pkts] == expected_ns(TIMES, nsec)
    assert attrs == dict(format="pcap", linktype=1, snaplen=65535, ts_resolution="ns" if nsec else "us",
                         byteorder="little" if order == "<" else "big")


def test_pcap_link_type_upper_bits_are_masked(tmp_path):
    path = write(tmp_path, "a.pcap", build_pcap(linktype=0x1C000000 | 105))
    with pfilter.open(path) as cap:
        assert cap.linktype == 105
        assert cap.linktype_ext == 0x1C000000
        assert next(iter(cap)).linktype == 105


@pytest.mark.parametrize("snaplen,expected", [(0, 262144), (0x80000000, 262144), (0xFFFFFFFF, 262144),
                                              (96, 96)])
def test_pcap_garbage_snaplen_becomes_the_link_types_maximum(tmp_path, snaplen, expected):
    pkts = [b"x" * 50]
    path = write(tmp_path, "a.pcap", build_pcap(pkts, TIMES, snaplen=snaplen))
    with pfilter.open(path) as cap:
        assert cap.snaplen == expected
        assert next(iter(cap)).packet(0) == pkts[0]


def test_pcap_caplen_above_snaplen_is_cut_to_snaplen_and_keeps_wirelen(tmp_path):
    pkts = [b"A" * 40, b"B" * 10, b"C" * 30]
    path = write(tmp_path, "a.pcap", build_pcap(pkts, TIMES, snaplen=16, wirelens=[1000, 10, 30]))
    out, _ = read_all(path)
    assert [(p, w) for p, w, *_ in out] == [(b"A" * 16, 1000), (b"B" * 10, 10), (b"C" * 16, 30)]


def test_pcap_caplen_above_the_link_types_maximum_is_damage(tmp_path):
    data = build_pcap([b"ok"], TIMES, snaplen=0) + struct.pack("<iiII", 1, 2, 262145, 262145)
    path = write(tmp_path, "a.pcap", data)
    with pfilter.open(path) as cap:
        it = iter(cap)
        assert next(it).packet(0) == b"ok"
        with pytest.raises(pfilter.CaptureFormatError, match="invalid packet capture length 262145") as e:
            next(it)
    assert e.value.offset == 24 + 16 + 2


def test_pcap_kuznetzov_patched_headers_are_read(tmp_path):
    path = write(tmp_path, "a.pcap", build_pcap(kuznetzov=True, snaplen=100))
    out, attrs = read_all(path)
    assert [p for p, *_ in out] == PKTS
    assert attrs["snaplen"] == 114      # libpcap adds the Ethernet header for these


@pytest.mark.parametrize("version,swap", [((2, 2), "always"), ((2, 3), "when caplen > len"), ((543, 0), "always")])
def test_pcap_old_versions_have_caplen_and_len_swapped(tmp_path, version, swap):
    p = b"z" * 10
    # Written as (caplen field, len field) = (100, 10): the real caplen is 10.
    raw = struct.pack("<IHHiIII", 0xA1B2C3D4, *version, 0, 0, 65535, 1) + struct.pack("<iiII", 1, 0, 100, 10) + p
    out, _ = read_all(write(tmp_path, "a.pcap", raw))
    assert [(b, w) for b, w, *_ in out] == [(p, 100)]


@pytest.mark.parametrize("header", [struct.pack("<IHH", 0xA1B2C3D4, 1, 0), struct.pack("<IHH", 0xA1B2C3D4, 2, 5)])
def test_pcap_unsupported_versions_are_refused(tmp_path, header):
    path = write(tmp_path, "a.pcap", header + b"\0" * 16)
    with pytest.raises(pfilter.CaptureFormatError, match="archaic|unsupported pcap savefile version"):
        pfilter.open(path)


def test_pcap_seconds_and_fraction_are_unsigned_as_the_pcap_specification_says(tmp_path):
    # Divergence: libpcap 1.10.3 reads them signed (1901); 1.11, editcap and mergecap unsigned (2106)
    times = [(-1, 5), (-2117514496, 0), (0x7FFFFFFF, -1)]
    path = write(tmp_path, "a.pcap", build_pcap([b"a", b"b", b"c"], times))
    out, _ = read_all(path)
    assert [t for _, _, t, _, _ in out] == [0xFFFFFFFF * 10**9 + 5000, 2177452800 * 10**9,
                                            0x7FFFFFFF * 10**9 + 0xFFFFFFFF * 1000]


def test_unknown_magic_is_refused_with_offset_zero(tmp_path):
    path = write(tmp_path, "a.pcap", b"GIF89a" + b"\0" * 40)
    with pytest.raises(pfilter.CaptureFormatError, match="unknown file format") as e:
        pfilter.open(path)
    assert e.value.offset == 0


def test_format_comes_from_the_magic_not_the_name(tmp_path):
    ng = shb() + idb() + epb("<", 0, 5, b"abc")
    out, attrs = read_all(write(tmp_path, "looks-like.pcap", ng))
    assert attrs["format"] == "pcapng" and out[0][0] == b"abc"
    out, attrs = read_all(write(tmp_path, "looks-like.pcapng", build_pcap()))
    assert attrs["format"] == "pcap" and len(out) == len(PKTS)


# ----------------------------------------------------------------------------- pcapng

@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_reads_epb_spb_and_obsolete_pb_in_both_byte_orders(tmp_path, order):
    data = (shb(order) + idb(order, snaplen=8) + epb(order, 0, 1_500_000, b"epb-data", wirelen=99)
            + spb(order, b"spb-data-longer", wirelen=15) + pb(order, 0, 2_000_000, b"pb-data"))
    out, attrs = read_all(write(tmp_path, "a.pcapng", data))
    assert [(p, w, t) for p, w, t, _, _ in out] == [
        (b"epb-data", 99, 1_500_000_000), (b"spb-data", 15, 0), (b"pb-data", 7, 2_000_000_000)]
    assert attrs["byteorder"] == ("little" if order == "<" else "big")


@pytest.mark.parametrize("tsresol,t,expected", [
    (None, 1_700_000_000_123_456, 1_700_000_000_123_456_000),   # default 10^-6
    (9, 1_700_000_000_123_456_789, 1_700_000_000_123_456_789),  # 10^-9
    (3, 1_700_000_000_123, 1_700_000_000_123_000_000),           # 10^-3
    (12, 1_700_000_000_123_456_789_012 % 2**64, None),           # 10^-12 (value wraps; computed below)
    (0x80 | 20, (5 << 20) | (1 << 19), 5_500_000_000),           # 2^-20: half a second
])
def test_pcapng_if_tsresol_scales_timestamps_to_ns(tmp_path, tsresol, t, expected):
    data = shb() + idb(tsresol=tsresol) + epb("<", 0, t, b"x")
    out, attrs = read_all(write(tmp_path, "a.pcapng", data))
    if expected is None:
        sec, frac = divmod(t, 10**12)
        expected = sec * 10**9 + frac // 1000
    assert out[0][2] == expected
    assert attrs["ts_resolution"] == ("us" if tsresol in (None, 3) else "ns")


def test_pcapng_if_tsoffset_adds_seconds(tmp_path):
    data = shb() + idb(tsoffset=1_000_000) + epb("<", 0, 2_500_000, b"x")
    out, _ = read_all(write(tmp_path, "a.pcapng", data))
    assert out[0][2] == (1_000_002) * 10**9 + 500_000_000


def test_pcapng_interfaces_of_different_link_types_each_keep_theirs(tmp_path):
    data = (shb() + idb(linktype=1, name="eth0") + idb(linktype=113, tsresol=9) + idb(linktype=101)
            + epb("<", 0, 1, b"ether") + epb("<", 1, 2, b"sll") + epb("<", 2, 3, b"raw") + epb("<", 0, 4, b"e2"))
    out, attrs = read_all(write(tmp_path, "a.pcapng", data))
    assert [(p, lt, i) for p, _, _, lt, i in out] == [(b"ether", 1, 0), (b"sll", 113, 1), (b"raw", 101, 2), (b"e2", 1, 0)]
    assert [t for _, _, t, _, _ in out] == [1000, 2, 3000, 4000]
    assert attrs["linktype"] == 1
    with pfilter.open(write(tmp_path, "b.pcapng", data)) as cap:
        batch = next(iter(cap))
        assert batch.linktypes.tolist() == [1, 113, 101, 1]
        assert [i["name"] for i in cap.interfaces] == ["eth0", None, None]


def test_pcapng_new_section_may_switch_byte_order_and_resets_interfaces(tmp_path):
    data = (shb("<") + idb("<", linktype=1) + epb("<", 0, 1, b"first")
            + shb(">") + idb(">", linktype=113) + epb(">", 0, 2, b"second")
            + shb("<") + idb("<", linktype=101) + epb("<", 0, 3, b"third"))
    out, _ = read_all(write(tmp_path, "a.pcapng", data))
    assert [(p, lt, i) for p, _, _, lt, i in out] == [(b"first", 1, 0), (b"second", 113, 1), (b"third", 101, 2)]


def test_pcapng_unknown_blocks_are_skipped(tmp_path):
    nrb = _block("<", 4, b"\0" * 8)
    isb = _block("<", 5, b"\0" * 12)
    custom = _block("<", 0x40000BAD, b"hello")
    data = shb() + nrb + idb() + custom + epb("<", 0, 1, b"a") + isb + epb("<", 0, 2, b"b")
    out, _ = read_all(write(tmp_path, "a.pcapng", data))
    assert [p for p, *_ in out] == [b"a", b"b"]


def test_pcapng_minor_version_2_is_accepted_like_libpcap(tmp_path):
    out, _ = read_all(write(tmp_path, "a.pcapng", shb(version=(1, 2)) + idb() + epb("<", 0, 1, b"a")))
    assert out[0][0] == b"a"


def test_pcapng_without_an_interface_block_is_refused(tmp_path):
    with pytest.raises(pfilter.CaptureFormatError, match="no Interface Description Blocks"):
        pfilter.open(write(tmp_path, "a.pcapng", shb()))
    with pytest.raises(pfilter.CaptureFormatError, match="packet block before any Interface"):
        pfilter.open(write(tmp_path, "b.pcapng", shb() + epb("<", 0, 1, b"a") + idb()))


# ----------------------------------------------------------------------------- sources and batches

@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress, "zstd"])
def test_compressed_input_is_detected_and_read(tmp_path, compress):
    raw = build_pcap()
    if compress == "zstd":
        zstandard = optional_package("zstandard")
        data = zstandard.ZstdCompressor().compress(raw)
    else:
        data = compress(raw)
    out, attrs = read_all(write(tmp_path, "a.cap", data))
    assert [p for p, *_ in out] == PKTS
    with pfilter.open(tmp_path / "a.cap") as cap:
        assert cap.compression in ("gzip", "bzip2", "xz", "zstd")


def test_damaged_compressed_stream_is_a_capture_format_error(tmp_path):
    data = bytearray(gzip.compress(build_pcap() * 3))
    data[len(data) // 2] ^= 0xFF
    with pytest.raises(pfilter.CaptureFormatError):
        read_all(write(tmp_path, "a.pcap.gz", bytes(data)))


def test_file_objects_and_pipes_are_read_as_streams(tmp_path):
    raw = build_pcap()
    out, _ = read_all(io.BytesIO(raw))
    assert [p for p, *_ in out] == PKTS
    code = ("import pfilter, sys\n"
            "with pfilter.open('-') as cap:\n"
            "    print(sum(len(b) for b in cap))\n")
    done = subprocess.run([sys.executable, "-c", code], input=raw, capture_output=True,
                          env=dict(os.environ, PYTHONPATH=str(reader_mod.__file__).rsplit("/pfilter/", 1)[0]))
    assert done.stdout.strip() == str(len(PKTS)).encode(), done.stderr


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_tiny_windows_and_batches_give_the_same_packets(tmp_path, fmt):
    rng = np.random.default_rng(5)
    pkts = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 3000, 300)]
    times = [(1_600_000_000 + i, i) for i in range(len(pkts))]
    if fmt == "pcap":
        data = build_pcap(pkts, times, snaplen=65535)
    else:
        data = shb() + idb() + b"".join(epb("<", 0, s * 10**6 + f, p) for p, (s, f) in zip(pkts, times))
    path = write(tmp_path, "a.cap", data)
    ref, _ = read_all(path)
    assert [p for p, *_ in ref] == pkts
    for options in (dict(window_bytes=1), dict(window_bytes=4096, batch_packets=7),
                    dict(batch_bytes=1), dict(window_bytes=10000, batch_bytes=5000),
                    dict(reuse_buffer=True, window_bytes=5000, batch_packets=3),
                    dict(reuse_buffer=True, window_bytes=1)):
        got, _ = read_all(path, **options)
        assert got == ref, options
    with pfilter.open(path, batch_packets=7) as cap:
        sizes = [len(b) for b in cap]
    assert max(sizes) <= 7 and sum(sizes) == len(pkts)


def test_batches_carry_file_offsets_of_their_records(tmp_path):
    data = build_pcap()
    with pfilter.open(write(tmp_path, "a.pcap", data)) as cap:
        b = next(iter(cap))
    expected, pos = [], 24
    for p in PKTS:
        expected.append(pos)
        pos += 16 + len(p)
    assert b.file_offsets.tolist() == expected


def test_batches_stay_valid_after_the_capture_is_closed(tmp_path):
    with pfilter.open(write(tmp_path, "a.pcap", build_pcap())) as cap:
        batches = list(cap)
    assert [b.packet(i) for b in batches for i in range(len(b))] == PKTS


def test_pure_python_scanner_twin_reads_the_same(tmp_path, monkeypatch):
    data = build_pcap(order=">") + b"\x00" * 5
    ng = shb(">") + idb(">", tsresol=0x80 | 10) + epb(">", 0, 5000, b"abc") + spb(">", b"defg")
    results = {}
    for twin in ("native", "python"):
        if twin == "python":
            from pfilter.capture import _pyscan
            monkeypatch.setattr(reader_mod, "_scan", _pyscan)
        for name, raw in (("a.pcap", data), ("b.pcapng", ng)):
            try:
                results[twin, name] = read_all(write(tmp_path, name, raw))
            except pfilter.CaptureFormatError as e:
                results[twin, name] = str(e)
    assert results["native", "a.pcap"] == results["python", "a.pcap"]
    assert results["native", "b.pcapng"] == results["python", "b.pcapng"]
