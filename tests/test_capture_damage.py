"""Damaged captures: every intact packet before the damage is delivered first, then one
CaptureFormatError naming the file offset and what is wrong (libpcap's words); a truncated last
record ends the read like tcpdump (the packets, then "truncated dump file"). libpcap, where it
reads the same file, stops after the same packets with the same message.
"""
import struct

import pytest

import pfilter
import reference as ref
from test_capture_formats import (PKTS, TIMES, _block, build_pcap, epb, idb, pb, shb, spb, write)


def deliver(path, **options):
    """(packets delivered, the error raised after them or None, batches before the error)."""
    pkts, err, batches = [], None, 0
    with pfilter.open(path, **options) as cap:
        it = iter(cap)
        while True:
            try:
                b = next(it)
            except StopIteration:
                break
            except pfilter.CaptureFormatError as e:
                err = e
                with pytest.raises(StopIteration):   # the error is raised once, then the end
                    next(it)
                break
            batches += 1
            pkts.extend(b.packet(i) for i in range(len(b)))
    return pkts, err, batches


def libpcap_agrees(path, pkts, err):
    """libpcap stops after the same packets with the message pfilter gives."""
    try:
        _dlt, _snap, want, want_err = ref.read_capture(str(path))
    except ref.RefError as e:
        assert not pkts and err is not None and str(e) in str(err)
        return
    assert [p for p, _, _ in want] == pkts
    if want_err is None:
        assert err is None
    else:
        assert err is not None and want_err in str(err), (want_err, str(err))


GOOD = build_pcap()
GOOD_END = len(GOOD)


@pytest.mark.parametrize("cut", [3, 10, 15])
def test_truncated_record_header_after_good_packets(tmp_path, cut):
    data = GOOD + struct.pack("<iiII", 1, 2, 100, 100)[:cut]
    path = write(tmp_path, "a.pcap", data)
    pkts, err, _ = deliver(path)
    assert pkts == PKTS
    assert f"truncated dump file; tried to read 16 header bytes, only got {cut}" in str(err)
    assert err.offset == GOOD_END
    libpcap_agrees(path, pkts, err)


def test_truncated_last_packet_data_like_tcpdump(tmp_path):
    data = GOOD + struct.pack("<iiII", 1, 2, 100, 100) + b"x" * 40
    path = write(tmp_path, "a.pcap", data)
    pkts, err, _ = deliver(path)
    assert pkts == PKTS
    assert "truncated dump file; tried to read 100 captured bytes, only got 40" in str(err)
    assert err.offset == GOOD_END
    libpcap_agrees(path, pkts, err)


def test_truncated_file_header_is_refused_at_open(tmp_path):
    path = write(tmp_path, "a.pcap", GOOD[:20])
    with pytest.raises(pfilter.CaptureFormatError, match="truncated dump file") as e:
        pfilter.open(path)
    assert e.value.offset == 0


def test_good_batch_comes_before_the_error_even_within_one_window(tmp_path):
    data = GOOD + struct.pack("<iiII", 1, 2, 300000, 300000)
    pkts, err, batches = deliver(write(tmp_path, "a.pcap", data))
    assert pkts == PKTS and batches == 1
    assert "invalid packet capture length 300000" in str(err) and err.offset == GOOD_END


def test_damage_in_a_later_window_still_delivers_everything_before(tmp_path):
    many = [bytes([i % 256]) * 200 for i in range(500)]
    data = build_pcap(many, [(i, 0) for i in range(500)]) + b"\x01\x02"
    pkts, err, batches = deliver(write(tmp_path, "a.pcap", data), window_bytes=4096, batch_packets=50)
    assert pkts == many and batches >= 10
    assert err.offset == len(data) - 2


NG_HEAD = shb() + idb(snaplen=100)


@pytest.mark.parametrize("damage,message", [
    (struct.pack("<II", 6, 8), "has a length of 8 < 12"),
    (struct.pack("<II", 6, 30) + b"\0" * 22, "not a multiple of 4"),
    (struct.pack("<II", 6, 0x7FFFFFF0), "pcapng block size 2147483632 > maximum"),
    (struct.pack("<II", 6, 32) + b"\0" * 20 + struct.pack("<I", 36), "trailer don't match"),
    (_block("<", 6, b"\0" * 12), "block of type 6 in pcapng dump file is too short"),
    (epb("<", 0, 1, b"abc", caplen=80), "block of type 6 in pcapng dump file is too short"),
    (epb("<", 3, 1, b"abc"), "a packet arrived on interface 3, but there's no Interface Description Block"),
    (epb("<", 0, 1, b"y" * 120), "invalid packet capture length 120, bigger than snaplen of 100"),
    (pb("<", 1, 1, b"abc"), "a packet arrived on interface 1"),
    (_block("<", 3, b""), "block of type 3 in pcapng dump file is too short"),
    (struct.pack("<II", 6, 40) + b"\0" * 10, "truncated pcapng dump file; tried to read 32 bytes, only got 10"),
    (b"\x06\x00\x00", "truncated pcapng dump file; tried to read 8 bytes, only got 3"),
    (_block("<", 0x0A0D0D0A, struct.pack("<IHH", 0x11111111, 1, 0) + b"\0" * 8), "bad byte order magic"),
    (_block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 2, 0, -1)), "unknown pcapng savefile major version number 2"),
    (_block("<", 1, b"\0" * 4), "block of type 1 in pcapng dump file is too short"),
    (_block("<", 1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 2) + b"\x06\x06\0\0"), "if_tsresol option with length 2 != 1"),
    (_block("<", 1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 1) + b"\x14\0\0\0"), "resolution 10^-20 is too high"),
    (_block("<", 1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 14, 4) + b"\0" * 4), "if_tsoffset option with length 4 != 8"),
    (_block("<", 1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 2, 40) + b"\0" * 4), "block of type 1 in pcapng dump file is too short"),
])
def test_pcapng_damage_after_good_packets(tmp_path, damage, message):
    good = epb("<", 0, 5, b"first") + spb("<", b"second")
    path = write(tmp_path, "a.pcapng", NG_HEAD + good + damage)
    pkts, err, _ = deliver(path)
    assert pkts == [b"first", b"second"]
    assert err is not None and message in str(err), str(err)
    assert err.offset == len(NG_HEAD) + len(good)
    assert str(path) in str(err)


@pytest.mark.parametrize("damage", [
    struct.pack("<II", 6, 8),
    epb("<", 3, 1, b"abc"),
    epb("<", 0, 1, b"y" * 120),
    struct.pack("<II", 6, 40) + b"\0" * 10,
])
def test_pcapng_damage_stops_libpcap_after_the_same_packets(tmp_path, damage):
    path = write(tmp_path, "a.pcapng", NG_HEAD + epb("<", 0, 5, b"first") + damage)
    pkts, err, _ = deliver(path)
    libpcap_agrees(path, pkts, err)


def test_shb_with_insane_length_is_refused_at_open(tmp_path):
    data = struct.pack("<III", 0x0A0D0D0A, 2 * 1024 * 1024, 0x1A2B3C4D) + b"\0" * 40
    with pytest.raises(pfilter.CaptureFormatError, match="Section Header Block in pcapng dump file has invalid length"):
        pfilter.open(write(tmp_path, "a.pcapng", data))


def test_error_carries_offset_and_path_attributes(tmp_path):
    path = write(tmp_path, "a.pcap", GOOD + b"\0")
    _, err, _ = deliver(path)
    assert isinstance(err, pfilter.FilterError) and isinstance(err, ValueError)
    assert err.offset == GOOD_END and err.path == str(path)
