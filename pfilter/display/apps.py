"""Application summaries at tcpdump's default verbosity, chosen by port as tcpdump's tcp_print
and udp_print do: DNS (and mDNS), NTP, BOOTP/DHCP, HTTP (and the other text protocols' first
line), SSH's banner; anything else is tcpdump's 'UDP, length N' or nothing after a TCP length.
"""
import struct
import time

from ._util import ip4, ip6, mac, safe_char, u16, u32

# ----------------------------------------------------------------------------- by port


def tcp_app(p, sport, dport, data, length):
    a, b = TCP_PORTS.get(sport), TCP_PORTS.get(dport)
    if a is None and b is None:
        return ""
    rank, handler = min(x for x in (a, b) if x is not None)
    return handler(p, data, length)


def _tcp_dns(p, data, length):
    if len(data) < 2:
        return " [|domain]"
    return " " + dns(p, data[2:], u16(data, 0), False)


#: port -> (tcpdump's order of tests in tcp_print, printer of what follows the TCP length)
TCP_PORTS = {}
for _rank, (_ports, _fn) in enumerate((
        ((23,), lambda p, d, n: ""),
        ((25,), lambda p, d, n: ": " + txtproto(p, d, n, "SMTP", None)),
        ((43,), lambda p, d, n: ": " + txtproto(p, d, n, "WHOIS", None)),
        ((179,), lambda p, d, n: ": BGP"),
        ((6633, 6653), lambda p, d, n: _openflow(d, n)),
        ((22,), lambda p, d, n: _ssh(d, n)),
        ((21,), lambda p, d, n: ": " + txtproto(p, d, n, "FTP", None)),
        ((80, 8080), lambda p, d, n: ": " + txtproto(p, d, n, "HTTP", HTTP_CMDS, second_token=True)),
        ((554, 8554), lambda p, d, n: ": " + txtproto(p, d, n, "RTSP", RTSP_CMDS, second_token=True)),
        ((53,), _tcp_dns))):
    for _port in _ports:
        TCP_PORTS[_port] = (_rank, _fn)


def udp_app(p, sport, dport, data, length, room=None):
    """What follows 'a.p > b.q: ' for a UDP datagram (the ports it tests are UDP_APP_PORTS);
    room: the IP payload's length less the UDP header, for tcpdump's 'bad length' (None in a
    fragment)."""
    ports = (sport, dport)
    if 53 in ports:
        return dns(p, data, length, False)
    if 67 in ports or 68 in ports:
        return bootp(p, data, length)
    if 123 in ports:
        return ntp(p, data, length)
    if 5353 in ports:
        return dns(p, data, length, True)
    if 546 in ports or 547 in ports:
        if not data:
            return "dhcp6 [|dhcp6]"
        return "dhcp6 " + DHCP6_TYPES.get(data[0], f"msgtype-{data[0]}") if not p.v else f"UDP, length {length}"
    if 514 in ports:
        return _syslog(p, data, length)
    if 520 in ports:
        return _rip(data, length)
    if ports[0] in _RADIUS_PORTS or ports[1] in _RADIUS_PORTS:
        return _radius(data, length)
    if 1985 in ports:
        return _hsrp(data, length)
    if 3784 in ports or 4784 in ports:
        return _bfd(data, length, 4784 in ports and 3784 not in ports)
    if 6343 in ports and not p.v:
        return _sflow(data, length)
    # Divergence: tcpdump decodes many more UDP protocols by port (SNMP, NFS, RIP, ISAKMP, ...);
    # pfilter prints its generic UDP line for them.
    if room is not None and length > room:
        return f"UDP, bad length {length} > {room}"
    return f"UDP, length {length}"


SYSLOG_FACILITIES = ("kernel user mail daemon auth syslog lpr news uucp cron authpriv ftp ntp security "
                     "console cron local0 local1 local2 local3 local4 local5 local6 local7").split()
SYSLOG_SEVERITIES = "emergency alert critical error warning notice info debug".split()


def _syslog(p, b, length):
    i, pri = 1, 0
    if not b:
        return " [|syslog]"        # (tcpdump's read past the captured bytes)
    if b[0] != 0x3C:
        return "[|syslog]"
    while i < len(b) and i <= 4 and 0x30 <= b[i] <= 0x39:
        pri = pri * 10 + b[i] - 0x30
        i += 1
    if i >= len(b):
        return " [|syslog]"
    if b[i] != 0x3E or pri > 191:
        return "[|syslog]"
    fac, sev = pri >> 3, pri & 7
    text = f"SYSLOG {SYSLOG_FACILITIES[fac] if fac < 24 else f'unknown ({fac})'}.{SYSLOG_SEVERITIES[sev]}, length: {length}"
    if p.v:
        text += "\n\tFacility " + f"{SYSLOG_FACILITIES[fac] if fac < 24 else 'unknown'} ({fac}), Severity {SYSLOG_SEVERITIES[sev]} ({sev})\n\tMsg: " + bytes(b[i + 1:length]).decode("latin-1").rstrip("\n")
    return text


_RADIUS_PORTS = frozenset((1645, 1646, 1812, 1813, 3799))
#: the UDP ports udp_app gives a summary for (pfilter.display._fast leaves those to Python)
UDP_APP_PORTS = frozenset((53, 67, 68, 123, 514, 520, 546, 547, 1985, 3784, 4784, 5353, 6343)) | _RADIUS_PORTS
DHCP6_TYPES = {1: "solicit", 2: "advertise", 3: "request", 4: "confirm", 5: "renew", 6: "rebind", 7: "reply",
               8: "release", 9: "decline", 10: "reconfigure", 11: "inf-req", 12: "relay-fwd", 13: "relay-reply",
               14: "leasequery", 15: "leasequery-reply"}
RADIUS_CODES = {1: "Access-Request", 2: "Access-Accept", 3: "Access-Reject", 4: "Accounting-Request",
                5: "Accounting-Response", 11: "Access-Challenge", 12: "Status-Server", 13: "Status-Client",
                40: "Disconnect-Request", 41: "Disconnect-ACK", 42: "Disconnect-NAK", 43: "CoA-Request",
                44: "CoA-ACK", 45: "CoA-NAK", 255: "Reserved"}


def _radius(b, length):
    if len(b) < 4:
        return "RADIUS [|radius]"
    return f"RADIUS, {RADIUS_CODES.get(b[0], 'Unknown Command')} ({b[0]}), id: 0x{b[1]:02x} length: {u16(b, 2)}"


def _rip(b, length):
    if len(b) < 2:
        return "RIP [|rip]"
    cmd = {1: "Request", 2: "Response", 3: "Trace on", 4: "Trace off", 5: "Poll", 6: "Poll Entry"}.get(
        b[0], f"unknown command ({b[0]})")
    return f"RIPv{b[1]}, {cmd}, length: {length}"


HSRP_STATES = {0: "initial", 1: "learn", 2: "listen", 4: "speak", 8: "standby", 16: "active"}


def _hsrp(b, length):
    if len(b) < 1:
        return "HSRP [|hsrp]"
    out = f"HSRPv{b[0]}"
    if b[0] != 0:
        return out
    if len(b) < 8:
        return out + " [|hsrp]"
    op = {0: "hello", 1: "coup", 2: "resign"}.get(b[1], f"unknown ({b[1]})")
    out += f"-{op} {length}: state={HSRP_STATES.get(b[2], f'Unknown ({b[2]})')} group={b[6]} "
    if b[7]:
        out += f"[reserved={b[7]}!] "
    if len(b) < 20:
        return out + " [|hsrp]"
    return out + f"addr={ip4(b[16:20])}"


BFD_STATES = {0: "AdminDown", 1: "Down", 2: "Init", 3: "Up"}
BFD_FLAGS = ((0x20, "Poll"), (0x10, "Final"), (0x08, "Control Plane Independent"),
             (0x04, "Authentication Present"), (0x02, "Demand"), (0x01, "Multipoint"))


def _bfd(b, length, multihop):
    if len(b) < 2:
        return "BFD [|bfd]"
    ver = b[0] >> 5
    if ver != 1:
        return f"BFDv{ver}, length: {length}"
    flags = ", ".join(n for bit, n in BFD_FLAGS if b[1] & bit) or "none"
    return (f"BFDv1, {'Multihop' if multihop else 'Control'}, State {BFD_STATES[b[1] >> 6]}, "
            f"Flags: [{flags}], length: {length}")


def _sflow(b, length):
    if len(b) < 8:
        return "sFlow [|sflow]"
    ver, af = u32(b, 0), u32(b, 4)
    if af == 1 and len(b) >= 16:
        return f"sFlowv{ver}, IPv4 agent {ip4(b[8:12])}, agent-id {u32(b, 12)}, length {length}"
    if af == 2 and len(b) >= 28:
        return f"sFlowv{ver}, IPv6 agent {ip6(b[8:24])}, agent-id {u32(b, 24)}, length {length}"
    return f"sFlowv{ver}, length {length}"


# ----------------------------------------------------------------------------- text protocols

HTTP_CMDS = frozenset(("GET PUT COPY HEAD LOCK MOVE POLL POST BCOPY BMOVE MKCOL TRACE LABEL MERGE DELETE "
                       "SEARCH UNLOCK REPORT UPDATE NOTIFY BDELETE CONNECT OPTIONS CHECKIN PROPFIND "
                       "CHECKOUT CCM_POST SUBSCRIBE PROPPATCH BPROPFIND BPROPPATCH UNCHECKOUT MKACTIVITY "
                       "MKWORKSPACE UNSUBSCRIBE RPC_CONNECT VERSION-CONTROL BASELINE-CONTROL").split())
RTSP_CMDS = frozenset("DESCRIBE ANNOUNCE GET_PARAMETER OPTIONS PAUSE PLAY RECORD REDIRECT SETUP "
                      "SET_PARAMETER TEARDOWN".split())
MAX_TOKEN = 128


def _token(data, idx, n, wire):
    """tcpdump's fetch_token over n captured bytes of wire: (index after the token and its
    blanks, the token), or (0, b"") (a token that runs past the captured bytes too)."""
    start = idx
    while idx < wire:
        if idx >= n:
            return 0, b""
        c = data[idx]
        if c > 0x7F:
            return 0, b""
        if c in (0x20, 0x09, 0x0D, 0x0A):
            break
        if not 0x20 <= c < 0x7F:
            return 0, b""
        if idx - start + 2 > MAX_TOKEN + 1:
            return 0, b""
        idx += 1
    tok = bytes(data[start:idx])
    if not tok:
        return 0, b""
    while idx < n:
        c = data[idx]
        if c in (0x0D, 0x0A) or not 0x20 <= c < 0x7F or c not in (0x20, 0x09):
            break
        idx += 1
    return idx, tok


def _txt_line(data, idx, n, prefix, proto):
    """(text, next index or 0) as tcpdump's print_txt_line: n is the payload's length on the
    wire; a line that runs past the captured bytes prints nothing of itself, only the
    truncation mark (tcpdump's fetch beyond the capture)."""
    start = idx
    have = len(data)
    while idx < n:
        if idx >= have:
            return f" [|{proto.lower()}]", 0
        c = data[idx]
        if c == 0x0A:
            return prefix + bytes(data[start:idx]).decode("latin-1"), idx + 1
        if c == 0x0D:
            if idx + 1 >= n:
                return "", 0
            if idx + 1 >= have:
                return f" [|{proto.lower()}]", 0
            if data[idx + 1] == 0x0A:
                return prefix + bytes(data[start:idx]).decode("latin-1"), idx + 2
            return "", 0
        if not (0x20 <= c < 0x7F or c == 0x09):
            return "", 0
        idx += 1
    return prefix + bytes(data[start:idx]).decode("latin-1") + f" [|{proto.lower()}]", 0


def txtproto(p, data, length, proto, cmds, second_token=False):
    n = min(len(data), length)
    print_this = cmds is None
    if cmds is not None:
        idx, tok = _token(data, 0, n, length)
        if idx:
            if tok.decode("ascii").upper() in cmds:
                print_this = True
            if second_token:
                idx, tok = _token(data, idx, n, length)
            if idx and len(tok) == 3 and tok.isdigit():
                print_this = True
    if p.v and print_this:
        out = [proto, f", length: {length}"]
        idx = 0
        while idx < length:
            text, idx = _txt_line(data, idx, length, "\n\t", proto)
            out.append(text)
            if not idx:
                break
        return "".join(out)
    if print_this:
        return proto + _txt_line(data, 0, length, ": ", proto)[0]
    return proto


OF10_TYPES = ("HELLO ERROR ECHO_REQUEST ECHO_REPLY VENDOR FEATURES_REQUEST FEATURES_REPLY GET_CONFIG_REQUEST "
              "GET_CONFIG_REPLY SET_CONFIG PACKET_IN FLOW_REMOVED PORT_STATUS PACKET_OUT FLOW_MOD PORT_MOD "
              "STATS_REQUEST STATS_REPLY BARRIER_REQUEST BARRIER_REPLY QUEUE_GET_CONFIG_REQUEST "
              "QUEUE_GET_CONFIG_REPLY").split()
OF13_TYPES = ("HELLO ERROR ECHO_REQUEST ECHO_REPLY EXPERIMENTER FEATURES_REQUEST FEATURES_REPLY GET_CONFIG_REQUEST "
              "GET_CONFIG_REPLY SET_CONFIG PACKET_IN FLOW_REMOVED PORT_STATUS PACKET_OUT FLOW_MOD GROUP_MOD "
              "PORT_MOD TABLE_MOD MULTIPART_REQUEST MULTIPART_REPLY BARRIER_REQUEST BARRIER_REPLY "
              "QUEUE_GET_CONFIG_REQUEST QUEUE_GET_CONFIG_REPLY ROLE_REQUEST ROLE_REPLY GET_ASYNC_REQUEST "
              "GET_ASYNC_REPLY SET_ASYNC METER_MOD").split()
OF_VERSIONS = {1: "1.0", 2: "1.1", 3: "1.2", 4: "1.3", 5: "1.4", 6: "1.5"}


def _openflow(b, length):
    out = [": OpenFlow"]
    i, n = 0, min(len(b), length)
    while i < length:
        if i + 8 > n:
            out.append(" [|openflow]")
            break
        ver, typ, mlen, xid = b[i], b[i + 1], u16(b, i + 2), u32(b, i + 4)
        names = OF10_TYPES if ver == 1 else OF13_TYPES if ver in OF_VERSIONS else ()
        name = names[typ] if typ < len(names) else f"unknown (0x{typ:02x})"
        out.append(f"\n\tversion {OF_VERSIONS.get(ver, f'unknown (0x{ver:02x})')}, type {name}, "
                   f"length {mlen}{' (too short!)' if mlen < 8 else ''}, xid 0x{xid:08x}")
        if mlen < 8:
            out.append(" (invalid)")
            if i + 8 < length:
                out.append(" [|openflow]")
            break
        if i + mlen > n:
            out.append(" [|openflow]")
            break
        i += mlen
    return "".join(out)


def _ssh(data, length):
    """tcpdump's SSH identification line: a payload (length bytes on the wire, data those
    captured) that starts with "SSH-" and whose first line ends within 256 bytes, all of it
    printable; ' [|ssh]' where tcpdump reads past the captured bytes to tell."""
    n = len(data)
    for k, want in enumerate(b"SSH-"):
        if k >= n:
            return " [|ssh]"
        if data[k] != want:
            return ""
    idx = 4
    while idx < length:
        if idx >= n:
            return " [|ssh]"
        c = data[idx]
        if c == 0x0A or c == 0x0D and idx + 1 < n and data[idx + 1] == 0x0A:
            return ": SSH: " + bytes(data[:idx]).decode("latin-1")
        if c == 0x0D and idx + 1 >= n and idx + 1 < length:
            return " [|ssh]"
        if c == 0x0D or not 0x20 <= c < 0x7F or idx >= 255:
            return ""
        idx += 1
    return ""


# ----------------------------------------------------------------------------- DNS

DNS_TYPES = {1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR", 10: "NULL",
             11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB",
             19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP", 23: "NSAP_PTR", 24: "SIG", 25: "KEY", 26: "PX",
             27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT", 31: "EID", 32: "NIMLOC", 33: "SRV", 34: "ATMA",
             35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6", 39: "DNAME", 40: "SINK", 41: "OPT", 42: "APL",
             43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
             50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP", 56: "NINFO", 57: "RKEY",
             58: "TALINK", 59: "CDS", 60: "CDNSKEY", 61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD",
             64: "SVCB", 65: "HTTPS", 99: "SPF", 100: "UINFO", 101: "UID", 102: "GID", 103: "UNSPEC",
             104: "NID", 105: "L32", 106: "L64", 107: "LP", 108: "EUI48", 109: "EUI64", 249: "TKEY",
             250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB", 254: "MAILA", 255: "ANY", 256: "URI",
             257: "CAA", 258: "AVC", 259: "DOA", 260: "AMTRELAY", 261: "RESINFO", 32768: "TA", 32769: "DLV"}
DNS_CLASSES = {1: "IN", 3: "CHAOS", 4: "HS", 255: "ANY"}
DNS_OPS = ["", " inv_q", " stat", " op3", " notify", " update", " op6", " op7", " op8", " updateA",
           " updateD", " updateDA", " updateM", " updateMA", " zoneInit", " zoneRef"]
DNS_RCODES = ["", " FormErr", " ServFail", " NXDomain", " NotImp", " Refused", " YXDomain", " YXRRSet",
              " NXRRSet", " NotAuth", " NotZone", " Resp11", " Resp12", " Resp13", " Resp14", " NoChange"]


#: tcpdump's names of the extended RCODEs (16 and up, from an OPT record), its typos kept
DNS_EXT_RCODES = [" BadVers", "Resp17", " Resp18", " Resp19", " Resp20", "Resp21", " Resp22", " BadCookie"]


def _rcode_name(rcode):
    if rcode < 16:
        return DNS_RCODES[rcode]
    if rcode < 24:
        return DNS_EXT_RCODES[rcode - 16]
    return f" Resp{rcode & 0xFFF}"


class _Trunc(Exception):
    pass


def _nskip(msg, off):
    """The offset after the name at off (a pointer ends it), or None: tcpdump's ns_nskip."""
    n = len(msg)
    if off >= n:
        return None
    i = msg[off]
    off += 1
    while i:
        kind = i & 0xC0
        if kind == 0xC0:
            return off + 1
        if kind == 0x40:            # EDNS0 bit label
            if i & 0x3F != 1 or off >= n:
                return None
            bits = msg[off] or 256
            off += 1 + (bits + 7) // 8
        elif kind == 0x80:
            return None
        else:
            off += i
        if off >= n:
            return None
        i = msg[off]
        off += 1
    return off


def _ext_rcode(msg, rcode, qd, an_ns, ar):
    """The RCODE with the upper bits an OPT record in the additional section carries, found as
    tcpdump finds it (it gives up at the first name or record that runs off the capture)."""
    n = len(msg)
    off = 12
    for _ in range(qd):
        off = _nskip(msg, off)
        if off is None or off + 4 >= n:
            return rcode
        off += 4
    for _ in range(an_ns):
        off = _nskip(msg, off)
        if off is None or off + 10 > n:
            return rcode
        off += 10 + u16(msg, off + 8)
        if off >= n:
            return rcode
    for _ in range(ar):
        off = _nskip(msg, off)
        if off is None or off + 2 > n:
            return rcode
        typ = u16(msg, off)
        off += 4
        if off + 1 > n:
            return rcode
        if typ == 41:
            return rcode | (msg[off] << 4)
        off += 4
        if off + 2 > n:
            return rcode
        off += 2 + u16(msg, off)
        if off >= n:
            return rcode
    return rcode


def _name(msg, off, depth=0):
    """(text, offset after the name in place) of a DNS name, as tcpdump's fqdn_print."""
    labels = []
    end = None
    limit = off         # a compression pointer must point before the name it continues
    n = len(msg)
    while True:
        if off >= n:
            raise _Trunc
        ln = msg[off]
        if ln & 0xC0 == 0xC0:
            if off + 1 >= n:
                raise _Trunc
            if end is None:
                end = off + 2
            target = ((ln & 0x3F) << 8) | msg[off + 1]
            if target >= limit:
                raise _Trunc
            off = limit = target
            continue
        if ln & 0xC0:
            raise _Trunc
        if ln == 0:
            off += 1
            break
        if off + 1 + ln > n:
            raise _Trunc
        labels.append(_label(msg[off + 1:off + 1 + ln]))
        off += 1 + ln
    text = "".join(lb + "." for lb in labels) or "."
    return text, (end if end is not None else off)


_PLAIN = bytes(c for c in range(0x21, 0x7F) if c not in (0x2E, 0x5C))


def _label(b):
    b = bytes(b)
    if not b.translate(None, _PLAIN):         # nothing to escape
        return b.decode("ascii")
    out = []
    for c in b:
        if c == 0x2E or c == 0x5C:
            out.append("\\" + chr(c))
        elif 0x20 < c < 0x7F:
            out.append(chr(c))
        else:
            out.append(_fn_char(c))
    return "".join(out)


def _fn_char(c):
    s = ""
    if c & 0x80:
        s = "M-"
        c &= 0x7F
    if c < 0x20 or c == 0x7F:
        return s + "^" + chr(c ^ 0x40)
    return s + chr(c)


def dns(p, msg, length, mdns):
    if length < 12:
        return f"domain [length {length} < 12] (invalid)"
    try:
        return _dns(p, msg, length, mdns)
    except (_Trunc, IndexError):
        return _dns_partial(p, msg, length, mdns)


def _dns_partial(p, msg, length, mdns):
    done = getattr(p, "_dns_out", None)
    p._dns_out = None
    return "".join(done or ()) + " [|domain]"


def _dns(p, msg, length, mdns):
    out = []
    p._dns_out = out       # what is printed before a truncation
    if len(msg) < 12:
        raise _Trunc
    ident, flags = u16(msg, 0), u16(msg, 2)
    qd, an, ns, ar = u16(msg, 4), u16(msg, 6), u16(msg, 8), u16(msg, 10)
    opcode = (flags >> 11) & 0xF
    if flags & 0x8000:
        rcode = _ext_rcode(msg, flags & 0xF, qd, an + ns, ar) if ar else flags & 0xF
        out.append(f"{ident}{DNS_OPS[opcode]}{_rcode_name(rcode)}{'*' if flags & 0x0400 else ''}"
                   f"{'' if flags & 0x0080 else '-'}{'|' if flags & 0x0200 else ''}{'$' if flags & 0x0020 else ''}")
        if qd != 1:
            out.append(f" [{qd}q]")
        off = 12
        for i in range(qd):         # skipped as tcpdump skips them, a comma between two
            if i:
                out.append(",")
            off = _nskip(msg, off)
            if off is None:
                raise _Trunc
            off += 4
        out.append(f" {an}/{ns}/{ar}")
        first = True
        left = an
        while left:
            if off >= len(msg) and not first:
                break
            try:
                text, off = _rr(p, msg, off, mdns)
            except _Trunc as e:
                if e.args:             # the record's text before its cut data
                    out.append(("" if first else ",") + e.args[0])
                raise
            out.append(("" if first else ",") + text)
            first = False
            left -= 1
        if left:
            raise _Trunc
    else:
        out.append(f"{ident}{DNS_OPS[opcode]}{'+' if flags & 0x0100 else ''}{'%' if flags & 0x0010 else ''}")
        if flags & 0x6CF:
            out.append(f" [b2&3=0x{flags:x}]")
        if opcode == 1:         # inverse query: tcpdump's own order and tests
            out.append((f" [{qd}q]" if qd else "") + (f" [{an}a]" if an != 1 else ""))
        else:
            out.append((f" [{an}a]" if an else "") + (f" [{qd}q]" if qd != 1 else ""))
        if ns:
            out.append(f" [{ns}n]")
        if ar:
            out.append(f" [{ar}au]")
        off = 12
        left = qd
        first = True
        while left:
            if off >= len(msg) and not first:
                break
            text, off = _question(msg, off, mdns)
            out.append(text)
            first = False
            left -= 1
        if left:
            raise _Trunc
    out.append(f" ({length})")
    p._dns_out = None
    return "".join(out)


def _question(msg, off, mdns):
    name, off = _name(msg, off)
    if off + 4 > len(msg):
        raise _Trunc
    t, c = u16(msg, off), u16(msg, off + 2)
    s = f" {DNS_TYPES.get(t, f'Type{t}')}"
    cls = c & 0x7FFF if mdns else c
    if cls != 1:
        s += f" {DNS_CLASSES.get(cls, f'(Class {cls})')}"
    if mdns:
        s += " (QU)" if c & 0x8000 else " (QM)"
    return s + "? " + name, off + 4


def _rr(p, msg, off, mdns):
    if p.v:
        name, off = _name(msg, off)
        s = " " + name
    else:
        # tcpdump skips the name without reading where pointers lead; a record it cannot skip
        # prints nothing and ends the section (the capture's end)
        off = _nskip(msg, off)
        s = ""
        if off is None:
            return s, len(msg)
    if off + 10 > len(msg):
        return s, len(msg)
    t, c = u16(msg, off), u16(msg, off + 2)
    rdlen = u16(msg, off + 8)
    off += 10
    cls = c & 0x7FFF if mdns else c
    if cls != 1 and t != 41:
        s += f" {DNS_CLASSES.get(cls, f'(Class {cls})')}"
    if mdns and c & 0x8000 and t != 41:
        s += " (Cache flush)"
    s += f" {DNS_TYPES.get(t, f'Type{t}')}"
    end = off + rdlen
    if end > len(msg):
        raise _Trunc(s)            # (printed, as tcpdump prints the type before the data)
    if t == 1 and rdlen >= 4:
        s += f" {ip4(msg[off:off + 4])}"
    elif t in (2, 5, 12, 39):
        s += " " + _name(msg, off)[0]
    elif t == 15:
        s += f" {_name(msg, off + 2)[0]} {u16(msg, off)}"
    elif t == 16:
        i = off
        while i < end:
            ln = msg[i]
            s += ' "' + "".join(chr(x) if 0x20 <= x < 0x7F else _fn_char(x) for x in msg[i + 1:i + 1 + ln]) + '"'
            i += 1 + ln
    elif t == 33:
        s += f" {_name(msg, off + 6)[0]}:{u16(msg, off + 4)} {u16(msg, off)} {u16(msg, off + 2)}"
    elif t == 28 and rdlen >= 16:
        s += f" {ip6(msg[off:off + 16])}"
    elif t == 256:
        if rdlen < 4:
            raise _Trunc
        s += f" {u16(msg, off)} {u16(msg, off + 2)} " + "".join(_fn_char(x) for x in msg[off + 4:end])
    elif t == 41:
        s += f" UDPsize={c}"
        ttl = u32(msg, off - 6)
        if ttl & 0x8000:
            s += " DO"
    elif t == 6 and p.v:
        mname, o2 = _name(msg, off)
        rname, o2 = _name(msg, o2)
        s += f" {mname} {rname} {u32(msg, o2)} {u32(msg, o2 + 4)} {u32(msg, o2 + 8)} {u32(msg, o2 + 12)} {u32(msg, o2 + 16)}"
    return s, end


# ----------------------------------------------------------------------------- NTP, BOOTP

NTP_MODES = {0: "unspecified", 1: "symmetric active", 2: "symmetric passive", 3: "Client", 4: "Server",
             5: "Broadcast", 6: "Control Message", 7: "Reserved"}


def ntp(p, b, length):
    if len(b) < 1:
        return " [|ntp]"
    mode = b[0] & 7
    ver = (b[0] >> 3) & 7
    out = f"NTPv{ver}, {NTP_MODES[mode]}, length {length}"
    if not p.v:
        return out
    leap = b[0] & 0xC0
    out += f"\n\tLeap indicator: {_NTP_LEAP[leap]} ({leap})"
    try:
        if mode == 6:
            return out + _ntp_control(b, length)
        if mode != 7:
            return out + _ntp_time(b, length)
    except IndexError:
        return out + " [|ntp]"
    return out


_NTP_LEAP = {0: "", 0x40: "+1s", 0x80: "-1s", 0xC0: "clock unsynchronized"}


def _ntp_stamp(b, i):
    """tcpdump's p_ntp_time: seconds.nanoseconds, and the UTC date when the seconds are not 0."""
    sec, frac = u32(b, i), u32(b, i + 4)
    text = f"{sec}.{int(frac / 4294967296.0 * 1e9):09d}"
    if sec:
        text += " (" + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec - 2208988800)) + ")"
    return text


def _ntp_delta(b, o, i):
    """tcpdump's p_ntp_delta: the stamp at i less the stamp at o, signed."""
    ou, ouf, u, uf = u32(b, o), u32(b, o + 4), u32(b, i), u32(b, i + 4)
    if ou == 0 and ouf == 0:
        return _ntp_stamp(b, i)
    if u > ou:
        sign, n, f = "+", u - ou - (1 if ouf > uf else 0), (uf - ouf) & 0xFFFFFFFF
    elif u < ou:
        sign, n, f = "-", ou - u - (1 if uf > ouf else 0), (ouf - uf) & 0xFFFFFFFF
    else:
        sign, n, f = ("+", 0, uf - ouf) if uf > ouf else ("-", 0, ouf - uf)
    return f"{sign}{n}.{int(f / 4294967296.0 * 1e9):09d}"


def _ntp_time(b, length):
    if length < 48:
        return " (invalid)"
    stratum, poll, prec = b[1], struct.unpack_from("b", b, 2)[0], struct.unpack_from("b", b, 3)[0]
    name = {0: "unspecified", 1: "primary reference"}.get(
        stratum, "secondary reference" if 2 <= stratum <= 15 else "reserved")
    out = f", Stratum {stratum} ({name}), poll {poll}"
    if -32 < poll < 32:
        out += f" ({1 << poll}s)" if poll >= 0 else f" (1/{1 << -poll}s)"
    out += f", precision {prec}"
    sfix = lambda i: f"{u16(b, i)}.{int(u16(b, i + 2) / 65536.0 * 1e6):06d}"
    out += f"\n\tRoot Delay: {sfix(4)}, Root dispersion: {sfix(8)}, Reference-ID: "
    if stratum == 0:
        out += "(unspec)"
    elif stratum == 1:
        out += "".join(map(safe_char, b[12:16]))
    else:
        out += f"0x{u32(b, 12):08x}"
    out += (f"\n\t  Reference Timestamp:  {_ntp_stamp(b, 16)}\n\t  Originator Timestamp: {_ntp_stamp(b, 24)}"
            f"\n\t  Receive Timestamp:    {_ntp_stamp(b, 32)}\n\t  Transmit Timestamp:   {_ntp_stamp(b, 40)}"
            f"\n\t    Originator - Receive Timestamp:  {_ntp_delta(b, 24, 32)}"
            f"\n\t    Originator - Transmit Timestamp: {_ntp_delta(b, 24, 40)}")
    if length in (52, 68, 72):
        out += f"\n\tKey id: {u32(b, 48)}"
        if length > 52:
            out += "\n\tAuthentication: " + bytes(b[52:length]).hex()
            if len(b) < length:
                raise IndexError
    elif length > 48:
        out += f"\n\t({length - 48} more bytes after the header)"
    return out


def _ntp_control(b, length):
    if length < 12:
        return " (invalid)"
    c = b[1]
    out = (f", {'Response' if c & 0x80 else 'Request'}, {'Error' if c & 0x40 else 'OK'}, "
           f"{'More' if c & 0x20 else 'Last'}, OpCode={c & 0x1F}\n")
    status, count = u16(b, 4), u16(b, 10)
    out += (f"\tSequence={u16(b, 2)}, Status={f'0x{status:x}' if status else '0'}, Assoc.={u16(b, 6)}, "
            f"Offset={u16(b, 8)}, Count={count}")
    if 12 + count > length:
        return out + " (invalid)"
    if count:
        if len(b) < 12 + count:
            raise IndexError
        out += "\n\tTO-BE-DONE: data not interpreted"
    return out


def bootp(p, b, length):
    if len(b) < 1:
        return "BOOTP/DHCP, [|bootp]"
    op = b[0]
    out = "BOOTP/DHCP, " + {1: "Request", 2: "Reply"}.get(op, f"unknown (0x{op:02x})")
    if len(b) >= 34 and b[1] == 1 and b[2] == 6 and op == 1:
        out += f" from {mac(b[28:34])}"
    out += f", length {length}"
    if not p.v or len(b) < 240:
        return out
    htype, hlen, hops, xid, secs, flags = b[1], b[2], b[3], u32(b, 4), u16(b, 8), u16(b, 10)
    if htype != 1:
        out += f", htype {htype}"
    if htype != 1 or hlen != 6:
        out += f", hlen {hlen}"
    if hops:
        out += f", hops {hops}"
    if xid:
        out += f", xid 0x{xid:x}"
    if secs:
        out += f", secs {secs}"
    out += f", Flags [{'Broadcast' if flags & 0x8000 else 'none'}]"
    if p.v > 1:
        out += f" (0x{flags:04x})"
    for name, off in (("Client-IP", 12), ("Your-IP", 16), ("Server-IP", 20), ("Gateway-IP", 24)):
        if any(b[off:off + 4]):
            out += f"\n\t  {name} {ip4(b[off:off + 4])}"
    if htype == 1 and hlen == 6:
        out += f"\n\t  Client-Ethernet-Address {mac(b[28:34])}"
    for name, off, size in (("sname", 44, 64), ("file", 108, 128)):
        if b[off]:
            out += f'\n\t  {name} "' + bytes(b[off:off + size]).split(b"\0")[0].decode("latin-1") + '"'
    if bytes(b[236:240]) == b"\x63\x82\x53\x63":
        out += _dhcp_options(b[240:])
    return out


#: tcpdump's tag2str: option -> (format letter, name); i addresses, l/s 32/16-bit numbers,
#: t text, b bytes, B booleans
DHCP_OPTIONS = {1: "iSubnet-Mask", 2: "LTime-Zone", 3: "iDefault-Gateway", 4: "iTime-Server",
                5: "iIEN-Name-Server", 6: "iDomain-Name-Server", 7: "iLOG", 8: "iCS", 9: "iLPR", 10: "iIM",
                11: "iRL", 12: "tHostname", 13: "sBS", 14: "tDump", 15: "tDomain-Name", 16: "iSS", 17: "tRP",
                18: "tEP", 19: "BIPF", 20: "BSRT", 21: "pPF", 22: "sMDR", 23: "bTTL", 24: "lMTU-Timeout",
                25: "sMTU-Table", 26: "sMTU", 27: "BLSN", 28: "iBR", 29: "BMD", 30: "BMS",
                31: "BRouter-Discovery", 32: "iRS", 33: "pStatic-Route", 34: "BTE", 35: "lAR", 36: "BE",
                37: "bTTL", 38: "lKAI", 39: "BKAG", 40: "tYD", 41: "iYS", 42: "iNTP", 43: "bVendor-Option",
                44: "iNetbios-Name-Server", 45: "iNDD", 46: "bNetbios-Node", 47: "tNetbios-Scope", 48: "iXFS",
                49: "iXDM", 50: "iRequested-IP", 51: "lLease-Time", 52: "bOO", 53: " DHCP-Message",
                54: "iServer-ID", 55: "bParameter-Request", 56: "tMSG", 57: "sMSZ", 58: "lRN", 59: "lRB",
                60: "tVendor-Class", 61: "bClient-ID", 121: "?Classless-Static-Route",
                249: "?Classless-Static-Route-Microsoft"}
DHCP_MESSAGES = {1: "Discover", 2: "Offer", 3: "Request", 4: "Decline", 5: "ACK", 6: "NACK", 7: "Release",
                 8: "Inform"}


def _dhcp_options(b):
    out = ["\n\t  Vendor-rfc1048 Extensions", "\n\t    Magic Cookie 0x63825363"]
    i, n = 0, len(b)
    while i < n:
        tag = b[i]
        i += 1
        if tag == 0:
            continue
        if tag == 255:
            break
        entry = DHCP_OPTIONS.get(tag, "?Unknown")
        kind, name = entry[0], entry[1:]
        if i >= n:
            out.append(" [|bootp]")
            break
        ln = b[i]
        i += 1
        data = b[i:i + ln]
        if len(data) < ln:
            out.append(f"\n\t    {name} ({tag}), length {ln}: [|bootp]")
            break
        i += ln
        out.append(f"\n\t    {name} ({tag}), length {ln}{': ' if ln else ''}")
        if kind == "?":
            kind = "b" if ln & 1 else "s" if ln & 2 else "l"
        if tag == 55:
            for k, t in enumerate(data):
                out.append(("\n\t      " if k % 4 == 0 else ", ") + f"{DHCP_OPTIONS.get(t, '?Unknown')[1:]} ({t})")
        elif tag == 53 and ln >= 1:
            out.append(DHCP_MESSAGES.get(data[0], f"Unknown ({data[0]})"))
        elif tag == 61 and ln >= 1:
            if data[0] == 1 and ln == 7:
                out.append("ether " + mac(data[1:7]))
            else:
                out.append(f"hardware-type {data[0]}, " + ":".join(f"{x:02x}" for x in data[1:]))
        elif tag == 46 and ln == 1:
            out.append({1: "b-node", 2: "p-node", 4: "m-node", 8: "h-node"}.get(data[0], f"unknown (0x{data[0]:02x})"))
        elif kind == "i":
            out.append(",".join(ip4(data[k:k + 4]) for k in range(0, ln - 3, 4)))
        elif kind == "l":
            out.append(",".join(str(u32(data, k)) for k in range(0, ln - 3, 4)))
        elif kind == "s":
            out.append(",".join(str(u16(data, k)) for k in range(0, ln - 1, 2)))
        elif kind == "t":
            out.append('"' + bytes(data).decode("latin-1") + '"')
        elif kind == "B":
            out.append(",".join({0: "N", 1: "Y"}.get(x, f"{x}?") for x in data))
        else:
            out.append(".".join(str(x) for x in data))
    return "".join(out)
