"""Architectures and system call tables of pfilter.seccomp. Imports only pfilter.errors.

Each architecture has its audit token (`struct seccomp_data`'s arch, linux/audit.h), its argument
width as libseccomp sees it (64: arguments compared as two 32-bit halves; 32: the low half only)
and its system call table, the data files syscalls/<arch>.tsv written by scripts/gen_syscalls.py
from libseccomp 2.5.4. x86_64 and x32 share one token: x32's numbers carry the x32 bit.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from ..errors import FilterError

#: the x32 ABI's system call numbers have this bit set (linux: __X32_SYSCALL_BIT)
X32_SYSCALL_BIT = 0x40000000


@dataclass(frozen=True)
class Arch:
    """One architecture: its name (libseccomp's, i386 for x86), audit token, argument width."""

    name: str
    token: int
    bits: int


ARCHES = {a.name: a for a in (
    Arch("x86_64", 0xC000003E, 64),
    Arch("i386", 0x40000003, 32),
    Arch("x32", 0xC000003E, 32),
    Arch("aarch64", 0xC00000B7, 64),
    Arch("arm", 0x40000028, 32),
    Arch("riscv64", 0xC00000F3, 64),
)}

#: other spellings accepted for an architecture name
_ALIASES = {"x86": "i386", "amd64": "x86_64", "arm64": "aarch64", "x86-64": "x86_64"}

#: token -> the architectures that use it (x86_64 before x32)
BY_TOKEN: dict[int, tuple[Arch, ...]] = {}
for _a in ARCHES.values():
    BY_TOKEN[_a.token] = BY_TOKEN.get(_a.token, ()) + (_a,)

#: token -> the name disassembly shows for it (x86_64's token is AUDIT_ARCH_X86_64, x32 included)
TOKEN_NAMES = {tok: archs[0].name for tok, archs in BY_TOKEN.items()}

TABLES = Path(__file__).resolve().parent / "syscalls"


def arch(name: str | Arch) -> Arch:
    """The Arch named `name` (x86_64, i386, x32, aarch64, arm, riscv64; x86, amd64, arm64)."""
    if isinstance(name, Arch):
        return name
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in ARCHES:
        raise FilterError(f"unknown architecture {name!r} (known: {', '.join(ARCHES)})")
    return ARCHES[key]


@functools.lru_cache(maxsize=None)
def _table(name: str) -> tuple[dict[str, int], dict[int, str]]:
    by_name: dict[str, int] = {}
    by_number: dict[int, str] = {}
    for line in (TABLES / f"{name}.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            sysname, nr = line.split("\t")
            by_name[sysname] = int(nr)
            by_number[int(nr)] = sysname
    return by_name, by_number


def syscall_number(syscall: str | int, arch_name: str | Arch = "x86_64") -> int:
    """The number (struct seccomp_data's nr, as an unsigned 32-bit value) of a system call name
    on an architecture (`ARCH:name` for one of another architecture sharing its audit token:
    `x32:read` on x86_64); an integer is taken as the number itself."""
    a = arch(arch_name)
    if not isinstance(syscall, str):
        nr = int(syscall)
        if not -(1 << 31) <= nr <= 0xFFFFFFFF:
            raise FilterError(f"system call number {nr} does not fit in 32 bits")
        return nr & 0xFFFFFFFF
    if ":" in syscall:
        # `x32:read`, as disassembly spells an x32 call under x86_64's token: a call of another
        # architecture that records of this one carry (the same audit token)
        prefix, sysname = syscall.split(":", 1)
        other = arch(prefix)
        if other.token != a.token:
            raise FilterError(f"system call {syscall!r} is one of {other.name}, not of {a.name} "
                              f"(their records differ: audit token 0x{other.token:08x}, not 0x{a.token:08x})")
        return syscall_number(sysname, other)
    nr = _table(a.name)[0].get(syscall)
    if nr is None:
        if syscall.isdigit():
            return syscall_number(int(syscall), a)
        raise FilterError(f"unknown system call {syscall!r} on {a.name}")
    return nr


def has_syscall(syscall: str, arch_name: str | Arch) -> bool:
    """Whether the architecture has a system call of that name."""
    return syscall in _table(arch(arch_name).name)[0]


def syscall_name(nr: int, arch_name: str | Arch = "x86_64") -> str | None:
    """The name of system call number `nr` on an architecture, or None."""
    return _table(arch(arch_name).name)[1].get(int(nr) & 0xFFFFFFFF)


def token_syscall_name(token: int, nr: int) -> str | None:
    """The name a system call number has under an audit token: x86_64's table for plain numbers,
    x32's (spelled `x32:name`) for numbers with the x32 bit."""
    for a in BY_TOKEN.get(token, ()):
        name = syscall_name(nr, a)
        if name is not None:
            return name if a is BY_TOKEN[token][0] else f"{a.name}:{name}"
    return None
