# cython: language_level=3
"""The cBPF virtual machine: a C `switch` on the opcode inside a `nogil` loop.

Imports nothing from pfilter; cimports pfilter/_cbpf.pxd, the one native definition of each
cBPF step (loads, ALU, jumps, the loop budget), which the classifier (pfilter/_classify.pyx)
shares. The validator in pfilter/validate.py has already checked every program. The
pure-Python twin is pfilter/_pyvm.py; both follow libpcap's bpf_filter() exactly:

* A, X and M[0..15] start at 0; loads are big-endian;
* a load past the captured length returns 0 from the program, checked without overflow
  (`k > buflen or size > buflen - k`);
* division or modulo by X = 0 returns 0; a shift by X >= 32 gives 0;
* `ld #pktlen` is the wire length;
* a backward `ja` (libpcap's `ip6 protochain` loop) is allowed; each one taken charges the span of
  its loop, and past pfilter.validate.loop_budget(caplen) the program returns 0.

The batch entry points trust nothing they are handed: each packet's offset and caplen are
checked against the data buffer (without overflow) as the packet is read, and a bad one stops
the run and is reported (its index returned), so a PacketBatch changed after it was built cannot
make the VM read outside its buffer. They run in chunks of bounded work, and between chunks take
the GIL back to let a signal handler run (Ctrl-C raises KeyboardInterrupt within a fraction of a
second, however long the batch or the program).

Linux metadata loads (k >= SKF_AD_OFF as u32) fall past any real packet, so return 0, as in
libpcap's userland interpreter.

The seccomp mode (run_records, for pfilter.seccomp) is the same loop compiled a second time with
host-order 32-bit loads (the fused type `order_t`), run over fixed 64-byte `struct seccomp_data`
records whose length (`ld #len`) is 64, as the kernel's seccomp does. The packet loop's code is
unchanged by it: the choice is made when Cython specialises the loop, not per load.

How it beats libpcap's interpreter on the same bytecode: `decode()` turns a validated program,
once, into an internal form (`vm_insn`) whose jump targets are counted from the jump itself
(so the loop needs no base pointer to take one), and where a packet load followed by a
conditional jump (`ldh [12]; jeq #0x800`), or an `and #k` followed by one, becomes a single fused
instruction: one dispatch instead of two for the pattern that makes up most of every compiled
filter. Those pairs, and the conditional jumps, are 64 of the cases of dispatch() in
_vm_cases.pxi, which scripts/gen_vm.py writes from a table when setup.py builds the extension;
every instruction's `slot` is its case there, the index of one jump table (the old flat switch's
cost), whose last three cases send `ret #k`, a JEQ_RUN and every other instruction to the loop's
own code (the others through a second switch, on their cBPF opcode). The packet loop holds the interpreter (both are inlined into
one C function: no call per packet). The second instruction of a pair stays in place, so a jump
that lands on it still finds it. Scratch memory is cleared per packet only for programs that
read it. A run of JEQ_RUN_MIN or more `jeq #k` whose false branches each fall to the next (a
seccomp allow list, a list of ports) becomes a scan in a tight loop, from wherever a jump enters
it. Nothing else changes: the semantics are instruction-for-instruction those of cBPF.

This file holds the Python entry points (typed memoryviews over numpy buffers); the native core
they run (the forms, decode_insns, bpf_run, the packet loops) is _vm_core.pxi, included here and
compiled into pfilter/capture/_fastcopy.pyx as well, so that the capture fast path needs neither
this module nor the typed-memoryview support whose import of `collections` every command paid.
"""
from cpython.exc cimport PyErr_CheckSignals

include "_vm_core.pxi"

LOOP_BUDGET_VALUES = (LOOP_BUDGET_BASE, LOOP_BUDGET_PER_BYTE, LOOP_BUDGET_MAX)
JEQ_RUN_OP = JEQ_RUN       # (for tests of decode())


def decode(const uint8_t[::1] raw):
    """The internal form (bytes of vm_insn[]) of a validated program given as struct bpf_insn[]
    bytes (decode_insns, _vm_core.pxi)."""
    cdef Py_ssize_t n = raw.shape[0] // sizeof(pf_insn)
    out = bytearray(n * sizeof(vm_insn))
    cdef uint8_t[::1] view = out
    decode_insns(<const pf_insn*>&raw[0], n, <vm_insn*>&view[0])
    return bytes(out)


def reads_scratch(const uint8_t[::1] raw):
    """Whether the program loads from scratch memory (so M[] must be cleared per packet)."""
    return reads_scratch_insns(<const pf_insn*>&raw[0], raw.shape[0] // sizeof(pf_insn))


cdef Py_ssize_t chunk_packets(const uint8_t[::1] prog) noexcept:
    """Packets per chunk: CHUNK_WORK instructions of straight-line work at the program's length."""
    cdef Py_ssize_t n = prog.shape[0] // sizeof(vm_insn)
    cdef Py_ssize_t per = CHUNK_WORK // (n if n > 0 else 1)
    return 1 if per < 1 else CHUNK_PACKETS if per > CHUNK_PACKETS else per


def first_bad_packet(const uint8_t[::1] data, const int64_t[::1] offsets, const uint32_t[::1] caplen):
    """The index of the first packet whose offset and caplen point outside data, or -1."""
    cdef Py_ssize_t i, n = offsets.shape[0], size = data.shape[0], bad = -1
    if caplen.shape[0] < n:
        return min(n, caplen.shape[0])
    with nogil:
        for i in range(n):
            if not inside(offsets[i], caplen[i], size):
                bad = i
                break
    return bad


cdef Py_ssize_t run_rows(const uint8_t[::1] prog, bint clear_mem, const uint8_t[::1] data,
                         const int64_t[::1] offsets, const uint32_t[::1] caplen, const uint32_t[::1] wirelen,
                         rows_t* rows, Py_ssize_t n, Py_ssize_t nout, counter_t* counter,
                         uint32_t* out, uint64_t* steps) except -2:
    """The batch entry points' driver: run_span over rows 0..n of the batch in chunks, with a look
    at pending signals between two. nout: the length of out (or steps), which must be the
    batch's. Returns -1, or the first packet whose offset/caplen point outside data (out is then
    filled up to it)."""
    cdef Py_ssize_t j = 0, bad = -1, npk = offsets.shape[0], size = data.shape[0]
    cdef Py_ssize_t per = chunk_packets(prog)
    cdef const vm_insn* insns = <const vm_insn*>&prog[0]
    cdef const uint8_t* base = &data[0] if size else NULL
    cdef const int64_t* offs = &offsets[0] if npk else NULL
    cdef const uint32_t* cap = &caplen[0] if npk else NULL
    cdef const uint32_t* wire = &wirelen[0] if npk else NULL
    if caplen.shape[0] != npk or wirelen.shape[0] != npk or nout != npk:
        raise ValueError("batch arrays and out differ in length")
    while j < n and bad < 0:
        with nogil:
            bad = run_span(insns, clear_mem, base, size, offs, cap, wire, npk, rows, &j, n if n - j < per else j + per,
                           n, counter, out, steps)
        PyErr_CheckSignals()
    return bad


cdef inline uint32_t* u32_ptr(uint32_t[::1] a) noexcept:
    return &a[0] if a.shape[0] else NULL


def run_batch(const uint8_t[::1] prog, bint clear_mem, const uint8_t[::1] data, const int64_t[::1] offsets,
              const uint32_t[::1] caplen, const uint32_t[::1] wirelen, uint32_t[::1] out):
    """out[i] = return value of the decoded program on packet i. Returns -1, or the index of the
    first packet whose offset/caplen point outside data (out is then filled up to it)."""
    cdef NoCount* nocount = NULL
    cdef AllRows* all_rows = NULL
    return run_rows(prog, clear_mem, data, offsets, caplen, wirelen, all_rows, offsets.shape[0], out.shape[0],
                    nocount, u32_ptr(out), NULL)


def run_indexed(const uint8_t[::1] prog, bint clear_mem, const uint8_t[::1] data, const int64_t[::1] offsets,
                const uint32_t[::1] caplen, const uint32_t[::1] wirelen, const int64_t[::1] index,
                uint32_t[::1] out):
    """out[index[j]] = return value on packet index[j]: run a subset (one link type of a mixed batch).
    Returns -1, or the first packet whose offset/caplen point outside data. An index outside the
    batch (the caller has refused them) is skipped."""
    cdef NoCount* nocount = NULL
    cdef SomeRows some
    some.index = &index[0] if index.shape[0] else NULL
    return run_rows(prog, clear_mem, data, offsets, caplen, wirelen, &some, index.shape[0], out.shape[0], nocount,
                    u32_ptr(out), NULL)


def count_steps(const uint8_t[::1] prog, const uint8_t[::1] data, const int64_t[::1] offsets,
                const uint32_t[::1] caplen, const uint32_t[::1] wirelen, uint64_t[::1] steps):
    """steps[i] = number of cBPF instructions executed for packet i (path length). Returns -1, or
    the first packet whose offset/caplen point outside data."""
    cdef Count cnt
    cdef AllRows* all_rows = NULL
    return run_rows(prog, True, data, offsets, caplen, wirelen, all_rows, offsets.shape[0], steps.shape[0],
                    &cnt, NULL, &steps[0] if steps.shape[0] else NULL)


def run_records(const uint8_t[::1] prog, bint clear_mem, const uint8_t[::1] records, uint32_t[::1] out):
    """The seccomp mode: out[i] = return value of the decoded program on the 64-byte record i of
    `records` (struct seccomp_data, host byte order; `ld #len` is 64). Loads of a validated
    seccomp program stay inside the record (pfilter.validate, seccomp=True); they are bounds
    checked all the same, as in every mode."""
    cdef Py_ssize_t n = records.shape[0] // SECCOMP_RECORD, i = 0, stop
    cdef Py_ssize_t per = chunk_packets(prog)
    cdef const uint8_t* base = &records[0] if n else NULL
    cdef const vm_insn* insns = <const vm_insn*>&prog[0]
    cdef NoCount* nocount = NULL
    cdef HostOrder* host = NULL
    cdef uint64_t spent
    if records.shape[0] % SECCOMP_RECORD or out.shape[0] != n:
        raise ValueError("records are not whole 64-byte records, or out differs in length")
    while i < n:
        with nogil:
            spent = 0
            stop = n if n - i < per else i + per
            while i < stop:
                out[i] = bpf_run(insns, base + i * SECCOMP_RECORD, SECCOMP_RECORD, SECCOMP_RECORD,
                                 clear_mem, &spent, nocount, host)
                i += 1
                if spent >= CHUNK_WORK:
                    break
        PyErr_CheckSignals()
    return -1


def trace_one(const uint8_t[::1] prog, const uint8_t[::1] packet, uint32_t wirelen, uint32_t[::1] rows):
    """(return value, instructions executed) of the decoded program on one packet; rows (3 per
    instruction: its index, A and X before it) receives the first len(rows) // 3 of them."""
    cdef const uint8_t* p = &packet[0] if packet.shape[0] else NULL
    cdef uint32_t r
    cdef uint64_t spent = 0
    cdef Trace t
    cdef BigEndian* bigendian = NULL
    t.rows = &rows[0] if rows.shape[0] >= 3 else NULL
    t.cap = rows.shape[0] // 3
    t.n = 0
    with nogil:
        r = bpf_run(<const vm_insn*>&prog[0], p, <uint32_t>packet.shape[0], wirelen, True, &spent, &t, bigendian)
    return r, t.n


def profile_batch(const uint8_t[::1] prog, const uint8_t[::1] data, const int64_t[::1] offsets,
                  const uint32_t[::1] caplen, const uint32_t[::1] wirelen, uint64_t[::1] hits,
                  uint32_t[::1] out):
    """run_batch that also adds to hits[i] the times instruction i ran (hits has one entry per
    instruction). Returns -1, or the first packet whose offset/caplen point outside data."""
    cdef Profile prof
    if <size_t>hits.shape[0] * sizeof(vm_insn) != <size_t>prog.shape[0]:
        raise ValueError("hits needs one entry per instruction")
    cdef AllRows* all_rows = NULL
    prof.hits = &hits[0]
    return run_rows(prog, True, data, offsets, caplen, wirelen, all_rows, offsets.shape[0], out.shape[0],
                    &prof, u32_ptr(out), NULL)


def run_one(const uint8_t[::1] prog, const uint8_t[::1] packet, uint32_t wirelen):
    """Return value of the decoded program on one packet."""
    cdef const uint8_t* p = &packet[0] if packet.shape[0] else NULL
    cdef uint32_t r = 0, caplen = <uint32_t>packet.shape[0]
    cdef int64_t offset = 0
    cdef Py_ssize_t j = 0
    cdef NoCount* nocount = NULL
    cdef AllRows* all_rows = NULL
    with nogil:
        run_span(<const vm_insn*>&prog[0], True, p, packet.shape[0], &offset, &caplen, &wirelen, 1, all_rows, &j, 1,
                 1, nocount, &r, NULL)
    return r
