"""The parser of pcap-filter expressions: tokens -> AST (pfilter.compiler.ast).

May import pfilter.errors and pfilter.compiler.{lexer, names, ast}; nothing that generates code.

A recursive-descent rendering of libpcap 1.10.3's grammar (grammar.y). Each method carries the
grammar rules it stands for in a `# BNF:` comment, in the grammar's own nonterminal names.

Qualifier inheritance follows the grammar's `$<blk>0` mechanics: every `and`, `or`, `not` and
`(` passes on the qualifiers of what stands before it, so a bare value (`host a or b`,
`tcp dst port ftp or ftp-data`, `not host a and b`, `host a and (b or c)`) inherits the
qualifiers of the primitive before it. A protocol name, a comparison or any other primitive
leaves nothing to inherit (the grammar's `qerr`), so `tcp and 80` or `1=1 and 80` are errors
(libpcap reports them from its code generator, "syntax error in filter expression"; here they
are FilterSyntaxErrors from the parser. Divergence: so a semantic error earlier in the same
expression, like an unknown host, is reported by libpcap first and by pfilter second);
a parenthesized expression passes on what stood before its `(`, so in
`host a and (tcp) and b`, `b` is a host.

LALR(1) decides between readings by looking one token past a number or a `(`; here the same
choices are made by parsing a "unit" that reports what it turned out to be (a term, an id, or
an arithmetic expression still open to comparison), see `_unit` and `_group`.

Arithmetic follows the grammar's precedence declarations: `|` < `&` < `<<` `>>` < `+` `-` <
`*` `/` < unary minus, all left-associative; `%` and `^` have no declared precedence, so yacc
always shifts them: they bind everything to their right (`a % b * c` is `a % (b * c)`, and
`-a % b` is `-(a % b)`).
"""

from pfilter.compiler import ast
from pfilter.compiler import lexer as L
from pfilter.compiler import names
from pfilter.errors import FilterError, FilterSyntaxError

MAX_NESTING = 100
"""Deepest nesting of parentheses, `not`s, brackets, unary minus and `%`/`^` chains accepted.

Divergence: libpcap's bison stack allows about 10000 levels; past 100 pfilter reports
"nested too deeply" instead of recursing (and no real filter nests that deep)."""

QERR = "qerr"
"""The grammar's `qerr`: no qualifiers to inherit."""

# libpcap: the %left declarations of grammar.y; "%" and "^" are absent there on purpose.
ARITH_PRECEDENCE = {"|": 1, "&": 2, "LSH": 3, "RSH": 3, "+": 4, "-": 4, "*": 5, "/": 5,
                    "%": None, "^": None, "NEG": 6}
ARITH_OPS = {"+": "+", "-": "-", "*": "*", "/": "/", "%": "%", "&": "&", "|": "|", "^": "^",
             "LSH": "<<", "RSH": ">>"}
RELOPS = {">": ">", "GEQ": ">=", "=": "=", "LEQ": "<=", "<": "<", "NEQ": "!="}
BYTEOPS = {"&": "&", "|": "|", "<": "<", ">": ">", "=": "="}

DIR_TOKENS = {"SRC", "DST", L.ADDR}
AQUAL_TOKENS = {"HOST": "host", "NET": "net", "PORT": "port", "PORTRANGE": "portrange"}
HEAD_TOKENS = DIR_TOKENS | set(AQUAL_TOKENS) | {"PROTO", "PROTOCHAIN", "GATEWAY"}
NID_TOKENS = {L.ID, L.HID, L.HID6, L.EID, L.AID}
P80211_TOKENS = {"TYPE", "SUBTYPE", "DIR"}
OTHER_TOKENS = P80211_TOKENS | {
    "BROADCAST", "MULTICAST", "LESS", "GREATER", "BYTE", "INBOUND", "OUTBOUND", "IFINDEX",
    "VLAN", "MPLS", "PPPOED", "PPPOES", "GENEVE", "PF_IFNAME", "PF_RSET", "PF_RNR", "PF_SRNR",
    "PF_REASON", "PF_ACTION", "LLC", L.ATM, L.ATMFIELD, L.MTP2, L.MTP3FIELD}

# libpcap: grammar.y ieee80211_types / *_subtypes, llc_*_subtypes, pflog_reasons/actions.
WLAN_TYPES = {"data": 0x08, "mgt": 0x00, "management": 0x00, "ctl": 0x04, "control": 0x04}
WLAN_SUBTYPES = {
    0x00: {"assocreq": 0x00, "assoc-req": 0x00, "assocresp": 0x10, "assoc-resp": 0x10,
           "reassocreq": 0x20, "reassoc-req": 0x20, "reassocresp": 0x30, "reassoc-resp": 0x30,
           "probereq": 0x40, "probe-req": 0x40, "proberesp": 0x50, "probe-resp": 0x50,
           "beacon": 0x80, "atim": 0x90, "disassoc": 0xa0, "disassociation": 0xa0,
           "auth": 0xb0, "authentication": 0xb0, "deauth": 0xc0, "deauthentication": 0xc0},
    0x04: {"ps-poll": 0xa0, "rts": 0xb0, "cts": 0xc0, "ack": 0xd0, "cf-end": 0xe0,
           "cf-end-ack": 0xf0},
    0x08: {"data": 0x00, "data-cf-ack": 0x10, "data-cf-poll": 0x20, "data-cf-ack-poll": 0x30,
           "null": 0x40, "cf-ack": 0x50, "cf-poll": 0x60, "cf-ack-poll": 0x70,
           "qos-data": 0x80, "qos-data-cf-ack": 0x90, "qos-data-cf-poll": 0xa0,
           "qos-data-cf-ack-poll": 0xb0, "qos": 0xc0, "qos-cf-poll": 0xe0,
           "qos-cf-ack-poll": 0xf0},
}
WLAN_DIRS = {"nods": 0, "tods": 1, "fromds": 2, "dstods": 3}
LLC_KINDS = ("i", "s", "u", "rr", "rnr", "rej", "ui", "ua", "disc", "dm", "sabme", "test",
             "xid", "frmr")
PF_REASONS = {"match": 0, "bad-offset": 1, "fragment": 2, "short": 3, "normalize": 4,
              "memory": 5, "bad-timestamp": 6, "congestion": 7, "ip-option": 8,
              "proto-cksum": 9, "state-mismatch": 10, "state-insert": 11, "state-limit": 12,
              "src-limit": 13, "synproxy": 14}
PF_ACTIONS = {"pass": 0, "accept": 0, "drop": 1, "block": 1, "scrub": 2, "noscrub": 3,
              "nat": 4, "nonat": 5, "binat": 6, "nobinat": 7, "rdr": 8, "nordr": 9,
              "synproxy-drop": 10}

# What a value after each kind qualifier should be, for messages.
VALUE_WANTED = {
    "host": "a host name or address", "net": "a network address or name",
    "port": "a port number or service name", "portrange": "a port range (a-b)",
    "gateway": "a host name", "proto": "a protocol number or \\name",
    "protochain": "a protocol number or \\name", None: "an address or name",
}

# Units: what `_unit` parsed. PID_GROUP is an id of the form `( pid )`: an id, but one that
# cannot begin a pid (`pid: nid | qid and id | qid or id`, and `qid` is a pnum or a pid).
TERM, ID_, ARITH, PID_GROUP = "term", "id", "arith", "pid group"


def parse(expression):
    """Parse a pcap-filter expression into its AST.

    Returns None for an empty expression (libpcap's `prog: null`, which accepts every packet).
    Raises FilterSyntaxError for text the grammar refuses, and FilterError for the few semantic
    errors libpcap's grammar actions report themselves (an unknown 802.11 type name, a load
    size other than 1, 2 or 4, ...).
    """
    return Parser(expression).parse_prog()


def semantic_error(message, expression, pos, end):
    """A FilterError that is not a syntax error (the expression parses but means nothing on
    this link type, a number is out of range, ...) and still shows where: its text is the
    message, the expression and a caret under [pos, end); `.message`, `.expression`,
    `.position` and `.length` as a FilterSyntaxError's."""
    length = max(1, end - pos)
    err = FilterError(str(FilterSyntaxError(message, expression, pos, length)))
    err.message, err.expression, err.position, err.length = message, expression, pos, length
    return err


class Parser:
    def __init__(self, expression):
        self.expression = expression
        self.tokens = L.tokenize(expression)
        self.i = 0
        self.depth = 0

    # ------------------------------------------------------------------------- token helpers

    @property
    def tok(self):
        return self.tokens[self.i]

    def peek(self, k=1):
        j = min(self.i + k, len(self.tokens) - 1)
        return self.tokens[j]

    def advance(self):
        t = self.tokens[self.i]
        if t.kind != L.EOF:
            self.i += 1
        return t

    def error(self, message, token=None):
        t = token or self.tok
        return FilterSyntaxError(message, self.expression, t.pos, max(1, t.end - t.pos))

    def semantic(self, message, token=None, pos=None, end=None):
        """A FilterError (not a syntax error) that still shows where."""
        t = token or self.tok
        return semantic_error(message, self.expression, t.pos if pos is None else pos,
                              t.end if end is None else end)

    def expected(self, what, token=None, value=False):
        t = token or self.tok
        prev = self.tokens[self.i - 1].text if self.i > 0 else None
        if t.kind == L.EOF:
            if prev is None:
                return self.error(f"empty expression where {what} was expected", t)
            return self.error(f"unexpected end of expression after {prev!r}: expected {what}", t)
        if t.kind == ")" and not self.inside_parens():
            return self.error("unbalanced parenthesis: ')' without a matching '('", t)
        after = f" after {prev!r}" if prev is not None else ""
        return self.error(f"expected {what}{after}, found {t.text!r}{_hint(t, value)}", t)

    def inside_parens(self):
        depth = 0
        for t in self.tokens[:self.i]:
            if t.kind == "(":
                depth += 1
            elif t.kind == ")":
                depth -= 1
        return depth > 0

    def enter(self):
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.error(f"expression nested too deeply (more than {MAX_NESTING} levels)")

    def leave(self):
        self.depth -= 1

    def expect_close(self, open_tok):
        if self.tok.kind == ")":
            return self.advance()
        if self.tok.kind == L.EOF:
            raise self.error(f"unbalanced parenthesis: the '(' at offset {open_tok.pos} is never "
                             f"closed", open_tok)
        raise self.expected("')' or 'and'/'or'")

    # ------------------------------------------------------------------------- expressions

    def parse_prog(self):
        # BNF: prog: null expr | null
        if self.tok.kind == L.EOF:
            return None
        node, _q = self.parse_expr(first_ids_ok=False)
        if self.tok.kind != L.EOF:
            if self.tok.kind == ")":
                raise self.error("unbalanced parenthesis: ')' without a matching '('")
            raise self.expected("'and' or 'or' (or the end of the expression)")
        return node

    def parse_expr(self, first_ids_ok, q=QERR):
        # BNF: expr: term | expr and term | expr and id | expr or term | expr or id
        # BNF: and: AND      (passes on $<blk>0: the qualifiers of what precedes)
        # BNF: or: OR
        kind, node, q = self._unit(q, ids_ok=first_ids_ok, arith_ok=False)
        return self.parse_expr_rest(node, q)

    def parse_expr_rest(self, node, q):
        while self.tok.kind in ("AND", "OR"):
            op = self.advance()
            _kind, right, q = self._unit(q, ids_ok=True, arith_ok=False)
            cls = ast.And if op.kind == "AND" else ast.Or
            node = cls(node.pos, right.end, node, right)
        return node, q

    def parse_pid_rest(self, node, q):
        # BNF: pid: nid | qid and id | qid or id
        # BNF: qid: pnum | pid
        while self.tok.kind in ("AND", "OR"):
            op = self.advance()
            right, q = self.parse_id(q)
            cls = ast.And if op.kind == "AND" else ast.Or
            node = cls(node.pos, right.end, node, right)
        return node, q

    def _unit(self, q, ids_ok, arith_ok, terms_ok=True):
        """One operand of `and`/`or`, or the first thing inside `(`.

        Returns (kind, node, q): kind TERM (q: what it passes on), ID_ (an id that inherited
        q), PID_GROUP (`( pid )`, an id too), or ARITH (only when arith_ok: an arithmetic
        expression followed by ')', to be continued by the caller, as in
        `(ip[0] & 0xf) * 4 > 20`).
        """
        # BNF: term: rterm | not term
        # BNF: nid: not id
        # BNF: not: '!'      (passes on $<blk>0)
        t = self.tok
        if t.kind == "!":
            self.advance()
            self.enter()
            if self.tok.kind == L.EOF:
                raise self.expected("an expression to negate")
            kind, inner, q2 = self._unit(q, ids_ok, arith_ok=False, terms_ok=terms_ok)
            self.leave()
            if kind == PID_GROUP:
                kind = ID_
            return kind, ast.Not(t.pos, inner.end, inner), q2
        if t.kind in NID_TOKENS:
            if not ids_ok:
                raise self.error_bare_value(t)
            node, q2 = self.parse_nid(q)
            return ID_, node, q2
        if t.kind == "(":
            return self._group_unit(q, ids_ok, arith_ok, terms_ok)
        if t.kind == L.NUM or t.kind in ("-", "LEN") or (
                t.kind == L.PNAME and self.peek().kind == "["):
            left = self.parse_arith()
            return self._after_arith(left, q, ids_ok, arith_ok, terms_ok, start=t)
        if not terms_ok:
            raise self.expected(VALUE_WANTED[None if q is QERR else q.kind], value=True)
        node, q2 = self.parse_rterm(q)
        return TERM, node, q2

    def _group_unit(self, q, ids_ok, arith_ok, terms_ok):
        open_tok = self.tok
        kind, node, q2 = self._group(q, ids_ok, terms_ok)
        if kind == ARITH:
            if self.tok.kind in ARITH_OPS:
                node = self.parse_arith(first=node)
            return self._after_arith(node, q, ids_ok, arith_ok, terms_ok, start=open_tok)
        if kind == TERM:
            # BNF: rterm: paren expr ')'      ($$.q = $1.q: what preceded the paren)
            return TERM, node, q
        # BNF: id: paren pid ')'
        return PID_GROUP, node, q2

    def _group(self, q, ids_ok, terms_ok):
        """`(` ... `)`: a parenthesized expression, pid, pnum or arithmetic expression."""
        # BNF: paren: '('    (passes on $<blk>0)
        open_tok = self.advance()
        self.enter()
        if self.tok.kind == L.EOF:
            raise self.error(f"unbalanced parenthesis: the '(' at offset {open_tok.pos} is never "
                             f"closed", open_tok)
        first = self.tok
        kind, node, q2 = self._unit(q, ids_ok, arith_ok=True, terms_ok=terms_ok)
        if kind == PID_GROUP:
            raise self.error("a parenthesized list of values cannot begin a parenthesized "
                             "group: remove the inner parentheses", first)
        if kind == TERM:
            node, q2 = self.parse_expr_rest(node, q2)
        elif kind == ID_:
            node, q2 = self.parse_pid_rest(node, q2)
        self.expect_close(open_tok)
        self.leave()
        return kind, node, q2

    def _after_arith(self, left, q, ids_ok, arith_ok, terms_ok, start):
        # BNF: rterm: arth relop arth | arth irelop arth
        # BNF: id: pnum
        t = self.tok
        if t.kind in RELOPS:
            if not terms_ok:
                raise self.error(f"a comparison cannot stand here: expected "
                                 f"{VALUE_WANTED[None if q is QERR else q.kind]}", start)
            self.advance()
            if self.tok.kind == L.EOF:
                raise self.expected("a value to compare with")
            right = self.parse_arith()
            return TERM, ast.Relation(left.pos, right.end, RELOPS[t.kind], left, right), QERR
        if t.kind == ")" and arith_ok:
            return ARITH, left, q
        if isinstance(left, ast.Number) and ids_ok:
            return ID_, self.make_id(q, "num", left.value, left.pos, left.end, start), q
        if isinstance(left, ast.Number) and not ids_ok:
            if t.kind in ("AND", "OR", L.EOF, ")"):
                raise self.error_bare_value(start, pos=left.pos, end=left.end)
        raise self.expected("a comparison operator (=, !=, <, <=, >, >=) or an arithmetic "
                            "operator")

    def error_bare_value(self, t, pos=None, end=None):
        """A value with no qualifiers to inherit (the grammar's qerr): `tcp and 80`."""
        pos = t.pos if pos is None else pos
        end = t.end if end is None else end
        text = self.expression[pos:end]
        hint = _hint(t)
        if not hint:
            hint = (": a bare value needs 'host', 'net', 'port', 'proto', ... before it, or "
                    "must follow 'and'/'or' after a primitive that has them, to take its "
                    "qualifiers")
        return FilterSyntaxError(f"{text!r} is not a primitive{hint}", self.expression, pos,
                                 end - pos)

    # ------------------------------------------------------------------------- ids

    def parse_id(self, q):
        # BNF: id: nid | pnum | paren pid ')'
        # BNF: pnum: NUM | paren pnum ')'
        t = self.tok
        if t.kind == "!":
            self.advance()
            self.enter()
            inner, q2 = self.parse_id(q)
            self.leave()
            return ast.Not(t.pos, inner.end, inner), q2
        if t.kind in NID_TOKENS:
            return self.parse_nid(q)
        if t.kind == L.NUM:
            self.advance()
            return self.make_id(q, "num", t.value, t.pos, t.end, t), q
        if t.kind == "(":
            kind, node, q2 = self._group(q, ids_ok=True, terms_ok=False)
            if kind == ARITH:
                if not isinstance(node, ast.Number):
                    raise self.error("arithmetic cannot stand here: expected "
                                     f"{VALUE_WANTED[None if q is QERR else q.kind]}", t)
                return self.make_id(q, "num", node.value, node.pos, node.end, t), q
            return node, q2
        raise self.expected(VALUE_WANTED[None if q is QERR else q.kind], value=True)

    def parse_nid(self, q):
        # BNF: nid: ID | HID '/' NUM | HID NETMASK HID | HID | HID6 '/' NUM | HID6
        # BNF:    | EID | AID | not id
        t = self.advance()
        if q is QERR:
            self.i -= 1
            raise self.error_bare_value(t)
        if t.kind == L.ID:
            if q.kind == "portrange":
                return self.make_id(q, "range", self.split_range(t), t.pos, t.end, t), q
            return self.make_id(q, "name", t.value, t.pos, t.end, t), q
        if t.kind == L.HID:
            if self.tok.kind == "/":
                return self.make_masklen_id(q, "ipv4", t), q
            if self.tok.kind == "NETMASK":
                self.advance()
                m = self.tok
                if m.kind != L.HID:
                    raise self.expected("a dotted netmask (like 255.255.0.0)")
                self.advance()
                return self.make_id(q, "ipv4", t.value, t.pos, m.end, t, mask=m.value), q
            # libpcap: grammar.y nid: HID refuses these kinds before generating code.
            if q.kind in ("port", "portrange", "proto", "protochain"):
                raise self.semantic(f"'{q.kind}' modifier applied to ip host", t)
            return self.make_id(q, "ipv4", t.value, t.pos, t.end, t), q
        if t.kind == L.HID6:
            if self.tok.kind == "/":
                return self.make_masklen_id(q, "ipv6", t), q
            return self.make_id(q, "ipv6", t.value, t.pos, t.end, t), q
        if t.kind == L.EID:
            return self.make_id(q, "mac", names.parse_mac(t.value), t.pos, t.end, t), q
        if t.kind == L.AID:
            return self.make_id(q, "aid", int(t.value[1:], 16), t.pos, t.end, t), q
        raise AssertionError(t.kind)

    def make_id(self, q, value_kind, value, pos, end, token, masklen=None, mask=None):
        if q is QERR:
            raise self.error_bare_value(token, pos=pos, end=end)
        if q.kind == "portrange" and value_kind == "num":
            value_kind, value = "range", (str(value), str(value))
        return ast.Id(pos, end, q, value_kind, value, masklen, mask)

    def make_masklen_id(self, q, value_kind, t):
        """The id `t/N` (the '/' is the current token)."""
        self.advance()
        n = self.expect_num("a prefix length")
        return self.make_id(q, value_kind, t.value, t.pos, n.end, t, masklen=n.value)

    def split_range(self, t):
        """libpcap: pcap_nametoportrange(): "%d-%d" first, else split at the first '-'."""
        text = t.value
        lo, sep, hi = text.partition("-")
        if not sep:
            raise self.semantic(f"unknown port in range '{text}' (expected a-b)", t)
        digits_lo = names.scan_int(lo)
        digits_hi = names.scan_int(hi) if digits_lo is not None and digits_lo[1] == len(lo) else None
        if digits_lo is not None and digits_lo[1] == len(lo) and digits_hi is not None:
            return (str(digits_lo[0]), str(digits_hi[0]))
        return (lo, hi)

    def expect_num(self, what):
        t = self.tok
        if t.kind != L.NUM:
            raise self.expected(what)
        return self.advance()

    # ------------------------------------------------------------------------- terms

    def parse_rterm(self, q):
        # BNF: rterm: head id | paren expr ')' | pname | arth relop arth | arth irelop arth
        # BNF:      | other | atmtype | atmmultitype | atmfield atmvalue | mtp2type
        # BNF:      | mtp3field mtp3value
        # BNF: pqual: pname |
        t = self.tok
        proto = proto_word = None
        if t.kind == L.PNAME:
            proto, proto_word = t.value, t.text
            nxt = self.peek()
            if nxt.kind in HEAD_TOKENS:
                self.advance()
                return self.parse_head_id(t, proto, proto_word)
            if nxt.kind in ("BROADCAST", "MULTICAST") or nxt.kind in P80211_TOKENS:
                self.advance()
                return self.parse_other(t, proto), QERR
            self.advance()
            return ast.ProtoAbbrev(t.pos, t.end, proto, proto_word), QERR
        if t.kind in HEAD_TOKENS:
            return self.parse_head_id(t, None, None)
        return self.parse_other(t, None), QERR

    def parse_head_id(self, start, proto, proto_word):
        # BNF: head: pqual dqual aqual | pqual dqual | pqual aqual | pqual PROTO
        # BNF:     | pqual PROTOCHAIN | pqual ndaqual
        # BNF: dqual: SRC | DST | SRC OR DST | DST OR SRC | SRC AND DST | DST AND SRC
        # BNF:      | ADDR1 | ADDR2 | ADDR3 | ADDR4 | RA | TA
        # BNF: aqual: HOST | NET | PORT | PORTRANGE
        # BNF: ndaqual: GATEWAY
        direction = kind = None
        t = self.tok
        if t.kind in ("SRC", "DST"):
            self.advance()
            direction = t.text
            if self.tok.kind in ("AND", "OR"):
                conj = self.advance()
                other = "dst" if t.kind == "SRC" else "src"
                if self.tok.text != other or self.tok.kind not in ("SRC", "DST"):
                    raise self.expected(f"'{other}' (as in '{t.text} {conj.text} {other}')")
                self.advance()
                direction = "src or dst" if conj.kind == "OR" else "src and dst"
            t = self.tok
        elif t.kind == L.ADDR:
            self.advance()
            direction = t.value
            t = self.tok
        if t.kind in AQUAL_TOKENS:
            self.advance()
            kind = AQUAL_TOKENS[t.kind]
        elif direction is None and t.kind in ("PROTO", "PROTOCHAIN", "GATEWAY"):
            self.advance()
            kind = t.text
        elif direction is not None and t.kind in ("PROTO", "PROTOCHAIN", "GATEWAY"):
            raise self.error(f"'{t.text}' cannot follow a direction qualifier")
        q = ast.Qualifiers(proto=proto, dir=direction, kind=kind, proto_word=proto_word)
        # BNF: rterm: head id
        if self.tok.kind == L.EOF:
            raise self.expected(VALUE_WANTED[kind])
        node, _q = self.parse_id(q)
        if isinstance(node, ast.Id):
            node = node.replace(pos=start.pos)
        return node, q

    def parse_other(self, start, proto):
        # BNF: other: pqual TK_BROADCAST | pqual TK_MULTICAST | LESS NUM | GREATER NUM
        # BNF:      | CBYTE NUM byteop NUM | INBOUND | OUTBOUND | IFINDEX NUM
        # BNF:      | VLAN pnum | VLAN | MPLS pnum | MPLS | PPPOED | PPPOES pnum | PPPOES
        # BNF:      | GENEVE pnum | GENEVE | pfvar | pqual p80211 | pllc
        if self.tok.kind not in OTHER_TOKENS:
            raise self.expected("a filter primitive (e.g. 'host', 'port', 'tcp', 'ip[0] = 1')")
        t = self.advance()
        k = t.kind
        if k == "BROADCAST":
            return ast.Broadcast(start.pos, t.end, proto)
        if k == "MULTICAST":
            return ast.Multicast(start.pos, t.end, proto)
        if k in P80211_TOKENS:
            return self.parse_p80211(start, t)
        if k in ("LESS", "GREATER"):
            n = self.expect_num("a length (a number)")
            cls = ast.Less if k == "LESS" else ast.Greater
            return cls(t.pos, n.end, n.value)
        if k == "BYTE":
            # BNF: byteop: '&' | '|' | '<' | '>' | '='
            idx = self.expect_num("a byte offset (a number)")
            op = self.tok
            if op.kind not in BYTEOPS:
                raise self.expected("one of & | < > =")
            self.advance()
            v = self.expect_num("a number")
            return ast.ByteOp(t.pos, v.end, idx.value, BYTEOPS[op.kind], v.value)
        if k == "INBOUND":
            return ast.Inbound(t.pos, t.end)
        if k == "OUTBOUND":
            return ast.Outbound(t.pos, t.end)
        if k == "IFINDEX":
            n = self.expect_num("an interface index (a number)")
            return ast.Ifindex(t.pos, n.end, n.value)
        if k in ("VLAN", "MPLS", "PPPOES", "GENEVE"):
            value, end = None, t.end
            if self.tok.kind in (L.NUM, "("):
                value, end = self.parse_pnum()
            cls = {"VLAN": ast.Vlan, "MPLS": ast.Mpls, "PPPOES": ast.Pppoes,
                   "GENEVE": ast.Geneve}[k]
            return cls(t.pos, end, value)
        if k == "PPPOED":
            return ast.Pppoed(t.pos, t.end)
        if k.startswith("PF_"):
            return self.parse_pfvar(t)
        if k == "LLC":
            return self.parse_llc(t)
        return self.parse_atm_mtp(t)

    def parse_pnum(self):
        # BNF: pnum: NUM | paren pnum ')'
        t = self.tok
        if t.kind == L.NUM:
            self.advance()
            return t.value, t.end
        if t.kind == "(":
            self.advance()
            self.enter()
            value, _ = self.parse_pnum()
            close = self.expect_close(t)
            self.leave()
            return value, close.end
        raise self.expected("a number")

    def parse_pfvar(self, t):
        # BNF: pfvar: PF_IFNAME ID | PF_RSET ID | PF_RNR NUM | PF_SRNR NUM
        # BNF:      | PF_REASON reason | PF_ACTION action
        # BNF: reason: NUM | ID
        # BNF: action: ID
        k = t.kind
        v = self.tok
        if k in ("PF_IFNAME", "PF_RSET"):
            if v.kind != L.ID:
                raise self.expected("an interface name" if k == "PF_IFNAME" else "a ruleset name",
                                    value=True)
            self.advance()
            return ast.PfField(t.pos, v.end, "ifname" if k == "PF_IFNAME" else "ruleset", v.value)
        if k in ("PF_RNR", "PF_SRNR"):
            n = self.expect_num("a rule number")
            return ast.PfField(t.pos, n.end, "rnr" if k == "PF_RNR" else "srnr", n.value)
        if k == "PF_REASON" and v.kind == L.NUM:
            self.advance()
            return ast.PfField(t.pos, v.end, "reason", v.value)
        field, table, expected = ("reason", PF_REASONS, "a PF reason (a number or a name such as "
                                  "'match')") if k == "PF_REASON" else \
            ("action", PF_ACTIONS, "a PF action name (such as 'pass' or 'block')")
        if v.kind != L.ID:
            raise self.expected(expected)
        self.advance()
        code = table.get(v.value.lower())
        if code is None:
            raise self.semantic(f'unknown PF {field} "{v.value}"', v)
        return ast.PfField(t.pos, v.end, field, code)

    def wlan_value(self, what, mask, lookup, expected):
        """(token, value) of an 802.11 type or subtype: a number within `mask`, or a name
        `lookup` knows."""
        v = self.tok
        if v.kind == L.NUM:
            if v.value & ~mask:
                raise self.semantic(f"invalid 802.11 {what} value 0x{v.value:02x}", v)
            value = v.value
        elif v.kind == L.ID:
            value = lookup(v.value.lower())
            if value is None:
                raise self.semantic(f'unknown 802.11 {what} name "{v.value}"', v)
        else:
            raise self.expected(expected)
        self.advance()
        return v, value

    def parse_p80211(self, start, t):
        # BNF: p80211: TYPE type SUBTYPE subtype | TYPE type | SUBTYPE type_subtype | DIR dir
        # BNF: type: NUM | ID
        # BNF: subtype: NUM | ID
        # BNF: type_subtype: ID
        # BNF: dir: NUM | ID
        if t.kind == "TYPE":
            v, wtype = self.wlan_value("type", 0x0c, WLAN_TYPES.get,
                                       "an 802.11 frame type (mgt, ctl, data or a number)")
            if self.tok.kind != "SUBTYPE":
                return ast.Wlan(start.pos, v.end, "type", wtype)
            self.advance()
            table = WLAN_SUBTYPES.get(wtype)

            def subtype(name):
                if table is None:
                    raise self.semantic("unknown 802.11 type", v)
                return table.get(name)
            s, sub = self.wlan_value("subtype", 0xf0, subtype,
                                     "an 802.11 frame subtype (a name or a number)")
            return ast.Wlan(start.pos, s.end, "type_subtype", (wtype, sub))
        if t.kind == "SUBTYPE":
            s = self.tok
            if s.kind != L.ID:
                raise self.expected("an 802.11 frame subtype name (such as 'beacon')")
            self.advance()
            for wtype in (0x00, 0x04, 0x08):
                sub = WLAN_SUBTYPES[wtype].get(s.value.lower())
                if sub is not None:
                    return ast.Wlan(start.pos, s.end, "type_subtype", (wtype, sub))
            raise self.semantic("unknown 802.11 type name", s)
        v = self.tok
        if v.kind == L.NUM:
            self.advance()
            return ast.Wlan(start.pos, v.end, "dir", v.value)
        if v.kind == L.ID:
            self.advance()
            d = WLAN_DIRS.get(v.value.lower())
            if d is None:
                raise self.semantic("unknown 802.11 direction", v)
            return ast.Wlan(start.pos, v.end, "dir", d)
        raise self.expected("an 802.11 direction (nods, tods, fromds, dstods or a number)")

    def parse_llc(self, t):
        # BNF: pllc: LLC | LLC ID | LLC PF_RNR
        # The grammar takes the PF_RNR token whichever way it is spelled: `llc rulenum` is
        # `llc rnr` there, and so here.
        v = self.tok
        if v.kind == "PF_RNR":
            self.advance()
            return ast.Llc(t.pos, v.end, "rnr")
        if v.kind != L.ID:
            return ast.Llc(t.pos, t.end, None)
        self.advance()
        kind = v.value.lower()
        if kind not in LLC_KINDS:
            raise self.semantic(f'unknown LLC type name "{v.value}"', v)
        return ast.Llc(t.pos, v.end, kind)

    def parse_atm_mtp(self, t):
        # BNF: atmtype: LANE | METAC | BCC | OAMF4EC | OAMF4SC | SC | ILMIC
        # BNF: atmmultitype: OAM | OAMF4 | CONNECTMSG | METACONNECT
        # BNF: atmfield atmvalue ; mtp2type ; mtp3field mtp3value
        # BNF: atmvalue: atmfieldvalue | relop NUM | irelop NUM | paren atmlistvalue ')'
        # BNF: atmlistvalue: atmfieldvalue | atmlistvalue or atmfieldvalue
        # (mtp3value and mtp3listvalue alike)
        if t.kind not in (L.ATMFIELD, L.MTP3FIELD):
            return ast.Circuit(t.pos, t.end, "lssu" if t.value == "lsu" else t.value)
        if self.tok.kind == L.NUM:
            v = self.advance()
            return ast.SignalField(t.pos, v.end, t.value, "=", (v.value,))
        if self.tok.kind in RELOPS:
            op = self.advance()
            v = self.expect_num("a number")
            return ast.SignalField(t.pos, v.end, t.value, RELOPS[op.kind], (v.value,))
        if self.tok.kind == "(":
            open_tok = self.advance()
            values = [self.expect_num("a number").value]
            while self.tok.kind == "OR":
                self.advance()
                values.append(self.expect_num("a number").value)
            close = self.expect_close(open_tok)
            return ast.SignalField(t.pos, close.end, t.value, "=", tuple(values))
        raise self.expected("a number, a comparison or a parenthesized list")

    # ------------------------------------------------------------------------- arithmetic

    def parse_arith(self, left_op=None, first=None):
        """Arithmetic by precedence climbing over ARITH_PRECEDENCE (yacc's shift/reduce rule)."""
        # BNF: arth: pnum | narth
        # BNF: narth: pname '[' arth ']' | pname '[' arth ':' NUM ']' | arth '+' arth
        # BNF:      | arth '-' arth | arth '*' arth | arth '/' arth | arth '%' arth
        # BNF:      | arth '&' arth | arth '|' arth | arth '^' arth | arth LSH arth
        # BNF:      | arth RSH arth | '-' arth %prec UMINUS | paren narth ')' | LEN
        self.enter()
        left = self.parse_arith_primary() if first is None else first
        while self.tok.kind in ARITH_OPS and _shifts(left_op, self.tok.kind):
            op = self.advance()
            if self.tok.kind == L.EOF:
                raise self.expected("an operand")
            right = self.parse_arith(op.kind)
            left = ast.Binary(left.pos, right.end, ARITH_OPS[op.kind], left, right)
        self.leave()
        return left

    def parse_arith_primary(self):
        t = self.tok
        if t.kind == L.NUM:
            self.advance()
            return ast.Number(t.pos, t.end, t.value)
        if t.kind == "LEN":
            self.advance()
            return ast.Length(t.pos, t.end)
        if t.kind == "-":
            self.advance()
            operand = self.parse_arith("NEG")
            return ast.Negate(t.pos, operand.end, operand)
        if t.kind == "(":
            # BNF: narth: paren narth ')'     pnum: paren pnum ')'
            self.advance()
            inner = self.parse_arith()
            if self.tok.kind not in (")", L.EOF):
                raise self.expected("')' or an arithmetic operator")
            self.expect_close(t)
            return inner
        if t.kind == L.PNAME and self.peek().kind == "[":
            return self.parse_load()
        raise self.expected("a number, 'len', or a packet load such as ip[0]")

    def parse_load(self):
        # BNF: narth: pname '[' arth ']' | pname '[' arth ':' NUM ']'
        p = self.advance()
        self.advance()
        if self.tok.kind == L.EOF:
            raise self.expected("an offset")
        index = self.parse_arith()
        size = 1
        if self.tok.kind == ":":
            self.advance()
            n = self.expect_num("a size (1, 2 or 4)")
            if n.value not in (1, 2, 4):
                raise self.semantic("data size must be 1, 2, or 4", n)
            size = n.value
        if self.tok.kind != "]":
            if self.tok.kind == L.EOF:
                raise self.error(f"unbalanced bracket: the '[' after {p.text!r} is never closed")
            raise self.expected("']' or ':size'")
        close = self.advance()
        return ast.Load(p.pos, close.end, p.value, index, size, p.text)


def _hint(t, value=True):
    """A short explanation of a token that is often misplaced, for error messages."""
    if value and t.text in L.KEYWORDS and t.kind not in ("AND", "OR", "!"):
        return f" ({t.text!r} is a keyword: write '\\{t.text}' to use it as a name)"
    if t.kind == "NETMASK":
        return " ('mask' follows a dotted IPv4 network, as in 'net 10.0.0.0 mask 255.0.0.0')"
    if t.kind == L.ID and "-" in t.text and not t.text.startswith("\\"):
        if t.text.startswith(("icmp-", "icmp6-", "tcp-")):
            return f" ({t.text!r} is not one of the named constants)"
        return (f" ({t.text!r} reads as one name, like a port range: put spaces around '-' "
                f"to subtract)")
    return ""


def _shifts(left_op, right_op):
    """Does yacc shift `right_op` when the operator on the stack is `left_op`?"""
    if left_op is None:
        return True
    lp, rp = ARITH_PRECEDENCE[left_op], ARITH_PRECEDENCE[right_op]
    if lp is None or rp is None:
        return True
    return rp > lp
