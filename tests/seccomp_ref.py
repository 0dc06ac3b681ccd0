"""The references the seccomp tests compare pfilter.seccomp with: libseccomp 2.5.4 through Debian's
python3-seccomp (run under /usr/bin/python3 in a subprocess, its filters exported with
export_bpf), and libseccomp's own simulator and disassembler (tools/scmp_bpf_sim.c,
scmp_bpf_disasm.c) compiled with cc into a temporary directory from $PFILTER_REFERENCE
(absolute or relative to the repository root, default ../shared/reference; never copied into
the repository). Test-only; never imported by pfilter.

A missing reference skips the test naming it, and FAILS it when CI=true (as tests/reference.py).
Filters are described once, as data (`spec`): a default action, architectures and rules
(action, system call, conditions (index, op, value[, mask])); `libseccomp_filters` builds them with
python3-seccomp and `policy` with pfilter.seccomp.Policy.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import pfilter.seccomp as S

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / os.environ.get("PFILTER_REFERENCE", "../shared/reference")).resolve()
TOOLS = REFERENCE / "libseccomp-tools"
SECCOMP_PYTHON = os.environ.get("SECCOMP_PYTHON", "/usr/bin/python3")
IN_CI = os.environ.get("CI", "").lower() == "true"

#: pfilter.seccomp's architecture name -> (scmp_bpf_sim's -a name, python3-seccomp's Arch attribute)
SIM_ARCH = {"x86_64": ("x86_64", "X86_64"), "i386": ("x86", "X86"), "x32": ("x32", "X32"),
            "aarch64": ("aarch64", "AARCH64"), "arm": ("arm", "ARM"), "riscv64": ("riscv64", "RISCV64")}
_OPS = {"==": "EQ", "!=": "NE", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE", "&==": "MASKED_EQ"}


def missing(what):
    msg = f"reference not available: {what}"
    if IN_CI:
        pytest.fail(msg + " (CI=true: the test command must install it)")
    pytest.skip(msg)


def build_tools(directory):
    """Compile scmp_bpf_sim and scmp_bpf_disasm into `directory`; returns (sim, disasm) paths."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        missing("a C compiler (cc) to build libseccomp's scmp_bpf_sim")
    for name in ("scmp_bpf_sim.c", "scmp_bpf_disasm.c", "util.c", "util.h", "bpf.h"):
        if not (TOOLS / name).exists():
            missing(f"{TOOLS / name} (set PFILTER_REFERENCE to the directory holding libseccomp-tools)")
    out = []
    for tool in ("scmp_bpf_sim", "scmp_bpf_disasm"):
        exe = Path(directory) / tool
        subprocess.run([cc, "-O2", "-o", str(exe), str(TOOLS / f"{tool}.c"), str(TOOLS / "util.c")],
                       check=True, capture_output=True)
        out.append(exe)
    return tuple(out)


def spec(default, arches, *rules):
    """A filter described as data: rules are (action, syscall, [(index, op, value[, mask]), ...])."""
    return {"default": default, "arches": list(arches), "rules": [(a, sc, [list(c) for c in conds])
                                                                  for a, sc, conds in rules]}


_BUILD = r'''
import json, os, sys, tempfile
import seccomp as s
OPS = %s
def action(text):
    name, _, data = text.partition("(")
    if data:
        return getattr(s, name)(int(data.rstrip(")"), 0))
    return getattr(s, name)
out = []
for sp in json.load(sys.stdin):
    f = s.SyscallFilter(action(sp["default"]))
    if "x86_64" not in sp["arches"]:
        f.remove_arch(s.Arch.NATIVE)
    for a in sp["arches"]:
        if a != "x86_64":
            f.add_arch(getattr(s.Arch, %s[a][1]))
    for act, sc, conds in sp["rules"]:
        args = []
        for c in conds:
            if c[1] == "&==":
                args.append(s.Arg(c[0], s.MASKED_EQ, c[3], c[2]))
            else:
                args.append(s.Arg(c[0], getattr(s, OPS[c[1]]), c[2]))
        f.add_rule(action(act), sc, *args)
    with tempfile.TemporaryFile() as t:
        f.export_bpf(t)
        t.seek(0)
        out.append(t.read().hex())
json.dump(out, sys.stdout)
'''


def libseccomp_filters(specs):
    """The raw filters (bytes) python3-seccomp's libseccomp builds for `specs`, in one subprocess."""
    if not os.path.exists(SECCOMP_PYTHON):
        missing(f"{SECCOMP_PYTHON} (Debian's python3 with python3-seccomp)")
    r = subprocess.run([SECCOMP_PYTHON, "-c", _BUILD % (repr(_OPS), repr(SIM_ARCH))], input=json.dumps(specs),
                       capture_output=True, text=True)
    if r.returncode != 0:
        if "No module named 'seccomp'" in r.stderr:
            missing("python3-seccomp (apt-get install python3-seccomp)")
        raise AssertionError(f"python3-seccomp failed: {r.stderr}")
    return [bytes.fromhex(h) for h in json.loads(r.stdout)]


def policy(sp):
    """The same rules written with pfilter.seccomp.Policy."""
    p = S.Policy(default=sp["default"], arches=sp["arches"])
    for act, sc, conds in sp["rules"]:
        p.add(act, sc, *[S.Arg(c[0], c[1], c[2], c[3] if len(c) > 3 else None) for c in conds])
    return p


def simulate(sim, bpf_path, arch, nr, args):
    """scmp_bpf_sim's action for one system call: its stdout line (`ALLOW`, `ERRNO(5)`, ...)."""
    cmd = [str(sim), "-f", str(bpf_path), "-a", SIM_ARCH[arch][0], "-s", str(nr)]
    for i, v in enumerate(args):
        cmd += [f"-{i}", f"0x{v & 0xFFFFFFFFFFFFFFFF:x}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"scmp_bpf_sim {cmd}: {r.stderr}"
    return r.stdout.strip()
