"""The reader against the references over the whole shared corpus: for every capture libpcap
1.10.3 reads, pfilter delivers the same packets (bytes, captured and wire length, timestamp in
ns), and stops with an error where libpcap does; dpkt's reader gives the same bytes and times
wherever dpkt and libpcap agree on what a file holds. Each malformed file in pcaps.tsv gets the
behaviour the table below states.
"""
import pytest

import pfilter
import reference as ref

ROWS = ref.corpus_pcaps() if ref.CORPUS.exists() else []
pytestmark = ref.needs_corpus("pcaps.tsv")

# Files libpcap refuses or stops on where pfilter deliberately reads on: pcapng with interfaces
# of several link types or snapshot lengths (libpcap's handle has one link type; pfilter gives
# each packet its interface's). Name -> (libpcap's error, pfilter's packet count).
DIVERGENT = {
    "pcapplusplus__Pcap++Test__PcapExamples__pcapng-example.pcapng":
        ("an interface has a type 113 different from the type of the first interface", 159),
    "pcapplusplus__Pcap++Test__PcapExamples__too_many_interfaces.pcapng":
        ("an interface has a snapshot length 8192 different from the snapshot length of the first interface", 1),
}


def read_pfilter(path):
    """([(bytes, wirelen, ts_ns)], error message or None)."""
    pkts, err = [], None
    try:
        with pfilter.open(path) as cap:
            for b in cap:
                for i in range(len(b)):
                    assert int(b.caplen[i]) == len(b.packet(i))
                    pkts.append((b.packet(i), int(b.wirelen[i]), int(b.timestamps[i])))
    except pfilter.CaptureFormatError as e:
        err = str(e)
    return pkts, err


def test_corpus_is_present():
    if not ROWS:
        ref._missing(f"shared corpus {ref.CORPUS}")
    assert len(ROWS) > 600


def test_every_capture_libpcap_reads_gives_libpcaps_packets():
    ref.libpcap()
    equal, refused_by_both = 0, 0
    for row in ROWS:
        name = row["copied_as"]
        try:
            _dlt, snap, want, want_err = ref.read_capture(str(row["file"]))
        except ref.RefError as e:
            with pytest.raises(pfilter.CaptureFormatError) as mine:
                pfilter.open(row["file"]).close()
            assert str(e) in str(mine.value), name
            refused_by_both += 1
            continue
        got, err = read_pfilter(row["file"])
        if name in DIVERGENT:
            message, count = DIVERGENT[name]
            assert want_err == message and err is None and len(got) == count, name
            assert got[:len(want)] == want, name
            continue
        assert got == want, name
        assert (err is None) == (want_err is None), (name, err, want_err)
        with pfilter.open(row["file"]) as cap:
            assert cap.snaplen == snap, name
        equal += 1
    assert equal >= 670 and refused_by_both == 5, (equal, refused_by_both)


def _dpkt_read(path):
    import dpkt
    with open(path, "rb") as f:
        try:
            reader = dpkt.pcap.UniversalReader(f)
            return [(ts, bytes(buf)) for ts, buf in reader]
        except (ValueError, dpkt.dpkt.NeedData, dpkt.dpkt.UnpackError, AttributeError):
            return None


def test_dpkt_reads_the_same_packets_and_times_where_it_agrees_with_libpcap():
    """dpkt ignores the snapshot length and the format version, so files with caplen > snaplen or
    an unsupported version are libpcap's business (test above); everywhere else all three agree."""
    ref.libpcap()
    compared = 0
    for row in ROWS:
        flags = row["malformed_flags"]
        if "caplen>snaplen" in flags or "structural" in flags or row["copied_as"] in DIVERGENT:
            continue
        theirs = _dpkt_read(row["file"])
        if theirs is None:
            continue
        mine, _ = read_pfilter(row["file"])
        assert [p for p, _, _ in mine] == [p for _, p in theirs], row["copied_as"]
        for (_, _, ts), (dts, _) in zip(mine, theirs):
            if ts < 0:      # dpkt reads seconds as unsigned, libpcap 1.10.3 (and pfilter) as signed
                continue
            if isinstance(dts, float):
                assert abs(ts / 1e9 - dts) < 2e-6, row["copied_as"]
            else:           # nanosecond files: dpkt gives a Decimal
                assert int(dts * 10**9) == ts, row["copied_as"]
        compared += 1
    assert compared >= 660, compared


# Malformed files of pcaps.tsv: what pfilter does with each (libpcap's message where it refuses).
MALFORMED = {
    "libpcap__pcap-invalid-version-1.pcap": ("refused", "archaic pcap savefile format", 0),
    "libpcap__pcap-invalid-version-2.pcap": ("refused", "unsupported pcap savefile version 2.5", 0),
    "libpcap__pcapng-invalid-vers-1.pcapng": ("refused", "unsupported pcapng savefile version 0.1", 0),
    "libpcap__pcapng-invalid-vers-2.pcapng": ("refused", "unsupported pcapng savefile version 1.1", 0),
    "libpcap__shb-option-too-long.pcapng": ("refused", "block total length in header and trailer don't match", 0),
    "dpkt__truncated_dns.pcap": ("read", None, 1),
    "pcapplusplus__Pcap++Test__PcapExamples__pcapng-example.pcapng": ("read", None, 159),
    "pcapplusplus__Pcap++Test__PcapExamples__too_many_interfaces.pcapng": ("read", None, 1),
    "tcpdump__802_15_4-data.pcap": ("read", None, 1),
    "tcpdump__aarp-heapoverflow-1.pcap": ("read", None, 1),
    "tcpdump__bootp_asan.pcap": ("read", None, 1),
    "tcpdump__empty.pcap": ("read", None, 0),
    "tcpdump__empty.pcapng": ("read", None, 0),
    "tcpdump__lisp_invalid_length.pcap": ("read", None, 1),
    "tcpdump__pim_header_asan-2.pcap": ("read", None, 3),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_corpus_file_gets_its_behaviour(name):
    row = next((r for r in ROWS if r["copied_as"] == name), None)
    if row is None:
        ref._missing(f"corpus file {name}")
    assert row["category"] == "malformed-file"
    what, message, count = MALFORMED[name]
    if what == "refused":
        with pytest.raises(pfilter.CaptureFormatError) as e:
            pfilter.open(row["file"])
        assert message in str(e.value) and e.value.offset is not None
        assert str(row["file"]) in str(e.value)
    else:
        pkts, err = read_pfilter(row["file"])
        assert err is None and len(pkts) == count


def test_every_malformed_corpus_file_is_in_the_table():
    assert {r["copied_as"] for r in ROWS if r["category"] == "malformed-file"} == set(MALFORMED)


def test_caplen_above_snaplen_file_is_cut_like_libpcap():
    row = next(r for r in ROWS if r["copied_as"] == "tcpdump__802_15_4-data.pcap")
    pkts, _ = read_pfilter(row["file"])
    with pfilter.open(row["file"]) as cap:
        assert cap.snaplen == 13
    assert len(pkts[0][0]) == 13 and pkts[0][1] > 13
