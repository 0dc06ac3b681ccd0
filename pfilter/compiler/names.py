"""Name tables of the filter language, read the way libpcap 1.10.3 reads them (nametoaddr.c).

Imports pfilter.errors only (and the standard library). Holds:
  - lookups in the system databases: services (service_ports, port_number, port_range),
    protocols (protocol_number), hosts (host_addresses), /etc/ethers (ether_host),
    /etc/networks (network_number); each cached;
  - libpcap's built-in tables: Ethernet types (ETHERTYPES, ethertype_number), LLC SAPs
    (LLC_SAPS, llc_sap_number), OSI protocols (ISO_PROTOCOLS, iso_proto_number);
  - the scanner's named constants (NAMED_CONSTANTS: icmptype, icmp-echo, tcp-syn, ...);
  - address text parsers: parse_ipv4, parse_ipv6, parse_mac, parse_decnet.
"""
import ctypes
import ctypes.util
import functools
import socket

from pfilter.errors import FilterError

# ----------------------------------------------------------------------------- built-in tables

# libpcap: nametoaddr.c eproto_db (pcap_nametoeproto), values from ethertype.h.
ETHERTYPES = {
    "aarp": 0x80F3, "arp": 0x0806, "atalk": 0x809B, "decnet": 0x6003, "ip": 0x0800,
    "ip6": 0x86DD, "lat": 0x6004, "loopback": 0x9000, "mopdl": 0x6001, "moprc": 0x6002,
    "rarp": 0x8035, "sca": 0x6007,
}

# libpcap: nametoaddr.c llc_db (pcap_nametollc), values from llc.h.
LLC_SAPS = {"iso": 0xFE, "stp": 0x42, "ipx": 0xE0, "netbeui": 0xF0}

# libpcap: gencode.c lookup_proto(), case Q_ISO.
ISO_PROTOCOLS = {"esis": 0x82, "isis": 0x83, "clnp": 0x81}

# libpcap: scanner.l, the names it turns into NUM tokens.
NAMED_CONSTANTS = {
    "icmptype": 0, "icmpcode": 1,
    "icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4, "icmp-redirect": 5,
    "icmp-echo": 8, "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11,
    "icmp-paramprob": 12, "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15,
    "icmp-ireqreply": 16, "icmp-maskreq": 17, "icmp-maskreply": 18,
    "icmp6type": 0, "icmp6code": 1,
    "icmp6-destinationunreach": 1, "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3,
    "icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
    "icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
    "icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133, "icmp6-routeradvert": 134,
    "icmp6-neighborsolicit": 135, "icmp6-neighboradvert": 136, "icmp6-redirect": 137,
    "icmp6-routerrenum": 138, "icmp6-nodeinformationquery": 139,
    "icmp6-nodeinformationresponse": 140, "icmp6-ineighbordiscoverysolicit": 141,
    "icmp6-ineighbordiscoveryadvert": 142, "icmp6-multicastlistenerreportv2": 143,
    "icmp6-homeagentdiscoveryrequest": 144, "icmp6-homeagentdiscoveryreply": 145,
    "icmp6-mobileprefixsolicit": 146, "icmp6-mobileprefixadvert": 147,
    "icmp6-certpathsolicit": 148, "icmp6-certpathadvert": 149,
    "icmp6-multicastrouteradvert": 151, "icmp6-multicastroutersolicit": 152,
    "icmp6-multicastrouterterm": 153,
    "tcpflags": 13, "tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08,
    "tcp-ack": 0x10, "tcp-urg": 0x20, "tcp-ece": 0x40, "tcp-cwr": 0x80,
}

ALL_PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp"})


def ethertype_number(name):
    """libpcap: pcap_nametoeproto(). Case-sensitive, as there."""
    return ETHERTYPES.get(name)


def llc_sap_number(name):
    """libpcap: pcap_nametollc()."""
    return LLC_SAPS.get(name)


def iso_proto_number(name):
    """libpcap: lookup_proto() for `iso proto NAME`."""
    return ISO_PROTOCOLS.get(name)


def named_constant(name):
    """The value of icmptype, icmp-echo, tcp-syn, ... or None."""
    return NAMED_CONSTANTS.get(name)


# ----------------------------------------------------------------------------- services

def _first_port(name, socktype, proto):
    try:
        infos = socket.getaddrinfo(None, name, socket.AF_UNSPEC, socktype, proto)
    except (OSError, UnicodeError, ValueError):
        return None
    for family, _type, _proto, _canon, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            return sockaddr[1]
    return None


@functools.lru_cache(maxsize=1024)
def port_number(name):
    """libpcap: pcap_nametoport(). (port, proto) with proto "tcp", "udp" or None (both:
    libpcap's PROTO_UNDEF), or None when the name is no service.

    Like libpcap it asks the resolver for a TCP and a UDP service of that name (so a string
    of digits is a port too); when both exist with different ports, the TCP one wins.
    """
    tcp = _first_port(name, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    udp = _first_port(name, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    if tcp is not None:
        return tcp, (None if udp == tcp else "tcp")
    if udp is not None:
        return udp, "udp"
    return None


def service_ports(name):
    """The ports a service name stands for, by transport protocol: {} if unknown.

    {"tcp": p, "udp": p, "sctp": p} when libpcap's answer is "any protocol" (PROTO_UNDEF:
    the name is both a TCP and a UDP service with the same port), {"tcp": p} or {"udp": p}
    when it is tied to one. So `sctp port NAME` is allowed exactly when "sctp" is a key, and
    an unqualified `port NAME` tests every protocol in the dict (libpcap: gen_scode, Q_PORT).
    """
    found = port_number(name)
    if found is None:
        return {}
    port, proto = found
    if proto is None:
        return {p: port for p in ("tcp", "udp", "sctp")}
    return {proto: port}


@functools.lru_cache(maxsize=256)
def port_range(name):
    """libpcap: pcap_nametoportrange(). For "a-b": (lo, hi, proto) with proto as in
    port_number, or None when it cannot be resolved.

    "%d-%d" is tried first (numbers, any trailing text ignored, proto None); otherwise the text
    is split at its first '-' and both halves are looked up as services.
    """
    lo = scan_int(name)
    if lo is not None and name[lo[1]:lo[1] + 1] == "-":
        hi = scan_int(name[lo[1] + 1:])
        if hi is not None:
            return lo[0], hi[0], None
    first, sep, second = name.partition("-")
    if not sep:
        return None
    a = port_number(first)
    if a is None:
        return None
    b = port_number(second)
    if b is None:
        return None
    proto = a[1] if a[1] == b[1] else None
    return a[0], b[0], proto


def scan_int(text):
    """sscanf("%d") at the start of text: (value, characters used) or None."""
    j = 0
    if text[:1] in ("+", "-"):
        j = 1
    k = j
    while k < len(text) and text[k] in "0123456789":
        k += 1
    if k == j:
        return None
    digits = text[j:k].lstrip("0") or "0"
    value = int(digits) if len(digits) <= 18 else 10 ** 18   # past any port or part
    return (-value if text[:1] == "-" else value), k


# ----------------------------------------------------------------------------- protocols, hosts

@functools.lru_cache(maxsize=256)
def protocol_number(name):
    """libpcap: pcap_nametoproto(): /etc/protocols through getprotobyname, or None."""
    try:
        return socket.getprotobyname(name)
    except (OSError, UnicodeError, ValueError):
        return None


@functools.lru_cache(maxsize=256)
def host_addresses(name):
    """libpcap: pcap_nametoaddrinfo(): every address the resolver gives for a host name.

    Returns (IPv4 addresses as ints, IPv6 addresses as 16-byte values), in the resolver's
    order without duplicates; ([], []) when the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM,
                                   socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError):
        return [], []
    v4, v6 = [], []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family == socket.AF_INET:
            value = int.from_bytes(socket.inet_aton(sockaddr[0]), "big")
            if value not in v4:
                v4.append(value)
        elif family == socket.AF_INET6:
            value = socket.inet_pton(socket.AF_INET6, sockaddr[0].split("%")[0])
            if value not in v6:
                v6.append(value)
    return v4, v6


def _libc():
    path = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(path) if path else None
    except OSError:
        return None


class _NetEnt(ctypes.Structure):
    _fields_ = [("n_name", ctypes.c_char_p), ("n_aliases", ctypes.POINTER(ctypes.c_char_p)),
                ("n_addrtype", ctypes.c_int), ("n_net", ctypes.c_uint32)]


@functools.lru_cache(maxsize=256)
def network_number(name):
    """libpcap: pcap_nametonetaddr(): the network number of a name in /etc/networks (as
    getnetbyname gives it, e.g. 127 for "loopback 127"), or None (libpcap treats 0 as unknown).
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "getnetbyname"):
        libc.getnetbyname.restype = ctypes.POINTER(_NetEnt)
        libc.getnetbyname.argtypes = [ctypes.c_char_p]
        try:
            encoded = name.encode()
        except UnicodeError:
            return None
        if b"\0" in encoded:
            return None
        ent = libc.getnetbyname(encoded)
        if not ent:
            return None
        return ent.contents.n_net or None
    return _network_from_file(name)


def _network_from_file(name, path="/etc/networks"):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and name in (fields[0], *fields[2:]):
                    parts = fields[1].split(".")
                    value = 0
                    for p in parts:
                        value = (value << 8) | (int(p, 0) & 0xFF)
                    return value or None
    except (OSError, ValueError):
        return None
    return None


@functools.lru_cache(maxsize=256)
def ether_host(name):
    """libpcap: pcap_ether_hostton(): the MAC address of a name in /etc/ethers, or None."""
    libc = _libc()
    if libc is not None and hasattr(libc, "ether_hostton"):
        try:
            encoded = name.encode()
        except UnicodeError:
            return None
        if b"\0" in encoded or len(encoded) >= 1024:
            return None
        out = ctypes.create_string_buffer(6)
        libc.ether_hostton.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        if libc.ether_hostton(encoded, out) == 0:
            return out.raw[:6]
        return None
    try:
        with open("/etc/ethers", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if len(fields) >= 2 and fields[1] == name:
                    return parse_mac(fields[0])
    except (OSError, ValueError):
        return None
    return None


# ----------------------------------------------------------------------------- address texts

def parse_ipv4(text):
    """libpcap: __pcap_atoin(). "10.1" -> (0x0a01, 2): the parts packed into nparts bytes (not
    left-justified; shift by 8 * (4 - nparts) for that). Raises FilterError for a part over
    255 or that is not decimal ("0x10.1" is refused, as libpcap does).
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        raise FilterError(f"invalid IPv4 address '{text}'")
    value = 0
    for p in parts:
        if not (p.isascii() and p.isdigit()) or len(p.lstrip("0")) > 3 or int(p) > 255:
            raise FilterError(f"invalid IPv4 address '{text}'")
        value = (value << 8) | int(p)
    return value, len(parts)


def parse_ipv6(text):
    """An IPv6 address (any form inet_pton takes, including ::ffff:1.2.3.4) as 16 bytes."""
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        raise FilterError(f"bogus IPv6 address {text}") from None


def parse_mac(text):
    """libpcap: pcap_ether_aton(). aa:bb:cc:dd:ee:ff, aa-bb-.., aa.bb.., aabb.ccdd.eeff or
    aabbccddeeff (one-digit groups allowed where separators are) as 6 bytes."""
    out = bytearray()
    i, n = 0, len(text)
    hexdigits = "0123456789abcdefABCDEF"
    while i < n:
        if text[i] in ":.-":
            i += 1
        if i >= n or text[i] not in hexdigits:
            raise FilterError(f"bogus ethernet address {text}")
        d = int(text[i], 16)
        i += 1
        if i < n and text[i] in hexdigits:
            d = (d << 4) | int(text[i], 16)
            i += 1
        out.append(d)
    if len(out) != 6:
        raise FilterError(f"bogus ethernet address {text}")
    return bytes(out)


def parse_decnet(text):
    """libpcap: __pcap_atodn(): "area.node" -> the 16-bit DECnet address, or None."""
    area_part, sep, rest = text.partition(".")
    area = scan_int(area_part)
    node = scan_int(rest) if sep else None
    if area is None or area[1] != len(area_part) or node is None:
        return None
    return ((area[0] << 10) & 0o176000) | (node[0] & 0o1777)
