# A timestamp in ns as the seconds and fraction fields of a pcap record header: the general
# path's writer (pfilter/capture/_writer.pyx) and the pcapng fast path (_fastcopy.pyx's NgCopy)
# write them so, from this one definition.
cdef inline void split_ts(int64_t ts, bint nsec, uint32_t* sec, uint32_t* frac) noexcept nogil:
    # Floor division, so pre-1970 times keep a fraction in [0, 1 s) as libpcap reads them.
    cdef int64_t s = ts // 1000000000
    cdef int64_t f = ts % 1000000000
    if f < 0:
        f += 1000000000
        s -= 1
    sec[0] = <uint32_t>s
    frac[0] = <uint32_t>(f if nsec else f // 1000)
