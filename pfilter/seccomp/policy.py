"""Policy: seccomp rules written in Python and compiled to a cBPF program the kernel accepts.
Imports pfilter.errors, pfilter.program (Program) and this package's arch and actions modules.

The meaning is libseccomp's (seccomp_rule_add): a rule is an action, a system call and
conditions on its arguments, all of which must hold; a call that no rule matches gets the
default action; a record of an architecture the policy does not list gets `badarch` (KILL, as
libseccomp's SCMP_FLTATR_ACT_BADARCH). Arguments are compared as libseccomp compares them: on a
64-bit architecture as 64-bit values, high half then low half; on a 32-bit one (i386, arm, x32)
the low half only, against the low 32 bits of the value and mask. On x86_64 without x32, a call
with the x32 bit is `badarch` unless nr is -1 (a tracer's skipped call); with x32 alone, a call
without it is. Where two rules of one system call both match, the one added first decides.

Divergence (from libseccomp): i386's socket and IPC calls are matched by their own numbers only
(libseccomp also matches them through the multiplexers socketcall and ipc); rules whose action
is the default are kept (libseccomp refuses them).

The program, per architecture: `ld [4]`, a `jeq` per architecture token to its block; each block
loads nr and dispatches with `jeq nr` + `ja` to the rules of each system call (so no jump offset
ever exceeds 255); each rule tests its conditions and returns its action, falling through to the
next rule when one fails.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from ..errors import FilterError
from ..opcodes import BPF_MAXINSNS
from ..program import Program
from .actions import KILL, Action, action as to_action
from .arch import X32_SYSCALL_BIT, Arch, arch as get_arch, has_syscall, syscall_number

_OPS = ("==", "!=", "<", "<=", ">", ">=", "&==")
_M32 = 0xFFFFFFFF
_M64 = (1 << 64) - 1


@dataclass(frozen=True)
class Arg:
    """A condition on system call argument `index` (0..5): `arg OP value`, or for "&==" (libseccomp's
    MASKED_EQ) `(arg & mask) == value`. Values are 64-bit (negative ones two's complement)."""

    index: int
    op: str
    value: int
    mask: int | None = None

    def __post_init__(self) -> None:
        try:
            idx = operator.index(self.index)
        except TypeError:
            raise FilterError(f"argument index must be an integer, not {type(self.index).__name__}") from None
        if not 0 <= idx <= 5:
            raise FilterError(f"argument index must lie in 0..5, not {idx}")
        if self.op not in _OPS:
            raise FilterError(f"argument comparison must be one of {' '.join(_OPS)}, not {self.op!r}")
        if (self.op == "&==") != (self.mask is not None):
            raise FilterError("a mask goes with the &== comparison, and only with it")
        for v in (self.value,) if self.mask is None else (self.value, self.mask):
            if not -(1 << 63) <= operator.index(v) <= _M64:
                raise FilterError(f"argument value {v} does not fit in 64 bits")


def _arg(cond: Any) -> Arg:
    """An Arg from an Arg or a tuple (index, op, value) / (index, "&==", value, mask)."""
    if isinstance(cond, Arg):
        return cond
    if isinstance(cond, tuple) and 3 <= len(cond) <= 4:
        return Arg(*cond)
    raise FilterError(f"a condition is an Arg or (index, op, value[, mask]), not {cond!r}")


class Policy:
    """Seccomp rules for one or more architectures, compiled to a cBPF program (`compile()`) or
    its raw bytes (`export_bpf()`, as libseccomp's export_bpf writes them)."""

    def __init__(self, default: Any = KILL, arches: Any = ("x86_64",), badarch: Any = KILL) -> None:
        self.default = to_action(default)
        self.badarch = to_action(badarch)
        self.arches: list[Arch] = []
        for a in [arches] if isinstance(arches, (str, Arch)) else arches:
            a = get_arch(a)
            if a not in self.arches:
                self.arches.append(a)
        if not self.arches:
            raise FilterError("a policy needs at least one architecture")
        self.rules: list[tuple[Action, str | int, tuple[Arg, ...]]] = []

    def add(self, action: Any, syscall: str | int, *conditions: Any) -> Policy:
        """Add a rule: `action` for `syscall` (a name, resolved per architecture, or a number used
        on all of them) when every condition holds. Returns the policy (calls chain)."""
        act = to_action(action)
        conds = tuple(_arg(c) for c in conditions)
        if isinstance(syscall, str):
            if not any(has_syscall(syscall, a) for a in self.arches):
                raise FilterError(f"unknown system call {syscall!r} on {', '.join(a.name for a in self.arches)}")
        else:
            syscall_number(syscall)
        self.rules.append((act, syscall, conds))
        return self

    # ------------------------------------------------------------------ compiling
    def compile(self) -> Program:
        """The policy as a seccomp filter (a validated Program)."""
        from . import load
        return load(self._assemble())

    def export_bpf(self) -> bytes:
        """The compiled filter's raw struct sock_filter bytes (host byte order)."""
        return self.compile().sock_fprog()

    def _assemble(self) -> list[tuple[int, int, int, int]]:
        code: list[list[Any]] = []    # [op, jt, jf, k]; jump targets as ("label", name) until resolved
        labels: dict[str, int] = {}

        def emit(op: int, k: Any = 0, jt: Any = 0, jf: Any = 0) -> None:
            code.append([op, jt, jf, k])

        def label(name: str) -> None:
            labels[name] = len(code)

        groups: dict[int, list[Arch]] = {}
        for a in self.arches:
            groups.setdefault(a.token, []).append(a)
        emit(0x20, 4)                                         # A = arch
        for tok in groups:
            emit(0x15, tok, 0, 1)                             # if (A == token) goto its block
            emit(0x05, ("L", f"arch{tok}"))
        emit(0x06, int(self.badarch))
        for tok, archs in groups.items():
            label(f"arch{tok}")
            names = {a.name for a in archs}
            emit(0x20, 0)                                     # A = nr
            if "x86_64" in names and "x32" not in names:
                emit(0x35, X32_SYSCALL_BIT, 0, 2)
                emit(0x15, _M32, 1, 0)
                emit(0x06, int(self.badarch))
            elif "x32" in names and "x86_64" not in names:
                emit(0x35, X32_SYSCALL_BIT, 1, 0)
                emit(0x06, int(self.badarch))
            by_nr: dict[int, list[tuple[Action, tuple[Arg, ...], Arch]]] = {}
            for act, sc, conds in self.rules:
                for a in archs:
                    if isinstance(sc, str) and not has_syscall(sc, a):
                        continue
                    nr = syscall_number(sc, a)
                    if isinstance(sc, int) and a.name == "x32" and "x86_64" not in names:
                        nr |= X32_SYSCALL_BIT
                    entry = (act, conds, a)
                    if entry not in by_nr.setdefault(nr, []):
                        by_nr[nr].append(entry)
            for nr in by_nr:
                emit(0x15, nr, 0, 1)
                emit(0x05, ("L", f"sys{tok}_{nr}"))
            emit(0x06, int(self.default))
            for nr, rules in by_nr.items():
                label(f"sys{tok}_{nr}")
                for n, (act, conds, a) in enumerate(rules):
                    fail = f"rule{tok}_{nr}_{n}"
                    for c in conds:
                        self._condition(emit, c, a.bits, fail)
                    emit(0x06, int(act))
                    label(fail)
                emit(0x06, int(self.default))
        if len(code) > BPF_MAXINSNS:
            raise FilterError(f"the policy compiles to {len(code)} instructions, more than the kernel's {BPF_MAXINSNS}")
        out = []
        for i, (op, jt, jf, k) in enumerate(code):
            if isinstance(k, tuple):
                k = labels[k[1]] - i - 1
            jt = labels[jt[1]] - i - 1 if isinstance(jt, tuple) else jt
            jf = labels[jf[1]] - i - 1 if isinstance(jf, tuple) else jf
            assert 0 <= jt <= 255 and 0 <= jf <= 255, (i, jt, jf)
            out.append((op, jt, jf, k))
        return out

    @staticmethod
    def _condition(emit, c: Arg, bits: int, fail: str) -> None:
        """Code that falls through when condition `c` holds and jumps to `fail` otherwise;
        mirrors libseccomp's comparisons (gen_bpf.c: _gen_bpf_node, high half then low)."""
        value = operator.index(c.value) & _M64
        mask = None if c.mask is None else operator.index(c.mask) & _M64
        lo_off, hi_off = 16 + 8 * c.index, 20 + 8 * c.index
        F = ("L", fail)
        vl, vh = value & _M32, value >> 32
        if bits == 32:
            if c.op == "&==":
                emit(0x20, lo_off)
                emit(0x54, mask & _M32)
                emit(0x15, vl, 0, F)
                return
            jcode, negate = {"==": (0x15, False), "!=": (0x15, True), ">": (0x25, False), "<=": (0x25, True),
                             ">=": (0x35, False), "<": (0x35, True)}[c.op]
            emit(0x20, lo_off)
            emit(jcode, vl, F, 0) if negate else emit(jcode, vl, 0, F)
            return
        # 64 bits: PASS is the instruction after the condition's last one (offsets counted here)
        if c.op == "==":
            emit(0x20, hi_off); emit(0x15, vh, 0, F); emit(0x20, lo_off); emit(0x15, vl, 0, F)
        elif c.op == "!=":
            emit(0x20, hi_off); emit(0x15, vh, 0, 2); emit(0x20, lo_off); emit(0x15, vl, F, 0)
        elif c.op == "&==":
            emit(0x20, hi_off); emit(0x54, mask >> 32); emit(0x15, vh, 0, F)
            emit(0x20, lo_off); emit(0x54, mask & _M32); emit(0x15, vl, 0, F)
        elif c.op in (">", ">="):
            emit(0x20, hi_off); emit(0x25, vh, 3, 0); emit(0x15, vh, 0, F)
            emit(0x20, lo_off); emit(0x25 if c.op == ">" else 0x35, vl, 0, F)
        else:   # "<" is not ">=", "<=" is not ">"
            emit(0x20, hi_off); emit(0x25, vh, F, 0); emit(0x15, vh, 0, 2)
            emit(0x20, lo_off); emit(0x35 if c.op == "<" else 0x25, vl, F, 0)
