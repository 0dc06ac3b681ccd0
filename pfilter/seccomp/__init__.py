"""pfilter.seccomp: seccomp filters (classic BPF over `struct seccomp_data`) read, written, run and
checked with pfilter's engine.

Imports pfilter.errors, .program, .validate and the VM (pfilter._vm, or the pure-Python twin),
and this package's modules: arch (architectures, system call tables), actions (return values),
text (disassembly, assembly), policy (Policy, compiled to cBPF). Knows nothing of packets,
captures or the expression compiler.

    import pfilter.seccomp as S
    prog = S.load("filter.bpf")                         # raw struct sock_filter[] (libseccomp's export_bpf)
    recs = S.records(["read", ("write", 1, 0, 5)], arch="x86_64")
    S.run(prog, recs)                                   # numpy uint32 return values
    [str(S.Action(v)) for v in S.run(prog, recs)]       # ['ALLOW', 'ERRNO(1)']
    print(S.disasm(prog, style="libseccomp"))           # scmp_bpf_disasm's text
    S.assemble(S.disasm(prog)) == prog                  # the readable style reads back
    p = S.Policy(default=S.ALLOW, arches=["x86_64"]); p.add(S.ERRNO(1), "write", S.Arg(0, ">", 2))
    p.compile(); p.export_bpf()

A program is a pfilter.Program that the kernel's seccomp rules also accept (pfilter.validate,
seccomp=True). `run` is the VM's seccomp mode: the same loop as for packets with host-order
32-bit loads over 64-byte records (`ld #len` reads 64), the GIL released; a program that shifts
by X runs in pfilter.seccomp.kernelvm instead, since the kernel takes X modulo 32 where libpcap
(and the packet VM) gives 0 for X >= 32.
"""
from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import _pyvm
from ..errors import FilterError, InvalidProgramError
from ..program import _cvm, Program
from ..validate import BPF_MAXINSNS, SECCOMP_DATA_SIZE, validate
from . import kernelvm
from .actions import (ALLOW, ERRNO, KILL, KILL_PROCESS, KILL_THREAD, LOG, TRACE, TRAP, USER_NOTIF, Action,
                      action)
from .arch import ARCHES, X32_SYSCALL_BIT, Arch, arch, syscall_name, syscall_number
from .policy import Arg, Policy
from .text import assemble_insns, disasm_libseccomp, disasm_readable

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import NDArray

__all__ = ["SECCOMP_DATA", "ARCHES", "Arch", "Action", "Arg", "Policy", "ALLOW", "ERRNO", "KILL", "KILL_PROCESS",
           "KILL_THREAD", "LOG", "TRACE", "TRAP", "USER_NOTIF", "X32_SYSCALL_BIT", "action", "arch", "assemble",
           "disasm", "load", "record", "records", "run", "syscall_name", "syscall_number"]

#: struct seccomp_data (linux/seccomp.h), 64 bytes in host byte order (little-endian on every
#: architecture pfilter.seccomp knows): nr, arch, instruction_pointer, args[6]
SECCOMP_DATA = np.dtype([("nr", "=i4"), ("arch", "=u4"), ("instruction_pointer", "=u8"), ("args", "=u8", (6,))])
assert SECCOMP_DATA.itemsize == SECCOMP_DATA_SIZE

_INSN = struct.Struct("=HBBI")     # struct sock_filter, host byte order

#: the most bytes a raw filter has (the kernel's BPF_MAXINSNS instructions); read_raw reads one more
MAX_RAW = BPF_MAXINSNS * _INSN.size

#: the first 4 bytes of capture files (classic pcap in either byte order, with micro- or
#: nanosecond or Kuznetzov's magic; pcapng's section header block), which no filter starts with:
#: their first opcode is above 0xff
_CAPTURE_MAGIC = {bytes.fromhex(m): kind for m, kind in (
    ("a1b2c3d4", "pcap"), ("d4c3b2a1", "pcap"), ("a1b23c4d", "pcap"), ("4d3cb2a1", "pcap"),
    ("a1b2cd34", "pcap"), ("34cdb2a1", "pcap"), ("0a0d0d0a", "pcapng"))}


def read_raw(f: Any) -> bytes:
    """At most MAX_RAW + 1 bytes of a binary file object: enough to tell a filter that is too long
    (raw_problem) without reading /dev/zero to its end."""
    chunks, left = [], MAX_RAW + 1
    while left > 0:
        b = f.read(left)
        if not b:
            break
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def raw_problem(raw: bytes) -> str | None:
    """Why `raw` cannot be a raw filter before its instructions are looked at (a capture file,
    more than BPF_MAXINSNS instructions, a partial instruction), or None."""
    kind = _CAPTURE_MAGIC.get(bytes(raw[:4]))
    if kind is not None:
        return f"a {kind} capture file, not a seccomp filter (raw struct sock_filter instructions)"
    if len(raw) > MAX_RAW:
        return (f"too long for a seccomp filter: more than {BPF_MAXINSNS} instructions "
                f"({MAX_RAW} bytes)")
    if len(raw) % _INSN.size:
        return f"{len(raw)} bytes are not a whole number of {_INSN.size}-byte struct sock_filter instructions"
    return None


def load(obj: Any) -> Program:
    """A seccomp filter from raw `struct sock_filter` bytes (host byte order, what libseccomp's
    export_bpf writes), a file holding them (str or path-like; at most MAX_RAW + 1 bytes are read),
    (code, jt, jf, k) tuples or a Program; checked with the kernel's seccomp rules
    (InvalidProgramError naming the instruction; a capture file or a file too long is refused
    before)."""
    if isinstance(obj, Program):
        validate(obj.to_tuples(), seccomp=True)
        return obj
    source = None
    if isinstance(obj, (str, os.PathLike)):
        source = os.fsdecode(obj)
        with open(obj, "rb") as f:
            obj = read_raw(f)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raw = bytes(obj)
        problem = raw_problem(raw)
        if problem is not None:
            raise InvalidProgramError(f"{source}: {problem}" if source is not None else problem)
        tuples = list(_INSN.iter_unpack(raw))
    else:
        try:
            tuples = [tuple(t) for t in obj]
        except TypeError:
            raise InvalidProgramError(f"a seccomp filter is bytes, a file or (code, jt, jf, k) tuples, not "
                                      f"{type(obj).__name__}") from None
    prog = Program.from_tuples(tuples, source=source)
    validate(prog.to_tuples(), seccomp=True)
    return prog


def _record_bytes(recs: Any) -> NDArray[np.uint8]:
    if isinstance(recs, np.ndarray):
        if recs.dtype == SECCOMP_DATA:
            return np.ascontiguousarray(recs).reshape(-1).view(np.uint8)
        if recs.dtype == np.uint8 and recs.ndim == 1 and len(recs) % SECCOMP_DATA_SIZE == 0:
            return np.ascontiguousarray(recs)
        raise FilterError(f"records must be a SECCOMP_DATA array (or uint8 bytes of whole 64-byte records), "
                          f"not {recs.dtype} of shape {recs.shape}")
    if isinstance(recs, (bytes, bytearray, memoryview)):
        data = np.frombuffer(bytes(recs), dtype=np.uint8)
        if len(data) % SECCOMP_DATA_SIZE:
            raise FilterError(f"{len(data)} bytes are not whole 64-byte struct seccomp_data records")
        return data
    raise FilterError(f"records must be a SECCOMP_DATA array or bytes, not {type(recs).__name__}")


def run(program: Any, recs: Any) -> NDArray[np.uint32]:
    """The filter's return value (numpy uint32) for each struct seccomp_data record, in the VM's
    seccomp mode (GIL released), with the kernel's rules where they differ from libpcap's (a shift
    by X >= 32: see pfilter.seccomp.kernelvm). Decode a value with Action(value)."""
    prog = load(program)
    data = _record_bytes(recs)
    out = np.empty(len(data) // SECCOMP_DATA_SIZE, dtype=np.uint32)
    insns = prog.to_tuples()
    if kernelvm.needs_kernel_rules(insns):
        kernelvm.run_records(insns, data, out)
    elif _cvm is not None and prog._decoded is not None:
        _cvm.run_records(prog._decoded, prog._clear_mem, data, out)
    else:
        _pyvm.run_records(insns, data, out)
    return out


def record(syscall: str | int, *args: int, arch: str | Arch = "x86_64", instruction_pointer: int = 0) -> NDArray[np.void]:
    """One struct seccomp_data (an array of one SECCOMP_DATA) for a system call and its arguments."""
    return records([(syscall, *args)], arch=arch, instruction_pointer=instruction_pointer)


def records(calls: Iterable[Any], arch: str | Arch = "x86_64", instruction_pointer: int = 0) -> NDArray[np.void]:
    """A SECCOMP_DATA array: one record per call, a system call (name or number) or a tuple
    (syscall, arg0, ..., arg5); missing arguments are 0, negative ones two's complement."""
    from .arch import arch as get_arch
    a = get_arch(arch)
    rows = [c if isinstance(c, tuple) else (c,) for c in calls]
    out = np.zeros(len(rows), dtype=SECCOMP_DATA)
    nrs = np.empty(len(rows), dtype=np.uint32)
    for i, (sc, *args) in enumerate(rows):
        if len(args) > 6:
            raise FilterError(f"a system call has at most 6 arguments, not {len(args)}")
        nrs[i] = syscall_number(sc, a)
        for j, v in enumerate(args):
            v = int(v)
            if not -(1 << 63) <= v < (1 << 64):
                raise FilterError(f"argument {v} does not fit in 64 bits")
            out["args"][i, j] = v & 0xFFFFFFFFFFFFFFFF
    out["nr"] = nrs.view(np.int32)
    out["arch"] = a.token
    out["instruction_pointer"] = instruction_pointer & 0xFFFFFFFFFFFFFFFF
    return out


def disasm(program: Any, style: str = "readable", arch: str | Arch | None = None) -> str:
    """The filter as text: style="libseccomp" is byte for byte `scmp_bpf_disasm`'s output;
    "readable" (the default) names fields, architectures and system calls (`if (A == read) goto
    0007`) and is what `assemble` reads back. `arch` names the architecture to assume where the
    filter has not checked one."""
    prog = load(program)
    if style == "libseccomp":
        return disasm_libseccomp(prog.to_tuples())
    if style == "readable":
        return disasm_readable(prog.to_tuples(), arch)
    raise FilterError(f"disasm style must be 'libseccomp' or 'readable', not {style!r}")


def assemble(text: str, arch: str | Arch | None = None) -> Program:
    """A seccomp filter from the readable style (disasm's default output, or hand-written: labels
    `name:`, system call and architecture names); checked like `load`."""
    return load(assemble_insns(text, arch))

