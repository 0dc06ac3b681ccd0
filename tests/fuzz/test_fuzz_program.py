"""Fuzzing foreign programs: Program.from_tuples over valid, invalid, random and looping programs
(an accepted program gives the same values on the Cython VM, run(), the Python VM and libpcap's
bpf_filter() where libpcap can run it); Program.from_text over dumped and mutated program text
(accepted text holds exactly the accepted program's numbers); Program and the run methods on
hostile arguments (only FilterError; nothing written outside `out`)."""
import re

import numpy as np
from hypothesis import strategies as st

import fuzzlib
import pfilter
import reference as ref
from pfilter import _pyvm, program
from pfilter.errors import FilterError, InvalidProgramError
from pfilter.opcodes import BPF_JA, BPF_JMP, VALID_OPCODES
from test_validator_vs_kernel import reasons_kernel_refuses
from test_vm_properties import K_VALUES, invalid_programs, packets, valid_programs

CODES = sorted(VALID_OPCODES)


@st.composite
def raw_programs(draw):
    """Random instructions, mostly valid opcodes: the validator decides."""
    n = draw(st.integers(1, 20))
    return [(draw(st.one_of(st.sampled_from(CODES), st.integers(0, 0xFFFF))), draw(st.integers(0, 255)),
             draw(st.integers(0, 255)), draw(K_VALUES)) for _ in range(n)]


@st.composite
def looping_programs(draw):
    """A valid program with one instruction turned into a backward `ja` (k wraps around)."""
    insns = draw(valid_programs(max_len=16))
    if len(insns) > 1:
        i = draw(st.integers(0, len(insns) - 2))
        insns[i] = (BPF_JMP | BPF_JA, 0, 0, (1 << 32) - draw(st.integers(1, i + 1)))
    return insns


field = st.one_of(st.integers(-2**40, 2**40), st.sampled_from([-1, 0x10000, 256, 2**32, -2**31 - 1]),
                  st.floats(), st.text(max_size=3), st.none(), st.binary(max_size=2))
hostile_rows = st.lists(st.one_of(st.tuples(field, field, field, field), st.tuples(st.integers(0, 9)),
                                  st.tuples(*[st.integers(0, 9)] * 5), st.none(), st.text(max_size=4),
                                  st.sampled_from(CODES).map(lambda c: (c, 0, 0, 0))),
                        min_size=0, max_size=6)
wirelens = st.sampled_from([0, 1, 3, 100, 0xFFFFFFFF])

program_inputs = st.tuples(
    st.one_of(valid_programs().map(lambda p: ("valid", p)), invalid_programs().map(lambda p: ("invalid", p)),
              raw_programs().map(lambda p: ("raw", p)), looping_programs().map(lambda p: ("loop", p)),
              hostile_rows.map(lambda p: ("hostile", p))),
    packets, st.lists(wirelens, min_size=8, max_size=8))

_LIBPCAP = []


def libpcap_batch(insns, batch):
    """libpcap's bpf_filter() values, or None where the reference cannot be built (the test
    function itself requires it under CI)."""
    if not _LIBPCAP:
        try:
            ref._batch_lib()
            _LIBPCAP.append(True)
        except BaseException:        # pytest's skip outside pytest
            _LIBPCAP.append(False)
    return ref.bpf_filter_batch(insns, batch) if _LIBPCAP[0] else None


@fuzzlib.target("program", program_inputs)
def check_program(x):
    (kind, insns), pkts, extra = x
    prog = fuzzlib.outcome(pfilter.Program.from_tuples, insns, allowed=FilterError)
    if isinstance(prog, FilterError):
        assert isinstance(prog, InvalidProgramError), repr(prog)
        assert kind != "valid", f"refused a valid program: {prog}"
        return
    assert kind != "invalid", "accepted an invalid program"
    tuples = prog.to_tuples()
    wl = [len(p) + e if e < 0xFFFFFFFF else e for p, e in zip(pkts, extra)]
    batch = pfilter.PacketBatch.from_packets(pkts, wirelens=wl)
    fast = prog.run_batch(batch).tolist()
    assert [prog.run(p, w) for p, w in zip(pkts, wl)] == fast, "run() and run_batch() differ"
    assert len(prog.count_steps(batch)) == len(pkts)
    reasons = reasons_kernel_refuses(tuples)
    if program._cvm is not None and "backward-ja" not in reasons:
        assert [_pyvm.run_one(tuples, p, w) for p, w in zip(pkts, wl)] == fast, "Cython and Python VMs differ"
    if not reasons & {"uninitialized-scratch", "backward-ja", "unknown-ancillary"}:
        theirs = libpcap_batch(tuples, batch)
        assert theirs is None or theirs.tolist() == fast, f"libpcap's bpf_filter differs: {theirs.tolist()} {fast}"


def _comma(insns):
    return f"{len(insns)}," + ",".join(f"{c} {jt} {jf} {k}" for c, jt, jf, k in insns)


#: what a program text's mutations insert besides random characters: near-misses of its numbers
#: and separators
TEXT_TOKENS = ["0x", "g", "1g", ",", "{", "}", "-1", "4294967296", "\n", "\u0666", "1_000", "+5", "0b1", " ",
               "#", "0", "00"]


@st.composite
def program_texts(draw):
    """tcpdump -dd / -ddd text (or the one-line comma form) of a valid program, mutated."""
    insns = draw(valid_programs(max_len=10))
    fmt = draw(st.sampled_from(["dd", "ddd", "comma"]))
    text = _comma(insns) if fmt == "comma" else pfilter.Program.from_tuples(insns).dump(fmt)
    mutations = draw(st.integers(0, 3))
    text = fuzzlib.mutate(draw, text, mutations, ("", TEXT_TOKENS), insert_max=2, delete_max=3)
    return insns, text, mutations > 0


NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+)")


@fuzzlib.target("program_text", program_texts(), cases=[([(6, 0, 0, 1)], "1\n60 0 1\n", True)])
def check_program_text(x):
    insns, text, mutated = x
    prog = fuzzlib.outcome(pfilter.Program.from_text, text, allowed=FilterError)
    if not mutated:
        assert prog == pfilter.Program.from_tuples(insns), "a dump does not read back"
    if isinstance(prog, FilterError):
        return
    # accepted text is numbers only (and -dd's braces and commas), exactly the program's
    words = re.findall(r"[^\s,{}]+", text.strip())
    bad = [w for w in words if not NUMBER.fullmatch(w)]
    assert not bad, f"accepted program text with non-numbers {bad!r}"
    nums = [int(w, 16 if "x" in w.lower() else 10) & 0xFFFFFFFF for w in words]
    flat = [v for t in prog.to_tuples() for v in t]
    assert nums in (flat, [len(prog)] + flat), f"{text!r} read as {prog.to_tuples()}"


def _out_array(spec, n):
    kind, size = spec
    size = max(0, n + size)
    if kind == "uint32":
        return np.full(size, 7, np.uint32)
    if kind == "readonly":
        a = np.full(size, 7, np.uint32)
        a.flags.writeable = False
        return a
    if kind == "strided":
        return np.full(2 * size, 7, np.uint32)[::2]
    if kind == "2d":
        return np.full((size, 2), 7, np.uint32)
    if kind == "list":
        return [7] * size
    return np.full(size, 7, np.dtype(kind))


outs = st.tuples(st.sampled_from(["uint32", "uint32", "int32", "int64", "uint8", "float64", "readonly", "strided",
                                  "2d", "list"]), st.integers(-3, 2))
hostile_values = st.one_of(st.integers(-2**70, 2**70), st.sampled_from([-1, 2**32, 2**63, 0]), st.floats(),
                           st.none(), st.text(max_size=3), st.binary(max_size=3))


@st.composite
def argument_inputs(draw):
    op = draw(st.sampled_from(["ctor", "run", "run_batch", "run_indexed"]))
    n = draw(st.integers(0, 5))
    if op == "ctor":
        return op, draw(hostile_rows)
    if op == "run":
        pkt = draw(st.one_of(st.binary(max_size=64), hostile_values, st.lists(st.integers(-1, 300), max_size=4)))
        return op, (pkt, draw(st.one_of(st.none(), hostile_values)))
    if op == "run_batch":
        return op, (n, draw(outs))
    index = draw(st.one_of(st.lists(st.one_of(st.integers(0, max(0, n - 1)), st.integers(-2**63, 2**63 - 1),
                                              st.sampled_from([-1, n, n + 1, 2**31])), max_size=6),
                           st.lists(st.booleans(), min_size=n, max_size=n)))
    return op, (n, index, draw(outs))


PROGRAM = []


def _program():
    if not PROGRAM:
        PROGRAM.append(pfilter.compile("ip and tcp port 80 or udp"))
    return PROGRAM[0]


def _batch(n):
    pkts = [bytes(range(i, i + 60)) for i in range(n)]
    return pfilter.PacketBatch.from_packets(pkts)


@fuzzlib.target("program_args", argument_inputs())
def check_program_args(x):
    op, args = x
    if op == "ctor":
        prog = fuzzlib.outcome(pfilter.Program, args, allowed=FilterError)
        if not isinstance(prog, FilterError):
            assert all(0 <= v for t in prog.to_tuples() for v in t)
        return
    prog = _program()
    if op == "run":
        pkt, wirelen = args
        r = fuzzlib.outcome(prog.run, pkt, wirelen, allowed=FilterError)
        assert isinstance(r, (int, FilterError))
        return
    if op == "run_batch":
        n, spec = args
        batch, out = _batch(n), _out_array(spec, n)
        expected = prog.run_batch(batch).tolist()
        r = fuzzlib.outcome(prog.run_batch, batch, out, allowed=FilterError)
        if not isinstance(r, FilterError):
            assert len(r) == n and list(r) == expected, f"run_batch(out={spec}) gave {r!r} for {expected}"
        return
    n, index, spec = args
    batch, out = _batch(n), _out_array(spec, n)
    before = np.array(out, copy=True) if not isinstance(out, list) else list(out)
    expected = prog.run_batch(batch)
    r = fuzzlib.outcome(prog.run_indexed, batch, np.array(index) if index else index, out, allowed=FilterError)
    if isinstance(r, FilterError):
        return
    idx = np.flatnonzero(index) if index and isinstance(index[0], bool) else np.array(index, dtype=object)
    assert all(0 <= int(i) < n for i in idx), f"run_indexed accepted index {index} for {n} packets"
    assert len(out) >= n, f"run_indexed accepted out of length {len(out)} for {n} packets"
    for i in range(n):
        want = expected[i] if i in set(int(j) for j in idx) else before[i]
        assert out[i] == want, f"run_indexed wrote {out[i]} at {i}, expected {want}"


def test_fuzz_program_from_tuples_and_run_batch():
    if ref.IN_CI:
        ref._batch_lib()
    fuzzlib.run("program")


def test_fuzz_program_from_text():
    fuzzlib.run("program_text")


def test_fuzz_program_hostile_arguments():
    fuzzlib.run("program_args")
