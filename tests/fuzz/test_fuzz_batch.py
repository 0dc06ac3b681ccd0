"""Fuzzing PacketBatch: built from hostile arrays (extreme offsets and lengths, wrong dtypes and
shapes, lengths that differ), changed after it was built, then run through the VM, the classifier,
select() and the writers with hostile indices. Only FilterError may escape; an operation that
succeeds on a batch whose packets lie inside its data gives the Python VM's answers (and the
written file reads back as those packets); an operation on a batch with a packet outside its data
must refuse. The workers are subprocesses: a segfault is a test failure with the input saved."""
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

import fuzzlib
import pfilter
from pfilter import _pyvm
from pfilter.errors import FilterError

EXPRESSIONS = ["ip and tcp port 80", "udp or arp", "ether[0] & 1 = 0", "len > 50"]
INT64 = st.sampled_from([-1, -2**63, 2**63 - 1, 2**62, 2**32, 2**32 - 1, 2**31])


EXTREMES = {"offsets": INT64, "caplen": st.sampled_from([0xFFFFFFFF, 2**31, 2**32, -1, 161]),
            "wirelen": st.sampled_from([0xFFFFFFFF, -1, 2**32, 0]), "timestamps": INT64,
            "linktypes": st.sampled_from([-1, 65536, 2**40])}
DTYPES = {"offsets": ["uint64", "int32", "float64", "list", "object"], "caplen": ["int64", "float64", "list", "int8"],
          "wirelen": ["int64", "list", "uint16"], "timestamps": ["uint64", "list", "float64"],
          "linktypes": ["int64", "list"]}


@st.composite
def batch_inputs(draw):
    """A coherent batch (every packet inside the data) most of the time, then sometimes one
    hostile change: an extreme value, another dtype, an array of another length."""
    n = draw(st.integers(0, 6))
    size = draw(st.integers(0, 160))
    offsets, caplen = [], []
    for _ in range(n):
        o = draw(st.integers(0, size))
        offsets.append(o)
        caplen.append(draw(st.integers(0, size - o)))
    arrays = {"offsets": [offsets, "int64"], "caplen": [caplen, "uint32"],
              "wirelen": [[c + draw(st.integers(0, 3)) for c in caplen], "uint32"],
              "timestamps": None if draw(st.booleans()) else [list(range(n)), "int64"],
              "linktypes": None if draw(st.integers(0, 3)) else [[draw(st.sampled_from([1, 101])) for _ in range(n)],
                                                                  "uint16"]}
    data = [draw(st.binary(min_size=size, max_size=size)), "uint8"]
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        name = draw(st.sampled_from(sorted(EXTREMES)))
        if arrays[name] is None:
            continue
        kind = draw(st.sampled_from(["value", "value", "dtype", "length"]))
        values = arrays[name][0]
        if kind == "value" and values:
            values[draw(st.integers(0, len(values) - 1))] = draw(EXTREMES[name])
        elif kind == "dtype":
            arrays[name][1] = draw(st.sampled_from(DTYPES[name]))
        elif kind == "length":
            arrays[name][0] = values[:-1] if values and draw(st.booleans()) else values + [0]
    if draw(st.integers(0, 5)) == 0:
        data[1] = draw(st.sampled_from(["int8", "int16", "float64", "strided", "2d", "bytes"]))
    linktype = draw(st.one_of(st.sampled_from([1, 1, 1, 1, 101, 113, 0]), st.integers(-2**40, 2**40),
                              st.sampled_from(["EN10MB", None, 1.5])))
    change = draw(st.one_of(st.none(), st.none(), st.tuples(st.sampled_from(["offsets", "caplen", "wirelen", "data"]),
                                                             st.integers(0, 7), st.one_of(st.integers(0, size + 2), INT64))))
    ops = draw(st.lists(st.sampled_from(["run_batch", "match_batch", "count_steps", "run_indexed", "classify",
                                         "select", "write", "write_which"]), min_size=1, max_size=3))
    which = draw(st.one_of(st.lists(st.integers(-3, 9), max_size=5), st.lists(st.booleans(), max_size=7),
                           st.lists(INT64, max_size=2)))
    return {"data": data, "offsets": arrays["offsets"], "caplen": arrays["caplen"], "wirelen": arrays["wirelen"],
            "timestamps": arrays["timestamps"], "linktype": linktype, "linktypes": arrays["linktypes"],
            "change": change, "ops": ops, "which": which, "expr": draw(st.sampled_from(EXPRESSIONS)), "n": n}


def build(values, dtype):
    if dtype == "list":
        return list(values)
    try:
        return np.array(values, dtype=dtype)
    except (OverflowError, ValueError):
        return list(values)          # the hostile value reaches pfilter as a Python int


def build_data(raw, kind):
    if kind == "bytes":
        return raw
    arr = np.frombuffer(raw, np.uint8).copy()
    if kind == "strided":
        return np.repeat(arr, 2)[::2]
    if kind == "2d":
        return arr[: len(arr) // 2 * 2].reshape(-1, 2)
    return arr.astype(kind)


def sound(batch, which=None):
    """Do all packets (or those of `which`, indices) lie inside the data, with arrays as the VM
    wants them?"""
    arrs = (batch.data, batch.offsets, batch.caplen, batch.wirelen)
    if any(not isinstance(a, np.ndarray) or a.ndim != 1 or not a.flags.c_contiguous for a in arrs):
        return False
    if (batch.data.dtype, batch.offsets.dtype, batch.caplen.dtype, batch.wirelen.dtype) != \
            (np.uint8, np.int64, np.uint32, np.uint32):
        return False
    n = len(batch.offsets)
    if not (len(batch.caplen) == len(batch.wirelen) == n):
        return False
    size = len(batch.data)
    pairs = zip(batch.offsets, batch.caplen) if which is None else \
        ((batch.offsets[i], batch.caplen[i]) for i in which if 0 <= i < n)
    return all(0 <= int(o) and int(o) + int(c) <= size for o, c in pairs)


def python_vm(prog, batch):
    tuples = prog.to_tuples()
    return [_pyvm.run_one(tuples, bytes(batch.data[int(o):int(o) + int(c)]), int(w))
            for o, c, w in zip(batch.offsets, batch.caplen, batch.wirelen)]


def packets_of(batch, idx):
    return [bytes(batch.data[int(batch.offsets[i]):int(batch.offsets[i]) + int(batch.caplen[i])]) for i in idx]


PROGRAMS = {}


def program(expr):
    if expr not in PROGRAMS:
        PROGRAMS[expr] = pfilter.compile(expr)
    return PROGRAMS[expr]


def run_op(op, batch, x, tmp):
    """Run one operation; return (result, what the Python model says) or raise."""
    prog = program(x["expr"])
    if op == "run_batch":
        return prog.run_batch(batch).tolist(), python_vm(prog, batch)
    if op == "match_batch":
        return prog.match_batch(batch).tolist(), [v != 0 for v in python_vm(prog, batch)]
    if op == "count_steps":
        return len(prog.count_steps(batch)), len(batch.offsets)
    if op == "run_indexed":
        n = len(batch.offsets)
        out = np.zeros(n, np.uint32)
        prog.run_indexed(batch, np.arange(n - 1, -1, -1, dtype=np.int64), out)
        return out.tolist(), python_vm(prog, batch)
    if op == "classify":
        res = pfilter.classify(batch, {"a": x["expr"], "b": "tcp"}, linktype=1)
        want = [sum(v != 0 for v in python_vm(program(e), batch)) for e in (x["expr"], "tcp")]
        return res.counts.tolist(), want
    if op == "select":
        mask = np.arange(len(batch.offsets)) % 2 == 0
        sub = batch.select(mask)
        return packets_of(sub, range(len(sub))), packets_of(batch, np.flatnonzero(mask))
    path = Path(tmp) / "out.pcap"
    if op == "write":
        pfilter.write(path, batch, format="pcap", linktype=1)
        idx = range(len(batch.offsets))
    else:
        from pfilter.capture.writer import open_writer
        which = x["which"]
        with open_writer(str(path), "pcap") as w:
            w.write(batch, np.array(which) if which else np.zeros(0, np.int64))
        n = len(batch.offsets)
        if which and isinstance(which[0], bool):
            assert len(which) == n, f"the writer took a mask of {len(which)} for {n} packets"
            idx = np.flatnonzero(which)
        else:
            assert all(0 <= i < n for i in which), f"the writer took indices {which} for {n} packets"
            idx = which
    with pfilter.open(path) as cap:
        back = [b.packet(i) for b in cap for i in range(len(b))]
    return back, packets_of(batch, idx)


@fuzzlib.target("batch", batch_inputs())
def check_batch(x):
    args = [build_data(*x["data"]), build(*x["offsets"]), build(*x["caplen"]), build(*x["wirelen"]),
            None if x["timestamps"] is None else build(*x["timestamps"])]
    batch = fuzzlib.outcome(pfilter.PacketBatch, *args, linktype=x["linktype"],
                            linktypes=None if x["linktypes"] is None else build(*x["linktypes"]),
                            allowed=FilterError)
    if isinstance(batch, FilterError):
        return
    assert sound(batch), "PacketBatch accepted packets outside its data"
    if x["change"] is not None:
        name, i, value = x["change"]
        arr = getattr(batch, name)
        if len(arr):
            try:
                arr[i % len(arr)] = value
            except (OverflowError, ValueError):
                pass                 # numpy refuses the value (or a read-only array): the caller's error
    ok = sound(batch)
    with tempfile.TemporaryDirectory(prefix="pfilter-fuzz-") as tmp:
        for op in x["ops"]:
            r = fuzzlib.outcome(run_op, op, batch, x, tmp, allowed=FilterError)
            if isinstance(r, FilterError):
                continue
            if op == "write_which" and not ok:
                # The writers check the packets they read (the selected ones) as they read them:
                # a selection that leaves the damaged packets out is written.
                which = x["which"]
                chosen = np.flatnonzero(which) if which and isinstance(which[0], bool) else which
                assert sound(batch, chosen), f"{op} wrote a selected packet outside the data"
            else:
                assert ok, f"{op} ran on a batch with a packet outside its data"
            got, want = r
            assert got == want, f"{op}: {got} != {want}"


def test_fuzz_packet_batch_construction_and_use():
    fuzzlib.run("batch")
