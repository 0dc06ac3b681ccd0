"""Seccomp return values (linux/seccomp.h's SECCOMP_RET_*), named as libseccomp names them.
Imports only pfilter.errors.

A filter's 32-bit return value is an action (its high 16 bits) and data (the low 16: the errno of
ERRNO, the message of TRACE; the kernel ignores the data of the other actions, but a filter may
carry it and the text keeps it: `TRAP(2)`). The kernel runs the most restrictive action among all installed
filters; one filter's value decodes with Action(value).
"""
from __future__ import annotations

import re

from ..errors import FilterError

RET_ACTION_FULL = 0xFFFF0000
RET_DATA = 0x0000FFFF

#: action -> libseccomp's name (scmp_bpf_sim prints these); USER_NOTIF is SCMP_ACT_NOTIFY
NAMES = {
    0x80000000: "KILL_PROCESS",
    0x00000000: "KILL",
    0x00030000: "TRAP",
    0x00050000: "ERRNO",
    0x7FC00000: "USER_NOTIF",
    0x7FF00000: "TRACE",
    0x7FFC0000: "LOG",
    0x7FFF0000: "ALLOW",
}
_BY_NAME = {v: k for k, v in NAMES.items()}
_BY_NAME.update({"KILL_THREAD": 0x00000000, "NOTIFY": 0x7FC00000})
#: the actions whose data is always shown (`ERRNO(0)`); the others show theirs when not 0 (`TRAP(2)`)
_WITH_DATA = ("ERRNO", "TRACE")
_TEXT = re.compile(r"\s*([A-Za-z_]+)\s*(?:\(\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*\))?\s*", re.ASCII)


class Action(int):
    """A seccomp return value: an int whose str() is libseccomp's name (`ERRNO(13)`, `ALLOW`), or
    its hex value when the action is not one the kernel knows."""

    __slots__ = ()

    def __new__(cls, value: int | str) -> Action:
        if isinstance(value, str):
            return parse(value)
        v = int(value)
        if not 0 <= v <= 0xFFFFFFFF:
            raise FilterError(f"a seccomp return value is 32 bits, not {v}")
        return super().__new__(cls, v)

    @property
    def action(self) -> int:
        """The action bits (SECCOMP_RET_ACTION_FULL)."""
        return int(self) & RET_ACTION_FULL

    @property
    def data(self) -> int:
        """The data bits (SECCOMP_RET_DATA): ERRNO's errno, TRACE's message (the other actions'
        data, which the kernel ignores, is kept too)."""
        return int(self) & RET_DATA

    @property
    def name(self) -> str | None:
        """libseccomp's name of the action without its data (ERRNO), or None when unknown."""
        return NAMES.get(self.action)

    def __str__(self) -> str:
        name = self.name
        if name is None:
            return f"0x{int(self):08x}"
        return f"{name}({self.data})" if name in _WITH_DATA or self.data else name

    def __repr__(self) -> str:
        return f"Action({str(self)})"


def parse(text: str) -> Action:
    """An Action from its name: ALLOW, KILL, KILL_PROCESS, TRAP, LOG, USER_NOTIF, ERRNO(n),
    TRACE(n), or a number (decimal or 0x hex). Any action takes data in parentheses (`TRAP(2)`,
    0..65535; 0 when none is given), as str() shows it."""
    m = _TEXT.fullmatch(text)
    if m is None:
        try:
            return Action(int(text, 0))
        except ValueError:
            raise FilterError(f"not a seccomp action: {text!r}") from None
    name, data = m.group(1).upper(), m.group(2)
    if name not in _BY_NAME:
        raise FilterError(f"unknown seccomp action {m.group(1)!r} (known: {', '.join(NAMES.values())})")
    value = 0 if data is None else int(data, 0)
    if value > RET_DATA:
        raise FilterError(f"{name} data {value} does not fit in 16 bits")
    return Action(_BY_NAME[name] | value)


def action(value: int | str | Action) -> Action:
    """An Action from an Action, an int or a name."""
    return value if isinstance(value, Action) else Action(value)


ALLOW = Action(0x7FFF0000)
KILL = Action(0x00000000)
KILL_THREAD = KILL
KILL_PROCESS = Action(0x80000000)
TRAP = Action(0x00030000)
LOG = Action(0x7FFC0000)
USER_NOTIF = Action(0x7FC00000)


def ERRNO(errno: int) -> Action:  # noqa: N802 (libseccomp's spelling)
    """The ERRNO action: the system call fails with `errno` (0..65535; the kernel caps it at 4095)."""
    if not 0 <= int(errno) <= RET_DATA:
        raise FilterError(f"ERRNO data {errno} does not fit in 16 bits")
    return Action(0x00050000 | int(errno))


def TRACE(msg: int) -> Action:  # noqa: N802
    """The TRACE action: a ptrace tracer is notified with `msg` (0..65535)."""
    if not 0 <= int(msg) <= RET_DATA:
        raise FilterError(f"TRACE data {msg} does not fit in 16 bits")
    return Action(0x7FF00000 | int(msg))
