"""Random cBPF programs (tests/test_lowering.py's generator; with backward jumps too, which loop
under the VM's loop budget) as XDP, tc and socket programs: the kernel's verifier accepts every one, and BPF_PROG_TEST_RUN gives the VM's
verdict (XDP, tc: 31 programs per run in the harness) or, for socket filters, the VM's exact
return value, on random frames of 14 to 90 bytes. The random programs reach what filter
expressions rarely do: division and modulo by a zero X, shifts by X >= 32, neg, scratch memory,
indirect loads at offsets near 2**32, `ret a`, `len`."""
import os
import random

import numpy as np
import pytest

from ebpf_harness import require_kernel, run_and_close, verdict_matrix
from test_lowering import random_program

import pfilter
from pfilter.ebpf import VerifierError, load

PROGRAMS = 310
PACKETS = 4000
#: programs with loops run their loops up to the loop budget in the kernel: fewer of them, on fewer frames
LOOP_PROGRAMS = 124
LOOP_PACKETS = 600


@pytest.fixture(scope="module", params=[False, True], ids=["forward", "loops"])
def programs(request):
    """PROGRAMS random programs; with loops, each has a backward jump."""
    rng = random.Random(1414)
    out = []
    while len(out) < (LOOP_PROGRAMS if request.param else PROGRAMS):
        insns = random_program(rng, max_len=48, loops=request.param)
        if not request.param or any(c == 0x05 and k & 0x80000000 for c, _, _, k in insns):
            out.append(pfilter.Program.from_tuples(insns))
    return out


@pytest.fixture(scope="module")
def frames():
    """Random frames of 14..90 bytes; a third start like IPv4 over Ethernet (so `ip`-ish loads
    see plausible values), a third like IPv6."""
    rng = np.random.default_rng(14)
    pkts = []
    for i in range(PACKETS):
        p = bytearray(rng.integers(0, 256, int(rng.integers(14, 91)), dtype=np.uint8).tobytes())
        if i % 3 == 0:
            p[12:14] = b"\x08\x00"
            if len(p) > 14:
                p[14] = 0x45
        elif i % 3 == 1:
            p[12:14] = b"\x86\xdd"
        pkts.append(bytes(p))
    return pfilter.PacketBatch.from_packets(pkts)


def _loops(programs):
    return any(c == 0x05 and k & 0x80000000 for c, _, _, k in programs[0].to_tuples())


def _for(programs, frames):
    """All the frames, or the first LOOP_PACKETS for programs with loops."""
    if not _loops(programs):
        return frames
    return pfilter.PacketBatch.from_packets([frames.packet(i) for i in range(LOOP_PACKETS)])


def _loadable(programs, hook):
    """The programs' eBPF for hook that the verifier accepts. It refuses only a loop it walks lap
    by lap past 8192 jumps (a counter it tracks as constants; see test_ebpf_api.py): a genuine
    limit, allowed for a few programs with loops and for nothing else."""
    ok, too_complex = [], 0
    for p in programs:
        eb = p.to_ebpf(hook)
        try:
            os.close(load(eb))
        except VerifierError as e:
            if not (_loops(programs) and "too complex" in str(e)):
                raise
            too_complex += 1
            continue
        ok.append((p, eb))
    assert too_complex <= len(programs) // 10, f"the verifier refused {too_complex} programs as too complex"
    return ok


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_random_programs_give_the_vm_verdicts(hook, programs, frames):
    require_kernel()
    frames = _for(programs, frames)
    pairs = _loadable(programs, hook)
    programs, ebs = [p for p, _ in pairs], [eb for _, eb in pairs]
    got, refused = verdict_matrix(ebs, frames)
    assert hook == "tc" or not refused.any()
    for j, p in enumerate(programs):
        want = p.run_batch(frames) != 0
        differ = np.flatnonzero((got[:, j] != want) & ~refused)
        assert len(differ) == 0, (f"program {j} {p.to_tuples()} differs on {len(differ)} frames, first "
                                  f"{frames.packet(int(differ[0])).hex()}:\n{ebs[j].dump()}")
    assert 0 < got.sum() < got.size


def test_random_socket_filters_return_the_vm_values(programs, frames):
    """A socket filter returns the cBPF value itself. BPF_PROG_TEST_RUN hands a socket filter the
    frame from its network header (it pulls the 14-byte Ethernet header), so the VM runs on the
    frame's bytes from offset 14."""
    require_kernel()
    frames = _for(programs, frames)
    payloads = pfilter.PacketBatch.from_packets([frames.packet(i)[14:] for i in range(len(frames))])
    for j, (p, eb) in enumerate(_loadable(programs[:60], "socket")):
        got, refused = run_and_close(load(eb), frames)
        want = p.run_batch(payloads)
        differ = np.flatnonzero((got != want) & ~refused)
        assert len(differ) == 0, (f"program {j} {p.to_tuples()}: kernel {got[differ[0]]} VM {want[differ[0]]} on "
                                  f"{frames.packet(int(differ[0])).hex()}:\n{eb.dump()}")
