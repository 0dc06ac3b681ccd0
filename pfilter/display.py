"""One-line packet summaries in the manner of `tcpdump -n`, decoded with dpkt, for the CLI's
output without -w.

Imports dpkt only (no other pfilter layer). Display is for people, not the hot path: one dpkt
decode per printed packet (link layer, IPv4/IPv6, TCP/UDP/ICMP/ICMPv6). The lines follow
tcpdump's shape (time, protocol family, addresses and ports, protocol, length) without its full
protocol dissection; a packet dpkt cannot decode is described from its raw headers, so every
packet still gets a line, never an exception.
"""
import socket
import struct
import time

import dpkt

TCP_FLAGS = ((dpkt.tcp.TH_FIN, "F"), (dpkt.tcp.TH_SYN, "S"), (dpkt.tcp.TH_RST, "R"),
             (dpkt.tcp.TH_PUSH, "P"), (dpkt.tcp.TH_URG, "U"), (dpkt.tcp.TH_ECE, "E"),
             (dpkt.tcp.TH_CWR, "W"))
ICMP_TYPES = {0: "echo reply", 3: "unreachable", 4: "source quench", 5: "redirect", 8: "echo request",
              9: "router advertisement", 10: "router solicitation", 11: "time exceeded",
              12: "parameter problem", 13: "time stamp request", 14: "time stamp reply"}
ICMP6_TYPES = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded",
               4: "parameter problem", 128: "echo request", 129: "echo reply",
               133: "router solicitation", 134: "router advertisement",
               135: "neighbor solicitation", 136: "neighbor advertisement", 137: "redirect"}
ETHERTYPES = {0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q", 0x88A8: "802.1Q-QinQ",
              0x8847: "MPLS unicast", 0x8848: "MPLS multicast", 0x8863: "PPPoE D", 0x8864: "PPPoE S",
              0x88CC: "LLDP", 0x8035: "RARP", 0x809B: "AppleTalk", 0x6003: "DN"}


def format_time(ts_ns, resolution="us"):
    """Local time of day as tcpdump prints it: HH:MM:SS.ffffff (or 9 digits for ns)."""
    sec, frac = divmod(int(ts_ns), 1_000_000_000)
    try:
        tm = time.localtime(sec)
        hms = f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
    except (OverflowError, OSError, ValueError):
        hms = f"{sec}"
    return f"{hms}.{frac:09d}" if resolution == "ns" else f"{hms}.{frac // 1000:06d}"


def _ip4(b):
    return socket.inet_ntop(socket.AF_INET, b)


def _ip6(b):
    return socket.inet_ntop(socket.AF_INET6, b)


def _tcp_flags(flags):
    s = "".join(c for bit, c in TCP_FLAGS if flags & bit)
    if flags & dpkt.tcp.TH_ACK:
        s += "."
    return s or "none"


def _transport(proto, payload, src, dst, plen, family):
    """The text after 'IP ' / 'IP6 ' for a transport payload (bytes)."""
    if proto == 6 and len(payload) >= 20:
        sport, dport, _seq, _ack, off_flags = struct.unpack("!HHIIH", payload[:14])
        hlen = (off_flags >> 12) * 4
        return (f"{src}.{sport} > {dst}.{dport}: Flags [{_tcp_flags(off_flags & 0xFF)}], "
                f"length {max(0, plen - hlen)}")
    if proto == 17 and len(payload) >= 8:
        sport, dport, ulen = struct.unpack("!HHH", payload[:6])
        return f"{src}.{sport} > {dst}.{dport}: UDP, length {max(0, ulen - 8)}"
    if proto == 1 and len(payload) >= 4:
        t, code = payload[0], payload[1]
        name = ICMP_TYPES.get(t, f"type {t}")
        extra = ""
        if t in (0, 8) and len(payload) >= 8:
            ident, seq = struct.unpack("!HH", payload[4:8])
            extra = f", id {ident}, seq {seq}"
        elif t == 3:
            name = f"unreachable code {code}"
        return f"{src} > {dst}: ICMP {name}{extra}, length {plen}"
    if proto == 58 and len(payload) >= 4:
        t = payload[0]
        return f"{src} > {dst}: ICMP6, {ICMP6_TYPES.get(t, f'type {t}')}, length {plen}"
    names = {2: "igmp", 47: "GREv0", 50: "ESP", 51: "AH", 89: "OSPFv2", 103: "PIMv2", 112: "VRRPv2",
             132: "sctp"}
    return f"{src} > {dst}: {names.get(proto, f'ip-proto-{proto}')} {plen}"


def _ipv4(data):
    if len(data) < 20 or data[0] >> 4 != 4:
        return f"IP truncated-ip, length {len(data)}"
    ihl = (data[0] & 0x0F) * 4
    total = struct.unpack("!H", data[2:4])[0]
    frag = struct.unpack("!H", data[6:8])[0]
    proto = data[9]
    src, dst = _ip4(data[12:16]), _ip4(data[16:20])
    plen = max(0, total - ihl)
    if frag & 0x1FFF:
        return f"IP {src} > {dst}: ip-proto-{proto} (fragment offset {(frag & 0x1FFF) * 8}), length {plen}"
    return "IP " + _transport(proto, data[ihl:], src, dst, plen, 4)


def _ipv6(data):
    if len(data) < 40 or data[0] >> 4 != 6:
        return f"IP6 version error: {data[0] >> 4 if data else 0} != 6"
    plen = struct.unpack("!H", data[4:6])[0]
    nxt = data[6]
    src, dst = _ip6(data[8:24]), _ip6(data[24:40])
    off = 40
    while nxt in (0, 43, 60) and len(data) >= off + 8:   # hop-by-hop, routing, destination options
        nxt, hlen = data[off], (data[off + 1] + 1) * 8
        plen -= hlen
        off += hlen
    return "IP6 " + _transport(nxt, data[off:], src, dst, max(0, plen), 6)


def _arp(data):
    try:
        arp = dpkt.arp.ARP(data)
    except (dpkt.UnpackError, struct.error):
        return f"ARP, truncated, length {len(data)}"
    if arp.pro == 0x0800 and len(arp.spa) == 4 and len(arp.tpa) == 4:
        if arp.op == dpkt.arp.ARP_OP_REQUEST:
            return f"ARP, Request who-has {_ip4(arp.tpa)} tell {_ip4(arp.spa)}, length {len(data)}"
        if arp.op == dpkt.arp.ARP_OP_REPLY:
            mac = ":".join(f"{b:02x}" for b in arp.sha)
            return f"ARP, Reply {_ip4(arp.spa)} is-at {mac}, length {len(data)}"
    return f"ARP, op {arp.op}, length {len(data)}"


def _by_ethertype(etype, data, wirelen):
    if etype == 0x0800:
        return _ipv4(data)
    if etype == 0x86DD:
        return _ipv6(data)
    if etype in (0x0806, 0x8035):
        return _arp(data)
    name = ETHERTYPES.get(etype)
    return f"ethertype {name or f'Unknown (0x{etype:04x})'}, length {wirelen}"


def _ethernet(data, wirelen):
    if len(data) < 14:
        return f"[|ether], length {wirelen}"
    etype = struct.unpack("!H", data[12:14])[0]
    off = 14
    while etype in (0x8100, 0x88A8, 0x9100) and len(data) >= off + 4:
        etype = struct.unpack("!H", data[off + 2:off + 4])[0]
        off += 4
    if etype <= 1500:
        return f"802.3, length {wirelen}: LLC"
    return _by_ethertype(etype, data[off:], wirelen)


def _ip_any(data, wirelen):
    if data and data[0] >> 4 == 4:
        return _ipv4(data)
    if data and data[0] >> 4 == 6:
        return _ipv6(data)
    return f"raw, length {wirelen}"


def _dpkt_network(packet, linktype):
    """(EtherType, network-layer dpkt object or bytes) through dpkt's link-layer decoders."""
    if linktype == 1:
        frame = dpkt.ethernet.Ethernet(packet)
        return frame.type, frame.data
    if linktype == 113:
        frame = dpkt.sll.SLL(packet)
        return frame.ethtype, frame.data
    if linktype == 276:
        frame = dpkt.sll2.SLL2(packet)
        return frame.ethtype, frame.data
    if linktype in (0, 108):
        family = struct.unpack("=I", packet[:4])[0]
        return (0x86DD if family in (10, 24, 28, 30) or socket.ntohl(family) in (10, 24, 28, 30)
                else 0x0800), packet[4:]
    if linktype in (101, 12, 14, 228, 229):
        return (0x86DD if packet and packet[0] >> 4 == 6 else 0x0800), packet
    return None, None


def _dpkt_transport(ip, src, dst, plen):
    t = ip.data
    if isinstance(t, dpkt.tcp.TCP):
        return (f"{src}.{t.sport} > {dst}.{t.dport}: Flags [{_tcp_flags(t.flags)}], "
                f"length {max(0, plen - t.off * 4)}")
    if isinstance(t, dpkt.udp.UDP):
        return f"{src}.{t.sport} > {dst}.{t.dport}: UDP, length {max(0, t.ulen - 8)}"
    if isinstance(t, dpkt.icmp.ICMP):
        name = ICMP_TYPES.get(t.type, f"type {t.type}")
        extra = ""
        if t.type in (0, 8) and isinstance(t.data, dpkt.icmp.ICMP.Echo):
            extra = f", id {t.data.id}, seq {t.data.seq}"
        elif t.type == 3:
            name = f"unreachable code {t.code}"
        return f"{src} > {dst}: ICMP {name}{extra}, length {plen}"
    if isinstance(t, dpkt.icmp6.ICMP6):
        return f"{src} > {dst}: ICMP6, {ICMP6_TYPES.get(t.type, f'type {t.type}')}, length {plen}"
    return None


def _describe_dpkt(packet, linktype, wirelen):
    """The description from dpkt's decode, or None where dpkt gives no decoded layer."""
    etype, net = _dpkt_network(packet, linktype)
    if etype is None:
        return None
    if linktype == 1 and etype <= 1500:
        return f"802.3, length {wirelen}: LLC"
    if isinstance(net, bytes):
        net = {0x0800: dpkt.ip.IP, 0x86DD: dpkt.ip6.IP6, 0x0806: dpkt.arp.ARP}.get(etype, bytes)(net)
    if isinstance(net, dpkt.ip.IP):
        if net.offset:          # a later fragment: no transport header to show
            return None
        src, dst = _ip4(net.src), _ip4(net.dst)
        line = _dpkt_transport(net, src, dst, max(0, net.len - net.hl * 4))
        return None if line is None else "IP " + line
    if isinstance(net, dpkt.ip6.IP6):
        src, dst = _ip6(net.src), _ip6(net.dst)
        hdrs = sum(len(bytes(h)) for h in getattr(net, "extension_hdrs", {}).values() if h is not None)
        line = _dpkt_transport(net, src, dst, max(0, net.plen - hdrs))
        return None if line is None else "IP6 " + line
    return None


def describe(packet, linktype, wirelen=None):
    """The part of a tcpdump -n line after the time, for one packet of a link type: dpkt's
    decode where it has one, else a direct reading of the headers."""
    wirelen = len(packet) if wirelen is None else wirelen
    try:
        line = _describe_dpkt(packet, linktype, wirelen)
        if line is not None:
            return line
    except Exception:   # dpkt raises many kinds of errors on short or odd packets: read directly
        pass
    try:
        if linktype == 1:
            return _ethernet(packet, wirelen)
        if linktype in (101, 12, 14, 228, 229):
            return _ip_any(packet, wirelen)
        if linktype in (0, 108) and len(packet) >= 4:
            return _ip_any(packet[4:], wirelen)
        if linktype == 113 and len(packet) >= 16:
            return _by_ethertype(struct.unpack("!H", packet[14:16])[0], packet[16:], wirelen)
        if linktype == 276 and len(packet) >= 20:
            return _by_ethertype(struct.unpack("!H", packet[0:2])[0], packet[20:], wirelen)
        return f"link-type {linktype}, length {wirelen}"
    except (ValueError, struct.error, IndexError, dpkt.UnpackError, OSError) as e:
        return f"[|{type(e).__name__}], length {wirelen}"


def summary(packet, linktype, ts_ns, wirelen=None, resolution="us"):
    """A full tcpdump -n style line: time and description."""
    return f"{format_time(ts_ns, resolution)} {describe(packet, linktype, wirelen)}"


def batch_lines(batch, indices, resolution="us"):
    """Summary lines for the packets `indices` of a PacketBatch."""
    for i in indices:
        i = int(i)
        yield summary(batch.packet(i), batch.linktype_of(i), int(batch.timestamps[i]),
                      int(batch.wirelen[i]), resolution)
