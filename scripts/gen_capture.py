#!/usr/bin/env python3
"""Generate realistic synthetic Ethernet captures (pcap or pcapng), fast enough for benchmarks.

A standalone script outside the package: it imports dpkt and numpy only, never pfilter, so the
captures it makes can test pfilter without trusting it. Importable too (`generate()`, `Templates`).

How it stays fast: dpkt builds a few thousand distinct template frames once (`build_templates`);
the records are then drawn from those templates with numpy (which template, timestamps, a fresh
IPv4 identification with its header checksum patched incrementally, RFC 1624) and written in
chunks with one bytes join per chunk. 2M packets (about 1 GB) take seconds, not minutes.

Traffic mix (shares of packets, approximately): IPv4 about 70% (TCP to 80/443/22/25/3306/8080 and
high ports, UDP DNS/NTP/mDNS/QUIC/syslog/SNMP, ICMP echo/unreachable/time exceeded, some IPv4
fragments and IP options), IPv6 about 20% (TCP, UDP, DNS, ICMPv6 echo and neighbour discovery),
ARP about 4%, 802.3 LLC (STP) about 1%; about 5% of frames carry an 802.1Q VLAN tag. Frame sizes
run from 42-byte ARP frames to 1514-byte full-size segments (1518 tagged); half of the short
frames are padded to Ethernet's 60-byte minimum, as a receiving NIC delivers them.

Hosts: IPv4 clients 10.0.0.1-10.0.0.100 and 10.0.1.1-10.0.1.100, servers 192.0.2.1-40,
198.51.100.1-40 and 203.0.113.1-20, resolvers 10.0.255.53 and 192.0.2.53; IPv6 clients
2001:db8:0:1::1-64 (hex), servers 2001:db8:0:ff::1-28 (hex). Host popularity is Zipf-like, so a
filter naming twenty of these hosts matches some packets but not most.

The output depends only on the arguments (seed, packets, format options) and GENERATOR_VERSION;
change GENERATOR_VERSION whenever the output for the same arguments changes.

    python3 scripts/gen_capture.py --packets 2000000 --seed 1 --out big.pcap
"""
import argparse
import ipaddress
import random
import struct
import sys
import time

import dpkt
import numpy as np

GENERATOR_VERSION = 1
DEFAULT_SEED = 1
DEFAULT_TEMPLATES = 4096
DEFAULT_SNAPLEN = 262144
LINKTYPE_ETHERNET = 1
EPOCH_NS = 1_700_000_000 * 10**9          # 2023-11-14T22:13:20Z, the first packet's time
MEAN_GAP_NS = 25_000                      # mean inter-arrival time: 40k packets per second
CHUNK = 1 << 17                           # records drawn and written per chunk (fixed: output depends on it)
VLAN_SHARE = 0.05
VLAN_IDS = (10, 20, 30, 100, 200)
IP_OPTIONS_SHARE = 0.01
MTU_PAYLOAD_TCP4 = 1460
MTU_PAYLOAD_TCP6 = 1440

_IPV4_CLIENTS = [f"10.0.{net}.{host}" for net in (0, 1) for host in range(1, 101)]
_IPV4_SERVERS = ([f"192.0.2.{h}" for h in range(1, 41)] + [f"198.51.100.{h}" for h in range(1, 41)]
                 + [f"203.0.113.{h}" for h in range(1, 21)])
_IPV4_RESOLVERS = ["10.0.255.53", "192.0.2.53"]
_IPV6_CLIENTS = [f"2001:db8:0:1::{h:x}" for h in range(1, 101)]
_IPV6_SERVERS = [f"2001:db8:0:ff::{h:x}" for h in range(1, 41)]
_IPV6_RESOLVER = "2001:db8:0:ff::35"
_ROUTER_MAC = bytes.fromhex("02005e0000fe")
_BROADCAST_MAC = b"\xff" * 6
_DNS_NAMES = ["example.com", "www.example.org", "cdn.example.net", "mail.example.com",
              "api.example.io", "static.example.org", "login.example.com", "time.example.net",
              "a-very-long-subdomain.of.some.service.example.co.uk", "printer.local"]
_USER_AGENTS = ["curl/8.4.0", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
                "python-requests/2.31.0", "Wget/1.21.4"]


def _zipf_choice(rnd, items, exponent=1.0):
    """Pick from items with weight 1/(rank+1)^exponent: a few busy hosts, many quiet ones."""
    weights = [1.0 / (rank + 1) ** exponent for rank in range(len(items))]
    return rnd.choices(items, weights)[0]


def _mac_of(addr):
    """A stable locally administered MAC for a host address; off-link hosts sit behind the router."""
    ip = ipaddress.ip_address(addr)
    if ip.version == 4 and not ip.is_private:
        return _ROUTER_MAC
    if ip.version == 6 and not str(ip).startswith("2001:db8:0:1:"):
        return _ROUTER_MAC
    digest = (int(ip) * 0x9E3779B97F4A7C15) & 0xFFFFFFFF
    return b"\x02\x00" + digest.to_bytes(4, "big")


def _ether(src_mac, dst_mac, ethertype, payload):
    return bytes(dpkt.ethernet.Ethernet(src=src_mac, dst=dst_mac, type=ethertype, data=payload))


def _ipv4(src, dst, proto, l4, rnd, ttl=None, ip_options=b"", fragment=None, ident=None):
    """An IPv4 packet (dpkt computes the IP and TCP/UDP checksums); l4 is a dpkt object or bytes;
    fragment is None (an unfragmented datagram, DF set) or (more_fragments, offset_in_8_byte_units)."""
    ip = dpkt.ip.IP(src=ipaddress.IPv4Address(src).packed, dst=ipaddress.IPv4Address(dst).packed,
                    p=proto, ttl=ttl or rnd.choice((64, 128, 255, 57, 118)),
                    id=rnd.randrange(65536) if ident is None else ident,
                    data=l4)
    if fragment is None:
        ip.df = 1
    else:
        ip.mf, ip.offset = int(fragment[0]), fragment[1]
    if ip_options:
        ip.opts = ip_options
        ip.hl = 5 + len(ip_options) // 4
    return ip


def _ipv6(src, dst, nxt, l4, rnd):
    plen = len(bytes(l4))
    return dpkt.ip6.IP6(src=ipaddress.IPv6Address(src).packed, dst=ipaddress.IPv6Address(dst).packed,
                        nxt=nxt, hlim=rnd.choice((64, 255, 57)), plen=plen, data=l4)


def _tcp(sport, dport, flags, payload, rnd, syn_options=False):
    opts = b""
    if syn_options:
        # MSS 1460, SACK permitted, timestamps, NOP, window scale 7: 20 bytes of options
        opts = (b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + rnd.randrange(1 << 32).to_bytes(4, "big")
                + b"\x00\x00\x00\x00\x01\x03\x03\x07")
    return dpkt.tcp.TCP(sport=sport, dport=dport, seq=rnd.randrange(1 << 32),
                        ack=rnd.randrange(1 << 32) if flags & dpkt.tcp.TH_ACK else 0,
                        flags=flags, win=rnd.choice((502, 64240, 65535, 1024, 29200)),
                        off=5 + len(opts) // 4, opts=opts, data=payload)


def _udp(sport, dport, payload):
    return dpkt.udp.UDP(sport=sport, dport=dport, ulen=8 + len(payload), data=payload)


def _filler(rnd, n):
    return rnd.randbytes(n)


def _http_request(rnd):
    path = rnd.choice(("/", "/index.html", "/api/v1/items?page=2", "/static/app.js", "/favicon.ico"))
    host = rnd.choice(_DNS_NAMES)
    text = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {rnd.choice(_USER_AGENTS)}\r\n"
            f"Accept: */*\r\nAccept-Encoding: gzip, deflate\r\nConnection: keep-alive\r\n\r\n")
    return text.encode()


def _http_response(rnd, size):
    head = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Content-Length: 48213\r\nConnection: keep-alive\r\n\r\n")
    body = (b"<html><body>" + b"<p>lorem ipsum dolor sit amet</p>" * 60)
    data = head + body
    while len(data) < size:
        data += body
    return data[:size]


def _tls_record(rnd, size):
    """A TLS 1.2/1.3 application-data record: a 5-byte header then opaque bytes."""
    size = max(size, 6)
    return b"\x17\x03\x03" + (size - 5).to_bytes(2, "big") + _filler(rnd, size - 5)


def _dns_message(rnd, response):
    name = rnd.choice(_DNS_NAMES)
    qtype = rnd.choice((dpkt.dns.DNS_A, dpkt.dns.DNS_A, dpkt.dns.DNS_AAAA))
    msg = dpkt.dns.DNS(id=rnd.randrange(65536), qd=[dpkt.dns.DNS.Q(name=name, type=qtype)])
    if response:
        msg.op = dpkt.dns.DNS_RA | dpkt.dns.DNS_RD
        msg.qr = dpkt.dns.DNS_R
        answers = []
        for _ in range(rnd.randint(1, 4)):
            if qtype == dpkt.dns.DNS_A:
                answers.append(dpkt.dns.DNS.RR(name=name, type=qtype, ttl=rnd.randrange(30, 86400),
                                               rdata=rnd.randbytes(4)))
            else:
                answers.append(dpkt.dns.DNS.RR(name=name, type=qtype, ttl=rnd.randrange(30, 86400),
                                               rdata=b"\x20\x01\x0d\xb8" + rnd.randbytes(12)))
        msg.an = answers
    else:
        msg.op = dpkt.dns.DNS_RD
    return bytes(msg)


def _ber(tag, content):
    """One short-form BER TLV (content under 128 bytes)."""
    return bytes((tag, len(content))) + content


def _snmp_message(rnd, response):
    """An SNMPv2c get-request (or its response) for sysUpTime.0, community "public"."""
    value = _ber(0x43, rnd.randrange(1 << 31).to_bytes(4, "big")) if response else b"\x05\x00"
    varbind = _ber(0x30, _ber(0x06, bytes.fromhex("2b06010201010300")) + value)
    pdu = _ber(0xA2 if response else 0xA0,
               _ber(0x02, rnd.randrange(1 << 31).to_bytes(4, "big")) + _ber(0x02, b"\x00")
               + _ber(0x02, b"\x00") + _ber(0x30, varbind))
    return _ber(0x30, _ber(0x02, b"\x01") + _ber(0x04, b"public") + pdu)


class _Frame:
    """One template frame under construction: the bytes and where its IPv4 header starts (or -1)."""

    __slots__ = ("data", "ip4_offset")

    def __init__(self, data, ip4_offset=-1):
        self.data = data
        self.ip4_offset = ip4_offset


def _ip_frame(src, dst, ip_pkt, v6):
    ethertype = dpkt.ethernet.ETH_TYPE_IP6 if v6 else dpkt.ethernet.ETH_TYPE_IP
    frame = _ether(_mac_of(src), _mac_of(dst), ethertype, bytes(ip_pkt))
    return _Frame(frame, -1 if v6 else 14)


def _pick_pair(rnd, v6, to_server):
    """(src, dst) for one packet of a client-server conversation in the given direction."""
    if v6:
        client, server = _zipf_choice(rnd, _IPV6_CLIENTS), _zipf_choice(rnd, _IPV6_SERVERS)
    else:
        client, server = _zipf_choice(rnd, _IPV4_CLIENTS), _zipf_choice(rnd, _IPV4_SERVERS)
    return (client, server) if to_server else (server, client)


def _tcp_template(rnd, v6, service_port):
    """A TCP segment of a conversation with service_port: request, full-size response, ACK or SYN."""
    mss = MTU_PAYLOAD_TCP6 if v6 else MTU_PAYLOAD_TCP4
    ephemeral = rnd.randrange(32768, 61000)
    roll = rnd.random()
    flags = dpkt.tcp.TH_ACK
    syn = False
    if roll < 0.30:
        to_server = True
        flags |= dpkt.tcp.TH_PUSH
        if service_port == 80 or service_port == 8080:
            payload = _http_request(rnd)
        elif service_port == 443:
            payload = _tls_record(rnd, rnd.randrange(80, 700))
        else:
            payload = _filler(rnd, rnd.randrange(1, 600))
    elif roll < 0.68:
        to_server = False
        size = mss if rnd.random() < 0.75 else rnd.randrange(1, mss)
        if size < mss:
            flags |= dpkt.tcp.TH_PUSH
        if service_port == 80 or service_port == 8080:
            payload = _http_response(rnd, size)
        elif service_port == 443:
            payload = _tls_record(rnd, size)
        else:
            payload = _filler(rnd, size)
    elif roll < 0.93:
        to_server = rnd.random() < 0.7
        payload = b""
    else:
        to_server = rnd.random() < 0.5
        payload = b""
        flags = rnd.choice((dpkt.tcp.TH_SYN, dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK,
                            dpkt.tcp.TH_FIN | dpkt.tcp.TH_ACK, dpkt.tcp.TH_RST,
                            dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK))
        syn = bool(flags & dpkt.tcp.TH_SYN)
    src, dst = _pick_pair(rnd, v6, to_server)
    sport, dport = (ephemeral, service_port) if to_server else (service_port, ephemeral)
    seg = _tcp(sport, dport, flags, payload, rnd, syn_options=syn)
    if v6:
        return _ip_frame(src, dst, _ipv6(src, dst, dpkt.ip.IP_PROTO_TCP, seg, rnd), True)
    options = b"\x94\x04\x00\x00" if rnd.random() < IP_OPTIONS_SHARE * 3 else b""
    return _ip_frame(src, dst, _ipv4(src, dst, dpkt.ip.IP_PROTO_TCP, seg, rnd, ip_options=options), False)


def _tcp_service(rnd):
    return rnd.choices((80, 443, 22, 25, 3306, 8080, 5432, rnd.randrange(1024, 65535)),
                       (25, 45, 6, 3, 3, 6, 2, 10))[0]


def _dns_template(rnd, v6):
    response = rnd.random() < 0.5
    client = _zipf_choice(rnd, _IPV6_CLIENTS if v6 else _IPV4_CLIENTS)
    resolver = _IPV6_RESOLVER if v6 else rnd.choice(_IPV4_RESOLVERS)
    ephemeral = rnd.randrange(1024, 65535)
    payload = _dns_message(rnd, response)
    if response:
        src, dst, seg = resolver, client, _udp(53, ephemeral, payload)
    else:
        src, dst, seg = client, resolver, _udp(ephemeral, 53, payload)
    if v6:
        return _ip_frame(src, dst, _ipv6(src, dst, dpkt.ip.IP_PROTO_UDP, seg, rnd), True)
    return _ip_frame(src, dst, _ipv4(src, dst, dpkt.ip.IP_PROTO_UDP, seg, rnd), False)


def _udp_template(rnd, v6):
    """UDP other than DNS: NTP, mDNS, QUIC, syslog, SNMP, high ports."""
    kind = rnd.choices(("ntp", "mdns", "quic", "syslog", "snmp", "high"), (10, 10, 40, 10, 5, 25))[0]
    to_server = rnd.random() < 0.5
    src, dst = _pick_pair(rnd, v6, to_server)
    ephemeral = rnd.randrange(1024, 65535)
    if kind == "ntp":
        stamps = [rnd.randbytes(8) for _ in range(4)]
        port, payload = 123, bytes(dpkt.ntp.NTP(flags=0x23 if to_server else 0x24, stratum=2, interval=6,
                                                precision=0xE9, id=b"GPS\x00", update_time=stamps[0],
                                                originate_time=stamps[1], receive_time=stamps[2],
                                                transmit_time=stamps[3]))
    elif kind == "mdns":
        port, payload = 5353, _dns_message(rnd, False)
        src, dst = _pick_pair(rnd, v6, True)[0], ("ff02::fb" if v6 else "224.0.0.251")
        ephemeral = 5353
    elif kind == "quic":
        port, payload = 443, _filler(rnd, rnd.choice((1200, 1252, 1350, rnd.randrange(30, 1200))))
    elif kind == "syslog":
        port = 514
        payload = b"<134>Nov 14 22:13:20 host app[1234]: " + _filler(rnd, 40).hex().encode()
    elif kind == "snmp":
        port, payload = 161, _snmp_message(rnd, not to_server)
    else:
        port, payload = rnd.randrange(1024, 65535), _filler(rnd, rnd.randrange(8, 1400 if v6 else 1472))
    if kind == "mdns":
        seg = _udp(5353, 5353, payload)
    elif to_server:
        seg = _udp(ephemeral, port, payload)
    else:
        seg = _udp(port, ephemeral, payload)
    if v6:
        frame = _ip_frame(src, dst, _ipv6(src, dst, dpkt.ip.IP_PROTO_UDP, seg, rnd), True)
    else:
        frame = _ip_frame(src, dst, _ipv4(src, dst, dpkt.ip.IP_PROTO_UDP, seg, rnd), False)
    if kind == "mdns":
        multicast_mac = b"\x33\x33\x00\x00\x00\xfb" if v6 else b"\x01\x00\x5e\x00\x00\xfb"
        frame.data = multicast_mac + frame.data[6:]
    return frame


def _fragment_template(rnd):
    """One fragment of a 4000-byte UDP datagram (first, middle or last): exercises offset tests."""
    src, dst = _pick_pair(rnd, False, rnd.random() < 0.5)
    ident = rnd.randrange(65536)
    datagram = _udp(rnd.randrange(1024, 65535), rnd.choice((2049, 53, 5001, 9000)), _filler(rnd, 3992))
    whole = bytes(_ipv4(src, dst, dpkt.ip.IP_PROTO_UDP, datagram, rnd, ident=ident))[20:]
    piece = rnd.randrange(3)
    start, stop = piece * 1480, min((piece + 1) * 1480, len(whole))
    ip = _ipv4(src, dst, dpkt.ip.IP_PROTO_UDP, whole[start:stop], rnd, fragment=(stop < len(whole), start // 8),
               ident=ident)
    return _Frame(_ether(_mac_of(src), _mac_of(dst), dpkt.ethernet.ETH_TYPE_IP, bytes(ip)), -1)


def _icmp4_template(rnd):
    kind = rnd.choices(("echo", "reply", "unreach", "timxceed"), (40, 40, 12, 8))[0]
    if kind in ("echo", "reply"):
        src, dst = _pick_pair(rnd, False, kind == "echo")
        body = dpkt.icmp.ICMP.Echo(id=rnd.randrange(65536), seq=rnd.randrange(1000),
                                   data=_filler(rnd, rnd.choice((56, 56, 32, 1472))))
        msg = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_ECHO if kind == "echo" else dpkt.icmp.ICMP_ECHOREPLY,
                             data=body)
    else:
        src, dst = _pick_pair(rnd, False, False)
        inner = bytes(_ipv4(dst, src, dpkt.ip.IP_PROTO_UDP, _udp(rnd.randrange(1024, 65535), 33434, b""),
                            rnd))[:28]
        if kind == "unreach":
            msg = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_UNREACH, code=rnd.choice((1, 3, 13)),
                                 data=dpkt.icmp.ICMP.Unreach(data=inner))
        else:
            msg = dpkt.icmp.ICMP(type=dpkt.icmp.ICMP_TIMEXCEED, data=dpkt.icmp.ICMP.TimeExceed(data=inner))
    return _ip_frame(src, dst, _ipv4(src, dst, dpkt.ip.IP_PROTO_ICMP, msg, rnd), False)


def _icmp6_template(rnd):
    kind = rnd.choices(("echo", "reply", "ns", "na"), (30, 30, 25, 15))[0]
    if kind in ("echo", "reply"):
        src, dst = _pick_pair(rnd, True, kind == "echo")
        msg = dpkt.icmp6.ICMP6(type=128 if kind == "echo" else 129,
                               data=dpkt.icmp6.ICMP6.Echo(id=rnd.randrange(65536), seq=rnd.randrange(1000),
                                                          data=_filler(rnd, 56)))
        return _ip_frame(src, dst, _ipv6(src, dst, dpkt.ip.IP_PROTO_ICMP6, msg, rnd), True)
    target = ipaddress.IPv6Address(_zipf_choice(rnd, _IPV6_CLIENTS))
    me = ipaddress.IPv6Address(_zipf_choice(rnd, _IPV6_CLIENTS))
    my_mac = _mac_of(str(me))
    src = "fe80::" + format(int(me) & 0xFFFF, "x")
    if kind == "ns":
        dst = "ff02::1:ff" + format((int(target) >> 16) & 0xFF, "02x") + ":" + format(int(target) & 0xFFFF, "x")
        body = b"\x00\x00\x00\x00" + target.packed + b"\x01\x01" + my_mac
        msg = dpkt.icmp6.ICMP6(type=135, data=body)
        dst_mac = b"\x33\x33" + ipaddress.IPv6Address(dst).packed[-4:]
    else:
        dst = "fe80::" + format(int(target) & 0xFFFF, "x")
        body = b"\x60\x00\x00\x00" + me.packed + b"\x02\x01" + my_mac
        msg = dpkt.icmp6.ICMP6(type=136, data=body)
        dst_mac = _mac_of(str(target))
    ip = _ipv6(src, dst, dpkt.ip.IP_PROTO_ICMP6, msg, rnd)
    ip.hlim = 255
    return _Frame(_ether(my_mac, dst_mac, dpkt.ethernet.ETH_TYPE_IP6, bytes(ip)), -1)


def _arp_template(rnd):
    asker, target = rnd.sample(_IPV4_CLIENTS[:40], 2)
    asker_mac, target_mac = _mac_of(asker), _mac_of(target)
    if rnd.random() < 0.6:
        arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REQUEST, sha=asker_mac, spa=ipaddress.IPv4Address(asker).packed,
                           tha=b"\x00" * 6, tpa=ipaddress.IPv4Address(target).packed)
        return _Frame(_ether(asker_mac, _BROADCAST_MAC, dpkt.ethernet.ETH_TYPE_ARP, bytes(arp)))
    arp = dpkt.arp.ARP(op=dpkt.arp.ARP_OP_REPLY, sha=target_mac, spa=ipaddress.IPv4Address(target).packed,
                       tha=asker_mac, tpa=ipaddress.IPv4Address(asker).packed)
    return _Frame(_ether(target_mac, asker_mac, dpkt.ethernet.ETH_TYPE_ARP, bytes(arp)))


def _stp_template(rnd):
    """An IEEE 802.3 frame (length field, not EtherType) with LLC 0x42/0x42: a spanning-tree BPDU."""
    bridge = _mac_of(_IPV4_CLIENTS[rnd.randrange(4)])
    bpdu = (b"\x00\x00\x00\x00\x00" + b"\x80\x00" + _ROUTER_MAC + b"\x00\x00\x00\x04"
            + b"\x80\x00" + bridge + b"\x80\x01" + b"\x00\x00\x14\x00\x02\x00\x0f\x00")
    llc = b"\x42\x42\x03" + bpdu
    frame = b"\x01\x80\xc2\x00\x00\x00" + bridge + len(llc).to_bytes(2, "big") + llc
    return _Frame(frame)


# (weight, builder): relative shares of template kinds, so of records.
_KINDS = (
    (40.0, lambda rnd: _tcp_template(rnd, False, _tcp_service(rnd))),
    (9.0, lambda rnd: _dns_template(rnd, False)),
    (9.0, lambda rnd: _udp_template(rnd, False)),
    (1.0, _fragment_template),
    (4.0, _icmp4_template),
    (13.0, lambda rnd: _tcp_template(rnd, True, _tcp_service(rnd))),
    (3.0, lambda rnd: _dns_template(rnd, True)),
    (2.5, lambda rnd: _udp_template(rnd, True)),
    (2.5, _icmp6_template),
    (4.0, _arp_template),
    (1.0, _stp_template),
)


class Templates:
    """The distinct frames records are drawn from: frames (list of bytes, truncated to the snaplen),
    wirelen and caplen (uint32 arrays), ip4_offset (int64, start of an IPv4 header whose
    identification may vary per record, or -1)."""

    def __init__(self, frames, wirelen, ip4_offset):
        self.frames = frames
        self.wirelen = np.asarray(wirelen, dtype=np.uint32)
        self.caplen = np.fromiter((len(f) for f in frames), dtype=np.uint32, count=len(frames))
        self.ip4_offset = np.asarray(ip4_offset, dtype=np.int64)

    def __len__(self):
        return len(self.frames)


def build_templates(seed=DEFAULT_SEED, count=DEFAULT_TEMPLATES, snaplen=DEFAULT_SNAPLEN):
    """Build `count` distinct template frames with dpkt, deterministically from `seed`."""
    rnd = random.Random(seed)
    weights = [w for w, _ in _KINDS]
    builders = [b for _, b in _KINDS]
    frames, wirelens, offsets = [], [], []
    for _ in range(count):
        frame = rnd.choices(builders, weights)[0](rnd)
        data, ip4 = frame.data, frame.ip4_offset
        if rnd.random() < VLAN_SHARE:
            tci = (rnd.randrange(8) << 13) | rnd.choice(VLAN_IDS)
            data = data[:12] + b"\x81\x00" + tci.to_bytes(2, "big") + data[12:]
            if ip4 >= 0:
                ip4 += 4
        if len(data) < 60 and rnd.random() < 0.5:
            data += b"\x00" * (60 - len(data))
        wirelens.append(len(data))
        data = data[:snaplen]
        if ip4 >= 0 and ip4 + 20 > len(data):
            ip4 = -1
        frames.append(data)
        offsets.append(ip4)
    return Templates(frames, wirelens, offsets)


def _patch_ip_ids(buf, ip_starts, new_ids):
    """Give the IPv4 headers at byte positions ip_starts of buf (uint8 array) new identification
    values, updating each header checksum incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m'))."""
    if not len(ip_starts):
        return
    old_id = (buf[ip_starts + 4].astype(np.uint32) << 8) | buf[ip_starts + 5]
    old_sum = (buf[ip_starts + 10].astype(np.uint32) << 8) | buf[ip_starts + 11]
    total = (~old_sum & 0xFFFF) + (~old_id & 0xFFFF) + new_ids
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    new_sum = ~total & 0xFFFF
    buf[ip_starts + 4] = new_ids >> 8
    buf[ip_starts + 5] = new_ids & 0xFF
    buf[ip_starts + 10] = new_sum >> 8
    buf[ip_starts + 11] = new_sum & 0xFF


_PCAP_RECORD = np.dtype([("sec", "<u4"), ("frac", "<u4"), ("caplen", "<u4"), ("wirelen", "<u4")])
_EPB_HEADER = np.dtype([("type", "<u4"), ("total", "<u4"), ("interface", "<u4"), ("ts_high", "<u4"),
                        ("ts_low", "<u4"), ("caplen", "<u4"), ("wirelen", "<u4")])


def _pcap_file_header(nanosecond, snaplen):
    magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET)


def _pcapng_preamble(nanosecond, snaplen):
    """Section header block (little-endian, unknown section length) and one Ethernet interface."""
    app = b"pfilter scripts/gen_capture.py v%d" % GENERATOR_VERSION
    app_opt = struct.pack("<HH", 4, len(app)) + app + b"\x00" * (-len(app) % 4)   # shb_userappl
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + app_opt + struct.pack("<HH", 0, 0)
    shb = struct.pack("<II", 0x0A0D0D0A, len(shb_body) + 12) + shb_body + struct.pack("<I", len(shb_body) + 12)
    tsresol = struct.pack("<HHB3x", 9, 1, 9 if nanosecond else 6)                 # if_tsresol
    idb_body = struct.pack("<HHI", LINKTYPE_ETHERNET, 0, snaplen) + tsresol + struct.pack("<HH", 0, 0)
    idb = struct.pack("<II", 1, len(idb_body) + 12) + idb_body + struct.pack("<I", len(idb_body) + 12)
    return shb + idb


def generate(out, packets, seed=DEFAULT_SEED, nanosecond=False, pcapng=False, snaplen=DEFAULT_SNAPLEN,
             templates=DEFAULT_TEMPLATES):
    """Write `packets` records to the file `out` (a path); returns a dict of statistics
    (packets, bytes, seconds). Deterministic in all arguments."""
    started = time.perf_counter()
    tmpl = build_templates(seed, templates, snaplen)
    rng = np.random.default_rng(seed)
    if pcapng:
        pads = [b"\x00" * (-len(f) % 4) for f in tmpl.frames]
        totals = [32 + len(f) + len(p) for f, p in zip(tmpl.frames, pads)]
        bodies = [f + p + struct.pack("<I", t) for f, p, t in zip(tmpl.frames, pads, totals)]
        totals = np.asarray(totals, dtype=np.uint32)
        header_dtype, header_len = _EPB_HEADER, 28
    else:
        bodies = tmpl.frames
        header_dtype, header_len = _PCAP_RECORD, 16
    body_len = np.fromiter((len(b) for b in bodies), dtype=np.int64, count=len(bodies))
    last_ns = EPOCH_NS
    written = 0
    with open(out, "wb") as fh:
        preamble = _pcapng_preamble(nanosecond, snaplen) if pcapng else _pcap_file_header(nanosecond, snaplen)
        fh.write(preamble)
        written += len(preamble)
        remaining = packets
        while remaining > 0:
            n = min(CHUNK, remaining)
            remaining -= n
            idx = rng.integers(0, len(tmpl), n)
            gaps = rng.exponential(MEAN_GAP_NS, n).astype(np.int64) + 1
            new_ids = rng.integers(0, 65536, n, dtype=np.uint32)
            ts_ns = last_ns + np.cumsum(gaps)
            last_ns = int(ts_ns[-1])
            ticks = ts_ns if nanosecond else ts_ns // 1000
            hdr = np.empty(n, dtype=header_dtype)
            if pcapng:
                hdr["type"] = 6
                hdr["total"] = totals[idx]
                hdr["interface"] = 0
                hdr["ts_high"] = ticks >> 32
                hdr["ts_low"] = ticks & 0xFFFFFFFF
            else:
                per_second = 10**9 if nanosecond else 10**6
                hdr["sec"] = ticks // per_second
                hdr["frac"] = ticks % per_second
            hdr["caplen"] = tmpl.caplen[idx]
            hdr["wirelen"] = tmpl.wirelen[idx]
            raw = hdr.tobytes()
            parts = [None] * (2 * n)
            parts[0::2] = [raw[i:i + header_len] for i in range(0, n * header_len, header_len)]
            parts[1::2] = [bodies[i] for i in idx.tolist()]
            blob = bytearray().join(parts)
            record_len = body_len[idx] + header_len
            starts = np.cumsum(record_len) - record_len
            ip4 = tmpl.ip4_offset[idx]
            varied = ip4 >= 0
            buf = np.frombuffer(blob, dtype=np.uint8)
            _patch_ip_ids(buf, starts[varied] + header_len + ip4[varied], new_ids[varied])
            fh.write(blob)
            written += len(blob)
    return {"packets": packets, "bytes": written, "seconds": time.perf_counter() - started}


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Generate a realistic synthetic Ethernet capture (deterministic for a given seed).",
        epilog="example: %(prog)s --packets 2000000 --seed 1 --out big.pcap")
    parser.add_argument("--packets", "-n", type=int, default=10000, help="number of packets (default 10000)")
    parser.add_argument("--out", "-o", required=True, help="output file")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--nanosecond", action="store_true", help="nanosecond timestamps")
    parser.add_argument("--pcapng", action="store_true", help="write pcapng instead of pcap")
    parser.add_argument("--snaplen", type=int, default=DEFAULT_SNAPLEN,
                        help=f"truncate frames to this many bytes (default {DEFAULT_SNAPLEN})")
    parser.add_argument("--templates", type=int, default=DEFAULT_TEMPLATES,
                        help=f"distinct template frames (default {DEFAULT_TEMPLATES})")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing")
    args = parser.parse_args(argv)
    if args.packets < 0 or args.snaplen < 1 or args.templates < 1:
        parser.error("--packets must be >= 0, --snaplen and --templates >= 1")
    stats = generate(args.out, args.packets, seed=args.seed, nanosecond=args.nanosecond,
                     pcapng=args.pcapng, snaplen=args.snaplen, templates=args.templates)
    if not args.quiet:
        print(f"{args.out}: {stats['packets']} packets, {stats['bytes']} bytes "
              f"in {stats['seconds']:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
