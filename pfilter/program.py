"""Program: a validated classic BPF program, and the ways in and out of it.

Imports pfilter.errors, .opcodes, .validate, .batch and one VM (pfilter._vm, or the pure-Python
twin pfilter._pyvm when PFILTER_PUREPYTHON=1 or the extension is not built). Knows nothing of the
compiler or of capture files.

Text formats are tcpdump's: `dump("d")` is `tcpdump -d` (libpcap's bpf_image), `dump("dd")` is
`-dd` (C initializers), `dump("ddd")` is `-ddd` (decimal, count first); `from_text` reads `-dd`,
`-ddd`, and the one-line `N,code jt jf k,...` form of bpf_asm/iptables.
"""
from __future__ import annotations

import os
import re
import struct
from typing import TYPE_CHECKING

import numpy as np

from .batch import PacketBatch
from .errors import InvalidProgramError
from .opcodes import BPF_MAXINSNS, SKF_AD_OFF
from .validate import validate

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Literal

    from numpy.typing import NDArray

INSN_DTYPE = np.dtype([("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])

_PURE = os.environ.get("PFILTER_PUREPYTHON", "") not in ("", "0")
if not _PURE:
    try:
        from . import _vm as _cvm
    except ImportError:  # extension not built: fall back to the twin, and say so
        import warnings
        warnings.warn("pfilter's compiled VM is not built (pip install . or pip install -e .); "
                      "using the pure-Python VM, which is about 1000x slower", RuntimeWarning, stacklevel=2)
        _cvm = None
else:
    _cvm = None
from . import _pyvm

VM_NAME = "cython" if _cvm is not None else "python"

# Linux SKF_AD_* metadata offsets, by name as libpcap's bpf_image prints them.
_SKF_NAMES = {0: "proto", 4: "type", 8: "ifidx", 12: "nla", 16: "nlan", 20: "mark", 24: "queue",
              28: "hatype", 32: "rxhash", 36: "cpu", 40: "xor_x", 44: "vlan_tci", 48: "vlanp",
              52: "poff", 56: "random", 60: "vlan_tpid"}
_SKF_BASE = SKF_AD_OFF & 0xFFFFFFFF


def _s32(v):
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _abs_operand(k):
    if _SKF_BASE <= k < _SKF_BASE + 64 and (k - _SKF_BASE) in _SKF_NAMES:
        return f"[{_SKF_NAMES[k - _SKF_BASE]}]"
    return f"[{_s32(k)}]"


# opcode -> (mnemonic, operand formatter); mirrors libpcap's bpf_image()
_IMAGE = {
    0x06: ("ret", lambda k: f"#{_s32(k)}"), 0x16: ("ret", lambda k: ""),
    0x20: ("ld", _abs_operand), 0x28: ("ldh", _abs_operand), 0x30: ("ldb", _abs_operand),
    0x80: ("ld", lambda k: "#pktlen"),
    0x40: ("ld", lambda k: f"[x + {_s32(k)}]"), 0x48: ("ldh", lambda k: f"[x + {_s32(k)}]"),
    0x50: ("ldb", lambda k: f"[x + {_s32(k)}]"),
    0x00: ("ld", lambda k: f"#0x{k:x}"), 0x01: ("ldx", lambda k: f"#0x{k:x}"),
    0xB1: ("ldxb", lambda k: f"4*([{_s32(k)}]&0xf)"),
    0x60: ("ld", lambda k: f"M[{_s32(k)}]"), 0x61: ("ldx", lambda k: f"M[{_s32(k)}]"),
    0x02: ("st", lambda k: f"M[{_s32(k)}]"), 0x03: ("stx", lambda k: f"M[{_s32(k)}]"),
    0x15: ("jeq", lambda k: f"#0x{k:x}"), 0x25: ("jgt", lambda k: f"#0x{k:x}"),
    0x35: ("jge", lambda k: f"#0x{k:x}"), 0x45: ("jset", lambda k: f"#0x{k:x}"),
    0x1D: ("jeq", lambda k: "x"), 0x2D: ("jgt", lambda k: "x"), 0x3D: ("jge", lambda k: "x"),
    0x4D: ("jset", lambda k: "x"),
    0x84: ("neg", lambda k: ""), 0x07: ("tax", lambda k: ""), 0x87: ("txa", lambda k: ""),
}
for _code, _name in ((0x00, "add"), (0x10, "sub"), (0x20, "mul"), (0x30, "div"), (0x90, "mod"),
                     (0x50, "and"), (0x40, "or"), (0xA0, "xor"), (0x60, "lsh"), (0x70, "rsh")):
    _IMAGE[0x04 | _code | 0x08] = (_name, lambda k: "x")
    if _name in ("and", "or", "xor"):
        _IMAGE[0x04 | _code] = (_name, lambda k: f"#0x{k:x}")
    else:
        _IMAGE[0x04 | _code] = (_name, lambda k: f"#{_s32(k)}")


def image(insn, n):
    """One line of `tcpdump -d`: instruction `insn` = (code, jt, jf, k) at index n."""
    code, jt, jf, k = insn
    if code == 0x05:
        op, operand = "ja", str(_s32(n + 1 + k))
    elif code in _IMAGE:
        op, fmt = _IMAGE[code]
        operand = fmt(k)
    else:
        op, operand = "unimp", f"0x{code:x}"
    if code & 0x07 == 0x05 and code & 0xF0 != 0x00:
        return f"({n:03d}) {op:<8} {operand:<16} jt {n + 1 + jt}\tjf {n + 1 + jf}"
    return f"({n:03d}) {op:<8} {operand}"


_DD_LINE = re.compile(r"\{\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*\}")


class Program:
    """A validated cBPF program. Immutable: `instructions` is a read-only numpy structured array
    (code u2, jt u1, jf u1, k u4), laid out exactly like `struct bpf_insn`."""

    __slots__ = ("instructions", "_raw", "_decoded", "_clear_mem", "_tuples", "_rejects_all", "linktype",
                 "snaplen", "source")

    instructions: NDArray[np.void]
    linktype: int | None
    snaplen: int | None
    source: str | None

    def __init__(self, instructions: Iterable[tuple[int, int, int, int]] | NDArray[np.void], *,
                 linktype: int | None = None, snaplen: int | None = None, source: str | None = None,
                 max_insns: int = BPF_MAXINSNS) -> None:
        arr = np.array(instructions, dtype=INSN_DTYPE, copy=True).reshape(-1)
        tuples = [tuple(int(v) for v in row) for row in arr.tolist()]
        validate(tuples, max_insns)
        arr.flags.writeable = False
        self.instructions = arr
        self._raw = np.frombuffer(arr.tobytes(), dtype=np.uint8)
        if _cvm is not None:
            self._decoded = np.frombuffer(_cvm.decode(self._raw), dtype=np.uint8)
            self._clear_mem = bool(_cvm.reads_scratch(self._raw))
        else:
            self._decoded, self._clear_mem = None, True
        self._tuples = tuples
        self._rejects_all = None
        self.linktype = linktype
        self.snaplen = snaplen
        self.source = source

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tuples(cls, tuples: Iterable[tuple[int, int, int, int]], **meta: Any) -> Program:
        """A Program from (code, jt, jf, k) tuples (foreign programs welcome: they are validated)."""
        rows = []
        for i, t in enumerate(tuples):
            try:
                code, jt, jf, k = (int(v) for v in t)
            except (TypeError, ValueError):
                raise InvalidProgramError(f"not a (code, jt, jf, k) tuple: {t!r}", i) from None
            if not (0 <= code <= 0xFFFF and 0 <= jt <= 0xFF and 0 <= jf <= 0xFF):
                raise InvalidProgramError(f"field out of range in {t!r}", i)
            if not -(1 << 31) <= k <= 0xFFFFFFFF:
                raise InvalidProgramError(f"k out of range in {t!r}", i)
            rows.append((code, jt, jf, k & 0xFFFFFFFF))
        return cls(rows, **meta)

    @classmethod
    def from_text(cls, text: str, **meta: Any) -> Program:
        """A Program from `tcpdump -dd` or `-ddd` output (or `N,code jt jf k,...`)."""
        text = text.strip()
        if not text:
            raise InvalidProgramError("empty program text")
        found = _DD_LINE.findall(text)
        if found:
            return cls.from_tuples([tuple(int(f, 0) for f in row) for row in found], **meta)
        if "," in text and "\n" not in text:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            head, rows = parts[0], parts[1:]
        else:
            lines = [l.strip() for l in text.splitlines() if l.strip()]
            head, rows = lines[0], lines[1:]
        try:
            count = int(head)
            insns = [tuple(int(f) for f in r.split()) for r in rows]
        except ValueError:
            raise InvalidProgramError("program text is neither `-dd` nor `-ddd` output") from None
        if any(len(r) != 4 for r in insns):
            raise InvalidProgramError("each instruction needs 4 numbers: code jt jf k")
        if count != len(insns):
            raise InvalidProgramError(f"program text announces {count} instructions but holds {len(insns)}")
        return cls.from_tuples(insns, **meta)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self._tuples)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Program) and self._tuples == other._tuples

    def __hash__(self) -> int:
        return hash(tuple(self._tuples))

    def __repr__(self) -> str:
        return f"<Program {len(self)} instructions>"

    def to_tuples(self) -> list[tuple[int, int, int, int]]:
        return list(self._tuples)

    def dump(self, fmt: Literal["d", "dd", "ddd"] = "d") -> str:
        """Text identical to `tcpdump -d` ("d"), `-dd` ("dd") or `-ddd` ("ddd"), newline-terminated."""
        if fmt == "d":
            lines = [image(t, i) for i, t in enumerate(self._tuples)]
        elif fmt == "dd":
            lines = [f"{{ 0x{c:x}, {jt}, {jf}, 0x{k:08x} }}," for c, jt, jf, k in self._tuples]
        elif fmt == "ddd":
            lines = [str(len(self))] + [f"{c} {jt} {jf} {k}" for c, jt, jf, k in self._tuples]
        else:
            raise ValueError(f"dump format must be 'd', 'dd' or 'ddd', not {fmt!r}")
        return "\n".join(lines) + "\n"

    def sock_fprog(self) -> bytes:
        """The `struct sock_filter[]` bytes Linux takes in SO_ATTACH_FILTER (native byte order)."""
        if len(self) > BPF_MAXINSNS:
            raise InvalidProgramError(f"the kernel takes at most {BPF_MAXINSNS} instructions; this program has {len(self)}")
        return b"".join(struct.pack("=HBBI", *t) for t in self._tuples)

    @property
    def rejects_all(self) -> bool:
        """True when the program provably returns 0 for every packet."""
        if self._rejects_all is None:
            if all(c != 0x16 and not (c == 0x06 and k) for c, _, _, k in self._tuples):
                self._rejects_all = True
            else:
                try:
                    from .optimizer import rejects_all
                except ImportError:
                    self._rejects_all = False
                else:
                    self._rejects_all = bool(rejects_all(self._tuples))
        return self._rejects_all

    # ------------------------------------------------------------------ running
    def run(self, packet: bytes | bytearray | memoryview, wirelen: int | None = None) -> int:
        """The program's return value (0 = reject) on one packet; wirelen defaults to len(packet)."""
        packet = bytes(packet)
        wl = len(packet) if wirelen is None else int(wirelen)
        if _cvm is not None and self._decoded is not None:
            return int(_cvm.run_one(self._decoded, np.frombuffer(packet, np.uint8) if packet else np.zeros(0, np.uint8), wl))
        return _pyvm.run_one(self._tuples, packet, wl)

    def run_batch(self, batch: PacketBatch, out: NDArray[np.uint32] | None = None) -> NDArray[np.uint32]:
        """One uint32 return value per packet of a PacketBatch."""
        if not isinstance(batch, PacketBatch):
            raise TypeError(f"run_batch needs a PacketBatch, not {type(batch).__name__}")
        n = len(batch)
        if out is None:
            out = np.empty(n, dtype=np.uint32)
        if _cvm is not None and self._decoded is not None:
            _cvm.run_batch(self._decoded, self._clear_mem, batch.data, batch.offsets, batch.caplen, batch.wirelen, out)
        else:
            _pyvm.run_batch(self._tuples, batch.data, batch.offsets, batch.caplen, batch.wirelen, out)
        return out

    def run_indexed(self, batch: PacketBatch, index: NDArray[np.integer[Any]],
                    out: NDArray[np.uint32]) -> NDArray[np.uint32]:
        """Run only packets `index` (int64 array) of the batch, writing out[index]."""
        index = np.ascontiguousarray(index, dtype=np.int64)
        if _cvm is not None and self._decoded is not None:
            _cvm.run_indexed(self._decoded, self._clear_mem, batch.data, batch.offsets, batch.caplen, batch.wirelen,
                             index, out)
        else:
            for i in index:
                o = int(batch.offsets[i])
                out[i] = _pyvm.run_one(self._tuples, batch.data[o:o + int(batch.caplen[i])].tobytes(),
                                       int(batch.wirelen[i]))
        return out

    def match_batch(self, batch: PacketBatch) -> NDArray[np.bool_]:
        """One bool per packet: did the program accept it (nonzero return)?"""
        return self.run_batch(batch) != 0

    def count_steps(self, batch: PacketBatch) -> NDArray[np.uint64]:
        """Instructions executed per packet (uint64 array): the program's path lengths."""
        steps = np.zeros(len(batch), dtype=np.uint64)
        if _cvm is not None and self._decoded is not None:
            _cvm.count_steps(self._decoded, batch.data, batch.offsets, batch.caplen, batch.wirelen, steps)
            return steps
        for i in range(len(batch)):
            counter = [0]
            _pyvm.run_one(self._tuples, batch.packet(i), int(batch.wirelen[i]), counter)
            steps[i] = counter[0]
        return steps
