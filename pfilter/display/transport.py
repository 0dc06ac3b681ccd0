"""TCP and UDP in tcpdump 4.99's words: flags, relative sequence numbers (tcpdump's
tcp_seq_hash: one entry per connection, both directions, started by a packet with ACK, restarted
by SYN), window, options, length, the -v checksum, and the application printers by port.
"""
import struct

from ._util import checksum_report, ip4, ip6, ones_sum, safe_char, u16, u32
from . import apps

_FLAG_CHARS = ((0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"), (0x10, "."), (0x20, "U"),
               (0x40, "E"), (0x80, "W"))
FLAG_TEXT = ["".join(c for bit, c in _FLAG_CHARS if f & bit) or "none" for f in range(256)]

_OPT_NAMES = {0: "eol", 1: "nop", 2: "mss", 3: "wscale", 4: "sackOK", 5: "sack", 6: "echo", 7: "echoreply",
              8: "TS", 11: "cc", 12: "ccnew", 13: "", 19: "md5", 20: "scps", 28: "uto", 29: "tcp-ao",
              30: "mptcp", 34: "tfo", 254: "exp"}
M32 = 0xFFFFFFFF
_TCP_HEADER = struct.Struct("!HHIIBBHHH").unpack_from


def _pseudo_sum(info, proto, length):
    ver, src, dst = info[0], info[1], info[2]
    return ones_sum(bytes(src) + bytes(dst) + (proto.to_bytes(2, "big") + length.to_bytes(2, "big") if ver == 4
                    else length.to_bytes(4, "big") + bytes([0, 0, 0, proto])))


def tcp(p, b, length, src, dst, info):
    if len(b) < 4:
        return f"{src} > {dst}: [|tcp]"
    # tcpdump shows the addresses only when TCP follows the IP header directly
    if len(b) < 20:
        sport, dport = u16(b, 0), u16(b, 2)
        return (f"{src}.{sport} > {dst}.{dport}: " if info[5] == 6 else f"{sport} > {dport}: ") + " [|tcp]"
    sport, dport, seq, ack, hlen, flags, win, csum, urp = _TCP_HEADER(b)
    head = f"{src}.{sport} > {dst}.{dport}: " if info[5] == 6 else f"{sport} > {dport}: "
    hlen = (hlen >> 4) * 4
    if hlen < 20:
        return head + f" tcp {length - hlen} [bad hdr length {hlen} - too short, < 20]"
    if p.q:
        out = head + f"tcp {length - hlen}"
        if hlen > length:
            out += f" [bad hdr length {hlen} - too long, > {length}]"
        return out
    out = head + "Flags [" + FLAG_TEXT[flags] + "]"
    thseq = thack = 0
    rev = False
    if not p.S and flags & 0x10:
        rev = sport > dport or (sport == dport and info[1] > info[2])
        if rev:
            key = (info[2], info[1], (dport << 16) | sport)
        else:
            key = (info[1], info[2], (sport << 16) | dport)
        th = p.tcp_seq.get(key)
        if th is None or flags & 0x02:
            th = [seq, (ack - 1) & M32] if not rev else [(ack - 1) & M32, seq]
            p.tcp_seq[key] = th
        else:
            if rev:
                seq = (seq - th[1]) & M32
                ack = (ack - th[0]) & M32
            else:
                seq = (seq - th[0]) & M32
                ack = (ack - th[1]) & M32
        thseq, thack = th
    if hlen > length:
        return out + f" [bad hdr length {hlen} - too long, > {length}]"
    if p.v and not p.K and not info[3] and len(b) >= length:      # -K: no ", cksum" at all
        stored = csum
        ok, should = checksum_report(stored, ones_sum(b[:length], _pseudo_sum(info, 6, length)))
        out += f", cksum 0x{stored:04x}" + (" (correct)" if ok else f" (incorrect -> 0x{should:04x})")
    dlen = length - hlen
    if p.v > 1 or dlen > 0 or flags & 0x07:
        out += f", seq {seq}"
        if dlen > 0:
            out += f":{(seq + dlen) & M32}"
    if flags & 0x10:
        out += f", ack {ack}"
    out += f", win {win}"
    if flags & 0x20:
        out += f", urg {urp}"
    if hlen > 20:
        opts, ended = _options(b[20:hlen], hlen - 20, rev, thseq, thack, flags)
        out += ", options [" + opts
        if ended:
            return out
        out += "]"
    out += f", length {dlen}"
    if dlen <= 0:
        return out
    payload = b[hlen:length]
    if flags & 0x04 and p.v:
        return out + _rst_data(payload, dlen)
    return out + apps.tcp_app(p, sport, dport, payload, dlen)


def _rst_data(payload, dlen):
    """tcpdump's print_tcp_rst_data: '!' when the data is not all captured, at most 30 bytes
    shown ('+' when cut), each as fn_print_char shows a byte (M- and ^ escapes)."""
    out = " [RST" if len(payload) >= dlen else " [!RST"
    if dlen > 30:
        dlen = 30
        out += "+"
    return out + " " + "".join(safe_char(c) for c in payload[:dlen]) + "]"


_MPTCP_SUBTYPES = ("capable", "join", "dss", "add-addr", "rem-addr", "prio", "fail", "fast-close")


def _mptcp(opt, ln, flags):
    """tcpdump's print-mptcp.c wording for MP_CAPABLE, DSS, ADD_ADDR and FAST_CLOSE; the others by name."""
    if len(opt) < 3:
        return " [|mptcp]"
    sub = opt[2] >> 4
    name = _MPTCP_SUBTYPES[sub] if sub < len(_MPTCP_SUBTYPES) else "unknown"
    text = f" {ln} {name}"
    if sub == 0:
        ver = opt[2] & 0x0F
        if ver > 1:
            return text + f" Unknown Version ({ver})"
        text += f" v{ver}"
        if len(opt) > 3 and opt[3] & 0x80:
            text += " csum"
        if ln == 12 or ln >= 20:
            text += f" {{0x{int.from_bytes(opt[4:12], 'big'):x}"
            if ln >= 20:
                text += f",0x{int.from_bytes(opt[12:20], 'big'):x}"
            if ln in (14, 24) and flags & 0x10:
                text += f",data_len={u16(opt, ln - 2)}"
            text += "}"
    elif sub == 3 and ln in (8, 10, 16, 18, 20, 22, 28, 30) and len(opt) >= ln:
        text += " " + {6: "v0-ip6", 4: "v0-ip4", 1: "v1-echo", 0: "v1"}.get(opt[2] & 0xF, "[bad version/echo]")
        v4 = ln < 20
        end = 8 if v4 else 20
        text += f" id {opt[3]} {ip4(opt[4:8]) if v4 else ip6(opt[4:20])}"
        if ln in (10, 18, 22, 30):
            text += f":{u16(opt, end)}"
            end += 2
        if ln in (16, 18, 28, 30):
            text += f" hmac 0x{int.from_bytes(opt[end:end + 8], 'big'):x}"
    elif sub == 7 and ln == 12 and len(opt) >= 12:
        text += f" key 0x{int.from_bytes(opt[4:12], 'big'):x}"
    elif sub == 2 and len(opt) >= 4:
        f = opt[3]
        i = 4
        if f & 0x10:
            text += " fin"
        if f & 0x01:
            w = 8 if f & 0x02 else 4
            text += f" ack {int.from_bytes(opt[i:i + w], 'big')}"
            i += w
        if f & 0x04:
            w = 8 if f & 0x08 else 4
            text += f" seq {int.from_bytes(opt[i:i + w], 'big')} subseq {u32(opt, i + w)} len {u16(opt, i + w + 4)}"
            i += w + 6
            if ln - i >= 2:
                text += f" csum 0x{u16(opt, i):x}"
    return text


#: the data length of the TCP options tcpdump reads a fixed amount of (the others: their length - 2)
_OPT_DATALEN = {2: 2, 3: 1, 8: 8, 6: 4, 7: 4, 11: 4, 12: 4, 13: 4, 19: 16, 28: 2}


def _fastopen(cookie):
    """tcpdump's TCP Fast Open cookie (option 34, or experimental option 254 with magic 0xf989)."""
    if not cookie:
        return " cookiereq"
    if len(cookie) % 2 or not 4 <= len(cookie) <= 16:
        return " (invalid)"
    return " cookie " + bytes(cookie).hex()


def _option_data(opt, o, i, datalen, ln, flags, rev, thseq, thack):
    """The text after a TCP option's name (its data at o[i:i + datalen])."""
    if opt == 2:
        return f" {u16(o, i)}"
    if opt == 3:
        return f" {o[i]}"
    if opt == 5:
        if datalen % 8:
            return " invalid sack"
        text = f" {datalen // 8} "
        base = thseq if rev else thack
        for j in range(0, datalen, 8):
            text += f"{{{(u32(o, i + j) - base) & M32}:{(u32(o, i + j + 4) - base) & M32}}}"
        return text
    if opt == 8:
        return f" val {u32(o, i)} ecr {u32(o, i + 4)}"
    if opt in (6, 7, 11, 12, 13):
        return f" {u32(o, i)}"
    if opt == 19:
        return " shared secret not supplied with -M, can't check - " + bytes(o[i:i + 16]).hex()
    if opt == 28:
        v = u16(o, i)
        return f" {v & 0x7FFF} {'m' if v & 0x8000 else 's'}"
    if opt == 30:
        return _mptcp(o[i - 2:i + datalen], ln, flags)
    if opt == 34:
        return _fastopen(o[i:i + datalen])
    if opt == 254:
        magic = u16(o, i)
        return "-tfo" + _fastopen(o[i + 2:i + datalen]) if magic == 0xF989 else f"-{magic:04x}"
    return " 0x" + bytes(o[i:i + datalen]).hex() if datalen else ""


def _options(o, hlen, rev, thseq, thack, flags=0):
    """(text, ended): the options as tcpdump prints them, from the captured bytes o of hlen;
    ended: the text ends the line (tcpdump stops there), closing bracket included where
    tcpdump prints one. A bad option: '[bad opt]', and ']' after the first option; an
    option's data not all captured: ' [|tcp]', and '>' after the first option; its kind or
    length byte not captured: ' [|tcp]' alone."""
    parts = []
    i = 0
    n = len(o)
    while hlen > 0:
        sep = "," if parts else ""
        if i >= n:
            return ",".join(parts) + sep + " [|tcp]", True
        opt = o[i]
        i += 1
        if opt in (0, 1):
            ln = 1
        else:
            if i >= n:
                return ",".join(parts) + sep + " [|tcp]", True
            ln = o[i]
            i += 1
            if ln < 2 or ln > hlen:
                return ",".join(parts) + sep + "[bad opt]" + ("]" if parts else ""), True
            hlen -= 1
        hlen -= 1
        name = _OPT_NAMES.get(opt, f"unknown-{opt}")
        datalen = 0 if opt in (0, 1, 4) else _OPT_DATALEN.get(opt, ln - 2)
        if datalen > hlen or (opt == 254 and datalen < 2):
            return ",".join(parts) + sep + name + "[bad opt]" + ("]" if parts else ""), True
        if i + datalen > n:
            return ",".join(parts) + sep + name + " [|tcp]" + (">" if parts else ""), True
        text = name + _option_data(opt, o, i, datalen, ln, flags, rev, thseq, thack)
        i += datalen
        hlen -= datalen
        total = datalen + (1 if opt in (0, 1) else 2)
        if total != ln:
            text += f"[len {ln}]"
        parts.append(text)
        if opt == 0:
            break
    return ",".join(parts), False


def udp(p, b, length, src, dst, info):
    if len(b) < 8:
        if len(b) >= 4:
            sport, dport = u16(b, 0), u16(b, 2)
            return (f"{src}.{sport} > {dst}.{dport}: " if info[5] == 17 else f"{sport} > {dport}: ") + " [|udp]"
        return (f"{src} > {dst}: " if info[5] == 17 else "") + " [|udp]"
    sport, dport = u16(b, 0), u16(b, 2)
    head = f"{src}.{sport} > {dst}.{dport}: " if info[5] == 17 else f"{sport} > {dport}: "
    if length < 8:
        return head + f"truncated-udp {length}"
    ulen = u16(b, 4)
    if ulen == 0 and length > 65535:
        ulen = length
    if ulen < 8:
        return head + f"truncated-udplength {ulen}"
    ulen -= 8
    plen = min(ulen, length - 8)     # tcpdump trusts a UDP length beyond the IP payload (fragments)
    if ulen > plen:
        plen = ulen
    out = head
    if p.v and not p.K and not info[3]:          # -K: no "[udp sum ok]" nor "[no cksum]"
        stored = u16(b, 6)
        if info[0] == 4 and p.v > 1 or info[0] == 6:
            if info[0] == 4 and stored == 0:
                out += "[no cksum] "
            elif len(b) >= plen + 8:
                ok, should = checksum_report(stored, ones_sum(b[:plen + 8], _pseudo_sum(info, 17, plen + 8)))
                out += "[udp sum ok] " if ok else f"[bad udp cksum 0x{stored:04x} -> 0x{should:04x}!] "
    payload = b[8:8 + plen]
    if p.q:
        return out + f"UDP, length {plen}"
    return out + apps.udp_app(p, sport, dport, payload, plen, None if info[3] else length - 8)
