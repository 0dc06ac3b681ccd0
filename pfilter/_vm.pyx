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
"""
from cpython.exc cimport PyErr_CheckSignals
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset

from pfilter._cbpf cimport (LOOP_BUDGET_BASE, LOOP_BUDGET_MAX, LOOP_BUDGET_PER_BYTE, STEP_DONE, alu,
                            charge_loop, jump_taken, load_abs, load_ind, load_msh, step)

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define PF_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 0)
    #else
    #define PF_PREFETCH(p) ((void)(p))
    #endif
    #if defined(__GNUC__) || defined(__clang__)
    /* Cython also declares its return variable with the function's return type (where the
       attribute means nothing), and defines every specialisation of a fused function, used or
       not: neither is worth a warning. */
    #pragma GCC diagnostic ignored "-Wattributes"
    #pragma GCC diagnostic ignored "-Wunused-function"
    #define PF_INLINED_U32 __attribute__((always_inline)) uint32_t
    #define PF_INLINED_INT __attribute__((always_inline)) int
    #else
    #define PF_INLINED_U32 uint32_t
    #define PF_INLINED_INT int
    #endif
    """
    void PF_PREFETCH(const void* p) noexcept nogil
    # The return types of bpf_run and dispatch: uint32_t and int, with the attribute that makes
    # the C compiler inline them, bpf_run into every packet loop and dispatch into bpf_run (they
    # are too large for GCC to inline on its own: a call per packet costs about a tenth of a short
    # filter's run, and a call per instruction keeps A in memory)
    ctypedef uint32_t inlined_u32 "PF_INLINED_U32"
    ctypedef int inlined_int "PF_INLINED_INT"

cdef extern from *:
    """
    typedef struct { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; } pf_insn;
    typedef struct { uint16_t slot; uint16_t op; uint32_t k; uint32_t k2; int32_t jt; int32_t jf; } vm_insn;
    """
    ctypedef struct pf_insn:
        uint16_t code
        uint8_t jt
        uint8_t jf
        uint32_t k
    ctypedef struct vm_insn:
        uint16_t slot    # its case in dispatch() (_vm_cases.pxi): pair_slot, SLOT_RET_K, SLOT_JEQ_RUN, SLOT_OTHER
        uint16_t op      # the cBPF opcode (the first of a pair's two), or JEQ_RUN
        uint32_t k       # the operand (load offset, constant)
        uint32_t k2      # jumps and pairs: the jump's constant; backward ja: the span it loops over
        int32_t jt       # the true target's index minus this one's (ja: the target's; backward < 0)
        int32_t jf       # the false target's index minus this one's

cdef enum:
    # One chunk of a batch run (between two looks at pending signals) is at most CHUNK_WORK
    # instructions of straight-line work (CHUNK_WORK // program length packets, at most
    # CHUNK_PACKETS) plus about CHUNK_WORK of loop charges: a few hundred milliseconds at worst.
    CHUNK_WORK = 1 << 26
    CHUNK_PACKETS = 1 << 20
    # Batches are far larger than the CPU caches, so the loop is bound by memory latency: it asks
    # for the headers of the packet PREFETCH_AHEAD places ahead while it filters this one.
    PREFETCH_AHEAD = 8
    # the seccomp mode's record: sizeof(struct seccomp_data)
    SECCOMP_RECORD = 64
    # a run of `jeq #k` tests, each false branch falling to the next (a seccomp allow list, a list
    # of ports): an opcode cBPF does not use
    JEQ_RUN = 0xff
    JEQ_RUN_MIN = 4
    # the slots: the cases of dispatch() (_vm_cases.pxi), one jump table. 0 .. 63: the conditional
    # jumps and load+jump pairs (pair_slot); then the ones it sends back to bpf_run's own code
    SLOT_RET_K = 64
    SLOT_JEQ_RUN = 65
    SLOT_OTHER = 66
    # what dispatch() returns for those (for the others: taken 1, not taken 0, or -1: return 0)
    GO_RET_K = 2
    GO_JEQ_RUN = 3
    GO_OTHER = 4

LOOP_BUDGET_VALUES = (LOOP_BUDGET_BASE, LOOP_BUDGET_PER_BYTE, LOOP_BUDGET_MAX)
JEQ_RUN_OP = JEQ_RUN       # (for tests of decode())

ctypedef struct NoCount:
    char unused

ctypedef struct Count:
    uint64_t n

# Tracing (Program.trace): the index, A and X before every executed instruction, in order
ctypedef struct Trace:
    uint32_t* rows      # cap rows of (pc, A, X)
    uint64_t n          # instructions executed (past cap only counted: the caller retries)
    uint64_t cap

# Profiling (pfilter.profile): how often each instruction ran
ctypedef struct Profile:
    uint64_t* hits      # hits[pc] += 1 per executed instruction

ctypedef fused counter_t:
    NoCount
    Count
    Trace
    Profile

ctypedef struct BigEndian:
    char unused

ctypedef struct HostOrder:
    char unused

# 32-bit loads: big-endian (packets, libpcap's bpf_filter) or host order (seccomp records)
ctypedef fused order_t:
    BigEndian
    HostOrder

# The packets a batch loop runs: all of the batch in order, or those an index lists
ctypedef struct AllRows:
    char unused

ctypedef struct SomeRows:
    const int64_t* index

ctypedef fused rows_t:
    AllRows
    SomeRows


cdef inline void count(counter_t* counter, Py_ssize_t pc, uint32_t A, uint32_t X) noexcept nogil:
    """Instruction pc is about to run with A and X: a Count counts it, a Trace notes a row, a
    Profile a hit (resolved when Cython specialises bpf_run: nothing at all for NoCount)."""
    cdef uint32_t* row
    if counter_t is Count:
        counter.n += 1
    elif counter_t is Trace:
        if counter.n < counter.cap:
            row = counter.rows + 3 * counter.n
            row[0] = <uint32_t>pc
            row[1] = A
            row[2] = X
        counter.n += 1
    elif counter_t is Profile:
        counter.hits[pc] += 1


cdef inline uint16_t pair_slot(uint16_t load, uint16_t jump) noexcept nogil:
    """The _vm_cases.pxi case for `load` (0: none; a packet load or `and #k`) followed by the
    conditional jump `jump`: 8 * the load's number (none 0, ld/ldh/ldb [k] 1-3, ld/ldh/ldb [x+k]
    4-6, and #k 7) + the jump's (jeq, jgt, jge, jset; each #k then x)."""
    cdef uint16_t n = 0
    if load == 0x54:
        n = 7
    elif load:
        n = 1 + 3 * ((load >> 6) & 1) + ((load >> 3) & 3)
    return 8 * n + 2 * ((jump >> 4) - 1) + ((jump >> 3) & 1)


include "_vm_cases.pxi"


cdef inline inlined_u32 bpf_run(const vm_insn* prog, const uint8_t* p, uint32_t buflen, uint32_t wirelen,
                             bint clear_mem, uint64_t* spent, counter_t* counter, order_t* order) noexcept nogil:
    """Run one packet. spent[0] grows by the loop charges of this packet (the caller sums them
    over a chunk). With a Count counter, counter.n receives the number of cBPF instructions
    executed (a fused instruction counts as the two it stands for once its load succeeded).
    With a Trace or Profile counter, every cBPF instruction executed is noted by its index
    (the two of a fused pair, and every `jeq` a JEQ_RUN scan passes, each on its own).
    `order` (always NULL) selects the 32-bit loads: BigEndian, or HostOrder for seccomp."""
    cdef uint32_t A = 0, X = 0, k, a, x
    cdef uint32_t mem[16]
    cdef const vm_insn* pc = prog
    cdef const vm_insn* run_last
    cdef const vm_insn* q
    cdef uint64_t start = spent[0]
    cdef bint host = order_t is HostOrder
    cdef int go
    if clear_mem:
        memset(mem, 0, sizeof(mem))
    while True:
        count(counter, pc - prog, A, X)
        k = pc.k
        # One C `switch` on the slot (dispatch(), inlined): the jumps and load+jump pairs, most of
        # what runs, done there; ret #k and JEQ_RUN here; the other opcodes through the C `switch`
        # below, then step()'s (see tests/test_vm_dispatch.py). Each case's constant result is
        # threaded by the C compiler straight to its branch here.
        go = dispatch(prog, pc, p, buflen, &A, X, counter, order)
        if go == 1:
            pc += pc.jt
            continue
        if go == 0:
            pc += pc.jf
            continue
        if go == GO_RET_K:
            return k
        if go == GO_JEQ_RUN:     # jeq #k, first of a run of k2 whose false branches fall to the next
            run_last = pc + (pc.k2 - 1)
            if counter_t is Count:
                counter.n -= <uint64_t>(pc - prog)
            q = pc
            while pc.k != A and pc < run_last:
                pc += 1
            if counter_t is Count:
                counter.n += <uint64_t>(pc - prog)
            elif counter_t is Trace or counter_t is Profile:
                while q < pc:
                    q += 1
                    count(counter, q - prog, A, X)
            if pc.k == A:
                pc += pc.jt
            else:
                pc += pc.jf
            continue
        if go != GO_OTHER:
            return 0
        if pc.op == 0x16:        # ret a
            return A
        elif pc.op == 0x20:      # ld [k]
            if not load_abs(p, buflen, k, 4, host, &A): return 0
        elif pc.op == 0x28:      # ldh [k]
            if not load_abs(p, buflen, k, 2, host, &A): return 0
        elif pc.op == 0x30:      # ldb [k]
            if not load_abs(p, buflen, k, 1, host, &A): return 0
        elif pc.op == 0x40:      # ld [x+k]
            if not load_ind(p, buflen, X, k, 4, host, &A): return 0
        elif pc.op == 0x48:      # ldh [x+k]
            if not load_ind(p, buflen, X, k, 2, host, &A): return 0
        elif pc.op == 0x50:      # ldb [x+k]
            if not load_ind(p, buflen, X, k, 1, host, &A): return 0
        elif pc.op == 0xb1:      # ldxb 4*([k]&0xf)
            if not load_msh(p, buflen, k, &X): return 0
        elif pc.op == 0x05:      # ja (a backward one charges the span of its loop, k2)
            if pc.k2 and not charge_loop(spent, start, pc.k2, buflen):
                return 0
            pc += pc.jt
            continue
        else:
            # the rarer statements, out of line: through copies, so that A and X, whose
            # addresses never leave this function, stay in registers
            a = A
            x = X
            if step(pc.op, k, p, buflen, wirelen, &a, &x, mem, host) != STEP_DONE:
                return 0     # a division by X = 0 (other opcodes are validated)
            A = a
            X = x
        pc += 1


def decode(const uint8_t[::1] raw):
    """The internal form (bytes of vm_insn[]) of a validated program given as struct bpf_insn[]
    bytes: relative jump targets, conditional jumps and load+jump / and+jump pairs as the cases
    of _vm_cases.pxi (pair_slot), runs of `jeq #k` as JEQ_RUN."""
    cdef Py_ssize_t n = raw.shape[0] // sizeof(pf_insn), i
    cdef const pf_insn* src = <const pf_insn*>&raw[0]
    out = bytearray(n * sizeof(vm_insn))
    cdef uint8_t[::1] view = out
    cdef vm_insn* dst = <vm_insn*>&view[0]
    cdef uint16_t c, nc
    cdef uint32_t run
    for i in range(n):
        c = src[i].code
        dst[i].slot = SLOT_RET_K if c == 0x06 else SLOT_OTHER
        dst[i].op = c
        dst[i].k = src[i].k
        dst[i].k2 = 0
        dst[i].jt = dst[i].jf = 0
        if c == 0x05:
            dst[i].jt = 1 + <int32_t>src[i].k
            if <int32_t>src[i].k < 0:       # backward: the loop spans target..i
                dst[i].k2 = <uint32_t>(-<int32_t>src[i].k)
        elif (c & 0x07) == 0x05:
            dst[i].slot = pair_slot(0, c)
            dst[i].k2 = src[i].k
            dst[i].jt = 1 + src[i].jt
            dst[i].jf = 1 + src[i].jf
    for i in range(n - 1):
        c, nc = src[i].code, src[i + 1].code
        if c in (0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x54) and (nc & 0x07) == 0x05 and nc != 0x05:
            dst[i].slot = pair_slot(c, nc)
            dst[i].k2 = src[i + 1].k
            dst[i].jt = dst[i + 1].jt + 1
            dst[i].jf = dst[i + 1].jf + 1
    # runs of `jeq #k` (JEQ_RUN): k2 = the instructions from i to the run's end
    run = 0
    for i in range(n - 1, -1, -1):
        if src[i].code != 0x15:
            run = 0
            continue
        run = run + 1 if run and src[i].jf == 0 else 1
        if run >= JEQ_RUN_MIN:
            dst[i].slot = SLOT_JEQ_RUN
            dst[i].op = JEQ_RUN
            dst[i].k2 = run
    return bytes(out)


def reads_scratch(const uint8_t[::1] raw):
    """Whether the program loads from scratch memory (so M[] must be cleared per packet)."""
    cdef Py_ssize_t n = raw.shape[0] // sizeof(pf_insn), i
    cdef const pf_insn* src = <const pf_insn*>&raw[0]
    for i in range(n):
        if src[i].code == 0x60 or src[i].code == 0x61:
            return True
    return False


cdef void run_packets(const uint8_t* prog, bint clear_mem, const uint8_t* base, const int64_t* offsets,
                      const uint32_t* caplen, const uint32_t* wirelen, Py_ssize_t n,
                      uint32_t* out) noexcept nogil:
    """out[i] = return value of the decoded program on the packet at base + offsets[i]. The C
    entry point other extensions cimport (pfilter/_vm.pxd): the capture fast path runs it on
    buffers its own scanner laid out, so it checks nothing and runs in one piece."""
    cdef Py_ssize_t j = 0
    cdef NoCount* nocount = NULL
    cdef AllRows* all_rows = NULL
    while j < n:
        run_span(<const vm_insn*>prog, clear_mem, base, PY_SSIZE_T_MAX, offsets, caplen, wirelen, n, all_rows, &j, n,
                 n, nocount, out, NULL)


cdef inline bint inside(int64_t offset, uint32_t caplen, Py_ssize_t size) noexcept nogil:
    """Whether bytes [offset, offset + caplen) lie in a buffer of `size` bytes (no overflow)."""
    return 0 <= offset <= size and <int64_t>caplen <= size - offset


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


cdef inline Py_ssize_t row(rows_t* rows, Py_ssize_t j) noexcept nogil:
    """The batch index of the j-th packet to run."""
    if rows_t is SomeRows:
        return rows.index[j]
    else:
        return j


cdef Py_ssize_t run_span(const vm_insn* insns, bint clear_mem, const uint8_t* base, Py_ssize_t size,
                         const int64_t* offs, const uint32_t* cap, const uint32_t* wire, Py_ssize_t npk,
                         rows_t* rows, Py_ssize_t* at, Py_ssize_t stop, Py_ssize_t n, counter_t* counter,
                         uint32_t* out, uint64_t* steps) noexcept nogil:
    """The packet loop of every batch entry point: the packets row(at[0]) .. row(stop - 1) of a
    batch of npk packets at base + offs[i] in a buffer of size bytes (n, the end of the whole run,
    bounds the prefetch). out[i] receives packet i's return value; with a Count counter,
    steps[i] its instructions executed instead. at[0] advances past the packets run; the loop
    stops early once the loop charges reach CHUNK_WORK. Returns -1, or the first packet whose
    offset/caplen point outside the buffer; a row outside the batch is skipped.
    bpf_run is inlined here (inlined_u32): no call per packet."""
    cdef Py_ssize_t j = at[0], i, ahead
    cdef BigEndian* bigendian = NULL
    cdef uint64_t spent = 0
    cdef uint32_t r
    while j < stop:
        if j + PREFETCH_AHEAD < n:
            ahead = row(rows, j + PREFETCH_AHEAD)
            if rows_t is AllRows or 0 <= ahead < npk:
                PF_PREFETCH(base + offs[ahead])
                PF_PREFETCH(base + offs[ahead] + 63)
        i = row(rows, j)
        j += 1
        if rows_t is SomeRows:
            if not 0 <= i < npk:
                continue
        if not inside(offs[i], cap[i], size):
            at[0] = j - 1
            return i
        if counter_t is Count:
            counter.n = 0
        r = bpf_run(insns, base + offs[i], cap[i], wire[i], clear_mem, &spent, counter, bigendian)
        if counter_t is Count:
            steps[i] = counter.n
        else:
            out[i] = r
        if spent >= CHUNK_WORK:
            break
    at[0] = j
    return -1


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
