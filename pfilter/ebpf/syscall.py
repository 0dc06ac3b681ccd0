"""The bpf(2) system call through ctypes: load a program (BPF_PROG_LOAD, with the verifier's log
when it refuses), run it over packets (BPF_PROG_TEST_RUN), close it.

Imports nothing from pfilter. Linux only; every failure is an OSError with the kernel's errno
(VerifierError, a subclass, carries the verifier's log).
"""
from __future__ import annotations

import ctypes
import errno as _errno
import os
import platform
import struct
from typing import Any

BPF_PROG_LOAD = 5
BPF_PROG_TEST_RUN = 10

BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_XDP = 6

# bpf(2)'s number by machine (asm-generic's 280 is the rule for the newer ports)
_NR_BPF = {"x86_64": 321, "i386": 357, "i686": 357, "aarch64": 280, "armv7l": 386, "ppc64le": 361,
           "ppc64": 361, "s390x": 351, "riscv64": 280, "loongarch64": 280, "mips64": 5315}

#: the size of union bpf_attr the calls here pass (larger than every member they use; zero-filled)
ATTR_SIZE = 128
LOG_SIZE = 1 << 24


class VerifierError(OSError):
    """The kernel's verifier refused the program; `.log` is its log (the last lines say why)."""

    log: str

    def __init__(self, err: int, log: str) -> None:
        self.log = log
        tail = "\n".join(log.rstrip().splitlines()[-12:])
        super().__init__(err, f"the kernel's verifier refused the program: {os.strerror(err)}"
                              + (f"\n{tail}" if tail else ""))


_libc: tuple[Any, int] | None = None


def _syscall() -> tuple[Any, int]:
    global _libc
    if _libc is None:
        if platform.system() != "Linux":
            raise OSError(_errno.ENOSYS, "eBPF programs load only on Linux")
        nr = _NR_BPF.get(platform.machine())
        if nr is None:
            raise OSError(_errno.ENOSYS, f"bpf(2)'s system call number on {platform.machine()} is not known")
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syscall
        fn.restype = ctypes.c_long
        fn.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
        _libc = (fn, nr)
    return _libc


def bpf(cmd: int, attr: ctypes.Array[ctypes.c_char]) -> int:
    """bpf(cmd, attr, sizeof attr); the result, or OSError with the errno."""
    fn, nr = _syscall()
    r = fn(nr, cmd, ctypes.addressof(attr), len(attr))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return int(r)


def prog_load(prog_type: int, insns: bytes, license: str = "GPL", name: str = "pfilter",
              log_level: int = 1, expected_attach_type: int = 0) -> int:
    """BPF_PROG_LOAD; a file descriptor (the caller closes it), VerifierError with the log when the
    verifier refuses (EACCES, EINVAL with a log), OSError otherwise (EPERM without privilege)."""
    code = ctypes.create_string_buffer(insns, len(insns) or 1)
    lic = ctypes.create_string_buffer(license.encode() + b"\0")
    attr = ctypes.create_string_buffer(ATTR_SIZE)
    log = ctypes.create_string_buffer(LOG_SIZE if log_level else 1)

    def fill(level: int) -> None:
        ctypes.memset(attr, 0, ATTR_SIZE)
        struct.pack_into("=IIQQIIQ", attr, 0, prog_type, len(insns) // 8, ctypes.addressof(code),
                         ctypes.addressof(lic), level, LOG_SIZE if level else 0,
                         ctypes.addressof(log) if level else 0)
        struct.pack_into("=15s", attr, 48, name.encode()[:15])
        struct.pack_into("=I", attr, 68, expected_attach_type)

    # Load without a log first (the fast path; a log of level 1 makes the verifier print every
    # instruction it walks), then again with the log when it refuses, to explain why.
    fill(0)
    try:
        return bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        if e.errno not in (_errno.EACCES, _errno.EINVAL, _errno.E2BIG, _errno.ERANGE) or not log_level:
            raise
        first = e.errno
    fill(log_level)
    try:
        return bpf(BPF_PROG_LOAD, attr)      # the kernel accepted it the second time: unusual but fine
    except OSError as e:
        text = log.value.decode(errors="replace")
        if e.errno == _errno.ENOSPC:          # the log overflowed: the first error stands, log truncated
            raise VerifierError(first, text) from None
        if text:
            raise VerifierError(e.errno, text) from None
        raise


class TestRun:
    """A reusable BPF_PROG_TEST_RUN on one loaded program: `run(data, repeat)` returns
    (return value, duration in ns per run). One attr buffer serves every call."""

    __test__ = False        # not a pytest class

    def __init__(self, fd: int, data_out: int = 0) -> None:
        self.fd = fd
        self.attr = ctypes.create_string_buffer(ATTR_SIZE)
        self.out = ctypes.create_string_buffer(data_out) if data_out else None
        fn, self.nr = _syscall()
        self.fn = fn
        self.addr = ctypes.addressof(self.attr)

    def run(self, data: bytes, repeat: int = 1) -> tuple[int, int]:
        attr = self.attr
        ctypes.memset(attr, 0, ATTR_SIZE)
        buf = ctypes.c_char_p(data)
        struct.pack_into("=IIIIQQII", attr, 0, self.fd, 0, len(data),
                         len(self.out) if self.out is not None else 0,
                         ctypes.cast(buf, ctypes.c_void_p).value or 0,
                         ctypes.addressof(self.out) if self.out is not None else 0, repeat, 0)
        if self.fn(self.nr, BPF_PROG_TEST_RUN, self.addr, ATTR_SIZE) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"BPF_PROG_TEST_RUN on {len(data)} bytes: {os.strerror(err)}")
        retval, duration = struct.unpack_from("=I", attr, 4)[0], struct.unpack_from("=I", attr, 36)[0]
        return retval, duration


def close(fd: int) -> None:
    os.close(fd)


#: union bpf_attr's `test` member as BPF_PROG_TEST_RUN reads and writes it (padded to ATTR_SIZE)
TEST_ATTR = [("prog_fd", "<u4"), ("retval", "<u4"), ("data_size_in", "<u4"), ("data_size_out", "<u4"),
             ("data_in", "<u8"), ("data_out", "<u8"), ("repeat", "<u4"), ("duration", "<u4")]


def test_run_many(fd: int, base: int, offsets: Any, sizes: Any, repeat: int = 1,
                  refused: Any = None) -> tuple[Any, Any]:
    """BPF_PROG_TEST_RUN once per packet: packet i is the `sizes[i]` bytes at address
    base + offsets[i] (numpy int arrays). Returns (return values, ns per run) as numpy uint32
    arrays. One attr per packet is filled at once with numpy and the kernel writes the results
    back into it, so the loop here only makes the calls. OSError names the packet it failed on,
    unless `refused` (a bool array) is given: then a packet the kernel refuses with EINVAL is
    marked there (its return value 0) and the loop goes on."""
    import numpy as np
    n = len(sizes)
    dtype = np.dtype({"names": [f for f, _ in TEST_ATTR], "formats": [t for _, t in TEST_ATTR],
                      "offsets": [0, 4, 8, 12, 16, 24, 32, 36], "itemsize": ATTR_SIZE})
    attrs = np.zeros(n, dtype=dtype)
    attrs["prog_fd"] = fd
    attrs["data_size_in"] = sizes
    attrs["data_in"] = np.asarray(offsets, dtype=np.uint64) + np.uint64(base)
    attrs["repeat"] = repeat
    fn, nr = _syscall()
    addr = attrs.ctypes.data
    for i in range(n):
        if fn(nr, BPF_PROG_TEST_RUN, addr + i * ATTR_SIZE, ATTR_SIZE) < 0:
            err = ctypes.get_errno()
            if refused is not None and err == _errno.EINVAL:
                refused[i] = True
                continue
            raise OSError(err, f"BPF_PROG_TEST_RUN on packet {i} ({int(sizes[i])} bytes): {os.strerror(err)}")
    return attrs["retval"].copy(), attrs["duration"].copy()
