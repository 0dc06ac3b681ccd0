# cython: language_level=3
"""The cBPF virtual machine: one C `switch` on the opcode inside a `nogil` loop.

Imports nothing from pfilter (the validator in pfilter/validate.py has already checked every
program; the constant below must equal pfilter.validate.MAX_BACKWARD_JUMPS). The pure-Python twin
is pfilter/_pyvm.py; both follow libpcap's bpf_filter() exactly:

* A, X and M[0..15] start at 0; loads are big-endian;
* a load past the captured length returns 0 from the program, checked without overflow
  (`k > buflen or size > buflen - k`);
* division or modulo by X = 0 returns 0; a shift by X >= 32 gives 0;
* `ld #pktlen` is the wire length;
* a backward `ja` (libpcap's `ip6 protochain` loop) is allowed, but one packet may take at most
  MAX_BACKWARD_JUMPS of them, after which the program returns 0: every program terminates.

Linux metadata loads (k >= SKF_AD_OFF as u32) fall past any real packet, so return 0, as in
libpcap's userland interpreter.
"""
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    typedef struct { uint16_t code; uint8_t jt; uint8_t jf; uint32_t k; } pf_insn;
    """
    ctypedef struct pf_insn:
        uint16_t code
        uint8_t jt
        uint8_t jf
        uint32_t k

cdef enum:
    MAX_BACKWARD_JUMPS = 262144

MAX_BACKWARD_JUMPS_VALUE = MAX_BACKWARD_JUMPS


cdef inline uint32_t load32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint32_t load16(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 8) | p[1]


cdef inline uint32_t bpf_run(const pf_insn* prog, const uint8_t* p, uint32_t buflen,
                             uint32_t wirelen, uint64_t* steps) noexcept nogil:
    """Run one packet; `steps`, when not NULL, receives the count of executed instructions."""
    cdef uint32_t A = 0, X = 0, k
    cdef uint32_t mem[16]
    cdef const pf_insn* pc = prog
    cdef uint32_t back = 0
    cdef uint64_t nsteps = 0
    cdef int i
    for i in range(16):
        mem[i] = 0
    while True:
        if steps != NULL:
            nsteps += 1
            steps[0] = nsteps
        k = pc.k
        # The opcode is a C integer, so Cython emits a single C `switch` (see test_vm_dispatch).
        if pc.code == 0x06:        # ret #k
            return k
        elif pc.code == 0x16:      # ret a
            return A
        elif pc.code == 0x20:      # ld [k]
            if k > buflen or 4 > buflen - k:
                return 0
            A = load32(p + k)
        elif pc.code == 0x28:      # ldh [k]
            if k > buflen or 2 > buflen - k:
                return 0
            A = load16(p + k)
        elif pc.code == 0x30:      # ldb [k]
            if k >= buflen:
                return 0
            A = p[k]
        elif pc.code == 0x80:      # ld #pktlen
            A = wirelen
        elif pc.code == 0x81:      # ldx #pktlen
            X = wirelen
        elif pc.code == 0x40:      # ld [x + k]
            if k > buflen or X > buflen - k or 4 > buflen - (X + k):
                return 0
            A = load32(p + X + k)
        elif pc.code == 0x48:      # ldh [x + k]
            if k > buflen or X > buflen - k or 2 > buflen - (X + k):
                return 0
            A = load16(p + X + k)
        elif pc.code == 0x50:      # ldb [x + k]
            if k >= buflen or X >= buflen - k:
                return 0
            A = p[X + k]
        elif pc.code == 0xb1:      # ldxb 4*([k]&0xf)
            if k >= buflen:
                return 0
            X = (p[k] & 0xf) << 2
        elif pc.code == 0x00:      # ld #k
            A = k
        elif pc.code == 0x01:      # ldx #k
            X = k
        elif pc.code == 0x60:      # ld M[k]
            A = mem[k & 15]
        elif pc.code == 0x61:      # ldx M[k]
            X = mem[k & 15]
        elif pc.code == 0x02:      # st M[k]
            mem[k & 15] = A
        elif pc.code == 0x03:      # stx M[k]
            mem[k & 15] = X
        elif pc.code == 0x05:      # ja
            if k & 0x80000000u:
                back += 1
                if back > MAX_BACKWARD_JUMPS:
                    return 0
            pc += <int32_t>k
        elif pc.code == 0x15:      # jeq #k
            pc += pc.jt if A == k else pc.jf
        elif pc.code == 0x25:      # jgt #k
            pc += pc.jt if A > k else pc.jf
        elif pc.code == 0x35:      # jge #k
            pc += pc.jt if A >= k else pc.jf
        elif pc.code == 0x45:      # jset #k
            pc += pc.jt if (A & k) else pc.jf
        elif pc.code == 0x1d:      # jeq x
            pc += pc.jt if A == X else pc.jf
        elif pc.code == 0x2d:      # jgt x
            pc += pc.jt if A > X else pc.jf
        elif pc.code == 0x3d:      # jge x
            pc += pc.jt if A >= X else pc.jf
        elif pc.code == 0x4d:      # jset x
            pc += pc.jt if (A & X) else pc.jf
        elif pc.code == 0x04:      # add #k
            A += k
        elif pc.code == 0x14:      # sub #k
            A -= k
        elif pc.code == 0x24:      # mul #k
            A *= k
        elif pc.code == 0x34:      # div #k (validated: k != 0)
            A = A // k
        elif pc.code == 0x94:      # mod #k (validated: k != 0)
            A = A % k
        elif pc.code == 0x54:      # and #k
            A &= k
        elif pc.code == 0x44:      # or #k
            A |= k
        elif pc.code == 0xa4:      # xor #k
            A ^= k
        elif pc.code == 0x64:      # lsh #k (validated: k < 32)
            A = A << (k & 31)
        elif pc.code == 0x74:      # rsh #k (validated: k < 32)
            A = A >> (k & 31)
        elif pc.code == 0x0c:      # add x
            A += X
        elif pc.code == 0x1c:      # sub x
            A -= X
        elif pc.code == 0x2c:      # mul x
            A *= X
        elif pc.code == 0x3c:      # div x
            if X == 0:
                return 0
            A = A // X
        elif pc.code == 0x9c:      # mod x
            if X == 0:
                return 0
            A = A % X
        elif pc.code == 0x5c:      # and x
            A &= X
        elif pc.code == 0x4c:      # or x
            A |= X
        elif pc.code == 0xac:      # xor x
            A ^= X
        elif pc.code == 0x6c:      # lsh x
            A = (A << X) if X < 32 else 0
        elif pc.code == 0x7c:      # rsh x
            A = (A >> X) if X < 32 else 0
        elif pc.code == 0x84:      # neg
            A = 0u - A
        elif pc.code == 0x07:      # tax
            X = A
        elif pc.code == 0x87:      # txa
            A = X
        else:                      # unreachable for validated programs
            return 0
        pc += 1


def run_batch(const uint8_t[::1] prog, const uint8_t[::1] data, const int64_t[::1] offsets,
              const uint32_t[::1] caplen, const uint32_t[::1] wirelen, uint32_t[::1] out):
    """out[i] = return value of the program (raw bytes of a validated pf_insn array) on packet i."""
    cdef Py_ssize_t i, n = offsets.shape[0]
    cdef const pf_insn* insns = <const pf_insn*>&prog[0]
    cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
    if caplen.shape[0] < n or wirelen.shape[0] < n or out.shape[0] < n:
        raise ValueError("batch arrays are shorter than offsets")
    with nogil:
        for i in range(n):
            out[i] = bpf_run(insns, base + offsets[i], caplen[i], wirelen[i], NULL)
    return out


def run_indexed(const uint8_t[::1] prog, const uint8_t[::1] data, const int64_t[::1] offsets,
                const uint32_t[::1] caplen, const uint32_t[::1] wirelen, const int64_t[::1] index,
                uint32_t[::1] out):
    """out[index[j]] = return value on packet index[j]: run a subset (one link type of a mixed batch)."""
    cdef Py_ssize_t j, i, n = index.shape[0]
    cdef const pf_insn* insns = <const pf_insn*>&prog[0]
    cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
    with nogil:
        for j in range(n):
            i = index[j]
            out[i] = bpf_run(insns, base + offsets[i], caplen[i], wirelen[i], NULL)
    return out


def count_steps(const uint8_t[::1] prog, const uint8_t[::1] data, const int64_t[::1] offsets,
                const uint32_t[::1] caplen, const uint32_t[::1] wirelen, uint64_t[::1] steps):
    """steps[i] = number of instructions executed for packet i (path length, for the optimizer)."""
    cdef Py_ssize_t i, n = offsets.shape[0]
    cdef const pf_insn* insns = <const pf_insn*>&prog[0]
    cdef const uint8_t* base = &data[0] if data.shape[0] else NULL
    cdef uint64_t s
    with nogil:
        for i in range(n):
            s = 0
            bpf_run(insns, base + offsets[i], caplen[i], wirelen[i], &s)
            steps[i] = s
    return steps


def run_one(const uint8_t[::1] prog, const uint8_t[::1] packet, uint32_t wirelen):
    """Return value of the program on one packet."""
    cdef const uint8_t* p = &packet[0] if packet.shape[0] else NULL
    cdef uint32_t r
    with nogil:
        r = bpf_run(<const pf_insn*>&prog[0], p, <uint32_t>packet.shape[0], wirelen, NULL)
    return r
