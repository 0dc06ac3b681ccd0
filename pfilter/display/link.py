"""Link layers in tcpdump 4.99's words: Ethernet (-e header, VLAN, MPLS, 802.2 LLC and SNAP,
Novell IPX), Linux cooked v1/v2, NULL/LOOP, raw IP, PPP (DLT_PPP, PPP_SERIAL), Cisco HDLC, NFLOG;
anything else is tcpdump's 'UNSUPPORTED' line with the packet in hex and ASCII. Bytes tcpdump
has no printer for get its default hex and ASCII dump, which -x, -X and -q leave out.

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
    if etype == 0x8137:
        return "(NOV-ETHII) " + ipx(p, b, length)
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


def default_print(p, data):
    """tcpdump's default print of bytes it has no printer for (hex and ASCII), which -x, -X and -q
    turn off (their own dump, or none, takes its place)."""
    if p.x or p.X or p.q:
        return ""
    return hex_lines(data, True)


def ethernet(p, b, wirelen):
    if len(b) < 14:
        return " [|ether]", len(b)
    dst, src = b[0:6], b[6:12]
    etype = u16(b, 12)
    off = 14
    length = wirelen - 14
    if etype == 0x0800 and not p.e:        # the common case first
        return net.ipv4(p, b[14:], length), 14
    text = ""
    printed_length = False
    if p.e:
        text = f"{mac(src)} > {mac(dst)}, "
        if etype > 1500:
            text += f"{_etype_words(p, etype)}, length {wirelen}: "
            printed_length = True
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
    if etype <= 1500:               # a length: an 802.2 LLC header follows (802.3 frame)
        whole = data
        if etype < length:
            length = etype
            data = data[:length]
        if p.e:
            text += "802.3" + ("" if printed_length else f", length {length}: ")
        body, hdr, unknown = llc(p, data, length, mac(src), mac(dst), whole)
        if unknown:
            body += default_print(p, data)
        return text + body, off + hdr
    body = by_ethertype(p, etype, data, length)
    if body is None:
        # an EtherType pfilter does not decode (PTP, IPX, ...) is printed as tcpdump prints one it
        # has no printer for: the Ethernet header, then the bytes in hex (not with -x, -X, -q)
        if not p.e:
            text = f"{mac(src)} > {mac(dst)}, {_etype_words(p, etype)}, length {wirelen}: "
        return text + default_print(p, data), off
    return text + body, off


def _etype_words(p, etype):
    """How tcpdump names an EtherType in a link header: 'ethertype IPv4 (0x0800)', or with -q
    'IPv4' ('Unknown Ethertype (0x....)')."""
    if p.q:
        name = ETHERTYPE_NAMES.get(etype)
        return name if name else f"Unknown Ethertype (0x{etype:04x})"
    return f"ethertype {ethertype_name(etype)} (0x{etype:04x})"


_LLC_CMDS = {0x03: "ui", 0xE3: "test", 0xAF: "xid", 0x63: "ua", 0x43: "disc", 0x0F: "dm", 0x6F: "sabme",
             0x87: "frmr"}
_LLC_FLAGS = {0: "Command", 1: "Response", 0x10: "Poll", 0x11: "Final", 0x100: "Poll", 0x101: "Final"}
_LLC_SUPERVISORY = ("Receiver Ready", "Receiver not Ready", "Reject")


def llc(p, data, length, src=None, dst=None, untrimmed=None):
    """(text, header length, unknown) of an 802.2 LLC frame of `length` bytes (data: its captured
    part), as tcpdump's llc_print: with -e the LLC words, then the protocol after the header; when
    unknown is true the caller adds the default hex dump of data (tcpdump's raw print). src and
    dst: the link addresses printed before a frame without a protocol printer. untrimmed: the
    frame's bytes past an 802.3 length field shorter than them, which STP still reads (as the
    compiled printer does; tcpdump's STP checks differ from both: "(invalid)")."""
    if len(data) < 3 or length < 3:
        return " [|llc]" + hex_lines(data, True), len(data), False
    dsap_f, ssap_f, control = data[0], data[1], data[2]
    if control & 3 == 3:            # U frame: one control byte
        is_u, hdr = True, 3
    else:                           # I and S frames: two, little-endian
        if len(data) < 4 or length < 4:
            return " [|llc]" + hex_lines(data, True), len(data), False
        is_u, hdr = False, 4
        control |= data[3] << 8
    if dsap_f == 0xFF and ssap_f == 0xFF:        # Novell "raw" 802.3 IPX: no LLC header
        return ("IPX 802.3: " if p.e else "") + ipx(p, data, length), 0, False
    dsap, ssap = dsap_f & 0xFE, ssap_f & 0xFE
    text = ""
    if p.e:
        text = (f"LLC, dsap {_sap(dsap)} (0x{dsap:02x}) {'Group' if dsap_f & 1 else 'Individual'}, "
                f"ssap {_sap(ssap)} (0x{ssap:02x}) {'Response' if ssap_f & 1 else 'Command'}, "
                + (f"ctrl 0x{control:02x}: " if is_u else f"ctrl 0x{control:04x}: "))
    rest = data[hdr:]
    left = length - hdr
    if ssap == dsap == 0xAA and control == 0x03:
        body, known = snap(p, rest, left, src, dst)
        return text + body, hdr + 5, not known
    if ssap == dsap == 0x42 and control == 0x03:
        return text + stp((data if untrimmed is None else untrimmed)[hdr:], left), hdr, False
    if ssap == dsap == 0x06 and control == 0x03:
        return text + net.ipv4(p, rest, left), hdr, False
    if ssap == dsap == 0xE0 and control == 0x03:
        return text + ("IPX 802.2: " if p.e else "") + ipx(p, rest, left), hdr, False
    if not p.e:
        if ssap == dsap:
            name = _SAP_NAMES.get(dsap, f"Unknown DSAP 0x{dsap:02x}")
            text += f"{src} > {dst} {name} " if src and dst else f"{name} "
        else:
            sname = _SAP_NAMES.get(ssap, f"Unknown SSAP 0x{ssap:02x}")
            dname = _SAP_NAMES.get(dsap, f"Unknown DSAP 0x{dsap:02x}")
            text += f"{src} {sname} > {dst} {dname} " if src and dst else f"{sname} > {dname} "
    if is_u:
        flags = _LLC_FLAGS.get((ssap_f & 1) | (control & 0x10), "?")
        cmd = _LLC_CMDS.get(control & 0xEF, f"{control & 0xEF:02x}")
        text += f"Unnumbered, {cmd}, Flags [{flags}], length {length}"
        if control & ~0x10 == 0xAF and left and rest and rest[0] == 0x81:     # XID with its format id
            if len(rest) < 3 or left < 3:
                return text + " [|llc]" + hex_lines(rest, True), hdr, False
            return text + f": {rest[1]:02x} {rest[2]:02x}", hdr, False
        return text, hdr, True
    flags = _LLC_FLAGS.get((ssap_f & 1) | (control & 0x100), "?")
    if control & 1:
        cmd = (control >> 2) & 3
        # tcpdump 4.99 prints no raw bytes after a supervisory frame (measured)
        return text + (f"Supervisory, {_LLC_SUPERVISORY[cmd] if cmd < 3 else '?'}, rcv seq {(control >> 9) & 0x7F}, "
                       f"Flags [{flags}], length {length}"), hdr, False
    return text + (f"Information, send seq {(control >> 1) & 0x7F}, rcv seq {(control >> 9) & 0x7F}, "
                   f"Flags [{flags}], length {length}"), hdr, True


_OUI_NAMES = {0x000000: "Ethernet", 0x00000C: "Cisco", 0x00005E: "IANA", 0x000081: "Nortel Networks SONMP",
              0x0000F8: "Cisco bridged", 0x0080C2: "Ethernet bridged", 0x00A03E: "ATM Forum",
              0x00E02F: "DOCSIS Spanning Tree", 0x080007: "Appletalk", 0x009069: "Juniper",
              0x080009: "Hewlett-Packard", 0x00120F: "IEEE 802.3 Private", 0x0012BB: "ANSI/TIA",
              0x001B21: "DCBX", 0x002320: "Nicira Networks", 0x5C16C7: "Big Switch Networks",
              0xB0D2F5: "Vello Systems", 0x002481: "HP", 0x0004EA: "HP-Labs", 0x748771: "Infoblox Inc",
              0xA42305: "Open Networking Lab", 0x00049F: "Freescale", 0x0015AD: "Netronome",
              0x001018: "Broadcom", 0x00E004: "PMC-Sierra", 0xD0F0DB: "Ericsson"}
_CISCO_PIDS = {0x2000: "CDP", 0x2003: "VTP", 0x2004: "DTP", 0x0111: "UDLD", 0x010B: "PVST", 0x010C: "VLAN Bridge"}
_BRIDGED_PIDS = {0x0001: "Ethernet + FCS", 0x0007: "Ethernet w/o FCS", 0x0002: "802.4 + FCS",
                 0x0008: "802.4 w/o FCS", 0x0003: "Token Ring + FCS", 0x0009: "Token Ring w/o FCS",
                 0x0004: "FDDI + FCS", 0x000A: "FDDI w/o FCS", 0x0005: "802.6 + FCS", 0x000B: "802.6 w/o FCS",
                 0x000E: "BPDU"}


def _pid_name(oui, pid):
    if oui in (0x000000, 0x0000F8, 0x080007):
        return ethertype_name(pid)
    return {0x00000C: _CISCO_PIDS, 0x0080C2: _BRIDGED_PIDS}.get(oui, {}).get(pid, "Unknown")


def snap(p, b, length, src=None, dst=None):
    """(text, known) of a SNAP header and what follows, as tcpdump's snap_print: known false
    when tcpdump has no printer for the protocol (its caller then dumps the bytes)."""
    if len(b) < 5 or length < 5:
        return " [|snap]", True
    oui, pid = int.from_bytes(b[0:3], "big"), u16(b, 3)
    text = ""
    if p.e:
        text = (f"oui {_OUI_NAMES.get(oui, 'Unknown')} (0x{oui:06x}), {'ethertype' if oui == 0 else 'pid'} "
                f"{_pid_name(oui, pid)} (0x{pid:04x}), length {length - 5}: ")
    data, left = b[5:], length - 5
    body = None
    if oui in (0x000000, 0x0000F8) or (oui == 0x080007 and pid == 0x809B):
        body = by_ethertype(p, pid, data, left)
    elif oui == 0x00000C:
        if pid == 0x2000 and not p.v:       # -v: CDP's TLVs decoded, not here
            body = cdp(data, left)
        elif pid in (0x010B, 0x010C):
            body = stp(data, left)
    elif oui == 0x0080C2 and pid == 0x000E:
        body = stp(data, left)
    if body is not None:
        return text + body, True
    if not p.e:
        if src and dst:
            text += f"{src} > {dst} "
        if oui == 0:
            text += f"SNAP, ethertype {ethertype_name(pid)} (0x{pid:04x}), length {left}: "
        else:
            text += (f"SNAP, oui {_OUI_NAMES.get(oui, 'Unknown')} (0x{oui:06x}), pid {_pid_name(oui, pid)} "
                     f"(0x{pid:04x}), length {left}: ")
    return text, False


_IPX_SOCKETS = {0x0451: "ipx-ncp", 0x0455: "ipx-netbios", 0x0456: "ipx-diags", 0x0553: "ipx-nwlink-dgm"}


def ipx(p, b, length):
    """tcpdump's IPX line: addresses and sockets, then the socket's name and the data length (SAP,
    RIP and EIGRP's contents are not decoded: their socket number is printed as for any other)."""
    text = "" if p.e else "IPX "
    if len(b) < 30:
        return text + " [|ipx]"
    text += (f"{u32(b, 18):08x}.{mac(b[22:28])}.{u16(b, 28):04x} > "
             f"{u32(b, 6):08x}.{mac(b[10:16])}.{u16(b, 16):04x}: ")
    n = u16(b, 2)
    if n < 30:
        return text + f"[length {n} < 30] (invalid)"
    skt = u16(b, 16)
    return text + f"{_IPX_SOCKETS.get(skt, f'ipx-#{skt:x}')} {n - 30}"


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


#: tcpdump's names of the LLC SAPs (llc_values)
_SAP_NAMES = {0x00: "Null", 0xFF: "Global", 0x02: "802.1B I", 0x03: "802.1B G", 0x06: "IP", 0x04: "SNA",
              0x0E: "ProWay NM", 0x42: "STP", 0x4E: "RS511", 0x7E: "ISO8208", 0x8E: "ProWay", 0xAA: "SNAP",
              0xE0: "IPX", 0xF0: "NetBeui", 0xFE: "OSI"}


def _sap(s):
    return _SAP_NAMES.get(s, "Unknown")


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
    if proto == 4:          # 802.2 LLC
        body, llc_hdr, unknown = llc(p, data, wirelen - hdr)
        return text + body + (default_print(p, data) if unknown else ""), hdr + llc_hdr
    if proto == 1:          # Novell 802.3 IPX, no LLC header
        return text + ipx(p, data, wirelen - hdr), hdr
    body = by_ethertype(p, proto, data, wirelen - hdr) if proto > 1500 else None
    return text + (default_print(p, data) if body is None else body), hdr


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
#: the BSD address families DLT_NULL and DLT_LOOP carry, as tcpdump names them (bsd_af_values)
BSD_AF_NAMES = {2: "IPv4", 6: "NS", 7: "ISO", 16: "Appletalk", 23: "IPX", 24: "IPv6", 28: "IPv6", 30: "IPv6"}


def null(p, b, wirelen, loop=False):
    """DLT_NULL and DLT_LOOP alike, as tcpdump reads them: the family in host (little-endian)
    order, byte-swapped when its upper 16 bits are set (a capture from the other byte order,
    or LOOP's network order)."""
    if len(b) < 4:
        return "[|null]", len(b)
    fam = int.from_bytes(b[:4], "little")
    if fam & 0xFFFF0000:
        fam = int.from_bytes(b[:4], "big")
    name = BSD_AF_NAMES.get(fam)
    if p.q:
        head = f"{name or f'Unknown AF {fam}'}, length {wirelen}: "
    else:
        head = f"AF {name or 'Unknown'} ({fam}), length {wirelen}: "
    data = b[4:]
    if name == "IPv4":
        return (head if p.e else "") + net.ipv4(p, data, wirelen - 4), 4
    if name == "IPv6":
        return (head if p.e else "") + net.ipv6(p, data, wirelen - 4), 4
    if name == "IPX":
        return (head if p.e else "") + ipx(p, data, wirelen - 4), 4
    # Divergence: ISO (CLNS) and Appletalk are not decoded; printed as an unknown family
    return head + default_print(p, data), 4


def raw(p, b, wirelen, version=None):
    text = "ip: " if p.e else ""
    if not b:
        return text + "[|ip]", 0
    v = version or b[0] >> 4
    if v == 6:
        return text + net.ipv6(p, b, wirelen), 0
    return text + net.ipv4(p, b, wirelen), 0


#: tcpdump's names of the PPP protocols (ppptype2str)
PPP_PROTOS = {0x0021: "IP", 0x0023: "OSI", 0x0025: "NS", 0x0027: "DECNET", 0x0029: "APPLE", 0x002B: "IPX",
              0x002D: "VJC IP", 0x002F: "VJNC IP", 0x0031: "BRPDU", 0x0033: "STII", 0x0035: "VINES",
              0x0281: "MPLS", 0x0283: "MPLS", 0x00FD: "Compressed", 0x003D: "MLPPP", 0x0057: "IP6",
              0x0201: "HELLO", 0x0231: "LUXCOM", 0x0233: "SNS", 0x8021: "IPCP", 0x8023: "OSICP", 0x8025: "NSCP",
              0x8027: "DECNETCP", 0x8029: "APPLECP", 0x802B: "IPXCP", 0x8033: "STIICP", 0x8035: "VINESCP",
              0x8057: "IP6CP", 0x8281: "MPLSCP", 0xC021: "LCP", 0xC023: "PAP", 0xC025: "LQM", 0xC223: "CHAP",
              0xC227: "EAP", 0xC027: "SPAP", 0xC123: "Old-SPAP", 0xC02B: "BACP", 0xC02D: "BAP",
              0xC03D: "MLPPP-CP", 0x80FD: "CCP"}
#: the control protocols' codes (cpcodes)
PPP_CODES = {0: "Vendor-Extension", 1: "Conf-Request", 2: "Conf-Ack", 3: "Conf-Nack", 4: "Conf-Reject",
             5: "Term-Request", 6: "Term-Ack", 7: "Code-Reject", 8: "Prot-Reject", 9: "Echo-Request",
             10: "Echo-Reply", 11: "Disc-Req", 12: "Ident", 13: "Time-Rem", 14: "Reset-Req", 15: "Reset-Ack"}
_PPP_CTRL = (0xC021, 0x8021, 0x8023, 0x8281, 0x8057, 0x80FD, 0xC02B)


def _ppp_proto(p, proto, b, length):
    """tcpdump's handle_ppp: the text of a PPP payload of protocol `proto`, or None where pfilter
    has no printer and tcpdump has one (PAP, CHAP, multilink, BAP, IPX, OSI)."""
    if proto & 0xFF00 == 0x7E00:        # an HDLC escape: the frame is unescaped and guessed again
        return _ppp_unescape(p, bytes([proto & 0xFF]) + bytes(b))
    if proto in (0x0021, 0x0800, 0x002F):
        return net.ipv4(p, b, length)
    if proto in (0x0057, 0x86DD):
        return net.ipv6(p, b, length)
    if proto in (0x0281, 0x0283):
        return mpls(p, b, length)
    if proto == 0x00FD:
        return "compressed PPP data"
    if proto in _PPP_CTRL:
        if p.v:                         # -v: the options decoded, not here
            return None
        text = PPP_PROTOS[proto] + ", "
        if length < 4 or len(b) < 2:
            return text + " [|ppp]"
        return text + f"{PPP_CODES.get(b[0], 'Unknown Opcode')} (0x{b[0]:02x}), id {b[1]}, length {length + 2}"
    if proto in (0xC023, 0xC223, 0x003D, 0xC02D, 0x002B, 0x8137, 0x0023):
        return None
    name = PPP_PROTOS.get(proto, f"unknown PPP protocol (0x{proto:04x})")
    return f"{name} " + hex_lines(b[:max(length, 0)], False)


def _ppp_unescape(p, b):
    """tcpdump's ppp_hdlc: the bytes from the escape's second byte on, with the
    0x7d escapes undone, then a guess at a protocol: one byte (IP, IPv6), an ff03 header, or two."""
    src = bytes(b)
    out = bytearray()
    i = 0
    while i < len(src):
        c = src[i]
        if c == 0x7D:
            if i + 1 >= len(src):
                break
            i += 1
            c = src[i] ^ 0x20
        out.append(c)
        i += 1
    n = len(out)
    if n < 1:
        return " [|ppp]"
    if out[0] == 0x21:
        return net.ipv4(p, bytes(out[1:]), n - 1)
    if out[0] == 0x57:
        return net.ipv6(p, bytes(out[1:]), n - 1)
    if n < 2:
        return " [|ppp]"
    proto, off = u16(out, 0), 2
    if proto == 0xFF03:
        if n < 4:
            return " [|ppp]"
        proto, off = u16(out, 2), 4
    if proto & 0xFF00 == 0x7E00:
        return f"(protocol 0x{proto:04x} invalid)"
    return _ppp_proto(p, proto, bytes(out[off:]), n - off)


def ppp(p, b, wirelen, hdlc=True):
    """DLT_PPP (tcpdump's ppp_if_print: an optional ff03 or pppd direction header, a one- or two-byte
    protocol; -x leaves out 4 bytes whatever the header's length)."""
    if len(b) < 4:
        return " [|ppp]", len(b)
    off = 0
    text = ""
    head = u16(b, 0)
    if head in (0x0003, 0x0103, 0xFF03):
        if p.e and head != 0xFF03:
            text = "In  " if head == 0x0003 else "Out "
        off = 2
    if b[off] & 1:
        proto = b[off]
        off += 1
    else:
        proto = u16(b, off)
        off += 2
    if p.e:
        name = PPP_PROTOS.get(proto)
        text += f"{name or 'unknown'} (0x{proto:04x}), length {wirelen}"
        if name is None:
            return text, 4
        text += ": "
    body = _ppp_proto(p, proto, b[off:], wirelen - off)
    return (None if body is None else text + body), 4


def ppp_serial(p, b, wirelen):
    """DLT_PPP_SERIAL (tcpdump's ppp_hdlc_if_print): ff03 and a two-byte protocol, or Cisco HDLC."""
    if len(b) < 2:
        return " [|ppp_hdlc]", len(b)
    if b[0] in (0x0F, 0x8F):
        return chdlc(p, b, wirelen)
    if len(b) < 4:
        return " [|ppp_hdlc]", len(b)
    text = f"{b[0]:02x} {b[1]:02x} {wirelen} " if p.e else ""
    if b[0] != 0xFF:
        return text + f"unknown addr {b[2]:02x}; ctrl {b[3]:02x}", 4
    proto = u16(b, 2)
    body = _ppp_proto(p, proto, b[4:], wirelen - 4)
    if body is None:
        return None, 4
    return text + PPP_PROTOS.get(proto, f"unknown PPP protocol (0x{proto:04x})") + ": " + body, 4


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
    9: ppp, 50: ppp_serial, 104: chdlc, 239: nflog, 129: arcnet_linux, 242: ipoib, 226: ipnet, 107: frame_relay,
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
