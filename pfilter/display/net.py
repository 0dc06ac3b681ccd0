"""Network layer in tcpdump 4.99's words: ARP/RARP, IPv4 (with -v's header line), IPv6 and its
extension headers, ICMP, ICMPv6, ESP/AH, IP-in-IP, and the generic line for other protocols.

Each printer takes the Printer `p` (its flags and TCP state), the captured bytes of its layer
and the layer's length on the wire, and returns text; nothing raises on short data (the caller
turns any slip into tcpdump's truncation mark).
"""
from ._util import IPPROTO_NAMES, checksum_report, ip4, ip6, mac, ones_sum, u16, u32
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
        return pre + "[|ip]"
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
            out += f", options ({_ip_options(b[20:hlen])})"
        if len(b) >= hlen:
            total = ones_sum(b[:hlen])
            ok, should = checksum_report(u16(b, 10), total)
            if not ok:
                out += f", bad cksum {u16(b, 10):x} (->{should:x})!"
        out += ")\n    "
    payload = b[hlen:ip_len]
    plen = ip_len - hlen
    if off & 0x1FFF:
        return out + f"{src} > {dst}: ip-proto-{proto}"
    info = (4, b[12:16], b[16:20], bool(off & 0x3FFF), b[8], proto)
    return out + demux(p, proto, payload, plen, src, dst, info)


_IPOPT = {0: "EOL", 1: "NOP", 7: "RR", 68: "TS", 130: "security", 131: "LSRR", 137: "SSRR", 148: "RA"}


def _ip_options(opts):
    parts = []
    i = 0
    while i < len(opts):
        t = opts[i]
        if t in (0, 1):
            parts.append(_IPOPT[t])
            i += 1
            if t == 0:
                break
            continue
        if i + 1 >= len(opts):
            break
        ln = opts[i + 1]
        name = _IPOPT.get(t, f"unknown {t}")
        if t == 148 and ln == 4:
            parts.append(f"RA value {u16(opts, i + 2)}" if u16(opts, i + 2) else "RA")
        else:
            parts.append(name)
        if ln < 2:
            break
        i += ln
    return ",".join(parts)


# ----------------------------------------------------------------------------- IPv6

def ipv6(p, b, length):
    pre = "" if p.e else "IP6 "
    if len(b) < 40:
        return pre + "[|ip6]"
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
    if p.v and t in (3, 4, 5, 11, 12) and len(b) >= 28:
        out += "\n\t" + ipv4(_NoE(p), b[8:], length - 8)
    return out + extra


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
    if len(b) < 28:
        return f"unreachable code {code}" if code not in ICMP_UNREACH else "[|icmp]"
    inner = b[8:]
    d = ip4(inner[16:20])
    pr = inner[9]
    ihl = (inner[0] & 0x0F) * 4
    if code == 3:
        port = u16(inner, ihl + 2) if len(inner) >= ihl + 4 else 0
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
        return f"igmp query v3{'' if grp == '0.0.0.0' else ' [gaddr ' + grp + ']'}"
    if t == 0x12:
        return f"igmp v1 report {ip4(b[4:8])}"
    if t == 0x16:
        return f"igmp v2 report {ip4(b[4:8])}"
    if t == 0x17:
        return f"igmp leave {ip4(b[4:8])}"
    if t == 0x22:
        return f"igmp v3 report, {u16(b, 6)} group record(s)"
    return f"igmp-{t}"


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
               148: "certification path solicitation", 149: "certification path advertisement",
               151: "multicast router advertisement", 152: "multicast router solicitation",
               153: "multicast router termination", 155: "RPL"}
ICMP6_UNREACH = {0: "unreachable route", 1: "unreachable prohibited", 2: "beyond scope",
                 3: "unreachable address", 4: "unreachable port", 5: "failed ingress/egress policy",
                 6: "reject route"}


#: ICMPv6 types whose line adds one fixed field: type -> (bytes needed, the text added)
_ICMP6_FIXED = {2: (8, lambda b: f", mtu {u32(b, 4)}"), 135: (24, lambda b: f", who has {ip6(b[8:24])}"),
                136: (24, lambda b: f", tgt is {ip6(b[8:24])}"),
                137: (40, lambda b: f", {ip6(b[24:40])} to {ip6(b[8:24])}"),
                143: (8, lambda b: f", {u16(b, 6)} group record(s)")}


def icmp6(p, b, length, info):
    if len(b) < 4:
        return "ICMP6, [|icmp6]"
    t, code = b[0], b[1]
    name = ICMP6_TYPES.get(t, f"unknown icmp6 type ({t})")
    out = f"ICMP6, {name}"
    if p.v and not info[3] and len(b) >= length:
        stored = u16(b, 2)
        pseudo = bytes(info[1]) + bytes(info[2]) + length.to_bytes(4, "big") + b"\0\0\0\x3a"
        ok, should = checksum_report(stored, ones_sum(b[:length], ones_sum(pseudo)))
        out = ("[icmp6 sum ok] " if ok else f"[bad icmp6 cksum 0x{stored:04x} -> 0x{should:04x}!] ") + out
    if t in (128, 129):
        if len(b) >= 8:
            out += f", id {u16(b, 4)}, seq {u16(b, 6)}"
    elif t == 1:
        if len(b) >= 48:
            d = ip6(b[32:48])
            if code == 4:
                nh = b[14]
                port = u16(b, 50) if len(b) >= 52 else 0
                prn = {17: "udp", 6: "tcp"}.get(nh)
                out += f", unreachable port, {d} {prn + ' port ' + str(port) if prn else 'protocol ' + str(nh)}"
            elif code <= 3:
                out += f", {ICMP6_UNREACH[code]} {d}"
            else:
                out += f", {ICMP6_UNREACH.get(code, f'unknown unreach code ({code})')}"
    elif t in _ICMP6_FIXED:
        need, more = _ICMP6_FIXED[t]
        if len(b) >= need:
            out += more(b)
    elif t == 3:
        if len(b) >= 40:
            d = ip6(b[32:48]) if len(b) >= 48 else ""
            out = "ICMP6, time exceeded in-transit" + (f" for {d}" if code == 0 else f", {code}")
            if code == 1:
                out = "ICMP6, time exceeded in-transit, reassembly timeout"   # tcpdump: "for"
    elif t == 4:
        if len(b) >= 8:
            ptr = u32(b, 4)
            out += {0: f", erroneous - octet {ptr}", 1: f", next header - octet {ptr}",
                    2: f", option - octet {ptr}", 3: f", incomplete header chain - octet {ptr}"}.get(code, f", code-#{code}")
    elif t in (130, 131, 132):
        if len(b) >= 24:
            if t == 130 and length > 24:
                out = "ICMP6, multicast listener query v2"
                grp = ip6(b[8:24])
                out += f" [gaddr {grp}]" if grp != "::" else ""
            else:
                out += f" max resp delay: {u16(b, 4)} addr: {ip6(b[8:24])}"
    if not p.v:             # with -v tcpdump ends with the type's own details instead
        out += f", length {length}"
    return out


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
