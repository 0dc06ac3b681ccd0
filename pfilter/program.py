"""Program: a validated classic BPF program, and the ways in and out of it.

Imports pfilter.errors, .opcodes, .validate, .batch and one VM (pfilter._vm, or the pure-Python
twin pfilter._pyvm when PFILTER_PUREPYTHON=1 or the extension is not built). Knows nothing of the
compiler or of capture files.

Text formats are tcpdump's: `dump("d")` is `tcpdump -d` (libpcap's bpf_image), `dump("dd")` is
`-dd` (C initializers), `dump("ddd")` is `-ddd` (decimal, count first); `from_text` reads `-dd`,
`-ddd`, and the one-line `N,code jt jf k,...` form of bpf_asm/iptables.
"""
from __future__ import annotations

import operator
import re
import struct
from typing import TYPE_CHECKING

import numpy as np

from . import _impl
from .batch import PacketBatch, first_bad_packet, packet_bytes
from .errors import FilterError, InvalidProgramError
from .opcodes import BPF_MAXINSNS, SKF_AD_OFF
from .validate import validate

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any, Literal

    from numpy.typing import NDArray

INSN_DTYPE = np.dtype([("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])

_cvm = _impl.native("pfilter._vm")
if _cvm is None and not _impl.PURE:  # extension not built: the twin runs, and we say so
    import warnings
    warnings.warn("pfilter's compiled VM is not built (pip install . or pip install -e .); "
                  "using the pure-Python VM, which is far slower", RuntimeWarning, stacklevel=2)
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


# Numbers in program text: ASCII decimal or 0x hex only (not int()'s Unicode digits or `1_000`).
_NUM = r"(0[xX][0-9a-fA-F]+|[0-9]+)"
_DD_INSN = r"\{\s*" + r"\s*,\s*".join([_NUM] * 4) + r"\s*\}\s*,?"
_DD_ONE = re.compile(_DD_INSN, re.ASCII)
_DD_LINE = re.compile(r"(?:\s*" + _DD_INSN + r")+", re.ASCII)   # one or more on a line
_DDD_LINE = re.compile(r"\s+".join([_NUM] * 4), re.ASCII)
_COUNT = re.compile(_NUM, re.ASCII)


def _number(text: str) -> int:
    return int(text, 16) if text[:2] in ("0x", "0X") else int(text, 10)


def _insn_rows(rows: Any, signed_k: bool) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) rows checked field by field (integers only, each in its field's range;
    k may be negative down to -2**31 when signed_k) -> list of unsigned tuples."""
    out = []
    for i, t in enumerate(rows):
        try:
            code, jt, jf, k = (operator.index(v) for v in t)
        except (TypeError, ValueError):
            raise InvalidProgramError(f"not a (code, jt, jf, k) tuple of integers: {t!r}", i) from None
        if not (0 <= code <= 0xFFFF and 0 <= jt <= 0xFF and 0 <= jf <= 0xFF):
            raise InvalidProgramError(f"field out of range in {t!r}", i)
        if not (-(1 << 31) if signed_k else 0) <= k <= 0xFFFFFFFF:
            raise InvalidProgramError(f"k out of range in {t!r}", i)
        out.append((code, jt, jf, k & 0xFFFFFFFF))
    return out


class Program:
    """A validated cBPF program. Immutable: `instructions` is a read-only numpy structured array
    (code u2, jt u1, jf u1, k u4), laid out exactly like `struct bpf_insn`."""

    __slots__ = ("instructions", "_raw", "_decoded", "_clear_mem", "_tuples", "_rejects_all", "linktype",
                 "snaplen", "source", "backend", "_native", "_compiled", "_origins")

    instructions: NDArray[np.void]
    linktype: int | None
    snaplen: int | None
    source: str | None

    def __init__(self, instructions: Iterable[tuple[int, int, int, int]] | NDArray[np.void], *,
                 linktype: int | None = None, snaplen: int | None = None, source: str | None = None,
                 max_insns: int = BPF_MAXINSNS) -> None:
        if isinstance(instructions, np.ndarray) and instructions.dtype == INSN_DTYPE:
            arr = np.array(instructions, dtype=INSN_DTYPE, copy=True).reshape(-1)
        else:
            try:
                rows = _insn_rows(instructions, signed_k=False)
            except TypeError:
                raise InvalidProgramError(f"a program is a sequence of (code, jt, jf, k) tuples, not "
                                          f"{type(instructions).__name__}") from None
            arr = np.array(rows, dtype=INSN_DTYPE).reshape(-1)
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
        self.backend = "vm"      # pfilter.backend: which engine runs it (with_backend)
        self._native = None      # its NativeProgram, once jit() made it
        self._compiled = None    # the compiler's arguments, for provenance (pfilter.explain)
        self._origins = None     # per instruction, the source spans it came from (origins)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tuples(cls, tuples: Iterable[tuple[int, int, int, int]], **meta: Any) -> Program:
        """A Program from (code, jt, jf, k) tuples (foreign programs welcome: they are validated)."""
        try:
            rows = _insn_rows(tuples, signed_k=True)
        except TypeError:
            raise InvalidProgramError(f"a program is a sequence of (code, jt, jf, k) tuples, not "
                                      f"{type(tuples).__name__}") from None
        return cls(np.array(rows, dtype=INSN_DTYPE).reshape(-1), **meta)

    @classmethod
    def from_asm(cls, text: str, **meta: Any) -> Program:
        """A Program from the Linux kernel's bpf_asm syntax (labels, `jeq #k, Lt, Lf`, ...; see
        pfilter.asm); `dump("asm")` writes it."""
        from .asm import assemble
        return cls.from_tuples(assemble(text), **meta)

    @classmethod
    def from_text(cls, text: str, **meta: Any) -> Program:
        """A Program from `tcpdump -dd` or `-ddd` output (or `N,code jt jf k,...`).

        Every non-blank line must be one instruction (`{ code, jt, jf, k },` or `code jt jf k`,
        numbers in ASCII decimal or 0x hex); any other line raises InvalidProgramError naming it."""
        if not isinstance(text, str):
            raise InvalidProgramError(f"program text must be a str, not {type(text).__name__}")
        stripped = text.strip()
        if not stripped:
            raise InvalidProgramError("empty program text")
        if "," in stripped and "\n" not in stripped and not stripped.startswith("{"):
            # bpf_asm / xt_bpf: `N,code jt jf k,code jt jf k,...` (a trailing comma allowed)
            parts = [p.strip() for p in stripped.split(",")]
            if parts[-1] == "":
                parts.pop()
            lines = [(f"item {n + 1}", part) for n, part in enumerate(parts)]
        else:
            lines = [(f"line {n}", line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        dd = lines[0][1].startswith("{")
        if not dd:
            where, head = lines[0]
            if not _COUNT.fullmatch(head):
                raise InvalidProgramError(f"{where}: {head!r} is not an instruction count "
                                          "(`tcpdump -ddd` output starts with one)")
            count, lines = _number(head), lines[1:]
        pattern, form = (_DD_LINE, "{ code, jt, jf, k },") if dd else (_DDD_LINE, "code jt jf k")
        insns = []
        for where, line in lines:
            m = pattern.fullmatch(line)
            if m is None:
                raise InvalidProgramError(f"{where}: {line!r} is not an instruction `{form}`")
            found = _DD_ONE.findall(line) if dd else [m.groups()]
            insns.extend(tuple(_number(f) for f in row) for row in found)
        if not dd and count != len(insns):
            raise InvalidProgramError(f"program text announces {count} instructions but holds {len(insns)}")
        return cls.from_tuples(insns, **meta)

    # ------------------------------------------------------------------ views
    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        # native code does not travel (pickle, copy): the copy compiles its own on first use
        return None, {s: getattr(self, s) for s in self.__slots__ if s != "_native" and hasattr(self, s)}

    def __setstate__(self, state: tuple[None, dict[str, Any]]) -> None:
        for name, value in state[1].items():
            setattr(self, name, value)
        self._native = None

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

    def dump(self, fmt: Literal["d", "dd", "ddd", "asm"] = "d") -> str:
        """Text identical to `tcpdump -d` ("d"), `-dd` ("dd") or `-ddd` ("ddd"), or the kernel's
        bpf_asm syntax ("asm"), newline-terminated."""
        if fmt == "d":
            lines = [image(t, i) for i, t in enumerate(self._tuples)]
        elif fmt == "dd":
            lines = [f"{{ 0x{c:x}, {jt}, {jf}, 0x{k:08x} }}," for c, jt, jf, k in self._tuples]
        elif fmt == "ddd":
            lines = [str(len(self))] + [f"{c} {jt} {jf} {k}" for c, jt, jf, k in self._tuples]
        elif fmt == "asm":
            from .asm import disassemble
            return disassemble(self._tuples)
        else:
            raise ValueError(f"dump format must be 'd', 'dd', 'ddd' or 'asm', not {fmt!r}")
        return "\n".join(lines) + "\n"

    def sock_fprog(self) -> bytes:
        """The `struct sock_filter[]` bytes Linux takes in SO_ATTACH_FILTER (native byte order)."""
        if len(self) > BPF_MAXINSNS:
            raise InvalidProgramError(f"the kernel takes at most {BPF_MAXINSNS} instructions; this program has {len(self)}")
        return b"".join(struct.pack("=HBBI", *t) for t in self._tuples)

    def to_ebpf(self, hook: Literal["xdp", "tc", "socket"] = "xdp", on_match: str | int | None = None,
                on_miss: str | int | None = None) -> Any:
        """An eBPF program (pfilter.ebpf.EbpfProgram) for the kernel hook giving this program's
        verdicts: XDP ("pass"/"drop" by default), tc ("ok"/"shot") or a socket filter; `bytes()`
        of it is the struct bpf_insn array, `.object()` an ELF object for bpftool and iproute2."""
        from .ebpf import to_ebpf
        return to_ebpf(self, hook, on_match, on_miss)

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

    # ------------------------------------------------------------------ looking inside
    def trace(self, packet: bytes | bytearray | memoryview, wirelen: int | None = None) -> Any:
        """The instructions executed on one packet (pfilter.trace.Trace: `.steps`, `.result`)."""
        from .trace import trace
        return trace(self, packet, wirelen)

    def explain(self, packet: bytes | bytearray | memoryview, wirelen: int | None = None) -> Any:
        """Why the expression accepts or rejects one packet (pfilter.explain.Explanation:
        `.verdict`, `.span` of the deciding primitive, `.primitive_verdict`)."""
        from .explain import explain
        return explain(self, packet, wirelen)

    @property
    def origins(self) -> Any:
        """Per instruction, the frozenset of (start, end) spans of the expression's primitives
        it came from (None for a program not compiled from an expression)."""
        from .explain import origins
        return origins(self)

    # ------------------------------------------------------------------ engines
    def jit(self) -> Any:
        """Machine code for this program (pfilter.native.NativeProgram, needs the `native` extra:
        llvmlite): the same run / run_batch / run_indexed / match_batch, identical results;
        cached in memory by program hash."""
        if self._native is None:
            from .native import jit
            self._native = jit(self)
        return self._native

    def with_backend(self, backend: Literal["vm", "native", "auto"]) -> Program:
        """This program, run by `backend` ("vm", "native" or "auto", see pfilter.backend) from
        run_batch / run_indexed / match_batch (and run, for "native")."""
        import copy
        from . import backend as _backend
        if _backend.check(backend) == "native":
            _backend.require_native()
        if backend == self.backend:
            return self
        twin = copy.copy(self)
        twin.backend = backend
        return twin

    # ------------------------------------------------------------------ running
    def run(self, packet: bytes | bytearray | memoryview, wirelen: int | None = None) -> int:
        """The program's return value (0 = reject) on one packet; wirelen defaults to len(packet)."""
        if self.backend == "native":
            return int(self.jit().run(packet, wirelen))
        packet = packet_bytes(packet)
        wl = len(packet) if wirelen is None else _wirelen(wirelen)
        if _cvm is not None and self._decoded is not None:
            return int(_cvm.run_one(self._decoded, np.frombuffer(packet, np.uint8) if packet else np.zeros(0, np.uint8), wl))
        return _pyvm.run_one(self._tuples, packet, wl)

    def check_linktype(self, linktypes: Iterable[int], what: str = "the packets") -> None:
        """Refuse (FilterError) link types other than the one the program was compiled for: its
        verdicts on such packets mean nothing (an Ethernet `tcp` reads a raw IP packet's bytes as
        an Ethernet header). A program of no known link type (from_tuples without one) runs on
        any."""
        if self.linktype is None:
            return
        from .linktypes import LINKTYPE_TO_DLT, linktype_name
        want = LINKTYPE_TO_DLT.get(int(self.linktype), int(self.linktype))
        for lt in linktypes:
            if LINKTYPE_TO_DLT.get(int(lt), int(lt)) != want:
                raise FilterError(
                    f"this program was compiled for link type {linktype_name(want)}, but {what} are "
                    f"{linktype_name(int(lt))}: compile it for that link type (or give the expression "
                    f"as text to filter_file and classify, which compile it for each link type)")

    def _check_batch(self, batch: PacketBatch) -> None:
        if self.linktype is None or not isinstance(batch, PacketBatch):
            return                  # (what is no PacketBatch: _arrays says so)
        lts = batch.linktypes
        if lts is None or not len(lts):
            self.check_linktype([batch.linktype])
        else:
            lo, hi = int(lts.min()), int(lts.max())
            self.check_linktype([lo] if lo == hi else np.unique(lts).tolist())

    def run_batch(self, batch: PacketBatch, out: NDArray[np.uint32] | None = None) -> NDArray[np.uint32]:
        """One uint32 return value per packet of a PacketBatch (FilterError when its packets are
        of a link type other than the program's: check_linktype)."""
        self._check_batch(batch)
        return self._run_batch(batch, out)

    def _run_batch(self, batch: PacketBatch, out: NDArray[np.uint32] | None = None) -> NDArray[np.uint32]:
        """run_batch without the link type check (callers that chose the program per link type)."""
        data, offsets, caplen, wirelen = _arrays(batch, "run_batch")
        n = len(offsets)
        if self.backend != "vm" and _use_native(self.backend, n):
            return self.jit().run_batch(batch, out)  # type: ignore[no-any-return]
        out = np.empty(n, dtype=np.uint32) if out is None else _out(out, n)
        if _cvm is not None and self._decoded is not None:
            bad = _cvm.run_batch(self._decoded, self._clear_mem, data, offsets, caplen, wirelen, out)
        else:
            bad = first_bad_packet(data, offsets, caplen)
            if bad < 0:
                _pyvm.run_batch(self._tuples, data, offsets, caplen, wirelen, out)
        if bad >= 0:
            raise batch.bounds_error(bad)
        return out

    def run_indexed(self, batch: PacketBatch, index: NDArray[np.integer[Any]],
                    out: NDArray[np.uint32]) -> NDArray[np.uint32]:
        """Run only packets `index` (integer array, each in 0..len(batch)-1) of the batch, writing
        out[index]; out is a uint32 array of len(batch). FilterError as run_batch."""
        self._check_batch(batch)
        return self._run_indexed(batch, index, out)

    def _run_indexed(self, batch: PacketBatch, index: NDArray[np.integer[Any]],
                     out: NDArray[np.uint32]) -> NDArray[np.uint32]:
        data, offsets, caplen, wirelen = _arrays(batch, "run_indexed")
        n = len(offsets)
        if self.backend != "vm" and _use_native(self.backend, int(np.size(index))):
            return self.jit().run_indexed(batch, index, out)  # type: ignore[no-any-return]
        index = _indices(index, n)
        out = _out(out, n)
        if _cvm is not None and self._decoded is not None:
            bad = _cvm.run_indexed(self._decoded, self._clear_mem, data, offsets, caplen, wirelen, index, out)
        else:
            bad = first_bad_packet(data, offsets, caplen, index)
            if bad < 0:
                for i in index:
                    o = int(offsets[i])
                    out[i] = _pyvm.run_one(self._tuples, data[o:o + int(caplen[i])].tobytes(), int(wirelen[i]))
        if bad >= 0:
            raise batch.bounds_error(bad)
        return out

    def match_batch(self, batch: PacketBatch) -> NDArray[np.bool_]:
        """One bool per packet: did the program accept it (nonzero return)? FilterError as
        run_batch."""
        return self.run_batch(batch) != 0

    def count_steps(self, batch: PacketBatch) -> NDArray[np.uint64]:
        """Instructions executed per packet (uint64 array): the program's path lengths."""
        data, offsets, caplen, wirelen = _arrays(batch, "count_steps")
        steps = np.zeros(len(offsets), dtype=np.uint64)
        if _cvm is not None and self._decoded is not None:
            bad = _cvm.count_steps(self._decoded, data, offsets, caplen, wirelen, steps)
        else:
            bad = first_bad_packet(data, offsets, caplen)
            if bad < 0:
                for i in range(len(offsets)):
                    counter = [0]
                    o = int(offsets[i])
                    _pyvm.run_one(self._tuples, data[o:o + int(caplen[i])].tobytes(), int(wirelen[i]), counter)
                    steps[i] = counter[0]
        if bad >= 0:
            raise batch.bounds_error(bad)
        return steps


def _use_native(backend: str, packets: int) -> bool:
    from .backend import use_native
    return use_native(backend, packets)


def _arrays(batch: object, what: str) -> tuple[Any, Any, Any, Any]:
    """The batch's arrays for a VM run (FilterError for anything but an intact PacketBatch)."""
    if not isinstance(batch, PacketBatch):
        raise FilterError(f"{what} needs a PacketBatch, not {type(batch).__name__}")
    return batch.native_arrays()


def _out(out: object, n: int) -> Any:
    """`out` when it is a writable, contiguous uint32 array of n entries; else FilterError."""
    if not (isinstance(out, np.ndarray) and out.dtype == np.uint32 and out.shape == (n,)
            and out.flags.c_contiguous and out.flags.writeable):
        what = (f"{out.dtype} array of shape {out.shape}" if isinstance(out, np.ndarray)
                else type(out).__name__)
        raise FilterError(f"out must be a writable contiguous uint32 array of {n} entries, not {what}")
    return out


def _indices(index: Any, n: int) -> Any:
    """A private int64 copy of `index` (integers, each in 0..n-1); else FilterError."""
    arr = np.asarray(index)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise FilterError(f"packet indices must be a 1-D integer array, not {arr.dtype} of shape {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
        raise FilterError(f"packet indices must lie in 0..{n - 1}")
    return np.array(arr, dtype=np.int64, copy=True)


def _wirelen(wirelen: object) -> int:
    try:
        wl = operator.index(wirelen)
    except TypeError:
        raise FilterError(f"wirelen must be an integer, not {type(wirelen).__name__}") from None
    if not 0 <= wl <= 0xFFFFFFFF:
        raise FilterError(f"wirelen must lie in 0..{0xFFFFFFFF}, not {wl}")
    return wl


def matches_unchecked(prog: Any, batch: PacketBatch) -> NDArray[np.bool_]:
    """prog.match_batch(batch) for a caller that chose prog for the batch's link type itself
    (a ProgramSet or RuleSet: per link type, or the one a forced link type asks for)."""
    if isinstance(prog, Program):
        return prog._run_batch(batch) != 0
    return prog.match_batch(batch)  # type: ignore[no-any-return]


def run_indexed_unchecked(prog: Any, batch: PacketBatch, index: Any, out: Any) -> NDArray[np.uint32]:
    """prog.run_indexed for such a caller (matches_unchecked)."""
    if isinstance(prog, Program):
        return prog._run_indexed(batch, index, out)
    return prog.run_indexed(batch, index, out)  # type: ignore[no-any-return]
