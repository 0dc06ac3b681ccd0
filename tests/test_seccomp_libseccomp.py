"""pfilter.seccomp against libseccomp 2.5.4: for filters python3-seccomp builds, `run` returns the
action scmp_bpf_sim returns over a grid of system calls and argument values, `disasm(style=
"libseccomp")` is byte for byte scmp_bpf_disasm's output, the readable style assembles back to the
same program, and the same rules written with Policy give libseccomp's action on the grid."""
import itertools
import random

import pytest
import seccomp_ref as ref

import pfilter.seccomp as S

B32 = 1 << 32
SPECS = [
    ref.spec("KILL", ["x86_64"], ("ALLOW", "read", []), ("ALLOW", "write", []), ("ALLOW", "exit_group", [])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(1)", "ptrace", []), ("ERRNO(13)", "mount", [])),
    ref.spec("ERRNO(5)", ["x86_64"], ("ALLOW", "read", []), ("LOG", "close", [(0, "<=", 5)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(7)", "write", [(0, ">", 0x100000002)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(7)", "write", [(0, ">=", 0x100000002)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(7)", "write", [(0, "<", 0x100000002)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(7)", "write", [(0, "<=", 0x100000002)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(7)", "write", [(0, "==", 0x100000002)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(7)", "write", [(0, "!=", 0x100000002)])),
    ref.spec("ALLOW", ["x86_64"], ("TRACE(3)", "write", [(1, "&==", 0x1200000034, 0xFF000000FF)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(2)", "write", [(0, "!=", 5), (2, "<", 0x1234567890)])),
    ref.spec("TRAP", ["x86_64"], ("ALLOW", "read", [(0, "==", 0)]), ("ALLOW", "write", [(0, "==", 1)]),
             ("ALLOW", "write", [(0, "==", 2)])),
    ref.spec("KILL_PROCESS", ["x86_64"], ("ALLOW", "openat", [(2, "&==", 0, 3)]), ("ERRNO(13)", "openat", [(2, "&==", 1, 3)])),
    ref.spec("ALLOW", ["x86_64"], ("LOG", "ioctl", [(1, "==", 0x5401)]), ("ERRNO(25)", "ioctl", [(1, "==", 0x5402)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(1)", "kill", [(1, ">", 0xFFFFFFFF)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(1)", "mmap", [(2, "&==", 0x4, 0x4)]), ("TRACE(9)", "mprotect", [(2, "&==", 0x4, 0x4)])),
    ref.spec("ALLOW", ["x86_64", "x32"], ("ERRNO(3)", "read", []), ("ERRNO(4)", "write", [(0, ">", 0x100000002)])),
    ref.spec("ERRNO(5)", ["x86_64", "i386"], ("ALLOW", "read", []), ("LOG", "close", [(0, "<=", 5)]),
             ("ERRNO(7)", "write", [(0, ">", 0x100000002)])),
    ref.spec("ALLOW", ["i386"], ("ERRNO(3)", "read", [(0, ">=", 7)]), ("ERRNO(2)", "write", [(0, "==", 0x100000005)])),
    ref.spec("ALLOW", ["x32"], ("ERRNO(1)", "read", []), ("ERRNO(2)", "write", [(1, "<", 100)])),
    ref.spec("ALLOW", ["aarch64"], ("ERRNO(1)", "read", [(0, "==", 3)]), ("ERRNO(2)", "openat", [(3, ">=", 0x80000000)])),
    ref.spec("KILL", ["aarch64"], ("ALLOW", "read", []), ("ALLOW", "write", []), ("TRACE(1)", "clone", [(0, "&==", 0x10000, 0x10000)])),
    ref.spec("ALLOW", ["arm"], ("ERRNO(9)", "read", [(0, "<", 3)]), ("ERRNO(10)", "cacheflush", [])),
    ref.spec("ERRNO(38)", ["arm", "aarch64"], ("ALLOW", "read", []), ("ALLOW", "write", [(0, "<=", 2)])),
    ref.spec("ALLOW", ["riscv64"], ("ERRNO(1)", "read", [(0, "==", 0x700000000)]), ("LOG", "write", [])),
    ref.spec("TRAP", ["riscv64", "x86_64", "aarch64"], ("ALLOW", "getpid", []), ("ERRNO(3)", "kill", [(0, "!=", 0)])),
    ref.spec("ALLOW", ["x86_64", "i386", "x32", "aarch64", "arm", "riscv64"], ("ERRNO(1)", "close", [(0, "<", 3)]),
             ("KILL_PROCESS", "reboot", [])),
    ref.spec("LOG", ["x86_64"], ("ALLOW", "read", []), ("ERRNO(255)", "write", [(0, ">", 2), (2, "<=", 0x10000)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(1)", "write", [(0, "==", 1), (1, "&==", 0, 0xFFFF000000000000), (2, ">", 10)])),
    ref.spec("ALLOW", ["x86_64"], ("ERRNO(1)", "read", [(0, "<", 0xFFFFFFFF00000000)]), ("ERRNO(2)", "write", [(0, ">=", 0xFFFFFFFF)])),
    ref.spec("TRACE(100)", ["x86_64", "aarch64"], ("ALLOW", "read", []), ("ALLOW", "write", [(0, "==", 1)]),
             ("ERRNO(9)", "write", [(0, "==", 2)]), ("LOG", "close", [])),
    ref.spec("ALLOW", ["i386", "arm"], ("ERRNO(1)", "close", [(0, "&==", 0x1, 0xFF)]), ("TRAP", "dup", [(0, ">", 100)])),
]


def _ids():
    return [f"{i:02d}-{sp['default']}-{'+'.join(sp['arches'])}" for i, sp in enumerate(SPECS)]


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    return ref.build_tools(tmp_path_factory.mktemp("libseccomp-tools"))


@pytest.fixture(scope="module")
def filters(tmp_path_factory):
    raw = ref.libseccomp_filters(SPECS)
    d = tmp_path_factory.mktemp("filters")
    paths = []
    for i, b in enumerate(raw):
        p = d / f"f{i:02d}.bpf"
        p.write_bytes(b)
        paths.append(p)
    return paths


def _boundaries(value):
    out = {0, 1, value, (value + 1) & (B32 * B32 - 1), (value - 1) % (B32 * B32), value ^ B32, value ^ 1,
           (value & ~(B32 - 1)) + 0xFFFFFFFF, (1 << 64) - 1}
    return sorted(v & ((1 << 64) - 1) for v in out)


def grid(sp, seed):
    """(arch, syscall number, args) points: each rule's system call with argument vectors around
    every condition's value, other calls, nr -1, x32 numbers and an architecture the filter lacks."""
    rnd = random.Random(seed)
    points = []
    for arch in sp["arches"] + [a for a in ("x86_64", "aarch64") if a not in sp["arches"]][:1]:
        values = {i: {0} for i in range(6)}
        for _, _, conds in sp["rules"]:
            for c in conds:
                values[c[0]].update(_boundaries(c[2]))
                if len(c) > 3:
                    values[c[0]].update(_boundaries(c[2] | ~c[3] & 0xFFFFFFFFFFFFFFFF))
        vectors = [tuple(0 for _ in range(6))]
        combos = list(itertools.product(*[sorted(values[i]) for i in range(6)]))
        vectors += rnd.sample(combos, min(24, len(combos)))
        names = sorted({sc for _, sc, _ in sp["rules"]} | {"getppid"})
        nrs = [S.syscall_number(n, arch) for n in names if S.arch(arch).name == arch and _has(n, arch)]
        nrs += [0xFFFFFFFF, 0x40000000, 0x40000001, 1, 3]
        for nr in nrs:
            for v in (vectors if nr not in (0xFFFFFFFF, 0x40000000) else vectors[:2]):
                points.append((arch, nr, v))
    return points


def _has(name, arch):
    try:
        S.syscall_number(name, arch)
    except ValueError:
        return False
    return True


def _ours(prog, points):
    out = []
    for arch, nr, args in points:
        rec = S.records([(nr, *args)], arch=arch)
        out.append(str(S.Action(int(S.run(prog, rec)[0]))))
    return out


@pytest.mark.parametrize("n", range(len(SPECS)), ids=_ids())
def test_run_gives_scmp_bpf_sims_action_on_the_grid(n, tools, filters):
    sim, _ = tools
    prog = S.load(filters[n])
    points = grid(SPECS[n], n)
    expected = [ref.simulate(sim, filters[n], arch, nr, args) for arch, nr, args in points]
    # one batch for all points: the batch path and the single-record path agree
    recs = [S.records([(nr, *args)], arch=arch) for arch, nr, args in points]
    import numpy as np
    batch = [str(S.Action(int(v))) for v in S.run(prog, np.concatenate(recs))]
    assert batch == expected
    assert len(set(expected)) > 1, "the grid should reach more than one action"


@pytest.mark.parametrize("n", range(len(SPECS)), ids=_ids())
def test_disasm_libseccomp_style_is_scmp_bpf_disasms_output(n, tools, filters):
    _, disasm = tools
    import subprocess
    with open(filters[n], "rb") as f:
        expected = subprocess.run([str(disasm), "-a", "x86_64"], stdin=f, capture_output=True, check=True).stdout
    assert S.disasm(S.load(filters[n]), style="libseccomp").encode() == expected


@pytest.mark.parametrize("n", range(len(SPECS)), ids=_ids())
def test_readable_disasm_assembles_back_to_the_same_program(n, filters):
    prog = S.load(filters[n])
    text = S.disasm(prog)
    assert S.assemble(text) == prog
    assert S.load(filters[n].read_bytes()).to_tuples() == prog.to_tuples()


@pytest.mark.parametrize("n", range(len(SPECS)), ids=_ids())
def test_policy_gives_libseccomps_action_on_the_grid(n, tools, filters):
    sim, _ = tools
    ours = ref.policy(SPECS[n]).compile()
    points = grid(SPECS[n], n + 1000)
    expected = [ref.simulate(sim, filters[n], arch, nr, args) for arch, nr, args in points]
    assert _ours(ours, points) == expected
    # and libseccomp's own program, run by pfilter, agrees with the policy's everywhere
    assert _ours(S.load(filters[n]), points) == expected


def test_there_are_at_least_30_filters_over_six_arches_and_every_action():
    assert len(SPECS) >= 30
    assert {a for sp in SPECS for a in sp["arches"]} == set(ref.SIM_ARCH)
    kinds = {r[0].split("(")[0] for sp in SPECS for r in sp["rules"]} | {sp["default"].split("(")[0] for sp in SPECS}
    assert {"ALLOW", "KILL", "KILL_PROCESS", "TRAP", "ERRNO", "TRACE", "LOG"} <= kinds
    ops = {c[1] for sp in SPECS for r in sp["rules"] for c in r[2]}
    assert ops == {"==", "!=", "<", "<=", ">", ">=", "&=="}


def test_disasm_libseccomp_style_matches_on_every_seccomp_opcode(tools, tmp_path):
    """Random programs over every opcode the seccomp validator accepts (ALU, scratch memory,
    `ld #len`, `ret a`, jset, X operands), not only what libseccomp generates."""
    import random
    import subprocess

    from test_seccomp_api import _random_program
    _, disasm = tools
    rnd = random.Random(4242)
    for n in range(40):
        prog = S.load(_random_program(rnd))
        path = tmp_path / f"r{n}.bpf"
        path.write_bytes(prog.sock_fprog())
        with open(path, "rb") as f:
            expected = subprocess.run([str(disasm), "-a", "x86_64"], stdin=f, capture_output=True, check=True).stdout
        assert S.disasm(prog, style="libseccomp").encode() == expected
        assert S.assemble(S.disasm(prog)) == prog


def test_disasm_libseccomp_style_names_every_action_as_scmp_bpf_disasm(tools, tmp_path):
    """scmp_bpf_disasm (bpf_decode_action) names KILL_PROCESS, KILL, TRAP, ERRNO(n), TRACE(n), LOG
    and ALLOW, drops the data of all but ERRNO and TRACE, and prints any other value (USER_NOTIF
    among them) as 0x%.8x; the readable style keeps every bit and assembles back."""
    import subprocess

    from test_seccomp_api import EVERY_ACTION
    _, disasm = tools
    values = [act | data for act in EVERY_ACTION for data in (0, 1, 0xFFFF)] + [0x12345678, 0x7FFE0000, 0x00010000]
    tuples = [(0x20, 0, 0, 0)]
    for i, v in enumerate(values):
        tuples += [(0x15, 0, 1, i), (0x06, 0, 0, v)]
    tuples.append((0x06, 0, 0, int(S.ALLOW)))
    prog = S.load(tuples)
    path = tmp_path / "actions.bpf"
    path.write_bytes(prog.sock_fprog())
    with open(path, "rb") as f:
        expected = subprocess.run([str(disasm), "-a", "x86_64"], stdin=f, capture_output=True, check=True).stdout
    assert S.disasm(prog, style="libseccomp").encode() == expected
    assert b"ret 0x7fc00000\n" in expected
    assert S.assemble(S.disasm(prog)) == prog
