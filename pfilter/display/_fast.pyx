# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The common lines of `tcpdump -n` in C: Ethernet frames (no VLAN) carrying ARP requests and
replies, IPv4 (unfragmented) or IPv6 (no extension header) with TCP (flags, relative sequence
numbers through the Printer's shared table, the usual options), UDP to a port tcpdump decodes
no application for, and ICMP echo. Every other packet is handed to `slow(i)`, the Python
printer (pfilter.display), so the two give one text in packet order.

Only the default display flags and time stamp forms 0, 1, 2 and 4 come here (Printer decides);
the wording is the Python printer's, which tests/test_display_vs_tcpdump.py holds to tcpdump's.
Imports nothing from pfilter.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, strlen

cdef extern from "time.h" nogil:
    ctypedef long time_t
    struct tm:
        int tm_sec
        int tm_min
        int tm_hour
        int tm_mday
        int tm_mon
        int tm_year
    tm *localtime_r(const time_t *timep, tm *result)

cdef extern from "arpa/inet.h" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, unsigned int size)

DEF AF_INET6 = 10
DEF M32 = 0xFFFFFFFF

#: TCP ports whose payload tcpdump summarizes (apps.TCP_PORTS) and UDP ports it decodes
#: (apps.udp_app): packets on them go to the Python printer
cdef uint8_t tcp_app[65536]
cdef uint8_t udp_app[65536]


#: tcp_app codes: 0 no summary, 1 a summary the Python printer writes, 2 SSH (a banner line only
#: when the payload starts with "SSH-"), 3 telnet (nothing: tcpdump prints no summary by default),
#: 4..8 the text protocols HTTP, SMTP, FTP, WHOIS, RTSP (TXT_NAMES); udp_app: 0 none, 1 Python,
#: 2 NTP, 3 syslog, 4 DNS, 5 mDNS
def set_app_ports(tcp_codes, udp_codes):
    cdef int i
    for i in range(65536):
        tcp_app[i] = 0
        udp_app[i] = 0
    for i, code in tcp_codes.items():
        tcp_app[i] = code
    for i, code in udp_codes.items():
        udp_app[i] = code


cdef struct Out:
    char *buf
    Py_ssize_t len
    Py_ssize_t cap


cdef int grow(Out *o, Py_ssize_t need) except -1:
    cdef Py_ssize_t cap
    cdef char *nb
    if o.len + need <= o.cap:
        return 0
    cap = o.cap * 2
    while cap < o.len + need:
        cap *= 2
    nb = <char *>realloc(o.buf, cap)
    if nb == NULL:
        raise MemoryError()
    o.buf = nb
    o.cap = cap
    return 0


cdef inline void put(Out *o, const char *s, Py_ssize_t n) noexcept:
    memcpy(o.buf + o.len, s, n)
    o.len += n


cdef inline void puts_(Out *o, const char *s) noexcept:
    put(o, s, strlen(s))


cdef inline void putc_(Out *o, char c) noexcept:
    o.buf[o.len] = c
    o.len += 1


cdef inline void put_digits(Out *o, unsigned long long v, unsigned int base) noexcept:
    """v in decimal or hexadecimal (lower case) digits."""
    cdef char tmp[24]
    cdef int n = 0
    if v == 0:
        putc_(o, b'0')
        return
    while v:
        tmp[n] = b"0123456789abcdef"[v % base]
        v //= base
        n += 1
    while n:
        n -= 1
        putc_(o, tmp[n])


cdef inline void putu(Out *o, unsigned long long v) noexcept:
    put_digits(o, v, 10)


cdef inline void putu_pad(Out *o, unsigned long v, int width) noexcept:
    cdef char tmp[24]
    cdef int n = 0
    while v or n < width:
        tmp[n] = <char>(48 + v % 10)
        v //= 10
        n += 1
    while n:
        n -= 1
        putc_(o, tmp[n])


cdef const char *HEX = b"0123456789abcdef"


cdef inline void puthex2(Out *o, uint8_t v) noexcept:
    putc_(o, HEX[v >> 4])
    putc_(o, HEX[v & 15])


cdef inline void put_ip4(Out *o, const uint8_t *a) noexcept:
    putu(o, a[0]); putc_(o, b'.'); putu(o, a[1]); putc_(o, b'.'); putu(o, a[2]); putc_(o, b'.'); putu(o, a[3])


cdef inline void put_ip6(Out *o, const uint8_t *a) noexcept:
    cdef char tmp[64]
    inet_ntop(AF_INET6, a, tmp, 64)
    puts_(o, tmp)


cdef inline void put_mac(Out *o, const uint8_t *a) noexcept:
    cdef int i
    for i in range(6):
        if i:
            putc_(o, b':')
        puthex2(o, a[i])


cdef inline unsigned int be16(const uint8_t *p) noexcept:
    return (p[0] << 8) | p[1]


cdef inline unsigned long be32(const uint8_t *p) noexcept:
    return (<unsigned long>p[0] << 24) | (<unsigned long>p[1] << 16) | (<unsigned long>p[2] << 8) | p[3]


cdef const char *FLAG_CHARS = b"FSRP.UEW"


cdef inline void put_flags(Out *o, uint8_t f) noexcept:
    cdef int i
    if f == 0:
        puts_(o, b"none")
        return
    for i in range(8):
        if f & (1 << i):
            putc_(o, FLAG_CHARS[i])


cdef int options_ok(const uint8_t *opt, int n) noexcept:
    """Whether the options are all of the kinds written here, with their usual lengths."""
    cdef int i = 0, kind, ln
    while i < n:
        kind = opt[i]
        if kind == 0:
            return 1 if i + 1 == n or all_zero(opt + i + 1, n - i - 1) else 0
        if kind == 1:
            i += 1
            continue
        if i + 1 >= n:
            return 0
        ln = opt[i + 1]
        if ln < 2 or i + ln > n:
            return 0
        if kind == 2 and ln != 4 or kind == 3 and ln != 3 or kind == 4 and ln != 2 or kind == 8 and ln != 10:
            return 0
        if kind == 5:
            if (ln - 2) % 8 or ln == 2:
                return 0
        elif kind not in (2, 3, 4, 8):
            return 0
        i += ln
    return 1


cdef int all_zero(const uint8_t *p, int n) noexcept:
    # tcpdump stops at eol; what follows is not shown, so any bytes will do
    return 1


cdef void put_options(Out *o, const uint8_t *opt, int n, int rev, unsigned long thseq, unsigned long thack) noexcept:
    cdef int i = 0, kind, ln, j
    cdef int first = 1
    cdef unsigned long s, e
    puts_(o, b", options [")
    while i < n:
        if not first:
            putc_(o, b',')
        first = 0
        kind = opt[i]
        if kind == 0:
            puts_(o, b"eol")
            break
        if kind == 1:
            puts_(o, b"nop")
            i += 1
            continue
        ln = opt[i + 1]
        if kind == 2:
            puts_(o, b"mss "); putu(o, be16(opt + i + 2))
        elif kind == 3:
            puts_(o, b"wscale "); putu(o, opt[i + 2])
        elif kind == 4:
            puts_(o, b"sackOK")
        elif kind == 8:
            puts_(o, b"TS val "); putu(o, be32(opt + i + 2)); puts_(o, b" ecr "); putu(o, be32(opt + i + 6))
        elif kind == 5:
            puts_(o, b"sack "); putu(o, (ln - 2) // 8); putc_(o, b' ')
            j = 2
            while j < ln:
                s = be32(opt + i + j)
                e = be32(opt + i + j + 4)
                if rev:
                    s = (s - thseq) & M32
                    e = (e - thseq) & M32
                else:
                    s = (s - thack) & M32
                    e = (e - thack) & M32
                putc_(o, b'{'); putu(o, s); putc_(o, b':'); putu(o, e); putc_(o, b'}')
                j += 8
        i += ln
    putc_(o, b']')


cdef class _Clock:
    cdef time_t sec
    cdef char text[32]
    cdef int tlen
    cdef int mode

    def __cinit__(self, int mode):
        self.sec = -1
        self.mode = mode
        self.tlen = 0


cdef int put_stamp(Out *o, _Clock c, int64_t ts_ns, int ns) except -1:
    cdef time_t sec = <time_t>(ts_ns // 1000000000)
    cdef long frac = <long>(ts_ns % 1000000000)
    cdef tm t
    cdef Out tmp
    if ts_ns < 0:
        return 1            # the Python printer says what tcpdump says
    if c.mode == 1:
        return 0
    if c.mode == 2:
        putu(o, sec)
    else:
        if sec != c.sec:
            if localtime_r(&sec, &t) == NULL:
                return 1
            tmp.buf = c.text
            tmp.len = 0
            tmp.cap = 32
            if c.mode == 4:
                putu_pad(&tmp, t.tm_year + 1900, 4); putc_(&tmp, b'-')
                putu_pad(&tmp, t.tm_mon + 1, 2); putc_(&tmp, b'-')
                putu_pad(&tmp, t.tm_mday, 2); putc_(&tmp, b' ')
            putu_pad(&tmp, t.tm_hour, 2); putc_(&tmp, b':')
            putu_pad(&tmp, t.tm_min, 2); putc_(&tmp, b':')
            putu_pad(&tmp, t.tm_sec, 2)
            c.tlen = <int>tmp.len
            c.sec = sec
        put(o, c.text, c.tlen)
    putc_(o, b'.')
    if ns:
        putu_pad(o, frac, 9)
    else:
        putu_pad(o, frac // 1000, 6)
    putc_(o, b' ')
    return 0


cdef int tcp_line(Out *o, const uint8_t *ip, const uint8_t *t, Py_ssize_t avail, long length,
                  int v6, dict table) except -1:
    """The TCP part of a line, or 0 when the packet is not for this path (nothing written)."""
    cdef unsigned int sport, dport, hlen, win, urp
    cdef unsigned long seq, ack, thseq = 0, thack = 0
    cdef uint8_t flags
    cdef long dlen
    cdef int rev = 0, alen = 16 if v6 else 4
    cdef object key, th
    if avail < 20:
        return 0
    hlen = (t[12] >> 4) * 4
    if hlen < 20 or hlen > length or hlen > avail:
        return 0
    sport = be16(t)
    dport = be16(t + 2)
    dlen = length - hlen
    cdef int app = 0
    if dlen > 0 and (tcp_app[sport] or tcp_app[dport]) and tcp_app[sport] != 3 and tcp_app[dport] != 3:
        if tcp_app[sport] and tcp_app[dport] and tcp_app[sport] != tcp_app[dport]:
            return 0            # two printers compete: tcpdump's order decides (Python)
        app = tcp_app[sport] or tcp_app[dport]
        if app == 1:
            return 0
        if app == 2:
            if avail < hlen + 4 or (t[hlen] == b'S' and t[hlen + 1] == b'S' and t[hlen + 2] == b'H'
                                    and t[hlen + 3] == b'-'):
                return 0        # an SSH banner, or a payload too short to tell (Python)
            app = 0
    if hlen > 20 and not options_ok(t + 20, hlen - 20):
        return 0
    seq = be32(t + 4)
    ack = be32(t + 8)
    flags = t[13]
    win = be16(t + 14)
    urp = be16(t + 18)
    cdef const uint8_t *src = ip + (8 if v6 else 12)
    cdef const uint8_t *dst = ip + (24 if v6 else 16)
    if table is not None and flags & 0x10:
        rev = sport > dport or (sport == dport and memcmp_(src, dst, alen) > 0)
        if rev:
            key = (PyBytes_FromStringAndSize(<const char *>dst, alen), PyBytes_FromStringAndSize(<const char *>src, alen),
                   (dport << 16) | sport)
        else:
            key = (PyBytes_FromStringAndSize(<const char *>src, alen), PyBytes_FromStringAndSize(<const char *>dst, alen),
                   (sport << 16) | dport)
        th = table.get(key)
        if th is None or flags & 0x02:
            if rev:
                th = [(ack - 1) & M32, seq]
            else:
                th = [seq, (ack - 1) & M32]
            table[key] = th
        else:
            if rev:
                seq = (seq - <unsigned long>th[1]) & M32
                ack = (ack - <unsigned long>th[0]) & M32
            else:
                seq = (seq - <unsigned long>th[0]) & M32
                ack = (ack - <unsigned long>th[1]) & M32
        thseq = th[0]
        thack = th[1]
    grow(o, 512 + 3 * hlen)
    if v6:
        puts_(o, b"IP6 "); put_ip6(o, src)
    else:
        puts_(o, b"IP "); put_ip4(o, src)
    putc_(o, b'.'); putu(o, sport); puts_(o, b" > ")
    if v6:
        put_ip6(o, dst)
    else:
        put_ip4(o, dst)
    putc_(o, b'.'); putu(o, dport); puts_(o, b": Flags [")
    put_flags(o, flags)
    putc_(o, b']')
    if dlen > 0 or flags & 0x07:
        puts_(o, b", seq "); putu(o, seq)
        if dlen > 0:
            putc_(o, b':'); putu(o, (seq + <unsigned long>dlen) & M32)
    if flags & 0x10:
        puts_(o, b", ack "); putu(o, ack)
    puts_(o, b", win "); putu(o, win)
    if flags & 0x20:
        puts_(o, b", urg "); putu(o, urp)
    if hlen > 20:
        put_options(o, t + 20, hlen - 20, rev, thseq, thack)
    puts_(o, b", length "); putu(o, dlen)
    if app >= 4:
        grow(o, 64 + (avail - hlen if avail > hlen else 0))
        puts_(o, b": ")
        txtproto(o, t + hlen, min(avail - hlen, dlen), dlen, app)
    return 1


#: the text protocols' names (tcp_app codes 4..8) and request words (HTTP, RTSP)
cdef const char *TXT_NAMES[9]
TXT_NAMES[4] = b"HTTP"
TXT_NAMES[5] = b"SMTP"
TXT_NAMES[6] = b"FTP"
TXT_NAMES[7] = b"WHOIS"
TXT_NAMES[8] = b"RTSP"


cdef void put_trunc(Out *o, const char *name) noexcept:
    """tcpdump's ' [|proto]' for a truncated text protocol line: its name in lower case."""
    puts_(o, b" [|")
    while name[0]:
        putc_(o, name[0] | 0x20)
        name += 1
    putc_(o, b']')
cdef list HTTP_WORDS = []
cdef list RTSP_WORDS = []


def set_text_commands(http, rtsp):
    HTTP_WORDS[:] = [w.encode("ascii") for w in http]
    RTSP_WORDS[:] = [w.encode("ascii") for w in rtsp]


cdef Py_ssize_t token(const uint8_t *d, Py_ssize_t idx, Py_ssize_t n, Py_ssize_t wire, Py_ssize_t *start,
                      Py_ssize_t *tlen) noexcept:
    """tcpdump's fetch_token over n captured bytes of wire: (index after the token and its
    blanks, or 0: also a token that runs past the captured bytes)."""
    cdef Py_ssize_t st = idx
    cdef uint8_t c
    while idx < wire:
        if idx >= n:
            return 0
        c = d[idx]
        if c > 0x7F:
            return 0
        if c == 0x20 or c == 0x09 or c == 0x0D or c == 0x0A:
            break
        if c < 0x20 or c >= 0x7F:
            return 0
        if idx - st + 2 > 129:
            return 0
        idx += 1
    if idx == st:
        return 0
    start[0] = st
    tlen[0] = idx - st
    while idx < n:
        c = d[idx]
        if c != 0x20 and c != 0x09:
            break
        idx += 1
    return idx


cdef int is_command(const uint8_t *d, Py_ssize_t st, Py_ssize_t tl, list words) noexcept:
    cdef bytes w
    cdef Py_ssize_t j
    cdef uint8_t c
    cdef const char *wp
    for w in words:
        if len(w) != tl:
            continue
        wp = w
        for j in range(tl):
            c = d[st + j]
            if 0x61 <= c <= 0x7A:
                c -= 32
            if c != <uint8_t>wp[j]:
                break
        else:
            return 1
    return 0


cdef void txtproto(Out *o, const uint8_t *d, Py_ssize_t n, Py_ssize_t wire, int app) noexcept:
    """tcpdump's txtproto_print without -v: the name, and the first line when it is a request
    or response (or for protocols without request words). n bytes captured of the payload's
    wire bytes: a line that runs past the captured ones prints only the truncation mark."""
    cdef int print_this = app in (5, 6, 7)
    cdef Py_ssize_t idx, st = 0, tl = 0, i
    cdef uint8_t c
    if n < 0:
        n = 0
    if not print_this:
        idx = token(d, 0, n, wire, &st, &tl)
        if idx:
            if is_command(d, st, tl, HTTP_WORDS if app == 4 else RTSP_WORDS):
                print_this = 1
            idx = token(d, idx, n, wire, &st, &tl)
            if idx and tl == 3 and 0x30 <= d[st] <= 0x39 and 0x30 <= d[st + 1] <= 0x39 and 0x30 <= d[st + 2] <= 0x39:
                print_this = 1
    puts_(o, TXT_NAMES[app])
    if not print_this:
        return
    i = 0
    while i < n:
        c = d[i]
        if c == 0x0A:
            puts_(o, b": "); put(o, <const char *>d, i)
            return
        if c == 0x0D:
            if i + 1 < n and d[i + 1] == 0x0A:
                puts_(o, b": "); put(o, <const char *>d, i)
            elif i + 1 == n and n < wire:
                put_trunc(o, TXT_NAMES[app])
            return
        if not (0x20 <= c < 0x7F or c == 0x09):
            return
        i += 1
    if n < wire:
        put_trunc(o, TXT_NAMES[app])
        return
    puts_(o, b": "); put(o, <const char *>d, n); put_trunc(o, TXT_NAMES[app])


cdef inline int memcmp_(const uint8_t *a, const uint8_t *b, int n) noexcept:
    cdef int i
    for i in range(n):
        if a[i] != b[i]:
            return 1 if a[i] > b[i] else -1
    return 0


cdef int ip_line(Out *o, const uint8_t *p, int hdr, unsigned int etype, Py_ssize_t caplen, long wirelen,
                 dict table) except -1:
    """IPv4/IPv6 after the Ethernet header (hdr bytes, VLAN tags included), or 0 when not for
    this path."""
    cdef const uint8_t *ip = p + hdr
    cdef Py_ssize_t avail = caplen - hdr
    cdef long length = wirelen - hdr
    cdef unsigned int hlen, ip_len, proto, ulen, plen
    cdef int ua, ub, app
    cdef Py_ssize_t start, ucap
    cdef const uint8_t *t
    cdef int v6 = etype == 0x86DD
    if v6:
        if avail < 40 or ip[0] >> 4 != 6:
            return 0
        plen = be16(ip + 4)
        if plen == 0 or 40 + plen > length:
            return 0
        proto = ip[6]
        hlen = 40
        ip_len = 40 + plen
    else:
        if avail < 20 or ip[0] >> 4 != 4:
            return 0
        hlen = (ip[0] & 15) * 4
        ip_len = be16(ip + 2)
        if hlen < 20 or ip_len < hlen or ip_len > length or avail < hlen:
            return 0
        proto = ip[9]
        if be16(ip + 6) & 0x1FFF:       # a later fragment
            grow(o, 128)
            puts_(o, b"IP "); put_ip4(o, ip + 12); puts_(o, b" > "); put_ip4(o, ip + 16)
            puts_(o, b": ip-proto-"); putu(o, proto)
            return 1
    t = ip + hlen
    avail -= hlen
    length = ip_len - hlen
    if avail > length:
        avail = length
    if proto == 6:
        return tcp_line(o, ip, t, avail, length, v6, table)
    if proto == 17:
        if avail < 8 or length < 8:
            return 0
        ulen = be16(t + 4)
        ua, ub = udp_app[be16(t)], udp_app[be16(t + 2)]
        if ulen < 8 or ulen > length or ua == 1 or ub == 1 or (ua and ub and ua != ub):
            return 0                # (a UDP length beyond the IP payload: tcpdump's 'bad length')
        app = ua or ub
        ucap = min(avail, ulen) - 8      # the payload's captured bytes, as the Python printer slices it
        if app == 3 and not syslog_ok(t + 8, ucap) or app == 2 and ucap < 1:
            return 0
        grow(o, 512 + 4 * (avail if avail < 65536 else 65536))
        puts_(o, b"IP6 " if v6 else b"IP ")
        if v6:
            put_ip6(o, ip + 8)
        else:
            put_ip4(o, ip + 12)
        putc_(o, b'.'); putu(o, be16(t)); puts_(o, b" > ")
        if v6:
            put_ip6(o, ip + 24)
        else:
            put_ip4(o, ip + 16)
        putc_(o, b'.'); putu(o, be16(t + 2)); puts_(o, b": ")
        if app == 2:
            puts_(o, b"NTPv"); putu(o, (t[8] >> 3) & 7); puts_(o, b", "); puts_(o, NTP_MODES[t[8] & 7])
            puts_(o, b", length "); putu(o, ulen - 8)
        elif app == 3:
            put_syslog(o, t + 8, ulen - 8)
        elif app == 4 or app == 5:
            start = o.len
            if not dns_line(o, t + 8, min(avail - 8, ulen - 8), ulen - 8, app == 5):
                o.len = start
                return 0
        else:
            puts_(o, b"UDP, length "); putu(o, ulen - 8)
        return 1
    if proto == 1 and not v6:
        if avail < 8 or (t[0] != 0 and t[0] != 8 and t[0] != 11) or (t[0] == 11 and avail < 28):
            return 0        # (time exceeded: tcpdump reads the quoted destination, Python says so)
        grow(o, 256)
        puts_(o, b"IP "); put_ip4(o, ip + 12); puts_(o, b" > "); put_ip4(o, ip + 16)
        if t[0] == 11:
            puts_(o, b": ICMP time exceeded in-transit" if t[1] == 0 else
                  b": ICMP ip reassembly time exceeded" if t[1] == 1 else b": ICMP time exceeded-#")
            if t[1] > 1:
                putu(o, t[1])
        else:
            puts_(o, b": ICMP echo reply, id " if t[0] == 0 else b": ICMP echo request, id ")
            putu(o, be16(t + 4)); puts_(o, b", seq "); putu(o, be16(t + 6))
        puts_(o, b", length "); putu(o, length)
        return 1
    if proto == 58 and v6 and avail >= 4:
        return icmp6_line(o, ip, t, avail, length)
    return 0


cdef int icmp6_line(Out *o, const uint8_t *ip, const uint8_t *t, Py_ssize_t avail, long length) except -1:
    cdef uint8_t typ = t[0]
    if typ == 128 or typ == 129:
        if avail < 8:
            return 0
    elif typ == 135 or typ == 136:
        if avail < 24:
            return 0
    elif typ == 143:
        if avail < 8:
            return 0
    elif typ != 133 and typ != 134:
        return 0
    grow(o, 300)
    puts_(o, b"IP6 "); put_ip6(o, ip + 8); puts_(o, b" > "); put_ip6(o, ip + 24); puts_(o, b": ICMP6, ")
    if typ == 128 or typ == 129:
        puts_(o, b"echo request, id " if typ == 128 else b"echo reply, id ")
        putu(o, be16(t + 4)); puts_(o, b", seq "); putu(o, be16(t + 6))
    elif typ == 135:
        puts_(o, b"neighbor solicitation, who has "); put_ip6(o, t + 8)
    elif typ == 136:
        puts_(o, b"neighbor advertisement, tgt is "); put_ip6(o, t + 8)
    elif typ == 143:
        puts_(o, b"multicast listener report v2, "); putu(o, be16(t + 6)); puts_(o, b" group record(s)")
    elif typ == 133:
        puts_(o, b"router solicitation")
    else:
        puts_(o, b"router advertisement")
    puts_(o, b", length "); putu(o, length)
    return 1


cdef const char *NTP_MODES[8]
NTP_MODES[:] = [b"unspecified", b"symmetric active", b"symmetric passive", b"Client", b"Server",
                b"Broadcast", b"Control Message", b"Reserved"]
cdef const char *SYSLOG_FAC[24]
SYSLOG_FAC[:] = [b"kernel", b"user", b"mail", b"daemon", b"auth", b"syslog", b"lpr", b"news", b"uucp",
                 b"cron", b"authpriv", b"ftp", b"ntp", b"security", b"console", b"cron", b"local0",
                 b"local1", b"local2", b"local3", b"local4", b"local5", b"local6", b"local7"]
cdef const char *SYSLOG_SEV[8]
SYSLOG_SEV[:] = [b"emergency", b"alert", b"critical", b"error", b"warning", b"notice", b"info", b"debug"]


cdef int syslog_pri(const uint8_t *b, Py_ssize_t n) noexcept:
    """The <PRI> value as apps._syslog reads it, or -1."""
    cdef int i = 1, pri = 0
    if n < 1 or b[0] != 0x3C:
        return -1
    while i < n and i <= 4 and 0x30 <= b[i] <= 0x39:
        pri = pri * 10 + b[i] - 0x30
        i += 1
    if i >= n or b[i] != 0x3E or pri > 191:
        return -1
    return pri


cdef int syslog_ok(const uint8_t *b, Py_ssize_t n) noexcept:
    return syslog_pri(b, n) >= 0


cdef void put_syslog(Out *o, const uint8_t *b, long length) noexcept:
    cdef int pri = syslog_pri(b, length)
    puts_(o, b"SYSLOG "); puts_(o, SYSLOG_FAC[pri >> 3]); putc_(o, b'.'); puts_(o, SYSLOG_SEV[pri & 7])
    puts_(o, b", length: "); putu(o, length)


cdef int arp_line(Out *o, const uint8_t *p, int hdr, Py_ssize_t caplen, long wirelen) except -1:
    cdef const uint8_t *a = p + hdr
    cdef unsigned int op
    cdef int i, nonzero = 0
    if caplen < hdr + 28 or be16(a) != 1 or be16(a + 2) != 0x0800 or a[4] != 6 or a[5] != 4:
        return 0
    op = be16(a + 6)
    if op != 1 and op != 2:
        return 0
    grow(o, 256)
    if op == 1:
        puts_(o, b"ARP, Request who-has "); put_ip4(o, a + 24)
        for i in range(6):
            nonzero |= a[18 + i]
        if nonzero:
            puts_(o, b" ("); put_mac(o, a + 18); putc_(o, b')')
        puts_(o, b" tell "); put_ip4(o, a + 14)
    else:
        puts_(o, b"ARP, Reply "); put_ip4(o, a + 14); puts_(o, b" is-at "); put_mac(o, a + 8)
    puts_(o, b", length "); putu(o, wirelen - hdr)
    return 1


def format_batch(const uint8_t[::1] data, const int64_t[::1] offsets, const uint32_t[::1] caplens,
                 const uint32_t[::1] wirelens, const int64_t[::1] stamps, const int64_t[::1] idx,
                 int tmode, bint ns, dict table, slow, snaplen):
    """The text of the packets idx (Ethernet) of a batch, as UTF-8 bytes; slow(i) gives the Python
    printer's text for a packet this path does not write. table: the Printer's TCP state (None
    with -S)."""
    cdef Out o
    cdef Py_ssize_t k, n = idx.shape[0], start
    cdef int64_t i
    cdef Py_ssize_t caplen
    cdef long wirelen
    cdef const uint8_t *p
    cdef unsigned int etype
    cdef int done, hdr
    cdef long snap = snaplen or 0
    cdef _Clock clock = _Clock(tmode)
    cdef bytes text
    o.cap = 1 << 16
    o.len = 0
    o.buf = <char *>malloc(o.cap)
    if o.buf == NULL:
        raise MemoryError()
    try:
        for k in range(n):
            i = idx[k]
            caplen = caplens[i]
            wirelen = wirelens[i]
            p = &data[0] + offsets[i] if caplen else NULL
            done = 0
            if caplen >= 14 and wirelen >= caplen and (snap == 0 or (caplen <= snap and wirelen <= snap)):
                etype = be16(p + 12)
                hdr = 14
                while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and caplen >= hdr + 4:
                    etype = be16(p + hdr + 2)      # VLAN tags print nothing without -e
                    hdr += 4
                if etype <= 1500 and hdr == 14:
                    grow(&o, 256)
                    start = o.len
                    if put_stamp(&o, clock, stamps[i], ns) == 0:
                        done = stp_line(&o, p, etype, caplen, wirelen)
                    if not done:
                        o.len = start
                elif etype == 0x0800 or etype == 0x86DD or etype == 0x0806:
                    grow(&o, 64)
                    start = o.len
                    if put_stamp(&o, clock, stamps[i], ns) == 0:
                        if etype == 0x0806:
                            done = arp_line(&o, p, hdr, caplen, wirelen)
                        else:
                            done = ip_line(&o, p, hdr, etype, caplen, wirelen, table)
                    if not done:
                        o.len = start
            if done:
                grow(&o, 1)
                putc_(&o, b'\n')
            else:
                text = (<str>slow(i)).encode("utf-8", "surrogateescape")
                grow(&o, len(text) + 1)
                put(&o, text, len(text))
                putc_(&o, b'\n')
        return o.buf[:o.len]
    finally:
        free(o.buf)


# ----------------------------------------------------------------------------- DNS (apps._dns)

cdef list DNS_OPS_B = []
cdef list DNS_RCODES_B = []
cdef dict DNS_TYPES_B = {}
cdef dict DNS_CLASSES_B = {}


def set_dns_names(ops, rcodes, types, classes):
    DNS_OPS_B[:] = [x.encode() for x in ops]
    DNS_RCODES_B[:] = [x.encode() for x in rcodes]
    DNS_TYPES_B.clear()
    DNS_TYPES_B.update({k: v.encode() for k, v in types.items()})
    DNS_CLASSES_B.clear()
    DNS_CLASSES_B.update({k: v.encode() for k, v in classes.items()})


cdef inline void put_bytes(Out *o, bytes b) noexcept:
    put(o, b, len(b))


cdef void put_type(Out *o, unsigned int t) noexcept:
    cdef object name = DNS_TYPES_B.get(t)
    if name is None:
        puts_(o, b"Type"); putu(o, t)
    else:
        put_bytes(o, name)


cdef int put_class(Out *o, unsigned int c) except -1:
    cdef object name = DNS_CLASSES_B.get(c)
    if name is None:
        puts_(o, b"(Class "); putu(o, c); putc_(o, b')')
    else:
        put_bytes(o, name)
    return 0


cdef Py_ssize_t dns_name(Out *o, const uint8_t *m, Py_ssize_t n, Py_ssize_t off, int write) except -2:
    """apps._name: writes the name (when write) and returns the offset after it in place, or -1
    when the Python printer must say it (truncation, a bad pointer, a byte it escapes)."""
    cdef Py_ssize_t end = -1, limit = off, target, j
    cdef unsigned int ln
    cdef int labels = 0
    cdef uint8_t c
    while True:
        if off >= n:
            return -1
        ln = m[off]
        if ln & 0xC0 == 0xC0:
            if off + 1 >= n:
                return -1
            if end < 0:
                end = off + 2
            target = ((ln & 0x3F) << 8) | m[off + 1]
            if target >= limit:
                return -1
            off = limit = target
            continue
        if ln & 0xC0:
            return -1
        if ln == 0:
            off += 1
            break
        if off + 1 + ln > n:
            return -1
        if write:
            for j in range(ln):
                c = m[off + 1 + j]
                if c <= 0x20 or c >= 0x7F or c == 0x2E or c == 0x5C:
                    return -1
            grow(o, ln + 2)
            put(o, <const char *>m + off + 1, ln)
            putc_(o, b'.')
        labels += 1
        off += 1 + ln
    if write and not labels:
        grow(o, 1)
        putc_(o, b'.')
    return end if end >= 0 else off


cdef int dns_line(Out *o, const uint8_t *m, Py_ssize_t n, long length, int mdns) except -1:
    """apps._dns without -v, or 0 (nothing usable written) for the Python printer."""
    cdef unsigned int ident, flags, qd, an, ns, ar, opcode, t, c, cls, rdlen, left, q
    cdef Py_ssize_t off, end
    cdef int first
    if n < 12:
        return 0
    ident = be16(m)
    flags = be16(m + 2)
    qd = be16(m + 4)
    an = be16(m + 6)
    ns = be16(m + 8)
    ar = be16(m + 10)
    opcode = (flags >> 11) & 0xF
    if flags & 0x8000 and (ar or qd > 1):
        # a response with an additional record (an OPT record's extended RCODE: BadVers) or
        # several questions (tcpdump's commas between them): apps._dns
        return 0
    putu(o, ident)
    put_bytes(o, DNS_OPS_B[opcode])
    off = 12
    if flags & 0x8000:
        put_bytes(o, DNS_RCODES_B[flags & 0xF])
        if flags & 0x0400:
            putc_(o, b'*')
        if not flags & 0x0080:
            putc_(o, b'-')
        if flags & 0x0200:
            putc_(o, b'|')
        if flags & 0x0020:
            putc_(o, b'$')
        if qd != 1:
            puts_(o, b" ["); putu(o, qd); puts_(o, b"q]")
        for q in range(qd):
            off = dns_name(o, m, n, off, 0)
            if off < 0:
                return 0
            off += 4
        putc_(o, b' '); putu(o, an); putc_(o, b'/'); putu(o, ns); putc_(o, b'/'); putu(o, ar)
        first = 1
        left = an
        while left:
            if off >= n and not first:
                return 0
            if not first:
                putc_(o, b',')
            off = dns_name(o, m, n, off, 0)
            if off < 0 or off + 10 > n:
                return 0
            t = be16(m + off)
            c = be16(m + off + 2)
            rdlen = be16(m + off + 8)
            off += 10
            end = off + rdlen
            if end > n:
                return 0
            cls = c & 0x7FFF if mdns else c
            grow(o, 128)
            if cls != 1 and t != 41:
                putc_(o, b' ')
                put_class(o, cls)
            if mdns and c & 0x8000 and t != 41:
                puts_(o, b" (Cache flush)")
            putc_(o, b' ')
            put_type(o, t)
            if t == 1:
                if rdlen >= 4:
                    putc_(o, b' '); put_ip4(o, m + off)
            elif t == 28:
                if rdlen >= 16:
                    putc_(o, b' '); put_ip6(o, m + off)
            elif t == 2 or t == 5 or t == 12 or t == 39:
                putc_(o, b' ')
                if dns_name(o, m, n, off, 1) < 0:
                    return 0
            elif t == 15:
                putc_(o, b' ')
                if off + 2 > n or dns_name(o, m, n, off + 2, 1) < 0:
                    return 0
                grow(o, 16)
                putc_(o, b' '); putu(o, be16(m + off))
            else:
                return 0
            off = end
            first = 0
            left -= 1
    else:
        if flags & 0x0100:
            putc_(o, b'+')
        if flags & 0x0010:
            putc_(o, b'%')
        if flags & 0x6CF:
            puts_(o, b" [b2&3=0x")
            put_hex(o, flags)
            putc_(o, b']')
        if opcode == 1:         # inverse query: tcpdump's own order and tests
            if qd:
                puts_(o, b" ["); putu(o, qd); puts_(o, b"q]")
            if an != 1:
                puts_(o, b" ["); putu(o, an); puts_(o, b"a]")
        else:
            if an:
                puts_(o, b" ["); putu(o, an); puts_(o, b"a]")
            if qd != 1:
                puts_(o, b" ["); putu(o, qd); puts_(o, b"q]")
        if ns:
            puts_(o, b" ["); putu(o, ns); puts_(o, b"n]")
        if ar:
            puts_(o, b" ["); putu(o, ar); puts_(o, b"au]")
        first = 1
        left = qd
        while left:
            if off >= n and not first:
                return 0
            end = dns_name(o, m, n, off, 0)
            if end < 0 or end + 4 > n:
                return 0
            t = be16(m + end)
            c = be16(m + end + 2)
            grow(o, 128)
            putc_(o, b' ')
            put_type(o, t)
            cls = c & 0x7FFF if mdns else c
            if cls != 1:
                putc_(o, b' ')
                put_class(o, cls)
            if mdns:
                puts_(o, b" (QU)" if c & 0x8000 else b" (QM)")
            puts_(o, b"? ")
            if dns_name(o, m, n, off, 1) < 0:
                return 0
            off = end + 4
            first = 0
            left -= 1
    grow(o, 32)
    puts_(o, b" ("); putu(o, length); putc_(o, b')')
    return 1


cdef void put_hex(Out *o, unsigned int v) noexcept:
    put_digits(o, v, 16)


# ----------------------------------------------------------------------------- STP (link.stp)

cdef const char *STP_VER[5]
STP_VER[:] = [b"802.1d", NULL, b"802.1w", b"802.1s", b"802.1aq"]
cdef const char *STP_FLAG_NAMES[8]
STP_FLAG_NAMES[:] = [b"Topology change", b"Proposal", NULL, NULL, b"Learn", b"Forward", b"Agreement",
                     b"Topology change ACK"]


cdef int stp_line(Out *o, const uint8_t *p, unsigned int l802, Py_ssize_t caplen, long wirelen) except -1:
    """An 802.3 frame with an STP BPDU (LLC 0x42 0x42 0x03), as link.stp prints it without -e."""
    cdef const uint8_t *b = p + 17
    cdef unsigned int ver, typ
    cdef long length = (l802 if l802 < wirelen - 14 else wirelen - 14) - 3
    cdef int k, any_flag = 0
    if caplen < 17 + 27 or p[14] != 0x42 or p[15] != 0x42 or p[16] != 0x03 or length < 0:
        return 0
    ver = b[2]
    typ = b[3]
    if ver > 4 or ver == 1 or (typ != 0 and typ != 2):
        return 0
    puts_(o, b"STP "); puts_(o, STP_VER[ver]); puts_(o, b", Config" if typ == 0 else b", Rapid STP")
    puts_(o, b", Flags [" if typ == 0 or ver == 2 else b", CIST Flags [")
    for k in range(8):
        if b[4] & (1 << k) and STP_FLAG_NAMES[k] != NULL:
            if any_flag:
                puts_(o, b", ")
            puts_(o, STP_FLAG_NAMES[k])
            any_flag = 1
    if not any_flag:
        puts_(o, b"none")
    putc_(o, b']')
    if typ == 0 or ver == 2:
        puts_(o, b", bridge-id "); puthex2(o, b[17]); puthex2(o, b[18]); putc_(o, b'.'); put_mac(o, b + 19)
        putc_(o, b'.'); puthex2(o, b[25]); puthex2(o, b[26])
    puts_(o, b", length "); putu(o, length)
    return 1
