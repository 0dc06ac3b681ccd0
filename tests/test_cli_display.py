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
                    for line in display.batch_lines(b, range(len(b)), cap.ts_resolution):
                        assert isinstance(line, str) and "\n" not in line and len(line) > 16
                        lines += 1
        except pfilter.CaptureFormatError:
            continue
    assert lines > 10000


def test_ip_lines_match_tcpdump_n_up_to_the_protocol_details():
    path = ref.PCAPS / "dpkt__dns_icmp.pcap"
    theirs = subprocess.run([ref.tcpdump(), "-n", "-r", str(path)], capture_output=True, text=True).stdout
    with pfilter.open(path) as cap:
        ours = [line for b in cap for line in display.batch_lines(b, range(len(b)))]
    theirs = theirs.splitlines()
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.split(":", 3)[:3][-1][:9] == b.split(":", 3)[:3][-1][:9]       # seconds.micro
        assert a.split(": ")[0].split(" ", 1)[1] == b.split(": ")[0].split(" ", 1)[1]   # IP a.p > b.q
        if "ICMP" in b:
            assert a.split(": ", 1)[1] == b.split(": ", 1)[1]


def test_truncated_and_unknown_packets_are_described():
    assert display.describe(b"", 1, 60).endswith("length 60")
    assert "ARP" in display.describe(bytes(12) + b"\x08\x06" + bytes(5), 1)
    assert display.describe(bytes([0x45]) + bytes(5), 101).startswith("IP")
    assert display.describe(b"\x01\x02", 4242) == "link-type 4242, length 2"


def test_nanosecond_times_show_nine_digits():
    assert display.format_time(1_700_000_000_123_456_789, "ns").endswith(".123456789")
    assert display.format_time(1_700_000_000_123_456_789, "us").endswith(".123456")
