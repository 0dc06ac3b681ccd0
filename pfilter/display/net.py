"""Network layer in tcpdump 4.99's words: ARP/RARP, IPv4 (with -v's header line), IPv6 and its
extension headers, ICMP, ICMPv6, ESP/AH, IP-in-IP, and the generic line for other protocols.

Each printer takes the Printer `p` (its flags and TCP state), the captured bytes of its layer
and the layer's length on the wire, and returns text; nothing raises on short data (the caller
turns any slip into tcpdump's truncation mark).
"""
from ._util import IPPROTO_NAMES, checksum_report, hex_lines, ip4, ip6, mac, ones_sum, u16, u32
from . import transport


class Truncated(Exception):
    """A printer ran past the captured bytes: the line ends in ' [|proto]'."""

    def __init__(self, proto, text=""):
        super().__init__(proto)
        self.proto = proto
        self.text = text


# ----------------------------------------------------------------------------- ARP

ARP_OPS = {1: "Request", 2: "Reply", 3: "Reverse Request", 4: "Reverse Reply", 8: "InVerse Request",
           9: "InVerse Reply", 10: "NACK Reply"}


def arp(p, b, length, rarp=False):
    pre = "" if p.e else ("RARP, " if rarp else "ARP, ")
    if len(b) < 8:
        return pre + "[|ARP]"
    hrd, pro, hln, pln, op = u16(b, 0), u16(b, 2), b[4], b[5], u16(b, 6)
    need = 8 + 2 * (hln + pln)
    if pro not in (0x0800, 0x0806) or pln != 4 or not hln or len(b) < need:
        if len(b) < need:
            return pre + "[|ARP]"
        return pre + f"{_arp_hw(hrd)} (len {hln}), {_arp_pro(pro)} (len {pln}), {ARP_OPS.get(op, f'Unknown ({op})')}, length {length}"
    sha, spa = b[8:8 + hln], b[8 + hln:12 + hln]
    tha, tpa = b[12 + hln:12 + 2 * hln], b[12 + 2 * hln:16 + 2 * hln]
    hw = mac if hln == 6 else _linkaddr      # tcpdump prints other hardware addresses byte by byte
    if p.v:
        pre += f"{_arp_hw(hrd)} (len {hln}), {_arp_pro(pro)} (len {pln}), "
    if op == 1:
        who = f"who-has {ip4(tpa)}"
        if any(tha):
            who += f" ({hw(tha)})"
        return pre + f"Request {who} tell {ip4(spa)}, length {length}"
    if op == 2:
        return pre + f"Reply {ip4(spa)} is-at {hw(sha)}, length {length}"
    if op == 3:
        return pre + f"Reverse Request who-is {hw(tha)} tell {hw(sha)}, length {length}"
    if op == 4:
        return pre + f"Reverse Reply {hw(tha)} at {ip4(tpa)}, length {length}"
    if op == 8:
        return pre + f"InVerse Request who-is {hw(tha)} tell {hw(sha)}, length {length}"
    if op == 9:
        return pre + f"InVerse Reply {hw(tha)} at {ip4(tpa)}, length {length}"
    return pre + f"Ethernet (len 6), IPv4 (len 4), Unknown ({op}), length {length}"


def _linkaddr(b):
    return ":".join(f"{x:02x}" for x in b)


def _arp_hw(h):
    return {1: "Ethernet", 6: "TokenRing", 7: "ArcNet", 15: "FrameRelay", 19: "ATM (RFC 2225)", 23: "Strip",
            24: "IEEE 1394", 32: "InfiniBand"}.get(h, f"Unknown Hardware ({h})")


def _arp_pro(t):
    return {0x0800: "IPv4", 0x86DD: "IPv6"}.get(t, f"Unknown Protocol (0x{t:04x})")


# ----------------------------------------------------------------------------- IPv4

_FRAG_FLAGS = ((0x2000, "+"), (0x4000, "DF"), (0x8000, "rsvd"))


def ipv4(p, b, length):
    pre = "" if p.e else "IP "
    if len(b) < 20:
        return pre + " [|ip]"             # (tcpdump's nd_print_trunc: a space before it)
    ver = b[0] >> 4
    if ver != 4:
        if ver == 6:
            return ipv6(p, b, length)
        return f"IP{ver} "
    hlen = (b[0] & 0x0F) * 4
    if hlen < 20:
        return pre + f"bad-hlen {hlen}"
    ip_len = (b[2] << 8) | b[3]
    if ip_len < hlen:
        return pre + f"bad-len {ip_len}"
    if ip_len > length:
        return pre + f"truncated-ip - {ip_len - length} bytes missing! " + _ipv4_body(p, b, length, hlen, length)
    return pre + _ipv4_body(p, b, ip_len, hlen, length)


def _ipv4_body(p, b, ip_len, hlen, length):
    off = (b[6] << 8) | b[7]
    proto = b[9]
    src = "%d.%d.%d.%d" % (b[12], b[13], b[14], b[15])
    dst = "%d.%d.%d.%d" % (b[16], b[17], b[18], b[19])
    out = ""
    if p.v:
        tos = b[1]
        out = f"(tos 0x{tos:x}"
        ecn = tos & 3
        if ecn:
            out += (",ECT(1)", ",ECT(0)", ",CE")[ecn - 1]
        ttl = b[8]
        if ttl >= 1:
            out += f", ttl {ttl}"
        flags = ", ".join(name for bit, name in _FRAG_FLAGS if off & bit) or "none"
        out += (f", id {u16(b, 4)}, offset {(off & 0x1FFF) * 8}, flags [{flags}], "
                f"proto {IPPROTO_NAMES.get(proto, 'unknown')} ({proto}), length {u16(b, 2)}")
        if hlen > 20:
            text, cut = _ip_options(b[20:hlen])
            out += f", options ({text}{' [truncated-option]' if cut else ''})"
        if len(b) >= hlen and not p.K:        # -K: tcpdump's print-ip.c skips the check
            total = ones_sum(b[:hlen])
            ok, should = checksum_report(u16(b, 10), total)
            if not ok:
                out += f", bad cksum {u16(b, 10):x} (->{should:x})!"
        out += ")\n    "
    payload = b[hlen:ip_len]
    plen = ip_len - hlen
    if off & 0x1FFF:
        return out + f"{src} > {dst}: ip-proto-{proto}"
    final = _ip_final_dst(b[20:hlen], b[16:20]) if hlen > 20 else b[16:20]
    info = (4, b[12:16], final, bool(off & 0x3FFF), b[8], proto)
    return out + demux(p, proto, payload, plen, src, dst, info)


_IPOPT = {0: "EOL", 1: "NOP", 68: "timestamp", 130: "security", 7: "RR", 137: "SSRR", 131: "LSRR", 148: "RA",
          82: "traceroute"}


def _ip_options(opts):
    """(text, truncated) of the IPv4 options as tcpdump's -v prints them: each option's name and,
    for record route, source routes, timestamps and router alert, its contents."""
    parts = []
    i, left = 0, len(opts)
    while left > 0:
        t = opts[i]
        text = _IPOPT.get(t, f"unknown {t}")
        if t in (0, 1):
            ln = 1
        else:
            if i + 1 >= len(opts):
                return ",".join(parts + [text]), True
            ln = opts[i + 1]
            if ln < 2:
                return ",".join(parts + [text + f" [bad length {ln}]"]), False
        if ln > left:
            return ",".join(parts + [text + f" [bad length {ln}]"]), False
        o = opts[i:i + ln]
        if t == 0:
            parts.append(text)
            break
        if t == 68:
            text += _ip_ts(o, ln)
        elif t in (7, 131, 137):
            text += _ip_route(o, ln)
        elif t == 148:
            if ln < 4:
                text += f" [bad length {ln}]"
            elif u16(o, 2):
                text += f" value {u16(o, 2)}"
        parts.append(text)
        i += ln
        left -= ln
    return ",".join(parts), False


def _ip_route(o, ln):
    if ln < 3:
        return f" [bad length {ln}]"
    out = f" [bad length {ln}]" if (ln + 1) & 3 else ""
    ptr = o[2] - 1
    if ptr < 3 or (ptr + 1) & 3 or ptr > ln + 1:
        out += f" [bad ptr {o[2]}]"
    for k in range(3, ln, 4):
        if k + 4 > ln:
            break
        out += f" {ip4(o[k:k + 4])}" + ("," if ptr > k else "")
    return out


def _ip_ts(o, ln):
    if ln < 4:
        return f"[bad length {ln}]"
    out = " TS{"
    hop = 4 if o[3] & 0xF == 0 else 8
    if (ln - 4) & (hop - 1):
        out += f"[bad length {ln}]"
    ptr = o[2] - 1
    k = 0
    if ptr < 4 or (ptr - 4) & (hop - 1) or ptr > ln + 1:
        out += f"[bad ptr {o[2]}]"
    kind = {0: "TSONLY", 1: "TS+ADDR", 3: "PRESPEC"}.get(o[3] & 0xF)
    if kind is None:
        out += f"[bad ts type {o[3] & 0xF}]"
    else:
        out += kind
        sep = " "
        for k in range(4, ln, hop):
            if ptr == k:
                sep = " ^ "
            if k + hop > ln:
                break
            out += f"{sep}{u32(o, k + hop - 4)}@" + (ip4(o[k:k + 4]) if hop == 8 else "")
            sep = " "
        else:
            k = 4 + -(-(ln - 4) // hop) * hop if ln > 4 else 4
    out += " ^ " if ptr == k else ""
    return out + (f" [{o[3] >> 4} hops not recorded]}} " if o[3] >> 4 else "}")


def _ip_final_dst(opts, dst):
    """The destination the TCP/UDP pseudo-header holds: the last hop of a source route."""
    i = 0
    while i < len(opts):
        t = opts[i]
        if t == 0:
            break
        ln = 1 if t == 1 else (opts[i + 1] if i + 1 < len(opts) else 0)
        if ln < 2 and t != 1 or i + ln > len(opts):
            break
        if t in (131, 137) and ln >= 7:
            return opts[i + ln - 4:i + ln]
        i += ln
    return dst


# ----------------------------------------------------------------------------- IPv6

def ipv6(p, b, length):
    pre = "" if p.e else "IP6 "
    if len(b) < 40:
        return " [|ip6]"               # (tcpdump prints nothing of a header it cannot read whole)
    if b[0] >> 4 != 6:
        return pre + f"version error: {b[0] >> 4} != 6"
    plen = u16(b, 4)
    nh = b[6]
    src, dst = ip6(b[8:24]), ip6(b[24:40])
    out = pre
    if p.v:
        flow = u32(b, 0)
        out += "("
        if flow & 0x0FF00000:
            out += f"class 0x{(flow & 0x0FF00000) >> 20:02x}, "
        if flow & 0x000FFFFF:
            out += f"flowlabel 0x{flow & 0x000FFFFF:05x}, "
        out += f"hlim {b[7]}, next-header {IPPROTO_NAMES.get(nh, 'unknown')} ({nh}) payload length: {plen}) "
    total = 40 + plen
    if plen == 0 and nh == 0:
        total = length            # jumbogram: the real length is in an option
    if total > length:
        total = length
    data = b[40:total]
    rest = total - 40
    pos = 0
    addrs = f"{src} > {dst}: "
    printed_addrs = False
    info = [6, b[8:24], b[24:40], False, b[7], nh]
    while nh in _EXT_HEADERS:
        need, trunc = _EXT_HEADERS[nh]
        if len(data) < pos + need:
            return out + addrs + trunc
        if not printed_addrs:
            out += addrs
            printed_addrs = True
        header, fragoff = nh, 0
        if nh == 44:
            hl, fragoff = 8, u16(data, pos + 2) & 0xFFF8
            ident = f"0x{u32(data, pos + 4):08x}:" if p.v else ""
            out += f"frag ({ident}{fragoff}|{rest - 8})"
            info[3] = True
        else:
            hl = (data[pos + 1] + 1) * 8
            out += _rt6(data[pos:pos + hl]) if nh == 43 else ("HBH " if nh == 0 else "DSTOPT ")
        nh = data[pos]
        pos += hl
        rest -= hl
        if header == 44:
            if fragoff:
                return out
            out += " "
    return out + demux(p, nh, data[pos:], max(0, rest), src, dst, tuple(info), addrs_done=printed_addrs)


#: IPv6 extension headers tcpdump walks: next header -> (bytes needed, text when truncated)
_EXT_HEADERS = {0: (2, "HBH [|ip6]"), 60: (2, "DSTOPT [|ip6]"), 43: (4, "[|srcrt]"), 44: (8, "frag [|frag]")}


def _rt6(h):
    ln, typ, segleft = h[1], h[2], h[3]
    out = f"RT6 (len={ln}, type={typ}"
    if typ == 0:
        out += " [Deprecated]"
    out += f", segleft={segleft}"
    if typ == 0:
        addrs = [ip6(h[8 + 16 * i:24 + 16 * i]) for i in range(ln // 2) if len(h) >= 24 + 16 * i]
        out += "".join(f", [{i}]{a}" for i, a in enumerate(addrs))
    elif typ == 4:
        out += f", last-entry={h[4]}, tag={u16(h, 6)}"
        addrs = [ip6(h[8 + 16 * i:24 + 16 * i]) for i in range(h[4] + 1) if len(h) >= 24 + 16 * i]
        out += "".join(f", [{i}]{a}" for i, a in enumerate(addrs))
    return out + ") "


# ----------------------------------------------------------------------------- demultiplexing

def demux(p, proto, data, length, src, dst, info, addrs_done=False):
    """What follows the IP header: TCP/UDP print their own 'a.p > b.q: ', others get 'a > b: '."""
    if proto == 6:
        return transport.tcp(p, data, length, src, dst, info)
    if proto == 17:
        return transport.udp(p, data, length, src, dst, info)
    head = "" if addrs_done else f"{src} > {dst}: "
    if proto == 1:
        return head + icmp(p, data, length, info)
    if proto == 58:
        return head + icmp6(p, data, length, info)
    if proto == 4:
        return head + ipv4(p, data, length)
    if proto == 41:
        return head + ipv6(p, data, length)
    if proto == 50:
        if len(data) < 8:
            return head + "ESP [|ESP]"
        return head + f"ESP(spi=0x{u32(data, 0):08x},seq=0x{u32(data, 4):x}), length {length}"
    if proto == 51:
        if len(data) < 12:
            return head + "AH [|AH]"
        hl = (data[1] + 2) * 4
        text = f"AH(spi=0x{u32(data, 4):08x},seq=0x{u32(data, 8):x}"
        if hl > 12 and len(data) >= hl:
            text += ",icv=0x" + bytes(data[12:hl]).hex()
        text += "): "
        rest = demux(p, data[0], data[hl:], length - hl, src, dst, info, addrs_done=True)
        return head + text + rest
    if proto == 108:
        if len(data) < 4:
            return head + "IPComp [|IPCOMP]"
        return head + f"IPComp(cpi=0x{u16(data, 2):04x})"
    if proto == 2:
        return head + igmp(p, data, length)
    if proto == 47:
        return head + gre(p, data, length)
    if proto == 112:
        return head + vrrp(data, length, info[4], p.v, info[0] == 6)
    if proto == 103:
        return head + pim(data, length)
    if proto == 88:
        return head + eigrp(data, length, p.v)
    if proto == 89 and len(data) >= 4 and data[0] in (2, 3) and not p.v:
        return head + (f"OSPFv{data[0]}, {OSPF_TYPES.get(data[1], f'unknown packet type ({data[1]})')}, "
                       f"length {u16(data, 2)}")
    if proto == 59:
        return head + "no next header"     # tcpdump: IPv6 "no next header"
    # Divergence: tcpdump decodes GRE, OSPF, PIM, VRRP, SCTP, ...; pfilter prints them as tcpdump
    # prints an IP protocol it has no printer for.
    return head + f"ip-proto-{proto} {length}"


# ----------------------------------------------------------------------------- ICMP

ICMP_UNREACH = {0: "net {d} unreachable", 1: "host {d} unreachable", 5: "{d} unreachable - source route failed",
                6: "net {d} unreachable - unknown", 7: "host {d} unreachable - unknown",
                8: "{d} unreachable - source host isolated", 9: "net {d} unreachable - admin prohibited",
                10: "host {d} unreachable - admin prohibited", 11: "net {d} unreachable - tos prohibited",
                12: "host {d} unreachable - tos prohibited", 13: "host {d} unreachable - admin prohibited filter",
                14: "host {d} unreachable - host precedence violation",
                15: "host {d} unreachable - precedence cutoff"}
ICMP_SIMPLE = {4: "source quench", 9: "router advertisement", 10: "router solicitation",
               15: "information request", 16: "information reply", 17: "address mask request"}


def icmp(p, b, length, info):
    if len(b) < 4:
        return "ICMP [|icmp]"
    t, code = b[0], b[1]
    extra = ""
    if t in (0, 8):
        if len(b) < 8:
            return f"ICMP echo {'reply' if t == 0 else 'request'}, [|icmp]"
        s = f"echo {'reply' if t == 0 else 'request'}, id {u16(b, 4)}, seq {u16(b, 6)}"
    elif t == 3:
        s = _icmp_unreach(b, code)
        if s is None:
            return " [|icmp]"
    elif t in (5, 11) and len(b) < 28:      # (tcpdump reads the quoted destination for both)
        return " [|icmp]"
    elif t == 12 and code == 0 and len(b) < 5:
        return " [|icmp]"
    elif t == 11:
        s = {0: "time exceeded in-transit", 1: "ip reassembly time exceeded"}.get(code, f"time exceeded-#{code}")
    elif t == 5:
        gw = ip4(b[4:8]) if len(b) >= 8 else "?"
        d = ip4(b[24:28]) if len(b) >= 28 else "?"
        s = {0: f"redirect {d} to net {gw}", 1: f"redirect {d} to host {gw}",
             2: f"redirect-tos {d} to net {gw}", 3: f"redirect-tos {d} to host {gw}"}.get(code, f"redirect-#{code} {d} to {gw}")
    elif t == 12:
        s = f"parameter problem - octet {b[4]}" if code == 0 and len(b) > 4 else "parameter problem"
    elif t in (13, 14):
        if len(b) < 20:
            return "ICMP [|icmp]"
        s = f"time stamp {'query' if t == 13 else 'reply'} id {u16(b, 4)} seq {u16(b, 6)}"
        if t == 14:
            s += f": org {_ts(u32(b, 8))}, recv {_ts(u32(b, 12))}, xmit {_ts(u32(b, 16))}"
    elif t == 18:
        s = f"address mask is 0x{u32(b, 8):08x}" if len(b) >= 12 else "address mask reply"
    elif t == 9:
        s = _router_adv(b)
    elif t in ICMP_SIMPLE:
        s = ICMP_SIMPLE[t]
    else:
        s = f"type-#{t}"
    out = f"ICMP {s}, length {length}"
    if p.v and len(b) >= length and not info[3]:
        ok, should = checksum_report(u16(b, 2), ones_sum(b[:length]))
        if not ok:
            out += f" (wrong icmp cksum {u16(b, 2):x} (->{should:x})!)"
    if p.v and t in (3, 4, 5, 11, 12):
        # the quoted datagram: its own total length is its length on the wire, and its bytes
        # end there (RFC 4884 extensions may follow it)
        if len(b) < 12:
            return out + "\n\t [|icmp]"
        inner_len = u16(b, 10)
        out += "\n\t" + ipv4(_NoE(p), b[8:8 + inner_len], inner_len)
        if length > 136 and t in (3, 11, 12):
            out += _icmp_extensions(b, length)
    return out + extra


_ICMP_EXT_OBJECTS = {1: "MPLS Stack Entry", 2: "Interface Identification"}


def _icmp_extensions(b, length):
    """RFC 4884 multi-part extensions after the 128 bytes of quoted datagram (tcpdump tries
    when the ICMP message is longer than 136 bytes)."""
    if len(b) < 141:
        return " [|icmp]"
    ext = b[136:length]
    if b[5] == 0 and len(b) >= length and ones_sum(ext) != 0xFFFF:
        return ""              # no length set and no valid checksum: no extension
    ver = b[136] >> 4
    out = f"\n\tICMP Multi-Part extension v{ver}"
    if ver != 2:
        return out + " packet not supported"
    hlen = length - 136
    if len(b) >= length:
        out += f", checksum 0x{u16(b, 138):04x} ({'' if ones_sum(ext) == 0xFFFF else 'in'}correct), length {hlen}"
    hlen -= 4
    pos = 140
    while hlen > 4:
        if len(b) < pos + 4:
            return out + " [|icmp]"
        olen, cls, ctype = u16(b, pos), b[pos + 2], b[pos + 3]
        pos += 4
        out += f"\n\t  {_ICMP_EXT_OBJECTS.get(cls, 'unknown')} Object ({cls}), Class-Type: {ctype}, length {olen}"
        hlen -= 4
        if cls == 0 or olen < 4:
            return out
        olen -= 4
        if cls == 1 and ctype == 1:
            if len(b) < pos + 4:
                return out + " [|icmp]"
            e = u32(b, pos)
            out += f"\n\t    label {e >> 12}, tc {(e >> 9) & 7}" + (", [S]" if e & 0x100 else "") + f", ttl {e & 0xFF}"
        else:
            out += hex_lines(b[pos:pos + olen], prefix="\n\t    ")
        if hlen < olen:
            break
        hlen -= olen
        pos += olen
    return out


class _NoE:
    """The printer's flags for an embedded packet (tcpdump prints its 'IP ' whatever -e says)."""

    def __init__(self, p):
        self.__dict__.update(p.__dict__)
        self.e = 0


def _ts(ms):
    if ms & 0x80000000:
        return f"{ms}"
    h, r = divmod(ms, 3600000)
    m, r = divmod(r, 60000)
    s, r = divmod(r, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{r:03d}"


def _router_adv(b):
    if len(b) < 8:
        return "router advertisement"
    num, size, life = b[4], b[5], u16(b, 6)
    if life < 60:
        lt = f"{life}"
    elif life < 3600:
        lt = f"{life // 60}:{life % 60:02d}"
    else:
        lt = f"{life // 3600}:{life % 3600 // 60:02d}:{life % 60:02d}"
    out = f"router advertisement lifetime {lt} {num}:"
    if size != 2:
        return out + f" [size {size}]"
    for i in range(num):
        o = 8 + i * 8
        if len(b) < o + 8:
            break
        out += f" {{{ip4(b[o:o + 4])} {u32(b, o + 4)}}}"
    return out


def _icmp_unreach(b, code):
    """The text of a destination unreachable, or None where tcpdump reads past the captured
    bytes for it (the quoted destination, a port unreachable's port)."""
    if len(b) < 28:
        return f"unreachable code {code}" if code not in ICMP_UNREACH and code not in (2, 3, 4) else None
    inner = b[8:]
    d = ip4(inner[16:20])
    pr = inner[9]
    ihl = (inner[0] & 0x0F) * 4
    if code == 3:
        if len(inner) < ihl + 4:
            return None
        port = u16(inner, ihl + 2)
        if pr == 17:
            return f"{d} udp port {port} unreachable"
        if pr == 6:
            return f"{d} tcp port {port} unreachable"
        return f"{d} protocol {pr} port {port} unreachable"
    if code == 2:
        return f"{d} protocol {pr} unreachable"
    if code == 4:
        mtu = u16(b, 6)
        return f"{d} unreachable - need to frag (mtu {mtu})" if mtu else f"{d} unreachable - need to frag"
    fmt = ICMP_UNREACH.get(code)
    if fmt is None:
        return f"{d} unreachable - #{code}"
    return fmt.format(d=d)


def igmp(p, b, length):
    if len(b) < 8:
        return "igmp [|igmp]"
    t = b[0]
    if t == 0x11:
        mrt = b[1]
        grp = ip4(b[4:8])
        ver = "v3" if length >= 12 else ("v2" if mrt else "v1")
        if ver == "v1":
            return f"igmp query v1{'' if grp == '0.0.0.0' else ' [gaddr ' + grp + ']'}"
        if ver == "v2":
            s = "igmp query v2"
            if mrt != 100:
                s += f" [max resp time {mrt}]"
            if grp != "0.0.0.0":
                s += f" [gaddr {grp}]"
            return s
        return "igmp query" + _igmpv3_query(b, length)
    if t == 0x12:
        return f"igmp v1 report {ip4(b[4:8])}"
    if t == 0x16:
        return f"igmp v2 report {ip4(b[4:8])}"
    if t == 0x17:
        return f"igmp leave {ip4(b[4:8])}"
    if t == 0x22:
        return f"igmp v3 report, {u16(b, 6)} group record(s)"
    return f"igmp-{t}"


def _igmpv3_query(b, length):
    out = " v3"
    if length < 12 or length & 3:
        return out + f" [invalid len {length}]"
    mrc = b[1]
    mrt = mrc if mrc < 128 else ((mrc & 0x0F) | 0x10) << (((mrc & 0x70) >> 4) + 3)
    if mrc != 100:
        out += f" [max resp time {mrt * 0.1:.1f}s]" if mrt < 600 else f" [max resp time {_relts(mrt // 10)}]"
    if not u32(b, 4):
        return out
    out += f" [gaddr {ip4(b[4:8])}"
    nsrcs = u16(b, 10)
    if nsrcs:
        out += " [invalid number of sources]" if length < 12 + 4 * nsrcs else f", {nsrcs} source(s)"
    return out + "]"


def _relts(secs):
    """tcpdump's unsigned_relts_print: 1h2m3s."""
    if not secs:
        return "0s"
    out = ""
    for unit, name in ((31536000, "y"), (604800, "w"), (86400, "d"), (3600, "h"), (60, "m"), (1, "s")):
        if secs >= unit:
            out += f"{secs // unit}{name}"
            secs %= unit
    return out


# ----------------------------------------------------------------------------- ICMPv6

ICMP6_TYPES = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded in-transit",
               4: "parameter problem", 128: "echo request", 129: "echo reply",
               130: "multicast listener query", 131: "multicast listener report",
               132: "multicast listener done", 133: "router solicitation", 134: "router advertisement",
               135: "neighbor solicitation", 136: "neighbor advertisement", 137: "redirect",
               138: "router renumbering", 139: "who-are-you request", 140: "who-are-you reply",
               141: "inverse neighbor solicitation", 142: "inverse neighbor advertisement",
               143: "multicast listener report v2", 144: "ha discovery request", 145: "ha discovery reply",
               146: "mobile router solicitation", 147: "mobile router advertisement",
               200: "mtrace response", 201: "mtrace message", 155: "RPL"}
#: tcpdump 4.99's words for the destination unreachable codes (code 1 with its leading space)
ICMP6_UNREACH = {0: "unreachable route", 1: " unreachable prohibited", 2: "beyond scope",
                 3: "unreachable address", 4: "unreachable port"}


class _Short(Exception):
    """An ICMPv6 field lies past the captured bytes: tcpdump's ' [|icmp6]' after what is printed."""


def _need(b, n):
    if len(b) < n:
        raise _Short


#: the types whose -v line shows the length after the type's name (tcpdump's cosmetics)
_ICMP6_V_LENGTH = frozenset((133, 134, 135, 136, 137, 145, 147))
#: the types tcpdump decodes; any other shows its length and, below -vv, the message in hex
_ICMP6_KNOWN = frozenset(range(1, 5)) | frozenset(range(128, 148)) | {155}


def icmp6(p, b, length, info):
    if length == 0:
        return "ICMP6, length 0 (invalid)"
    if not b:
        return " [|icmp6]"
    if len(b) < 4:
        return "ICMP6, [|icmp6]"
    t, code = b[0], b[1]
    out = [f"ICMP6, {ICMP6_TYPES.get(t, f'unknown icmp6 type ({t})')}"]
    if p.v and not info[3] and len(b) >= length:
        stored = u16(b, 2)
        pseudo = bytes(info[1]) + bytes(info[2]) + length.to_bytes(4, "big") + b"\0\0\0\x3a"
        ok, should = checksum_report(stored, ones_sum(b[:length], ones_sum(pseudo)))
        out.insert(0, "[icmp6 sum ok] " if ok else f"[bad icmp6 cksum 0x{stored:04x} -> 0x{should:04x}!] ")
    if p.v and t in _ICMP6_V_LENGTH:
        out.append(f", length {length}")
    try:
        if _icmp6_body(p, b, length, t, code, out):
            return "".join(out)
    except (_Short, IndexError, ValueError):
        return "".join(out) + " [|icmp6]"
    if not p.v:
        out.append(f", length {length}")
    return "".join(out)


def _icmp6_body(p, b, length, t, code, out):
    """The type's own text appended to out; True when tcpdump ends the line there."""
    if t not in _ICMP6_KNOWN:
        out.append(f", length {length}")
        if p.v <= 1:
            out.append(hex_lines(b[:length], prefix="\n\t"))
        return True
    if t in (128, 129):
        _need(b, 8)
        out.append(f", id {u16(b, 4)}, seq {u16(b, 6)}")
    elif t == 1:
        out.append(", " + ICMP6_UNREACH.get(code, f"unknown unreach code ({code})"))
        if code in (0, 1, 3):
            _need(b, 48)
            out.append(f" {ip6(b[32:48])}")
        elif code == 2:
            _need(b, 48)
            out.append(f" {ip6(b[32:48])}, source address {ip6(b[16:32])}")
        elif code == 4:
            prot, port = _icmp6_upper(b[8:])
            d = ip6(b[32:48])
            out.append({17: f", {d} udp port {port}", 6: f", {d} tcp port {port}"}.get(
                prot, f", {d} protocol {prot} port {port} unreachable"))
        elif p.v <= 1:
            out.append(hex_lines(b[:length], prefix="\n\t"))
            return True
    elif t == 2:
        _need(b, 8)
        out.append(f", mtu {u32(b, 4)}")
    elif t == 3:
        if code == 0:
            _need(b, 48)
            out.append(f" for {ip6(b[32:48])}")
        else:
            out.append(" (reassembly)" if code == 1 else f", unknown code ({code})")
    elif t == 4:
        _need(b, 48)
        ptr = u32(b, 4)
        out.append({0: f", erroneous - octet {ptr}", 1: f", next header - octet {ptr}",
                    2: f", option - octet {ptr}", 3: f", incomplete header chain - octet {ptr}"}.get(code, f", code-#{code}"))
    elif t in (130, 131, 132):
        if len(b) >= 24:
            if t == 130 and length > 24:
                out[-1] = out[-1].replace("multicast listener query", "multicast listener query v2")
                grp = ip6(b[8:24])
                out.append(f" [gaddr {grp}]" if grp != "::" else "")
            else:
                out.append(f" max resp delay: {u16(b, 4)} addr: {ip6(b[8:24])}")
    elif t == 133:
        if p.v:
            _nd_options(p, b, 8, length, out)
    elif t == 134:
        if p.v:
            _need(b, 16)
            fl = b[5]
            names = ", ".join(n for bit, n in ((0x80, "managed"), (0x40, "other stateful"), (0x20, "home agent"),
                                               (0x02, "ipv6 only")) if fl & bit) or "none"
            out.append(f"\n\thop limit {b[4]}, Flags [{names}], pref {_RTPREF[(fl >> 3) & 3]}, "
                       f"router lifetime {u16(b, 6)}s, reachable time {u32(b, 8)}ms, retrans timer {u32(b, 12)}ms")
            _nd_options(p, b, 16, length, out)
    elif t == 135:
        _need(b, 24)
        out.append(f", who has {ip6(b[8:24])}")
        if p.v:
            _nd_options(p, b, 24, length, out)
    elif t == 136:
        _need(b, 24)
        out.append(f", tgt is {ip6(b[8:24])}")
        if p.v:
            fl = u32(b, 4)
            out.append(", Flags [" + (", ".join(n for bit, n in ((0x80000000, "router"), (0x40000000, "solicited"),
                                                                 (0x20000000, "override")) if fl & bit) or "none") + "]")
            _nd_options(p, b, 24, length, out)
    elif t == 137:
        _need(b, 40)
        out.append(f", {ip6(b[24:40])} to {ip6(b[8:24])}")
        if p.v:
            _nd_options(p, b, 40, length, out)
    elif t in (139, 140):
        _nodeinfo(p, b, length, out)
    elif t == 143:
        if length < 8:
            out.append(f" [invalid len {length}]")
            return False
        _need(b, 8)
        out.append(f", {u16(b, 6)} group record(s)")
        if p.v:
            _mldv2_records(p, b, length, u16(b, 6), out)
    elif t in (144, 146):
        _need(b, 6)
        out.append(f", id 0x{u16(b, 4):04x}")
    elif t == 145:
        if p.v:
            _need(b, 6)
            out.append(f", id 0x{u16(b, 4):04x}")
            for o in range(8, length, 16):
                _need(b, o + 16)
                out.append(f", {ip6(b[o:o + 16])}")
    elif t == 147:
        if p.v:
            _need(b, 8)
            fl = u16(b, 6)
            out.append(f", id 0x{u16(b, 4):04x}" + (" " if fl & 0xC000 else "") + ("M" if fl & 0x8000 else "")
                       + ("O" if fl & 0x4000 else ""))
            _nd_options(p, b, 8, length, out)
    elif t == 155:
        _rpl(p, b, code, length, out)
    return False


_RTPREF = ("medium", "high", "rsv", "low")
_MLDV2_RECORDS = {1: "is_in", 2: "is_ex", 3: "to_in", 4: "to_ex", 5: "allow", 6: "block"}


def _mldv2_records(p, b, length, ngroups, out):
    group = 8
    for _ in range(ngroups):
        if length < group + 20:
            out.append(" [invalid number of groups]")
            return
        _need(b, group + 20)
        out.append(f" [gaddr {ip6(b[group + 4:group + 20])} "
                   + _MLDV2_RECORDS.get(b[group], f" [v2-report-#{b[group]}]"))
        nsrcs = u16(b, group + 2)
        if length < group + 20 + 16 * nsrcs:
            out.append(f" [invalid number of sources {nsrcs}]")
            return
        if p.v == 1:
            out.append(f", {nsrcs} source(s)")
        else:
            out.append(" {")
            for j in range(nsrcs):
                o = group + 20 + 16 * j
                _need(b, o + 16)
                out.append(f" {ip6(b[o:o + 16])}")
            out.append(" }")
        group += 20 + 16 * nsrcs
        out.append("]")


def _icmp6_upper(inner):
    """(protocol, destination port) of the datagram an ICMPv6 error quotes, past its extension
    headers, as tcpdump's get_upperlayer (the port is needed: else truncated)."""
    _need(inner, 40)
    nh, pos = inner[6], 40
    while True:
        if nh in (6, 17):
            _need(inner, pos + 4)
            return nh, u16(inner, pos + 2)
        if nh in (0, 60, 43):
            _need(inner, pos + 2)
            nh, pos = inner[pos], pos + (inner[pos + 1] + 1) * 8
        elif nh == 44:
            _need(inner, pos + 4)
            if u16(inner, pos + 2) & 0xFFF8:
                raise _Short
            nh, pos = inner[pos], pos + 8
        elif nh == 51:
            _need(inner, pos + 2)
            nh, pos = inner[pos], pos + (inner[pos + 1] + 2) * 4
        else:
            raise _Short
        if pos >= len(inner):
            raise _Short


_ND_OPTS = {1: "source link-address", 2: "destination link-address", 3: "prefix info", 4: "redirected header",
            5: "mtu", 25: "rdnss", 31: "dnssl", 7: "advertisement interval", 8: "homeagent information",
            24: "route info"}


def _lifetime(v):
    return "infinity" if v == 0xFFFFFFFF else f"{v}s"


def _nd_options(p, b, start, length, out):
    """Neighbour discovery options as tcpdump's icmp6_opt_print (one '\n\t  ' line each)."""
    cp, resid, ep = start, length - start, len(b)
    while cp < ep:
        _need(b, cp + 2)
        if resid <= 0:
            return
        typ, ln = b[cp], b[cp + 1]
        if ln == 0 or cp + ln * 8 > ep:
            raise _Short
        out.append(f"\n\t  {_ND_OPTS.get(typ, 'unknown')} option ({typ}), length {ln * 8} ({ln}): ")
        o = b[cp:cp + ln * 8]
        if typ in (1, 2):
            out.append(":".join(f"{x:02x}" for x in o[2:]))
        elif typ == 3:
            _need(o, 32)
            fl = o[3]
            names = ", ".join(n for bit, n in ((0x80, "onlink"), (0x40, "auto"), (0x20, "router")) if fl & bit)
            out.append(f"{ip6(o[16:32])}/{o[2]}{'badlen' if ln != 4 else ''}, Flags [{names or 'none'}], "
                       f"valid time {_lifetime(u32(o, 4))}, pref. time {_lifetime(u32(o, 8))}")
        elif typ == 4:
            out.append(hex_lines(b[start:start + ln * 8], prefix="\n\t    "))
        elif typ == 5:
            _need(o, 8)
            out.append(f" {u32(o, 4)}{'bad option length' if ln != 1 else ''}")
        elif typ == 25:
            _need(o, 8)
            out.append(f" lifetime {u32(o, 4)}s,")
            for k in range((ln - 1) // 2):
                _need(o, 24 + 16 * k)
                out.append(f" addr: {ip6(o[8 + 16 * k:24 + 16 * k])}")
        elif typ == 31:
            _need(o, 8)
            out.append(f" lifetime {u32(o, 4)}s, domain(s):")
            d = 8
            while d < len(o) and o[d]:
                from .apps import _name, _Trunc
                try:
                    text, d = _name(o, d)
                except _Trunc:
                    raise _Short from None
                out.append(" " + text)
        elif typ == 7:
            _need(o, 8)
            out.append(f" {u32(o, 4)}ms")
        elif typ == 8:
            _need(o, 8)
            out.append(f" preference {u16(o, 4)}, lifetime {u16(o, 6)}")
        elif typ == 24:
            _need(o, 8)
            if ln > 3:
                raise _Short
            prefix = bytes(o[8:8 + 8 * (ln - 1)]).ljust(16, b"\0")
            out.append(f" {ip6(prefix)}/{o[2]}, pref={_RTPREF[(o[3] >> 3) & 3]}, lifetime={_lifetime(u32(o, 4))}")
        elif p.v <= 1:
            out.append(hex_lines(o[2:], prefix="\n\t  "))
            return
        if p.v > 1:
            out.append(hex_lines(o[2:], prefix="\n\t    "))
        cp += ln * 8
        resid -= ln * 8


def _nodeinfo(p, b, length, out):
    """Node information queries and replies (RFC 4620), as tcpdump's icmp6_nodeinfo_print."""
    siz = len(b)
    if b[0] == 139:
        if siz == 8:
            out.append(" who-are-you request")
            return
        out.append(" node information query")
        _need(b, 16)
        out.append(" (")
        qtype, flags = u16(b, 4), u16(b, 6)
        out.append(_ni_qtype(qtype, flags, query=True))
        if qtype in (0, 1):
            if siz != 16 and p.v:
                out.append(", invalid len")
            out.append(")")
            return
        if siz == 16:
            out.append(", 03 draft)")
            return
        code = b[1]
        if code:
            if code == 1:
                out.append(", subject=DNS name" + _ni_name(p, b, 16))
            elif code == 2:
                if siz >= 20:
                    out.append(", invalid subject len" if siz != 20 and p.v else
                               "" if siz != 20 else f", subject={ip4(b[16:20])}")
            else:
                out.append(", unknown subject")
        elif siz >= 32:
            out.append(", invalid subject len" if siz != 32 and p.v else "" if siz != 32 else f", subject={ip6(b[16:32])}")
        out.append(")")
        return
    if length > siz:
        raise _Short
    _need(b, 16)
    out.append(" node information reply (")
    code = b[1]
    words = []
    if code == 0:
        if p.v:
            words.append("success")
    elif code in (1, 2):
        words.append("refused" if code == 1 else "unknown")
        if siz != 16 and p.v:
            words[-1] += ", invalid length"
    if code != 0:
        out.append(", ".join(words) + ")")
        return
    qtype, flags = u16(b, 4), u16(b, 6)
    text = _ni_qtype(qtype, flags, query=False)
    if qtype == 0 and siz != 16 and p.v:
        text += ", invalid length"
    elif qtype == 2:
        text += _ni_name(p, b, 20)
        if flags & 1:
            text += f" [TTL={u32(b, 16)}]"
    elif qtype == 3:
        addrs = ""
        i = 16
        while i + 20 <= siz:
            addrs += f" {ip6(b[i + 4:i + 20])}({u32(b, i)})"
            i += 20
        text = "node addresses" + addrs + _ni_addr_flags(flags, True)
    out.append(", ".join(words + [text]) + ")")


def _ni_qtype(qtype, flags, query):
    if qtype == 0:
        return "noop"
    if qtype == 1:
        return "supported qtypes" + ((" [C]" if flags & 1 else " []") if flags else "")
    if qtype == 2:
        return "DNS name"
    if qtype == 3:
        return "node addresses" + (_ni_addr_flags(flags, False) if query else "")
    return "unknown"


def _ni_addr_flags(f, reply):
    if not f:
        return ""
    return " [" + "".join(c for bit, c in ((0x40, "a"), (0x20, "G"), (0x10, "S"), (0x08, "L"), (0x04, "C"),
                                          (0x02, "A")) if f & bit) + ("T" if reply and f & 1 else "") + "]"


def _ni_name(p, b, cp):
    """tcpdump's rendering of a node information DNS name (no decompression)."""
    from .apps import _fn_char
    ep = len(b)
    _need(b, cp + 1)
    if b[cp] == ep - cp - 1:
        return (", 03 draft" if p.v else "") + ', "' + "".join(_fn_char(c) for c in b[cp + 1:ep]) + '"'
    text = ', "'
    while cp < ep:
        i = b[cp]
        cp += 1
        if i:
            if i > ep - cp:
                text += "???"
                break
            text += "".join(_fn_char(c) for c in b[cp:cp + i])
            cp += i
            if cp + 1 < ep and b[cp]:
                text += "."
        else:
            if cp == ep:
                text += "."
            elif not (cp + 1 == ep and b[cp] == 0):
                text += "???"
            break
    return text + '"'


_RPL_MOP = {0: "nonstoring", 1: "storing", 2: "nonstoring-multicast", 3: "storing-multicast"}


def _rpl(p, b, code, length, out):
    """RPL control messages (RFC 6550), as tcpdump's rpl_print (options only from -vv)."""
    if code & 0x80:
        out.append(", (SEC) [worktodo]")
        return
    base = code & 0x7F
    name = {0: "DODAG Information Solicitation", 1: "DODAG Information Object",
            2: "Destination Advertisement Object", 3: "Destination Advertisement Object Ack"}.get(base)
    if name is None:
        out.append(f", (CLR)RPL message, unknown code {code}")
        return
    out.append(", (CLR)" + name)
    if not p.v or base == 0:
        return
    d, dlen = b[4:], length - 4
    if base == 1:
        if dlen < 24:
            out.append(" (invalid)")
            return
        _need(d, 24)
        mp = d[4]
        out.append(f" [dagid:{ip6(d[8:24])},seq:{d[5]},instance:{d[0]},rank:{u16(d, 2)},"
                   f"{'grounded,' if mp & 0x80 else ''}mop:{_RPL_MOP.get((mp >> 3) & 7, f'mop{(mp >> 3) & 7}')},prf:{mp & 7}]")
        rest, rlen = 24, dlen - 24
    elif base == 2:
        _need(d, 20)
        if dlen < 4:
            out.append(" [|length too short]")
            return
        fl = d[1]
        dagid, rest, rlen = "<elided>", 4, dlen - 4
        if fl & 0x40:
            if rlen < 16:
                out.append(" [|length too short]")
                return
            dagid, rest, rlen = ip6(d[4:20]), 20, rlen - 16
        out.append(f" [dagid:{dagid},seq:{d[3]},instance:{d[0]}{',acK' if fl & 0x80 else ''}"
                   f"{',Dagid' if fl & 0x40 else ''},{fl:02x}]")
    else:
        _need(d, 4)
        if dlen < 4:
            out.append(" [|dao-length too short]")
            return
        dagid, rest, rlen = "<elided>", 4, dlen - 4
        if d[1] & 0x80:
            _need(d, 20)
            if rlen < 16:
                out.append(" [|dao-length too short]")
                return
            dagid, rest, rlen = ip6(d[4:20]), 20, rlen - 16
        out.append(f" [dagid:{dagid},seq:{d[2]},instance:{d[0]},status:{d[3]}]")
    if p.v > 1:
        _rpl_options(p, d, rest, rlen, out)


_RPL_SUBOPTS = {0: "pad1", 1: "padN", 2: "metrics", 3: "routinginfo", 4: "config", 5: "rpltarget",
                6: "transitinfo", 8: "destprefix", 9: "rpltargetdesc"}


def _rpl_options(p, d, pos, left, out):
    while left > 0:
        _need(d, pos + 1)
        if d[pos] == 0:
            out.append(" opt:pad1")
            ln = 1
        else:
            if left < 2:
                raise _Short
            _need(d, pos + 2)
            ln = d[pos + 1] + 2
            out.append(f" opt:{_RPL_SUBOPTS.get(d[pos], f'subopt:{d[pos]}')} len:{ln} ")
            _need(d, pos + ln)
            if left < ln:
                raise _Short
            if p.v > 2:
                out.append(hex_lines(d[pos + 2:pos + ln], prefix=" "))
        pos += ln
        left -= ln


# ----------------------------------------------------------------------------- GRE, VRRP, PIM, EIGRP

_GRE_FLAGS = ((0x8000, "checksum present"), (0x4000, "routing present"), (0x2000, "key present"),
              (0x1000, "sequence# present"), (0x0800, "strict source route"), (0x0080, "acknowledgment# present"))


def gre(p, b, length):
    if len(b) < 4:
        return "GRE [|gre]"
    flags, proto = u16(b, 0), u16(b, 2)
    ver = flags & 7
    out = f"GREv{ver}"
    if ver != 0:
        return out + f", length {length}" if ver != 1 else out + " [|gre]"
    if p.v:
        out += ", Flags [" + (", ".join(n for bit, n in _GRE_FLAGS if flags & bit) or "none") + "]"
    off = 4
    if flags & 0xC000:
        if len(b) < off + 4:
            return out + " [|gre]"
        if p.v:
            out += f", sum 0x{u16(b, off):x}"
        if flags & 0x4000:
            out += f", off 0x{u16(b, off + 2):x}"
        off += 4
    if flags & 0x2000:
        if len(b) < off + 4:
            return out + " [|gre]"
        out += f", key=0x{u32(b, off):x}"
        off += 4
    if flags & 0x1000:
        if len(b) < off + 4:
            return out + " [|gre]"
        out += f", seq {u32(b, off)}"
        off += 4
    if flags & 0x4000:
        return out + f", length {length}: [routing]"
    out += f", length {length}: "
    inner = b[off:]
    if proto == 0x0800:
        return out + ipv4(_NoE(p), inner, length - off)
    if proto == 0x86DD:
        return out + ipv6(_NoE(p), inner, length - off)
    if proto == 0x6558:
        from .link import ethernet
        return out + ethernet(p, inner, length - off)[0]
    return out + f"gre-proto-0x{proto:x}"


def vrrp(b, length, ttl, verbose=0, v6=False):
    if len(b) < 6:
        return "VRRP [|vrrp]"
    ver, typ = b[0] >> 4, b[0] & 0x0F
    out = f"VRRPv{ver}, " + ("Advertisement" if typ == 1 else f"unknown type {typ}")
    if ttl != 255:
        out += f", (ttl {ttl})"
    if ver not in (2, 3) or typ != 1:
        return out
    out += f", vrid {b[1]}, prio {b[2]}"
    if ver == 2:
        auth = {0: "none", 1: "simple", 2: "ah"}.get(b[4])
        out += f", authtype {auth}, intvl {b[5]}s, length {length}"
    else:
        out += f", intvl {((b[4] & 0x0F) << 8) | b[5]}cs, length {length}"
    if verbose and b[3]:
        size = 16 if v6 else 4
        addrs = [b[8 + k * size:8 + (k + 1) * size] for k in range(b[3])]
        if len(b) < 8 + b[3] * size:
            return out + " [|vrrp]"
        out += (f", addrs({b[3]}): " if b[3] > 1 else ", addrs: ") + ",".join(ip6(a) if v6 else ip4(a) for a in addrs)
        if ver == 2 and b[4] == 1 and len(b) >= 16 + b[3] * 4:
            key = bytes(b[8 + b[3] * 4:16 + b[3] * 4])
            out += ' auth "' + key.split(b"\0")[0].decode("latin-1") + '"'
    return out


OSPF_TYPES = {1: "Hello", 2: "Database Description", 3: "LS-Request", 4: "LS-Update", 5: "LS-Ack"}
PIM_TYPES = {0: "Hello", 1: "Register", 2: "Register Stop", 3: "Join / Prune", 4: "Bootstrap", 5: "Assert",
             6: "Graft", 7: "Graft Acknowledgement", 8: "Candidate RP Advertisement", 9: "Prune Refresh",
             10: "DF Election", 11: "ECMP Redirect"}


def pim(b, length):
    if len(b) < 1:
        return "PIM [|pim]"
    ver, typ = b[0] >> 4, b[0] & 0x0F
    if ver != 2:
        return f"PIMv{ver}"
    return f"PIMv2, {PIM_TYPES.get(typ, 'Unknown Type')}, length {length}"


EIGRP_OPCODES = {1: "Update", 2: "Request", 3: "Query", 4: "Reply", 5: "Hello", 6: "IPX SAP", 10: "SIA Query",
                 11: "SIA Reply"}


def eigrp(b, length, verbose):
    if len(b) < 20:
        return "EIGRP [|eigrp]"
    if b[0] != 2:
        return f"EIGRP version {b[0]} packet not supported"
    if verbose:
        return None or f"EIGRP {EIGRP_OPCODES.get(b[1], f'unknown ({b[1]})')}, length: {length}"
    return f"EIGRP {EIGRP_OPCODES.get(b[1], f'unknown ({b[1]})')}, length: {length}"
