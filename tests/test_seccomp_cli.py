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


def pf(*args, input=None, cwd=None, memory=None):
    """`pfilter seccomp ARGS`; memory: an address-space limit (bytes) for the child."""
    def limit():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pfilter", "seccomp", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, input=input, env=env, timeout=120,
                          preexec_fn=limit if memory else None)


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
    assert r.returncode == 1 and b"refusing to overwrite the input" in r.stderr
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


@pytest.fixture
def asm_text(policy_file, tmp_path):
    """(the readable text of policy_file, the raw bytes asm makes of it)."""
    text = tmp_path / "f.txt"
    text.write_text(S.disasm(S.load(policy_file)))
    return text, policy_file.read_bytes()


def test_asm_writes_through_a_symbolic_link(asm_text, tmp_path):
    text, raw = asm_text
    target = tmp_path / "target.bpf"
    target.write_bytes(b"old")
    link = tmp_path / "link.bpf"
    link.symlink_to(target)
    r = pf("asm", text, "-o", link)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == raw


def test_asm_writes_through_a_link_to_dev_stdout(asm_text, tmp_path):
    """A link to /dev/stdout (itself a link to /proc/self/fd/1, here a pipe) is written through,
    not replaced by a regular file."""
    text, raw = asm_text
    link = tmp_path / "out"
    link.symlink_to("/dev/stdout")
    r = pf("asm", text, "-o", link)
    assert r.returncode == 0, r.stderr
    assert r.stdout == raw
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"


def test_asm_writes_into_a_fifo(asm_text, tmp_path):
    import stat
    text, raw = asm_text
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    try:
        r = pf("asm", text, "-o", fifo)
        is_fifo = stat.S_ISFIFO(os.stat(fifo).st_mode)
        out = reader.communicate(timeout=30 if is_fifo else 0.5)[0]
    except subprocess.TimeoutExpired:
        out = None
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert r.returncode == 0, r.stderr
    assert is_fifo, "the FIFO was replaced by a regular file"
    assert out == raw


def test_asm_dash_o_dash_is_standard_output(asm_text, tmp_path):
    text, raw = asm_text
    r = pf("asm", text, "-o", "-", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == raw
    assert not (tmp_path / "-").exists()


def test_asm_error_names_the_output_path(asm_text, tmp_path):
    text, _ = asm_text
    r = pf("asm", text, "-o", "/nonexistent/dir/x.bpf")
    assert r.returncode != 0
    assert r.stderr == b"pfilter seccomp: /nonexistent/dir/x.bpf: No such file or directory\n"


def test_emu_shows_the_data_of_any_action(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("A = nr\nif (A == 0) goto trap\nreturn ALLOW(7)\ntrap: return TRAP(2)\n")
    bpf = tmp_path / "t.bpf"
    assert pf("asm", text, "-o", bpf, "--arch", "x86_64").returncode == 0
    assert pf("emu", bpf, "0").stdout == b"TRAP(2)\n"
    assert pf("emu", bpf, "1").stdout == b"ALLOW(7)\n"
    assert pf("disasm", bpf).stdout.decode().splitlines()[2:] == ["0002: return ALLOW(7)", "0003: return TRAP(2)"]


@pytest.mark.parametrize("call", ["09", "1abc", "0x", "1e3"])
def test_emu_names_a_system_call_that_is_neither_name_nor_number(policy_file, call):
    r = pf("emu", policy_file, call)
    assert r.returncode == 2
    assert r.stderr == (f"pfilter seccomp: system call {call!r} is neither a name nor a number "
                        "(decimal or 0x hex)\n").encode()


def test_emu_takes_x32_names_as_disasm_prints_them(tmp_path):
    p = S.Policy(default=S.ALLOW, arches=["x86_64", "x32"])
    p.add(S.ERRNO(3), "read")
    bpf = tmp_path / "x32.bpf"
    bpf.write_bytes(p.export_bpf())
    assert "x32:read" in pf("disasm", bpf).stdout.decode()
    assert pf("emu", bpf, "x32:read", "--arch", "x86_64").stdout == b"ERRNO(3)\n"
    assert pf("emu", bpf, "0x40000000", "--arch", "x86_64").stdout == b"ERRNO(3)\n"
    assert pf("emu", bpf, "x32:read", "--arch", "x32").stdout == b"ERRNO(3)\n"
    r = pf("emu", bpf, "x32:read", "--arch", "aarch64")
    assert r.returncode == 1 and b"x32" in r.stderr and r.stderr.count(b"\n") == 1


@pytest.mark.parametrize("magic", ["a1b2c3d4", "d4c3b2a1", "a1b23c4d", "4d3cb2a1", "0a0d0d0a"])
def test_disasm_says_a_capture_file_is_not_a_filter(tmp_path, magic):
    f = tmp_path / "c.pcap"
    f.write_bytes(bytes.fromhex(magic) + bytes(20) + bytes(16) * 100)
    for cmd in (["disasm", f], ["emu", f, "read"]):
        r = pf(*cmd)
        assert r.returncode == 1
        assert r.stderr.startswith(f"pfilter seccomp: {f}: a pcap".encode())
        assert b"capture file, not a seccomp filter" in r.stderr and r.stderr.count(b"\n") == 1
    sample = ROOT / "data" / "sample.pcap"
    if sample.exists():
        assert b"capture file" in pf("disasm", sample).stderr


def test_disasm_refuses_an_endless_input_as_too_long():
    """/dev/zero is read up to one byte more than 4096 instructions, not until memory runs out
    (the child's address space is limited: it would fail, not take the machine's memory)."""
    r = pf("disasm", "/dev/zero", memory=4 << 30)
    assert r.returncode == 1
    assert r.stderr == (b"pfilter seccomp: /dev/zero: too long for a seccomp filter: more than 4096 "
                        b"instructions (32768 bytes)\n")
    r = pf("disasm", "-", input=bytes(4096 * 8 + 8))
    assert r.returncode == 1 and b"standard input: too long" in r.stderr
    assert pf("disasm", "-", input=bytes.fromhex("0600000000000000") * 4096).returncode == 0


def _child(strict):
    """A child blocked in read(2) on a pipe: plain, or in seccomp strict mode. Returns (pid, the
    pipe's write end); the child is ready when this returns."""
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            libc = ctypes.CDLL(None, use_errno=True)
            buf = ctypes.create_string_buffer(1)
            if strict and libc.prctl(22, 1, 0, 0, 0) != 0:     # PR_SET_SECCOMP, SECCOMP_MODE_STRICT
                libc.write(ready_w, b"0", 1)
            else:
                libc.write(ready_w, b"1", 1)                  # read/write/exit only from here
                libc.read(r, buf, 1)
        finally:
            os._exit(0)
    os.close(r)
    os.close(ready_w)
    ok = os.read(ready_r, 1)
    os.close(ready_r)
    if ok != b"1":
        os.close(w)
        os.waitpid(pid, 0)
        pytest.skip("could not enter seccomp strict mode")
    return pid, w


@pytest.mark.parametrize("strict, words", [(False, "has no seccomp filter"),
                                           (True, "is in seccomp strict mode: it has no filter to show")])
def test_dump_of_a_process_without_a_filter_says_so(strict, words):
    if strict:
        pid, w = _child(True)
        proc = None
    else:
        proc = subprocess.Popen(["sleep", "60"])
        pid, w = proc.pid, None
    try:
        r = pf("dump", pid)
        assert r.returncode == 1
        assert r.stderr == f"pfilter seccomp: process {pid} {words}\n".encode()
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        else:
            os.close(w)
            os.waitpid(pid, 0)
