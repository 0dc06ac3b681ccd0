"""Shared pieces of the display: address strings, hexadecimal and ASCII dumps, checksums and
the name tables tcpdump prints (IP protocols, EtherTypes).

Imports the standard library only.
"""
import array
import socket
import sys

_HEX4 = [f"{i:04x}" for i in range(65536)]
_HEX2 = [f"{i:02x}" for i in range(256)]
#: byte -> the character -X and -A show (isgraph: 0x21..0x7e; -X shows a space as '.')
_GRAPH_TABLE = {i: (chr(i) if 0x21 <= i <= 0x7E else ".") for i in range(256)}


def ip4(b):
    return socket.inet_ntop(socket.AF_INET, bytes(b[:4]))


def ip6(b):
    return socket.inet_ntop(socket.AF_INET6, bytes(b[:16]))


def mac(b):
    return ":".join(_HEX2[x] for x in b[:6])


def safe_char(c):
    """A byte as tcpdump's fn_print_char shows it: M- for the high bit, ^X for control characters."""
    out = "M-" if c & 0x80 else ""
    c &= 0x7F
    return out + (chr(c) if 0x20 <= c < 0x7F else "^" + chr(c ^ 0x40))


def u16(b, i):
    return (b[i] << 8) | b[i + 1]


def u32(b, i):
    return int.from_bytes(b[i:i + 4], "big")


def hex_lines(data, ascii_column=False, prefix="\n\t"):
    """tcpdump's hex_print (-x) and hex_and_ascii_print (-X): 16 bytes a line, '0x0000:' offsets,
    two-byte groups, and with ascii_column the printable characters after the hex."""
    out = []
    n = len(data)
    for off in range(0, n, 16):
        chunk = data[off:off + 16]
        words = [_HEX4[(chunk[i] << 8) | chunk[i + 1]] for i in range(0, len(chunk) - 1, 2)]
        if len(chunk) & 1:
            words.append(_HEX2[chunk[-1]])
        hexpart = " " + " ".join(words)
        if ascii_column:
            out.append(f"{prefix}0x{off:04x}: {hexpart:<40}  {bytes(chunk).decode('latin-1').translate(_GRAPH_TABLE)}")
        else:
            out.append(f"{prefix}0x{off:04x}: {hexpart}")
    return "".join(out)


def ascii_dump(data):
    """tcpdump's ascii_print (-A): a newline, then the bytes with non-printing ones as '.';
    newlines, tabs and spaces kept; a carriage return is dropped before a newline and as the
    last or second-to-last byte, a '.' elsewhere."""
    out = ["\n"]
    n = len(data)
    for i in range(n):
        c = data[i]
        if c == 0x0D:
            if n - i - 1 > 1 and data[i + 1] != 0x0A:
                out.append(".")
        elif 0x21 <= c <= 0x7E or c in (0x09, 0x20, 0x0A):
            out.append(chr(c))
        else:
            out.append(".")
    return "".join(out)


def ones_sum(data, start=0):
    """The ones'-complement sum (folded to 16 bits) of big-endian 16-bit words."""
    data = bytes(data)
    if len(data) & 1:
        data += b"\0"
    words = array.array("H", data)
    if sys.byteorder == "little":
        words.byteswap()
    total = start + sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum_report(stored, computed_total):
    """(correct, should-be) as tcpdump's in_cksum / in_cksum_shouldbe: computed_total is the
    folded sum over the data with the stored checksum in place."""
    computed = (~computed_total) & 0xFFFF
    if computed == 0:
        return True, stored
    s = stored + computed
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return False, s


IPPROTO_NAMES = {0: "Options", 1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 8: "EGP", 9: "IGRP", 17: "UDP",
                 33: "DCCP", 41: "IPv6", 43: "Routing", 44: "Fragment", 46: "RSVP", 47: "GRE", 50: "ESP",
                 51: "AH", 55: "Mobile IP", 58: "ICMPv6", 59: "NONE", 60: "DSTOPT", 62: "Mobile IP (old)",
                 88: "EIGRP", 89: "OSPF", 103: "PIM", 108: "Compressed IP", 112: "VRRP", 113: "PGM",
                 132: "SCTP", 135: "Mobility"}

ETHERTYPE_NAMES = {
    0x0800: "IPv4", 0x0806: "ARP", 0x86DD: "IPv6", 0x8100: "802.1Q", 0x88A8: "802.1Q-QinQ",
    0x9100: "802.1Q-QinQ", 0x9200: "802.1Q-9200", 0x8847: "MPLS unicast", 0x8848: "MPLS multicast",
    0x8863: "PPPoE D", 0x8864: "PPPoE S", 0x88CC: "LLDP", 0x8035: "Reverse ARP", 0x809B: "Appletalk",
    0x80F3: "Appletalk ARP", 0x6003: "DN", 0x6004: "LAT", 0x6002: "MOP RC", 0x6001: "MOP DL",
    0x8137: "IPX", 0x888E: "EAPOL", 0x8809: "Slow Protocols", 0x88E5: "MACsec", 0x88F7: "PTP",
    0x8902: "CFM", 0x8906: "FCoE", 0x8914: "FIP", 0x88A2: "AoE", 0x9000: "Loopback", 0x0200: "PUP",
    0xFEFE: "OSI", 0x8819: "CobraNet", 0x894F: "NSH",
}


def ethertype_name(t):
    return ETHERTYPE_NAMES.get(t, "Unknown")
