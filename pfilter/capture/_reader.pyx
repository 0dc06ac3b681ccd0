# cython: language_level=3
"""Record scanners for pcap and pcapng: the reader's hot loop, in C with the GIL released.

Imports nothing from pfilter. Each scanner walks records in one window of the file (a memory map
or a read buffer) from a start position and fills caller-provided arrays (packet data offsets
into the window, captured length, wire length, timestamp in ns, record file offset, and for
pcapng interface id and link type). It stops when the batch is full, when the next record is not
entirely inside the window, at a block only Python handles (pcapng SHB and IDB), or at damage,
and says which with a status code; the Python side (pfilter.capture.reader) formats errors and
decides about EOF. pfilter/capture/_pyscan.py is the pure-Python twin with the same contract.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t
from libc.string cimport memcpy

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint32_t pf_bswap32(uint32_t v) { return __builtin_bswap32(v); }
    static inline uint16_t pf_bswap16(uint16_t v) { return __builtin_bswap16(v); }
    static inline uint64_t pf_bswap64(uint64_t v) { return __builtin_bswap64(v); }
    static inline void pf_prefetch(const uint8_t* p) { __builtin_prefetch(p, 0, 0); }
    static inline uint64_t pf_scale_frac(uint64_t frac, uint64_t units) {
        return (uint64_t)(((unsigned __int128)frac * 1000000000u) / units);
    }
    """
    uint32_t pf_bswap32(uint32_t v) nogil
    uint16_t pf_bswap16(uint16_t v) nogil
    uint64_t pf_bswap64(uint64_t v) nogil
    uint64_t pf_scale_frac(uint64_t frac, uint64_t units) nogil
    void pf_prefetch(const uint8_t* p) nogil

# Record headers sit at unpredictable places, so each one read is a cache miss waiting on the
# previous; prefetching the file linearly this far ahead turns that into a sequential stream.
cdef enum:
    PREFETCH_AHEAD = 8192

# Status codes shared with _pyscan.py and reader.py.
cdef enum:
    ST_LIMIT = 0      # batch full (packet or byte bound); more records may follow
    ST_MORE = 1       # the record at pos is not entirely in the window; `info` = bytes it needs
    ST_BADCAPLEN = 2  # pcap: caplen above the link type's maximum; `info` = caplen
    ST_BLOCK = 3      # pcapng: SHB or IDB at pos, for Python
    ST_BADLEN = 4     # pcapng: block total length < 12; `info` = length
    ST_UNALIGNED = 5  # pcapng: block total length not a multiple of 4
    ST_TOOBIG = 6     # pcapng: block total length above the maximum
    ST_TRAILER = 7    # pcapng: trailer length differs from header length
    ST_SHORT = 8      # pcapng: block body too short for its fixed part or its packet; `info` = type
    ST_NOIFACE = 9    # pcapng: packet on an interface without IDB; `info` = interface id
    ST_CAPLEN = 10    # pcapng: caplen above the interface's snapshot length; `info` = caplen
    ST_END = 11       # the window ends exactly at pos (no partial record)
    ST_FULL = 12      # pcapng: an IDB at pos, but the interface table is full (grow it, call again)

ST_NAMES = {0: "limit", 1: "more", 2: "badcaplen", 3: "block", 4: "badlen", 5: "unaligned",
            6: "toobig", 7: "trailer", 8: "short", 9: "noiface", 10: "caplen", 11: "end", 12: "full"}

# Per-interface timestamp modes (pcapng).
cdef enum:
    TS_MICRO = 0      # units 10^6
    TS_NANO = 1       # units 10^9
    TS_DECUP = 2      # units 10^k, k < 9: multiply the fraction
    TS_GENERAL = 3    # anything else: 128-bit scale


cdef inline Py_ssize_t prefetch_ahead(const uint8_t* b, Py_ssize_t pf, Py_ssize_t p,
                                     Py_ssize_t end) noexcept nogil:
    """Prefetch b[pf:] up to PREFETCH_AHEAD bytes past p (the record being read); the new pf."""
    while pf < p + PREFETCH_AHEAD and pf < end:
        pf_prefetch(b + pf)
        pf += 64
    return pf


cdef inline uint32_t rd32(const uint8_t* p, bint sw) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return pf_bswap32(v) if sw else v


cdef inline uint64_t rd64(const uint8_t* p, bint sw) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return pf_bswap64(v) if sw else v


# Seconds a timestamp may have and still fit int64 nanoseconds (year 2262).
cdef int64_t MAX_SECONDS = 9223372035


cdef inline int64_t stamp_ns(uint64_t sec, uint64_t frac, int64_t tsoffset) noexcept nogil:
    """libpcap's tv_sec (seconds + if_tsoffset, wrapping as its uint64 sum does) in ns. Seconds
    beyond int64 nanoseconds keep their low 32 bits: what libpcap writes to a pcap file
    (`tcpdump -w` stores tv_sec as 32 bits), so the packet's time is the one any pcap copy has."""
    # Divergence: libpcap keeps such seconds whole in its 64-bit time_t (tcpdump prints them as
    # they are); pfilter's int64-nanosecond timestamps cannot, and keep what `-w` would write.
    cdef int64_t s = <int64_t>(sec + <uint64_t>tsoffset)
    if s > MAX_SECONDS or s < -MAX_SECONDS:
        s = <int64_t><uint32_t>s
    return s * 1000000000 + <int64_t>frac


cdef inline uint16_t rd16(const uint8_t* p, bint sw) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return pf_bswap16(v) if sw else v


def scan_pcap(const uint8_t[::1] buf, Py_ssize_t pos, bint swapped, int hdrsize, bint nsec,
              uint32_t snaplen, uint32_t maxcap, int lengths_swapped, int64_t base,
              int64_t[::1] offsets, uint32_t[::1] caplens, uint32_t[::1] wirelens,
              int64_t[::1] stamps, int64_t[::1] fileoffs, Py_ssize_t max_packets,
              Py_ssize_t max_bytes):
    """Scan classic pcap records of `hdrsize` bytes + data from buf[pos:].

    lengths_swapped: 0 never, 1 when caplen > len (format 2.3), 2 always (before 2.3).
    Returns (packets, new_pos, status, info)."""
    # libpcap: pcap_next_packet()
    cdef Py_ssize_t end = buf.shape[0]
    cdef Py_ssize_t n = 0, p = pos
    cdef Py_ssize_t nbytes = 0
    cdef const uint8_t* b = &buf[0] if end > 0 else NULL
    cdef uint32_t cap, wire, t, keep
    cdef int32_t sec, frac
    cdef int status = ST_END
    cdef int64_t info = 0
    cdef int64_t mult = 1 if nsec else 1000
    cdef Py_ssize_t pf = pos
    with nogil:
        while True:
            pf = prefetch_ahead(b, pf, p, end)
            if p == end:
                status = ST_END
                break
            if n >= max_packets or nbytes >= max_bytes:
                status = ST_LIMIT
                break
            if end - p < hdrsize:
                status = ST_MORE
                info = hdrsize
                break
            sec = <int32_t>rd32(b + p, swapped)
            frac = <int32_t>rd32(b + p + 4, swapped)
            cap = rd32(b + p + 8, swapped)
            wire = rd32(b + p + 12, swapped)
            if lengths_swapped == 2 or (lengths_swapped == 1 and cap > wire):
                t = cap
                cap = wire
                wire = t
            if cap > maxcap:
                status = ST_BADCAPLEN
                info = cap
                break
            if <int64_t>(end - p) < <int64_t>hdrsize + cap:
                status = ST_MORE
                info = <int64_t>hdrsize + cap
                break
            keep = cap if cap <= snaplen else snaplen
            offsets[n] = p + hdrsize
            caplens[n] = keep
            wirelens[n] = wire
            stamps[n] = <int64_t>sec * 1000000000 + <int64_t>frac * mult
            fileoffs[n] = base + p
            n += 1
            nbytes += keep
            p += hdrsize + cap
    return n, p, status, info


def scan_pcapng(const uint8_t[::1] buf, Py_ssize_t pos, int64_t base, uint32_t max_blocksize,
                int64_t[::1] state, uint16_t[::1] if_linktype, uint32_t[::1] if_snaplen,
                int32_t[::1] if_tsmode, uint64_t[::1] if_units, int64_t[::1] if_tsoffset,
                int64_t[::1] if_offset, int64_t[::1] if_nameoff, uint16_t[::1] if_namelen,
                int64_t[::1] offsets, uint32_t[::1] caplens, uint32_t[::1] wirelens,
                int64_t[::1] stamps, int64_t[::1] fileoffs, uint32_t[::1] ifaces,
                uint16_t[::1] linktypes, Py_ssize_t max_packets, Py_ssize_t max_bytes):
    """Scan pcapng blocks from buf[pos:]: EPB, SPB and PB become packets, other block types are
    skipped. Section headers and interface descriptions are read here too, into `state`
    ([byte order swapped, interfaces in the file, first interface of the current section]) and
    the file-wide interface arrays (capacity: their length; name option as file offset and
    length, -1 for none); one that is cut by the window edge, damaged, or unusual (snapshot
    length 0 or above INT_MAX) stops the scan (ST_BLOCK) for Python, which reads it with
    libpcap's messages. Interface ids are reported file-wide (section base + id). Returns
    (packets, new_pos, status, info)."""
    # libpcap: pcap_ng_next_packet(), read_block(), add_interface(), process_idb_options()
    cdef Py_ssize_t end = buf.shape[0]
    cdef Py_ssize_t n = 0, p = pos
    cdef Py_ssize_t nbytes = 0
    cdef const uint8_t* b = &buf[0] if end > 0 else NULL
    cdef const uint8_t* body
    cdef uint32_t btype, total, bodylen, cap, wire, iface, snap, bom
    cdef uint64_t t, sec, frac, units
    cdef int status = ST_END
    cdef int64_t info = 0
    cdef Py_ssize_t datapos
    cdef Py_ssize_t pf = pos
    cdef bint swapped = state[0] != 0, nsw, binary, bad
    cdef int64_t count = state[1], section = state[2], capacity = if_linktype.shape[0]
    cdef int64_t idx, tsoffset, nameoff
    cdef uint32_t namelen
    cdef uint32_t i, code, olen, padded, seen, v, k
    cdef int32_t mode
    with nogil:
        while True:
            pf = prefetch_ahead(b, pf, p, end)
            if p == end:
                status = ST_END
                break
            if end - p < 8:
                status = ST_MORE
                info = 8
                break
            btype = rd32(b + p, swapped)
            if btype == 0x0A0D0D0A:
                # a new section: its own byte order, its own interfaces
                if end - p < 28:
                    status = ST_BLOCK
                    break
                bom = rd32(b + p + 8, 0)
                if bom == 0x1A2B3C4D:
                    nsw = 0
                elif bom == 0x4D3C2B1A:
                    nsw = 1
                else:
                    status = ST_BLOCK
                    break
                total = rd32(b + p + 4, nsw)
                if (total < 28 or total % 4 != 0 or total > max_blocksize or end - p < <Py_ssize_t>total
                        or rd32(b + p + total - 4, nsw) != total or rd16(b + p + 12, nsw) != 1):
                    status = ST_BLOCK
                    break
                swapped = nsw
                section = count
                p += total
                continue
            total = rd32(b + p + 4, swapped)
            if total < 12:
                status = ST_BADLEN
                info = total
                break
            if total % 4 != 0:
                status = ST_UNALIGNED
                info = total
                break
            if total > max_blocksize:
                status = ST_TOOBIG
                info = total
                break
            if end - p < <Py_ssize_t>total:
                status = ST_MORE
                info = total
                break
            if rd32(b + p + total - 4, swapped) != total:
                status = ST_TRAILER
                break
            if btype == 1:
                if count >= capacity:
                    status = ST_FULL
                    break
                body = b + p + 8
                bodylen = total - 12
                if bodylen < 8:
                    status = ST_BLOCK
                    break
                snap = rd32(body + 4, swapped)
                if snap == 0 or snap > 0x7FFFFFFF:
                    status = ST_BLOCK
                    break
                units = 1000000
                binary = 0
                tsoffset = 0
                nameoff = -1
                namelen = 0
                seen = 0
                bad = 0
                i = 8
                while i < bodylen:
                    if bodylen - i < 4:
                        bad = 1
                        break
                    code = rd16(body + i, swapped)
                    olen = rd16(body + i + 2, swapped)
                    padded = (olen + 3) & ~(<uint32_t>3)
                    i += 4
                    if bodylen - i < padded:
                        bad = 1
                        break
                    if code == 0:
                        bad = olen != 0
                        break
                    if code == 9:
                        if olen != 1 or seen & 1:
                            bad = 1
                            break
                        seen |= 1
                        v = body[i]
                        if v & 0x80:
                            if v & 0x7F > 63:
                                bad = 1
                                break
                            units = (<uint64_t>1) << (v & 0x7F)
                            binary = 1
                        else:
                            if v > 19:
                                bad = 1
                                break
                            units = 1
                            for k in range(v):
                                units *= 10
                            binary = 0
                    elif code == 14:
                        if olen != 8 or seen & 2:
                            bad = 1
                            break
                        seen |= 2
                        tsoffset = <int64_t>rd64(body + i, swapped)
                    elif code == 2:
                        nameoff = base + p + 8 + i
                        namelen = olen
                    i += padded
                if bad:
                    status = ST_BLOCK
                    break
                if units == 1000000:
                    mode = TS_MICRO
                elif units == 1000000000:
                    mode = TS_NANO
                elif not binary and units < 1000000000:
                    mode = TS_DECUP
                else:
                    mode = TS_GENERAL
                if_linktype[count] = rd16(body, swapped)
                if_snaplen[count] = snap
                if_tsmode[count] = mode
                if_units[count] = units
                if_tsoffset[count] = tsoffset
                if_offset[count] = base + p
                if_nameoff[count] = nameoff
                if_namelen[count] = <uint16_t>namelen
                count += 1
                p += total
                continue
            if btype != 6 and btype != 3 and btype != 2:
                p += total
                continue
            if n >= max_packets or nbytes >= max_bytes:
                status = ST_LIMIT
                break
            body = b + p + 8
            bodylen = total - 12
            if btype == 6 or btype == 2:
                # enhanced packet block, or the obsolete packet block (16-bit interface id)
                if bodylen < 20:
                    status = ST_SHORT
                    info = btype
                    break
                iface = rd32(body, swapped) if btype == 6 else rd16(body, swapped)
                t = (<uint64_t>rd32(body + 4, swapped) << 32) | rd32(body + 8, swapped)
                cap = rd32(body + 12, swapped)
                wire = rd32(body + 16, swapped)
                datapos = p + 28
                bodylen -= 20
            else:
                if bodylen < 4:
                    status = ST_SHORT
                    info = btype
                    break
                iface = 0
                t = 0
                wire = rd32(body, swapped)
                datapos = p + 12
                bodylen -= 4
                cap = wire
                if count > section and cap > if_snaplen[section]:
                    cap = if_snaplen[section]
                # Divergence: libpcap reports a short block when an SPB holds less than
                # min(len, snaplen); the pcapng spec takes the captured length from the block.
                if cap > bodylen:
                    cap = bodylen
            if <int64_t>iface >= count - section:
                status = ST_NOIFACE
                info = iface
                break
            idx = section + iface
            snap = if_snaplen[idx]
            if cap > snap:
                status = ST_CAPLEN
                info = cap
                break
            if cap > bodylen:
                status = ST_SHORT
                info = btype
                break
            units = if_units[idx]
            if if_tsmode[idx] == TS_MICRO:
                sec = t // 1000000
                frac = (t % 1000000) * 1000
            elif if_tsmode[idx] == TS_NANO:
                sec = t // 1000000000
                frac = t % 1000000000
            elif if_tsmode[idx] == TS_DECUP:
                sec = t // units
                frac = (t % units) * (1000000000 // units)
            else:
                sec = t // units
                frac = pf_scale_frac(t % units, units)
            offsets[n] = datapos
            caplens[n] = cap
            wirelens[n] = wire
            stamps[n] = stamp_ns(sec, frac, if_tsoffset[idx])
            fileoffs[n] = base + p
            ifaces[n] = <uint32_t>idx
            linktypes[n] = if_linktype[idx]
            n += 1
            nbytes += cap
            p += total
    state[0] = swapped
    state[1] = count
    state[2] = section
    return n, p, status, info


# ------------------------------------------------------------------------------------ guarded maps
#
# A memory map of a file kills the process with SIGBUS when the file is truncated under it and a
# page past the new end is read (log rotation with copytruncate does exactly that). The reader
# maps plain files anyway (reading them costs no copy out of the page cache), but only through
# GuardedMap: one process-wide SIGBUS handler, installed with the first map (and put back on top
# before each scan of a map, should another have been installed since), knows every live map's
# address range. A fault inside one of them maps anonymous zero pages over the rest of that range
# and sets the range's `faulted` flag: the load is retried and reads zeros. The reader checks the
# flag and the file's size after every scan (the tail of the new last page reads as zeros without
# a fault) and reads the rest of a cut file with pread, whose short reads end it like any
# truncated file. Any other SIGBUS goes to the action that was there before, as the kernel would
# have delivered it (a handler with its flags and mask; the default action, and SIG_IGN for a
# fault, by restoring the default and raising the signal again), so that faulthandler, ASan or
# the plain default still see faults that are not ours.
#
# The range table is fixed (GUARD_SLOTS entries, so the handler never allocates or locks) and
# written under a per-slot sequence lock with atomic stores: maps are made and dropped in any
# thread, with or without the GIL, while the handler may run in any other. A SIGBUS that
# arrives while the handler is passing one on (the previous handler re-raising it, as
# faulthandler does) takes the default action rather than going round again.
cdef extern from *:
    """
    #include <errno.h>
    #include <signal.h>
    #include <string.h>
    #include <stdint.h>
    #include <sys/mman.h>
    #include <unistd.h>
    #include <pthread.h>

    #ifndef MAP_POPULATE
    #define MAP_POPULATE 0      /* macOS: the pages fault in as they are read */
    #endif
    #ifndef MAP_ANONYMOUS
    #define MAP_ANONYMOUS MAP_ANON
    #endif

    #define PF_GUARD_SLOTS 1024

    typedef struct {
        int used;               /* claimed by a map (compare-and-swap) */
        unsigned seq;           /* sequence lock: odd while start/end are written */
        uintptr_t start, end;   /* [start, end): the map, its end rounded up to a page */
        int faulted;            /* a read past the file's end was turned into zeros */
    } pf_guard_slot;

    static pf_guard_slot pf_guard_table[PF_GUARD_SLOTS];
    static int pf_guard_high;               /* every used slot is below this index */
    static struct sigaction pf_guard_prev;  /* the SIGBUS action before ours */
    static int pf_guard_passing;            /* a foreign SIGBUS is being passed on */
    static uintptr_t pf_guard_pagesize;

    static void pf_guard_default(int sig) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset(&dfl.sa_mask);
        sigaction(sig, &dfl, NULL);
        raise(sig);     /* blocked in this handler: delivered, with the default action, on return */
    }

    /* A SIGBUS that is not ours, to the action installed before ours, as the kernel would
       deliver it. */
    static void pf_guard_pass_on(int sig, siginfo_t *si, void *ctx) {
        struct sigaction prev = pf_guard_prev;
        sigset_t mask, old;
        int kernel = si != NULL && si->si_code > 0;     /* a fault, not kill() or raise() */
        if (__atomic_exchange_n(&pf_guard_passing, 1, __ATOMIC_ACQ_REL)) {
            pf_guard_default(sig);                      /* it came back to us: no second round */
            return;
        }
        if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler == SIG_DFL) {
            pf_guard_default(sig);
        } else if (!(prev.sa_flags & SA_SIGINFO) && prev.sa_handler == SIG_IGN) {
            if (kernel)         /* the kernel never lets a fault be ignored */
                pf_guard_default(sig);
        } else {
            if (prev.sa_flags & SA_RESETHAND) {
                struct sigaction dfl;
                memset(&dfl, 0, sizeof dfl);
                dfl.sa_handler = SIG_DFL;
                sigaction(sig, &dfl, NULL);
            }
            pthread_sigmask(SIG_SETMASK, NULL, &mask);
            for (int s = 1; s < NSIG; s++)
                if (sigismember(&prev.sa_mask, s) == 1)
                    sigaddset(&mask, s);
            if (prev.sa_flags & SA_NODEFER)
                sigdelset(&mask, sig);
            pthread_sigmask(SIG_SETMASK, &mask, &old);
            if (prev.sa_flags & SA_SIGINFO)
                prev.sa_sigaction(sig, si, ctx);
            else
                prev.sa_handler(sig);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
        __atomic_store_n(&pf_guard_passing, 0, __ATOMIC_RELEASE);
    }

    /* The slot whose range holds addr (a stable reading of it), or -1. */
    static int pf_guard_find(uintptr_t addr, uintptr_t *end) {
        int high = __atomic_load_n(&pf_guard_high, __ATOMIC_ACQUIRE);
        for (int i = 0; i < high; i++) {
            pf_guard_slot *s = &pf_guard_table[i];
            for (int tries = 0; tries < 1000; tries++) {
                unsigned a = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
                if (a & 1)
                    continue;
                uintptr_t lo = __atomic_load_n(&s->start, __ATOMIC_RELAXED);
                uintptr_t hi = __atomic_load_n(&s->end, __ATOMIC_RELAXED);
                __atomic_thread_fence(__ATOMIC_ACQUIRE);
                if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) != a)
                    continue;
                if (lo <= addr && addr < hi) {
                    *end = hi;
                    return i;
                }
                break;
            }
        }
        return -1;
    }

    static void pf_guard_handler(int sig, siginfo_t *si, void *ctx) {
        int saved = errno;
        uintptr_t end;
        int i;
        if (si != NULL && si->si_code > 0
                && (i = pf_guard_find((uintptr_t)si->si_addr, &end)) >= 0) {
            uintptr_t page = (uintptr_t)si->si_addr & ~(pf_guard_pagesize - 1);
            void *z = mmap((void *)page, end - page, PROT_READ,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (z != MAP_FAILED) {
                __atomic_store_n(&pf_guard_table[i].faulted, 1, __ATOMIC_RELEASE);
                errno = saved;
                return;         /* the load runs again and reads zeros */
            }
        }
        pf_guard_pass_on(sig, si, ctx);
        errno = saved;
    }

    /* Our handler on SIGBUS, over whatever is there unless it is ours already (so that one
       installed after ours, or a reset to the default, does not leave maps unguarded).
       Called with the GIL held. 0, or -1 with errno. */
    static int pf_guard_install(void) {
        struct sigaction cur, sa;
        if (!pf_guard_pagesize)
            pf_guard_pagesize = (uintptr_t)sysconf(_SC_PAGESIZE);
        if (sigaction(SIGBUS, NULL, &cur) != 0)
            return -1;
        if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == pf_guard_handler)
            return 0;
        pf_guard_prev = cur;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = pf_guard_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        return sigaction(SIGBUS, &sa, NULL);
    }

    static void pf_guard_write(pf_guard_slot *s, uintptr_t start, uintptr_t end) {
        unsigned q = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
        __atomic_store_n(&s->seq, q + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
        __atomic_store_n(&s->start, start, __ATOMIC_RELAXED);
        __atomic_store_n(&s->end, end, __ATOMIC_RELAXED);
        __atomic_store_n(&s->seq, q + 2, __ATOMIC_RELEASE);
    }

    /* Register [start, start + length rounded up to a page); the slot, or -1 when all are used. */
    static int pf_guard_register(const void *start, size_t length) {
        uintptr_t lo = (uintptr_t)start;
        uintptr_t hi = (lo + length + pf_guard_pagesize - 1) & ~(pf_guard_pagesize - 1);
        for (int i = 0; i < PF_GUARD_SLOTS; i++) {
            int expected = 0;
            if (!__atomic_compare_exchange_n(&pf_guard_table[i].used, &expected, 1, 0,
                                             __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                continue;
            __atomic_store_n(&pf_guard_table[i].faulted, 0, __ATOMIC_RELAXED);
            pf_guard_write(&pf_guard_table[i], lo, hi);
            int high = __atomic_load_n(&pf_guard_high, __ATOMIC_RELAXED);
            while (high < i + 1 && !__atomic_compare_exchange_n(&pf_guard_high, &high, i + 1, 0,
                                                                 __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                ;
            return i;
        }
        return -1;
    }

    static void pf_guard_unregister(int i) {
        pf_guard_write(&pf_guard_table[i], 0, 0);
        __atomic_store_n(&pf_guard_table[i].used, 0, __ATOMIC_RELEASE);
    }

    static int pf_guard_faulted(int i) {
        return __atomic_load_n(&pf_guard_table[i].faulted, __ATOMIC_ACQUIRE);
    }

    static int pf_guard_in_use(void) {
        int n = 0;
        for (int i = 0; i < PF_GUARD_SLOTS; i++)
            n += __atomic_load_n(&pf_guard_table[i].used, __ATOMIC_ACQUIRE);
        return n;
    }

    static void *pf_guard_map(int fd, int64_t offset, size_t length) {
        void *p = mmap(NULL, length, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)offset);
        return p == MAP_FAILED ? NULL : p;
    }
    """
    enum: PF_GUARD_SLOTS
    int pf_guard_install() nogil
    int pf_guard_register(const void* start, size_t length) nogil
    void pf_guard_unregister(int slot) nogil
    int pf_guard_faulted(int slot) nogil
    int pf_guard_in_use() nogil
    void* pf_guard_map(int fd, int64_t offset, size_t length) nogil
    int munmap(void* addr, size_t length) nogil

from cpython.buffer cimport PyBuffer_FillInfo
from libc.errno cimport errno

GUARD_SLOTS = PF_GUARD_SLOTS


cdef class GuardedMap:
    """A read-only shared map of `length` bytes of a file from `offset` (a multiple of the page
    size), populated when made, that a truncation of the file cannot turn into SIGBUS: pages
    past the file's new end read as zeros and `faulted` becomes True. A buffer
    (numpy.frombuffer); unmapped when the last reference to it goes. Made by map_file()."""

    cdef const uint8_t* ptr
    cdef size_t length
    cdef int slot

    def __cinit__(self):
        self.ptr = NULL
        self.length = 0
        self.slot = -1

    @property
    def faulted(self):
        """True once a read in the map went past the file's end (the file was truncated)."""
        return self.slot >= 0 and pf_guard_faulted(self.slot) != 0

    def __len__(self):
        return self.length

    def __getbuffer__(self, Py_buffer* buffer, int flags):
        PyBuffer_FillInfo(buffer, self, <void*>self.ptr, self.length, 1, flags)

    def __releasebuffer__(self, Py_buffer* buffer):
        pass

    def __dealloc__(self):
        if self.ptr != NULL:
            if self.slot >= 0:
                pf_guard_unregister(self.slot)      # before the range can be someone else's
            munmap(<void*>self.ptr, self.length)


def map_file(int fd, int64_t offset, Py_ssize_t length):
    """A GuardedMap of `length` bytes of file descriptor fd from `offset`, or None when the file
    cannot be mapped (a file system without mmap, no address space) or every guard slot is in
    use: the caller then reads the bytes instead. OSError if the handler cannot be installed."""
    cdef void* p
    cdef int slot = -1
    cdef GuardedMap m
    if length <= 0:
        raise ValueError("a map needs a positive length")
    if pf_guard_install() != 0:
        raise OSError(errno, "cannot install the SIGBUS handler")
    with nogil:
        p = pf_guard_map(fd, offset, <size_t>length)
        if p != NULL:
            slot = pf_guard_register(p, <size_t>length)     # before anything reads the map
            if slot < 0:
                munmap(p, <size_t>length)
                p = NULL
    if p == NULL:
        return None
    m = GuardedMap.__new__(GuardedMap)
    m.ptr = <const uint8_t*>p
    m.length = <size_t>length
    m.slot = slot
    return m


def guard_sigbus():
    """Put the guard's SIGBUS handler back on top if another was installed since (faulthandler
    enabled after a map was made, say): the reader calls it before each scan of a map."""
    if pf_guard_install() != 0:
        raise OSError(errno, "cannot install the SIGBUS handler")


def guard_slots_in_use():
    """How many guarded maps are alive (tests: every map is unregistered when dropped)."""
    return pf_guard_in_use()
