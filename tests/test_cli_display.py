"""The one-line summaries (pfilter.display): tcpdump -n's time, addresses, ports and lengths for
the common protocols, and a line, never an exception, for every packet of the corpus."""
import os
import struct
import subprocess
import sys

import pytest

import pfilter
import reference as ref
from pfilter import display


def test_every_corpus_packet_gets_a_line_without_exceptions():
    lines = 0
    for row in ref.corpus_pcaps():
        try:
            with pfilter.open(row["file"]) as cap:
                for b in cap:
                    for text in display.batch_lines(b, range(len(b)), cap.ts_resolution):
                        # one line, or more where tcpdump prints more (hex of an unknown payload)
                        first, *rest = text.split("\n")
                        # at least the time stamp: an 802.11 null-data frame prints nothing more
                        assert isinstance(text, str) and len(first) >= 16
                        assert all(line.startswith(("\t", "    ")) for line in rest), text
                        lines += 1
        except pfilter.CaptureFormatError:
            continue
    assert lines > 10000


def test_ip_lines_are_tcpdump_n_lines():
    path = ref.PCAPS / "dpkt__dns_icmp.pcap"
    theirs = subprocess.run([ref.tcpdump(), "-n", "-r", str(path)], capture_output=True, text=True).stdout
    with pfilter.open(path) as cap:
        ours = [line for b in cap for line in display.batch_lines(b, range(len(b)))]
    assert ours == theirs.splitlines()      # identical lines (DNS summaries, ICMP echo)


def test_truncated_and_unknown_packets_are_described():
    assert display.describe(b"", 1, 60) == " [|ether]"      # (after the time stamp: "<ts>  [|ether]", as tcpdump)
    assert "ARP" in display.describe(bytes(12) + b"\x08\x06" + bytes(5), 1)
    assert display.describe(bytes([0x45]) + bytes(5), 101).startswith("IP")
    # tcpdump's line for a link type it has no printer for
    assert display.describe(b"\x01\x02", 4242) == "UNSUPPORTED\n\t0x0000:  0102                                     .."


def test_nanosecond_times_show_nine_digits():
    assert display.format_time(1_700_000_000_123_456_789, "ns").endswith(".123456789")
    assert display.format_time(1_700_000_000_123_456_789, "us").endswith(".123456")


# ---------------------------------------------------------------------- pfilter -r against tcpdump -n -r


def _pfilter_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "pfilter", *args], capture_output=True, text=True,
                          cwd=ref.ROOT, env=env)


def _tcpdump(*args):
    return subprocess.run([ref.tcpdump(), "-n", *args], capture_output=True, text=True)


def _assert_same_output(path, *flags, expr=()):
    """pfilter -r path flags expr prints exactly what tcpdump -n -r path flags expr prints."""
    theirs = _tcpdump("-r", str(path), *flags, *expr)
    ours = _pfilter_cli("-r", str(path), *flags, *expr)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.splitlines() == theirs.stdout.splitlines(), (path, flags, expr)


def _savefile(path, frames, linktype=1, stamps=None):
    """A little-endian microsecond pcap of `frames` (bytes) on `linktype`."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, frame in enumerate(frames):
        sec = stamps[i] if stamps else 1_000_000 + i
        out += struct.pack("<IIII", sec, 250 * i, len(frame), len(frame)) + frame
    path.write_bytes(out)
    return path


_ETH = bytes.fromhex("000c298e87a6000c29310d01")


@pytest.mark.parametrize("flags", [(), ("-e",), ("-x",), ("-q",)])
def test_radiotap_data_frame_with_raw_ipx_is_printed_not_hidden(flags):
    # a QoS data frame whose body starts ffff (the +HTC field tcpdump 4.99 does not skip): tcpdump
    # prints it as Novell raw IPX; pfilter used to raise (str + None) and print " [|pfilter]"
    _assert_same_output(ref.corpus_file("pcaps/tcpdump__ieee802.11_htc.pcap"), *flags)


def test_a_printer_exception_is_raised_under_tests_and_marked_otherwise(monkeypatch):
    from pfilter.display import link

    def broken(p, b, wirelen):
        raise ValueError("printer bug")
    monkeypatch.setitem(link.PRINTERS, 1, broken)
    with pytest.raises(ValueError):                 # under pytest: raised, never hidden
        display.Printer().format(bytes(20), 1, 0)
    monkeypatch.delenv(display.STRICT_ENV, raising=False)
    text = display.Printer(t=1).format(b"\x01\x02", 1, 0)
    # outside tests: the line still shows, with the mark and the packet's bytes
    assert text == " [|pfilter]\n\t0x0000:  0102                                     .."
    monkeypatch.setenv(display.STRICT_ENV, "1")
    with pytest.raises(ValueError):
        display.Printer().format(bytes(20), 1, 0)


@pytest.mark.parametrize("flags", [("-x",), ("-xx",), ("-X",), ("-XX",), ("-A",), ("-q",), ("-e",), ()])
def test_null_unknown_family_prints_one_dump_and_swaps_the_family(flags):
    # family bytes 0f 00 08 00: read little-endian 0x0008000f, upper half set, so byte-swapped:
    # AF Unknown (251660288); -x/-X replace tcpdump's default dump instead of adding to it
    path = ref.corpus_file("pcaps/pcapplusplus__Packet++Test__PacketExamples__NullLoopback.pcap")
    _assert_same_output(path, *flags, expr=("link[0]=0x0f",))


@pytest.mark.parametrize("flags", [("-x",), ("-xx",), ("-X",), ("-XX",), ("-A",), ("-q",), ("-e",), ()])
def test_unknown_ethertype_prints_one_dump(tmp_path, flags):
    frame = _ETH + b"\x88\xb5" + bytes(range(40))
    tagged = _ETH + b"\x81\x00\x00\x05\x88\xb5" + bytes(range(30))
    _assert_same_output(_savefile(tmp_path / "x.pcap", [frame, tagged]), *flags)


@pytest.mark.parametrize("flags", [("-ttt",), ("-ttttt",)])
def test_time_deltas_are_reduced_to_a_day(flags):
    # the NTP capture's packets are months apart: tcpdump prints the delta's time of day
    _assert_same_output(ref.corpus_file("pcaps/pcapplusplus__Packet++Test__PacketExamples__Ntp.pcap"), *flags)


def test_time_deltas_backwards_keep_their_sign(tmp_path):
    path = _savefile(tmp_path / "t.pcap", [_ETH + b"\x88\xb5" + bytes(4)] * 3,
                     stamps=[1_700_000_000, 1_600_000_000, 1_700_090_000])
    for flags in (("-ttt",), ("-ttttt",)):
        _assert_same_output(path, *flags)


@pytest.mark.parametrize("name", ["tcpdump__time_2039.pcap", "tcpdump__time_2106.pcap",
                                  "tcpdump__time_2106_max.pcap", "tcpdump__time_2107.pcapng"])
@pytest.mark.parametrize("flags", [(), ("-tt",), ("-tttt",), ("-ttt",)])
def test_times_past_2038_as_tcpdump(name, flags):
    # tcpdump 4.99: "[Error converting time]" when bit 31 of the seconds is set, -tt the low 32 bits
    _assert_same_output(ref.corpus_file("pcaps/" + name), *flags)


@pytest.mark.parametrize("flags", [(), ("-e",), ("-x",), ("-q",), ("-XX",)])
def test_802_3_llc_frames(flags):
    # NetBeui U/S/I frames (two-byte control fields for S and I), Novell raw IPX
    _assert_same_output(ref.corpus_file("pcaps/libpcap__llc.pcap"), *flags)


@pytest.mark.parametrize("flags", [(), ("-e",), ("-x",)])
def test_generated_llc_frames(tmp_path, flags):
    ipx = "ffff0030000400000001" + "00" * 6 + "0455" + "00000002" + "11" * 6 + "4000"
    llcs = ["f0f0af81aabb", "0404e3", "aaaa030000008137" + ipx, "aaaa0300000c2001" + "00" * 8,
            "e0e003" + ipx, "f0f00101", "f0f00002aabb", "aaaa03"]
    frames = [_ETH + struct.pack(">H", len(bytes.fromhex(h))) + bytes.fromhex(h) for h in llcs]
    _assert_same_output(_savefile(tmp_path / "llc.pcap", frames), *flags)


@pytest.mark.parametrize("name", ["libpcap__ieee802.11_exthdr.pcap", "libpcap__wpa2linkuppassphraseiswireshark.pcap"])
@pytest.mark.parametrize("flags", [(), ("-e",)])
def test_radiotap_mcs_and_vht_fields(name, flags):
    _assert_same_output(ref.corpus_file("pcaps/" + name), *flags)


@pytest.mark.parametrize("name", ["tcpdump__ppp_error_hexdump.pcap", "tcpdump__mpls-traceroute.pcap",
                                  "tcpdump__heapoverflow-ppp_hdlc_if_print.pcap"])
@pytest.mark.parametrize("flags", [(), ("-e",), ("-x",)])
def test_ppp_protocols_pfilter_does_not_decode_are_tcpdump_lines(name, flags):
    _assert_same_output(ref.corpus_file("pcaps/" + name), *flags)


def test_ascii_dump_drops_a_final_carriage_return():
    path = ref.corpus_file("pcaps/pcapplusplus__Examples__Tutorials__Tutorial-PcapFiles__input.pcap")
    _assert_same_output(path, "-A")
    from pfilter.display._util import ascii_dump
    assert ascii_dump(b"a\rbc\r\nd\r\re\rf") == "\na.bc\nd..ef"


def test_sll2_warning_is_tcpdump_s():
    path = ref.corpus_file("pcaps/pcapplusplus__Packet++Test__PacketExamples__Sll2Packet.pcap")
    for extra in ([], ["-w", os.devnull]):
        theirs = _tcpdump("-r", str(path), *extra).stderr.splitlines()
        ours = _pfilter_cli("-r", str(path), *extra).stderr.splitlines()
        assert ours[:2] == theirs[:2] and theirs[1] + "\n" == display.file_warnings(276)
    assert display.file_warnings(1) == ""


def _records(path, records, snaplen=262144, linktype=1):
    """A pcap file of (seconds, captured bytes, wire length) records."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        for sec, data, wire in records:
            f.write(struct.pack("<IIII", sec, 0, len(data), wire) + data)
    return path


def test_invalid_headers_short_frames_and_zero_reference_times_as_tcpdump(tmp_path):
    """tcpdump 4.99's '[Invalid header: len(N) > 262144]' (its own limit, not the file's
    snapshot length), ' [|ether]' and 'IP  [|ip]' with nd_print_trunc's space before the marker,
    and -ttt/-ttttt whose reference is unset while it is zero (a packet stamped 0)."""
    ip = bytes(12) + b"\x08\x00" + b"\x45\x00"
    path = _records(tmp_path / "odd.pcap", [
        (0, bytes(range(60)), 60), (1_700_000_000, bytes(60), 300_000), (1_700_000_001, bytes(10), 10),
        (1_700_000_002, ip, 16), (0, ip + bytes(40), 56), (1_700_000_005, ip + bytes(40), 56)], snaplen=100)
    for flags in ([], ["-e"], ["-ttt"], ["-ttttt"], ["-tt"]):
        _assert_same_output(path, *flags)


SAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "sample.pcap")
#: the sample's protocols pfilter leaves to a generic line where tcpdump has a printer (SNMP,
#: Babel) or prints a malformed DNS message's garbage: compared elsewhere, not here
_NOT_HERE = "not port 161 and not port 6696 and not port 53"


@pytest.mark.parametrize("snaplen", [54, 58, 62, 64, 66, 70, 74, 96, 128])
@pytest.mark.parametrize("flags", [[], ["-e"]], ids=lambda f: " ".join(f) or "plain")
def test_packets_cut_by_the_snapshot_length_print_as_tcpdump(tmp_path, snaplen, flags):
    """The sample capture with its snapshot length cut (as `tcpdump -s N` captures): where a
    field lies past the captured bytes, tcpdump's truncation mark in its place (TCP options,
    ICMP errors, IPv6 headers, the first line of HTTP and the SSH banner, syslog, NTP)."""
    data = bytearray(open(SAMPLE, "rb").read())
    data[16:20] = struct.pack("<I", snaplen)
    path = tmp_path / "cut.pcap"
    path.write_bytes(bytes(data))
    theirs = subprocess.run([ref.tcpdump(), "-n", "-r", str(path), *flags, _NOT_HERE], capture_output=True,
                            text=True).stdout.splitlines()
    ours = subprocess.run([sys.executable, "-m", "pfilter", "--quiet", "-r", str(path), *flags, _NOT_HERE],
                          capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    assert len(theirs) > 1000 and ours.stdout.splitlines() == theirs
