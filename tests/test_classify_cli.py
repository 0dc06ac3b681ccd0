"""`pfilter classify -r FILE -R RULES [--labels OUT.csv|OUT.npy] [--default LABEL]`, through
pfilter.cli.classify_main(argv): the per-rule table, the labels files, one-line errors."""
import csv

import numpy as np
import pytest

import pfilter
import reference as ref

from pfilter import cli  # noqa: E402

PCAP = ref.PCAPS / "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap"
PCAP2 = ref.PCAPS / "tcpdump__afs.pcap"
RULES_TEXT = "# classes\nweb: tcp port 80 or tcp port 443\ndns: udp port 53\nv6: ip6\nudp: udp\n"


@pytest.fixture
def rules(tmp_path):
    if not PCAP.exists():
        ref._missing(f"corpus capture {PCAP}")
    f = tmp_path / "classes.rules"
    f.write_text(RULES_TEXT)
    return f


def test_prints_a_row_per_rule_with_packets_bytes_and_share(rules, capsys):
    assert cli.classify_main(["-r", str(PCAP), "-R", str(rules)]) == 0
    out = capsys.readouterr().out.splitlines()
    want = pfilter.classify(PCAP, rules)
    assert out[0].split() == ["rule", "packets", "bytes", "share"]
    rows = {line.split()[0]: line.split()[1:] for line in out[1:]}
    for r, name in enumerate(want.rules):
        assert rows[name][:2] == [str(want.counts[r]), str(want.bytes[r])]
    assert rows["total"][:2] == [str(want.packets), str(want.total_bytes)]


def test_accepts_the_subcommand_name_and_several_captures(rules, capsys):
    assert cli.classify_main(["classify", "-r", str(PCAP), "-r", str(PCAP2), "-R", str(rules), "-j", "2"]) == 0
    total = capsys.readouterr().out.splitlines()[-1].split()
    assert int(total[1]) == pfilter.classify([PCAP, PCAP2], rules, counts_only=True).packets


def test_writes_first_match_labels_to_csv(rules, tmp_path, capsys):
    out = tmp_path / "labels.csv"
    assert cli.classify_main(["-r", str(PCAP), "-R", str(rules), "--labels", str(out), "--default", "other"]) == 0
    with out.open() as f:
        rows = list(csv.reader(f))
    want = pfilter.classify(PCAP, rules, default="other").labels()
    assert rows[0] == ["packet", "label"]
    assert [r[1] for r in rows[1:]] == list(want)
    assert rows[5][0] == "4"


def test_writes_first_match_labels_to_npy(rules, tmp_path, capsys):
    out = tmp_path / "labels.npy"
    assert cli.classify_main(["-r", str(PCAP), "-R", str(rules), "--labels", str(out)]) == 0
    labels = np.load(out)
    assert labels.dtype.kind == "U" and len(labels) == 4709
    assert set(labels) == {"web", "dns", "v6", "udp", ""}


@pytest.mark.parametrize("argv, status, message", [
    (["-R", "RULES"], 2, "give the captures to read: -r FILE (or DIR) or -V FILE"),
    (["-r", "CAP"], 2, "the following arguments are required: -R"),
    (["-r", "CAP", "-R", "RULES", "--labels", "out.txt"], 2, "--labels needs a .csv or .npy"),
    (["-r", "CAP", "-R", "RULES", "-j", "0"], 2, "a number from 1 to 256, not '0'"),
    (["-r", "/nonexistent.pcap", "-R", "RULES"], 1, "/nonexistent.pcap"),
    (["-r", "CAP", "-R", "/nonexistent.rules"], 1, "cannot read rules file"),
    # before the pass: no table printed, then the labels lost for want of a directory
    (["-r", "CAP", "-R", "RULES", "--labels", "/proc/pfilter-none/labels.csv"], 1,     # (no one can make it)
     "/proc/pfilter-none/labels.csv: No such file or directory"),
])
def test_errors_are_one_line_on_stderr_with_a_nonzero_status(rules, capsys, argv, status, message):
    argv = [str(PCAP) if a == "CAP" else str(rules) if a == "RULES" else a for a in argv]
    assert cli.classify_main(argv) == status
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith("pfilter classify: ") and message in err[0]


def test_help_describes_the_options_and_returns_zero(capsys):
    assert cli.classify_main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: pfilter classify" in out and "--labels" in out and "-R RULES" in out


def test_a_rule_that_does_not_compile_is_one_line_naming_the_rule(tmp_path, capsys):
    f = tmp_path / "bad.rules"
    f.write_text("ok: tcp\nbroken: tcp port\n")
    assert cli.classify_main(["-r", str(PCAP), "-R", str(f)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"rule 'broken' ({f}:2)" in err[0]
    # a rule meaningless on the link type named: the file's line and the link type
    f.write_text("# addresses\n\nmac: ether host 00:11:22:33:44:55\n")
    assert cli.classify_main(["-r", str(PCAP), "-R", str(f), "-y", "RAW"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"rule 'mac' ({f}:3, link type RAW): " in err[0]


def test_the_pfilter_command_dispatches_classify(rules):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "pfilter", "classify", "-r", str(PCAP), "-R", str(rules)],
                          capture_output=True, text=True, cwd=ref.ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["rule", "packets", "bytes", "share"]
    assert done.stdout.splitlines()[-1].split()[:2] == ["total", "4709"]


def test_a_directory_a_wildcard_and_a_list_stand_for_their_captures(tmp_path, capsys):
    """-r DIR (recursive, hidden entries and files that are not captures skipped, with a warning),
    a quoted wildcard and -V LIST name the same captures as pfilter -r does: the labels equal
    those of the files named one by one, in sorted order."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
    import gen_capture
    d = tmp_path / "caps"
    (d / "sub").mkdir(parents=True)
    (d / ".hidden").mkdir()
    files = [d / "a.pcap", d / "b.pcap", d / "sub" / "c.pcap"]
    for i, f in enumerate(files):
        gen_capture.generate(f, 400 + 100 * i, seed=70 + i)
    gen_capture.generate(d / ".hidden" / "x.pcap", 50, seed=1)
    (d / "notes.txt").write_text("not a capture\n")
    rules = tmp_path / "r.rules"
    rules.write_text(RULES_TEXT)
    want = pfilter.classify(files, rules, default="").labels()
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{f}\n" for f in files))
    for how in (["-r", str(d)], ["-r", str(d / "*.pcap"), "-r", str(d / "sub")], ["-V", str(listing)]):
        out = tmp_path / "labels.npy"
        assert cli.classify_main([*how, "-R", str(rules), "--labels", str(out)]) == 0, how
        assert list(np.load(out)) == list(want), how
        err = capsys.readouterr().err
        assert ("notes.txt: not a capture file, skipped" in err) == (how[1] == str(d))
    assert cli.classify_main(["-r", str(tmp_path / "none*.pcap"), "-R", str(rules)]) == 1
    assert capsys.readouterr().err == f"pfilter classify: {tmp_path / 'none*.pcap'}: no file matches\n"


def _tcpdump_count(path, expr):
    import subprocess
    r = subprocess.run([ref.tcpdump(), "-r", str(path), "--count", expr], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[0])


@pytest.mark.parametrize("case", ["spelling", "rotation", "stdout"])
def test_two_split_outputs_never_share_a_file(tmp_path, capsys, case):
    """One file for two outputs kept only the last one's packets, with status 0: the same name
    spelt twice ('d/./tcp.pcap'), a -C rotation's numbered file that is another rule's ('a'
    rotates into 'a1'), and standard output (where the table goes too). Refused now, nothing
    written."""
    d = tmp_path / "d"
    d.mkdir()
    r = tmp_path / "r.txt"
    r.write_text("tcp: tcp\nudp: udp\n" if case != "rotation" else "a: tcp\na1: udp\n")
    extra = {"spelling": ["--unmatched", str(d) + "/./tcp.pcap"], "rotation": ["-C", "1"],
             "stdout": ["--unmatched", "-"]}[case]
    status = cli.main(["classify", "-r", str(PCAP), "-R", str(r), "--split", str(d / "{rule}") + (
        ".pcap" if case != "rotation" else ""), *extra])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "split:" in err, err
    assert list(d.iterdir()) == []


def test_rule_names_are_not_strftime_patterns(tmp_path, capsys):
    """With -G the split names go through strftime, and a rule named '%Y' or '%G' became the
    year: both rules wrote one file. A rule's name is kept as written now; each file holds its
    rule's packets (tcpdump's count)."""
    d = tmp_path / "d"
    d.mkdir()
    r = tmp_path / "r.txt"
    r.write_text("%Y: tcp\n%G: udp\n")
    assert cli.main(["classify", "-r", str(PCAP), "-R", str(r), "--split", str(d / "{rule}.pcap"),
                     "-G", "100000000"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in d.iterdir()) == ["%G.pcap", "%Y.pcap"]
    for name, expr in (("%Y.pcap", "tcp"), ("%G.pcap", "udp")):
        assert _tcpdump_count(d / name, "") == _tcpdump_count(PCAP, expr) > 0


def test_a_split_into_more_files_than_the_soft_limit(tmp_path, capsys):
    """600 rules split under a soft limit of 1,024 open files failed ('Too many open files')
    after reading: the soft limit is raised towards the hard one, as --merge raises it."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1400:
        pytest.skip(f"the hard limit on open files is {hard}")
    d = tmp_path / "d"
    d.mkdir()
    r = tmp_path / "r.txt"
    r.write_text("".join(f"r{i}: len > {i}\n" for i in range(600)))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        assert cli.main(["classify", "-r", str(PCAP), "-R", str(r), "--split", str(d / "{rule}.pcap")]) == 0
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    capsys.readouterr()
    assert len(list(d.iterdir())) == 600
    assert _tcpdump_count(d / "r100.pcap", "") == _tcpdump_count(PCAP, "len > 100")


@pytest.mark.parametrize("ext", ["csv", "npy"])
def test_labels_are_written_as_the_pass_goes_and_equal_the_api_s(tmp_path, capsys, monkeypatch, ext):
    """--labels is written batch by batch during the pass (the command keeps no matrix: classify
    runs counts_only, memory does not grow with the packets), equal to the API's labels, also
    over several inputs one of which is cut short (its packets before the damage labelled)."""
    from pfilter.classification import run
    sample = ref.ROOT / "data" / "sample.pcap"
    data = sample.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) // 2])
    rules = tmp_path / "r.rules"
    rules.write_text("web: tcp port 80 or tcp port 443\ndns: udp port 53\nv6: ip6\n")
    seen = []
    real = run.classify

    def spy(*args, **kwargs):
        seen.append((kwargs.get("counts_only"), kwargs.get("on_block") is not None))
        return real(*args, **kwargs)
    monkeypatch.setattr(run, "classify", spy)
    import pfilter.classification as pc
    monkeypatch.setattr(pc, "classify", spy)
    inputs = [sample, cut, sample]
    out = tmp_path / f"labels.{ext}"
    status = cli.classify_main(sum((["-r", str(p)] for p in inputs), []) + ["-R", str(rules), "--labels", str(out),
                                                                           "--default", "other", "-j", "2"])
    assert status == 1 and seen == [(True, True)]
    want = pfilter.classify(inputs, rules, default="other", on_damage=lambda e: None).labels()
    if ext == "npy":
        got = np.load(out)
        assert got.dtype == want.dtype
    else:
        with out.open() as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["packet", "label"] and [r[0] for r in rows[1:]] == [str(i) for i in range(len(rows) - 1)]
        got = np.array([r[1] for r in rows[1:]])
    assert len(got) == len(want) > 3000 and (got == want).all()
