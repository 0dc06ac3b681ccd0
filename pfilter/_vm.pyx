# cython: language_level=3
"""The cBPF virtual machine: one C `switch` on the opcode inside a `nogil` loop.

Imports nothing from pfilter (the validator in pfilter/validate.py has already checked every
program; MAX_BACKWARD_JUMPS below must equal pfilter.validate.MAX_BACKWARD_JUMPS). The
pure-Python twin is pfilter/_pyvm.py; both follow libpcap's bpf_filter() exactly:

* A, X and M[0..15] start at 0; loads are big-endian;
* a load past the captured length returns 0 from the program, checked without overflow
  (`k > buflen or size > buflen - k`);
* division or modulo by X = 0 returns 0; a shift by X >= 32 gives 0;
* `ld #pktlen` is the wire length;
* a backward `ja` (libpcap's `ip6 protochain` loop) is allowed, but one packet may take at most
  MAX_BACKWARD_JUMPS of them, after which the program returns 0: every program terminates.

Linux metadata loads (k >= SKF_AD_OFF as u32) fall past any real packet, so return 0, as in
libpcap's userland interpreter.

How it beats libpcap's interpreter on the same bytecode: `decode()` turns a validated program,
once, into an internal form (`vm_insn`) whose jump targets are absolute indexes, and where a
packet load followed by a conditional jump (`ldh [12]; jeq #0x800`), or an `and #k` followed by
one, becomes a single fused instruction: one dispatch instead of two for the pattern that makes
up most of every compiled filter. The second instruction of a pair stays in place, so a jump
that lands on it still finds it. Scratch memory is cleared per packet only for programs that
read it. Nothing else changes: the semantics are instruction-for-instruction those of cBPF.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define PF_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 0)
    #else
    #define PF_PREFETCH(p) ((void)(p))
    #endif
    """
    void PF_PREFETCH(const void* p) noexcept nogil

cdef extern from *:
    """
    typedef struct { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; } pf_insn;
    typedef struct { uint32_t op; uint32_t k; uint32_t k2; uint32_t jt; uint32_t jf; } vm_insn;
    """
    ctypedef struct pf_insn:
        uint16_t code
        uint8_t jt
        uint8_t jf
        uint32_t k
    ctypedef struct vm_insn:
        uint32_t op      # a cBPF opcode, or a FUSED_* opcode (> 0xff)
        uint32_t k       # the operand (load offset, constant)
        uint32_t k2      # fused: the jump's constant
        uint32_t jt      # absolute index of the true target (ja: the target)
        uint32_t jf      # absolute index of the false target

cdef enum:
    MAX_BACKWARD_JUMPS = 262144
    # Batches are far larger than the CPU caches, so the loop is bound by memory latency: it asks
    # for the headers of the packet PREFETCH_AHEAD places ahead while it filters this one.
    PREFETCH_AHEAD = 8
    # fused opcodes: 0x100 + n, dense after the cBPF opcodes so the C switch stays one jump table
    FUSED_20_15 = 0x100
    FUSED_20_25 = 0x101
    FUSED_20_35 = 0x102
    FUSED_20_45 = 0x103
    FUSED_28_15 = 0x104
    FUSED_28_25 = 0x105
    FUSED_28_35 = 0x106
    FUSED_28_45 = 0x107
    FUSED_30_15 = 0x108
    FUSED_30_25 = 0x109
    FUSED_30_35 = 0x10A
    FUSED_30_45 = 0x10B
    FUSED_40_15 = 0x10C
    FUSED_40_25 = 0x10D
    FUSED_40_35 = 0x10E
    FUSED_40_45 = 0x10F
    FUSED_48_15 = 0x110
    FUSED_48_25 = 0x111
    FUSED_48_35 = 0x112
    FUSED_48_45 = 0x113
    FUSED_50_15 = 0x114
    FUSED_50_25 = 0x115
    FUSED_50_35 = 0x116
    FUSED_50_45 = 0x117
    FUSED_54_15 = 0x118
    FUSED_54_25 = 0x119
    FUSED_54_35 = 0x11A
    FUSED_54_45 = 0x11B


MAX_BACKWARD_JUMPS_VALUE = MAX_BACKWARD_JUMPS

ctypedef struct NoCount:
    char unused

ctypedef struct Count:
    uint64_t n

ctypedef fused counter_t:
    NoCount
    Count


cdef inline uint32_t load32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t load16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t bpf_run(const vm_insn* prog, const uint8_t* p, uint32_t buflen, uint32_t wirelen,
                             bint clear_mem, counter_t* counter) noexcept nogil:
    """Run one packet. With a Count counter, counter.n receives the number of cBPF instructions
    executed (a fused instruction counts as the two it stands for once its load succeeded)."""
    cdef uint32_t A = 0, X = 0, k
    cdef uint32_t mem[16]
    cdef const vm_insn* pc = prog
    cdef uint32_t back = 0
    if clear_mem:
        memset(mem, 0, sizeof(mem))
    while True:
        if counter_t is Count:
            counter.n += 1
        k = pc.k
        # The opcode is a C integer, so Cython emits a single C `switch` (see test_vm_dispatch).
        if pc.op == 0x06:        # ret #k
            return k
        elif pc.op == 0x16:      # ret a
            return A
        elif pc.op == 0x20:      # ld [k]
            if k > buflen or 4 > buflen - k:
                return 0
            A = load32(p + k)
        elif pc.op == 0x28:      # ldh [k]
            if k > buflen or 2 > buflen - k:
                return 0
            A = load16(p + k)
        elif pc.op == 0x30:      # ldb [k]
            if k >= buflen:
                return 0
            A = p[k]
        elif pc.op == 0x40:      # ld [x+k]
            if k > buflen or X > buflen - k or 4 > buflen - (X + k):
                return 0
            A = load32(p + X + k)
        elif pc.op == 0x48:      # ldh [x+k]
            if k > buflen or X > buflen - k or 2 > buflen - (X + k):
                return 0
            A = load16(p + X + k)
        elif pc.op == 0x50:      # ldb [x+k]
            if k >= buflen or X >= buflen - k:
                return 0
            A = p[X + k]
        elif pc.op == 0x80:      # ld #pktlen
            A = wirelen
        elif pc.op == 0x81:      # ldx #pktlen
            X = wirelen
        elif pc.op == 0xb1:      # ldxb 4*([k]&0xf)
            if k >= buflen:
                return 0
            X = (p[k] & 0xf) << 2
        elif pc.op == 0x00:      # ld #k
            A = k
        elif pc.op == 0x01:      # ldx #k
            X = k
        elif pc.op == 0x60:      # ld M[k]
            A = mem[k & 15]
        elif pc.op == 0x61:      # ldx M[k]
            X = mem[k & 15]
        elif pc.op == 0x02:      # st M[k]
            mem[k & 15] = A
        elif pc.op == 0x03:      # stx M[k]
            mem[k & 15] = X
        elif pc.op == 0x05:      # ja (target absolute; backward ones are counted)
            if pc.jt <= <uint32_t>(pc - prog):
                back += 1
                if back > MAX_BACKWARD_JUMPS:
                    return 0
            pc = prog + pc.jt
            continue
        elif pc.op == 0x15:      # jeq #k
            if A == k:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == 0x1d:      # jeq x
            if A == X:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == 0x25:      # jgt #k
            if A > k:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == 0x2d:      # jgt x
            if A > X:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == 0x35:      # jge #k
            if A >= k:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == 0x3d:      # jge x
            if A >= X:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == 0x45:      # jset #k
            if (A & k):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == 0x4d:      # jset x
            if (A & X):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_20_15:   # ld [k]; jeq #k2
            if k > buflen or 4 > buflen - k:
                return 0
            A = load32(p + k)
            if counter_t is Count:
                counter.n += 1
            if A == pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_20_25:   # ld [k]; jgt #k2
            if k > buflen or 4 > buflen - k:
                return 0
            A = load32(p + k)
            if counter_t is Count:
                counter.n += 1
            if A > pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_20_35:   # ld [k]; jge #k2
            if k > buflen or 4 > buflen - k:
                return 0
            A = load32(p + k)
            if counter_t is Count:
                counter.n += 1
            if A >= pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_20_45:   # ld [k]; jset #k2
            if k > buflen or 4 > buflen - k:
                return 0
            A = load32(p + k)
            if counter_t is Count:
                counter.n += 1
            if (A & pc.k2):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_28_15:   # ldh [k]; jeq #k2
            if k > buflen or 2 > buflen - k:
                return 0
            A = load16(p + k)
            if counter_t is Count:
                counter.n += 1
            if A == pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_28_25:   # ldh [k]; jgt #k2
            if k > buflen or 2 > buflen - k:
                return 0
            A = load16(p + k)
            if counter_t is Count:
                counter.n += 1
            if A > pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_28_35:   # ldh [k]; jge #k2
            if k > buflen or 2 > buflen - k:
                return 0
            A = load16(p + k)
            if counter_t is Count:
                counter.n += 1
            if A >= pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_28_45:   # ldh [k]; jset #k2
            if k > buflen or 2 > buflen - k:
                return 0
            A = load16(p + k)
            if counter_t is Count:
                counter.n += 1
            if (A & pc.k2):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_30_15:   # ldb [k]; jeq #k2
            if k >= buflen:
                return 0
            A = p[k]
            if counter_t is Count:
                counter.n += 1
            if A == pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_30_25:   # ldb [k]; jgt #k2
            if k >= buflen:
                return 0
            A = p[k]
            if counter_t is Count:
                counter.n += 1
            if A > pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_30_35:   # ldb [k]; jge #k2
            if k >= buflen:
                return 0
            A = p[k]
            if counter_t is Count:
                counter.n += 1
            if A >= pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_30_45:   # ldb [k]; jset #k2
            if k >= buflen:
                return 0
            A = p[k]
            if counter_t is Count:
                counter.n += 1
            if (A & pc.k2):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_40_15:   # ld [x+k]; jeq #k2
            if k > buflen or X > buflen - k or 4 > buflen - (X + k):
                return 0
            A = load32(p + X + k)
            if counter_t is Count:
                counter.n += 1
            if A == pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_40_25:   # ld [x+k]; jgt #k2
            if k > buflen or X > buflen - k or 4 > buflen - (X + k):
                return 0
            A = load32(p + X + k)
            if counter_t is Count:
                counter.n += 1
            if A > pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_40_35:   # ld [x+k]; jge #k2
            if k > buflen or X > buflen - k or 4 > buflen - (X + k):
                return 0
            A = load32(p + X + k)
            if counter_t is Count:
                counter.n += 1
            if A >= pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_40_45:   # ld [x+k]; jset #k2
            if k > buflen or X > buflen - k or 4 > buflen - (X + k):
                return 0
            A = load32(p + X + k)
            if counter_t is Count:
                counter.n += 1
            if (A & pc.k2):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_48_15:   # ldh [x+k]; jeq #k2
            if k > buflen or X > buflen - k or 2 > buflen - (X + k):
                return 0
            A = load16(p + X + k)
            if counter_t is Count:
                counter.n += 1
            if A == pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_48_25:   # ldh [x+k]; jgt #k2
            if k > buflen or X > buflen - k or 2 > buflen - (X + k):
                return 0
            A = load16(p + X + k)
            if counter_t is Count:
                counter.n += 1
            if A > pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_48_35:   # ldh [x+k]; jge #k2
            if k > buflen or X > buflen - k or 2 > buflen - (X + k):
                return 0
            A = load16(p + X + k)
            if counter_t is Count:
                counter.n += 1
            if A >= pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_48_45:   # ldh [x+k]; jset #k2
            if k > buflen or X > buflen - k or 2 > buflen - (X + k):
                return 0
            A = load16(p + X + k)
            if counter_t is Count:
                counter.n += 1
            if (A & pc.k2):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_50_15:   # ldb [x+k]; jeq #k2
            if k >= buflen or X >= buflen - k:
                return 0
            A = p[X + k]
            if counter_t is Count:
                counter.n += 1
            if A == pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_50_25:   # ldb [x+k]; jgt #k2
            if k >= buflen or X >= buflen - k:
                return 0
            A = p[X + k]
            if counter_t is Count:
                counter.n += 1
            if A > pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_50_35:   # ldb [x+k]; jge #k2
            if k >= buflen or X >= buflen - k:
                return 0
            A = p[X + k]
            if counter_t is Count:
                counter.n += 1
            if A >= pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_50_45:   # ldb [x+k]; jset #k2
            if k >= buflen or X >= buflen - k:
                return 0
            A = p[X + k]
            if counter_t is Count:
                counter.n += 1
            if (A & pc.k2):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_54_15:   # and #k; jeq #k2
            A &= k
            if counter_t is Count:
                counter.n += 1
            if A == pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_54_25:   # and #k; jgt #k2
            A &= k
            if counter_t is Count:
                counter.n += 1
            if A > pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_54_35:   # and #k; jge #k2
            A &= k
            if counter_t is Count:
                counter.n += 1
            if A >= pc.k2:
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == FUSED_54_45:   # and #k; jset #k2
            A &= k
            if counter_t is Count:
                counter.n += 1
            if (A & pc.k2):
                pc = prog + pc.jt
            else:
                pc = prog + pc.jf
            continue
        elif pc.op == 0x04:      # add #k
            A += k
        elif pc.op == 0x14:      # sub #k
            A -= k
        elif pc.op == 0x24:      # mul #k
            A *= k
        elif pc.op == 0x34:      # div #k (validated: k != 0)
            A = A // k
        elif pc.op == 0x94:      # mod #k (validated: k != 0)
            A = A % k
        elif pc.op == 0x54:      # and #k
            A &= k
        elif pc.op == 0x44:      # or #k
            A |= k
        elif pc.op == 0xa4:      # xor #k
            A ^= k
        elif pc.op == 0x64:      # lsh #k (validated: k < 32)
            A = A << (k & 31)
        elif pc.op == 0x74:      # rsh #k (validated: k < 32)
            A = A >> (k & 31)
        elif pc.op == 0x0c:      # add x
            A += X
        elif pc.op == 0x1c:      # sub x
            A -= X
        elif pc.op == 0x2c:      # mul x
            A *= X
        elif pc.op == 0x3c:      # div x
            if X == 0:
                return 0
            A = A // X
        elif pc.op == 0x9c:      # mod x
            if X == 0:
                return 0
            A = A % X
        elif pc.op == 0x5c:      # and x
            A &= X
        elif pc.op == 0x4c:      # or x
            A |= X
        elif pc.op == 0xac:      # xor x
            A ^= X
        elif pc.op == 0x6c:      # lsh x
            A = (A << X) if X < 32 else 0
        elif pc.op == 0x7c:      # rsh x
            A = (A >> X) if X < 32 else 0
        elif pc.op == 0x84:      # neg
            A = 0u - A
        elif pc.op == 0x07:      # tax
            X = A
        elif pc.op == 0x87:      # txa
            A = X
        else:                    # unreachable for validated programs
            return 0
        pc += 1


cdef uint32_t fused_opcode(uint16_t load, uint16_t jump) noexcept nogil:
    """The FUSED_* opcode for `load` (or `and #k`) followed by conditional jump `jump`."""
    cdef uint32_t li, ji
    if load == 0x20: li = 0
    elif load == 0x28: li = 1
    elif load == 0x30: li = 2
    elif load == 0x40: li = 3
    elif load == 0x48: li = 4
    elif load == 0x50: li = 5
    else: li = 6
    if jump == 0x15: ji = 0
    elif jump == 0x25: ji = 1
    elif jump == 0x35: ji = 2
    else: ji = 3
    return 0x100 + li * 4 + ji


def decode(const uint8_t[::1] raw):
    """The internal form (bytes of vm_insn[]) of a validated program given as struct bpf_insn[]
    bytes: absolute jump targets, and fused load+jump / and+jump pairs."""
    cdef Py_ssize_t n = raw.shape[0] // sizeof(pf_insn), i
    cdef const pf_insn* src = <const pf_insn*>&raw[0]
    out = bytearray(n * sizeof(vm_insn))
    cdef uint8_t[::1] view = out
    cdef vm_insn* dst = <vm_insn*>&view[0]
    cdef uint16_t c, nc
    for i in range(n):
        c = src[i].code
        dst[i].op = c
        dst[i].k = src[i].k
        dst[i].k2 = 0
        dst[i].jt = dst[i].jf = 0
        if c == 0x05:
            dst[i].jt = <uint32_t>(i + 1 + <int32_t>src[i].k)
        elif (c & 0x07) == 0x05:
            dst[i].jt = <uint32_t>(i + 1 + src[i].jt)
            dst[i].jf = <uint32_t>(i + 1 + src[i].jf)
    for i in range(n - 1):
        c, nc = src[i].code, src[i + 1].code
        if c in (0x20, 0x28, 0x30, 0x40, 0x48, 0x50, 0x54) and nc in (0x15, 0x25, 0x35, 0x45):
            dst[i].op = fused_opcode(c, nc)
            dst[i].k2 = src[i + 1].k
            dst[i].jt = dst[i + 1].jt
            dst[i].jf = dst[i + 1].jf
    return bytes(out)


def reads_scratch(const uint8_t[::1] raw):
    """Whether the program loads from scratch memory (so M[] must be cleared per packet)."""
    cdef Py_ssize_t n = raw.shape[0] // sizeof(pf_insn), i
    cdef const pf_insn* src = <const pf_insn*>&raw[0]
    for i in range(n):
        if src[i].code == 0x60 or src[i].code == 0x61:
            return True
    return False


def run_batch(const uint8_t[::1] prog, bint clear_mem, const uint8_t[::1] data, const int64_t[::1] offsets,
              const uint32_t[::1] caplen, const uint32_t[::1] wirelen, uint32_t[::1] out):
    """out[i] = return value of the decoded program on packet i."""
    cdef Py_ssize_t i, n = offsets.shape[0]
    cdef const vm_insn* insns = <const vm_insn*>&prog[0]
    cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
    cdef NoCount* nocount = NULL
    if caplen.shape[0] < n or wirelen.shape[0] < n or out.shape[0] < n:
        raise ValueError("batch arrays are shorter than offsets")
    with nogil:
        for i in range(n):
            if i + PREFETCH_AHEAD < n:
                PF_PREFETCH(base + offsets[i + PREFETCH_AHEAD])
                PF_PREFETCH(base + offsets[i + PREFETCH_AHEAD] + 63)
            out[i] = bpf_run(insns, base + offsets[i], caplen[i], wirelen[i], clear_mem, nocount)
    return out


def run_indexed(const uint8_t[::1] prog, bint clear_mem, const uint8_t[::1] data, const int64_t[::1] offsets,
                const uint32_t[::1] caplen, const uint32_t[::1] wirelen, const int64_t[::1] index,
                uint32_t[::1] out):
    """out[index[j]] = return value on packet index[j]: run a subset (one link type of a mixed batch)."""
    cdef Py_ssize_t j, i, n = index.shape[0], npk = offsets.shape[0]
    cdef const vm_insn* insns = <const vm_insn*>&prog[0]
    cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
    cdef NoCount* nocount = NULL
    with nogil:
        for j in range(n):
            if j + PREFETCH_AHEAD < n and 0 <= index[j + PREFETCH_AHEAD] < npk:
                PF_PREFETCH(base + offsets[index[j + PREFETCH_AHEAD]])
            i = index[j]
            if 0 <= i < npk:
                out[i] = bpf_run(insns, base + offsets[i], caplen[i], wirelen[i], clear_mem, nocount)
    return out


def count_steps(const uint8_t[::1] prog, const uint8_t[::1] data, const int64_t[::1] offsets,
                const uint32_t[::1] caplen, const uint32_t[::1] wirelen, uint64_t[::1] steps):
    """steps[i] = number of cBPF instructions executed for packet i (path length)."""
    cdef Py_ssize_t i, n = offsets.shape[0]
    cdef const vm_insn* insns = <const vm_insn*>&prog[0]
    cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
    cdef Count c
    with nogil:
        for i in range(n):
            c.n = 0
            bpf_run(insns, base + offsets[i], caplen[i], wirelen[i], True, &c)
            steps[i] = c.n
    return steps


def run_one(const uint8_t[::1] prog, const uint8_t[::1] packet, uint32_t wirelen):
    """Return value of the decoded program on one packet."""
    cdef const uint8_t* p = &packet[0] if packet.shape[0] else NULL
    cdef uint32_t r
    cdef NoCount* nocount = NULL
    with nogil:
        r = bpf_run(<const vm_insn*>&prog[0], p, <uint32_t>packet.shape[0], wirelen, True, nocount)
    return r
