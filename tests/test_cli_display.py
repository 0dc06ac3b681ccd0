"""The one-line summaries (pfilter.display): tcpdump -n's time, addresses, ports and lengths for
the common protocols, and a line, never an exception, for every packet of the corpus."""
import subprocess

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
    assert display.describe(b"", 1, 60) == "[|ether]"
    assert "ARP" in display.describe(bytes(12) + b"\x08\x06" + bytes(5), 1)
    assert display.describe(bytes([0x45]) + bytes(5), 101).startswith("IP")
    # tcpdump's line for a link type it has no printer for
    assert display.describe(b"\x01\x02", 4242) == "UNSUPPORTED\n\t0x0000:  0102                                     .."


def test_nanosecond_times_show_nine_digits():
    assert display.format_time(1_700_000_000_123_456_789, "ns").endswith(".123456789")
    assert display.format_time(1_700_000_000_123_456_789, "us").endswith(".123456")
