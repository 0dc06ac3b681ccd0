"""Link layers in tcpdump 4.99's words: Ethernet (-e header, VLAN, MPLS, 802.3/LLC), Linux
cooked v1/v2, NULL/LOOP, raw IP, PPP, Cisco HDLC, NFLOG; anything else is tcpdump's
'UNSUPPORTED' line with the packet in hex and ASCII.

Each printer returns (text, link-header length); the header length is what -x leaves out.
"""
import socket

from ._util import ETHERTYPE_NAMES, ethertype_name, hex_lines, mac, safe_char, u16, u32
from . import net, wlan


EAPOL_TYPES = {0: "EAP packet", 1: "EAPOL start", 2: "EAPOL logoff", 3: "EAPOL key", 4: "Encapsulated ASF alert"}


def by_ethertype(p, etype, b, length):
    """The network-layer text for an EtherType, or None when tcpdump has no printer for it."""
    if etype == 0x0800:
        return net.ipv4(p, b, length)
    if etype == 0x86DD:
        return net.ipv6(p, b, length)
    if etype == 0x0806:
        return net.arp(p, b, length)
    if etype == 0x8035:
        return net.arp(p, b, length, rarp=True)
    if etype in (0x8847, 0x8848):
        return mpls(p, b, length)
    if etype == 0x88CC:
        return f"LLDP, length {length}"
    if etype == 0x888E and len(b) >= 4 and not (p.v and b[1] == 0):     # -v: EAP packets' details
        name = EAPOL_TYPES.get(b[1], "unknown")
        return f"{name} ({b[1]}) v{b[0]}, len {u16(b, 2)}"
    if etype == 0x8864 and len(b) >= 8 and b[1] == 0:
        text = f"PPPoE  [ses 0x{u16(b, 2):x}] "
        pproto = u16(b, 6)
        if pproto == 0x0021:
            return text + net.ipv4(p, b[8:], length - 8)
        if pproto == 0x0057:
            return text + net.ipv6(p, b[8:], length - 8)
        return None
    return None


def mpls(p, b, length):
    out = "MPLS"
    i = 0
    first = True
    while True:
        if len(b) < i + 4:
            return out + " [|MPLS]"
        v = u32(b, i)
        label, tc, s, ttl = v >> 12, (v >> 9) & 7, v & 0x100, v & 0xFF
        out += f"{' ' if first else ' '}(label {label}"
        if label < 16:
            names = {0: "IPv4 explicit NULL", 1: "router alert", 2: "IPv6 explicit NULL", 3: "implicit NULL"}
            if label in names:
                out += f" ({names[label]})"
        out += f", tc {tc}{', [S]' if s else ''}, ttl {ttl})"
        first = False
        i += 4
        if s:
            break
    rest = b[i:]
    length -= i
    if not rest:
        return out
    ver = rest[0] >> 4
    if ver == 4:
        return out + " " + net.ipv4(p, rest, length)
    if ver == 6:
        return out + " " + net.ipv6(p, rest, length)
    return out


def ethernet(p, b, wirelen):
    if len(b) < 14:
        return "[|ether]", len(b)
    dst, src = b[0:6], b[6:12]
    etype = u16(b, 12)
    off = 14
    length = wirelen - 14
    if etype == 0x0800 and not p.e:        # the common case first
        return net.ipv4(p, b[14:], length), 14
    if etype <= 1500:
        return _llc_frame(p, b, f"{mac(src)} > {mac(dst)}", etype, wirelen)
    text = ""
    if p.e:
        text = f"{mac(src)} > {mac(dst)}, {_etype_words(p, etype)}, length {wirelen}: "
    while etype in (0x8100, 0x88A8, 0x9100):
        if len(b) < off + 4:
            return text + "[|vlan]", off
        tag = u16(b, off)
        etype = u16(b, off + 2)
        if p.e:
            text += f"vlan {tag & 0xFFF}, p {tag >> 13}{', DEI' if tag & 0x1000 else ''}, "
            if etype > 1500:
                text += f"{_etype_words(p, etype)}, "
        off += 4
        length -= 4
    data = b[off:]
    if etype <= 1500 and len(data) >= 3:        # 802.3 inside VLAN tags
        llc, body, hdr = _llc_body(p, data, min(etype, length) - 3)
        if body is not None:
            return text + ("802.3" + llc if p.e else "") + body, off + hdr
    body = by_ethertype(p, etype, data, length)
    if body is None:
        # Divergence: an EtherType pfilter does not decode (LLDP, PTP, IPX, ...) is printed as
        # tcpdump prints one it has no printer for: the Ethernet header, then the bytes in hex.
        if not p.e:
            text = f"{mac(src)} > {mac(dst)}, ethertype {ethertype_name(etype)} (0x{etype:04x}), length {wirelen}: " + text
        return text + hex_lines(data, True), off
    return text + body, off


def _etype_words(p, etype):
    """How tcpdump names an EtherType in a link header: 'ethertype IPv4 (0x0800)', or with -q
    'IPv4' ('Unknown Ethertype (0x....)')."""
    if p.q:
        name = ETHERTYPE_NAMES.get(etype)
        return name if name else f"Unknown Ethertype (0x{etype:04x})"
    return f"ethertype {ethertype_name(etype)} (0x{etype:04x})"


def _llc_frame(p, b, head, l802, wirelen):
    text = head + f", 802.3, length {l802}: "
    data = b[14:]
    if len(data) < 3:
        return text + "[|llc]", 14
    llc, body, hdr = _llc_body(p, data, min(l802, wirelen - 14) - 3)
    if body is None:
        return text + llc + hex_lines(data[3:], True), 14
    return (text + llc if p.e else "") + body, 14 + hdr


def _llc_body(p, data, length):
    """(the LLC words -e prints, what follows them or None where pfilter has no printer, the
    LLC/SNAP header length tcpdump's -x skips) of an 802.2 frame of `length` bytes after its
    3-byte LLC header."""
    dsap, ssap, ctrl = data[0], data[1], data[2]
    llc = (f"LLC, dsap {_sap(dsap)} (0x{dsap & 0xFE:02x}) {'Group' if dsap & 1 else 'Individual'}, "
           f"ssap {_sap(ssap)} (0x{ssap & 0xFE:02x}) {'Response' if ssap & 1 else 'Command'}, ctrl 0x{ctrl:02x}: ")
    if dsap == 0x42 and ssap == 0x42 and ctrl == 0x03:
        return llc, stp(data[3:], length), 3
    if dsap == 0xAA and ssap == 0xAA and ctrl == 0x03 and len(data) >= 8:
        oui, pid = bytes(data[3:6]), u16(data, 6)
        if oui == b"\0\0\0":
            body = by_ethertype(p, pid, data[8:], length - 5)
            if body is not None:
                return llc[:-2] + f", oui Ethernet (0x000000), ethertype {ethertype_name(pid)} (0x{pid:04x}), " \
                                  f"length {length - 5}: ", body, 8
        elif oui == b"\0\0\x0c" and pid == 0x2000 and not p.v:     # -v: CDP's TLVs decoded, not here
            return llc[:-2] + f", oui Cisco (0x00000c), pid CDP (0x2000), length {length - 5}: ", cdp(data[8:], length - 5), 8
    return llc, None, 0


def cdp(b, length):
    """tcpdump's CDP line at default verbosity: version, TTL, the Device-ID, the other TLVs' data in hex."""
    if length < 4:
        return f" (packet length {length} < 4) (invalid)"
    out = f"CDPv{b[0]}, ttl: {b[1]}s"
    i, left = 4, length - 4
    while left:
        if left < 4:
            return out + f" (remaining packet length {left} < 4) (invalid)"
        if len(b) < i + 4:
            return out + " [|cdp]"
        typ, ln = u16(b, i), u16(b, i + 2)
        if ln < 4 or ln > left:
            return out + (f", {'Device-ID' if typ == 1 else 'unknown field type'} TLV length {ln} too short"
                          if ln < 4 else f" (TLV length {ln} > {left})") + " (invalid)"
        if len(b) < i + ln:
            return out + " [|cdp]"
        data = b[i + 4:i + ln]
        out += ", Device-ID '" + "".join(map(safe_char, data)) + "'" if typ == 1 else hex_lines(data, False, "\n\t  ")
        i += ln
        left -= ln
    return out + f", length {length}"


STP_VERSIONS = {0: "802.1d", 2: "802.1w", 3: "802.1s", 4: "802.1aq"}
STP_FLAGS = ((0x01, "Topology change"), (0x02, "Proposal"), (0x10, "Learn"), (0x20, "Forward"),
             (0x40, "Agreement"), (0x80, "Topology change ACK"))


def stp(b, length):
    if len(b) < 4:
        return "STP [|stp]"
    ver, typ = b[2], b[3]
    if ver not in STP_VERSIONS:
        return f"STP Unknown STP protocol (0x{ver:04x})"
    out = f"STP {STP_VERSIONS[ver]}, " + {0: "Config", 2: "Rapid STP", 0x80: "Topology Change"}.get(
        typ, f"Unknown BPDU Type (0x{typ:02x})")
    if typ == 0x80:
        return out
    if typ not in (0, 2) or len(b) < 27:
        return out if typ not in (0, 2) else out + " [|stp]"
    flags = ", ".join(name for bit, name in STP_FLAGS if b[4] & bit) or "none"
    if typ == 0 or ver == 2:
        bid = f"{b[17]:02x}{b[18]:02x}." + mac(b[19:25])
        return out + f", Flags [{flags}], bridge-id {bid}.{u16(b, 25):04x}, length {length}"
    return out + f", CIST Flags [{flags}], length {length}"


_SAPS = {0x42: "STP", 0xFE: "OSI", 0xAA: "SNAP", 0xE0: "IPX", 0xF0: "NetBeui", 0x06: "IP", 0x00: "Null",
         0x04: "SNA"}


def _sap(s):
    return _SAPS.get(s & 0xFE, "Unknown")


SLL_TYPES = {0: "In", 1: "B", 2: "M", 3: "P", 4: "Out"}


def _sll_proto(proto, wirelen):
    """The protocol and length Linux cooked v1/v2 print with -e."""
    if proto <= 1500:
        text = {1: "802.3", 4: "802.2"}.get(proto, f"ethertype Unknown (0x{proto:04x})")
    else:
        text = f"ethertype {ethertype_name(proto)} (0x{proto:04x})"
    return text + f", length {wirelen}: "


def _sll_body(p, text, b, proto, wirelen, hdr):
    data = b[hdr:]
    body = by_ethertype(p, proto, data, wirelen - hdr) if proto > 1500 else None
    return text + (hex_lines(data, True) if body is None else body), hdr


def sll(p, b, wirelen):
    if len(b) < 16:
        return "[|sll]", len(b)
    ptype, halen, proto = u16(b, 0), u16(b, 4), u16(b, 14)
    text = ""
    if p.e:
        text = f"{SLL_TYPES.get(ptype, '?'):>3} "
        if halen == 6:
            text += mac(b[6:12]) + " "
        if not p.q:             # tcpdump -q leaves out the protocol and length
            text += _sll_proto(proto, wirelen)
    return _sll_body(p, text, b, proto, wirelen, 16)


def sll2(p, b, wirelen):
    if len(b) < 20:
        return "[|sll2]", len(b)
    proto, ifindex, ptype, halen = u16(b, 0), u32(b, 4), b[10], b[11]
    try:
        name = socket.if_indextoname(ifindex)
    except OSError:
        name = "?"
    text = f"{name:<5} {SLL_TYPES.get(ptype, '?'):<3} "
    if p.e:
        text += f"ifindex {ifindex} "
        if halen == 6:
            text += mac(b[12:18]) + " "
        text += _sll_proto(proto, wirelen)
    return _sll_body(p, text, b, proto, wirelen, 20)


AF_NAMES = {2: "IPv4", 10: "IPv6", 24: "IPv6", 28: "IPv6", 30: "IPv6", 7: "OSI", 16: "Appletalk", 23: "IPX"}


def null(p, b, wirelen, loop=False):
    if len(b) < 4:
        return "[|null]", len(b)
    fam = u32(b, 0) if loop else int.from_bytes(b[:4], "little")
    if not loop and fam & 0xFFFF0000 and int.from_bytes(b[:4], "big") in AF_NAMES:
        fam = int.from_bytes(b[:4], "big")
    name = AF_NAMES.get(fam)
    text = ""
    if p.e or name not in ("IPv4", "IPv6"):
        text = f"AF {name or 'Unknown'} ({fam}), length {wirelen}: "
    data = b[4:]
    if name == "IPv4":
        return text + net.ipv4(p, data, wirelen - 4), 4
    if name == "IPv6":
        return text + net.ipv6(p, data, wirelen - 4), 4
    return text + hex_lines(data, True), 4


def raw(p, b, wirelen, version=None):
    text = "ip: " if p.e else ""
    if not b:
        return text + "[|ip]", 0
    v = version or b[0] >> 4
    if v == 6:
        return text + net.ipv6(p, b, wirelen), 0
    return text + net.ipv4(p, b, wirelen), 0


PPP_PROTOS = {0x0021: "IP", 0x0057: "IPv6", 0x0281: "MPLS", 0xC021: "LCP", 0x8021: "IPCP", 0x8057: "IP6CP",
              0x80FD: "CCP", 0xC023: "PAP", 0xC223: "CHAP", 0x002D: "VJC", 0x002F: "VJNC"}


def ppp(p, b, wirelen, hdlc=True):
    off = 0
    if len(b) >= 2 and b[0] == 0xFF and b[1] == 0x03:
        off = 2
    if len(b) < off + 1:
        return "[|ppp]", len(b)
    if b[off] & 1:
        proto = b[off]
        off += 1
    else:
        if len(b) < off + 2:
            return "[|ppp]", len(b)
        proto = u16(b, off)
        off += 2
    text = ""
    if p.e:
        text = f"{PPP_PROTOS.get(proto, 'unknown')} (0x{proto:04x}), length {wirelen}: "
    if proto in (0x0021, 0x0800, 0x0057, 0x86DD):
        return _ip_after(p, text, proto in (0x0021, 0x0800), b, wirelen, off)
    return None, off


def _ip_after(p, text, v4, b, wirelen, hdr):
    """(text and the IPv4 or IPv6 packet after a link header of hdr bytes, hdr)."""
    return text + (net.ipv4 if v4 else net.ipv6)(p, b[hdr:], wirelen - hdr), hdr


def chdlc(p, b, wirelen):
    if len(b) < 4:
        return "[|chdlc]", len(b)
    addr, proto = b[0], u16(b, 2)
    text = ""
    if p.e:
        cast = {0x0F: "unicast", 0x8F: "bcast"}.get(addr, f"0x{addr:02x}")
        text = f"{cast}, ethertype {ethertype_name(proto)} (0x{proto:04x}), length {wirelen}: "
    body = by_ethertype(p, proto, b[4:], wirelen - 4)
    if body is None:
        return None, 4
    return text + body, 4


def nflog(p, b, wirelen):
    if len(b) < 4:
        return "[|nflog]", len(b)
    fam, ver, rid = b[0], b[1], u16(b, 2)
    text = ""
    if p.e:
        text = f"version {ver}, resource ID {rid}, family {AF_NAMES.get(fam, 'Unknown')} ({fam}), length {wirelen}: "
    off = 4
    while off + 4 <= len(b):
        tlen = int.from_bytes(b[off:off + 2], "little")
        ttype = int.from_bytes(b[off + 2:off + 4], "little")
        if tlen < 4:
            break
        if ttype == 9:
            data = b[off + 4:off + tlen]
            if fam == 2:
                return text + net.ipv4(p, data, len(data)), off + 4
            if fam == 10:
                return text + net.ipv6(p, data, len(data)), off + 4
            break
        off += (tlen + 3) & ~3
    return None, 4


ARC_TYPES = {0xF0: "oldip", 0xF1: "oldarp", 0xD4: "ip", 0xD5: "arp", 0xD6: "rarp", 0xC4: "ipv6", 0xDD: "atalk"}


def arcnet_linux(p, b, wirelen):
    if len(b) < 5:
        return "[|arcnet]", len(b)
    typ = b[4]
    hdr = 5 if typ in (0xF0, 0xF1) else 8
    text = ""
    if p.e:
        text = f"{b[0]:02x} {b[1]:02x} {ARC_TYPES.get(b[2], f'{b[2]:02x}')} {wirelen}: "
    data = b[hdr:]
    if typ in (0xF0, 0xD4, 0xC4):
        return _ip_after(p, text, typ != 0xC4, b, wirelen, hdr)
    if typ in (0xF1, 0xD5):
        return text + net.arp(p, data, wirelen - hdr), hdr
    if typ == 0xD6:
        return text + net.arp(p, data, wirelen - hdr, rarp=True), hdr
    return None, hdr


def ipoib(p, b, wirelen):
    if len(b) < 44:
        return "[|ipoib]", len(b)
    etype = u16(b, 40)
    text = f"IPOIB, ethertype {ethertype_name(etype)} (0x{etype:04x}), length {wirelen}: " if p.e else ""
    body = by_ethertype(p, etype, b[44:], wirelen - 44)
    return (None if body is None else text + body), 44


def ipnet(p, b, wirelen):
    if len(b) < 24:
        return "[|ipnet]", len(b)
    fam = b[1]
    text = ""
    if p.e:
        text = f"{u32(b, 16)} > {u32(b, 20)}, family {({2: 'IPv4', 26: 'IPv6'}).get(fam, 'Unknown')} ({fam}), length {wirelen}: "
    if fam == 2:
        return text + net.ipv4(p, b[24:], wirelen - 24), 24
    if fam == 26:
        return text + net.ipv6(p, b[24:], wirelen - 24), 24
    return None, 24


def frame_relay(p, b, wirelen):
    if len(b) < 4 or b[0] & 1 or not b[1] & 1:
        return None, 0
    dlci = ((b[0] & 0xFC) << 2) | (b[1] >> 4)
    flags = ", ".join(n for ok, n in ((b[0] & 0x02, "C!"), (b[1] & 0x02, "DE"), (b[1] & 0x04, "BECN"),
                                      (b[1] & 0x08, "FECN")) if ok) or "none"
    head = f"Q.922, hdr-len 2, DLCI {dlci}, Flags [{flags}], "
    if b[2] == 0x03:
        nlpid = b[3]
        kind = {0xCC: (0x0800, "IP"), 0x8E: (0x86DD, "IPv6")}.get(nlpid)
        if kind is None:
            return None, 4
        text = head + f"NLPID {kind[1]} (0x{nlpid:02x}), length {wirelen}: " if p.e else ""
        return text + by_ethertype(p, kind[0], b[4:], wirelen - 4), 4
    etype = u16(b, 2)
    body = by_ethertype(p, etype, b[4:], wirelen - 4)
    if body is None:
        return None, 4
    text = head + f"cisco-ethertype {ethertype_name(etype)} (0x{etype:04x}), length {wirelen}: " if p.e else ""
    return text + body, 4


#: link type -> printer(p, bytes, wirelen) giving (text, link-header length)
PRINTERS = {
    1: ethernet, 113: sll, 276: sll2, 0: null, 108: lambda p, b, w: null(p, b, w, loop=True),
    101: raw, 12: raw, 14: raw, 228: lambda p, b, w: raw(p, b, w, 4), 229: lambda p, b, w: raw(p, b, w, 6),
    105: wlan.bare, 127: wlan.radiotap,
    9: ppp, 50: ppp, 104: chdlc, 239: nflog, 129: arcnet_linux, 242: ipoib, 226: ipnet, 107: frame_relay,
}


def describe(p, linktype, b, wirelen):
    """(text, link-header length) for one packet; None text: tcpdump's unsupported form."""
    printer = PRINTERS.get(linktype)
    if printer is not None:
        return printer(p, b, wirelen)
    # Divergence: tcpdump has printers for many more link types (ARCnet, IPoIB, DSA tags, ...);
    # pfilter prints them as tcpdump prints a link type it cannot decode.
    return None, len(b)


__all__ = ["describe", "ETHERTYPE_NAMES"]
