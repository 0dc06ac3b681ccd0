# The VM's native core (see pfilter/_vm.pyx's docstring): the instruction forms, the interpreter
# (bpf_run, with dispatch() from _vm_cases.pxi), the decoder and the packet loops, nogil C that
# touches no Python object. Written once, included by pfilter/_vm.pyx and compiled into
# pfilter/capture/_fastcopy.pyx as well: the fast path then imports no other extension and no
# typed-memoryview support, whose import of `collections` was the largest part of pfilter's own
# start-up in every command (bench/results/latest_scale.md, "start s").
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


cdef void decode_insns(const pf_insn* src, Py_ssize_t n, vm_insn* dst) noexcept nogil:
    """The internal form of the validated program src[0:n] into dst[0:n]: relative jump targets,
    conditional jumps and load+jump / and+jump pairs as the cases of _vm_cases.pxi (pair_slot),
    runs of `jeq #k` as JEQ_RUN."""
    cdef Py_ssize_t i
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


cdef bint reads_scratch_insns(const pf_insn* src, Py_ssize_t n) noexcept nogil:
    """Whether the program src[0:n] loads from scratch memory (so M[] must be cleared per packet)."""
    cdef Py_ssize_t i
    for i in range(n):
        if src[i].code == 0x60 or src[i].code == 0x61:
            return True
    return False


cdef void run_packets(const uint8_t* prog, bint clear_mem, const uint8_t* base, const int64_t* offsets,
                      const uint32_t* caplen, const uint32_t* wirelen, Py_ssize_t n,
                      uint32_t* out) noexcept nogil:
    """out[i] = return value of the decoded program on the packet at base + offsets[i]. The
    capture fast path's entry (pfilter/capture/_fastcopy.pyx): it runs it on buffers its own
    scanner laid out, so it checks nothing and runs in one piece."""
    cdef Py_ssize_t j = 0
    cdef NoCount* nocount = NULL
    cdef AllRows* all_rows = NULL
    while j < n:
        run_span(<const vm_insn*>prog, clear_mem, base, PY_SSIZE_T_MAX, offsets, caplen, wirelen, n, all_rows, &j, n,
                 n, nocount, out, NULL)


cdef inline bint inside(int64_t offset, uint32_t caplen, Py_ssize_t size) noexcept nogil:
    """Whether bytes [offset, offset + caplen) lie in a buffer of `size` bytes (no overflow)."""
    return 0 <= offset <= size and <int64_t>caplen <= size - offset


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
