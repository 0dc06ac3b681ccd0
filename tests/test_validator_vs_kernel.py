"""The validator against the Linux kernel's own checker (SO_ATTACH_FILTER on an ordinary socket).

Random programs go through both. Every program the kernel accepts, pfilter accepts too; pfilter
accepts more only for these documented reasons:

* `backward-ja`: a backward `ja` inside the program. The kernel refuses all backward jumps;
  pfilter accepts them because libpcap's `ip6 protochain` emits one (the VM bounds the loop).
* `uninitialized-scratch`: reading M[k] on a path where nothing stored to it. The kernel refuses
  such programs; pfilter (like libpcap's bpf_filter) starts M[] at 0, so the read is defined.
* `unknown-ancillary`: an absolute load at an offset in Linux's ancillary range (SKF_AD_OFF and
  above) that names no ancillary field. The kernel refuses it; for pfilter it is a load past the
  packet, so the program returns 0, as in libpcap's userland.
"""
import ctypes
import random
import socket
import struct
import sys

import pytest

import pfilter
from pfilter.opcodes import *  # noqa: F403

SO_ATTACH_FILTER = 26
KNOWN_ANCILLARY = set(range(0, 64, 4))


def kernel_accepts(insns):
    raw = b"".join(struct.pack("=HBBI", *t) for t in insns)
    buf = ctypes.create_string_buffer(raw, max(1, len(raw)))
    fprog = struct.pack("@HP", len(insns), ctypes.addressof(buf))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
            return True
        except OSError:
            return False


def pfilter_accepts(insns):
    try:
        pfilter.Program.from_tuples(insns)
        return True
    except pfilter.InvalidProgramError:
        return False


def reasons_kernel_refuses(insns):
    """The documented reasons (see the module docstring) that apply to a program pfilter accepts."""
    found = set()
    n = len(insns)
    # scratch words surely written before each instruction (intersection over predecessors)
    written = [None] * (n + 1)
    written[0] = frozenset()
    for i, (code, jt, jf, k) in enumerate(insns):
        # like the kernel's linear walk, code no jump reaches starts with nothing written
        have = written[i] if written[i] is not None else frozenset()
        cls = BPF_CLASS(code)
        if code in (BPF_LD | BPF_MEM, BPF_LDX | BPF_MEM) and k not in have:
            found.add("uninitialized-scratch")
        if cls in (BPF_ST, BPF_STX):
            have = have | {k}
        if cls == BPF_LD and BPF_MODE(code) == BPF_ABS and k >= (SKF_AD_OFF & 0xFFFFFFFF):
            if k - (SKF_AD_OFF & 0xFFFFFFFF) not in KNOWN_ANCILLARY:
                found.add("unknown-ancillary")
        if cls == BPF_RET:
            succ = []
        elif cls == BPF_JMP and BPF_OP(code) == BPF_JA:
            if k & 0x80000000:
                found.add("backward-ja")
                succ = []
            else:
                succ = [i + 1 + k]
        elif cls == BPF_JMP:
            succ = [i + 1 + jt, i + 1 + jf]
        else:
            succ = [i + 1]
        for s in succ:
            if s < n:
                written[s] = have if written[s] is None else written[s] & have
    return found


def random_program(rng):
    codes = sorted(VALID_OPCODES)
    prog = []
    for _ in range(rng.randint(1, 8)):
        code = rng.choice(codes) if rng.random() < 0.9 else rng.randint(0, 0xFF)
        k = rng.choice([0, 1, 2, 15, 16, 31, 32, rng.randrange(1 << 32), 0xFFFFFFFF,
                        (SKF_AD_OFF + rng.choice([0, 4, 44, 48, 64, 100])) & 0xFFFFFFFF])
        prog.append((code, rng.randint(0, 3), rng.randint(0, 3), k))
    if rng.random() < 0.7:
        prog.append((BPF_RET | BPF_K, 0, 0, 1))
    return prog


@pytest.fixture(scope="module")
def kernel():
    if not sys.platform.startswith("linux"):
        pytest.skip("needs the Linux kernel's classic BPF checker")


def test_kernel_accepts_a_compiled_program(kernel):
    prog = pfilter.Program.from_tuples([(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (6, 0, 0, 262144), (6, 0, 0, 0)])
    raw = prog.sock_fprog()
    assert len(raw) == 8 * len(prog)
    assert kernel_accepts(prog.to_tuples())


def test_random_programs_pfilter_and_kernel_differ_only_for_documented_reasons(kernel):
    rng = random.Random(20261125)
    tally = {"both": 0, "neither": 0, "pfilter only": 0}
    for _ in range(4000):
        prog = random_program(rng)
        ours, theirs = pfilter_accepts(prog), kernel_accepts(prog)
        assert not (theirs and not ours), f"the kernel accepts a program pfilter refuses: {prog}"
        if ours and not theirs:
            assert reasons_kernel_refuses(prog), f"undocumented difference: {prog}"
            tally["pfilter only"] += 1
        else:
            tally["both" if ours else "neither"] += 1
    assert tally["both"] > 200 and tally["neither"] > 200
