"""The reference implementations the tests compare pfilter with: libpcap 1.10.3 (Debian's
libpcap0.8) through ctypes, and the tcpdump binary. Test-only; never imported by pfilter.

When a reference is missing (libpcap, tcpdump, a C compiler, a file of the third-party corpus),
the helpers here skip the test, naming what is missing, on a developer machine, and FAIL it when
CI=true: CI must compare, never skip.

The corpus (real captures, expressions and libpcap's expected bytecode; never copied into the
repository) is the directory $PFILTER_CORPUS, absolute or relative to the repository root,
default ../shared/corpus. Tests reach it only through this module: `corpus_file()` inside a test,
`corpus_params()` for parametrize lists built at collection time.
"""
import ctypes
import ctypes.util
import functools
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS = (ROOT / os.environ.get("PFILTER_CORPUS", "../shared/corpus")).resolve()
IN_CI = os.environ.get("CI", "").lower() == "true"

#: expressions where pfilter deliberately follows the manual instead of libpcap 1.10.3 (README,
#: "Differences from tcpdump"); the differential tests leave them out and the compiler's own
#: tests check the manual's meaning
DOCUMENTED_DIVERGENCES = frozenset({"byte 0 & 1"})

_ISIS_WORDS = frozenset({"isis", "l1", "l2", "iih", "lsp", "snp", "csnp", "psnp"})


def fixed_since_1_10_3(dlt, expr, libpcap_program=None):
    """Whether pfilter's program for expr on link type dlt deliberately differs from libpcap
    1.10.3's `libpcap_program` because of a 1.10.3 bug libpcap has fixed since and pfilter fixes
    the same way (README, "Differences from tcpdump"; tests/test_compiler_fixed_bugs.py checks
    the fixed meaning): RFC 1051 system codes for ARCnet `ip`/`arp` (DLT 7, 129), the IS-IS PDU
    type offset on C_HDLC/HDLC (104, 112), inbound/outbound on SLIP (8)."""
    words = set(re.findall(r"[a-z0-9]+", expr.lower()))
    if dlt in (7, 129):
        return libpcap_program is not None and any(
            code == 0x15 and k in (240, 241) for code, _jt, _jf, k in libpcap_program)
    if dlt in (104, 112):
        return bool(words & _ISIS_WORDS)
    return dlt == 8 and bool(words & {"inbound", "outbound"})


def bytecode_mismatch(dlt, expr, theirs, ours):
    """None when pfilter's program `ours` is libpcap's `theirs` (each a list of tuples, or an
    "error: message" string), or differs only by a fixed 1.10.3 bug; else a short summary."""
    if theirs == ours or (isinstance(theirs, list) and isinstance(ours, list)
                          and fixed_since_1_10_3(dlt, expr, theirs)):
        return None
    return (dlt, expr, theirs if isinstance(theirs, str) else len(theirs),
            ours if isinstance(ours, str) else len(ours))


def load_by_path(name, path):
    """The Python file `path` (a script, a helper outside any package) imported as module `name`,
    registered in sys.modules as an import would; the module already there under that name if any."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


class RefError(Exception):
    """libpcap refused an expression or a file; the message is libpcap's."""


def _message(what):
    msg = f"reference not available: {what}"
    return msg + " (CI=true: the test command must install it)" if IN_CI else msg


def _missing(what):
    (pytest.fail if IN_CI else pytest.skip)(_message(what))


def _corpus_missing(path):
    return f"corpus file {path} (set PFILTER_CORPUS to the corpus directory)"


class _CorpusPath(type(Path())):
    """A path under the corpus that checks, each time it is used as a path (str(), os.fspath(),
    open(), exists(), ...), that the file is there: when it is not, the test using it skips naming
    it (fails when CI=true). Module-level constants such as `ref.PCAPS / "x.pcap"` are built at
    collection time, when nothing may skip; the check waits for the test that uses them."""

    def __str__(self):
        text = super().__str__()
        if not os.path.exists(text):
            _missing(_corpus_missing(text))
        return text

    def __fspath__(self):
        return self.__str__()

    def __repr__(self):
        return f"CorpusPath({super().__str__()!r})"


#: the corpus's captures; every path derived from it (PCAPS / name) checks on use, see _CorpusPath
PCAPS = _CorpusPath(CORPUS / "pcaps")


def needs_corpus(rel):
    """A mark for a test or module (`pytestmark = ref.needs_corpus("pcaps.tsv")`) whose data come
    from corpus file `rel` at collection time: when the file is absent, its tests skip naming it
    (fail when CI=true) instead of running on empty data."""
    path = CORPUS / rel
    if path.exists():
        return pytest.mark.needs_corpus(str(path))
    return pytest.mark.missing_reference(_message(_corpus_missing(path)))


def corpus_file(rel):
    """Path of the corpus file `rel` (relative to the corpus directory, or a Path under it); the
    test skips naming the file (fails when CI=true) when it is absent."""
    path = Path(CORPUS / rel)
    if not path.exists():
        _missing(_corpus_missing(path))
    return path


def corpus_params(cases, nargs=1):
    """The parameter list `cases()` builds from the corpus at collection time, for
    @pytest.mark.parametrize. When the corpus is absent, one placeholder case instead (its
    arguments None) that skips naming the missing file, or fails when CI=true: collection never
    fails and never skips a whole module silently."""
    try:
        return list(cases())
    except (pytest.skip.Exception, pytest.fail.Exception) as e:
        what = str(getattr(e, "msg", e))
    return [pytest.param(*[None] * nargs, id="corpus-missing", marks=pytest.mark.missing_reference(what))]


def check_missing_reference(item):
    """Called before each test (conftest.py): a placeholder from corpus_params skips or fails."""
    for mark in item.iter_markers("missing_reference"):
        (pytest.fail if IN_CI else pytest.skip)(mark.args[0])   # the message is _missing's


class _Prog(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class _Insn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


class _Hdr(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long),
                ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


@functools.lru_cache(maxsize=None)
def _lib():
    name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.pcap_open_offline_with_tstamp_precision.restype = ctypes.c_void_p
    lib.pcap_open_offline_with_tstamp_precision.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_char_p]
    lib.pcap_open_dead_with_tstamp_precision.restype = ctypes.c_void_p
    lib.pcap_open_dead_with_tstamp_precision.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_uint]
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_Prog), ctypes.c_char_p, ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_next_ex.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(_Hdr)), ctypes.POINTER(ctypes.c_void_p)]
    lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_Prog), ctypes.POINTER(_Hdr), ctypes.c_void_p]
    lib.bpf_filter.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
    lib.bpf_filter.restype = ctypes.c_uint
    lib.bpf_validate.argtypes = [ctypes.c_void_p, ctypes.c_int]
    for f in ("pcap_datalink", "pcap_snapshot", "pcap_close", "pcap_freecode"):
        getattr(lib, f).argtypes = [ctypes.c_void_p] if f != "pcap_freecode" else [ctypes.POINTER(_Prog)]
    lib.pcap_lib_version.restype = ctypes.c_char_p
    lib.pcap_datalink_val_to_name.restype = ctypes.c_char_p
    lib.pcap_datalink_val_to_name.argtypes = [ctypes.c_int]
    return lib


def libpcap():
    """The loaded libpcap (a test needing it skips, or fails under CI, when it is absent)."""
    lib = _lib()
    if lib is None:
        _missing("libpcap (apt-get install libpcap0.8)")
    return lib


def version():
    return libpcap().pcap_lib_version().decode()


def _open(path, nano=True):
    lib = libpcap()
    err = ctypes.create_string_buffer(512)
    p = lib.pcap_open_offline_with_tstamp_precision(str(path).encode(), 1 if nano else 0, err)
    if not p:
        raise RefError(err.value.decode(errors="replace"))
    return p


def _prog_tuples(prog):
    insns = ctypes.cast(prog.bf_insns, ctypes.POINTER(_Insn))
    return [(insns[i].code, insns[i].jt, insns[i].jf, insns[i].k) for i in range(prog.bf_len)]


@functools.lru_cache(maxsize=4096)
def compile(expr, dlt=1, optimize=False, snaplen=262144):
    """libpcap's bytecode for expr on a dead handle (as `tcpdump -y DLT -d`), as a tuple of tuples."""
    lib = libpcap()
    return _compile_on(lib.pcap_open_dead_with_tstamp_precision(int(dlt), int(snaplen), 0), expr, optimize)


def _compile_on(p, expr, optimize):
    """pcap_compile on handle p (closed afterwards), netmask unknown; RefError on refusal."""
    lib = libpcap()
    try:
        prog = _Prog()
        if lib.pcap_compile(p, ctypes.byref(prog), expr.encode(), 1 if optimize else 0, 0xFFFFFFFF) != 0:
            raise RefError(lib.pcap_geterr(p).decode(errors="replace"))
        out = tuple(_prog_tuples(prog))
        lib.pcap_freecode(ctypes.byref(prog))
        return out
    finally:
        lib.pcap_close(p)


def compile_for_capture(path, expr, optimize=False):
    """libpcap's bytecode for expr on the capture's own savefile handle (as `tcpdump -r`)."""
    return _compile_on(_open(path), expr, optimize)


@functools.lru_cache(maxsize=1024)
def read_capture(path):
    """(dlt, snaplen, [(bytes, wirelen, ts_ns)], error) as libpcap reads the file (nanosecond
    precision); error is libpcap's message when it stopped on a damaged record, else None.
    A pcap file's times are read as libpcap 1.11 reads them, the seconds and fraction unsigned
    (the pcap specification; the README's "Differences from tcpdump"): 1.10.3 reads them signed
    and keeps every bit of both, so its tv_sec and tv_usec give the unsigned ones exactly."""
    lib = libpcap()
    with open(path, "rb") as f:
        magic = f.read(4)
    # a pcap file: ns per unit of its fraction (None: pcapng)
    scale = next((unit for order in "<>" for value, unit in ((0xA1B23C4D, 1), (0xA1B2C3D4, 1000), (0xA1B2CD34, 1000))
                  if magic == struct.pack(order + "I", value)), None)
    p = _open(path)
    try:
        dlt, snap = lib.pcap_datalink(p), lib.pcap_snapshot(p)
        hdr, data, pkts = ctypes.POINTER(_Hdr)(), ctypes.c_void_p(), []
        while True:
            r = lib.pcap_next_ex(p, ctypes.byref(hdr), ctypes.byref(data))
            if r != 1:
                break
            h = hdr.contents
            sec, frac = h.tv_sec, h.tv_usec
            if scale is not None:
                sec, frac = sec & 0xFFFFFFFF, (frac // scale & 0xFFFFFFFF) * scale
            pkts.append((ctypes.string_at(data, h.caplen), h.len, sec * 1_000_000_000 + frac))
        err = lib.pcap_geterr(p).decode(errors="replace") if r == -1 else None
        return dlt, snap, pkts, err
    finally:
        lib.pcap_close(p)


def bpf_filter(insns, packet, wirelen=None):
    """libpcap's userland interpreter on one packet."""
    lib = libpcap()
    arr = (_Insn * len(insns))(*[_Insn(*t) for t in insns])
    return lib.bpf_filter(ctypes.addressof(arr), packet, len(packet) if wirelen is None else wirelen, len(packet))


def dlt_name(dlt):
    """libpcap's name for a DLT number ("EN10MB"), or the number as text."""
    name = libpcap().pcap_datalink_val_to_name(dlt)
    return name.decode() if name else str(dlt)


def tcpdump():
    """Path of the tcpdump binary."""
    path = shutil.which("tcpdump") or ("/usr/bin/tcpdump" if os.path.exists("/usr/bin/tcpdump") else None)
    if path is None:
        _missing("tcpdump (apt-get install tcpdump)")
    return path


def editcap():
    """Path of Wireshark's editcap (Debian's wireshark-common)."""
    path = shutil.which("editcap")
    if path is None:
        _missing("editcap (apt-get install wireshark-common)")
    return path


def mergecap():
    """Path of Wireshark's mergecap (Debian's wireshark-common)."""
    path = shutil.which("mergecap")
    if path is None:
        _missing("mergecap (apt-get install wireshark-common)")
    return path


def tcpdump_dump(expr, dlt="EN10MB", fmt="d", optimize=False):
    """`tcpdump -y DLT [-O] -d/-dd/-ddd EXPR` output text (tcpdump's -O turns optimization OFF)."""
    cmd = [tcpdump(), "-y", dlt, "-" + fmt]
    if not optimize:
        cmd.append("-O")
    cmd += ["--", expr] if expr else []
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RefError(r.stderr.strip())
    return r.stdout


# ----------------------------------------------------------------------------- the corpus

def corpus_expected(kind="en10mb"):
    """[{dlt, expr, opt, unopt}] from the corpus's expected/ (libpcap 1.10.3's bytecode)."""
    path = corpus_file(f"expected/{kind}_libpcap-1.10.3.jsonl")
    return [json.loads(l) for l in path.open() if l.strip()]


def corpus_lines(rel):
    """The non-blank lines of corpus file `rel`, stripped."""
    return [l.strip() for l in corpus_file(rel).open() if l.strip()]


def corpus_expressions():
    """{DLT name: [expressions]} for every corpus expression file."""
    exprs = {"EN10MB": corpus_lines("expressions/en10mb.txt")}
    for line in corpus_file("expressions/other_dlt.tsv").open():
        if line.strip():
            dlt, e = line.rstrip("\n").split("\t", 1)
            exprs.setdefault(dlt, []).append(e)
    return exprs


def corpus_pcaps():
    """[dict] rows of the corpus's pcaps.tsv, with 'file' the Path of the capture."""
    lines = corpus_file("pcaps.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        row = dict(zip(head, line.split("\t")))
        row["file"] = Path(CORPUS / "pcaps" / row["copied_as"])
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- libpcap in bulk

@functools.lru_cache(maxsize=1)
def _batch_lib():
    import tempfile
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not Path("/usr/include/pcap/pcap.h").exists():
        _missing("a C compiler and libpcap headers (apt-get install gcc libpcap0.8-dev)")
    out = Path(tempfile.mkdtemp(prefix="pfilter-ref-")) / "libpcap_batch.so"
    src = Path(__file__).resolve().parent / "native" / "libpcap_batch.c"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(src), "-lpcap"], check=True)
    lib = ctypes.CDLL(str(out))
    lib.libpcap_run_batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                      ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    return lib


def bpf_filter_batch(insns, batch):
    """libpcap's bpf_filter() on every packet of a pfilter PacketBatch: uint32 array."""
    import numpy as np
    lib = _batch_lib()
    arr = np.array([tuple(t) for t in insns], dtype=[("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])
    out = np.zeros(len(batch), dtype=np.uint32)
    ptr = lambda a: a.ctypes.data if len(a) else None
    lib.libpcap_run_batch(arr.ctypes.data, ptr(batch.data), ptr(batch.offsets), ptr(batch.caplen),
                          ptr(batch.wirelen), len(batch), out.ctypes.data)
    return out


def readable_captures():
    """(pcaps.tsv row, dlt, snaplen, packets) of every corpus capture libpcap reads, packets
    as read_capture gives them."""
    for row in corpus_pcaps():
        try:
            dlt, snap, pkts, _ = read_capture(str(row["file"]))
        except RefError:
            continue
        yield row, dlt, snap, pkts


def corpus_batches():
    """{(dlt, snaplen): PacketBatch} of every corpus capture libpcap reads, packets as libpcap
    delivers them, grouped by link type and snapshot length."""
    import pfilter
    groups = {}
    for _row, dlt, snap, pkts in readable_captures():
        groups.setdefault((dlt, snap), []).extend(pkts)
    return {key: pfilter.PacketBatch.from_packets([p for p, _, _ in pkts], wirelens=[w for _, w, _ in pkts], linktype=key[0])
            for key, pkts in groups.items() if pkts}


def corpus_pools():
    """{DLT number: PacketBatch of every corpus packet of that link type}, all snapshot lengths
    together."""
    import pfilter
    groups = {}
    for (dlt, _snap), b in corpus_batches().items():
        groups.setdefault(dlt, []).extend(b.packet(i) for i in range(len(b)))
    return {dlt: pfilter.PacketBatch.from_packets(p, linktype=dlt) for dlt, p in groups.items()}


def corpus_dlts_with_captures():
    """The corpus's expression link types (names) that some corpus capture has."""
    from pfilter.linktypes import linktype_number
    have = {int(row["linktype"]) for row in corpus_pcaps() if row.get("linktype", "").isdigit()}
    return sorted(d for d in corpus_expressions() if linktype_number(d) in have)


def distinct_paths(prog, batch):
    """(indices of the first packet of each distinct (verdict, path length) of pfilter Program
    `prog` over `batch`, in packet order; the return values): a sample of the paths it takes."""
    import numpy as np
    out = prog.run_batch(batch)
    key = prog.count_steps(batch).astype(np.int64) * 2 + (out != 0)
    _, first = np.unique(key, return_index=True)
    first.sort()
    return [int(i) for i in first], out


@functools.lru_cache(maxsize=None)
def _empty_savefile(dlt, snaplen, big_endian=False):
    """An empty pcap file of the given link type: compiling on its handle gives libpcap's
    savefile semantics (as `tcpdump -r`), which differ from a dead handle's for a few link types."""
    import struct
    import tempfile
    linktype = {12: 101, 15: 102, 16: 103, 11: 100, 19: 106}.get(dlt, dlt)
    fmt = ">IHHiIII" if big_endian else "<IHHiIII"
    path = Path(tempfile.mkdtemp(prefix="pfilter-ref-")) / f"empty-{dlt}-{snaplen}.pcap"
    path.write_bytes(struct.pack(fmt, 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
    return path


@functools.lru_cache(maxsize=8192)
def compile_savefile(expr, dlt=1, optimize=False, snaplen=262144, big_endian=False):
    """libpcap's bytecode for expr as `tcpdump -r FILE` compiles it for a capture of link type dlt."""
    return compile_for_capture(_empty_savefile(dlt, snaplen, big_endian), expr, optimize)
