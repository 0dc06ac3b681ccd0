# cython: language_level=3
"""The multi-rule engine behind pfilter.classify: every rule over every packet in one nogil pass.

Imports nothing from pfilter. pfilter.classify (the planner) hands it a *plan*, plain numpy arrays:

* `code`: all rule programs rewritten into one array of `cl_insn` (16 bytes: code, jt, jf, k with
  absolute 32-bit jump targets), rule r starting at `starts[r]`. Opcodes are cBPF's, plus one:
  OP_TEST (k = test-node id, jt/jf = where to go when the test is true/false).
* value nodes: straight-line, side-effect-free instruction runs that read no register or scratch
  word they did not set themselves (`ldh [12]`; `ldxb 4*([14]&0xf); ldh [x + 16]`). Their result
  (A, X, or "a load fell off the packet") depends on the packet only, so it is computed at most
  once per packet, whichever rule gets there first, and replayed for the others.
* test nodes: a value node followed by a conditional jump (`jeq #0x800`): its outcome is memoised
  per packet the same way. Rules that repeat a test (the EtherType, the IP protocol, the fragment
  check, the header length and port load) share one node.

Memo entries are stamped with the packet's sequence number, so nothing is reset between packets.
Semantics are those of pfilter._vm (libpcap's bpf_filter): A, X, M[] start at 0, big-endian loads,
a load past the captured length or a division by X = 0 returns 0, shifts by X >= 32 give 0,
`len` is the wire length, at most MAX_BACKWARD_JUMPS backward `ja` per packet and rule.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset

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

DEF MAX_BACKWARD_JUMPS = 262144
DEF PREFETCH_AHEAD = 8         # rows ahead whose packet headers are prefetched
DEF OP_TEST = 0x100

MAX_BACKWARD_JUMPS_VALUE = MAX_BACKWARD_JUMPS
OP_TEST_VALUE = OP_TEST
LEAF_ACCEPT_VALUE = LEAF_ACCEPT
LEAF_REJECT_VALUE = LEAF_REJECT
INSN_SIZE = sizeof(cl_insn)

# test-node results
DEF T_FALSE = 0
DEF T_TRUE = 1
DEF T_ABORT = 2


cdef inline uint32_t load32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t load16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


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


cdef void eval_value(Memo* m, uint32_t v, const uint8_t* p, uint32_t buflen,
                     uint32_t wirelen) noexcept nogil:
    """Run value node v on the packet and record A, X and whether it aborted."""
    cdef const cl_insn* pc = m.vcode + m.vstart[v]
    cdef const cl_insn* end = pc + m.vlen[v]
    cdef uint32_t A = 0, X = 0, k
    cdef uint16_t op
    cdef uint8_t abort = 0
    cdef int32_t parent = m.vparent[v]
    if parent >= 0:
        # a rule reaches v only through its parent, so the parent is normally memoised already
        if m.vm[parent].stamp != m.cur:
            eval_value(m, <uint32_t>parent, p, buflen, wirelen)
        A = m.vm[parent].A
        X = m.vm[parent].X
        abort = <uint8_t>m.vm[parent].abort
        if abort:
            pc = end
    while pc < end:
        k = pc.k
        op = pc.code
        if op == 0x20:        # ld [k]
            if k > buflen or 4 > buflen - k:
                abort = 1
                break
            A = load32(p + k)
        elif op == 0x28:      # ldh [k]
            if k > buflen or 2 > buflen - k:
                abort = 1
                break
            A = load16(p + k)
        elif op == 0x30:      # ldb [k]
            if k >= buflen:
                abort = 1
                break
            A = p[k]
        elif op == 0x40:      # ld [x + k]
            if k > buflen or X > buflen - k or 4 > buflen - (X + k):
                abort = 1
                break
            A = load32(p + X + k)
        elif op == 0x48:      # ldh [x + k]
            if k > buflen or X > buflen - k or 2 > buflen - (X + k):
                abort = 1
                break
            A = load16(p + X + k)
        elif op == 0x50:      # ldb [x + k]
            if k >= buflen or X >= buflen - k:
                abort = 1
                break
            A = p[X + k]
        elif op == 0xb1:      # ldxb 4*([k]&0xf)
            if k >= buflen:
                abort = 1
                break
            X = (p[k] & 0xf) << 2
        elif op == 0x80:      # ld #pktlen
            A = wirelen
        elif op == 0x81:      # ldx #pktlen
            X = wirelen
        elif op == 0x00:      # ld #k
            A = k
        elif op == 0x01:      # ldx #k
            X = k
        elif op == 0x04:      # add #k
            A += k
        elif op == 0x14:      # sub #k
            A -= k
        elif op == 0x24:      # mul #k
            A *= k
        elif op == 0x34:      # div #k
            if k == 0:
                abort = 1
                break
            A = A // k
        elif op == 0x94:      # mod #k
            if k == 0:
                abort = 1
                break
            A = A % k
        elif op == 0x54:      # and #k
            A &= k
        elif op == 0x44:      # or #k
            A |= k
        elif op == 0xa4:      # xor #k
            A ^= k
        elif op == 0x64:      # lsh #k
            A = (A << k) if k < 32 else 0
        elif op == 0x74:      # rsh #k
            A = (A >> k) if k < 32 else 0
        elif op == 0x0c:      # add x
            A += X
        elif op == 0x1c:      # sub x
            A -= X
        elif op == 0x2c:      # mul x
            A *= X
        elif op == 0x3c:      # div x
            if X == 0:
                abort = 1
                break
            A = A // X
        elif op == 0x9c:      # mod x
            if X == 0:
                abort = 1
                break
            A = A % X
        elif op == 0x5c:      # and x
            A &= X
        elif op == 0x4c:      # or x
            A |= X
        elif op == 0xac:      # xor x
            A ^= X
        elif op == 0x6c:      # lsh x
            A = (A << X) if X < 32 else 0
        elif op == 0x7c:      # rsh x
            A = (A >> X) if X < 32 else 0
        elif op == 0x84:      # neg
            A = 0u - A
        elif op == 0x07:      # tax
            X = A
        elif op == 0x87:      # txa
            A = X
        else:                      # the planner only puts the opcodes above in value nodes
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
        if (m.tcode[t] & 0xf0) == 0x10:
            r = A == k
        elif (m.tcode[t] & 0xf0) == 0x20:
            r = A > k
        elif (m.tcode[t] & 0xf0) == 0x30:
            r = A >= k
        else:                      # 0x40: jset
            r = (A & k) != 0
    m.tm[t].res = r
    m.tm[t].stamp = m.cur
    return r


cdef inline uint32_t run_rule(const cl_insn* code, uint32_t start, bint usesmem, Memo* m,
                              const uint8_t* p, uint32_t buflen, uint32_t wirelen) noexcept nogil:
    """The return value of the rule program at code[start] on one packet."""
    cdef uint32_t A = 0, X = 0, k, v, t, target
    cdef uint32_t mem[16]
    cdef const cl_insn* pc = code + start
    cdef uint32_t back = 0
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
        elif op == 0x20:      # ld [k]
            if k > buflen or 4 > buflen - k:
                return 0
            A = load32(p + k)
        elif op == 0x28:      # ldh [k]
            if k > buflen or 2 > buflen - k:
                return 0
            A = load16(p + k)
        elif op == 0x30:      # ldb [k]
            if k >= buflen:
                return 0
            A = p[k]
        elif op == 0x80:      # ld #pktlen
            A = wirelen
        elif op == 0x81:      # ldx #pktlen
            X = wirelen
        elif op == 0x40:      # ld [x + k]
            if k > buflen or X > buflen - k or 4 > buflen - (X + k):
                return 0
            A = load32(p + X + k)
        elif op == 0x48:      # ldh [x + k]
            if k > buflen or X > buflen - k or 2 > buflen - (X + k):
                return 0
            A = load16(p + X + k)
        elif op == 0x50:      # ldb [x + k]
            if k >= buflen or X >= buflen - k:
                return 0
            A = p[X + k]
        elif op == 0xb1:      # ldxb 4*([k]&0xf)
            if k >= buflen:
                return 0
            X = (p[k] & 0xf) << 2
        elif op == 0x00:      # ld #k
            A = k
        elif op == 0x01:      # ldx #k
            X = k
        elif op == 0x60:      # ld M[k]
            A = mem[k & 15]
        elif op == 0x61:      # ldx M[k]
            X = mem[k & 15]
        elif op == 0x02:      # st M[k]
            mem[k & 15] = A
        elif op == 0x03:      # stx M[k]
            mem[k & 15] = X
        elif op == 0x05:      # ja (absolute target in jt; aux = 1 when it goes backward)
            if pc.aux:
                back += 1
                if back > MAX_BACKWARD_JUMPS:
                    return 0
            pc = code + pc.jt
            continue
        elif op == 0x15:      # jeq #k
            pc = code + (pc.jt if A == k else pc.jf)
            continue
        elif op == 0x25:      # jgt #k
            pc = code + (pc.jt if A > k else pc.jf)
            continue
        elif op == 0x35:      # jge #k
            pc = code + (pc.jt if A >= k else pc.jf)
            continue
        elif op == 0x45:      # jset #k
            pc = code + (pc.jt if (A & k) else pc.jf)
            continue
        elif op == 0x1d:      # jeq x
            pc = code + (pc.jt if A == X else pc.jf)
            continue
        elif op == 0x2d:      # jgt x
            pc = code + (pc.jt if A > X else pc.jf)
            continue
        elif op == 0x3d:      # jge x
            pc = code + (pc.jt if A >= X else pc.jf)
            continue
        elif op == 0x4d:      # jset x
            pc = code + (pc.jt if (A & X) else pc.jf)
            continue
        elif op == 0x04:      # add #k
            A += k
        elif op == 0x14:      # sub #k
            A -= k
        elif op == 0x24:      # mul #k
            A *= k
        elif op == 0x34:      # div #k
            if k == 0:
                return 0
            A = A // k
        elif op == 0x94:      # mod #k
            if k == 0:
                return 0
            A = A % k
        elif op == 0x54:      # and #k
            A &= k
        elif op == 0x44:      # or #k
            A |= k
        elif op == 0xa4:      # xor #k
            A ^= k
        elif op == 0x64:      # lsh #k
            A = (A << k) if k < 32 else 0
        elif op == 0x74:      # rsh #k
            A = (A >> k) if k < 32 else 0
        elif op == 0x0c:      # add x
            A += X
        elif op == 0x1c:      # sub x
            A -= X
        elif op == 0x2c:      # mul x
            A *= X
        elif op == 0x3c:      # div x
            if X == 0:
                return 0
            A = A // X
        elif op == 0x9c:      # mod x
            if X == 0:
                return 0
            A = A % X
        elif op == 0x5c:      # and x
            A &= X
        elif op == 0x4c:      # or x
            A |= X
        elif op == 0xac:      # xor x
            A ^= X
        elif op == 0x6c:      # lsh x
            A = (A << X) if X < 32 else 0
        elif op == 0x7c:      # rsh x
            A = (A >> X) if X < 32 else 0
        elif op == 0x84:      # neg
            A = 0u - A
        elif op == 0x07:      # tax
            X = A
        elif op == 0x87:      # txa
            A = X
        else:                      # unreachable for planned programs
            return 0
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

    def __init__(self, code, starts, usesmem, vparent, vcode, vstart, vlen, tvalue, tcode, tk):
        """Arrays of the plan: code/vcode raw bytes of cl_insn arrays; the rest as named in
        pfilter.classify.Plan. The planner has checked every jump target and node index."""
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
        cdef Py_ssize_t i
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
        self._keep = (code, starts, usesmem, vparent, vcode, vstart, vlen, tvalue, tcode, tk)
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

    @property
    def nrules(self):
        return self.nrules

    def run(self, const uint8_t[::1] data, const int64_t[::1] offsets, const uint32_t[::1] caplen,
            const uint32_t[::1] wirelen, rows, out, bint packed, int64_t[::1] counts,
            int64_t[::1] nbytes):
        """Evaluate every rule on packets `rows` (int64 indices; None = all) of a batch.

        out: None (counts only), a C-contiguous uint8 array of shape (n, nrules) receiving 1 where
        rule r accepts packet i (it must arrive zeroed), or with packed=True shape
        (n, ceil(nrules/8)) receiving the bits in np.packbits order (first rule = 0x80 of byte 0).
        Row i of out is packet i of the batch. counts[r] and nbytes[r] (sum of wire lengths) are
        incremented for every accepting packet. Runs without the GIL."""
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
            return
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
                        m.cur = 1
                    # branch-free bookkeeping: a verdict depends on the packet, so a branch on
                    # it would be mispredicted whenever the traffic changes
                    bits = 0
                    for r in range(nr):
                        hit = run_rule(self.code, self.starts[r], self.usesmem[r], &m, p, buflen, wl) != 0
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
        finally:
            free(m.vm)
            free(m.tm)
