"""pfilter.seccomp's API without external references: the VM's seccomp mode in both VMs (the
Cython loop and its pure-Python twin) on random programs and records, host-order loads, loading
and its errors, Action names, records, assembling by hand, Policy's errors."""
import random
import struct
import sys

import numpy as np
import pytest

import pfilter.seccomp as S
from pfilter import _pyvm
from pfilter.errors import FilterError, InvalidProgramError
from pfilter.program import _cvm

ALLOW = int(S.ALLOW)


def test_seccomp_data_is_the_64_byte_kernel_layout():
    assert S.SECCOMP_DATA.itemsize == 64
    assert [S.SECCOMP_DATA.fields[f][1] for f in ("nr", "arch", "instruction_pointer", "args")] == [0, 4, 8, 16]


def test_loads_are_host_order_words_of_the_record():
    rec = S.record("write", 0x1122334455667788, 7, arch="aarch64", instruction_pointer=0xAABBCCDD00112233)
    raw = rec.tobytes()
    for off in range(0, 64, 4):
        prog = S.load([(0x20, 0, 0, off), (0x16, 0, 0, 0)])
        assert int(S.run(prog, rec)[0]) == int.from_bytes(raw[off:off + 4], sys.byteorder)
    assert int(S.run(S.load([(0x20, 0, 0, 0), (0x16, 0, 0, 0)]), rec)[0]) == S.syscall_number("write", "aarch64")
    assert int(S.run(S.load([(0x20, 0, 0, 24), (0x16, 0, 0, 0)]), rec)[0]) == 7


def test_len_reads_64():
    prog = S.load([(0x80, 0, 0, 0), (0x16, 0, 0, 0)])
    assert S.run(prog, S.records(["read", "write"])).tolist() == [64, 64]
    prog = S.load([(0x81, 0, 0, 0), (0x87, 0, 0, 0), (0x16, 0, 0, 0)])
    assert S.run(prog, S.record("read")).tolist() == [64]


def _random_program(rnd):
    """A random program the seccomp validator accepts: loads of record words, ALU, scratch memory
    stored before read, forward jumps, returns."""
    n = rnd.randint(2, 40)
    prog = [(0x02, 0, 0, m) for m in range(4)]          # M[0..3] stored first
    ops = [0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3c, 0x44, 0x4c, 0x54, 0x5c, 0x64, 0x6c, 0x74, 0x7c, 0x84,
           0xa4, 0xac, 0x07, 0x87, 0x00, 0x01, 0x80, 0x81, 0x60, 0x61, 0x02, 0x03]
    for i in range(n):
        r = rnd.random()
        left = n - i
        if r < 0.3:
            prog.append((0x20, 0, 0, rnd.randrange(16) * 4))
        elif r < 0.55 and left > 1:
            code = rnd.choice([0x15, 0x25, 0x35, 0x45, 0x1d, 0x2d, 0x3d, 0x4d])
            prog.append((code, rnd.randrange(min(left, 255)), rnd.randrange(min(left, 255)),
                         rnd.choice([0, 1, 5, 0x40000000, 0xFFFFFFFF, rnd.getrandbits(32)])))
        elif r < 0.6 and left > 1:
            prog.append((0x05, 0, 0, rnd.randrange(left)))
        elif r < 0.65:
            prog.append((0x06, 0, 0, rnd.getrandbits(32)))
        else:
            code = rnd.choice(ops)
            k = rnd.getrandbits(32)
            if code in (0x34,):
                k = k or 1
            if code in (0x64, 0x74):
                k %= 32
            if code in (0x60, 0x61, 0x02, 0x03):
                k = rnd.randrange(4)
            prog.append((code, 0, 0, k))
    prog.append(rnd.choice([(0x16, 0, 0, 0), (0x06, 0, 0, ALLOW)]))
    return prog


def _random_records(rnd, n):
    raw = bytearray(rnd.getrandbits(8) for _ in range(64 * n))
    for i in range(n):           # some small, structured values too
        if rnd.random() < 0.5:
            struct.pack_into("=iI", raw, 64 * i, rnd.randrange(-2, 500), S.arch(rnd.choice(list(S.ARCHES))).token)
    return np.frombuffer(bytes(raw), dtype=np.uint8)


@pytest.mark.skipif(_cvm is None, reason="the compiled VM is not built")
def test_compiled_and_python_vms_agree_in_seccomp_mode():
    """The VM's seccomp mode (libpcap's rules, shifts by X >= 32 included) in both VMs."""
    rnd = random.Random(17)
    for _ in range(300):
        prog = S.load(_random_program(rnd))
        recs = _random_records(rnd, 20)
        vm = np.empty(20, dtype=np.uint32)
        _cvm.run_records(prog._decoded, prog._clear_mem, recs, vm)
        twin = _pyvm.run_records(prog.to_tuples(), recs, np.empty(20, dtype=np.uint32))
        assert vm.tolist() == twin.tolist(), prog.to_tuples()


def test_run_is_the_vm_except_for_shifts_by_x_where_it_follows_the_kernel():
    """S.run is the VM's seccomp mode for programs without `A <<= X` / `A >>= X`; with one it runs
    in pfilter.seccomp.kernelvm (X modulo 32, as the kernel: test_seccomp_kernel.py), which gives
    the VM's values on every other program."""
    from pfilter.seccomp import kernelvm
    rnd = random.Random(18)
    shifting = 0
    for _ in range(300):
        prog = S.load(_random_program(rnd))
        recs = _random_records(rnd, 20)
        ours = S.run(prog, recs).tolist()
        kernel = kernelvm.run_records(prog.to_tuples(), recs, np.empty(20, dtype=np.uint32)).tolist()
        twin = _pyvm.run_records(prog.to_tuples(), recs, np.empty(20, dtype=np.uint32)).tolist()
        assert ours == kernel, prog.to_tuples()
        if kernelvm.needs_kernel_rules(prog.to_tuples()):
            shifting += 1
        else:
            assert ours == twin, prog.to_tuples()
    assert shifting > 20
    shift = S.load([(0x20, 0, 0, 16), (0x07, 0, 0, 0), (0x00, 0, 0, 0x80000001), (0x7C, 0, 0, 0), (0x16, 0, 0, 0)])
    assert S.run(shift, S.records([(0, x) for x in (0, 1, 31, 32, 33, 63, 64)])).tolist() == [
        0x80000001, 0x40000000, 1, 0x80000001, 0x40000000, 1, 0x80000001]


def test_run_takes_structured_arrays_bytes_and_uint8_alike():
    prog = S.load([(0x20, 0, 0, 16), (0x16, 0, 0, 0)])
    recs = S.records([("read", 5), ("write", 6)])
    expected = [5, 6]
    assert S.run(prog, recs).tolist() == expected
    assert S.run(prog, recs.tobytes()).tolist() == expected
    assert S.run(prog, np.frombuffer(recs.tobytes(), np.uint8)).tolist() == expected
    assert S.run(prog, recs[::-1]).tolist() == expected[::-1]       # not contiguous
    with pytest.raises(FilterError, match="64-byte"):
        S.run(prog, b"\0" * 65)
    with pytest.raises(FilterError):
        S.run(prog, np.zeros(3, dtype=np.int32))


def test_load_reads_raw_bytes_files_and_tuples(tmp_path):
    tuples = [(0x20, 0, 0, 0), (0x15, 0, 1, 0), (0x06, 0, 0, 0x50001), (0x06, 0, 0, ALLOW)]
    raw = b"".join(struct.pack("=HBBI", *t) for t in tuples)
    path = tmp_path / "f.bpf"
    path.write_bytes(raw)
    for obj in (raw, bytearray(raw), memoryview(raw), str(path), path, tuples, S.load(tuples)):
        assert S.load(obj).to_tuples() == tuples


@pytest.mark.parametrize("prog, where, what", [
    ([(0x28, 0, 0, 0), (0x06, 0, 0, 0)], 0, "not allowed"),
    ([(0x20, 0, 0, 0), (0x94, 0, 0, 3), (0x06, 0, 0, 0)], 1, "not allowed"),
    ([(0x20, 0, 0, 6), (0x06, 0, 0, 0)], 0, "aligned"),
    ([(0x20, 0, 0, 64), (0x06, 0, 0, 0)], 0, "inside"),
    ([(0x60, 0, 0, 1), (0x06, 0, 0, 0)], 0, "M\\[1\\]"),
    ([(0x00, 0, 0, 0), (0x05, 0, 0, 0xFFFFFFFE), (0x06, 0, 0, 0)], 1, "backward"),
    ([(0x20, 0, 0, 0)], 0, "last instruction"),
    ([(0x06, 0, 0, 0)] * 4097, None, "4097 instructions"),
])
def test_load_refuses_what_the_kernel_refuses_naming_the_instruction(prog, where, what):
    with pytest.raises(InvalidProgramError, match=what) as e:
        S.load(prog)
    assert e.value.index == where


def test_load_refuses_a_partial_instruction_and_passes_file_errors(tmp_path):
    with pytest.raises(InvalidProgramError, match="whole number"):
        S.load(b"\x06\0\0\0\0\0\xff\x7f\x00")
    with pytest.raises(FileNotFoundError):
        S.load(tmp_path / "absent.bpf")
    with pytest.raises(InvalidProgramError):
        S.load(b"")


@pytest.mark.parametrize("value, name", [
    (0x80000000, "KILL_PROCESS"), (0, "KILL"), (0x00030000, "TRAP"), (0x00050000 | 13, "ERRNO(13)"),
    (0x7FC00000, "USER_NOTIF"), (0x7FF00000 | 9, "TRACE(9)"), (0x7FFC0000, "LOG"), (0x7FFF0000, "ALLOW"),
    (0x12345678, "0x12345678"),
])
def test_actions_have_libseccomps_names_and_parse_back(value, name):
    assert str(S.Action(value)) == name
    assert int(S.Action(name)) == value


def test_bad_actions_are_filter_errors():
    for bad in ("ERRNO(70000)", "ALLOW(65536)", "SLEEP", "ERRNO(x)", "TRAP(-1)"):
        with pytest.raises(FilterError):
            S.Action(bad)


def test_records_resolve_names_per_arch_and_refuse_bad_input():
    r = S.records(["read", ("write", -1)], arch="x32")
    assert r["nr"].tolist() == [0x40000000, 0x40000001]
    assert r["args"][1, 0] == 0xFFFFFFFFFFFFFFFF
    assert r["arch"].tolist() == [0xC000003E] * 2
    assert S.record(-1)["nr"].tolist() == [-1]
    with pytest.raises(FilterError, match="unknown system call"):
        S.records(["no_such_call"])
    with pytest.raises(FilterError, match="unknown architecture"):
        S.records(["read"], arch="vax")
    with pytest.raises(FilterError, match="at most 6"):
        S.record("read", *range(7))


def test_assemble_reads_hand_written_text_with_labels_and_names():
    prog = S.assemble("""
        A = arch
        if (A != x86_64) goto kill
        A = nr
        if (A == openat) goto check      # names of the architecture checked above
        if (A == x32:read) goto deny
        return ALLOW
    check:
        A = args[2]
        if (A & 0x3) goto deny
        return ALLOW
    deny:
        return ERRNO(13)
    kill:
        return KILL_PROCESS
    """)
    res = S.run(prog, np.concatenate([S.records([("openat", 0, 0, 0), ("openat", 0, 0, 1), "read"]),
                                      S.records(["read"], arch="x32"), S.records(["read"], arch="aarch64")]))
    assert [str(S.Action(int(v))) for v in res] == ["ALLOW", "ERRNO(13)", "ALLOW", "ERRNO(13)", "KILL_PROCESS"]


# S.assemble's errors (each names its line) are tested with bpf_asm's, in
# tests/test_asm_bpf_asm.py::test_bad_assembly_raises_invalid_program_naming_the_line


def test_assemble_resolves_names_with_an_assumed_arch():
    prog = S.assemble("A = nr\nif (A == read) goto d\nreturn ALLOW\nd: return ERRNO(1)", arch="aarch64")
    assert prog.to_tuples()[1][3] == S.syscall_number("read", "aarch64")


def test_policy_refuses_bad_rules():
    p = S.Policy(default=S.ALLOW, arches=["x86_64"])
    with pytest.raises(FilterError, match="unknown system call"):
        p.add(S.KILL, "no_such_call")
    with pytest.raises(FilterError, match="0..5"):
        S.Arg(6, "==", 1)
    with pytest.raises(FilterError, match="mask"):
        S.Arg(0, "&==", 1)
    with pytest.raises(FilterError, match="comparison"):
        S.Arg(0, "=~", 1)
    with pytest.raises(FilterError, match="64 bits"):
        S.Arg(0, "==", 1 << 64)
    with pytest.raises(FilterError, match="architecture"):
        S.Policy(arches=[])


def test_policy_of_many_rules_stays_within_jump_range():
    p = S.Policy(default=S.ALLOW, arches=["x86_64", "aarch64"])
    names = [n for n in ("read", "write", "close", "openat", "mmap", "brk", "ioctl", "dup", "fcntl", "getpid")]
    for i in range(300):
        p.add(S.ERRNO(i + 1), names[i % len(names)], S.Arg(0, "==", i))
    prog = p.compile()
    res = S.run(prog, S.records([(names[i % len(names)], i) for i in range(300)], arch="aarch64"))
    assert [S.Action(int(v)).data for v in res] == [i + 1 for i in range(300)]


def test_readable_text_keeps_the_fields_an_instruction_ignores():
    prog = S.load([(0x20, 7, 9, 0), (0x0c, 1, 2, 0xdead), (0x05, 3, 4, 0), (0x16, 5, 6, 0xbeef)])
    text = S.disasm(prog)
    assert "[jt=7 jf=9]" in text and "[jt=1 jf=2 k=0xdead]" in text and "[jt=5 jf=6 k=0xbeef]" in text
    assert S.assemble(text) == prog
    with pytest.raises(InvalidProgramError, match="unused field"):
        S.assemble("A = nr [k=0x5]\nreturn A")


#: every action the kernel knows (linux/seccomp.h's SECCOMP_RET_*)
EVERY_ACTION = [0x80000000, 0x00000000, 0x00030000, 0x00050000, 0x7FC00000, 0x7FF00000, 0x7FFC0000, 0x7FFF0000]


@pytest.mark.parametrize("data", [0, 1, 0xFFFF])
def test_every_action_keeps_its_data_through_disasm_and_asm(data):
    """`ret 0x00030002` is `return TRAP(2)` and assembles back to 0x00030002 (it said `return
    TRAP`, which assembled to 0x00030000)."""
    tuples = [(0x20, 0, 0, 0)]
    for i, act in enumerate(EVERY_ACTION):
        tuples += [(0x15, 0, 1, i), (0x06, 0, 0, act | data)]
    tuples.append((0x06, 0, 0, ALLOW))
    prog = S.load(tuples)
    text = S.disasm(prog)
    assert S.assemble(text) == prog
    for act in EVERY_ACTION:
        a = S.Action(act | data)
        shown = str(a)
        assert f"return {shown}\n" in text
        assert int(S.Action(shown)) == act | data
        assert (shown == a.name) == (data == 0 and a.name not in ("ERRNO", "TRACE"))
    ran = S.run(prog, S.records(list(range(len(EVERY_ACTION)))))
    assert ran.tolist() == [act | data for act in EVERY_ACTION]


def test_load_refuses_capture_files_and_overlong_input_in_words(tmp_path):
    for magic in ("a1b2c3d4", "d4c3b2a1", "a1b23c4d", "0a0d0d0a"):
        with pytest.raises(InvalidProgramError, match="capture file, not a seccomp filter"):
            S.load(bytes.fromhex(magic) + bytes(28))
    path = tmp_path / "big.bpf"
    path.write_bytes(bytes.fromhex("0600000000000000") * 5000)
    with pytest.raises(InvalidProgramError, match=f"{path}: too long for a seccomp filter: more than 4096"):
        S.load(path)
    assert len(S.load(bytes.fromhex("0600000000000000") * 4096)) == 4096


def test_syscall_names_take_an_architecture_prefix_sharing_the_token():
    assert S.syscall_number("x32:read", "x86_64") == S.X32_SYSCALL_BIT
    assert S.record("x32:write", arch="x86_64")["nr"].tolist() == [S.X32_SYSCALL_BIT | 1]
    assert S.syscall_number("aarch64:read", "aarch64") == 63
    with pytest.raises(FilterError, match="one of x32, not of i386"):
        S.syscall_number("x32:read", "i386")
