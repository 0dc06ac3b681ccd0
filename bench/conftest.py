"""Fixtures shared by every benchmark in bench/: the generated captures, the 1M-packet batch,
libpcap's compiled programs, the C baseline around libpcap's bpf_filter(), the standard
expressions, and the result tables printed at the end of the run.

Imports pfilter's public API (Program, PacketBatch, open), scripts/gen_capture.py (loaded by
path), numpy and pytest; libpcap through ctypes and a C compiler at bench time. When libpcap or
`cc` is missing a benchmark skips on a developer machine and FAILS when CI=true.

Environment: PFILTER_BENCH_CACHE (where generated captures are kept, default
~/.cache/pfilter-bench), PFILTER_BENCH_PACKETS (size of `big_capture`, default 1000000),
PFILTER_BENCH_ROUNDS (rounds per benchmark, default 5), PFILTER_BENCH_READER=numpy (load
`bench_batch` without pfilter.open).
"""
import ctypes
import ctypes.util
import datetime
import functools
import os
import platform
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# the benchmarks share the tests' reference helpers (libpcap, tcpdump, the corpus: reference.CORPUS)
sys.path.insert(0, str(ROOT / "tests"))
import reference  # noqa: E402

BASELINE_SOURCE = ROOT / "bench" / "baseline" / "bpf_loop.c"
RESULTS_DIR = ROOT / "bench" / "results"
IN_CI = os.environ.get("CI", "").lower() == "true"

SEED = 1
BIG_PACKETS = int(os.environ.get("PFILTER_BENCH_PACKETS", "1000000"))
HUGE_PACKETS = 2_000_000
ROUNDS = int(os.environ.get("PFILTER_BENCH_ROUNDS", "5"))
DLT_EN10MB = 1
SNAPLEN = 262144

# Ten hosts the generator uses (busy and quiet ones) and ten it never uses, so the filter
# matches some packets and walks the whole chain of tests for most of them.
TWENTY_HOSTS = " or ".join(f"host {h}" for h in (
    "10.0.0.7", "10.0.0.42", "10.0.1.13", "10.0.1.99", "192.0.2.17",
    "192.0.2.38", "198.51.100.5", "198.51.100.33", "203.0.113.9", "203.0.113.20",
    "172.16.0.1", "172.16.5.4", "172.31.255.1", "100.64.0.1", "10.9.9.9",
    "192.168.1.1", "192.168.1.254", "8.8.8.8", "1.1.1.1", "9.9.9.9"))

# The five benchmark expressions, in this order everywhere.
STANDARD_EXPRESSIONS = [
    "ip and tcp port 80",
    "tcp",
    "udp port 53 or icmp",
    "vlan and ip",
    TWENTY_HOSTS,
]


def expression_id(expr):
    """A short pytest id for an expression (the 20-host filter would make an unreadable one)."""
    return "20-host-or" if expr == TWENTY_HOSTS else expr.replace(" ", "_")


def require(ok, what):
    """Skip (developer machine) or fail (CI=true) when a benchmark's prerequisite is missing."""
    if ok:
        return
    message = f"benchmark prerequisite missing: {what}"
    if IN_CI:
        pytest.fail(message + " (CI=true: install it)")
    pytest.skip(message)


def gen_capture():
    """scripts/gen_capture.py as a module."""
    return reference.load_by_path("pfilter_gen_capture", ROOT / "scripts" / "gen_capture.py")


# ----------------------------------------------------------------------------- batches

#: "in cache": the first HOT_PACKETS packets, HOT_LOOPS times over in shuffled orders
HOT_PACKETS = 4096
HOT_LOOPS = 64


def head_batch(batch, n):
    """The first n packets of batch, copied into a buffer of their own."""
    from pfilter import PacketBatch
    return PacketBatch.from_packets([batch.packet(i) for i in range(n)], wirelens=batch.wirelen[:n],
                                    linktype=batch.linktype, timestamps=batch.timestamps[:n])


def hot_batch_of(batch, packets=HOT_PACKETS, loops=HOT_LOOPS):
    """`loops` random permutations of the first `packets` packets of batch over one shared buffer
    (a few MB that stay in the CPU caches): interpreter speed, not memory bandwidth."""
    from pfilter import PacketBatch
    head = head_batch(batch, packets)
    rng = np.random.default_rng(0)
    order = np.concatenate([rng.permutation(packets) for _ in range(loops)])
    return PacketBatch(head.data, head.offsets[order], head.caplen[order], head.wirelen[order],
                       head.timestamps[order], head.linktype)


# ----------------------------------------------------------------------------- commands

GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def command_env():
    """The environment of a timed pfilter command: this checkout first on PYTHONPATH."""
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def pfilter_launcher():
    """The `pfilter` command of this interpreter (its console script, else python -m pfilter)."""
    script = Path(sys.executable).with_name("pfilter")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pfilter"]


def tcpdump_path():
    path = shutil.which("tcpdump")
    require(path is not None, "tcpdump (apt-get install tcpdump)")
    return path


# How much free memory warm_free_memory makes ready, as a multiple of the bytes the timed
# command writes: twice the output's size left half the slow runs (measured: 2 GB before a
# 1.4 GB output, 0.94-1.10 s against 0.54 s; 4 GB, 0.54-0.57 s every time).
WARM_FACTOR = 3
WARM_MIN = 256 << 20


def _available_memory():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def warm_free_memory(writes):
    """Touch and free WARM_FACTOR x `writes` bytes (at least WARM_MIN) of anonymous memory, right
    before a timed command that writes about `writes` bytes.

    Why: a virtual machine may give the free memory of its guest back to its host (Linux's free
    page reporting: "Free page reporting enabled" in the kernel log of the Firecracker VMs these
    benchmarks run on). A page the host took back costs a host fault when the guest next writes
    it, and an output file's page cache comes from the guest's free memory. Measured with perf:
    the same `-w tcp` pass on 2 GB spent 6,892 samples copying into the page cache against 966,
    and 2.0-2.2 s against 0.55-0.6 s, when it started 4 s after the last output was freed instead
    of at once; tcpdump likewise (2.9-3.6 s against 1.9-2.0 s). Which runs paid this depended on
    the seconds between one run's end and the next run's start, so tables swung between the two
    modes from one run to the next. Touching memory first brings pages back from the host, and
    freeing it leaves them ready for the command: every command timed (pfilter's, tcpdump's, the
    Dask workers') starts on memory the guest holds. On a machine without free page reporting
    this costs the touch and changes nothing."""
    size = max(WARM_MIN, WARM_FACTOR * int(writes))
    size = min(size, _available_memory() // 2)
    if size <= 0:
        return
    import mmap
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0))
    if not getattr(mmap, "MAP_POPULATE", 0):
        for at in range(0, size, mmap.PAGESIZE):
            m[at] = 0
    m.close()


# The tables of commands that write say so once, in these words.
READY_NOTE = ("Before each timed command that writes, its previous output is removed, the page cache written back "
              "and free memory warmed for what it writes (bench/conftest.py, before_timed; warm_free_memory says why: "
              "the host of a virtual machine may take the guest's free memory back).")


def before_timed(out=None, writes=0):
    """Ready the machine for a timed command that writes about `writes` bytes (its previous output
    `out`, when it exists, tells the size): that output removed, dirty pages written back
    (os.sync), free memory warmed (warm_free_memory). Every timed command that writes calls it."""
    if out is not None and os.path.exists(out):
        writes = max(writes, os.path.getsize(out))
        os.unlink(out)
    os.sync()
    if writes:
        warm_free_memory(writes)


def run_command(cmd, env=None, tmp=None, out=None):
    """(wall seconds, CPU seconds, peak RSS in MB) of one command; fails on a non-zero exit.

    The peak comes from GNU time when installed: a child forked straight from pytest would
    report pytest's own high-water mark (Linux keeps it across exec). Before the clock starts,
    the previous run's output `out` is removed, dirty pages are written back (os.sync) and free
    memory is warmed for what the command writes (before_timed), so neither command pays for the
    other's output (freeing it, or the kernel flushing it to disk in the middle of the run: on a
    2-core machine that alone moved ratios by 0.1) nor for memory its host took back."""
    before_timed(out)
    report = None
    if GNU_TIME and tmp is not None:
        report = tmp / "rss.txt"
        cmd = [GNU_TIME, "-f", "%M", "-o", str(report)] + cmd
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    assert os.waitstatus_to_exitcode(status) == 0, f"{cmd[0]} failed: {err.strip()}"
    peak = usage.ru_maxrss / 1024.0
    if report is not None:
        peak = int(report.read_text().split()[-1]) / 1024.0
    return wall, usage.ru_utime + usage.ru_stime, peak


# ----------------------------------------------------------------------------- captures

def cache_dir():
    path = Path(os.environ.get("PFILTER_BENCH_CACHE") or Path.home() / ".cache" / "pfilter-bench")
    path.mkdir(parents=True, exist_ok=True)
    return path


_SETTLED = set()


def settled(path):
    """path, its pages in the page cache as reading a file puts them there: written back, dropped
    (POSIX_FADV_DONTNEED) and read once, sequentially, at the first call of the session. How the
    pages got there changes what every command pays to read them: a file just written sits in the
    cache in the write's small folios, one read back from the disk in readahead's large ones
    (ext4 since Linux 6.16), and mapping small folios costs several times more than large ones,
    for floor.c as for pfilter (latest_scale.md, floor; a file being filtered has been read
    from a disk)."""
    key = os.path.realpath(path)
    if key not in _SETTLED:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            while os.read(fd, 1 << 22):
                pass
        finally:
            os.close(fd)
        _SETTLED.add(key)
    return path


def generated_capture(packets, seed=SEED, **options):
    """Path of a generated capture, made once and kept in the cache directory. The name carries
    the generator version, seed, size and options, so a changed generator makes a new file; it is
    written under a temporary name and renamed, so a crashed or concurrent run never leaves half a file."""
    gen = gen_capture()
    flags = "".join(f"-{k}" for k, v in sorted(options.items()) if v)
    suffix = ".pcapng" if options.get("pcapng") else ".pcap"
    path = cache_dir() / f"gen-v{gen.GENERATOR_VERSION}-seed{seed}-{packets}{flags}{suffix}"
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            gen.generate(tmp, packets, seed=seed, **options)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path


@pytest.fixture(scope="session")
def big_capture():
    """A generated 1M-packet Ethernet pcap (about 0.5 GB), cached across runs."""
    return settled(generated_capture(BIG_PACKETS))


@pytest.fixture(scope="session")
def huge_capture():
    """A generated 2M-packet Ethernet pcap (about 1 GB) for the file-filtering benchmarks."""
    return settled(generated_capture(HUGE_PACKETS))


def read_pcap_numpy(path):
    """A classic pcap file as one PacketBatch without pfilter's reader: the whole file in one
    uint8 array, the packets addressed in place (offsets skip the record headers)."""
    from pfilter import PacketBatch
    raw = np.fromfile(path, dtype=np.uint8)
    buf = raw.data.cast("B")
    magic = struct.unpack_from("<I", buf, 0)[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        order = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        order = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack_from(order + "I", buf, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    offsets, caplen, wirelen, seconds, fractions = [], [], [], [], []
    pos, size = 24, len(raw)
    while pos + 16 <= size:
        sec, frac, incl, orig = record.unpack_from(buf, pos)
        if pos + 16 + incl > size:
            break
        offsets.append(pos + 16)
        caplen.append(incl)
        wirelen.append(orig)
        seconds.append(sec)
        fractions.append(frac)
        pos += 16 + incl
    ts = np.asarray(seconds, dtype=np.int64) * 10**9 + np.asarray(fractions, dtype=np.int64) * (1 if nano else 1000)
    return PacketBatch(raw, offsets, caplen, wirelen, timestamps=ts, linktype=linktype)


def concat_batches(batches):
    """One PacketBatch holding every packet of `batches` (copied, so it outlives their source)."""
    from pfilter import PacketBatch
    batches = list(batches)
    datas, offsets, base = [], [], 0
    for b in batches:
        datas.append(np.asarray(b.data))
        offsets.append(b.offsets + base)
        base += len(b.data)
    cat = lambda arrays, dtype: np.concatenate(arrays) if arrays else np.zeros(0, dtype)
    return PacketBatch(cat(datas, np.uint8), cat(offsets, np.int64), cat([b.caplen for b in batches], np.uint32),
                       cat([b.wirelen for b in batches], np.uint32),
                       timestamps=cat([b.timestamps for b in batches], np.int64),
                       linktype=batches[0].linktype if batches else DLT_EN10MB)


def load_batch(path):
    """(PacketBatch of every packet in `path`, name of the reader used): pfilter.open when it
    exists, else read_pcap_numpy."""
    import pfilter
    if os.environ.get("PFILTER_BENCH_READER") != "numpy":
        try:
            with pfilter.open(path) as cap:
                return concat_batches(cap), "pfilter.open"
        except ImportError:
            pass
    return read_pcap_numpy(path), "numpy"


BATCH_INFO = {}    # "reader": which reader loaded bench_batch


@pytest.fixture(scope="session")
def bench_batch(big_capture):
    """The whole 1M-packet capture as a single PacketBatch."""
    batch, reader = load_batch(big_capture)
    assert len(batch) == BIG_PACKETS, f"{reader} read {len(batch)} packets of {BIG_PACKETS}"
    BATCH_INFO["reader"] = reader
    return batch


# ----------------------------------------------------------------------------- libpcap

class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class _BpfInsn(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint32)]


@functools.lru_cache(maxsize=None)
def _libpcap():
    for name in (ctypes.util.find_library("pcap"), "libpcap.so.0.8", "libpcap.so"):
        if name:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
    else:
        return None
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                 ctypes.c_int, ctypes.c_uint32]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    lib.pcap_lib_version.restype = ctypes.c_char_p
    return lib


@functools.lru_cache(maxsize=None)
def compile_with_libpcap(expr, dlt=DLT_EN10MB, snaplen=SNAPLEN, optimize=True):
    """libpcap's bytecode for expr as a tuple of (code, jt, jf, k); ValueError with libpcap's message."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(dlt, snaplen)
    try:
        prog = _BpfProgram()
        if lib.pcap_compile(handle, ctypes.byref(prog), expr.encode(), int(optimize), 0xFFFFFFFF) != 0:
            raise ValueError(lib.pcap_geterr(handle).decode(errors="replace"))
        insns = ctypes.cast(prog.bf_insns, ctypes.POINTER(_BpfInsn))
        out = tuple((insns[i].code, insns[i].jt, insns[i].jf, insns[i].k) for i in range(prog.bf_len))
        lib.pcap_freecode(ctypes.byref(prog))
        return out
    finally:
        lib.pcap_close(handle)


@pytest.fixture(scope="session")
def libpcap_program():
    """libpcap_program(expr) -> libpcap's optimized bytecode (EN10MB, snaplen 262144) as tuples."""
    require(_libpcap() is not None, "libpcap (apt-get install libpcap0.8)")
    return compile_with_libpcap


def libpcap_version():
    lib = _libpcap()
    return lib.pcap_lib_version().decode() if lib is not None else "libpcap missing"


class CBaseline:
    """bench/baseline/bpf_loop.c built twice: the executable (`exe`, self-timed over a pcap file)
    and a shared library whose bpf_loop_run() runs libpcap's bpf_filter() over a PacketBatch's
    arrays in one call."""

    def __init__(self, exe, lib_path):
        self.exe = exe
        self.lib = ctypes.CDLL(str(lib_path))
        p = ctypes.c_void_p
        self.lib.bpf_loop_run.argtypes = [p, p, p, p, p, ctypes.c_int64, p]
        self.lib.bpf_loop_run.restype = ctypes.c_int64

    @staticmethod
    def insn_array(tuples):
        """A program as a numpy array laid out like libpcap's struct bpf_insn."""
        return np.array(list(tuples), dtype=[("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])

    def run(self, insns, batch, out):
        """bpf_filter() over every packet of batch, verdicts into out (uint32); returns matches."""
        return self.lib.bpf_loop_run(insns.ctypes.data, batch.data.ctypes.data, batch.offsets.ctypes.data,
                                     batch.caplen.ctypes.data, batch.wirelen.ctypes.data, len(batch),
                                     out.ctypes.data)

    def run_file(self, capture, tuples, reps=ROUNDS):
        """The executable over a pcap file: its JSON report (packets, matched, best_ns_per_packet...)."""
        import json
        text = f"{len(tuples)}\n" + "".join(f"{c} {jt} {jf} {k}\n" for c, jt, jf, k in tuples)
        done = subprocess.run([str(self.exe), "-n", str(reps), str(capture)], input=text,
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout)


@pytest.fixture(scope="session")
def c_baseline(tmp_path_factory):
    """The C baseline, compiled now with `cc -O2 ... -lpcap` into a temporary directory."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "a C compiler (apt-get install gcc)")
    require(_libpcap() is not None, "libpcap (apt-get install libpcap0.8)")
    out = tmp_path_factory.mktemp("bpf_loop")
    exe, lib = out / "bpf_loop", out / "libbpf_loop.so"
    for cmd in ([cc, "-O2", "-o", str(exe), str(BASELINE_SOURCE), "-lpcap"],
                [cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(BASELINE_SOURCE), "-lpcap"]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        require(done.returncode == 0, f"building the C baseline failed (libpcap-dev?): {done.stderr.strip()}")
    return CBaseline(exe, lib)


# ----------------------------------------------------------------------------- reporting

def record_rate(benchmark, packets, baseline_ns=None, **extra):
    """Store ns/packet (from the fastest round, and the mean) in the benchmark's extra_info, plus
    the ratio to `baseline_ns` when given, plus any `extra`; returns the fastest ns/packet (None
    when benchmarking is disabled)."""
    benchmark.extra_info.update(extra)
    benchmark.extra_info["packets"] = packets
    stats = getattr(benchmark, "stats", None)
    if not stats:
        return None
    best = stats["min"] * 1e9 / packets
    benchmark.extra_info["ns_per_packet"] = round(best, 3)
    benchmark.extra_info["mean_ns_per_packet"] = round(stats["mean"] * 1e9 / packets, 3)
    if baseline_ns:
        benchmark.extra_info["baseline_ns_per_packet"] = round(baseline_ns, 3)
        benchmark.extra_info["ratio"] = round(best / baseline_ns, 3)
    return best


def interleaved_best(functions, rounds=ROUNDS, rotate=False):
    """Fastest time (seconds) of each function, timed in alternation round by round, so that a
    load spike on a shared machine hits every contender alike; a ratio of two of these is steadier
    than a ratio of two benchmarks run one after the other. `rotate`: each round starts one
    contender later, so none always runs right after the same other one (streaming 1M packets,
    the pass right after the VM's ran up to 20% slower, whatever ran it)."""
    import time
    best = [float("inf")] * len(functions)
    for r in range(rounds):
        for k in range(len(functions)):
            i = (k + r) % len(functions) if rotate else k
            fn = functions[i]
            started = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


class ResultTable:
    """Rows gathered during the run, printed as a markdown table at the end and written to
    bench/results/latest_<name>.md."""

    def __init__(self, name, title, columns, notes=()):
        self.name, self.title, self.columns, self.notes = name, title, list(columns), list(notes)
        self.rows = {}

    def add(self, key, **cells):
        """Fill (or complete) the row `key`; later cells for the same key merge into it."""
        self.rows.setdefault(key, {}).update(cells)

    def markdown(self):
        def fmt(v):
            if v is None:
                return "-"
            if isinstance(v, float):
                return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
            return str(v).replace("|", "\\|")
        lines = [f"## {self.title}", "", *self.notes, "" if self.notes else None,
                 "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines = [line for line in lines if line is not None]
        for row in self.rows.values():
            lines.append("| " + " | ".join(fmt(row.get(c)) for c in self.columns) + " |")
        return "\n".join(lines) + "\n"


_TABLES = {}


def result_table(name, title, columns, notes=()):
    """The run's ResultTable called `name` (created on first use)."""
    if name not in _TABLES:
        _TABLES[name] = ResultTable(name, title, columns, notes)
    return _TABLES[name]


def machine_note():
    reader = f", batch read by {BATCH_INFO['reader']}" if "reader" in BATCH_INFO else ""
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python {platform.python_version()}, "
            f"numpy {np.__version__}, {libpcap_version()}{reader}")


def pytest_terminal_summary(terminalreporter):
    tables = [t for t in _TABLES.values() if t.rows]
    if not tables:
        return
    RESULTS_DIR.mkdir(exist_ok=True)
    for table in tables:
        text = table.markdown() + f"\n_{machine_note()}_\n"
        (RESULTS_DIR / f"latest_{table.name}.md").write_text(text)
        terminalreporter.write_sep("=", f"pfilter bench: {table.name} (bench/results/latest_{table.name}.md)")
        terminalreporter.write(text)
