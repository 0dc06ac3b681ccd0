"""pfilter.classify and `pfilter classify` on awkward input: captures of several link types where a
rule has no meaning on one of them (it matches nothing there, with one warning), damaged
captures (the intact packets are classified and reported before the error), rules files with a
byte-order mark, NUL bytes or no end (/dev/zero), and progress bars.

Captures are built from the repository's data/sample.pcap; libpcap (through tests/reference.py)
decides which packets each rule accepts and where a damaged file stops.
"""
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter import classification as clmod
from pfilter import cli
from test_capture_formats import build_pcap

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.pcap"
RULES = {"web": "tcp port 80 or tcp port 443", "dns": "udp port 53", "mac": "ether host 02:00:5e:00:00:fe",
         "tagged": "vlan", "v4": "ip"}


@pytest.fixture(scope="module")
def null_capture(tmp_path_factory):
    """The IPv4 packets of data/sample.pcap as a NULL (BSD loopback) capture: the Ethernet
    header replaced by the 4-byte address family in the writer's byte order."""
    _dlt, _snap, pkts, _err = ref.read_capture(str(SAMPLE))
    frames = [p for p, _w, _t in pkts if p[12:14] == b"\x08\x00"]
    packets = [struct.pack("<I", 2) + p[14:] for p in frames]
    times = [(1_700_000_000 + i, i) for i in range(len(packets))]
    path = tmp_path_factory.mktemp("null") / "null.pcap"
    path.write_bytes(build_pcap(packets, times, linktype=0, snaplen=262144))
    assert len(packets) > 100
    return path


def libpcap_counts(path, rules):
    """Packets of `path` each rule accepts, by libpcap's compiler and interpreter on the file's
    own handle; None for a rule libpcap refuses to compile for the file's link type."""
    _dlt, _snap, pkts, _err = ref.read_capture(str(path))
    out = {}
    for name, expr in rules.items():
        try:
            insns = ref.compile_for_capture(str(path), expr, optimize=True)
        except ref.RefError:
            out[name] = None
            continue
        out[name] = sum(1 for p, wire, _t in pkts if ref.bpf_filter(insns, p, wire))
    return out


def test_a_rule_without_meaning_on_a_link_type_matches_nothing_there_with_one_warning(null_capture):
    eth, null = libpcap_counts(SAMPLE, RULES), libpcap_counts(null_capture, RULES)
    # libpcap refuses exactly the link-layer rules on NULL, and accepts them on Ethernet
    assert [n for n, c in null.items() if c is None] == ["mac", "tagged"]
    assert all(c is not None for c in eth.values()) and eth["mac"] > 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pfilter.classify([SAMPLE, null_capture, SAMPLE], RULES)
    lines = [str(w.message) for w in caught if issubclass(w.category, clmod.RuleLinkTypeWarning)]
    assert len(lines) == 2 and all("link type NULL" in line for line in lines)
    assert {line.split("'")[1] for line in lines} == {"mac", "tagged"}
    assert [(r, lt) for r, lt, _why in result.inapplicable] == [("mac", "NULL"), ("tagged", "NULL")]
    for r, name in enumerate(result.rules):
        assert result.counts[r] == 2 * eth[name] + (null[name] or 0), name
    # per packet: the NULL file's rows of the inapplicable rules are all false
    n_eth = len(ref.read_capture(str(SAMPLE))[2])
    null_rows = result.bool_matrix()[n_eth:n_eth + len(ref.read_capture(str(null_capture))[2])]
    assert not null_rows[:, result.rules.index("mac")].any()
    assert null_rows[:, result.rules.index("v4")].all()


def test_a_rule_that_compiles_for_no_link_type_is_still_an_error(null_capture):
    with pytest.raises(pfilter.FilterError, match="rule 'bad'"):
        pfilter.classify([SAMPLE, null_capture], {"ok": "ip", "bad": "tcp port no-such-service-name"})


def test_a_rule_without_meaning_on_the_named_link_type_is_an_error(null_capture):
    with pytest.raises(pfilter.FilterError, match=r"rule 'mac' \(link type NULL\)"):
        pfilter.classify(null_capture, RULES, linktype="NULL")


def test_cli_prints_one_warning_line_per_rule_and_link_type(null_capture, tmp_path, capsys):
    rules = tmp_path / "r.rules"
    rules.write_text("".join(f"{k}: {v}\n" for k, v in RULES.items()))
    status = cli.classify_main(["-r", str(SAMPLE), "-r", str(null_capture), "-r", str(null_capture), "-R", str(rules)])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert status == 0 and len(lines) == 2
    assert all(line.startswith("pfilter classify: warning: rule '") and "cannot apply to link type NULL" in line
               and line.endswith("it matches no packet of that link type") for line in lines)
    assert {line.split("'")[1] for line in lines} == {"mac", "tagged"}
    rows = {line.rsplit(None, 3)[0]: int(line.rsplit(None, 3)[1]) for line in out.splitlines()[1:]}
    null = libpcap_counts(null_capture, RULES)
    eth = libpcap_counts(SAMPLE, RULES)
    assert rows["mac"] == eth["mac"] and rows["v4"] == eth["v4"] + 2 * null["v4"]


# ----------------------------------------------------------------------------- damaged captures

@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    """data/sample.pcap cut inside a record: libpcap reads the records before it, then fails."""
    data = SAMPLE.read_bytes()
    path = tmp_path_factory.mktemp("cut") / "cut.pcap"
    path.write_bytes(data[: len(data) * 2 // 3])
    _dlt, _snap, pkts, err = ref.read_capture(str(path))
    assert err and "truncated" in err and 0 < len(pkts)
    return path


def test_a_damaged_capture_raises_with_the_classification_of_the_intact_packets(truncated):
    rules = {k: v for k, v in RULES.items() if k != "tagged"}
    with pytest.raises(pfilter.CaptureFormatError) as info:
        pfilter.classify([SAMPLE, truncated], rules)
    partial = info.value.partial
    intact = len(ref.read_capture(str(truncated))[2])
    assert partial.packets == len(ref.read_capture(str(SAMPLE))[2]) + intact
    eth, cut = libpcap_counts(SAMPLE, rules), libpcap_counts(truncated, rules)
    assert [int(c) for c in partial.counts] == [eth[n] + cut[n] for n in partial.rules]
    assert partial.bool_matrix().shape == (partial.packets, len(rules))
    # the offset is that of the first damaged record, after every intact one
    assert info.value.offset == 24 + sum(16 + len(p) for p, _w, _t in ref.read_capture(str(truncated))[2])


def test_cli_prints_the_table_of_the_intact_packets_then_the_error_line(truncated, tmp_path, capsys):
    rules = tmp_path / "r.rules"
    rules.write_text("web: tcp port 80 or tcp port 443\ndns: udp port 53\n")
    labels = tmp_path / "labels.csv"
    status = cli.classify_main(["-r", str(truncated), "-R", str(rules), "--labels", str(labels)])
    out, err = capsys.readouterr()
    intact = len(ref.read_capture(str(truncated))[2])
    assert status == 1
    assert out.splitlines()[-1].split()[:2] == ["total", str(intact)]
    assert len(err.splitlines()) == 1 and err.startswith("pfilter classify: ") and "truncated" in err
    assert len(labels.read_text().splitlines()) == intact + 1


def test_a_capture_damaged_before_its_first_packet_is_classified_as_empty(tmp_path, capsys):
    """Its intact packets are none: a table of zeros, a labels file of none and --split files
    with the header alone (as `tcpdump -w` writes for it), then the error line; a file that is
    no capture at all (its header damaged) gives the error line alone."""
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(SAMPLE.read_bytes()[:24] + b"\xff" * 40)
    rules = tmp_path / "r.rules"
    rules.write_text("web: tcp\n")
    labels = tmp_path / "labels.csv"
    split = tmp_path / "web.pcap"
    assert cli.classify_main(["-r", str(bad), "-R", str(rules), "--labels", str(labels),
                              "--split", str(tmp_path / "{rule}.pcap")]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[-1].split()[:2] == ["total", "0"] and len(err.splitlines()) == 1
    assert labels.read_text().splitlines() == ["packet,label"] and split.read_bytes() == SAMPLE.read_bytes()[:24]
    for no_capture in (SAMPLE.read_bytes()[:10], b"not a capture at all\n"):
        bad.write_bytes(no_capture)
        labels.unlink(missing_ok=True)
        assert cli.classify_main(["-r", str(bad), "-R", str(rules), "--labels", str(labels)]) == 1
        out, err = capsys.readouterr()
        assert out == "" and len(err.splitlines()) == 1 and not labels.exists()


# ----------------------------------------------------------------------------- rules files

def test_a_byte_order_mark_is_not_part_of_the_first_rule_name(tmp_path):
    f = tmp_path / "bom.rules"
    f.write_bytes(b"\xef\xbb\xbfweb: tcp\ndns: udp port 53\n")
    assert [n for n, _ in clmod.parse_rules(f)] == ["web", "dns"]
    assert pfilter.classify(SAMPLE, f).counts[0] == libpcap_counts(SAMPLE, {"web": "tcp"})["web"]


@pytest.mark.parametrize("content, message", [
    (b"web: tcp\n\0dns: udp\n", "is not text (NUL byte at offset 9)"),
    (b"web: tcp\ndns: udp port \xff53\n", "is not UTF-8 text (byte 0xff at offset 23)"),
    (b"\xef\xbb\xbfweb: tcp\n\0", "is not text (NUL byte at offset 12)"),
])
def test_a_rules_file_that_is_not_text_is_one_filter_error(tmp_path, content, message):
    f = tmp_path / "x.rules"
    f.write_bytes(content)
    with pytest.raises(pfilter.FilterError) as info:
        clmod.parse_rules(f)
    assert str(info.value) == f"{f}: rules file {message}"


def test_a_rules_file_over_the_limit_is_refused(tmp_path, monkeypatch):
    from pfilter import _textfile
    f = tmp_path / "big.rules"
    f.write_text("web: tcp\n" + "# comment\n" * 89)
    assert f.stat().st_size == 899
    monkeypatch.setattr(_textfile, "MAX_TEXT_FILE_BYTES", 898)
    with pytest.raises(pfilter.FilterError, match="rules file larger than 898 bytes"):
        clmod.parse_rules(f)
    monkeypatch.setattr(_textfile, "MAX_TEXT_FILE_BYTES", 899)
    assert clmod.parse_rules(f) == [("web", "tcp")]


def test_cli_rules_from_dev_zero_is_one_line_and_bounded(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "pfilter", "classify", "-r", str(SAMPLE), "-R", "/dev/zero"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == ["pfilter classify: /dev/zero: rules file larger than 8 MiB"]


# ----------------------------------------------------------------------------- progress

def test_progress_callable_sees_bytes_and_packets_up_to_the_files_sizes(null_capture):
    seen = []
    result = pfilter.classify([SAMPLE, null_capture], {"a": "tcp", "b": "udp"},
                              progress=lambda done, total, packets: seen.append((done, total, packets)))
    total = SAMPLE.stat().st_size + null_capture.stat().st_size
    assert seen and all(t == total for _d, t, _p in seen)
    assert [d for d, _t, _p in seen] == sorted(d for d, _t, _p in seen) and seen[-1][0] == total
    assert seen[-1][2] == result.packets


def test_progress_true_draws_the_built_in_bar_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)        # import tqdm fails
    pfilter.classify(SAMPLE, {"a": "tcp", "b": "udp"}, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rclassify: ") and "%" in err and err.endswith("\r")   # drawn, then cleared


def test_progress_rejects_what_is_neither_a_flag_nor_a_callable():
    with pytest.raises(pfilter.FilterError, match="progress must be"):
        pfilter.classify(SAMPLE, {"a": "tcp"}, progress="yes")


def test_cli_progress_on_request_and_on_a_terminal_for_large_inputs(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    rules = tmp_path / "r.rules"
    rules.write_text("a: tcp\nb: udp\n")
    argv = ["-r", str(SAMPLE), "-R", str(rules)]
    assert cli.classify_main(argv + ["--progress"]) == 0
    assert "\rclassify: " in capsys.readouterr().err
    assert cli.classify_main(argv) == 0
    assert capsys.readouterr().err == ""                  # not a terminal
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(cli, "PROGRESS_MIN_BYTES", SAMPLE.stat().st_size)
    assert cli.classify_main(argv) == 0
    assert "\rclassify: " in capsys.readouterr().err
    assert cli.classify_main(argv + ["--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(cli, "PROGRESS_MIN_BYTES", SAMPLE.stat().st_size + 1)
    assert cli.classify_main(argv) == 0
    assert capsys.readouterr().err == ""


def test_labels_are_written_atomically_and_never_over_an_input(tmp_path, capsys):
    rules = tmp_path / "r.csv"
    rules.write_text("a: tcp\n")
    before = rules.read_bytes()
    assert cli.classify_main(["-r", str(SAMPLE), "-R", str(rules), "--labels", str(rules)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err and rules.read_bytes() == before
    out = tmp_path / "l.npy"
    assert cli.classify_main(["-r", str(SAMPLE), "-R", str(rules), "--labels", str(out)]) == 0
    labels = np.load(out)
    assert list(labels) == list(pfilter.classify(SAMPLE, rules, default="").labels())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_damaged_input_among_several_is_said_and_the_next_read(truncated, tmp_path, capsys):
    """As `pfilter -r A -r B` reads on (and tcpdump -V): the damaged input's line, then the next
    inputs classified; table, labels and split files of every packet read (split files as
    tcpdump -V writes them); exit 1. From Python, on_damage= takes the error."""
    rules = tmp_path / "r.rules"
    rules.write_text("web: tcp port 80 or tcp port 443\ndns: udp port 53\n")
    labels, out = tmp_path / "labels.csv", tmp_path / "split"
    out.mkdir()
    status = cli.classify_main(["-r", str(SAMPLE), "-r", str(truncated), "-r", str(SAMPLE), "-R", str(rules),
                                "--labels", str(labels), "--split", str(out / "{rule}.pcap")])
    text, err = capsys.readouterr()
    packets = 2 * len(ref.read_capture(str(SAMPLE))[2]) + len(ref.read_capture(str(truncated))[2])
    assert status == 1 and text.splitlines()[-1].split()[:2] == ["total", str(packets)]
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith(f"pfilter classify: {truncated}")]
    assert len(err.splitlines()) == 1 and len(labels.read_text().splitlines()) == packets + 1
    listing = tmp_path / "list.txt"
    listing.write_text(f"{SAMPLE}\n{truncated}\n{SAMPLE}\n")
    want = tmp_path / "want.pcap"
    subprocess.run([ref.tcpdump(), "-Z", "root", "-V", str(listing), "-w", str(want), "udp port 53"],
                   capture_output=True)
    assert (out / "dns.pcap").read_bytes() == want.read_bytes()
    seen = []
    got = pfilter.classify([SAMPLE, truncated, SAMPLE], {"dns": "udp port 53"}, on_damage=seen.append)
    assert got.packets == packets and [type(e) for e in seen] == [pfilter.CaptureFormatError]


def test_the_labels_never_replace_the_list_of_inputs_and_a_bad_rule_says_where(tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text(f"{SAMPLE}\n")
    rules = tmp_path / "r.rules"
    rules.write_text("web: tcp\n")
    assert cli.classify_main(["-V", str(listing), "-R", str(rules), "--labels", str(listing)]) == 1
    assert capsys.readouterr().err.strip().endswith(f"refusing to overwrite the input file {listing}")
    assert listing.read_text() == f"{SAMPLE}\n"
    rules.write_text("bad: tcp and frob\n")
    assert cli.classify_main(["-r", str(SAMPLE), "-R", str(rules)]) == 1
    assert capsys.readouterr().err.strip().endswith("(at offset 8 of 'tcp and frob')")


def test_two_split_outputs_of_one_name_are_named(tmp_path, capsys):
    rules = tmp_path / "r.rules"
    rules.write_text("a: tcp\nb: udp\n")
    status = cli.classify_main(["-r", str(SAMPLE), "-R", str(rules), "--split", str(tmp_path / "{rule}.pcap"),
                                "--unmatched", str(tmp_path / "a.pcap")])
    assert status == 1 and capsys.readouterr().err == (
        f"pfilter classify: split: two outputs would have the same file name {tmp_path / 'a.pcap'}\n")
