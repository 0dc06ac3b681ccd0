"""The syntax tree of a pcap-filter expression. Imports nothing from pfilter.

The parser builds it; lowering (gencode) walks it left to right, in source order, because some
primitives (`vlan`, `mpls`, `pppoes`, `geneve`) change how the rest of the expression is compiled.
Every node carries `pos` and `end`: the half-open span of its text in the expression, so errors
found after parsing can still point at the source.

Qualifier inheritance (`host a or b`, `tcp dst port ftp or ftp-data`, `not host a and b`) is
resolved by the parser: every `Id` carries its complete qualifiers.

Qualifier vocabulary (strings, the words of the language; None when absent):
  proto: "link" (ether/link/fddi/tr/wlan's link layer), "ip", "ip6", "arp", "rarp", "tcp",
         "udp", "sctp", "icmp", "icmp6", "igmp", "igrp", "pim", "vrrp", "carp", "ah", "esp",
         "atalk", "aarp", "decnet", "lat", "sca", "moprc", "mopdl", "iso", "esis", "isis",
         "clnp", "stp", "ipx", "netbeui", "l1", "l2", "iih", "snp", "csnp", "psnp", "lsp",
         "radio"
         (the parser maps synonyms: "ether"/"fddi"/"tr"/"wlan" -> "link" but keeps the spelling
          in `proto_word` for messages)
  dir:   "src", "dst", "src or dst", "src and dst", "addr1", "addr2", "addr3", "addr4",
         "ra", "ta"
  kind:  "host", "net", "port", "portrange", "gateway", "proto", "protochain"
"""
from typing import Optional, Union


class FrozenInstanceError(AttributeError):
    """An attempt to change a field of a node."""


class Frozen:
    """What @dataclass(frozen=True) gave these classes, without generating code for each of
    them at import (the bulk of the module's import time): the fields are the annotations of
    the class and of its bases, bases' first; a class attribute gives a field its default.
    __init__ takes them by position or name; __eq__ (same class, equal fields), __hash__ and
    __repr__ are the dataclass ones; fields cannot be set or deleted; replace(**changes) is
    dataclasses.replace."""
    _fields: tuple = ()
    _defaults: dict = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # (a class's own annotations since Python 3.10, also where they are evaluated lazily)
        own = [name for name in cls.__annotations__ if not name.startswith("_")]
        cls._fields = cls._fields + tuple(name for name in own if name not in cls._fields)
        cls._defaults = dict(cls._defaults, **{name: cls.__dict__[name] for name in own if name in cls.__dict__})
        cls.__match_args__ = cls._fields

    def __init__(self, *args, **kwargs):
        fields = self._fields
        name = type(self).__name__
        if len(args) > len(fields):
            raise TypeError(f"{name}() takes {len(fields)} arguments but {len(args)} were given")
        values = dict(zip(fields, args))
        for key, value in kwargs.items():
            if key not in fields:
                raise TypeError(f"{name}() got an unexpected keyword argument {key!r}")
            if key in values:
                raise TypeError(f"{name}() got multiple values for argument {key!r}")
            values[key] = value
        for field in fields:
            if field in values:
                object.__setattr__(self, field, values[field])
            elif field in self._defaults:
                object.__setattr__(self, field, self._defaults[field])
            else:
                raise TypeError(f"{name}() missing required argument: {field!r}")

    def _values(self):
        return tuple(getattr(self, field) for field in self._fields)

    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self):
        return hash(self._values())

    def __repr__(self):
        return f"{self.__class__.__qualname__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"

    def __setattr__(self, name, value):
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name):
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def replace(self, **changes):
        """A copy with `changes` (field=value) made, as dataclasses.replace."""
        return self.__class__(**dict(zip(self._fields, self._values()), **changes))


class Node(Frozen):
    pos: int
    end: int


class Qualifiers(Frozen):
    proto: Optional[str] = None
    dir: Optional[str] = None
    kind: Optional[str] = None
    proto_word: Optional[str] = None  # as written ("ether", "fddi", ...), for messages


# ----------------------------------------------------------------------------- boolean structure

class Pair(Node):
    """The base of the nodes with two operands."""
    left: "Expr"
    right: "Expr"


class Unary(Node):
    """The base of the nodes with one operand."""
    operand: "Expr"


class Valued(Node):
    """The base of the nodes that hold one value (an int, or None where it is optional)."""
    value: Optional[int]


class Qualified(Node):
    """The base of the nodes that hold a protocol qualifier (None when unqualified)."""
    proto: Optional[str]


class And(Pair):
    """`left and right`."""


class Or(Pair):
    """`left or right`."""


class Not(Unary):
    """`not operand`."""


# ----------------------------------------------------------------------------- qualified ids

class Id(Node):
    """`[proto] [dir] [kind] value`, e.g. `tcp dst port 80`, `net 10.0.0.0/8`, `host foo`.

    value_kind says how the lexer saw the value:
      "num"   a number (decimal, 0x hex, 0 octal): `value` is an int
      "name"  a name (host, service, protocol, network, ether host, or `\\escaped` keyword):
              `value` is the text without the backslash
      "ipv4"  1 to 4 dotted numbers `10`, `10.1`, `10.1.2.3` when written with dots: `value` is
              the text (the number of parts matters: `net 10.1` is a /16)
      "ipv6"  an IPv6 address: `value` is the text
      "mac"   a MAC address in any notation: `value` is 6 bytes
      "aid"   an ARCnet address `$xx`: `value` is an int
    `masklen` (from `/N`) or `mask` (from `mask A.B.C.D`, text) for networks, else None.
    Every `portrange` id (`portrange 80` included) has value_kind "range" and value
    (lo_text, hi_text): each a service name, or a number written out in decimal.
    """
    quals: Qualifiers
    value_kind: str
    value: object
    masklen: Optional[int] = None
    mask: Optional[str] = None


class ProtoAbbrev(Node):
    """A protocol keyword on its own: `tcp`, `ip6`, `arp`, `isis`, `l1`, `iih`, `stp`, ..."""
    proto: str
    proto_word: Optional[str] = None


# ----------------------------------------------------------------------------- other primitives

class Broadcast(Qualified):
    """`[ether|ip|...] broadcast`."""


class Multicast(Qualified):
    """`[ether|ip|ip6|...] multicast`."""


class Less(Valued):
    """`less N`: wire length <= N."""


class Greater(Valued):
    """`greater N`: wire length >= N."""


class ByteOp(Node):
    """`byte N op V` with op in "&", "|", "<", ">", "="."""
    index: int
    op: str
    value: int


class Inbound(Node):
    """`inbound`."""


class Outbound(Node):
    """`outbound`."""


class Ifindex(Valued):
    """`ifindex N`."""


class Vlan(Valued):
    """`vlan [id]`: value the VLAN id or None."""


class Mpls(Valued):
    """`mpls [label]`: value the label or None."""


class Pppoed(Node):
    """`pppoed`."""


class Pppoes(Valued):
    """`pppoes [session]`: value the session id or None."""


class Geneve(Valued):
    """`geneve [vni]`: value the VNI or None."""


class Llc(Node):
    """`llc` or `llc i|s|u|rr|rnr|rej|ui|ua|disc|dm|sabme|test|xid|frmr`: kind None or the word."""
    kind: Optional[str]


class PfField(Node):
    """PFLOG fields: field in "ifname", "ruleset", "rnr", "srnr", "reason", "action";
    value is an int or a name (text); the parser has already turned reason and action names
    into their numbers."""
    field: str
    value: Union[int, str]


class Wlan(Node):
    """802.11: field in "type", "subtype", "type_subtype", "dir"; value an int, or for
    type_subtype a (type, subtype) pair of ints (names resolved by the parser)."""
    field: str
    value: object


class Circuit(Node):
    """A SunATM circuit or message class, or an MTP2 signal unit type (libpcap's atmtype,
    atmmultitype and mtp2type): kind in "lane", "metac", "bcc", "oamf4ec", "oamf4sc", "sc",
    "ilmic", "oam", "oamf4", "connectmsg", "metaconnect", "fisu", "lssu", "msu", "hfisu",
    "hlssu", "hmsu"."""
    kind: str


class SignalField(Node):
    """`field value`, `field relop value` or `field (v1 or v2 ...)` for an ATM cell field
    (vpi, vci) or an SS7 MTP3 field (sio, opc, dpc, sls, and the MTP2-HSL hsio, hopc, hdpc,
    hsls): op a relop ("=" for a bare value and for each value of a list), values the ints."""
    field: str
    op: str
    values: tuple


# ----------------------------------------------------------------------------- arithmetic

class Number(Valued):
    """A number in arithmetic."""


class Length(Node):
    """`len` / `length`: the wire length."""


class Load(Node):
    """`proto[index]` or `proto[index:size]`, size 1, 2 or 4 (default 1). proto is a qualifier
    proto ("link" for ether/link, "ip", "tcp", "radio", ...)."""
    proto: str
    index: "Arith"
    size: int = 1
    proto_word: Optional[str] = None


class Operation(Node):
    """The base of the nodes `left op right` of arithmetic."""
    op: str
    left: "Arith"
    right: "Arith"


class Binary(Operation):
    """op in "+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"."""


class Negate(Unary):
    """`- operand`."""


class Relation(Operation):
    """`arith relop arith`, op in "=", "!=", ">", "<", ">=", "<=" ("==" is parsed as "=")."""


Arith = Union[Number, Length, Load, Binary, Negate]
Expr = Union[And, Or, Not, Id, ProtoAbbrev, Broadcast, Multicast, Less, Greater, ByteOp, Inbound,
             Outbound, Ifindex, Vlan, Mpls, Pppoed, Pppoes, Geneve, Llc, PfField, Wlan, Circuit,
             SignalField, Relation]
