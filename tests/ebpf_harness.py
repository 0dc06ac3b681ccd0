"""Test-only helpers for the eBPF tests: the kernel as a reference (skip on a developer machine
without it, FAIL when CI=true unless the refusal is the verifier's), and a harness that runs up
to 31 emitted programs, unchanged, on one packet per BPF_PROG_TEST_RUN.

The harness is one program of the same hook whose main function calls each emitted program as a
bpf-to-bpf subprogram (its instructions byte for byte, entered with the context in R1, as the
kernel enters a program) and sets bit i of its return value when program i returned its
`on_match` value; bit 31 flags a program that returned neither verdict. One test run then gives
31 programs' verdicts on a packet: the corpus test needs (programs x packets) verdicts and a
test run costs microseconds of system call.
"""
import errno
import os

import numpy as np
import pytest

from reference import IN_CI

from pfilter.ebpf import insn as I
from pfilter.ebpf import syscall

PER_HARNESS = 31
BPF_PSEUDO_CALL = 1
ERROR_BIT = 1 << 31

_KERNEL = {}


def require_kernel():
    """Skip (fail when CI=true) unless the running kernel loads and test-runs an XDP program."""
    if "ok" not in _KERNEL:
        try:
            fd = syscall.prog_load(syscall.BPF_PROG_TYPE_XDP, I.encode([I.mov64(I.R0, imm=2), I.exit_()]))
            try:
                syscall.TestRun(fd).run(bytes(60))
            finally:
                os.close(fd)
            _KERNEL["ok"] = None
        except OSError as e:
            _KERNEL["ok"] = f"the kernel does not load or run eBPF here ({e}); run as root on Linux"
    if _KERNEL["ok"]:
        (pytest.fail if IN_CI else pytest.skip)(_KERNEL["ok"] + (" (CI=true: the CI machine must)" if IN_CI else ""))


def harness(programs):
    """eBPF instructions running each EbpfProgram of `programs` (one hook, at most 31) as a
    subprogram; returns a mask of their matches (bit 31: a return value that is no verdict)."""
    assert 0 < len(programs) <= PER_HARNESS and len({p.hook for p in programs}) == 1
    main = [I.mov64(I.R6, I.R1), I.mov32(I.R7, imm=0)]
    calls = []
    for i, p in enumerate(programs):
        main.append(I.mov64(I.R1, I.R6))
        calls.append(len(main))
        main.append(I.Insn(I.BPF_JMP | I.BPF_CALL, 0, BPF_PSEUDO_CALL, 0, 0))
        main += [I.jmp(I.BPF_JNE, I.R0, imm=p.match_value, off=2),
                 I.alu32(I.BPF_OR, I.R7, imm=1 << i),
                 I.ja(2),
                 I.jmp(I.BPF_JEQ, I.R0, imm=p.miss_value, off=1),
                 I.alu32(I.BPF_OR, I.R7, imm=ERROR_BIT)]
    main += [I.mov32(I.R0, I.R7), I.exit_()]
    code = list(main)
    for at, p in zip(calls, programs):
        code[at] = code[at]._replace(imm=len(code) - at - 1)
        code += p.insns
    return code


def load_harness(programs):
    """The loaded harness's file descriptor (the caller closes it)."""
    return syscall.prog_load(programs[0].prog_type, I.encode(harness(programs)), name="pfilter_h")


def run_and_close(fd, batch):
    """(return values; bool array: the packets the kernel's test harness refused to run, EINVAL)
    of BPF_PROG_TEST_RUN of the loaded program `fd` over `batch`; closes fd."""
    from pfilter.ebpf import test_run_fd
    refused = np.zeros(len(batch), dtype=bool)
    try:
        retvals, _ = test_run_fd(fd, batch, refused=refused)
    finally:
        os.close(fd)
    return retvals, refused


def verdict_matrix(programs, batch):
    """(bool array packets x programs: did each program match each packet, from test runs of
    harnesses of 31; bool array: the packets the kernel's test harness refused to run, EINVAL);
    an AssertionError when a program returned a value that is no verdict."""
    out = np.zeros((len(batch), len(programs)), dtype=bool)
    refused = np.zeros(len(batch), dtype=bool)
    for g in range(0, len(programs), PER_HARNESS):
        group = programs[g:g + PER_HARNESS]
        retvals, mark = run_and_close(load_harness(group), batch)
        assert g == 0 or np.array_equal(mark, refused), "the kernel refused different packets for another harness"
        refused = mark
        bad = np.flatnonzero(retvals & ERROR_BIT)
        assert len(bad) == 0, f"a program of group {g // PER_HARNESS} returned no verdict on packet {bad[0]}"
        for i in range(len(group)):
            out[:, g + i] = (retvals >> i) & 1 == 1
    return out, refused


def is_verifier_refusal(e):
    return isinstance(e, syscall.VerifierError) or e.errno in (errno.EACCES, errno.E2BIG)
