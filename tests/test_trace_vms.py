"""Program.trace: the executed instructions, identical through the Cython and Python VMs, ending
in the VM's verdict; the profile's per-instruction counts are the traces' counts."""
import numpy as np
import pytest

import pfilter
from pfilter import Program
from pfilter import program as _program
from pfilter.profile import profile_batch
from pfilter.trace import trace, trace_rows

import reference as ref

needs_cvm = pytest.mark.skipif(_program._cvm is None, reason="the compiled VM is not built (PFILTER_PUREPYTHON)")

ETH_TCP = bytes.fromhex("ffffffffffff000000000001080045000028000100004006000"
                        "0c0a80001c0a80002c82201bb00000000000000005002200000000000")


def _rows_both(prog, pkt, wl=None):
    wl = len(pkt) if wl is None else wl
    return trace_rows(prog, pkt, wl, "cython"), trace_rows(prog, pkt, wl, "python")


@needs_cvm
def test_fused_load_and_jump_show_as_two_steps_with_the_loaded_value():
    prog = pfilter.compile("tcp port 80")
    c, p = _rows_both(prog, ETH_TCP)
    assert c == p
    t = prog.trace(ETH_TCP)
    assert [s.pc for s in t.steps][:2] == [0, 1]
    assert t.steps[0].read == (12, 2, b"\x08\x00") and t.steps[1].a_before == 0x800
    assert t.steps[1].branch is True
    assert t.result == prog.run(ETH_TCP) == 0


@needs_cvm
def test_jeq_run_scans_show_every_jeq_they_pass():
    # a run of 8 `jeq #k` whose false branches fall through: the VM scans it in a tight loop
    tuples = [(0x30, 0, 0, 0)] + [(0x15, 8 - i, 0, 10 + i) for i in range(8)] + [(6, 0, 0, 0), (6, 0, 0, 1)]
    prog = Program.from_tuples(tuples)
    for first in (0, 10, 13, 17, 99):
        pkt = bytes([first, 0])
        c, p = _rows_both(prog, pkt)
        assert c == p
        steps = prog.count_steps(pfilter.PacketBatch.from_packets([pkt]))[0]
        assert len(c[1]) == steps
        expected_jeqs = (first - 10 + 1) if 10 <= first <= 17 else 8
        assert [pc for pc, _a, _x in c[1]][1:1 + expected_jeqs] == list(range(1, 1 + expected_jeqs))


@needs_cvm
def test_protochain_loop_traces_every_pass_and_the_budget_stop_alike():
    prog = pfilter.compile("ip6 protochain 6")
    assert any(c == 0x05 and k & 0x80000000 for c, _, _, k in prog.to_tuples())
    # IPv6 with a chain of hop-by-hop headers that never ends inside the packet
    ip6 = bytearray(14 + 40 + 8 * 40)
    ip6[12:14] = b"\x86\xdd"
    ip6[14] = 0x60
    ip6[20] = 0                   # next header: hop-by-hop
    for h in range(40):
        ip6[54 + 8 * h] = 0       # each one points to another hop-by-hop header, length 0
    c, p = _rows_both(prog, bytes(ip6))
    assert c == p and len(c[1]) > 4 * len(prog) + 16      # more rows than the first buffer held
    t = prog.trace(bytes(ip6))
    assert t.result == prog.run(bytes(ip6))
    assert t.steps[-1].insn[0] in (0x06, 0x16, 0x05) or t.steps[-1].past_end


@needs_cvm
def test_a_load_past_the_end_is_the_last_step():
    prog = pfilter.compile("tcp port 80")
    t = prog.trace(ETH_TCP[:30])
    last = t.steps[-1]
    assert last.past_end and last.read is None and t.result == 0
    assert "past the end" in str(last)
    assert _rows_both(prog, ETH_TCP[:30])[0] == _rows_both(prog, ETH_TCP[:30])[1]


def test_memory_writes_and_x_changes_are_reported():
    prog = Program.from_asm("ld #7\nst M[2]\nldx #3\nstx M[4]\nld M[2]\nadd x\nret a\n")
    t = prog.trace(b"")
    assert t.result == 10
    assert t.steps[1].mem_write == (2, 7) and t.steps[3].mem_write == (4, 3)
    assert t.steps[5].a_before == 7 and t.steps[5].a_after == 10


def _sample(prog, batch, limit=12):
    """Packets with distinct (verdict, path length): a sample of the paths the program takes."""
    first, out = ref.distinct_paths(prog, batch)
    return first[:limit], out


@pytest.fixture(scope="module")
def pools():
    return ref.corpus_pools()


@needs_cvm
@pytest.mark.parametrize("dlt", ref.corpus_params(ref.corpus_dlts_with_captures))
def test_corpus_traces_agree_between_vms_and_end_in_the_verdict(dlt, pools):
    from pfilter.linktypes import linktype_number
    exprs = ref.corpus_expressions()[dlt]
    pool = pools[linktype_number(dlt)]
    checked = 0
    for e in exprs:
        try:
            prog = pfilter.compile(e, linktype=dlt)
        except pfilter.FilterError:
            continue
        idx, out = _sample(prog, pool)
        for i in idx:
            whole = pool.packet(i)
            for pkt in (whole, whole[:len(whole) // 2]):     # and a copy cut short
                c, p = _rows_both(prog, pkt)
                assert c == p, (e, i)
                t = trace(prog, pkt)
                assert t.result == (int(out[i]) if pkt is whole else prog.run(pkt)), (e, i)
                last = t.steps[-1]
                if last.insn[0] == 0x06:
                    assert last.insn[3] == t.result
                elif last.insn[0] == 0x16:
                    assert last.a_before == t.result
                else:
                    assert t.result == 0 and (last.past_end or last.note), (e, i)
                checked += 1
    assert checked >= len(exprs)


@needs_cvm
def test_profile_counts_are_the_sum_of_the_traces(pools):
    pool = pools.get(1)
    if pool is None:
        pytest.skip("no Ethernet corpus capture")
    sub = pool.select(np.arange(len(pool)) % 37 == 0)
    for e in ("tcp port 80 or udp port 53", "ip6 protochain 6", "port 1 or port 2 or port 3 or port 4 or port 5",
              "vlan and tcp", "ip[2:2] > 100 and not icmp"):
        prog = pfilter.compile(e)
        prof = profile_batch(prog, sub)
        expected = np.zeros(len(prog), np.uint64)
        for i in range(len(sub)):
            for pc, _a, _x in trace_rows(prog, sub.packet(i), int(sub.wirelen[i]), "python")[1]:
                expected[pc] += 1
        assert prof.hits.tolist() == expected.tolist(), e
        assert prof.matched == int(prog.match_batch(sub).sum())
        assert prof.executed == int(prog.count_steps(sub).sum())
