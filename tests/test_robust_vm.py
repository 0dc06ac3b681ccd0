"""Issue 18, items 1-3, 7, 14, 20, 21 (VM side): batches, programs and the VM take no input a user
can hand them as a licence to read outside memory, loop for ever, ignore Ctrl-C, or turn junk
into something else. Both VMs (the `vm` fixture) where the VM is concerned."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter import FilterError, InvalidProgramError, PacketBatch, Program
from pfilter.validate import loop_budget

ROOT = Path(__file__).resolve().parents[1]
ACCEPT_ALL = [(0x06, 0, 0, 0xFFFF)]
LOAD_BYTE_0 = [(0x30, 0, 0, 0), (0x16, 0, 0, 0)]         # ldb [0]; ret a


def whole_program_loop(n=4096):
    """n instructions: n-2 `ld #1`, a backward `ja` to instruction 0, `ret #1`: a loop spanning
    the whole program, which never leaves it."""
    return [(0x00, 0, 0, 1)] * (n - 2) + [(0x05, 0, 0, (-(n - 1)) & 0xFFFFFFFF), (0x06, 0, 0, 1)]


def counting_loop(limit):
    """A = 1, 2, ... until A == limit, then `ret a`; the backward `ja` spans 3 instructions and is
    taken limit - 1 times."""
    return [(0x00, 0, 0, 0),
            (0x04, 0, 0, 1),              # 1: add #1   <- loop
            (0x15, 1, 0, limit),          # 2: jeq #limit -> 4
            (0x05, 0, 0, (-3) & 0xFFFFFFFF),   # 3: ja 1
            (0x16, 0, 0, 0)]              # 4: ret a


def four_packets():
    return PacketBatch.from_packets([bytes([i]) * 60 for i in range(1, 5)])


# ---------------------------------------------------------------- item 1: overflow-proof bounds
def test_batch_whose_offset_plus_caplen_wraps_int64_is_refused():
    with pytest.raises(FilterError, match="outside the data buffer"):
        PacketBatch(np.zeros(16, np.uint8), np.array([2**63 - 1]), np.array([1], np.uint32),
                    np.array([1], np.uint32))


@pytest.mark.parametrize("offset, caplen", [(-1, 1), (16, 1), (17, 0), (0, 17), (8, 9), (2**62, 2**32 - 1)])
def test_batch_with_a_packet_outside_its_buffer_is_refused(offset, caplen):
    with pytest.raises(FilterError, match="packet 1"):
        PacketBatch(np.zeros(16, np.uint8), [0, offset], [4, caplen], [4, 4])


def test_batch_ending_exactly_at_its_buffer_end_is_accepted(vm):
    batch = PacketBatch(np.arange(16, dtype=np.uint8), [15, 16], [1, 0], [1, 0])
    assert Program(LOAD_BYTE_0).run_batch(batch).tolist() == [15, 0]


# ---------------------------------------------------------------- item 2: batches changed later
MUTATIONS = {
    "offset past the buffer": lambda b: b.offsets.__setitem__(2, 10**9),
    "negative offset": lambda b: b.offsets.__setitem__(1, -5),
    "caplen of 2**32-1": lambda b: b.caplen.__setitem__(0, 0xFFFFFFFF),
    "offset near 2**63": lambda b: b.offsets.__setitem__(3, 2**63 - 1),
    "data replaced by a shorter array": lambda b: setattr(b, "data", np.zeros(10, np.uint8)),
}


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_batch_changed_after_building_raises_instead_of_reading_outside(vm, mutate):
    batch = four_packets()
    mutate(batch)
    prog = Program(LOAD_BYTE_0)
    for run in (prog.match_batch, prog.run_batch, prog.count_steps,
                lambda b: prog.run_indexed(b, np.arange(len(b)), np.zeros(len(b), np.uint32))):
        with pytest.raises(FilterError, match="outside the data buffer"):
            run(batch)


def test_batch_arrays_replaced_by_other_types_raise_filter_error(vm):
    batch = four_packets()
    batch.offsets = [0, 60, 120, 180]
    with pytest.raises(FilterError, match="offsets"):
        Program(ACCEPT_ALL).run_batch(batch)
    batch = four_packets()
    batch.caplen = batch.caplen[:2]
    with pytest.raises(FilterError, match="differ in length"):
        Program(ACCEPT_ALL).run_batch(batch)


@pytest.mark.parametrize("mutate", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_classify_refuses_a_batch_changed_after_building(mutate):
    batch = four_packets()
    mutate(batch)
    rules = {"first": Program(LOAD_BYTE_0), "all": Program(ACCEPT_ALL), "ip": pfilter.compile("ip")}
    with pytest.raises(FilterError, match="outside the data buffer"):
        pfilter.classify(batch, rules)


def test_intact_batch_still_gives_the_same_verdicts_as_libpcap(vm):
    packets = [bytes(range(i, i + 40)) for i in range(0, 200, 7)]
    batch = PacketBatch.from_packets(packets)
    tuples = [(0x30, 0, 0, 3), (0x25, 0, 1, 100), (0x16, 0, 0, 0), (0x06, 0, 0, 0)]
    got = Program(tuples).run_batch(batch).tolist()
    assert got == [ref.bpf_filter(tuples, p) for p in packets]
    assert any(got) and not all(got)


# ---------------------------------------------------------------- item 3 and 20: out, index, arguments
@pytest.mark.parametrize("out", [np.zeros(3, np.uint32), np.zeros(5, np.uint32), np.zeros(4, np.int64),
                                 np.zeros(4, np.float32), np.zeros((4, 1), np.uint32), [0, 0, 0, 0],
                                 np.zeros(8, np.uint32)[::2]])
def test_run_batch_and_run_indexed_refuse_a_wrong_out(vm, out):
    batch = four_packets()
    prog = Program(ACCEPT_ALL)
    with pytest.raises(FilterError, match="out must be"):
        prog.run_batch(batch, out=out)
    with pytest.raises(FilterError, match="out must be"):
        prog.run_indexed(batch, np.array([0, 1]), out)


def test_run_batch_refuses_a_read_only_out(vm):
    out = np.zeros(4, np.uint32)
    out.flags.writeable = False
    with pytest.raises(FilterError, match="out must be"):
        Program(ACCEPT_ALL).run_batch(four_packets(), out=out)


@pytest.mark.parametrize("index", [[-1], [4], [0, 2**40], [0.0, 1.0], [[0, 1]], ["0"]])
def test_run_indexed_refuses_indices_outside_the_batch_or_not_integers(vm, index):
    out = np.zeros(4, np.uint32)
    with pytest.raises(FilterError, match="indices"):
        Program(ACCEPT_ALL).run_indexed(four_packets(), index, out)
    assert not out.any()


def test_run_indexed_fills_exactly_the_indexed_entries(vm):
    batch = four_packets()
    prog = Program(LOAD_BYTE_0)
    out = np.full(4, 7, np.uint32)
    prog.run_indexed(batch, np.array([3, 1], np.uint8), out)
    full = prog.run_batch(batch)
    assert out.tolist() == [7, full[1], 7, full[3]]


def test_run_needs_a_batch(vm):
    with pytest.raises(FilterError, match="PacketBatch"):
        Program(ACCEPT_ALL).run_batch([b"abc"])


@pytest.mark.parametrize("wirelen", [-1, 2**32, 2**64, "60", 1.5])
def test_run_refuses_a_wire_length_that_is_not_a_u32(vm, wirelen):
    with pytest.raises(FilterError, match="wirelen"):
        Program(ACCEPT_ALL).run(bytes(60), wirelen=wirelen)


@pytest.mark.parametrize("packet", [5, "abc", [1, 2, 3], None])
def test_run_and_from_packets_refuse_what_is_not_bytes_like(vm, packet):
    with pytest.raises(FilterError, match="bytes-like"):
        Program(ACCEPT_ALL).run(packet)
    with pytest.raises(FilterError, match="bytes-like"):
        PacketBatch.from_packets([b"ok", packet])


def test_bytes_like_packets_of_every_kind_are_taken_as_their_bytes(vm):
    raw = bytes(range(20))
    batch = PacketBatch.from_packets([raw, bytearray(raw), memoryview(raw), np.frombuffer(raw, np.uint8)])
    assert [batch.packet(i) for i in range(4)] == [raw] * 4
    assert Program(LOAD_BYTE_0).run(bytearray(b"\x09")) == 9


@pytest.mark.parametrize("field, values", [("wirelens", [-1, 5]), ("wirelens", [2**32, 5]),
                                           ("wirelens", [1.5, 5]), ("timestamps", [0.5, 1.0])])
def test_from_packets_refuses_lengths_and_times_that_do_not_fit(field, values):
    with pytest.raises(FilterError, match=field):
        PacketBatch.from_packets([b"a", b"b"], **{field: values})


@pytest.mark.parametrize("rows", [[(6, 0, 0, -1)], [(6, 0, 0, 2**32)], [(6, 256, 0, 1)], [(0x10000, 0, 0, 0)],
                                  [(6.0, 0, 0, 1)], [(6, 0, 0)], [(6, 0, 0, "1")], 5])
def test_program_refuses_rows_that_are_not_struct_bpf_insn(rows):
    with pytest.raises(InvalidProgramError):
        Program(rows)


def test_from_tuples_takes_a_signed_k_but_no_floats():
    assert Program.from_tuples([(6, 0, 0, -1)]).to_tuples() == [(6, 0, 0, 0xFFFFFFFF)]
    with pytest.raises(InvalidProgramError, match="instruction 1"):
        Program.from_tuples([(0, 0, 0, 1), (6, 0, 0, 1.5)])


# ---------------------------------------------------------------- items 14 and 21: from_text
@pytest.mark.parametrize("text, where", [
    ("{ 0x30, 0, 0, 0x00000000 },\n{ 0x6, 0, 0, 0x0000001g },\n{ 0x6, 0, 0, 0x00000000 },\n", "line 2"),
    ("{ 0x6, 0, 0, 0x00000001 },\n// comment\n", "line 2"),
    ("{ 0x6, 0, 0, 0x00000001 } junk\n", "line 1"),
    ("2\n6 0 0 1\n6 0 0 x\n", "line 3"),
    ("2\n6 0 0 1\n6 0 0 1 7\n", "line 3"),
    ("1\n6 0 0 \u0666\n", "line 2"),
    ("1\n60 0 1\n", "line 2"),            # three numbers: not `6 0 0 1` (found by tests/fuzz)
    ("1\n6 00 1\n", "line 2"),
    ("1\n6 0 0 1_000\n", "line 2"),
    ("\u0661\n6 0 0 1\n", "line 1"),
    ("+1\n6 0 0 1\n", "line 1"),
    ("2,6 0 0 1,,6 0 0 0", "item 3"),
    ("1,6 0 0 1_0", "item 2"),
])
def test_from_text_refuses_a_malformed_line_and_names_it(text, where):
    with pytest.raises(InvalidProgramError, match=where):
        Program.from_text(text)


def test_from_text_reads_tcpdump_dd_and_ddd_output():
    expr = "ip6 protochain 6 or tcp port 80"
    for fmt in ("dd", "ddd"):
        text = ref.tcpdump_dump(expr, fmt=fmt)
        assert Program.from_text(text).to_tuples() == list(ref.compile(expr))
    prog = Program.from_text("4,48 0 0 9,21 0 1 6,6 0 0 1,6 0 0 0,")
    assert prog.to_tuples() == [(48, 0, 0, 9), (21, 0, 1, 6), (6, 0, 0, 1), (6, 0, 0, 0)]


# ---------------------------------------------------------------- item 7: bounded loops, Ctrl-C
def test_whole_program_loop_is_cut_off_within_the_loop_budget(vm):
    prog = Program(whole_program_loop())
    packets = [bytes(60), bytes(1500)] * (200 if vm == "cython" else 1)
    batch = PacketBatch.from_packets(packets)
    started = time.perf_counter()
    verdicts = prog.run_batch(batch)
    elapsed = time.perf_counter() - started
    assert not verdicts.any()
    steps = prog.count_steps(batch)
    bound = np.array([loop_budget(len(p)) + len(prog) for p in packets], dtype=np.uint64)
    assert (steps <= bound).all()
    assert (steps > bound - 2 * len(prog)).all()     # the budget, not something smaller, ended them
    assert elapsed < (20 if vm == "python" else 10)


@pytest.mark.parametrize("caplen", [0, 60, 1500])
def test_loop_budget_boundary_is_the_same_in_both_vms_and_the_classifier(vm, caplen):
    most = loop_budget(caplen) // 3 + 1        # the ja (span 3) is taken most - 1 times
    batch = PacketBatch.from_packets([bytes(caplen)])
    inside, past = Program(counting_loop(most)), Program(counting_loop(most + 1))
    assert inside.run_batch(batch).tolist() == [most]
    assert past.run_batch(batch).tolist() == [0]
    if vm == "cython":
        result = pfilter.classify(batch, {"inside": inside, "past": past, "ip": pfilter.compile("ip")})
        assert result.matrix[0].tolist()[:2] == [True, False]


def test_protochain_over_thousands_of_extension_headers_agrees_with_libpcap(vm):
    prog = pfilter.compile("ip6 protochain 6")

    def packet(headers, last):
        ext = b"".join((b"\x3c" if i < headers - 1 else bytes([last])) + b"\x00\x01\x04\x00\x00\x00\x00"
                       for i in range(headers))
        payload = ext + bytes(20)
        return bytes(12) + b"\x86\xdd" + b"\x60\x00\x00\x00" + len(payload).to_bytes(2, "big") + b"\x3c\x40" + bytes(32) + payload

    packets = [packet(n, last) for n in (1, 100, 8000) for last in (6, 17)]
    got = Program(prog.to_tuples()).run_batch(PacketBatch.from_packets(packets)).tolist()
    assert got == [ref.bpf_filter(prog.to_tuples(), p) for p in packets]
    assert got[4] and not got[5]


_CTRL_C_SCRIPT = textwrap.dedent("""
    import sys
    import pfilter
    from pfilter import program
    sys.path.insert(0, {tests!r})
    from test_robust_vm import whole_program_loop
    assert program.VM_NAME == sys.argv[1], program.VM_NAME
    prog = pfilter.Program(whole_program_loop())
    batch = pfilter.PacketBatch.from_packets([bytes(60)] * int(sys.argv[2]))
    print("running", flush=True)
    prog.run_batch(batch)
    print("finished", flush=True)
""")


@pytest.mark.parametrize("vm_name, packets", [("cython", 400000), ("python", 2000)])
def test_ctrl_c_interrupts_a_long_batch_within_a_second(vm_name, packets):
    from pfilter import program
    if vm_name == "cython" and program._cvm is None:
        pytest.skip("the Cython VM is not built")
    env = dict(os.environ, PFILTER_PUREPYTHON="1" if vm_name == "python" else "0")
    script = _CTRL_C_SCRIPT.format(tests=str(ROOT / "tests"))
    proc = subprocess.Popen([sys.executable, "-c", script, vm_name, str(packets)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "running"
        time.sleep(0.5)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        sent = time.perf_counter()
        out, err = proc.communicate(timeout=30)
        waited = time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "finished" not in out
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0
    assert waited < 1.5, f"exited {waited:.2f} s after SIGINT"
