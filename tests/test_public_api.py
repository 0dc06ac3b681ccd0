"""The public API: typed (mypy --strict passes on a user script, and catches misuse), explicit
(keyword parameters with docstrings, no **options), and the public writer (pfilter.write and
pfilter.open(path, "w")): round trips through pfilter's reader, libpcap and tcpdump, the same
bytes as filter_file, atomic, never over its input.
"""
import inspect
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import pfilter
import reference as ref

ROOT = Path(__file__).resolve().parents[1]
TYPING = ROOT / "tests" / "typing"
SAMPLE = ROOT / "data" / "sample.pcap"
# The modules that define pfilter's public signatures, checked strictly with the user script.
TYPED_MODULES = ["pfilter/__init__.py", "pfilter/errors.py", "pfilter/_typing.py",
                 "pfilter/capture/output.py"]


def _mypy(tmp_path, *files):
    """(exit status, output) of mypy --strict (tests/typing/mypy.ini) on the given files."""
    try:
        import mypy  # noqa: F401
    except ImportError:
        if ref.IN_CI:
            pytest.fail("mypy is not installed (it is in the test extra: pip install -e '.[test]')")
        pytest.skip("mypy is not installed (pip install mypy)")
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(TYPING / "mypy.ini"),
                          "--cache-dir", str(tmp_path / "mypy-cache"), *map(str, files)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    return run.returncode, run.stdout + run.stderr


# ----------------------------------------------------------------------------- typing

def test_mypy_strict_passes_on_a_user_script_of_the_whole_api(tmp_path):
    status, out = _mypy(tmp_path, TYPING / "user_script.py", *TYPED_MODULES)
    assert status == 0, out
    assert f"no issues found in {1 + len(TYPED_MODULES)} source files" in out, out


def test_the_user_script_runs(tmp_path):
    run = subprocess.run([sys.executable, str(TYPING / "user_script.py"), str(SAMPLE), str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "web.pcap").stat().st_size > 24
    assert pfilter.filter_file(SAMPLE, None, "ip and tcp port 80").matched == int(run.stdout.split()[0])


MISUSE = '''
import numpy as np
import pfilter
batch = pfilter.PacketBatch.from_packets([b"x"])
a: str = pfilter.compile("tcp")                                     # E
b: str = pfilter.compile("tcp").match_batch(batch)                  # E
c: str = pfilter.open("x.pcap")                                     # E
for got in pfilter.open("x.pcap"):
    d: str = got                                                    # E
e: str = pfilter.open("x.pcap", "w")                                # E
pfilter.open("x.pcap", "w", batch_packets=3)                        # E
f: str = pfilter.filter_file("a.pcap", "b.pcap", "tcp")             # E
pfilter.filter_file("a.pcap", "b.pcap", "tcp", progres=True)        # E
g: str = pfilter.classify("a.pcap", ["tcp"])                        # E
h: str = pfilter.classify("a.pcap", ["tcp"]).counts                 # E
i: str = pfilter.write("x.pcap", batch)                             # E
j: str = pfilter.FilterSyntaxError("m").position                    # E
k: str = pfilter.filter_file("a.pcap", None, "tcp").written         # E
pfilter.compile("tcp", optimize="fast")                             # E
with pfilter.open("x.pcap", "w") as w:
    w.write(batch, np.array([True]))
    l: str = w.write(batch)                                         # E
'''


def test_mypy_reports_each_misuse_of_the_api(tmp_path):
    """The check has teeth: with a signature or a type gone to Any, a line here passes."""
    script = tmp_path / "misuse.py"
    script.write_text(MISUSE)
    status, out = _mypy(tmp_path, script)
    assert status == 1, out
    flagged = {int(line.split(":")[1]) for line in out.splitlines() if line.startswith(str(script))
               and ": error:" in line}
    expected = {n for n, line in enumerate(MISUSE.splitlines(), 1) if line.endswith("# E")}
    assert expected <= flagged, out
    assert flagged <= expected, out


EXPORTED_CLASSES = ["Program", "PacketBatch", "Capture", "Writer", "FilterStats", "Classification",
                    "FilterError", "FilterSyntaxError", "InvalidProgramError", "CaptureFormatError"]
DUNDERS = {"__init__", "__len__", "__iter__", "__next__", "__enter__", "__exit__", "__eq__"}


def _unannotated(func):
    sig = inspect.signature(func)
    missing = [p.name for p in sig.parameters.values()
               if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_every_exported_name_resolves_and_is_listed():
    for name in pfilter.__all__:
        assert getattr(pfilter, name) is not None
    assert set(EXPORTED_CLASSES) <= set(pfilter.__all__)
    assert set(pfilter.__all__) <= set(dir(pfilter))


@pytest.mark.parametrize("name", ["compile", "open", "write", "filter_file", "classify"])
def test_exported_functions_are_annotated(name):
    assert _unannotated(getattr(pfilter, name)) == []


@pytest.mark.parametrize("name", EXPORTED_CLASSES)
def test_exported_classes_annotate_every_public_method(name):
    cls = getattr(pfilter, name)
    gaps = {}
    for attr, value in vars(cls).items():
        if attr.startswith("_") and attr not in DUNDERS:
            continue
        func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
        if inspect.isfunction(func):
            missing = _unannotated(func)
            if missing:
                gaps[attr] = missing
    assert gaps == {}


@pytest.mark.parametrize("name", ["Program", "PacketBatch", "Capture", "Writer", "FilterStats",
                                  "Classification"])
def test_exported_classes_declare_their_public_attributes(name):
    cls = getattr(pfilter, name)
    hints = {k for c in cls.__mro__ for k in getattr(c, "__annotations__", {})}
    doc_attrs = {"Program": {"instructions", "linktype", "snaplen", "source"},
                 "PacketBatch": set(pfilter.PacketBatch.__slots__),
                 "Capture": {"format", "linktype", "snaplen", "ts_resolution", "interfaces", "path"},
                 "Writer": set(),
                 "FilterStats": set(pfilter.FilterStats.FIELDS),
                 "Classification": {"rules", "matrix", "counts", "bytes", "packets"}}[name]
    assert doc_attrs <= hints


# ----------------------------------------------------------------------------- explicit

INTERNALS = {
    "compile": ("pfilter.compiler.driver", "compile_expression"),
    "filter_file": ("pfilter.capture.filterfile", "filter_file"),
    "classify": ("pfilter.classification.run", "classify"),
}


@pytest.mark.parametrize("name", ["compile", "open", "write", "filter_file", "classify"])
def test_public_functions_spell_out_and_document_every_parameter(name):
    func = getattr(pfilter, name)
    params = inspect.signature(func).parameters
    assert all(p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params.values())
    undocumented = [p for p in params if p not in func.__doc__]
    assert undocumented == []


@pytest.mark.parametrize("name", sorted(INTERNALS))
def test_public_functions_accept_every_option_of_the_engine_behind_them(name):
    import importlib
    module, attr = INTERNALS[name]
    inner = inspect.signature(getattr(importlib.import_module(module), attr)).parameters
    outer = inspect.signature(getattr(pfilter, name)).parameters
    assert [p for p in inner if p not in outer] == []
    for p, param in outer.items():
        if p in inner and param.default is not None and param.default is not param.empty:
            assert param.default == inner[p].default, p   # None means "the engine's default"


def test_open_accepts_every_option_of_the_reader():
    inner = inspect.signature(pfilter.Capture).parameters
    outer = inspect.signature(pfilter.open).parameters
    assert [p for p in inner if p not in outer] == []


def test_open_options_of_the_other_mode_are_refused(tmp_path):
    with pytest.raises(pfilter.FilterError, match="batch_packets"):
        pfilter.open(tmp_path / "o.pcap", "w", batch_packets=10)
    with pytest.raises(pfilter.FilterError, match="linktype"):
        pfilter.open(SAMPLE, "r", linktype=1)
    with pytest.raises(pfilter.FilterError, match="mode"):
        pfilter.open(SAMPLE, "a")
    assert not (tmp_path / "o.pcap").exists()


def test_open_read_options_reach_the_reader():
    with pfilter.open(SAMPLE, batch_packets=100) as cap:
        sizes = [len(b) for b in cap]
    assert max(sizes) == 100 and sum(sizes) == 3000


# ----------------------------------------------------------------------------- the writer

def _packets(path):
    """[(bytes, wirelen, ns timestamp, link type)] as pfilter's reader gives them."""
    out = []
    with pfilter.open(path) as cap:
        for b in cap:
            out += [(b.packet(i), int(b.wirelen[i]), int(b.timestamps[i]), b.linktype_of(i))
                    for i in range(len(b))]
    return out


def _tcpdump_text(path, *args):
    run = subprocess.run([ref.tcpdump(), "-n", "-tt", "-v", "-r", str(path), *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize("name", ["copy.pcap", "copy.pcapng"])
def test_write_copies_a_capture_that_pfilter_libpcap_and_tcpdump_read_back(tmp_path, name):
    dst = tmp_path / name
    with pfilter.open(SAMPLE, batch_packets=700) as cap:
        assert pfilter.write(dst, cap) == 3000
    assert _packets(dst) == _packets(SAMPLE)
    dlt, snap, pkts, err = ref.read_capture(str(dst))
    odlt, osnap, opkts, _ = ref.read_capture(str(SAMPLE))
    assert (dlt, snap, pkts, err) == (odlt, osnap, opkts, None)
    assert _tcpdump_text(dst) == _tcpdump_text(SAMPLE)


def test_writer_of_selected_packets_gives_filter_files_bytes(tmp_path):
    expr = "ip and tcp port 80"
    prog = pfilter.compile(expr)
    mine, theirs = tmp_path / "mine.pcap", tmp_path / "theirs.pcap"
    with pfilter.open(SAMPLE, batch_packets=512) as cap:
        with pfilter.open(mine, "w", linktype=cap.linktype, snaplen=cap.snaplen,
                          ts_resolution=cap.ts_resolution) as out:
            for n, batch in enumerate(cap):
                hits = prog.match_batch(batch)
                # masks and index arrays select the same packets
                out.write(batch, hits if n % 2 else np.flatnonzero(hits))
    stats = pfilter.filter_file(SAMPLE, theirs, expr)
    assert stats.written > 0 and out.packets_written == stats.written
    assert mine.read_bytes() == theirs.read_bytes()


def test_write_takes_link_type_from_the_first_batch_and_keeps_nanoseconds(tmp_path):
    pkts = [b"\x45" + b"\x00" * 19, b"\x60" + b"\x00" * 39]
    stamps = np.array([1_700_000_000_123_456_789, 1_700_000_001_000_000_001], np.int64)
    raw = pfilter.PacketBatch.from_packets(pkts, wirelens=[100, 200], linktype=101, timestamps=stamps)
    for res, want in (("ns", stamps), ("us", stamps // 1000 * 1000)):
        dst = tmp_path / f"raw-{res}.pcap"
        assert pfilter.write(dst, raw, ts_resolution=res) == 2
        assert _packets(dst) == [(p, w, int(t), 101) for p, w, t in zip(pkts, [100, 200], want)]
        with pfilter.open(dst) as cap:
            assert (cap.linktype, cap.ts_resolution) == (101, res)
        assert "RAW" in subprocess.run([ref.tcpdump(), "-r", str(dst)], capture_output=True,
                                       text=True).stderr


def test_pcapng_writer_holds_batches_of_several_link_types(tmp_path):
    eth = pfilter.PacketBatch.from_packets([b"\xff" * 60], linktype=1)
    raw = pfilter.PacketBatch.from_packets([b"\x45" + b"\x00" * 19], linktype=101)
    dst = tmp_path / "mixed.pcapng"
    with pfilter.open(dst, "w") as out:
        out.write(eth)
        out.write(raw)
        out.write(eth)
    assert [p[3] for p in _packets(dst)] == [1, 101, 1]
    with pytest.raises(pfilter.FilterError, match="link type"):
        with pfilter.open(tmp_path / "mixed.pcap", "w") as out:
            out.write(eth)
            out.write(raw)
    assert not (tmp_path / "mixed.pcap").exists()


def test_a_capture_with_no_packets_is_valid(tmp_path):
    dst = tmp_path / "empty.pcap"
    assert pfilter.write(dst, []) == 0
    assert ref.read_capture(str(dst))[2:] == ([], None)
    with pfilter.open(dst, "w", linktype="RAW"):
        pass
    with pfilter.open(dst) as cap:
        assert cap.linktype == 101 and list(cap) == []


def test_writer_output_is_atomic(tmp_path):
    dst = tmp_path / "out.pcap"
    dst.write_bytes(b"previous contents")
    batch = pfilter.PacketBatch.from_packets([b"\x00" * 60] * 3)
    with pytest.raises(RuntimeError):
        with pfilter.open(dst, "w") as out:
            out.write(batch)
            out.write(batch)
            assert dst.read_bytes() == b"previous contents"    # nothing there before close
            raise RuntimeError("stop")
    assert dst.read_bytes() == b"previous contents"
    assert sorted(os.listdir(tmp_path)) == ["out.pcap"]
    with pfilter.open(dst, "w") as out:
        out.write(batch)
    assert len(_packets(dst)) == 3


def test_write_refuses_to_overwrite_its_input(tmp_path):
    src = tmp_path / "in.pcap"
    shutil.copy(SAMPLE, src)
    before = src.read_bytes()
    with pfilter.open(src) as cap:
        with pytest.raises(pfilter.FilterError, match="input"):
            pfilter.write(src, cap)
    assert src.read_bytes() == before


def test_writer_refuses_packets_longer_than_its_snapshot_length(tmp_path):
    batch = pfilter.PacketBatch.from_packets([b"\x00" * 60, b"\x00" * 100])
    with pytest.raises(pfilter.FilterError, match="snapshot length 64"):
        pfilter.write(tmp_path / "o.pcap", batch, snaplen=64)
    assert not (tmp_path / "o.pcap").exists()
    with pfilter.open(tmp_path / "o.pcap", "w", snaplen=64) as out:
        assert out.write(batch, [0]) == 1          # the long packet is not selected
    assert len(_packets(tmp_path / "o.pcap")) == 1


@pytest.mark.parametrize("bad", [dict(format="pcapx"), dict(ts_resolution="ms"), dict(snaplen=0),
                                 dict(linktype="NOSUCHLINK")])
def test_writer_options_are_checked_before_anything_is_written(tmp_path, bad):
    with pytest.raises(pfilter.FilterError):
        pfilter.open(tmp_path / "o.pcap", "w", **bad)
    assert os.listdir(tmp_path) == []


def test_a_closed_writer_refuses_more_packets(tmp_path):
    batch = pfilter.PacketBatch.from_packets([b"\x00" * 60])
    with pfilter.open(tmp_path / "o.pcap", "w") as out:
        out.write(batch)
    with pytest.raises(pfilter.FilterError, match="closed"):
        out.write(batch)
    assert out.closed and out.packets_written == 1


def test_file_system_failures_of_the_writer_are_oserrors(tmp_path):
    batch = pfilter.PacketBatch.from_packets([b"\x00" * 60])
    missing = tmp_path / "no-such-dir" / "o.pcap"
    with pytest.raises(FileNotFoundError):
        pfilter.open(missing, "w", linktype="EN10MB")
    with pytest.raises(FileNotFoundError):
        pfilter.write(missing, batch)            # created at the first batch: raised there
    with pytest.raises(IsADirectoryError):
        pfilter.write(tmp_path, batch)
    assert os.listdir(tmp_path) == []


def _raw_capture(path):
    """The sample's IPv4 packets without their Ethernet header, as a raw IP (LINKTYPE 101) file."""
    with pfilter.open(SAMPLE) as cap:
        packets = [b.packet(i)[14:] for b in cap for i in range(len(b)) if b.packet(i)[12:14] == b"\x08\x00"]
    pfilter.write(path, pfilter.PacketBatch.from_packets(packets, linktype=101))
    return path


def _tcpdump_count(path, expr):
    r = subprocess.run([ref.tcpdump(), "-r", str(path), "--count", expr], capture_output=True, text=True, check=True)
    return int(r.stdout.split()[0])


def test_a_program_runs_only_on_the_link_type_it_was_compiled_for(tmp_path):
    """A Program compiled for Ethernet over raw IP packets read their bytes as an Ethernet
    header: filter_file, classify and match_batch gave wrong counts without a word. Now a
    FilterError names both link types; the expression as text (compiled per link type) and a
    program compiled for the capture's link type give tcpdump's count."""
    raw = _raw_capture(tmp_path / "raw.pcap")
    want = _tcpdump_count(raw, "tcp")
    assert want > 0
    ether = pfilter.compile("tcp")
    for call in (lambda: pfilter.filter_file(raw, None, ether), lambda: pfilter.classify(raw, {"t": ether}),
                 lambda: [ether.match_batch(b) for b in pfilter.open(raw)]):
        with pytest.raises(pfilter.FilterError, match="compiled for link type EN10MB, but .* RAW"):
            call()
    assert pfilter.filter_file(raw, None, "tcp").matched == want
    as_raw = pfilter.compile("tcp", linktype="RAW")         # DLT 12 for a file's LINKTYPE 101: the same
    assert pfilter.filter_file(raw, None, as_raw).matched == want
    assert pfilter.classify(raw, {"t": as_raw}).counts.tolist() == [want]
    with pfilter.open(raw) as cap:
        assert sum(int(as_raw.match_batch(b).sum()) for b in cap) == want
    foreign = pfilter.Program.from_tuples(as_raw.to_tuples())        # no link type known: runs
    assert pfilter.filter_file(raw, None, foreign).matched == want
    # linktype= (the packets taken as that link type, by name) with a program compiled for it runs
    assert pfilter.filter_file(SAMPLE, None, as_raw, linktype="RAW").read == 3000


def test_count_must_be_positive_and_a_closed_capture_is_not_empty(tmp_path):
    """count=0 read every packet and reported none matched (tcpdump -c 0: "invalid packet
    count"): refused, as count=True; iterating a closed capture gave no batch, as an empty file
    would: refused."""
    for bad in (0, True, 1.5):
        with pytest.raises(pfilter.FilterError, match="count must be a positive number"):
            pfilter.filter_file(SAMPLE, None, "tcp", count=bad)
    assert pfilter.filter_file(SAMPLE, None, "tcp", count=1).matched == 1
    cap = pfilter.open(SAMPLE)
    first = next(iter(cap))
    cap.close()
    with pytest.raises(pfilter.FilterError, match="closed"):
        next(iter(cap))
    assert len(first) > 0           # (a batch read before closing stays valid)
