"""pfilter.filter_file: the packets written are exactly those the program accepts, in order;
stats count what happened; -c semantics; a damaged input leaves the good packets written and the
error raised with the stats; the read-ahead thread changes nothing but speed.
"""
import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter.capture import filterfile
from test_capture_formats import build_pcap

MANY = ref.PCAPS / "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap"


def packets(path):
    with pfilter.open(path) as cap:
        return [(b.packet(i), int(b.wirelen[i]), int(b.timestamps[i])) for b in cap for i in range(len(b))]


def test_writes_exactly_the_accepted_packets_in_order(tmp_path):
    prog = pfilter.compile("udp or icmp", linktype=1)
    everything = packets(MANY)
    want = [p for p in everything if prog.run(p[0], p[1])]
    stats = pfilter.filter_file(MANY, tmp_path / "o.pcap", "udp or icmp")
    assert packets(tmp_path / "o.pcap") == want
    assert (stats.read, stats.matched, stats.written) == (len(everything), len(want), len(want))
    assert stats.bytes == sum(len(p) for p, _, _ in want) and stats.seconds > 0
    assert stats["written"] == stats.written and set(stats.as_dict()) >= {"read", "matched", "written", "bytes", "seconds"}


def test_accepts_a_program_and_counts_without_output(tmp_path):
    prog = pfilter.Program.from_tuples(ref.compile("tcp", 1, True))
    stats = pfilter.filter_file(MANY, None, prog)
    assert stats.written == 0 and stats.matched == sum(1 for p in packets(MANY) if prog.run(p[0], p[1]))
    assert list(tmp_path.iterdir()) == []


def test_count_stops_after_that_many_matches(tmp_path):
    all_tcp = pfilter.filter_file(MANY, tmp_path / "all.pcap", "tcp")
    stats = pfilter.filter_file(MANY, tmp_path / "five.pcap", "tcp", count=5, batch_packets=3)
    assert packets(tmp_path / "five.pcap") == packets(tmp_path / "all.pcap")[:5]
    assert stats.written == stats.matched == 5 and stats.read < all_tcp.read
    full = packets(MANY)
    fifth = [i for i, p in enumerate(full) if pfilter.compile("tcp").run(p[0], p[1])][4]
    assert stats.read == fifth + 1


@pytest.mark.parametrize("read_ahead", [0, 2])
def test_damaged_input_keeps_good_packets_and_raises_with_stats(tmp_path, monkeypatch, read_ahead):
    monkeypatch.setattr(filterfile, "READ_AHEAD", read_ahead)
    good = [bytes(12) + b"\x08\x00" + bytes(30) for _ in range(40)]
    src = tmp_path / "in.pcap"
    src.write_bytes(build_pcap(good, [(i, 0) for i in range(40)]) + b"\x00\x01")
    with pytest.raises(pfilter.CaptureFormatError, match="truncated dump file") as e:
        pfilter.filter_file(src, tmp_path / "o.pcap", "", batch_packets=7)
    assert [p for p, _, _ in packets(tmp_path / "o.pcap")] == good
    assert e.value.stats.read == 40 and e.value.stats.written == 40


def test_read_ahead_thread_gives_identical_output(tmp_path, monkeypatch):
    outputs = []
    for depth in (0, 1, 4):
        monkeypatch.setattr(filterfile, "READ_AHEAD", depth)
        pfilter.filter_file(MANY, tmp_path / f"o{depth}.pcap", "tcp or udp", batch_packets=64, batch_bytes=4096)
        outputs.append((tmp_path / f"o{depth}.pcap").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_progress_reports_growing_offsets(tmp_path):
    seen = []
    pfilter.filter_file(MANY, tmp_path / "o.pcap", "ip", batch_packets=500,
                        progress=lambda done, total, stats: seen.append((done, total)))
    assert len(seen) >= 5 and all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    assert seen[-1][1] == MANY.stat().st_size and seen[-1][0] <= seen[-1][1]


def test_linktype_override_compiles_for_that_link_type(tmp_path):
    raw_ip = bytes([0x45]) + bytes(8) + b"\x11" + bytes(10)
    src = tmp_path / "raw.pcap"
    src.write_bytes(build_pcap([raw_ip], [(1, 0)], linktype=1))
    assert pfilter.filter_file(src, None, "udp").matched == 0
    assert pfilter.filter_file(src, None, "udp", linktype="RAW").matched == 1


def test_on_batch_sees_the_selected_indices():
    seen = []
    stats = pfilter.filter_file(MANY, None, "icmp", on_batch=lambda b, idx: seen.extend(b.packet(int(i)) for i in idx))
    assert len(seen) == stats.matched and all(isinstance(p, bytes) for p in seen)


def test_negative_count_is_refused():
    with pytest.raises(pfilter.FilterError):
        pfilter.filter_file(MANY, None, "tcp", count=-1)


def test_inputs_of_different_link_types_need_pcapng_output(tmp_path):
    from test_capture_formats import epb, idb, shb
    eth = tmp_path / "eth.pcap"
    eth.write_bytes(build_pcap([bytes(12) + b"\x08\x00" + bytes(20)], [(1, 0)], linktype=1))
    raw = tmp_path / "raw.pcap"
    raw.write_bytes(build_pcap([bytes([0x45]) + bytes(19)], [(2, 0)], linktype=101))
    ng = tmp_path / "two.pcapng"
    ng.write_bytes(shb() + idb(linktype=113, name="a") + idb(linktype=1, name="b")
                   + epb("<", 1, 3, bytes(14)) + epb("<", 0, 4, bytes(16)))
    with pytest.raises(pfilter.FilterError, match="write pcapng"):
        pfilter.filter_file([eth, raw], tmp_path / "o.pcap", "")
    assert not (tmp_path / "o.pcap").exists()
    stats = pfilter.filter_file([eth, raw, ng, ng], tmp_path / "o.pcapng", "")
    assert stats.written == 6
    with pfilter.open(tmp_path / "o.pcapng") as cap:
        got = [(int(b.linktypes[i]), int(b.interfaces[i])) for b in cap for i in range(len(b))]
        names = [i["name"] for i in cap.interfaces]
    # one output interface per input interface: eth, raw, then each pcapng input's two
    assert got == [(1, 0), (101, 1), (1, 3), (113, 2), (1, 5), (113, 4)]
    assert names == [None, None, "a", "b", "a", "b"]


def test_progress_over_a_compressed_input_counts_its_bytes(tmp_path):
    """progress(done, total, stats) in one unit: a compressed input's done is the compressed
    bytes read (its records' offsets are those of the decompressed data, which run past the
    file's size): done never passes total and never goes back, and ends at total."""
    import gzip
    with pfilter.open(ref.ROOT / "data" / "sample.pcap") as cap:
        batches = list(cap)
    plain = tmp_path / "rep.pcap"
    pfilter.write(plain, batches * 12)
    packed = tmp_path / "rep.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes(), 1))
    calls = []
    pfilter.filter_file([str(packed), str(ref.ROOT / "data" / "sample.pcap")], None, "tcp",
                        progress=lambda done, total, stats: calls.append((done, total)), batch_bytes=1 << 20)
    total = packed.stat().st_size + (ref.ROOT / "data" / "sample.pcap").stat().st_size
    done = [d for d, t in calls]
    assert len(calls) > 3 and {t for _d, t in calls} == {total}
    assert all(a <= b for a, b in zip(done, done[1:])) and max(done) == done[-1] == total
