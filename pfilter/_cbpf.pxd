# cython: language_level=3
"""The native definition of cBPF's steps, written once: cimported by the VM (pfilter/_vm.pyx) and
the classifier's engine (pfilter/_classify.pyx). Every helper is inline: a caller passing a
constant opcode or size gets the one operation, as if written in place. The loads are C functions
forced inline (PF_ALWAYS_INLINE): the VM holds one in each of its 28 load+jump cases, and with
`cdef inline` alone GCC stopped inlining them at its unit-growth limit, leaving calls (and A in
memory) in the hottest cases.

Semantics are libpcap's bpf_filter() (the Python twin is pfilter/semantics.py):

* loads are big-endian (host order on request: the seccomp mode's records); a load that would
  read past the captured length makes the program return 0, checked without overflow
  (`k > buflen or size > buflen - k`);
* a division or modulo by zero returns 0 from the program; a shift by 32 or more gives 0;
* each taken backward `ja` charges the span of its loop; past loop_budget(caplen) the program
  returns 0 (pfilter.validate's LOOP_BUDGET_*; the VMs export LOOP_BUDGET_VALUES and
  tests/test_semantics_native.py checks they agree).
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy     # (for the loads' C below)

cdef enum:
    # pfilter.validate.loop_budget(caplen) = min(BASE + PER_BYTE * caplen, MAX)
    LOOP_BUDGET_BASE = 65536
    LOOP_BUDGET_PER_BYTE = 32
    LOOP_BUDGET_MAX = 16777216
    # what step() did
    STEP_REJECT = 0      # the program returns 0 here (a load past the captured length, x / 0)
    STEP_DONE = 1        # the statement ran
    STEP_OTHER = -1      # not a statement (ret, a jump)


cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define PF_ALWAYS_INLINE static inline __attribute__((always_inline))
    #else
    #define PF_ALWAYS_INLINE static inline
    #endif

    /* The size (4, 2 or 1) bytes at p as an integer: big-endian, or a 32-bit load in host order. */
    PF_ALWAYS_INLINE uint32_t pf_load_at(const uint8_t *p, uint32_t size, int host) {
        uint32_t v;
        if (size == 4) {
            if (host) {
                memcpy(&v, p, 4);
                return v;
            }
            return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
        }
        if (size == 2)
            return ((uint32_t)p[0] << 8) | p[1];
        return p[0];
    }

    PF_ALWAYS_INLINE int pf_load_abs(const uint8_t *p, uint32_t buflen, uint32_t k, uint32_t size, int host,
                                     uint32_t *A) {
        if (size == 1 ? k >= buflen : (k > buflen || size > buflen - k))
            return 0;
        *A = pf_load_at(p + k, size, host);
        return 1;
    }

    PF_ALWAYS_INLINE int pf_load_ind(const uint8_t *p, uint32_t buflen, uint32_t X, uint32_t k, uint32_t size,
                                     int host, uint32_t *A) {
        /* (size 1: the same test, one compare fewer) */
        if (size == 1 ? (k >= buflen || X >= buflen - k)
                      : (k > buflen || X > buflen - k || size > buflen - (X + k)))
            return 0;
        *A = pf_load_at(p + X + k, size, host);
        return 1;
    }

    PF_ALWAYS_INLINE int pf_load_msh(const uint8_t *p, uint32_t buflen, uint32_t k, uint32_t *X) {
        if (k >= buflen)
            return 0;
        *X = (uint32_t)(p[k] & 0xf) << 2;
        return 1;
    }
    """
    # `ld [k]` of size (4, 2 or 1) bytes into A (host order: the seccomp records' 32-bit loads);
    # False when they are not all captured
    bint load_abs "pf_load_abs"(const uint8_t* p, uint32_t buflen, uint32_t k, uint32_t size, bint host,
                                uint32_t* A) noexcept nogil
    # `ld [x + k]` of size bytes into A; False when they are not all captured
    bint load_ind "pf_load_ind"(const uint8_t* p, uint32_t buflen, uint32_t X, uint32_t k, uint32_t size,
                                bint host, uint32_t* A) noexcept nogil
    # `ldxb 4*([k]&0xf)` into X; False when byte k is not captured
    bint load_msh "pf_load_msh"(const uint8_t* p, uint32_t buflen, uint32_t k, uint32_t* X) noexcept nogil


cdef inline bint alu(uint32_t op, uint32_t* A, uint32_t v) noexcept nogil:
    """A = A <op> v for the ALU opcode op (its BPF_OP bits; v is k or X, unused by neg);
    False for a division or modulo by zero."""
    op &= 0xf0
    if op == 0x00:
        A[0] += v
    elif op == 0x10:
        A[0] -= v
    elif op == 0x20:
        A[0] *= v
    elif op == 0x30:
        if v == 0:
            return False
        A[0] = A[0] // v
    elif op == 0x90:
        if v == 0:
            return False
        A[0] = A[0] % v
    elif op == 0x40:
        A[0] |= v
    elif op == 0x50:
        A[0] &= v
    elif op == 0xa0:
        A[0] ^= v
    elif op == 0x60:
        A[0] = (A[0] << v) if v < 32 else 0
    elif op == 0x70:
        A[0] = (A[0] >> v) if v < 32 else 0
    else:                # 0x80: neg
        A[0] = 0u - A[0]
    return True


cdef inline bint jump_taken(uint32_t op, uint32_t A, uint32_t v) noexcept nogil:
    """Whether the conditional jump op (its BPF_OP bits: jeq, jgt, jge, jset) comparing A with v
    (k or X) is taken."""
    op &= 0xf0
    if op == 0x10:
        return A == v
    if op == 0x20:
        return A > v
    if op == 0x30:
        return A >= v
    return (A & v) != 0


cdef inline uint64_t loop_budget(uint32_t caplen) noexcept nogil:
    cdef uint64_t b = LOOP_BUDGET_BASE + <uint64_t>LOOP_BUDGET_PER_BYTE * caplen
    return b if b < LOOP_BUDGET_MAX else LOOP_BUDGET_MAX


cdef inline bint charge_loop(uint64_t* spent, uint64_t start, uint32_t span, uint32_t caplen) noexcept nogil:
    """A taken backward `ja` looping over span instructions: spent grows by span; False once this
    packet's charges (spent - start) pass loop_budget(caplen)."""
    spent[0] += span
    return spent[0] - start <= loop_budget(caplen)


cdef inline int step(uint32_t op, uint32_t k, const uint8_t* p, uint32_t buflen, uint32_t wirelen,
                     uint32_t* A, uint32_t* X, uint32_t* mem, bint host) noexcept nogil:
    """One statement (load, store, ALU, tax/txa) of a program: STEP_DONE, STEP_REJECT or
    STEP_OTHER. mem is M[0..15]."""
    # op is a C integer compared with constants only: Cython emits one C `switch`.
    if op == 0x20:        # ld [k]
        return load_abs(p, buflen, k, 4, host, A)
    elif op == 0x28:      # ldh [k]
        return load_abs(p, buflen, k, 2, host, A)
    elif op == 0x30:      # ldb [k]
        return load_abs(p, buflen, k, 1, host, A)
    elif op == 0x40:      # ld [x + k]
        return load_ind(p, buflen, X[0], k, 4, host, A)
    elif op == 0x48:      # ldh [x + k]
        return load_ind(p, buflen, X[0], k, 2, host, A)
    elif op == 0x50:      # ldb [x + k]
        return load_ind(p, buflen, X[0], k, 1, host, A)
    elif op == 0xb1:      # ldxb 4*([k]&0xf)
        return load_msh(p, buflen, k, X)
    elif op == 0x80:      # ld #pktlen
        A[0] = wirelen
    elif op == 0x81:      # ldx #pktlen
        X[0] = wirelen
    elif op == 0x00:      # ld #k
        A[0] = k
    elif op == 0x01:      # ldx #k
        X[0] = k
    elif (op == 0x04 or op == 0x14 or op == 0x24 or op == 0x34 or op == 0x94 or op == 0x44
          or op == 0x54 or op == 0xa4 or op == 0x64 or op == 0x74 or op == 0x84):    # alu #k, neg
        return alu(op, A, k)
    elif (op == 0x0c or op == 0x1c or op == 0x2c or op == 0x3c or op == 0x9c or op == 0x4c
          or op == 0x5c or op == 0xac or op == 0x6c or op == 0x7c):                  # alu x
        return alu(op, A, X[0])
    elif op == 0x07:      # tax
        X[0] = A[0]
    elif op == 0x87:      # txa
        A[0] = X[0]
    elif op == 0x60:      # ld M[k]
        A[0] = mem[k & 15]
    elif op == 0x61:      # ldx M[k]
        X[0] = mem[k & 15]
    elif op == 0x02:      # st M[k]
        mem[k & 15] = A[0]
    elif op == 0x03:      # stx M[k]
        mem[k & 15] = X[0]
    else:
        return STEP_OTHER
    return STEP_DONE
