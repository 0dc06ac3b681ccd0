"""Helpers for the VM tests: build and run small programs on the VM chosen by the `vm` fixture."""
import pfilter
from pfilter.opcodes import *  # noqa: F401,F403  (tests spell opcodes as libpcap does)

ACCEPT = (BPF_RET | BPF_K, 0, 0, 0xFFFF)
RET_A = (BPF_RET | BPF_A, 0, 0, 0)


def run(insns, packet=b"", wirelen=None):
    """Return value of `insns` on one packet, through both run() and run_batch()."""
    prog = pfilter.Program.from_tuples(insns)
    single = prog.run(packet, wirelen)
    batch = pfilter.PacketBatch.from_packets([packet], wirelens=None if wirelen is None else [wirelen])
    batched = int(prog.run_batch(batch)[0])
    assert single == batched, f"run() gave {single}, run_batch() gave {batched}"
    return single


def load_then_ret_a(code, k, packet, x=None):
    """Run `[ldx #x;] <code> k; ret a`."""
    pre = [] if x is None else [(BPF_LDX | BPF_IMM, 0, 0, x)]
    return run(pre + [(code, 0, 0, k), RET_A], packet)
