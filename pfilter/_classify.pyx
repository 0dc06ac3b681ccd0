# cython: language_level=3
"""The multi-rule engine behind pfilter.classify: every rule over every packet in one nogil pass.

Imports nothing from pfilter. The planner in pfilter.classification.plan (whose docstring explains the
design) hands it plain numpy arrays:

* `code`: all rule programs rewritten into one array of `cl_insn` (16 bytes: code, aux, jt, jf,
  k with absolute 32-bit jump targets), rule r starting at `starts[r]`. Opcodes are cBPF's plus
  OP_TEST (k = test node, jt/jf = targets, which may be LEAF_ACCEPT / LEAF_REJECT; aux = the
  registers the node's block sets, bit 0 A, bit 1 X).
* value nodes (`vparent`, `vcode`, `vstart`, `vlen`): straight-line runs that depend on the
  packet and their parent's A and X only; test nodes (`tvalue`, `tcode`, `tk`): a value node and
  a conditional jump. Both are memoised per packet (stamped with its sequence number).
* `signature`: the test nodes whose outcomes name a packet's class (ClassTable, class_lookup);
  equality groups (`Groups`): value nodes compared with many constants, found by binary search.

Semantics are those of pfilter._vm (libpcap's bpf_filter), from the same definition,
pfilter/_cbpf.pxd: A, X, M[] start at 0, big-endian loads, a load past the captured length or a
division by zero returns 0, shifts by 32 or more give 0, `len` is the wire length, the loop
budget of pfilter.validate.loop_budget per packet and rule.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset

from pfilter._cbpf cimport (LOOP_BUDGET_BASE, LOOP_BUDGET_MAX, LOOP_BUDGET_PER_BYTE, STEP_DONE,
                            alu, charge_loop, jump_taken, load_abs, step)

cdef extern from *:
    void __builtin_prefetch(const void* addr) noexcept nogil

cdef extern from *:
    """
    typedef struct { uint16_t code; uint16_t aux; uint32_t jt; uint32_t jf; uint32_t k; } cl_insn;
    #define CL_LEAF_ACCEPT 0xFFFFFFFEu  /* a test-node target folded from `ret #k`, k != 0 */
    #define CL_LEAF_REJECT 0xFFFFFFFFu  /* ... from `ret #0` */
    """
    const uint32_t LEAF_ACCEPT "CL_LEAF_ACCEPT"
    const uint32_t LEAF_REJECT "CL_LEAF_REJECT"
    ctypedef struct cl_insn:
        uint16_t code
        uint16_t aux
        uint32_t jt
        uint32_t jf
        uint32_t k

DEF PREFETCH_AHEAD = 8         # rows ahead whose packet headers are prefetched
DEF MAX_CLASS_ENTRIES = 4194304   # bounds the class table (16 bytes an entry) of one run()
DEF OP_TEST = 0x100

LOOP_BUDGET_VALUES = (LOOP_BUDGET_BASE, LOOP_BUDGET_PER_BYTE, LOOP_BUDGET_MAX)
OP_TEST_VALUE = OP_TEST
LEAF_ACCEPT_VALUE = LEAF_ACCEPT
LEAF_REJECT_VALUE = LEAF_REJECT
INSN_SIZE = sizeof(cl_insn)

# test-node results
DEF T_FALSE = 0
DEF T_TRUE = 1
DEF T_ABORT = 2


ctypedef struct ValueMemo:   # one value node's result on the packet stamped `stamp`
    uint32_t stamp
    uint32_t A
    uint32_t X
    uint32_t abort


ctypedef struct TestMemo:    # one test node's result on the packet stamped `stamp`
    uint32_t stamp
    uint32_t res


ctypedef struct Memo:
    # value nodes
    const cl_insn* vcode
    const uint32_t* vstart
    const uint32_t* vlen
    const int32_t* vparent     # the node whose A and X this one starts from; -1: from 0, 0
    ValueMemo* vm
    # test nodes
    const uint32_t* tvalue
    const uint16_t* tcode
    const uint32_t* tk
    TestMemo* tm
    uint32_t cur              # stamp of the current packet (never 0)


# How a rule stands for the packets of one class.
DEF R_DECIDED = 0            # the signature tests decide it: const_hit holds the verdict
DEF R_DEFAULT = 1            # decided when every equality test of a group it meets is false;
                             # run again from `entry` when one of them is true for the packet
DEF R_OPEN = 2               # run from `entry` for every packet


ctypedef struct RuleAt:      # where one rule stands for the packets of one class
    uint32_t status
    uint32_t entry           # code index to resume at (after the signature tests)
    int32_t ra               # value node whose A the rule holds there (-1: A is still 0)
    int32_t rx               # ... whose X (-1: X is still 0)


ctypedef struct Groups:      # equality groups: value nodes compared with many constants
    Py_ssize_t n
    const uint32_t* value    # group g's value node
    const uint32_t* start    # its constants: const[start[g] : start[g + 1]], ascending
    const uint32_t* consts
    const uint32_t* test     # the test node `jeq #const` of each constant
    const int32_t* tgroup    # per test node: its group, -1 = none
    const uint32_t* trig_start   # per test node t: rules meeting t, trig[trig_start[t]:...]
    const uint32_t* trig
    const uint32_t* grule_start  # per group g: rules meeting any of its tests
    const uint32_t* grule


ctypedef struct ClassTable:  # packet classes seen so far, found by key
    uint64_t* keys
    int32_t* index           # per slot: class number, -1 = empty slot
    uint32_t nslots          # a power of two, >= 2 * maxclasses
    uint32_t nclasses
    uint32_t maxclasses
    Py_ssize_t nrules
    Py_ssize_t width         # bytes in a row of the output (nrules, or nrules / 8 packed)
    bint packed
    RuleAt* at               # class c: at[c * nrules + r]
    uint32_t* open_rules     # class c: its nopen[c] R_OPEN rules at open_rules[c * nrules]
    uint32_t* nopen
    uint8_t* const_hit       # class c: verdicts of R_DECIDED and R_DEFAULT rules, [c * nrules]
    uint8_t* const_row       # ... as an output row (bool or packed), at [c * width]
    uint8_t* live            # class c: group g matters to one of its R_DEFAULT rules, [c * ngroups]
    int64_t* packets         # class c: packets seen, and their wire bytes
    int64_t* nbytes


cdef int32_t class_lookup(ClassTable* ct, uint64_t key, const cl_insn* code,
                          const uint32_t* starts, const uint8_t* is_sig, const Groups* gr,
                          Memo* m) noexcept nogil:
    """The class of the packet whose signature tests gave `key` (their outcomes, memoised for
    this packet), made now if it is new. Every rule is walked through the signature tests its
    path meets: one that reaches `ret` is R_DECIDED for the whole class. The others walk on,
    taking every equality-group test as false: one that reaches `ret` that way is R_DEFAULT
    (the group lookup runs it again for a packet where one of those tests is true); the rest
    are R_OPEN. -1 when the table is full."""
    cdef uint32_t h = <uint32_t>((key * 0x9E3779B97F4A7C15ULL) >> 40) & (ct.nslots - 1)
    cdef RuleAt* at
    cdef Py_ssize_t r, c
    cdef const cl_insn* pc
    cdef uint32_t t, res, target, nopen = 0
    cdef int32_t ra, rx, g
    cdef bint assumed
    cdef uint8_t* hit
    cdef uint8_t* row
    cdef uint8_t* live
    while ct.index[h] >= 0:
        if ct.keys[h] == key:
            return ct.index[h]
        h = (h + 1) & (ct.nslots - 1)
    if ct.nclasses >= ct.maxclasses:
        return -1
    c = ct.nclasses
    ct.nclasses += 1
    ct.keys[h] = key
    ct.index[h] = <int32_t>c
    at = ct.at + c * ct.nrules
    hit = ct.const_hit + c * ct.nrules
    row = ct.const_row + c * ct.width
    live = ct.live + c * gr.n
    for r in range(ct.nrules):
        ra = rx = -1
        pc = code + starts[r]
        at[r].status = R_OPEN
        assumed = False
        while True:
            if pc.code != OP_TEST:
                break
            t = pc.k
            if is_sig[t]:
                res = m.tm[t].res
                if res == T_ABORT:
                    at[r].status = R_DEFAULT if assumed else R_DECIDED
                    break
            elif gr.n and gr.tgroup[t] >= 0:
                if not assumed:        # resume here, where the signature tests end
                    at[r].entry = <uint32_t>(pc - code)
                    at[r].ra = ra
                    at[r].rx = rx
                    assumed = True
                live[gr.tgroup[t]] = 1
                res = 0
            else:
                break
            if pc.aux & 1:
                ra = <int32_t>m.tvalue[t]
            if pc.aux & 2:
                rx = <int32_t>m.tvalue[t]
            target = pc.jt if res else pc.jf
            if target >= LEAF_ACCEPT:
                at[r].status = R_DEFAULT if assumed else R_DECIDED
                if target == LEAF_ACCEPT:
                    hit[r] = 1
                    if ct.packed:
                        row[r >> 3] |= <uint8_t>(0x80 >> (r & 7))
                    else:
                        row[r] = 1
                break
            pc = code + target
        if at[r].status == R_OPEN:
            if not assumed:
                at[r].entry = <uint32_t>(pc - code)
                at[r].ra = ra
                at[r].rx = rx
            ct.open_rules[c * ct.nrules + nopen] = <uint32_t>r
            nopen += 1
    ct.nopen[c] = nopen
    return <int32_t>c


cdef inline Py_ssize_t find_const(const uint32_t* consts, Py_ssize_t lo, Py_ssize_t hi,
                                  uint32_t value) noexcept nogil:
    """Index of value in the ascending consts[lo:hi], or -1."""
    cdef Py_ssize_t mid, end = hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if consts[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    if lo < end and consts[lo] == value:
        return lo
    return -1


cdef void free_classes(ClassTable* ct) noexcept nogil:
    free(ct.keys)
    free(ct.index)
    free(ct.at)
    free(ct.open_rules)
    free(ct.nopen)
    free(ct.const_hit)
    free(ct.const_row)
    free(ct.live)
    free(ct.packets)
    free(ct.nbytes)


cdef inline void eval_value(Memo* m, uint32_t v, const uint8_t* p, uint32_t buflen,
                            uint32_t wirelen) noexcept nogil:
    """Run value node v on the packet and record A, X and whether it aborted. Most nodes are one
    load or `and` on a memoised parent's registers (or none): those run here, in line, since a
    call costs more than their one statement; the others go to eval_node."""
    cdef const cl_insn* pc
    cdef int32_t parent = m.vparent[v]
    cdef uint32_t A = 0, X = 0
    cdef bint ok
    if m.vlen[v] != 1 or (parent >= 0 and (m.vm[parent].stamp != m.cur or m.vm[parent].abort)):
        eval_node(m, v, p, buflen, wirelen)
        return
    if parent >= 0:
        A = m.vm[parent].A
        X = m.vm[parent].X
    pc = m.vcode + m.vstart[v]
    # the shared helpers given a constant size or opcode: inlined, each is its one case
    if pc.code == 0x28:       # ldh [k]
        ok = load_abs(p, buflen, pc.k, 2, False, &A)
    elif pc.code == 0x30:     # ldb [k]
        ok = load_abs(p, buflen, pc.k, 1, False, &A)
    elif pc.code == 0x20:     # ld [k]
        ok = load_abs(p, buflen, pc.k, 4, False, &A)
    elif pc.code == 0x54:     # and #k
        ok = alu(0x54, &A, pc.k)
    else:
        eval_node(m, v, p, buflen, wirelen)
        return
    m.vm[v].A = A
    m.vm[v].X = X
    m.vm[v].abort = not ok
    m.vm[v].stamp = m.cur


cdef void eval_node(Memo* m, uint32_t v, const uint8_t* p, uint32_t buflen,
                    uint32_t wirelen) noexcept nogil:
    """eval_value for any node: its parent first when not memoised yet, then its statements."""
    cdef const cl_insn* pc = m.vcode + m.vstart[v]
    cdef const cl_insn* end = pc + m.vlen[v]
    cdef uint32_t A = 0, X = 0
    cdef uint8_t abort = 0
    cdef int32_t parent = m.vparent[v]
    cdef uint32_t mem[16]         # (value nodes hold no scratch-memory statement)
    if parent >= 0:
        # a rule reaches v only through its parent, so the parent is normally memoised already
        if m.vm[parent].stamp != m.cur:
            eval_node(m, <uint32_t>parent, p, buflen, wirelen)
        A = m.vm[parent].A
        X = m.vm[parent].X
        abort = <uint8_t>m.vm[parent].abort
        if abort:
            pc = end
    while pc < end:
        # the planner puts only loads, ALU, tax and txa in value nodes
        if step(pc.code, pc.k, p, buflen, wirelen, &A, &X, mem, False) != STEP_DONE:
            abort = 1
            break
        pc += 1
    m.vm[v].A = A
    m.vm[v].X = X
    m.vm[v].abort = abort
    m.vm[v].stamp = m.cur


cdef inline uint8_t eval_test(Memo* m, uint32_t t, const uint8_t* p, uint32_t buflen,
                              uint32_t wirelen) noexcept nogil:
    """The outcome of test node t on this packet (T_FALSE, T_TRUE or T_ABORT), memoised."""
    cdef uint32_t v, A, k
    cdef uint8_t r
    if m.tm[t].stamp == m.cur:
        return <uint8_t>m.tm[t].res
    v = m.tvalue[t]
    if m.vm[v].stamp != m.cur:
        eval_value(m, v, p, buflen, wirelen)
    if m.vm[v].abort:
        r = T_ABORT
    else:
        A = m.vm[v].A
        k = m.tk[t]
        if m.tcode[t] & 0x08:      # BPF_X: compare with X
            k = m.vm[v].X
        r = jump_taken(m.tcode[t], A, k)
    m.tm[t].res = r
    m.tm[t].stamp = m.cur
    return r


cdef inline uint32_t run_rule(const cl_insn* code, uint32_t start, uint32_t A, uint32_t X,
                              bint usesmem, Memo* m, const uint8_t* p, uint32_t buflen,
                              uint32_t wirelen) noexcept nogil:
    """The return value of the rule program entered at code[start] with registers A and X
    (0 and 0 at a program's start) and M[] zeroed. libpcap: bpf_filter(), plus OP_TEST."""
    cdef uint32_t k, v, t, target
    cdef uint32_t mem[16]
    cdef const cl_insn* pc = code + start
    cdef uint64_t back = 0
    cdef uint8_t r
    cdef uint16_t op
    if usesmem:
        memset(mem, 0, sizeof(mem))
    while True:
        # chains of test nodes, without the switch; a test's target may be a folded `ret`
        while pc.code == OP_TEST:
            t = pc.k
            r = eval_test(m, t, p, buflen, wirelen)
            if r == T_ABORT:
                return 0
            target = pc.jt if r else pc.jf
            if target >= LEAF_ACCEPT:
                return target == LEAF_ACCEPT
            if pc.aux:             # the registers the test's block sets, for blocks after it
                v = m.tvalue[t]
                if pc.aux & 1:
                    A = m.vm[v].A
                if pc.aux & 2:
                    X = m.vm[v].X
            pc = code + target
        k = pc.k
        op = pc.code
        # op is a C integer compared with constants only: Cython emits one C `switch`.
        if op == 0x06:        # ret #k
            return k
        elif op == 0x16:      # ret a
            return A
        elif op == 0x05:      # ja (absolute target in jt; aux = 1 when it goes backward)
            # charge the loop's span (rows keep their program positions)
            if pc.aux and not charge_loop(&back, 0, <uint32_t>(pc - code) + 1 - pc.jt, buflen):
                return 0
            pc = code + pc.jt
            continue
        # each jump its own case, jump_taken given its constant opcode: one test, no branch on
        # the opcode (one case for the eight, testing it, was measurably slower at 256 rules)
        elif op == 0x15:      # jeq #k
            pc = code + (pc.jt if jump_taken(0x15, A, k) else pc.jf)
            continue
        elif op == 0x25:      # jgt #k
            pc = code + (pc.jt if jump_taken(0x25, A, k) else pc.jf)
            continue
        elif op == 0x35:      # jge #k
            pc = code + (pc.jt if jump_taken(0x35, A, k) else pc.jf)
            continue
        elif op == 0x45:      # jset #k
            pc = code + (pc.jt if jump_taken(0x45, A, k) else pc.jf)
            continue
        elif op == 0x1d:      # jeq x
            pc = code + (pc.jt if jump_taken(0x1d, A, X) else pc.jf)
            continue
        elif op == 0x2d:      # jgt x
            pc = code + (pc.jt if jump_taken(0x2d, A, X) else pc.jf)
            continue
        elif op == 0x3d:      # jge x
            pc = code + (pc.jt if jump_taken(0x3d, A, X) else pc.jf)
            continue
        elif op == 0x4d:      # jset x
            pc = code + (pc.jt if jump_taken(0x4d, A, X) else pc.jf)
            continue
        else:
            if step(op, k, p, buflen, wirelen, &A, &X, mem, False) != STEP_DONE:
                return 0           # aborted, or an opcode planned programs never hold
        pc += 1


cdef inline const void* _ptr(const uint8_t[::1] buf) noexcept:
    return <const void*>&buf[0] if buf.shape[0] else NULL


cdef class RuleEngine:
    """A plan (see the module docstring) ready to run; `run` evaluates every rule on a batch."""

    cdef object _keep
    cdef const cl_insn* code
    cdef uint32_t ncode
    cdef const uint32_t* starts
    cdef const uint8_t* usesmem
    cdef Py_ssize_t nrules
    cdef const cl_insn* vcode
    cdef const uint32_t* vstart
    cdef const uint32_t* vlen
    cdef const int32_t* vparent
    cdef Py_ssize_t nvalues
    cdef const uint32_t* tvalue
    cdef const uint16_t* tcode
    cdef const uint32_t* tk
    cdef Py_ssize_t ntests
    cdef const uint32_t* sig
    cdef Py_ssize_t nsig
    cdef uint8_t* is_sig
    cdef uint32_t maxclasses
    cdef Groups groups

    def __init__(self, code, starts, usesmem, vparent, vcode, vstart, vlen, tvalue, tcode, tk,
                 signature, gvalue, gstart, gconst, gtest, tgroup, trig_start, trig, grule_start,
                 grule, uint32_t maxclasses=1024):
        """Arrays of the plan: code/vcode raw bytes of cl_insn arrays; the rest as named in
        pfilter.classification.plan.Plan. The planner has checked every jump target and node index."""
        cdef const uint8_t[::1] b_code = code
        cdef const uint8_t[::1] b_vcode = vcode
        cdef const uint32_t[::1] a_starts = starts
        cdef const uint8_t[::1] a_usesmem = usesmem
        cdef const uint32_t[::1] a_vstart = vstart
        cdef const uint32_t[::1] a_vlen = vlen
        cdef const int32_t[::1] a_vparent = vparent
        cdef const uint32_t[::1] a_tvalue = tvalue
        cdef const uint16_t[::1] a_tcode = tcode
        cdef const uint32_t[::1] a_tk = tk
        cdef const uint32_t[::1] a_sig = signature
        cdef const uint32_t[::1] a_gvalue = gvalue
        cdef const uint32_t[::1] a_gstart = gstart
        cdef const uint32_t[::1] a_gconst = gconst
        cdef const uint32_t[::1] a_gtest = gtest
        cdef const int32_t[::1] a_tgroup = tgroup
        cdef const uint32_t[::1] a_trig_start = trig_start
        cdef const uint32_t[::1] a_trig = trig
        cdef const uint32_t[::1] a_grule_start = grule_start
        cdef const uint32_t[::1] a_grule = grule
        cdef Py_ssize_t i, ng = a_gvalue.shape[0], nt = a_tk.shape[0], nrl = a_starts.shape[0]
        if a_gstart.shape[0] != ng + 1 or a_grule_start.shape[0] != ng + 1:
            raise ValueError("group index arrays need one entry per group plus one")
        if a_gconst.shape[0] != a_gtest.shape[0] or a_gstart[ng] != a_gconst.shape[0] or a_gstart[0] != 0:
            raise ValueError("group constants and tests differ")
        if a_tgroup.shape[0] != nt or a_trig_start.shape[0] != nt + 1 or a_trig_start[nt] != a_trig.shape[0]:
            raise ValueError("test-node group arrays differ in length")
        if a_grule_start[ng] != a_grule.shape[0] or a_trig_start[0] != 0 or a_grule_start[0] != 0:
            raise ValueError("group rule lists are inconsistent")
        for i in range(ng):
            if a_gvalue[i] >= a_vstart.shape[0] or a_gstart[i] > a_gstart[i + 1] or a_grule_start[i] > a_grule_start[i + 1]:
                raise ValueError("a group names no value node, or its ranges go backwards")
        for i in range(a_gtest.shape[0]):
            if a_gtest[i] >= nt:
                raise ValueError("a group test names no test node")
        for i in range(nt):
            if a_tgroup[i] >= ng or a_trig_start[i] > a_trig_start[i + 1]:
                raise ValueError("a test node names no group, or its rule range goes backwards")
        for i in range(a_trig.shape[0]):
            if a_trig[i] >= nrl:
                raise ValueError("a trigger names no rule")
        for i in range(a_grule.shape[0]):
            if a_grule[i] >= nrl:
                raise ValueError("a group rule names no rule")
        if a_sig.shape[0] > 32:
            raise ValueError("at most 32 signature tests (2 bits each in a 64-bit key)")
        if maxclasses < 1 or maxclasses > (1 << 20):
            raise ValueError("maxclasses must be in 1..2**20")
        for i in range(a_sig.shape[0]):
            if a_sig[i] >= a_tk.shape[0]:
                raise ValueError("a signature entry names no test node")
        if b_code.shape[0] % sizeof(cl_insn) or b_vcode.shape[0] % sizeof(cl_insn):
            raise ValueError("code arrays are not whole cl_insn records")
        if a_usesmem.shape[0] != a_starts.shape[0]:
            raise ValueError("starts and usesmem differ in length")
        if not (a_vstart.shape[0] == a_vlen.shape[0] == a_vparent.shape[0]):
            raise ValueError("value-node arrays differ in length")
        for i in range(a_vparent.shape[0]):
            if a_vparent[i] >= i:
                raise ValueError("a value node's parent must come before it")
            if a_vstart[i] + a_vlen[i] > b_vcode.shape[0] // sizeof(cl_insn):
                raise ValueError("a value node's code lies outside vcode")
        for i in range(a_tvalue.shape[0]):
            if a_tvalue[i] >= a_vstart.shape[0]:
                raise ValueError("a test node names no value node")
        if not (a_tvalue.shape[0] == a_tcode.shape[0] == a_tk.shape[0]):
            raise ValueError("test-node arrays differ in length")
        self._keep = (code, starts, usesmem, vparent, vcode, vstart, vlen, tvalue, tcode, tk, signature,
                      gvalue, gstart, gconst, gtest, tgroup, trig_start, trig, grule_start, grule)
        self.groups.n = ng
        self.groups.value = &a_gvalue[0] if ng else NULL
        self.groups.start = &a_gstart[0]
        self.groups.consts = &a_gconst[0] if a_gconst.shape[0] else NULL
        self.groups.test = &a_gtest[0] if a_gtest.shape[0] else NULL
        self.groups.tgroup = &a_tgroup[0] if nt else NULL
        self.groups.trig_start = &a_trig_start[0]
        self.groups.trig = &a_trig[0] if a_trig.shape[0] else NULL
        self.groups.grule_start = &a_grule_start[0]
        self.groups.grule = &a_grule[0] if a_grule.shape[0] else NULL
        self.code = <const cl_insn*>_ptr(b_code)
        self.ncode = b_code.shape[0] // sizeof(cl_insn)
        self.vcode = <const cl_insn*>_ptr(b_vcode)
        self.starts = &a_starts[0] if a_starts.shape[0] else NULL
        self.usesmem = &a_usesmem[0] if a_usesmem.shape[0] else NULL
        self.nrules = a_starts.shape[0]
        self.vstart = &a_vstart[0] if a_vstart.shape[0] else NULL
        self.vlen = &a_vlen[0] if a_vlen.shape[0] else NULL
        self.vparent = &a_vparent[0] if a_vparent.shape[0] else NULL
        self.nvalues = a_vstart.shape[0]
        self.tvalue = &a_tvalue[0] if a_tvalue.shape[0] else NULL
        self.tcode = &a_tcode[0] if a_tcode.shape[0] else NULL
        self.tk = &a_tk[0] if a_tk.shape[0] else NULL
        self.ntests = a_tvalue.shape[0]
        self.sig = &a_sig[0] if a_sig.shape[0] else NULL
        self.nsig = a_sig.shape[0]
        self.maxclasses = maxclasses
        self.is_sig = <uint8_t*>calloc(self.ntests + 1, sizeof(uint8_t))
        if self.is_sig == NULL:
            raise MemoryError()
        for i in range(self.nsig):
            self.is_sig[a_sig[i]] = 1

    def __dealloc__(self):
        free(self.is_sig)

    @property
    def nrules(self):
        return self.nrules

    def run(self, const uint8_t[::1] data, const int64_t[::1] offsets, const uint32_t[::1] caplen,
            const uint32_t[::1] wirelen, rows, out, bint packed, int64_t[::1] counts,
            int64_t[::1] nbytes, bint classes=True):
        """Evaluate every rule on packets `rows` (int64 indices; None = all) of a batch.

        out: None (counts only), a C-contiguous uint8 array of shape (n, nrules) receiving 1 where
        rule r accepts packet i (it must arrive zeroed), or with packed=True shape
        (n, ceil(nrules/8)) receiving the bits in np.packbits order (first rule = 0x80 of byte 0).
        Row i of out is packet i of the batch. counts[r] and nbytes[r] (sum of wire lengths) are
        incremented for every accepting packet. classes=False turns packet classes off (see
        Plan.signature). Runs without the GIL; returns the number of packet classes made."""
        cdef Py_ssize_t n = offsets.shape[0]
        cdef Py_ssize_t nrows, j, i, r
        cdef Py_ssize_t nr = self.nrules
        cdef const int64_t[::1] a_rows
        cdef const int64_t* prows = NULL
        cdef uint8_t[:, ::1] a_out
        cdef uint8_t* pout = NULL
        cdef Py_ssize_t width = 0
        cdef const uint8_t* base = <const uint8_t*>_ptr(data)
        cdef const uint8_t* p
        cdef const uint8_t* ahead
        cdef uint32_t buflen, wl, hit, bits
        cdef Memo m
        cdef int64_t* pc
        cdef int64_t* pb
        cdef ClassTable ct
        cdef RuleAt* at
        cdef uint8_t* chit
        cdef const uint32_t* lst
        cdef uint32_t* rstamp = NULL
        cdef uint64_t key
        cdef uint32_t A0, X0, v, t
        cdef int32_t cls
        cdef Py_ssize_t s, q, g, nl, ix, ng = self.groups.n
        cdef Py_ssize_t nsig = self.nsig if classes else 0
        if caplen.shape[0] != n or wirelen.shape[0] != n:
            raise ValueError("batch arrays differ in length")
        if counts.shape[0] != nr or nbytes.shape[0] != nr:
            raise ValueError("counts and nbytes need one entry per rule")
        if rows is None:
            nrows = n
        else:
            a_rows = rows
            nrows = a_rows.shape[0]
            prows = &a_rows[0] if nrows else NULL
            for j in range(nrows):
                if a_rows[j] < 0 or a_rows[j] >= n:
                    raise IndexError(f"row {a_rows[j]} outside the batch (0..{n - 1})")
        if out is not None:
            a_out = out
            width = (nr + 7) // 8 if packed else nr
            if a_out.shape[0] != n or a_out.shape[1] != width:
                raise ValueError(f"out must have shape ({n}, {width})")
            pout = &a_out[0, 0] if n and width else NULL
        # every packet's bytes must lie inside data (PacketBatch checks this; so do we, once)
        for i in range(n):
            if offsets[i] < 0 or offsets[i] + <int64_t>caplen[i] > data.shape[0]:
                raise ValueError(f"packet {i} lies outside the data buffer")
        if nr == 0 or nrows == 0:
            return 0
        m.vcode = self.vcode
        m.vstart = self.vstart
        m.vlen = self.vlen
        m.vparent = self.vparent
        m.tvalue = self.tvalue
        m.tcode = self.tcode
        m.tk = self.tk
        m.vm = <ValueMemo*>calloc(self.nvalues + 1, sizeof(ValueMemo))
        m.tm = <TestMemo*>calloc(self.ntests + 1, sizeof(TestMemo))
        if m.vm == NULL or m.tm == NULL:
            free(m.vm)
            free(m.tm)
            raise MemoryError()
        m.cur = 0
        pc = &counts[0]
        pb = &nbytes[0]
        memset(&ct, 0, sizeof(ct))
        if nsig:
            ct.nslots = 1
            # at most MAX_CLASS_ENTRIES (class, rule) entries, whatever the number of rules
            ct.maxclasses = min(self.maxclasses, max(16, MAX_CLASS_ENTRIES // nr))
            while ct.nslots < 2 * ct.maxclasses:
                ct.nslots *= 2
            ct.nrules = nr
            ct.packed = packed
            ct.width = (nr + 7) // 8 if packed else nr
            ct.keys = <uint64_t*>calloc(ct.nslots, sizeof(uint64_t))
            ct.index = <int32_t*>calloc(ct.nslots, sizeof(int32_t))
            ct.at = <RuleAt*>calloc(<size_t>ct.maxclasses * nr, sizeof(RuleAt))
            ct.open_rules = <uint32_t*>calloc(<size_t>ct.maxclasses * nr, sizeof(uint32_t))
            ct.nopen = <uint32_t*>calloc(ct.maxclasses, sizeof(uint32_t))
            ct.const_hit = <uint8_t*>calloc(<size_t>ct.maxclasses * nr, 1)
            ct.const_row = <uint8_t*>calloc(<size_t>ct.maxclasses * ct.width, 1)
            ct.live = <uint8_t*>calloc(<size_t>ct.maxclasses * ng + 1, 1)
            ct.packets = <int64_t*>calloc(ct.maxclasses, sizeof(int64_t))
            ct.nbytes = <int64_t*>calloc(ct.maxclasses, sizeof(int64_t))
            rstamp = <uint32_t*>calloc(nr, sizeof(uint32_t))
            if (ct.keys == NULL or ct.index == NULL or ct.at == NULL or ct.open_rules == NULL
                    or ct.nopen == NULL or ct.const_hit == NULL or ct.const_row == NULL
                    or ct.live == NULL or ct.packets == NULL or ct.nbytes == NULL or rstamp == NULL):
                free_classes(&ct)
                free(rstamp)
                free(m.vm)
                free(m.tm)
                raise MemoryError()
            memset(ct.index, 0xff, ct.nslots * sizeof(int32_t))
        try:
            with nogil:
                for j in range(nrows):
                    i = prows[j] if prows != NULL else j
                    if j + PREFETCH_AHEAD < nrows:   # the headers of a packet a few rows ahead
                        ahead = base + offsets[prows[j + PREFETCH_AHEAD] if prows != NULL else j + PREFETCH_AHEAD]
                        __builtin_prefetch(ahead)
                        __builtin_prefetch(ahead + 64)
                    p = base + offsets[i]
                    buflen = caplen[i]
                    wl = wirelen[i]
                    m.cur += 1
                    if m.cur == 0:     # stamp wrapped after 2**32 packets: forget every memo
                        memset(m.vm, 0, (self.nvalues + 1) * sizeof(ValueMemo))
                        memset(m.tm, 0, (self.ntests + 1) * sizeof(TestMemo))
                        if rstamp != NULL:
                            memset(rstamp, 0, nr * sizeof(uint32_t))
                        m.cur = 1
                    # branch-free bookkeeping: a verdict depends on the packet, so a branch on
                    # it would be mispredicted whenever the traffic changes
                    cls = -1
                    if nsig:
                        key = 0
                        for s in range(nsig):
                            key |= (<uint64_t>eval_test(&m, self.sig[s], p, buflen, wl)) << (2 * s)
                        cls = class_lookup(&ct, key, self.code, self.starts, self.is_sig, &self.groups, &m)
                    if cls >= 0:
                        # the class decided most rules: copy its row, count it once at the end,
                        # run the rules it left open from where they stopped, and run again the
                        # R_DEFAULT rules whose group test is true for this packet
                        ct.packets[cls] += 1
                        ct.nbytes[cls] += wl
                        if pout != NULL:
                            memcpy(pout + i * width, ct.const_row + cls * width, width)
                        at = ct.at + cls * nr
                        chit = ct.const_hit + cls * nr
                        for q in range(ct.nopen[cls]):
                            r = ct.open_rules[cls * nr + q]
                            A0 = m.vm[at[r].ra].A if at[r].ra >= 0 else 0
                            X0 = m.vm[at[r].rx].X if at[r].rx >= 0 else 0
                            hit = run_rule(self.code, at[r].entry, A0, X0, self.usesmem[r], &m, p, buflen, wl) != 0
                            pc[r] += hit
                            pb[r] += wl & (0u - hit)
                            if pout != NULL:
                                if packed:
                                    pout[i * width + (r >> 3)] |= <uint8_t>(hit << (7 - (r & 7)))
                                else:
                                    pout[i * width + r] = <uint8_t>hit
                        for g in range(ng):
                            if not ct.live[cls * ng + g]:
                                continue
                            v = self.groups.value[g]
                            if m.vm[v].stamp != m.cur:
                                eval_value(&m, v, p, buflen, wl)
                            if m.vm[v].abort:      # every test of the group aborts
                                lst = self.groups.grule + self.groups.grule_start[g]
                                nl = self.groups.grule_start[g + 1] - self.groups.grule_start[g]
                            else:
                                ix = find_const(self.groups.consts, self.groups.start[g],
                                                self.groups.start[g + 1], m.vm[v].A)
                                if ix < 0:
                                    continue
                                t = self.groups.test[ix]
                                lst = self.groups.trig + self.groups.trig_start[t]
                                nl = self.groups.trig_start[t + 1] - self.groups.trig_start[t]
                            for q in range(nl):
                                r = lst[q]
                                if at[r].status != R_DEFAULT or rstamp[r] == m.cur:
                                    continue
                                rstamp[r] = m.cur
                                A0 = m.vm[at[r].ra].A if at[r].ra >= 0 else 0
                                X0 = m.vm[at[r].rx].X if at[r].rx >= 0 else 0
                                hit = run_rule(self.code, at[r].entry, A0, X0, self.usesmem[r], &m, p, buflen, wl) != 0
                                if hit != chit[r]:     # undo what the class will count
                                    if hit:
                                        pc[r] += 1
                                        pb[r] += wl
                                    else:
                                        pc[r] -= 1
                                        pb[r] -= wl
                                    if pout != NULL:
                                        if packed:
                                            pout[i * width + (r >> 3)] ^= <uint8_t>(0x80 >> (r & 7))
                                        else:
                                            pout[i * width + r] = <uint8_t>hit
                        continue
                    bits = 0
                    for r in range(nr):
                        hit = run_rule(self.code, self.starts[r], 0, 0, self.usesmem[r], &m, p, buflen, wl) != 0
                        pc[r] += hit
                        pb[r] += wl & (0u - hit)
                        if pout != NULL:
                            if packed:
                                bits |= hit << (7 - (r & 7))
                                if (r & 7) == 7 or r == nr - 1:
                                    pout[i * width + (r >> 3)] = <uint8_t>bits
                                    bits = 0
                            else:
                                pout[i * width + r] = <uint8_t>hit
            for s in range(ct.nclasses):       # the verdicts each class decided
                for r in range(nr):
                    if ct.const_hit[s * nr + r]:
                        pc[r] += ct.packets[s]
                        pb[r] += ct.nbytes[s]
        finally:
            free_classes(&ct)
            free(rstamp)
            free(m.vm)
            free(m.tm)
        return ct.nclasses
