"""The VM's JEQ_RUN form (a run of `jeq #k` whose false branches fall to the next, scanned in a
tight loop: seccomp allow lists, lists of ports) gives the return values and the step counts of
the pure-Python VM, which runs the same instructions one by one: on random runs (matches at every
position, none, entry in the middle of a run, runs ended by other instructions, true branches
into the run), on packets and on seccomp records."""
import random

import numpy as np
import pytest

import pfilter.seccomp as S
from pfilter import PacketBatch, Program, _pyvm
from pfilter.program import _cvm

pytestmark = pytest.mark.skipif(_cvm is None, reason="the compiled VM is not built")


def _program(rnd):
    """ld [0] (or a byte), then runs of jeq #k with constants drawn from a small set, ending in
    rets; some false branches skip ahead (breaking a run), some jumps land inside runs."""
    consts = [rnd.randrange(8) for _ in range(6)] + [rnd.getrandbits(32)]
    body = []
    n = rnd.randint(1, 60)
    for i in range(n):
        left = n - i                      # instructions after this one, before the rets
        jt = rnd.randrange(left + 3) if rnd.random() < 0.7 else rnd.randrange(min(left, 3) + 1)
        jf = 0 if rnd.random() < 0.85 else rnd.randrange(left + 3)
        body.append((0x15, min(jt, 255), min(jf, 255), rnd.choice(consts)))
        if rnd.random() < 0.05:
            body.append((0x54, 0, 0, 0xFF))  # an `and` in between breaks the run
    head = [rnd.choice([(0x30, 0, 0, 0), (0x20, 0, 0, 0), (0x00, 0, 0, rnd.randrange(8))])]
    tail = [(0x06, 0, 0, 1000 + j) for j in range(3)]
    prog = head + body + tail
    # clamp jumps into the program
    out = []
    for i, (c, jt, jf, k) in enumerate(prog):
        if c == 0x15:
            jt = min(jt, len(prog) - i - 2)
            jf = min(jf, len(prog) - i - 2)
        out.append((c, jt, jf, k))
    return out


def test_jeq_runs_match_the_python_vm_on_packets():
    rnd = random.Random(1701)
    packets = [bytes([b, 0, 0, b2]) for b in range(9) for b2 in (0, 5)] + [b"", b"\x03"]
    batch = PacketBatch.from_packets(packets)
    runs = 0
    for _ in range(400):
        tuples = _program(rnd)
        prog = Program(tuples)
        decoded = np.frombuffer(prog._decoded, dtype=np.uint16).reshape(-1, 10)     # (slot, op, ...)
        runs += int((decoded[:, 1] == _cvm.JEQ_RUN_OP).sum())
        got = prog.run_batch(batch)
        steps = prog.count_steps(batch)
        for i, pkt in enumerate(packets):
            counter = [0]
            assert got[i] == _pyvm.run_one(tuples, pkt, len(pkt), counter), (tuples, pkt)
            assert steps[i] == counter[0], (tuples, pkt)
    assert runs > 1000, "the random programs should exercise JEQ_RUN"


def test_a_seccomp_allow_list_gives_the_same_action_for_every_call():
    policy = S.Policy(default=S.ERRNO(1), arches=["x86_64"])
    names = ["read", "write", "close", "openat", "mmap", "brk", "futex", "getpid", "exit_group", "dup"]
    for n in names:
        policy.add(S.ALLOW, n)
    prog = S.assemble("A = arch\nif (A != x86_64) goto k\nA = nr\n" +
                      "".join(f"if (A == {n}) goto a\n" for n in names) + "return ERRNO(1)\na: return ALLOW\nk: return KILL\n")
    recs = S.records(range(0, 400))
    expected = _pyvm.run_records(prog.to_tuples(), recs.view(np.uint8), np.empty(400, dtype=np.uint32))
    assert S.run(prog, recs).tolist() == expected.tolist()
    assert S.run(policy.compile(), recs).tolist() == expected.tolist()
    assert sorted({str(S.Action(int(v))) for v in expected}) == ["ALLOW", "ERRNO(1)"]
