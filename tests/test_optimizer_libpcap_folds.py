"""Where libpcap's optimizer changes what a program means, tcpdump runs the changed program, so
pfilter's optimizer makes the same change.

An indexed load whose X register holds a known constant becomes an absolute load at X + k, the
sum taken modulo 2^32 (libpcap's `s->k += const` on an unsigned 32-bit field). On BACnet MS/TP
`ip[N]` compiles to `ld #2; ... ldx; ld [x + N - 2]`, so `ip[0:2]`'s k is 2^32 - 2: unoptimized,
X + k is past every packet (libpcap's interpreter and pfilter's VM both reject); optimized, it
wraps to `ldh [0]`, and tcpdump matches on the frame's first bytes. pfilter said "expression
rejects all packets" there.
"""
import numpy as np
import pytest

import pfilter
import reference as ref

BACNET_MS_TP = 165
# (expression, whether libpcap's optimized program matches some packets: ip[0] and ip[1] wrap
# to 2^32 - 2 and - 1, past every packet, optimized or not)
EXPRESSIONS = [("ip[2:2] > 100", True), ("ip[6:2] & 0x1fff != 0", True), ("ip[4] = 0", True),
               ("ip[0] = 0x55", False), ("ip[1] & 1 = 1", False), ("ip[0:4] > 0x55000000", False)]


def _packets():
    rng = np.random.default_rng(165)
    packets = [bytes([0x55, 0xFF]) + rng.integers(0, 256, int(n), dtype=np.uint8).tobytes()
               for n in rng.integers(0, 60, 300)]
    packets += [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(1, 60, 100)]
    capture = ref.corpus_file("pcaps/libpcap__mstp_20140225214217.pcap")
    with pfilter.open(capture) as cap:
        packets += [b.packet(i) for b in cap for i in range(len(b))]
    return packets


@pytest.mark.parametrize("expr, matches", EXPRESSIONS)
def test_an_indexed_load_at_a_known_x_wraps_as_libpcaps_optimizer_folds_it(expr, matches):
    packets = _packets()
    batch = pfilter.PacketBatch.from_packets(packets, linktype=BACNET_MS_TP)
    for optimize in (False, True):
        theirs = ref.compile_savefile(expr, BACNET_MS_TP, optimize)
        want = np.array([ref.bpf_filter(theirs, p) for p in packets])
        ours = pfilter.compile(expr, linktype=BACNET_MS_TP, optimize=optimize).run_batch(batch)
        assert (ours == want).all(), (expr, optimize)
    assert (want != 0).any() == matches
