"""Throughput of pfilter.seccomp.run against libseccomp's own interpreter over the same 1M records.

Imports pfilter.seccomp, the helpers of bench/conftest.py and tests/seccomp_ref.py (loaded by
path: the reference tools' location, $PFILTER_REFERENCE, and python3-seccomp, which builds the
filters).

libseccomp's interpreter is `bpf_execute()` of its tools/scmp_bpf_sim.c, compiled (cc -O2, with its
util.c in the same translation unit so that its byte-order helpers can inline) into a small shared
library at bench time: its source is used as is, except that the call which prints the action and
exits (`end_action`) becomes `return k;`, so it can run in a C loop over a batch of records (one
ctypes call per batch, as bench/test_bench_vm.py does for libpcap). Both run each filter over the
same 1M struct seccomp_data records (a mix of allowed and refused system calls, random arguments,
1% of another architecture); their return values must agree record for record. The table gives
ns/record (fastest of the interleaved rounds) and the ratio pfilter / libseccomp (target <= 0.5).
"""
import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ROUNDS, interleaved_best, reference, require, result_table

import pfilter.seccomp as S

ROOT = Path(__file__).resolve().parents[1]
RECORDS = int(os.environ.get("PFILTER_BENCH_PACKETS", "1000000"))
TARGET = 0.5

ref = reference.load_by_path("seccomp_ref", ROOT / "tests" / "seccomp_ref.py")

# system calls a container runtime's default profile refuses (the rest of x86_64's are allowed)
REFUSED = {"acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module",
           "finit_module", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp",
           "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "move_pages",
           "nfsservctl", "open_by_handle_at", "perf_event_open", "personality", "pivot_root", "process_vm_readv",
           "process_vm_writev", "ptrace", "query_module", "quotactl", "reboot", "request_key", "set_mempolicy",
           "setns", "settimeofday", "stime", "swapon", "swapoff", "sysfs", "_sysctl", "umount2", "unshare",
           "uselib", "userfaultfd", "ustat", "vm86", "vm86old"}


def _x86_64_names():
    text = (ROOT / "pfilter" / "seccomp" / "syscalls" / "x86_64.tsv").read_text()
    return [line.split("\t")[0] for line in text.splitlines() if line and not line.startswith("#")]


def _specs():
    allowed = [n for n in _x86_64_names() if n not in REFUSED]
    return {
        "allow-list (x86_64, ~320 calls)": ref.spec("ERRNO(1)", ["x86_64"], *[("ALLOW", n, []) for n in allowed]),
        "argument rules (x86_64)": ref.spec(
            "ALLOW", ["x86_64"], ("ERRNO(1)", "write", [(0, "==", 1), (2, ">", 10)]),
            ("ERRNO(2)", "read", [(0, "<", 0xFFFFFFFF00000000)]), ("TRACE(9)", "mprotect", [(2, "&==", 4, 4)]),
            ("ERRNO(13)", "openat", [(2, "&==", 1, 3)]), ("LOG", "ioctl", [(1, "==", 0x5401)]),
            ("KILL_PROCESS", "ptrace", []), ("ERRNO(1)", "mount", []), ("ERRNO(1)", "kill", [(1, "!=", 0)])),
        "three arches (x86_64, x32, i386)": ref.spec(
            "ALLOW", ["x86_64", "x32", "i386"], ("ERRNO(1)", "ptrace", []), ("ERRNO(1)", "mount", []),
            ("ERRNO(3)", "close", [(0, "<", 3)]), ("ERRNO(4)", "write", [(0, ">", 2)]), ("LOG", "getpid", []),
            ("ERRNO(5)", "dup", [(0, ">=", 100)])),
    }


@pytest.fixture(scope="module")
def libseccomp_interpreter(tmp_path_factory):
    """ctypes function run(prog, n_insns, records, n, out) around scmp_bpf_sim.c's bpf_execute."""
    cc = shutil.which("cc") or shutil.which("gcc")
    require(cc is not None, "a C compiler (cc)")
    source = ref.TOOLS / "scmp_bpf_sim.c"
    require(source.exists(), f"{source} (set PFILTER_REFERENCE)")
    text = source.read_text()
    edits = [("static void bpf_execute(", "static uint32_t bpf_execute("),
             ("end_action(k, ip_c);", "return k;"),
             ("int main(int argc", "int scmp_bpf_sim_main(int argc")]
    for old, new in edits:
        assert text.count(old) == 1, f"scmp_bpf_sim.c changed: {old!r}"
        text = text.replace(old, new)
    text = '#include "util.c"\n' + text + r'''
void run_records(bpf_instr_raw *prog, size_t n_insns, const unsigned char *records, size_t n, uint32_t *out)
{
	struct bpf_program p = { n_insns, prog };
	size_t i;
	for (i = 0; i < n; i++)
		out[i] = bpf_execute(&p, (const struct seccomp_data *)(records + 64 * i));
}
'''
    d = tmp_path_factory.mktemp("libseccomp-sim")
    (d / "sim_lib.c").write_text(text)
    lib = d / "libsim.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", "-w", f"-I{ref.TOOLS}", "-o", str(lib), str(d / "sim_lib.c")],
                   check=True, capture_output=True)
    fn = ctypes.CDLL(str(lib)).run_records
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return fn


@pytest.fixture(scope="module")
def filters():
    specs = _specs()
    try:
        raw = ref.libseccomp_filters(list(specs.values()))
    except pytest.skip.Exception as e:
        require(False, str(e))
    return dict(zip(specs, raw))


@pytest.fixture(scope="module")
def records():
    """RECORDS struct seccomp_data: x86_64 calls (two thirds among the common ones), random
    arguments (half of them small), 1% from aarch64."""
    rnd = np.random.default_rng(17)
    names = _x86_64_names()
    nrs = np.array([S.syscall_number(n) for n in names], dtype=np.uint32)
    common = np.array([S.syscall_number(n) for n in ("read", "write", "close", "openat", "mmap", "mprotect",
                                                     "futex", "ioctl", "getpid", "kill", "dup", "ptrace")],
                      dtype=np.uint32)
    rec = np.zeros(RECORDS, dtype=S.SECCOMP_DATA)
    pick = rnd.random(RECORDS)
    nr = np.where(pick < 0.66, rnd.choice(common, RECORDS), rnd.choice(nrs, RECORDS))
    rec["nr"] = nr.view(np.int32)
    rec["arch"] = np.where(rnd.random(RECORDS) < 0.01, S.arch("aarch64").token, S.arch("x86_64").token)
    big = rnd.integers(0, 2 ** 63, size=(RECORDS, 6), dtype=np.uint64) * 2 + 1
    small = rnd.integers(0, 16, size=(RECORDS, 6), dtype=np.uint64)
    rec["args"] = np.where(rnd.random((RECORDS, 6)) < 0.5, small, big)
    return rec


TABLE = result_table(
    "seccomp", "seccomp: pfilter.seccomp.run vs libseccomp's bpf_execute (scmp_bpf_sim.c), same records, same run",
    ["filter", "insns", "actions", "pfilter ns/record", "libseccomp ns/record", "ratio"],
    notes=[f"ns/record: fastest of {ROUNDS} interleaved rounds over {RECORDS:,} struct seccomp_data records. "
           "`libseccomp`: bpf_execute() of libseccomp's tools/scmp_bpf_sim.c (cc -O2, its `end_action` exit "
           "replaced by `return k`) in a C loop over the same array, one ctypes call; filters built by "
           "python3-seccomp (libseccomp 2.5.4); ratio = pfilter / libseccomp (target <= 0.5)."])


@pytest.mark.parametrize("name", list(_specs()))
def test_bench_seccomp_run_vs_libseccomp(name, filters, records, libseccomp_interpreter):
    raw = filters[name]
    prog = S.load(raw)
    data = np.ascontiguousarray(records).view(np.uint8)
    insns = np.frombuffer(raw, dtype=np.uint8).copy()
    theirs = np.empty(len(records), dtype=np.uint32)

    def run_libseccomp():
        libseccomp_interpreter(insns.ctypes.data, len(raw) // 8, data.ctypes.data, len(records), theirs.ctypes.data)

    ours = S.run(prog, records)
    run_libseccomp()
    assert np.array_equal(ours, theirs), "pfilter and libseccomp disagree"
    t_ours, t_theirs = interleaved_best([lambda: S.run(prog, records), run_libseccomp])
    ns_ours, ns_theirs = t_ours * 1e9 / len(records), t_theirs * 1e9 / len(records)
    ratio = ns_ours / ns_theirs
    TABLE.add(name, **{"filter": name, "insns": len(prog), "actions": len(set(ours.tolist())),
                       "pfilter ns/record": round(ns_ours, 1), "libseccomp ns/record": round(ns_theirs, 1),
                       "ratio": round(ratio, 3)})
    assert ratio <= TARGET, f"{name}: pfilter {ns_ours:.1f} ns/record vs libseccomp {ns_theirs:.1f} (target {TARGET}x)"
