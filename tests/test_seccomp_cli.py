"""`pfilter seccomp disasm|emu|asm|dump`: output equal to the API's (itself checked against
libseccomp's tools in test_seccomp_libseccomp.py), emu's actions, asm's raw round trip written
atomically and never over its input, dump of a running process's filter, and one-line errors."""
import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pfilter.seccomp as S

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def pf(*args, input=None):
    return subprocess.run([sys.executable, "-m", "pfilter", "seccomp", *map(str, args)], cwd=ROOT,
                          capture_output=True, input=input)


@pytest.fixture
def policy_file(tmp_path):
    p = S.Policy(default=S.ALLOW, arches=["x86_64", "aarch64"])
    p.add(S.ERRNO(7), "write", S.Arg(0, ">", 0x100000002)).add(S.LOG, "close", S.Arg(0, "<=", 5))
    path = tmp_path / "f.bpf"
    path.write_bytes(p.export_bpf())
    return path


def test_disasm_prints_the_apis_text_in_both_styles(policy_file):
    prog = S.load(policy_file)
    r = pf("disasm", policy_file)
    assert r.returncode == 0 and r.stdout.decode() == S.disasm(prog)
    r = pf("disasm", "-", "--style", "libseccomp", input=policy_file.read_bytes())
    assert r.returncode == 0 and r.stdout.decode() == S.disasm(prog, style="libseccomp")


@pytest.mark.parametrize("call, arch, expected", [
    (["write", "0x100000003"], "x86_64", "ERRNO(7)"),
    (["write", "0x100000002"], "x86_64", "ALLOW"),
    (["close", "5"], "aarch64", "LOG"),
    (["close", "-1"], "aarch64", "ALLOW"),
    (["57"], "aarch64", "LOG"),
    (["read"], "i386", "KILL"),
])
def test_emu_prints_the_action_for_one_call(policy_file, call, arch, expected):
    r = pf("emu", policy_file, *call, "--arch", arch)
    assert (r.returncode, r.stdout.decode().strip()) == (0, expected)


def test_asm_writes_the_raw_filter_back_atomically(policy_file, tmp_path):
    text = tmp_path / "f.txt"
    text.write_text(pf("disasm", policy_file).stdout.decode())
    out = tmp_path / "g.bpf"
    out.write_bytes(b"old")
    r = pf("asm", text, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == policy_file.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    r = pf("asm", text, "-o", text)
    assert r.returncode == 1 and b"replace the input" in r.stderr
    assert text.read_text().startswith("0000:")


@pytest.mark.parametrize("args, status, what", [
    (["disasm", "/nonexistent/f.bpf"], 1, b"No such file"),
    (["emu", "F"], 2, b"needs a system call"),
    (["emu", "F", "no_such_call"], 1, b"unknown system call"),
    (["emu", "F", "read", "--arch", "vax"], 1, b"unknown architecture"),
    (["frob", "F"], 2, b"invalid choice"),
    (["dump", "abc"], 2, b"process id"),
    (["disasm", "F", "extra"], 2, b"one argument"),
    (["asm", "F", "-o", "G"], 1, b"not UTF-8"),
])
def test_errors_are_one_line_with_the_exit_status(policy_file, tmp_path, args, status, what):
    args = [str(policy_file) if a == "F" else str(tmp_path / "g") if a == "G" else a for a in args]
    r = pf(*args)
    assert r.returncode == status
    assert what in r.stderr and r.stderr.count(b"\n") <= 2 and b"Traceback" not in r.stderr


def test_a_program_the_kernel_would_refuse_is_one_line(tmp_path):
    bad = tmp_path / "bad.bpf"
    bad.write_bytes(bytes([0x28, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0xFF, 0x7F]))
    r = pf("disasm", bad)
    assert r.returncode == 1 and b"instruction 0" in r.stderr and r.stderr.count(b"\n") == 1


def test_dump_shows_a_running_process_filter(policy_file):
    if not hasattr(os, "fork") or os.uname().machine != "x86_64":
        pytest.skip("the dump test runs on x86_64 Linux")
    raw = policy_file.read_bytes()
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            libc = ctypes.CDLL(None, use_errno=True)

            class Fprog(ctypes.Structure):
                _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
            buf = ctypes.create_string_buffer(raw, len(raw))
            libc.prctl(38, 1, 0, 0, 0)
            ok = libc.syscall(317, 1, 0, ctypes.byref(Fprog(len(raw) // 8, ctypes.addressof(buf)))) == 0
            os.write(ready_w, b"1" if ok else b"0")
            os.read(r, 1)          # wait until the parent is done
        finally:
            os._exit(0)
    os.close(r)
    try:
        assert os.read(ready_r, 1) == b"1", "the child could not install the filter"
        res = pf("dump", pid)
        if res.returncode != 0 and not IN_CI and b"not permitted" in res.stderr:
            pytest.skip(f"ptrace not permitted here: {res.stderr.decode().strip()}")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.decode().splitlines(keepends=True)
        assert lines[0].startswith("# filter 0 of 1")
        assert "".join(lines[1:]) == S.disasm(S.load(raw))
    finally:
        os.close(w)
        os.waitpid(pid, 0)
        os.close(ready_r)
        os.close(ready_w)
