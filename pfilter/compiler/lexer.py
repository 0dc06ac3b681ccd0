"""The lexer of pcap-filter expressions: text -> list of Token.

Imports pfilter.errors and pfilter.compiler.names (the named constants) only.

It reproduces libpcap 1.10.3's flex scanner (scanner.l): at every offset each rule is tried,
the longest match wins and, between matches of equal length, the rule listed first wins. That
is why `tcp` is a keyword but `tcpx` a name, `80` a number but `80-90` a name (a port range),
`1.2.3.4.5.6` a MAC address, `ssh-http` one name and `len-1` one name too, and `\\tcp` the
name "tcp". Named constants (`icmp-echo`, `tcp-syn`, `icmptype`, ...) are numbers here, as in
the scanner. Errors the scanner reports (a character it does not know, a number overflowing 32
bits, a non-octal digit, a bogus IPv6 or Ethernet address) raise FilterSyntaxError pointing at
the token.
"""
import re
import socket
from dataclasses import dataclass

from pfilter.compiler.names import NAMED_CONSTANTS
from pfilter.errors import FilterSyntaxError

# Kinds of tokens (the grammar's terminals). Punctuation tokens use their own text as kind.
NUM, ID, HID, HID6, EID, AID, EOF = "NUM", "ID", "HID", "HID6", "EID", "AID", "EOF"
PNAME = "PNAME"   # a protocol name (grammar's pname); value is the AST proto string
ADDR = "ADDR"     # addr1..addr4, ra, ta (dqual); value is the AST dir string
ATM = "ATM"       # lane metac bcc oamf4ec oamf4sc sc ilmic oam oamf4 connectmsg metaconnect
ATMFIELD = "ATMFIELD"  # vpi vci
MTP2 = "MTP2"     # fisu lssu lsu msu hfisu hlssu hmsu
MTP3FIELD = "MTP3FIELD"  # sio opc dpc sls hsio hopc hdpc hsls


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int
    end: int
    value: object = None


def _kw(kind, *words, value=None):
    return {w: (kind, value) for w in words}


# libpcap: scanner.l keyword rules. Keywords are case-sensitive there, and so here.
KEYWORDS = {}
KEYWORDS.update(_kw("DST", "dst"))
KEYWORDS.update(_kw("SRC", "src"))
for _words, _proto in (
        (("link", "ether", "ppp", "slip", "fddi", "tr", "wlan"), "link"),
        (("arp",), "arp"), (("rarp",), "rarp"), (("ip",), "ip"), (("sctp",), "sctp"),
        (("tcp",), "tcp"), (("udp",), "udp"), (("icmp",), "icmp"), (("igmp",), "igmp"),
        (("igrp",), "igrp"), (("pim",), "pim"), (("vrrp",), "vrrp"), (("carp",), "carp"),
        (("radio",), "radio"), (("ip6",), "ip6"), (("icmp6",), "icmp6"), (("ah",), "ah"),
        (("esp",), "esp"), (("atalk",), "atalk"), (("aarp",), "aarp"), (("decnet",), "decnet"),
        (("lat",), "lat"), (("sca",), "sca"), (("moprc",), "moprc"), (("mopdl",), "mopdl"),
        (("iso",), "iso"), (("esis", "es-is"), "esis"), (("isis", "is-is"), "isis"),
        (("l1",), "l1"), (("l2",), "l2"), (("iih",), "iih"), (("lsp",), "lsp"),
        (("snp",), "snp"), (("csnp",), "csnp"), (("psnp",), "psnp"), (("clnp",), "clnp"),
        (("stp",), "stp"), (("ipx",), "ipx"), (("netbeui",), "netbeui")):
    KEYWORDS.update(_kw(PNAME, *_words, value=_proto))
# token kind: its words (the token's value is None)
_PLAIN_KEYWORDS = (
    ("HOST", "host"), ("NET", "net"), ("NETMASK", "mask"), ("PORT", "port"),
    ("PORTRANGE", "portrange"), ("PROTO", "proto"), ("PROTOCHAIN", "protochain"),
    ("GATEWAY", "gateway"), ("TYPE", "type"), ("SUBTYPE", "subtype"), ("DIR", "direction dir"),
    ("LESS", "less"), ("GREATER", "greater"), ("BYTE", "byte"), ("BROADCAST", "broadcast"),
    ("MULTICAST", "multicast"), ("AND", "and"), ("OR", "or"), ("!", "not"),
    ("LEN", "len length"), ("INBOUND", "inbound"), ("OUTBOUND", "outbound"),
    ("IFINDEX", "ifindex"), ("VLAN", "vlan"), ("MPLS", "mpls"), ("PPPOED", "pppoed"),
    ("PPPOES", "pppoes"), ("GENEVE", "geneve"), ("LLC", "llc"), ("PF_IFNAME", "on ifname"),
    ("PF_RSET", "rset ruleset"), ("PF_RNR", "rnr rulenum"), ("PF_SRNR", "srnr subrulenum"),
    ("PF_REASON", "reason"), ("PF_ACTION", "action"),
)
for _kind, _words in _PLAIN_KEYWORDS:
    KEYWORDS.update(_kw(_kind, *_words.split()))
for _n in "1234":
    KEYWORDS.update(_kw(ADDR, "address" + _n, "addr" + _n, value="addr" + _n))
for _w in ("ra", "ta"):
    KEYWORDS.update(_kw(ADDR, _w, value=_w))
for _w in ("lane", "metac", "bcc", "oam", "oamf4", "oamf4ec", "oamf4sc", "sc", "ilmic",
           "connectmsg", "metaconnect"):
    KEYWORDS.update(_kw(ATM, _w, value=_w))
for _w in ("vpi", "vci"):
    KEYWORDS.update(_kw(ATMFIELD, _w, value=_w))
for _w in ("fisu", "lssu", "lsu", "msu", "hfisu", "hlssu", "hmsu"):
    KEYWORDS.update(_kw(MTP2, _w, value=_w))
for _w in ("sio", "opc", "dpc", "sls", "hsio", "hopc", "hdpc", "hsls"):
    KEYWORDS.update(_kw(MTP3FIELD, _w, value=_w))

# ------------------------------------------------------------------------- the scanner's patterns

_N = r"(?:[0-9]+|0[xX][0-9A-Fa-f]+)"
_B = r"[0-9A-Fa-f][0-9A-Fa-f]?"
_B2 = r"[0-9A-Fa-f]{4}"
_W = r"[0-9A-Fa-f]{1,4}"
_V4 = rf"{_N}\.{_N}\.{_N}\.{_N}"


def _v6_patterns():
    """libpcap: scanner.l V680 .. V6004, one pattern per alternative.

    flex takes the longest match among all of them, which a regex alternation would not."""
    shapes = ["W:" * 7 + "W"]
    for groups in range(7, -1, -1):          # total explicit groups around a "::"
        for left in range(groups + 1):
            shapes.append(":".join(["W"] * left) + "::" + ":".join(["W"] * (groups - left)))
    for groups in range(6, -1, -1):          # forms ending in a dotted IPv4 address
        if groups == 6:
            shapes.append("W:" * 6 + "V4")
            continue
        for left in range(groups + 1):
            right = groups - left
            shapes.append(":".join(["W"] * left) + "::" + "W:" * right + "V4")
    return [re.escape(shape).replace("W", _W).replace("V4", _V4) for shape in shapes]


class _Patterns:
    """The scanner's compiled patterns, compiled when the first expression is scanned, and the
    IPv6 forms (about 70 patterns) when the first one with a ':' is: work that importing the
    compiler, and compiling an expression without IPv6 addresses, need not pay."""

    def __init__(self):
        self.mac = [re.compile(p) for p in (
            rf"{_B}:{_B}:{_B}:{_B}:{_B}:{_B}", rf"{_B}-{_B}-{_B}-{_B}-{_B}-{_B}",
            rf"{_B}\.{_B}\.{_B}\.{_B}\.{_B}\.{_B}", rf"{_B2}\.{_B2}\.{_B2}", rf"{_B2}{_B2}{_B2}")]
        self.bogus_mac = re.compile(rf"{_B}:+(?:{_B}:+)+")
        self.num = [re.compile(r"0[xX][0-9A-Fa-f]+"), re.compile(r"[0-9]+")]
        self.hid = [re.compile(rf"{_N}\.{_N}\.{_N}\.{_N}"), re.compile(rf"{_N}\.{_N}\.{_N}"),
                    re.compile(rf"{_N}\.{_N}")]
        self.id = re.compile(r"[A-Za-z0-9](?:[-_.A-Za-z0-9]*[.A-Za-z0-9])?")
        self.escaped = re.compile(r"\\[^ !()\n\t]+")
        self.aid = re.compile(rf"\${_B}")
        self._v6 = None

    @property
    def v6(self):
        if self._v6 is None:
            self._v6 = [re.compile(p) for p in _v6_patterns()]
        return self._v6


_PATTERNS = []      # the one _Patterns, once made


def _patterns():
    if not _PATTERNS:
        _PATTERNS.append(_Patterns())
    return _PATTERNS[0]


_SPACE = " \r\n\t"
_TWO_CHAR = {">=": "GEQ", "<=": "LEQ", "!=": "NEQ", "==": "=", "<<": "LSH", ">>": "RSH",
             "&&": "AND", "||": "OR"}
_ONE_CHAR = set("+-*/%:[]!<>()&|^=")
_HEXISH = set("0123456789abcdefABCDEFxX.:")


def _longest(regexes, text, pos):
    best = 0
    for rx in regexes:
        m = rx.match(text, pos)
        if m and m.end() - pos > best:
            best = m.end() - pos
    return best


def _stou(text, expression, pos):
    """libpcap: stou(). A NUM token's value: decimal, 0x hex or 0 octal, at most 32 bits."""
    if text[:2] in ("0x", "0X"):
        digits, base, widest = text[2:], 16, 8
    elif text[0] == "0" and len(text) > 1:
        if any(c in "89" for c in text):
            raise FilterSyntaxError(f"number {text} contains a non-octal digit", expression, pos,
                                    len(text))
        digits, base, widest = text, 8, 11
    else:
        digits, base, widest = text, 10, 10
    digits = digits.lstrip("0") or "0"
    value = int(digits, base) if len(digits) <= widest else 1 << 32
    if value > 0xFFFFFFFF:
        raise FilterSyntaxError(f"number {text} overflows 32 bits", expression, pos, len(text))
    return value


def tokenize(expression):
    """Split an expression into tokens, the last one EOF. Raises FilterSyntaxError."""
    if not isinstance(expression, str):
        raise FilterSyntaxError("a filter expression must be a string")
    rx = _patterns()
    tokens = []
    text = expression
    n = len(text)
    pos = 0
    while pos < n:
        c = text[pos]
        if c in _SPACE:
            pos += 1
            continue
        # Candidates as (length, rank, kind): the longest wins, then the lowest rank, which is
        # the rule's place in scanner.l (keywords, punctuation, two-character operators, AID,
        # MAC, N, HID, V6, bogus MAC, named constants, ID, escaped ID).
        candidates = []
        two = text[pos:pos + 2]
        if two in _TWO_CHAR:
            candidates.append((2, 2, _TWO_CHAR[two]))
        if c in _ONE_CHAR:
            candidates.append((1, 1, c))
        if c == "$":
            m = rx.aid.match(text, pos)
            if m:
                candidates.append((m.end() - pos, 3, AID))
        elif c == "\\":
            m = rx.escaped.match(text, pos)
            if m:
                candidates.append((m.end() - pos, 11, "ESCAPED"))
        else:
            m = rx.id.match(text, pos)
            if m:
                id_len = m.end() - pos
                word = text[pos:pos + id_len]
                if word in KEYWORDS:
                    candidates.append((id_len, 0, "KEYWORD"))
                elif word in NAMED_CONSTANTS:
                    candidates.append((id_len, 9, "CONSTANT"))
                else:
                    candidates.append((id_len, 10, ID))
            if c in _HEXISH:
                run = pos
                while run < n and text[run] in _HEXISH:
                    run += 1
                k = _longest(rx.mac, text, pos)
                if k:
                    candidates.append((k, 4, EID))
                k = _longest(rx.num, text, pos)
                if k:
                    candidates.append((k, 5, NUM))
                k = _longest(rx.hid, text, pos)
                if k:
                    candidates.append((k, 6, HID))
                if ":" in text[pos:run]:
                    k = _longest(rx.v6, text, pos)
                    if k:
                        candidates.append((k, 7, HID6))
                    m = rx.bogus_mac.match(text, pos)
                    if m:
                        candidates.append((m.end() - pos, 8, "BOGUS_MAC"))
        best_kind = None
        if candidates:
            best_len, _rank, best_kind = max(candidates, key=lambda t: (t[0], -t[1]))
        if best_kind is None:
            raise FilterSyntaxError(f"unexpected character {c!r}", expression, pos, 1)
        end = pos + best_len
        word = text[pos:end]
        tokens.append(_make_token(best_kind, word, pos, end, expression))
        pos = end
    tokens.append(Token(EOF, "", n, n))
    return tokens


def _make_token(kind, word, pos, end, expression):
    if kind == "KEYWORD":
        k, value = KEYWORDS[word]
        return Token(k, word, pos, end, value)
    if kind == "CONSTANT":
        return Token(NUM, word, pos, end, NAMED_CONSTANTS[word])
    if kind == NUM:
        return Token(NUM, word, pos, end, _stou(word, expression, pos))
    if kind == "ESCAPED":
        return Token(ID, word, pos, end, word[1:])
    if kind == ID:
        return Token(ID, word, pos, end, word)
    if kind == "BOGUS_MAC":
        raise FilterSyntaxError(f"bogus ethernet address {word}", expression, pos, end - pos)
    if kind == HID6:
        try:
            socket.inet_pton(socket.AF_INET6, word)
        except (OSError, ValueError):
            raise FilterSyntaxError(f"bogus IPv6 address {word}", expression, pos,
                                    end - pos) from None
        return Token(HID6, word, pos, end, word)
    if kind in (HID, EID, AID):
        return Token(kind, word, pos, end, word)
    return Token(kind, word, pos, end)
