"""Tracing a program on one packet: every instruction executed, in order, with its effect.

Imports pfilter.errors, pfilter.batch, pfilter.program (and, through it, one of the VMs).

Both VMs report the same rows: the index, A and X before every instruction executed
(pfilter/_vm.pyx `trace_one`, where a fused load+jump pair and every `jeq` a JEQ_RUN scan passes
are reported as the instructions they stand for; pfilter/_pyvm.py `run_one(trace=...)`). This
module turns the rows into Steps by looking at the instructions themselves (what a load read, the
branch taken, the M[] write, why the program stopped), so both VMs' traces are identical
whenever their rows are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import packet_bytes
from .errors import FilterError

if TYPE_CHECKING:
    from .program import Program

__all__ = ["Step", "Trace", "trace", "trace_rows", "load_range"]

M32 = 0xFFFFFFFF
_SIZES = {0x00: 4, 0x08: 2, 0x10: 1}    # BPF_W, BPF_H, BPF_B
_JUMPS = {0x10: "==", 0x20: ">", 0x30: ">=", 0x40: "&"}


@dataclass(frozen=True)
class Step:
    """One executed instruction. `read` is (offset, size, the bytes) for a packet load that
    succeeded; `past_end` says a load ran past the captured bytes (the program returns 0);
    `branch` is True/False for a conditional jump (None otherwise); `mem_write` is (index,
    value) for `st`/`stx`; `next_pc` is None for the last step."""

    pc: int
    insn: tuple[int, int, int, int]
    text: str
    a_before: int
    x_before: int
    a_after: int
    x_after: int
    mem_write: tuple[int, int] | None = None
    read: tuple[int, int, bytes] | None = None
    past_end: bool = False
    branch: bool | None = None
    next_pc: int | None = None
    note: str = ""

    def __str__(self) -> str:
        line = f"{self.text:<44} A=0x{self.a_before:x} X=0x{self.x_before:x}"
        extra = []
        if self.read is not None:
            off, size, data = self.read
            extra.append(f"read [{off}:{size}] = {data.hex()}")
        if self.past_end:
            extra.append("past the end: return 0")
        if self.mem_write is not None:
            extra.append(f"M[{self.mem_write[0]}] = 0x{self.mem_write[1]:x}")
        if self.branch is not None:
            extra.append(f"{'true' if self.branch else 'false'} -> {self.next_pc}")
        if self.a_after != self.a_before and self.read is None:
            extra.append(f"A = 0x{self.a_after:x}")
        if self.x_after != self.x_before:
            extra.append(f"X = 0x{self.x_after:x}")
        if self.note:
            extra.append(self.note)
        return line + ("  ; " + "; ".join(extra) if extra else "")


@dataclass(frozen=True)
class Trace:
    """The executed instructions (`steps`) and the program's return value (`result`)."""

    steps: list[Step]
    result: int
    rows: list[tuple[int, int, int]] = field(repr=False)
    packet_length: int = 0

    @property
    def verdict(self) -> bool:
        return self.result != 0

    def __str__(self) -> str:
        return "\n".join(str(s) for s in self.steps) + f"\nreturn {self.result}" + \
            (" (accept)" if self.result else " (reject)") + "\n"


def load_range(insn: tuple[int, int, int, int], x: int) -> tuple[int, int] | None:
    """(offset, size) of the packet bytes a load instruction reads with X = x, or None for
    instructions that read no packet bytes."""
    code, _jt, _jf, k = insn
    cls = code & 0x07
    mode = code & 0xE0
    if code == 0xB1:                        # ldxb 4*([k]&0xf)
        return k, 1
    if cls != 0x00 or mode not in (0x20, 0x40):
        return None
    size = _SIZES.get(code & 0x18)
    if size is None:
        return None
    return ((x + k) if mode == 0x40 else k), size


def trace_rows(prog: Program, packet: bytes, wirelen: int, vm: str | None = None) -> tuple[int, list[tuple[int, int, int]]]:
    """(return value, rows (index, A, X) before every instruction executed) from one VM:
    "cython", "python", or None for the one the Program runs on."""
    from . import _pyvm, program as _program
    cvm = _program._cvm
    if vm not in (None, "cython", "python"):
        raise ValueError(f"vm must be 'cython' or 'python', not {vm!r}")
    if vm == "cython" and (cvm is None or prog._decoded is None):
        raise FilterError("the compiled VM is not available")
    if vm != "python" and cvm is not None and prog._decoded is not None:
        buf = np.frombuffer(packet, np.uint8) if packet else np.zeros(0, np.uint8)
        cap = 4 * len(prog) + 16
        while True:
            rows = np.zeros(3 * cap, np.uint32)
            result, n = cvm.trace_one(prog._decoded, buf, wirelen, rows)
            if n <= cap:
                return int(result), [tuple(r) for r in rows[:3 * n].reshape(-1, 3).tolist()]
            cap = int(n)
    out: list[tuple[int, int, int]] = []
    result = _pyvm.run_one(prog._tuples, packet, wirelen, trace=out)
    return int(result), out


def trace(prog: Program, packet: Any, wirelen: int | None = None, vm: str | None = None) -> Trace:
    """The Trace of `prog` on one packet (bytes-like; wirelen defaults to its length)."""
    from .program import _wirelen, image
    pkt = packet_bytes(packet)
    wl = len(pkt) if wirelen is None else _wirelen(wirelen)
    result, rows = trace_rows(prog, pkt, wl, vm)
    insns = prog._tuples
    mem = [0] * 16
    steps = []
    n = len(rows)
    for i, (pc, a, x) in enumerate(rows):
        insn = insns[pc]
        code, jt, jf, k = insn
        last = i + 1 == n
        a2, x2 = (a, x) if last else rows[i + 1][1:]
        nxt = None if last else rows[i + 1][0]
        read = None
        past = False
        branch = None
        mw = None
        note = ""
        rng = load_range(insn, x)
        if rng is not None:
            off, size = rng
            if off + size <= len(pkt):
                read = (off, size, pkt[off:off + size])
            else:
                past = True
        cls = code & 0x07
        if cls == 0x05 and code != 0x05:
            rhs = x if code & 0x08 else k
            op = code & 0xF0
            branch = bool(a == rhs if op == 0x10 else a > rhs if op == 0x20 else a >= rhs if op == 0x30 else a & rhs)
        elif code == 0x02:
            mw = (k & 15, a)
            mem[k & 15] = a
        elif code == 0x03:
            mw = (k & 15, x)
            mem[k & 15] = x
        elif code == 0x06 or code == 0x16:
            note = f"return {result}"
        if last and code not in (0x06, 0x16):
            if past:
                note = ""
            elif code == 0x05:
                note = "loop budget spent: return 0"
            elif code & 0x07 == 0x04 and code & 0xF0 in (0x30, 0x90):
                note = "division by zero: return 0"
        steps.append(Step(pc, insn, image(insn, pc), a, x, a2, x2, mw, read, past, branch, nxt, note))
    return Trace(steps, result, rows, len(pkt))
