"""Lowering: the pcap-filter AST to a graph of basic blocks, with libpcap 1.10.3's meaning.
Imports pfilter.errors, pfilter.opcodes and pfilter.compiler.{ast,blocks,constants,linkctx,
linklayer,names,primitives}.

`Codegen(link_context, ...)` is built on linklayer.LinkLayer and primitives.Primitives, which
hold the state of one compilation (libpcap's compiler_state_t: the link-layer offsets, the
scratch registers) and the loads and comparisons. `lower(node)` walks the AST left
to right, in source order, exactly as libpcap's grammar actions run, so the blocks (and
therefore the linearized program) come out the same as libpcap's unoptimized output.

Each `gen_*` method mirrors the libpcap function it names; differences are marked
`Divergence:`.
"""

from pfilter.errors import FilterError
from pfilter.opcodes import (
    BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_DIV, BPF_H, BPF_IMM, BPF_IND, BPF_JA,
    BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH,
    BPF_MEM, BPF_MISC, BPF_MOD, BPF_MSH, BPF_MUL, BPF_NEG, BPF_OR,
    BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR,
)
from pfilter.compiler import ast as A
from pfilter.compiler import names
from pfilter.compiler.blocks import Block, JMP, Stmt, backpatch, gen_and, gen_not, gen_or
from pfilter.compiler.constants import (
    ETHERTYPE_8021AD, ETHERTYPE_8021Q, ETHERTYPE_8021QINQ, ETHERTYPE_AARP, ETHERTYPE_ARP,
    ETHERTYPE_ATALK, ETHERTYPE_DN, ETHERTYPE_IP, ETHERTYPE_IPV6, ETHERTYPE_LAT, ETHERTYPE_MOPDL,
    ETHERTYPE_MOPRC, ETHERTYPE_MPLS, ETHERTYPE_PPPOED, ETHERTYPE_PPPOES, ETHERTYPE_REVARP,
    ETHERTYPE_SCA, ETHERTYPE_TEB, GENEVE_PORT, IEEE80211_FC0_SUBTYPE_ACK,
    IEEE80211_FC0_SUBTYPE_CTS, IEEE80211_FC0_SUBTYPE_MASK, IEEE80211_FC0_TYPE_CTL,
    IEEE80211_FC0_TYPE_MASK, IEEE80211_FC1_DIR_DSTODS, IEEE80211_FC1_DIR_MASK, IPNET_INBOUND,
    IPNET_OUTBOUND, IPPROTO_AH, IPPROTO_CARP, IPPROTO_DSTOPTS, IPPROTO_ESP, IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_IGMP, IPPROTO_IGRP, IPPROTO_NONE,
    IPPROTO_PIM, IPPROTO_ROUTING, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_VRRP,
    ISIS_L1_CSNP, ISIS_L1_LAN_IIH, ISIS_L1_LSP, ISIS_L1_PSNP, ISIS_L2_CSNP, ISIS_L2_LAN_IIH,
    ISIS_L2_LSP, ISIS_L2_PSNP, ISIS_PTP_IIH, ISO10589_ISIS, ISO8473_CLNP, ISO9542_ESIS,
    LINUX_SLL_OUTGOING, LLCSAP_8021D, LLCSAP_IPX, LLCSAP_ISONS, LLCSAP_NETBEUI, OFFSET_NOT_SET,
    OR_LINKHDR, OR_LINKPL, OR_LINKPL_NOSNAP,
    OR_PREVMPLSHDR, OR_TRAN_IPV4, OR_TRAN_IPV6, PFLOG_ACTION, PFLOG_DIR, PFLOG_IFNAME,
    PFLOG_IFNAMSIZ, PFLOG_REASON, PFLOG_RULENR, PFLOG_RULESET, PFLOG_SUBRULENR, PF_ACTIONS,
    PF_IN, PF_OUT, PF_REASONS, PPP_MPLS_UCAST, PPP_PPPD_IN, PPP_PPPD_OUT, PROTO_UNDEF, SLIPDIR_IN,
    SLIPDIR_OUT, swap16,
)
from pfilter.compiler.linkctx import DLT, ETHER_DLTS, JUNIPER_DLTS, WLAN_DLTS
from pfilter.compiler.linklayer import LinkLayer
from pfilter.compiler.primitives import AbsOffset, fail as _err

__all__ = ["Codegen", "lower"]


_SIZE_CODE = {1: BPF_B, 2: BPF_H, 4: BPF_W}

_ARITH_OPS = {"+": BPF_ADD, "-": BPF_SUB, "*": BPF_MUL, "/": BPF_DIV, "%": BPF_MOD,
              "&": BPF_AND, "|": BPF_OR, "^": BPF_XOR, "<<": BPF_LSH, ">>": BPF_RSH}
# relop -> (jump, reversed) (libpcap grammar: relop / irelop)
_RELOPS = {">": (BPF_JGT, False), ">=": (BPF_JGE, False), "=": (BPF_JEQ, False),
           "<=": (BPF_JGT, True), "<": (BPF_JGE, True), "!=": (BPF_JEQ, True)}

# The dir qualifier words; None is libpcap's Q_DEFAULT.
Q_SRC, Q_DST, Q_OR, Q_AND = "src", "dst", "src or dst", "src and dst"
# libpcap's atmtype and atmmultitype words (the other ast.Circuit kinds are mtp2type's)
_ATM_KINDS = frozenset({"lane", "metac", "bcc", "oamf4ec", "oamf4sc", "sc", "ilmic", "oam", "oamf4",
                        "connectmsg", "metaconnect"})
_WLAN_DIRS = ("addr1", "addr2", "addr3", "addr4", "ra", "ta")


def _tag_origin(head, span):
    """Give `span` to every block of a primitive's partial result not tagged yet: a new partial
    result is not linked to any other one, so what its head reaches is its own."""
    stack = [head]
    while stack:
        b = stack.pop()
        if b is None or b.origin is not None:
            continue
        b.origin = span
        stack.append(b.jt)
        stack.append(b.jf)


def _and_into(inst, b):
    """The Arth's protocol checks become `inst.b and b` (libpcap: gen_load_internal())."""
    if inst.b is not None:
        gen_and(inst.b, b)
    inst.b = b


def _give_span(err, node):
    """Mark a semantic error with the span of the innermost AST node it was raised for (the
    driver turns it into a located error); an error that has one already keeps it."""
    if getattr(err, "span", None) is None and getattr(err, "position", None) is None:
        err.span = (node.pos, node.end)


def lower(node, link, **options):
    """The root block of the finished graph for an AST (None: accept every packet), compiled
    for LinkContext `link`; options as Codegen's (snaplen, netmask, savefile, swapped)."""
    return Codegen(link, **options).compile(node)


class Arth:
    """An arithmetic value being computed (libpcap: struct arth): code in `s` leaves it in
    scratch register `regno`; `b` holds the protocol checks it depends on (or None)."""

    __slots__ = ("s", "b", "regno")

    def __init__(self, s, regno, b=None):
        self.s = s
        self.regno = regno
        self.b = b


class Codegen(LinkLayer):
    """The state of one compilation (libpcap: compiler_state_t) and the gen_* routines."""

    # ------------------------------------------------------------------ driver entry points

    def compile(self, node):
        """The root block of the finished graph for `node` (None: accept every packet)."""
        if node is None:
            return self.gen_retblk(self.snaplen)
        b = self.lower(node)
        return self.finish_parse(b)

    def finish_parse(self, p):
        # libpcap: finish_parse()
        self.insert_compute_vloffsets(p.head)
        ppi = self.gen_ppi_dlt_check()
        if ppi is not None:
            gen_and(ppi, p)
        backpatch(p, self.gen_retblk(self.snaplen))
        p.sense = not p.sense
        backpatch(p, self.gen_retblk(0))
        return p.head

    # ------------------------------------------------------------------ hosts

    def gen_hostop(self, addr, mask, dir, ll_proto, src_off, dst_off):
        # libpcap: gen_hostop()
        def one(d):
            b0 = self.gen_linktype(ll_proto)
            b1 = self.gen_mcmp(OR_LINKPL, src_off if d == Q_SRC else dst_off, BPF_W, addr, mask)
            return gen_and(b0, b1)
        return self._by_dir(dir, one, self._wlan_dir_error_addr)

    @staticmethod
    def _wlan_dir_error_addr(dir, what="addresses other than 802.11 MAC addresses", only_on=None):
        """Refuse an 802.11 address qualifier (addr1-4, ra, ta) as libpcap does: not valid for
        `what`, or (with only_on) supported only on 802.11 `only_on`."""
        one = dir in ("ra", "ta")
        words = f"'{dir}' is" if one else f"'addr{dir[-1]}' and 'address{dir[-1]}' are"
        if only_on is not None:
            _err(f"{words} only supported on 802.11{only_on}")
        _err(f"{words} not {'a valid qualifier' if one else 'valid qualifiers'} for {what}")

    def gen_hostop6(self, addr, mask, dir, ll_proto, src_off, dst_off):
        # libpcap: gen_hostop6()
        def one(d):
            offset = src_off if d == Q_SRC else dst_off
            a = [int.from_bytes(addr[i:i + 4], "big") for i in range(0, 16, 4)]
            m = [int.from_bytes(mask[i:i + 4], "big") for i in range(0, 16, 4)]
            b1 = self.gen_mcmp(OR_LINKPL, offset + 12, BPF_W, a[3], m[3])
            b0 = self.gen_mcmp(OR_LINKPL, offset + 8, BPF_W, a[2], m[2])
            gen_and(b0, b1)
            b0 = self.gen_mcmp(OR_LINKPL, offset + 4, BPF_W, a[1], m[1])
            gen_and(b0, b1)
            b0 = self.gen_mcmp(OR_LINKPL, offset + 0, BPF_W, a[0], m[0])
            gen_and(b0, b1)
            b0 = self.gen_linktype(ll_proto)
            return gen_and(b0, b1)
        return self._by_dir(dir, one, self._wlan_dir_error_addr)

    def gen_ehostop(self, eaddr, dir):
        # libpcap: gen_ehostop()
        return self._by_dir(dir, lambda d: self.gen_bcmp(OR_LINKHDR, 6 if d == Q_SRC else 0, 6, eaddr),
                            lambda d: self._wlan_dir_error_addr(d, only_on=" with 802.11 headers"))

    def _gen_mac_hostop(self, src_off, dst_off, eaddr, dir):
        # libpcap: gen_fhostop(), gen_thostop(), gen_ipfchostop(): fixed MAC offsets
        return self._by_dir(dir, lambda d: self.gen_bcmp(OR_LINKHDR, src_off if d == Q_SRC else dst_off,
                                                         6, eaddr),
                            lambda d: self._wlan_dir_error_addr(d, only_on=""))

    def _by_flag(self, offset, bit, when_set, when_clear):
        """(flag bit set and when_set) or (bit clear and when_clear()), the blocks made in
        libpcap's order; when_set is a block already made or a function making it."""
        b1 = self._jset_block(offset, bit)
        b0 = when_set() if callable(when_set) else when_set
        gen_and(b1, b0)
        b2 = self._jset_block(offset, bit, True)
        b1 = when_clear()
        gen_and(b2, b1)
        return gen_or(b1, b0)

    def gen_wlanhostop(self, eaddr, dir):
        # libpcap: gen_wlanhostop()
        def at(offset):
            return lambda: self.gen_bcmp(OR_LINKHDR, offset, 6, eaddr)
        if dir in (Q_SRC, Q_DST):
            if dir == Q_SRC:      # from-DS: SA in addr3 (or addr4 with to-DS too), else addr2
                b0 = self._by_flag(1, 0x01, at(24), at(16))
                b0 = self._by_flag(1, 0x02, b0, at(10))
            else:                 # to-DS: DA in addr3, else addr1
                b0 = self._by_flag(1, 0x01, at(16), at(4))
            # data frames go by the DS bits; management frames: SA in addr2, DA in addr1
            b0 = self._by_flag(0, 0x08, b0, at(10 if dir == Q_SRC else 4))
            b1 = self._jset_block(0, 0x04, True)      # never a control frame
            return gen_and(b1, b0)
        if dir in (Q_AND, Q_OR, None):
            return self._by_dir(dir, lambda d: self.gen_wlanhostop(eaddr, d), None)
        if dir == "addr1":
            return self.gen_bcmp(OR_LINKHDR, 4, 6, eaddr)
        if dir in ("addr2", "ta"):
            b0 = self.gen_mcmp(OR_LINKHDR, 0, BPF_B, IEEE80211_FC0_TYPE_CTL, IEEE80211_FC0_TYPE_MASK)
            gen_not(b0)
            b1 = self.gen_mcmp(OR_LINKHDR, 0, BPF_B, IEEE80211_FC0_SUBTYPE_CTS, IEEE80211_FC0_SUBTYPE_MASK)
            gen_not(b1)
            b2 = self.gen_mcmp(OR_LINKHDR, 0, BPF_B, IEEE80211_FC0_SUBTYPE_ACK, IEEE80211_FC0_SUBTYPE_MASK)
            gen_not(b2)
            gen_and(b1, b2)
            gen_or(b0, b2)
            if dir == "ta":
                b1 = self._jset_block(0, 0x08)
                gen_and(b1, b2)
            b1 = self.gen_bcmp(OR_LINKHDR, 10, 6, eaddr)
            return gen_and(b2, b1)
        if dir == "addr3":
            b0 = self.gen_mcmp(OR_LINKHDR, 0, BPF_B, IEEE80211_FC0_TYPE_CTL, IEEE80211_FC0_TYPE_MASK)
            gen_not(b0)
            b1 = self.gen_bcmp(OR_LINKHDR, 16, 6, eaddr)
            return gen_and(b0, b1)
        if dir == "addr4":
            b0 = self.gen_mcmp(OR_LINKHDR, 1, BPF_B, IEEE80211_FC1_DIR_DSTODS, IEEE80211_FC1_DIR_MASK)
            b1 = self.gen_bcmp(OR_LINKHDR, 24, 6, eaddr)
            return gen_and(b0, b1)
        if dir == "ra":
            return gen_and(self._jset_block(0, 0x08), self.gen_bcmp(OR_LINKHDR, 4, 6, eaddr))
        raise AssertionError(dir)

    def gen_dnhostop(self, addr, dir):
        # libpcap: gen_dnhostop()
        if dir not in (Q_SRC, Q_DST):
            return self._by_dir(dir, lambda d: self.gen_dnhostop(addr, d), self._wlan_dir_error_addr)
        offset_sh, offset_lh = (1, 7) if dir == Q_DST else (3, 15)
        a = swap16(addr & 0xFFFF)
        b0 = self.gen_linktype(ETHERTYPE_DN)
        tmp = self.gen_mcmp(OR_LINKPL, 2, BPF_H, swap16(0x0681), swap16(0x07FF))
        b1 = self.gen_cmp(OR_LINKPL, 2 + 1 + offset_lh, BPF_H, a)
        gen_and(tmp, b1)
        tmp = self.gen_mcmp(OR_LINKPL, 2, BPF_B, 0x06, 0x7)
        b2 = self.gen_cmp(OR_LINKPL, 2 + offset_lh, BPF_H, a)
        gen_and(tmp, b2)
        gen_or(b2, b1)
        tmp = self.gen_mcmp(OR_LINKPL, 2, BPF_H, swap16(0x0281), swap16(0x07FF))
        b2 = self.gen_cmp(OR_LINKPL, 2 + 1 + offset_sh, BPF_H, a)
        gen_and(tmp, b2)
        gen_or(b2, b1)
        tmp = self.gen_mcmp(OR_LINKPL, 2, BPF_B, 0x02, 0x7)
        b2 = self.gen_cmp(OR_LINKPL, 2 + offset_sh, BPF_H, a)
        gen_and(tmp, b2)
        gen_or(b2, b1)
        return gen_and(b0, b1)

    def gen_host(self, addr, mask, proto, dir, kind):
        # libpcap: gen_host()
        typestr = "net" if kind == "net" else "host"
        if proto is None:
            b0 = self.gen_host(addr, mask, "ip", dir, kind)
            if self.label_stack_depth == 0:
                b1 = self.gen_host(addr, mask, "arp", dir, kind)
                gen_or(b0, b1)
                b0 = self.gen_host(addr, mask, "rarp", dir, kind)
                gen_or(b1, b0)
            return b0
        if proto == "link":
            _err(f"link-layer modifier applied to {typestr}")
        if proto == "ip":
            return self.gen_hostop(addr, mask, dir, ETHERTYPE_IP, 12, 16)
        if proto == "rarp":
            return self.gen_hostop(addr, mask, dir, ETHERTYPE_REVARP, 14, 24)
        if proto == "arp":
            return self.gen_hostop(addr, mask, dir, ETHERTYPE_ARP, 14, 24)
        if proto == "decnet":
            return self.gen_dnhostop(addr, dir)
        if proto == "ip6":
            _err("'ip6' modifier applied to ip host")
        special = {"atalk": "AppleTalk", "lat": "LAT", "sca": "SCA", "moprc": "MOPRC",
                   "mopdl": "MOPDL", "aarp": "AARP", "iso": "ISO", "ipx": "IPX"}
        if proto in special:
            _err(f"{special[proto]} host filtering not implemented")
        _err(f"'{proto}' modifier applied to {typestr}")

    def gen_host6(self, addr, mask, proto, dir, kind):
        # libpcap: gen_host6()
        typestr = "net" if kind == "net" else "host"
        if proto is None or proto == "ip6":
            return self.gen_hostop6(addr, mask, dir, ETHERTYPE_IPV6, 8, 24)
        if proto == "link":
            _err(f"link-layer modifier applied to ip6 {typestr}")
        if proto == "atalk":
            _err(f"AppleTalk modifier applied to ip6 {typestr}")
        _err(f"'{proto}' modifier applied to ip6 {typestr}")

    # ------------------------------------------------------------------ protocols

    def gen_proto_abbrev(self, proto):
        # libpcap: gen_proto_abbrev_internal()
        simple_proto = {"sctp": (IPPROTO_SCTP, None), "tcp": (IPPROTO_TCP, None),
                        "udp": (IPPROTO_UDP, None), "icmp": (IPPROTO_ICMP, "ip"),
                        "igmp": (IPPROTO_IGMP, "ip"), "igrp": (IPPROTO_IGRP, "ip"),
                        "pim": (IPPROTO_PIM, None), "vrrp": (IPPROTO_VRRP, "ip"),
                        "carp": (IPPROTO_CARP, "ip"), "icmp6": (IPPROTO_ICMPV6, "ip6"),
                        "ah": (IPPROTO_AH, None), "esp": (IPPROTO_ESP, None),
                        "esis": (ISO9542_ESIS, "iso"), "isis": (ISO10589_ISIS, "iso"),
                        "clnp": (ISO8473_CLNP, "iso")}
        if proto in simple_proto:
            v, p = simple_proto[proto]
            return self.gen_proto(v, p, None)
        linktypes = {"ip": ETHERTYPE_IP, "arp": ETHERTYPE_ARP, "rarp": ETHERTYPE_REVARP,
                     "atalk": ETHERTYPE_ATALK, "aarp": ETHERTYPE_AARP, "decnet": ETHERTYPE_DN,
                     "sca": ETHERTYPE_SCA, "lat": ETHERTYPE_LAT, "mopdl": ETHERTYPE_MOPDL,
                     "moprc": ETHERTYPE_MOPRC, "ip6": ETHERTYPE_IPV6, "iso": LLCSAP_ISONS,
                     "stp": LLCSAP_8021D, "ipx": LLCSAP_IPX, "netbeui": LLCSAP_NETBEUI}
        if proto in linktypes:
            return self.gen_linktype(linktypes[proto])
        isis = {"l1": (ISIS_L1_LAN_IIH, ISIS_PTP_IIH, ISIS_L1_LSP, ISIS_L1_CSNP, ISIS_L1_PSNP),
                "l2": (ISIS_L2_LAN_IIH, ISIS_PTP_IIH, ISIS_L2_LSP, ISIS_L2_CSNP, ISIS_L2_PSNP),
                "iih": (ISIS_L1_LAN_IIH, ISIS_L2_LAN_IIH, ISIS_PTP_IIH),
                "lsp": (ISIS_L1_LSP, ISIS_L2_LSP),
                "snp": (ISIS_L1_CSNP, ISIS_L2_CSNP, ISIS_L1_PSNP, ISIS_L2_PSNP),
                "csnp": (ISIS_L1_CSNP, ISIS_L2_CSNP),
                "psnp": (ISIS_L1_PSNP, ISIS_L2_PSNP)}
        if proto in isis:
            types = isis[proto]
            b0 = self.gen_proto(types[0], "isis", None)
            b1 = self.gen_proto(types[1], "isis", None)
            gen_or(b0, b1)
            for t in types[2:]:
                b0 = self.gen_proto(t, "isis", None)
                gen_or(b0, b1)
            return b1
        if proto == "link":
            _err("link layer applied in wrong context")
        if proto == "radio":
            _err("'radio' is not a valid protocol type")
        raise AssertionError(proto)

    def gen_ipfrag(self):
        # libpcap: gen_ipfrag(): not a fragment other than the first
        b = Block(JMP(BPF_JSET), 0x1FFF, self.gen_load_a(OR_LINKPL, 6, BPF_H))
        gen_not(b)
        return b

    def _dir_pair(self, atom, dir, what):
        return self._by_dir(dir, lambda d: atom(0 if d == Q_SRC else 2),
                            lambda d: self._wlan_dir_error_addr(d, what))

    @staticmethod
    def _by_dir(dir, one, bad):
        """libpcap's switch on a dir qualifier: one(Q_SRC) or one(Q_DST); both, made in that
        order and ANDed for `src and dst`, ORed for `src or dst` and for none; bad(dir) else."""
        if dir in (Q_SRC, Q_DST):
            return one(dir)
        if dir in (Q_AND, Q_OR, None):
            b0 = one(Q_SRC)
            b1 = one(Q_DST)
            (gen_and if dir == Q_AND else gen_or)(b0, b1)
            return b1
        return bad(dir)

    def _transport_op(self, v6, proto, atom, dir, what):
        # libpcap: gen_portop(), gen_portop6(), gen_portrangeop(), gen_portrangeop6():
        # `proto` (in the IPv4 header: not a later fragment) and atom(port offset) by dir
        if v6:
            b0 = self.gen_cmp(OR_LINKPL, 6, BPF_B, proto)
        else:
            tmp = self.gen_cmp(OR_LINKPL, 9, BPF_B, proto)
            b0 = self.gen_ipfrag()
            gen_and(tmp, b0)
        b1 = self._dir_pair(atom, dir, what)
        return gen_and(b0, b1)

    def _gen_transport(self, v6, ip_proto, atom, dir, what):
        # libpcap: gen_port(), gen_port6(), gen_portrange(), gen_portrange6(): IPv4 (IPv6) and
        # the transport test for ip_proto, or for TCP, UDP and SCTP when PROTO_UNDEF
        b0 = self.gen_linktype(ETHERTYPE_IPV6 if v6 else ETHERTYPE_IP)
        if ip_proto == PROTO_UNDEF:
            tmp = self._transport_op(v6, IPPROTO_TCP, atom, dir, what)
            b1 = self._transport_op(v6, IPPROTO_UDP, atom, dir, what)
            gen_or(tmp, b1)
            tmp = self._transport_op(v6, IPPROTO_SCTP, atom, dir, what)
            gen_or(tmp, b1)
        else:
            b1 = self._transport_op(v6, ip_proto, atom, dir, what)
        return gen_and(b0, b1)

    def gen_port(self, port, ip_proto, dir, v6=False):
        offrel = OR_TRAN_IPV6 if v6 else OR_TRAN_IPV4
        return self._gen_transport(v6, ip_proto, lambda off: self.gen_cmp(offrel, off, BPF_H, port),
                                   dir, "ports")

    def gen_port6(self, port, ip_proto, dir):
        return self.gen_port(port, ip_proto, dir, True)

    def _portrangeatom(self, offrel, off, v1, v2):
        # libpcap: gen_portrangeatom() / gen_portrangeatom6()
        if v1 > v2:
            v1, v2 = v2, v1
        return gen_and(self.gen_cmp_ge(offrel, off, BPF_H, v1),
                       self.gen_cmp_le(offrel, off, BPF_H, v2))

    def gen_portrange(self, p1, p2, ip_proto, dir, v6=False):
        offrel = OR_TRAN_IPV6 if v6 else OR_TRAN_IPV4
        return self._gen_transport(v6, ip_proto, lambda off: self._portrangeatom(offrel, off, p1, p2),
                                   dir, "port ranges")

    def gen_portrange6(self, p1, p2, ip_proto, dir):
        return self.gen_portrange(p1, p2, ip_proto, dir, True)

    def lookup_proto(self, name, proto):
        # libpcap: lookup_proto()
        if proto in (None, "ip", "ip6"):
            v, what = names.protocol_number(name), "ip"
        elif proto == "link":
            v, what = names.ethertype_number(name), "ether"
            if v is None:
                v = names.llc_sap_number(name)
        elif proto == "iso":
            v, what = names.iso_proto_number(name), "osi"
        else:
            return None
        if v is None:
            _err(f"unknown {what} proto '{name}'")
        return v

    def gen_protochain(self, v, proto):
        # libpcap: gen_protochain(); the scratch register is taken before the ip/ip6 split
        # and, on that path, never given back (this shapes register numbers that follow).
        reg2 = self.alloc_reg()
        if proto is None:
            return gen_or(self.gen_protochain(v, "ip"), self.gen_protochain(v, "ip6"))
        if proto not in ("ip", "ip6"):
            _err("bad protocol applied for 'protochain'")
        if self.off_linkpl.is_variable:
            _err("'protochain' not supported with variable length headers")
        self.no_optimize = True
        base = self.off_linkpl.constant_part + self._nl()
        s = []
        if proto == "ip":
            b0 = self.gen_linktype(ETHERTYPE_IP)
            s.append(Stmt(BPF_LD | BPF_ABS | BPF_B, base + 9))
            s.append(Stmt(BPF_LDX | BPF_MSH | BPF_B, base))
        else:
            b0 = self.gen_linktype(ETHERTYPE_IPV6)
            s.append(Stmt(BPF_LD | BPF_ABS | BPF_B, base + 6))
            s.append(Stmt(BPF_LDX | BPF_IMM, 40))
        again = len(s)
        j_v = Stmt(BPF_JMP | BPF_JEQ | BPF_K, v)
        s.append(j_v)
        j_none = Stmt(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_NONE)
        s.append(j_none)
        j_v.jf = j_none
        j_frag = None
        if proto == "ip6":
            v6 = []
            for k in (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT):
                st = Stmt(BPF_JMP | BPF_JEQ | BPF_K, k)
                (v6[-1] if v6 else j_none).jf = st
                v6.append(st)
                s.append(st)
            j_frag = v6[-1]
            advance = Stmt(BPF_LD | BPF_IND | BPF_B, base)
            s += [advance, Stmt(BPF_ST, reg2), Stmt(BPF_LD | BPF_IND | BPF_B, base + 1),
                  Stmt(BPF_ALU | BPF_ADD | BPF_K, 1), Stmt(BPF_ALU | BPF_MUL | BPF_K, 8),
                  Stmt(BPF_ALU | BPF_ADD | BPF_X, 0), Stmt(BPF_MISC | BPF_TAX)]
            last = Stmt(BPF_LD | BPF_MEM, reg2)
            s.append(last)
            ja = Stmt(BPF_JMP | BPF_JA, (again - len(s) - 1) & 0xFFFFFFFF)
            s.append(ja)
            last.jf = ja
            for st in v6:
                st.jt = advance
        else:
            nop = Stmt(BPF_ALU | BPF_ADD | BPF_K, 0)
            s.append(nop)
            j_none.jf = nop
        j_ah = Stmt(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_AH)
        s.append(j_ah)
        if j_frag is not None:
            j_frag.jf = j_ah
        txa = Stmt(BPF_MISC | BPF_TXA)
        j_ah.jt = txa
        s.append(txa)
        s.append(Stmt(BPF_LD | BPF_IND | BPF_B, base))
        st = Stmt(BPF_ST, reg2)
        s.append(st)
        txa2 = Stmt(BPF_MISC | BPF_TXA)
        st.jt = txa2
        s.append(txa2)
        s += [Stmt(BPF_ALU | BPF_ADD | BPF_K, 1), Stmt(BPF_MISC | BPF_TAX),
              Stmt(BPF_LD | BPF_IND | BPF_B, base), Stmt(BPF_ALU | BPF_ADD | BPF_K, 2),
              Stmt(BPF_ALU | BPF_MUL | BPF_K, 4), Stmt(BPF_MISC | BPF_TAX),
              Stmt(BPF_LD | BPF_MEM, reg2)]
        s.append(Stmt(BPF_JMP | BPF_JA, (again - len(s) - 1) & 0xFFFFFFFF))
        end = Stmt(BPF_ALU | BPF_ADD | BPF_K, 0)
        s.append(end)
        j_none.jt = end
        j_ah.jf = end
        j_v.jt = end
        b = Block(JMP(BPF_JEQ), v, s)
        self.free_reg(reg2)
        return gen_and(b0, b)

    def gen_proto(self, v, proto, dir):
        # libpcap: gen_proto()
        if dir is not None:
            _err("direction applied to 'proto'")
        if proto is None:
            return gen_or(self.gen_proto(v, "ip", dir), self.gen_proto(v, "ip6", dir))
        if proto == "link":
            return self.gen_linktype(v)
        if proto == "ip":
            return gen_and(self.gen_linktype(ETHERTYPE_IP), self.gen_cmp(OR_LINKPL, 9, BPF_B, v))
        if proto == "ip6":
            b0 = self.gen_linktype(ETHERTYPE_IPV6)
            b2 = self.gen_cmp(OR_LINKPL, 6, BPF_B, IPPROTO_FRAGMENT)
            b1 = self.gen_cmp(OR_LINKPL, 40, BPF_B, v)
            gen_and(b2, b1)
            b2 = self.gen_cmp(OR_LINKPL, 6, BPF_B, v)
            gen_or(b2, b1)
            return gen_and(b0, b1)
        if proto == "iso":
            if self.linktype == DLT["FRELAY"]:
                return self.gen_cmp(OR_LINKHDR, 2, BPF_H, (0x03 << 8) | v)
            if self.linktype in (DLT["C_HDLC"], DLT["HDLC"]):
                return gen_and(self.gen_linktype((LLCSAP_ISONS << 8) | LLCSAP_ISONS),
                               self.gen_cmp(OR_LINKPL_NOSNAP, 1, BPF_B, v))
            b0 = self.gen_linktype(LLCSAP_ISONS)
            b1 = self.gen_cmp(OR_LINKPL_NOSNAP, 0, BPF_B, v)
            return gen_and(b0, b1)
        if proto == "isis":
            b0 = self.gen_proto(ISO10589_ISIS, "iso", None)
            # Divergence: libpcap 1.10.3 reads the IS-IS PDU type at offset 4 of the payload
            # on every link type, one byte early on C_HDLC/HDLC, where `iso proto` finds the
            # IS-IS header one byte further on (so `csnp`, `l1`, `isis proto N`, ... miss);
            # pfilter reads it at 5 there, as libpcap does since 1.11 ("Use the correct IS-IS
            # PDU type offset for DLT_C_HDLC").
            pdu_type = 5 if self.linktype in (DLT["C_HDLC"], DLT["HDLC"]) else 4
            b1 = self.gen_cmp(OR_LINKPL_NOSNAP, pdu_type, BPF_B, v)
            return gen_and(b0, b1)
        special = {"arp": "arp does not encapsulate another protocol",
                   "rarp": "rarp does not encapsulate another protocol",
                   "atalk": "AppleTalk encapsulation is not specifiable",
                   "decnet": "DECNET encapsulation is not specifiable",
                   "lat": "LAT does not encapsulate another protocol",
                   "sca": "SCA does not encapsulate another protocol",
                   "moprc": "MOPRC does not encapsulate another protocol",
                   "mopdl": "MOPDL does not encapsulate another protocol",
                   "clnp": "'clnp proto' is not supported"}
        if proto in special:
            _err(special[proto])
        _err(f"'{proto} proto' is bogus")

    # ------------------------------------------------------------------ qualified ids

    def gen_scode(self, name, q):
        # libpcap: gen_scode()
        proto, dir, kind = q.proto, q.dir, q.kind
        if kind == "net":
            addr = names.network_number(name)
            if not addr:
                _err(f"unknown network '{name}'")
            mask = 0xFFFFFFFF
            while addr and (addr & 0xFF000000) == 0:
                addr = (addr << 8) & 0xFFFFFFFF
                mask = (mask << 8) & 0xFFFFFFFF
            return self.gen_host(addr, mask, proto, dir, kind)
        if kind is None or kind == "host":
            if proto == "link":
                lt = self.linktype
                eaddr = names.ether_host(name)
                if lt in ETHER_DLTS:
                    if eaddr is None:
                        _err(f"unknown ether host '{name}'")
                    return self._after_prevlinkhdr_check(lambda: self.gen_ehostop(eaddr, dir))
                for dlts, what in _MAC_LINKS:
                    if lt in dlts:
                        if eaddr is None:
                            _err(f"unknown {what} host '{name}'")
                        return self._gen_mac_hostop_for(eaddr, dir)
                _err("only ethernet/FDDI/token ring/802.11/ATM LANE/Fibre Channel supports "
                     "link-level host name")
            if proto == "decnet":
                _err(f"decnet name support not included, '{name}' cannot be translated\n")
            v4, v6 = names.host_addresses(name)
            if not v4 and not v6:
                _err(f"unknown host '{name}'")
            tproto = tproto6 = proto
            if self.off_linktype.constant_part == OFFSET_NOT_SET and tproto is None:
                tproto, tproto6 = "ip", "ip6"
            b = None
            for a in v4:
                if tproto == "ip6":
                    continue
                tmp = self.gen_host(a, 0xFFFFFFFF, tproto, dir, kind)
                if b is not None:
                    gen_or(b, tmp)
                b = tmp
            for a in v6:
                if tproto6 == "ip":
                    continue
                tmp = self.gen_host6(bytes(a), b"\xff" * 16, tproto6, dir, kind)
                if b is not None:
                    gen_or(b, tmp)
                b = tmp
            if b is None:
                _err(f"unknown host '{name}'" + ("" if proto is None else " for specified address family"))
            return b
        if kind == "port":
            if proto not in (None, "udp", "tcp", "sctp"):
                _err("illegal qualifier of 'port'")
            port, real = self._nametoport(name)
            if port is None:
                _err(f"unknown port '{name}'")
            real = self._port_proto_check(proto, real, f"port '{name}'")
            if port < 0:
                _err(f"illegal port number {port} < 0")
            if port > 65535:
                _err(f"illegal port number {port} > 65535")
            b = self.gen_port(port, real, dir)
            gen_or(self.gen_port6(port, real, dir), b)
            return b
        if kind == "portrange":
            if proto not in (None, "udp", "tcp", "sctp"):
                _err("illegal qualifier of 'portrange'")
            p1, p2, real = self._nametoportrange(name)
            if p1 is None:
                _err(f"unknown port in range '{name}'")
            real = self._port_proto_check(proto, real, f"port in range '{name}'")
            for p in (p1, p2):
                if p < 0:
                    _err(f"illegal port number {p} < 0")
                if p > 65535:
                    _err(f"illegal port number {p} > 65535")
            b = self.gen_portrange(p1, p2, real, dir)
            gen_or(self.gen_portrange6(p1, p2, real, dir), b)
            return b
        if kind == "gateway":
            _err("'gateway' not supported in this configuration")
        if kind in ("proto", "protochain"):
            real = self.lookup_proto(name, proto)
            if real is None or real < 0:
                _err(f"unknown protocol: {name}")
            return self.gen_proto(real, proto, dir) if kind == "proto" else \
                self.gen_protochain(real, proto)
        _err("syntax error in filter expression")

    def _gen_mac_hostop_for(self, eaddr, dir):
        lt = self.linktype
        if lt == DLT["FDDI"]:
            return self._gen_mac_hostop(6 + 1, 0 + 1, eaddr, dir)
        if lt == DLT["IEEE802"]:
            return self._gen_mac_hostop(8, 2, eaddr, dir)
        if lt in WLAN_DLTS:
            return self.gen_wlanhostop(eaddr, dir)
        if lt == DLT["IP_OVER_FC"]:
            return self._gen_mac_hostop(10, 2, eaddr, dir)
        raise AssertionError(lt)

    @staticmethod
    def _port_proto_check(proto, real, what):
        # libpcap: gen_scode(): `udp port NAME` refuses a name that is only a TCP or SCTP
        # service, and so on
        if proto not in _TRANSPORTS:
            return real
        if real in _TRANSPORT_NAMES and _TRANSPORT_NAMES[real] != proto:
            _err(f"{what} is {_TRANSPORT_NAMES[real]}")
        return _TRANSPORTS[proto]

    @staticmethod
    def _nametoport(name):
        """libpcap: pcap_nametoport() (names.port_number): (port, IP protocol) or (None, None)."""
        found = names.port_number(name)
        if found is None:
            return None, None
        return found[0], _PORT_PROTO[found[1]]

    @staticmethod
    def _nametoportrange(name):
        """libpcap: pcap_nametoportrange() (names.port_range): (p1, p2, IP protocol) or
        (None, None, None)."""
        found = names.port_range(name)
        if found is None:
            return None, None, None
        return found[0], found[1], _PORT_PROTO[found[2]]

    def gen_mcode(self, s1, s2, masklen, q):
        # libpcap: gen_mcode()
        n, nparts = names.parse_ipv4(s1)
        n = (n << (32 - 8 * nparts)) & 0xFFFFFFFF
        if s2 is not None:
            m, mparts = names.parse_ipv4(s2)
            m = (m << (32 - 8 * mparts)) & 0xFFFFFFFF
            if n & ~m & 0xFFFFFFFF:
                _err(f'non-network bits set in "{s1} mask {s2}"')
        else:
            if masklen > 32:
                _err("mask length must be <= 32")
            m = 0 if masklen == 0 else (0xFFFFFFFF << (32 - masklen)) & 0xFFFFFFFF
            if n & ~m & 0xFFFFFFFF:
                _err(f'non-network bits set in "{s1}/{masklen}"')
        if q.kind == "net":
            return self.gen_host(n, m, q.proto, q.dir, q.kind)
        _err("Mask syntax for networks only")

    def gen_ncode(self, s, v, q):
        # libpcap: gen_ncode()
        proto, dir, kind = q.proto, q.dir, q.kind
        if s is None:
            vlen = 32
        elif proto == "decnet":
            v = names.parse_decnet(s)
            if v is None:
                _err(f"malformed decnet address '{s}'")
            vlen = 32
        else:
            v, nparts = names.parse_ipv4(s)
            vlen = 8 * nparts
        if kind in (None, "host", "net"):
            if proto == "decnet":
                return self.gen_host(v, 0, proto, dir, kind)
            if proto == "link":
                _err("illegal link layer address")
            mask = 0xFFFFFFFF
            if s is None and kind == "net":
                while v and (v & 0xFF000000) == 0:
                    v = (v << 8) & 0xFFFFFFFF
                    mask = (mask << 8) & 0xFFFFFFFF
            else:
                v = (v << (32 - vlen)) & 0xFFFFFFFF
                mask = (mask << (32 - vlen)) & 0xFFFFFFFF
            return self.gen_host(v, mask, proto, dir, kind)
        if kind in ("port", "portrange"):
            ipp = {"udp": IPPROTO_UDP, "tcp": IPPROTO_TCP, "sctp": IPPROTO_SCTP,
                   None: PROTO_UNDEF}.get(proto, "bad")
            if ipp == "bad":
                _err(f"illegal qualifier of '{kind}'")
            if v > 65535:
                _err(f"illegal port number {v} > 65535")
            if kind == "port":
                b = self.gen_port(v, ipp, dir)
                gen_or(self.gen_port6(v, ipp, dir), b)
            else:
                b = self.gen_portrange(v, v, ipp, dir)
                gen_or(self.gen_portrange6(v, v, ipp, dir), b)
            return b
        if kind == "gateway":
            _err("'gateway' requires a name")
        if kind == "proto":
            return self.gen_proto(v, proto, dir)
        if kind == "protochain":
            return self.gen_protochain(v, proto)
        _err("syntax error in filter expression")

    def gen_mcode6(self, s1, s2, masklen, q):
        # libpcap: gen_mcode6()
        if s2 is not None:
            _err(f"no mask {s2} supported")
        try:
            addr = names.parse_ipv6(s1)
        except FilterError:
            _err(f"invalid ip6 address {s1}")
        if masklen > 128:
            _err("mask length must be <= 128")
        mask = ((1 << 128) - 1) ^ ((1 << (128 - masklen)) - 1)
        if int.from_bytes(addr, "big") & ~mask & ((1 << 128) - 1):
            _err(f'non-network bits set in "{s1}/{masklen}"')
        mask_b = mask.to_bytes(16, "big")
        if q.kind in (None, "host"):
            if masklen != 128:
                _err("Mask syntax for networks only")
            return self.gen_host6(addr, mask_b, q.proto, q.dir, q.kind)
        if q.kind == "net":
            return self.gen_host6(addr, mask_b, q.proto, q.dir, q.kind)
        _err("invalid qualifier against IPv6 address")

    def gen_ecode(self, eaddr, q):
        # libpcap: gen_ecode()
        if q.kind in (None, "host") and q.proto == "link":
            lt = self.linktype
            if lt in ETHER_DLTS:
                return self._after_prevlinkhdr_check(lambda: self.gen_ehostop(eaddr, q.dir))
            if lt in (DLT["FDDI"], DLT["IEEE802"], DLT["IP_OVER_FC"]) or lt in WLAN_DLTS:
                return self._gen_mac_hostop_for(eaddr, q.dir)
            _err("ethernet addresses supported only on ethernet/FDDI/token ring/802.11/ATM "
                 "LANE/Fibre Channel")
        _err("ethernet address used in non-ether expression")

    def gen_acode(self, aid, q):
        # libpcap: gen_acode(): an ARCnet address (`$2b`).
        # Divergence: libpcap 1.10.3 converts the text with pcap_ether_aton(), which reads the
        # `$` as a digit (so `$2b` compares against 0xd2); pfilter compares against 0x2b.
        if self.linktype in (DLT["ARCNET"], DLT["ARCNET_LINUX"]):
            if q.kind in (None, "host") and q.proto == "link":
                return self.gen_ahostop(bytes([aid]), q.dir)
            _err("ARCnet address used in non-arc expression")
        _err("aid supported only on ARCnet")

    # ------------------------------------------------------------------ arithmetic

    def gen_loadi(self, val):
        # libpcap: gen_loadi_internal()
        reg = self.alloc_reg()
        return Arth([Stmt(BPF_LD | BPF_IMM, val & 0xFFFFFFFF), Stmt(BPF_ST, reg)], reg)

    def gen_loadlen(self):
        # libpcap: gen_loadlen()
        reg = self.alloc_reg()
        return Arth([Stmt(BPF_LD | BPF_LEN), Stmt(BPF_ST, reg)], reg)

    def gen_neg(self, a):
        # libpcap: gen_neg()
        a.s += [Stmt(BPF_LD | BPF_MEM, a.regno), Stmt(BPF_ALU | BPF_NEG, 0), Stmt(BPF_ST, a.regno)]
        return a

    def gen_arth(self, code, a0, a1):
        # libpcap: gen_arth()
        first = a1.s[0]
        if first.code == BPF_LD | BPF_IMM:
            if code == BPF_DIV and first.k == 0:
                _err("division by zero")
            if code == BPF_MOD and first.k == 0:
                _err("modulus by zero")
            if code in (BPF_LSH, BPF_RSH) and first.k > 31:
                _err("shift by more than 31 bits")
        a0.s += a1.s
        a0.s += [Stmt(BPF_LDX | BPF_MEM, a1.regno), Stmt(BPF_LD | BPF_MEM, a0.regno),
                 Stmt(BPF_ALU | BPF_X | code)]
        self.free_reg(a0.regno)
        self.free_reg(a1.regno)
        a0.regno = self.alloc_reg()
        a0.s.append(Stmt(BPF_ST, a0.regno))
        return a0

    def gen_load(self, proto, inst, size):
        # libpcap: gen_load_internal()
        regno = self.alloc_reg()
        self.free_reg(inst.regno)
        size_code = _SIZE_CODE.get(size)
        if size_code is None:
            _err("data size must be 1, 2, or 4")
        if proto == "radio":
            if self.linktype not in (DLT["IEEE802_11_RADIO_AVS"], DLT["IEEE802_11_RADIO"],
                                     DLT["PRISM_HEADER"]):
                _err("radio information not present in capture")
            inst.s += [Stmt(BPF_LDX | BPF_MEM, inst.regno), Stmt(BPF_LD | BPF_IND | size_code)]
        elif proto == "link":
            inst.s += self._load_indexed(self.off_linkhdr, inst.regno, size_code, 0)
        elif proto in ("ip", "arp", "rarp", "atalk", "decnet", "sca", "lat", "moprc", "mopdl",
                       "ip6"):
            inst.s += self._load_indexed(self.off_linkpl, inst.regno, size_code, self._nl())
            _and_into(inst, self.gen_proto_abbrev(proto))
        elif proto in ("sctp", "tcp", "udp", "icmp", "igmp", "igrp", "pim", "vrrp", "carp"):
            s = self.gen_loadx_iphdrlen()
            s += [Stmt(BPF_LD | BPF_MEM, inst.regno), Stmt(BPF_ALU | BPF_ADD | BPF_X),
                  Stmt(BPF_MISC | BPF_TAX),
                  Stmt(BPF_LD | BPF_IND | size_code, self.off_linkpl.constant_part + self._nl())]
            inst.s += s
            b = self.gen_ipfrag()
            gen_and(self.gen_proto_abbrev(proto), b)
            if inst.b is not None:
                gen_and(inst.b, b)
            inst.b = gen_and(self.gen_proto_abbrev("ip"), b)
        elif proto == "icmp6":
            _and_into(inst, self.gen_proto_abbrev("ip6"))
            _and_into(inst, self.gen_cmp(OR_LINKPL, 6, BPF_B, 58))
            inst.s += self._load_indexed(self.off_linkpl, inst.regno, size_code, self._nl() + 40)
        else:
            _err("unsupported index operation")
        inst.regno = regno
        inst.s.append(Stmt(BPF_ST, regno))
        return inst

    def _load_indexed(self, off, regno, size_code, offset):
        """Load at `off` + `offset` + the index in scratch register regno (libpcap's
        gen_load_internal(): the variable part of off, if any, is added to the index in X)."""
        s = self.gen_abs_offset_varpart(off)
        if s is not None:
            s += [Stmt(BPF_LD | BPF_MEM, regno), Stmt(BPF_ALU | BPF_ADD | BPF_X),
                  Stmt(BPF_MISC | BPF_TAX)]
        else:
            s = [Stmt(BPF_LDX | BPF_MEM, regno)]
        s.append(Stmt(BPF_LD | BPF_IND | size_code, off.constant_part + offset))
        return s

    def gen_relation(self, code, a0, a1, reversed_):
        # libpcap: gen_relation_internal()
        s0 = [Stmt(BPF_LDX | BPF_MEM, a1.regno), Stmt(BPF_LD | BPF_MEM, a0.regno)]
        if code == BPF_JEQ:
            s0.append(Stmt(BPF_ALU | BPF_SUB | BPF_X))
            b = Block(JMP(code))
        else:
            b = Block(BPF_JMP | code | BPF_X)
        if reversed_:
            gen_not(b)
        b.stmts = a0.s + a1.s + s0
        self.free_reg(a0.regno)
        self.free_reg(a1.regno)
        if a0.b is not None:
            if a1.b is not None:
                gen_and(a0.b, a1.b)
                tmp = a1.b
            else:
                tmp = a0.b
        else:
            tmp = a1.b
        if tmp is not None:
            gen_and(tmp, b)
        return b

    def gen_len(self, jmp, n):
        # libpcap: gen_len()
        return Block(JMP(jmp), n & 0xFFFFFFFF, [Stmt(BPF_LD | BPF_LEN)])

    def gen_byteop(self, op, idx, val):
        # libpcap: gen_byteop()
        if op == "=":
            return self.gen_cmp(OR_LINKHDR, idx, BPF_B, val)
        if op == "<":
            return self.gen_cmp_lt(OR_LINKHDR, idx, BPF_B, val)
        if op == ">":
            return self.gen_cmp_gt(OR_LINKHDR, idx, BPF_B, val)
        # Divergence: libpcap 1.10.3 applies the `&`/`|` to whatever is in A without loading
        # byte `idx` first (so `byte 0 & 1` never matches); pfilter loads the byte, as the
        # primitive means: true when `link[idx] op val` is nonzero.
        s = self.gen_load_a(OR_LINKHDR, idx, BPF_B)
        s.append(Stmt(BPF_ALU | (BPF_OR if op == "|" else BPF_AND) | BPF_K, val & 0xFFFFFFFF))
        b = Block(JMP(BPF_JEQ), 0, s)
        gen_not(b)
        return b

    # ------------------------------------------------------------------ broadcast / multicast

    def gen_broadcast(self, proto):
        # libpcap: gen_broadcast()
        ebroadcast = b"\xff" * 6
        if proto in (None, "link"):
            lt = self.linktype
            if lt in (DLT["ARCNET"], DLT["ARCNET_LINUX"]):
                return self.gen_ahostop(b"\x00", Q_DST)
            if lt in ETHER_DLTS:
                return self._after_prevlinkhdr_check(lambda: self.gen_ehostop(ebroadcast, Q_DST))
            if lt in (DLT["FDDI"], DLT["IEEE802"], DLT["IP_OVER_FC"]) or lt in WLAN_DLTS:
                return self._gen_mac_hostop_for(ebroadcast, Q_DST)
            _err("not a broadcast link")
        if proto == "ip":
            if self.netmask is None:
                _err("netmask not known, so 'ip broadcast' not supported")
            b0 = self.gen_linktype(ETHERTYPE_IP)
            hostmask = ~self.netmask & 0xFFFFFFFF
            b1 = self.gen_mcmp(OR_LINKPL, 16, BPF_W, 0, hostmask)
            b2 = self.gen_mcmp(OR_LINKPL, 16, BPF_W, hostmask, hostmask)
            gen_or(b1, b2)
            return gen_and(b0, b2)
        _err("only link-layer/IP broadcast filters supported")

    def _after_prevlinkhdr_check(self, make):
        """make() for an Ethernet link layer, and the check libpcap makes first that it is
        one inside an outer one (Geneve, LANE: gen_prevlinkhdr_check())."""
        b1 = self.gen_prevlinkhdr_check()
        b0 = make()
        return b0 if b1 is None else gen_and(b1, b0)

    def gen_mac_multicast(self, offset):
        # libpcap: gen_mac_multicast()
        return Block(JMP(BPF_JSET), 1, self.gen_load_a(OR_LINKHDR, offset, BPF_B))

    def gen_multicast(self, proto):
        # libpcap: gen_multicast()
        if proto in (None, "link"):
            lt = self.linktype
            if lt in (DLT["ARCNET"], DLT["ARCNET_LINUX"]):
                return self.gen_ahostop(b"\x00", Q_DST)
            if lt in ETHER_DLTS:
                return self._after_prevlinkhdr_check(lambda: self.gen_mac_multicast(0))
            if lt == DLT["FDDI"]:
                return self.gen_mac_multicast(1)
            if lt == DLT["IEEE802"]:
                return self.gen_mac_multicast(2)
            if lt in WLAN_DLTS:
                b1 = self._jset_block(1, 0x01)
                b0 = self.gen_mac_multicast(16)
                gen_and(b1, b0)
                b2 = self._jset_block(1, 0x01, True)
                b1 = self.gen_mac_multicast(4)
                gen_and(b2, b1)
                gen_or(b1, b0)
                b1 = self._jset_block(0, 0x08)
                gen_and(b1, b0)
                b2 = self._jset_block(0, 0x08, True)
                b1 = self.gen_mac_multicast(4)
                gen_and(b2, b1)
                gen_or(b1, b0)
                b1 = self._jset_block(0, 0x04, True)
                return gen_and(b1, b0)
            if lt == DLT["IP_OVER_FC"]:
                return self.gen_mac_multicast(2)
        elif proto == "ip":
            return gen_and(self.gen_linktype(ETHERTYPE_IP),
                           self.gen_cmp_ge(OR_LINKPL, 16, BPF_B, 224))
        elif proto == "ip6":
            return gen_and(self.gen_linktype(ETHERTYPE_IPV6),
                           self.gen_cmp(OR_LINKPL, 24, BPF_B, 255))
        _err("link-layer multicast filters supported only on ethernet/FDDI/token ring/ARCNET/"
             "802.11/ATM LANE/Fibre Channel")

    def gen_ahostop(self, eaddr, dir):
        # libpcap: gen_ahostop()
        return self._by_dir(dir, lambda d: self.gen_bcmp(OR_LINKHDR, 0 if d == Q_SRC else 1, 1, eaddr),
                            lambda d: self._wlan_dir_error_addr(d, only_on=""))

    # ------------------------------------------------------------------ direction, interfaces

    def gen_ifindex(self, ifindex):
        # libpcap: gen_ifindex()
        if self.linktype == DLT["LINUX_SLL2"]:
            return self.gen_cmp(OR_LINKHDR, 4, BPF_W, ifindex)
        _err(f"ifindex not supported on {self._linktype_desc()} when reading savefiles")

    def gen_inbound(self, dir):
        # libpcap: gen_inbound(); dir 0 = inbound, 1 = outbound
        lt = self.linktype
        if lt == DLT["SLIP"]:
            # Divergence: libpcap 1.10.3 tests `link[0] != 0` for `outbound`, so a direction
            # byte other than 0 (in) and 1 (out), which SLIP does not define, counts as
            # outbound; pfilter tests `link[0] = 1`, as libpcap does since 1.11 (its commit
            # "Have "outbound" mean Tx only for DLT_SLIP"), with the same short program for
            # `inbound` (`link[0] = 0`, which 1.10.3 computes through scratch registers).
            return self.gen_cmp(OR_LINKHDR, 0, BPF_B, SLIPDIR_OUT if dir else SLIPDIR_IN)
        if lt == DLT["IPNET"]:
            return self.gen_cmp(OR_LINKHDR, 2, BPF_H, IPNET_OUTBOUND if dir else IPNET_INBOUND)
        if lt == DLT["LINUX_SLL"]:
            b0 = self.gen_cmp(OR_LINKHDR, 0, BPF_H, LINUX_SLL_OUTGOING)
            if not dir:
                gen_not(b0)
            return b0
        if lt == DLT["LINUX_SLL2"]:
            b0 = self.gen_cmp(OR_LINKHDR, 10, BPF_B, LINUX_SLL_OUTGOING)
            if not dir:
                gen_not(b0)
            return b0
        if lt == DLT["PFLOG"]:
            return self.gen_cmp(OR_LINKHDR, PFLOG_DIR, BPF_B, PF_OUT if dir else PF_IN)
        if lt == DLT["PPP_PPPD"]:
            return self.gen_cmp(OR_LINKHDR, 0, BPF_B, PPP_PPPD_OUT if dir else PPP_PPPD_IN)
        if lt in JUNIPER_DLTS:
            return self.gen_mcmp(OR_LINKHDR, 3, BPF_B, 0 if dir else 1, 0x01)
        _err(f"inbound/outbound not supported on {self._linktype_desc()} when reading savefiles")

    # ------------------------------------------------------------------ PFLOG

    def gen_pf(self, field, value):
        # libpcap: gen_pf_ifname(), gen_pf_ruleset(), gen_pf_rnr(), gen_pf_srnr(),
        # gen_pf_reason(), gen_pf_action()
        if field == "reason" and isinstance(value, str):
            low = value.lower()
            if low not in PF_REASONS:
                _err(f'unknown PF reason "{value}"')
            value = PF_REASONS.index(low)
        if field == "action" and isinstance(value, str):
            v = PF_ACTIONS.get(value.lower())
            if v is None:
                _err(f'unknown PF action "{value}"')
            value = v
        if self.linktype != DLT["PFLOG"]:
            word = {"ifname": "ifname", "ruleset": "ruleset", "rnr": "rnr", "srnr": "srnr",
                    "reason": "reason", "action": "action"}[field]
            _err(f"{word} supported only on PF linktype")
        if field == "ifname":
            raw = str(value).encode()
            if len(raw) >= PFLOG_IFNAMSIZ:
                _err(f"ifname interface names can only be {PFLOG_IFNAMSIZ - 1} characters")
            return self.gen_bcmp(OR_LINKHDR, PFLOG_IFNAME, len(raw), raw)
        if field == "ruleset":
            raw = str(value).encode()
            if len(raw) >= 16:
                _err("ruleset names can only be 15 characters")
            return self.gen_bcmp(OR_LINKHDR, PFLOG_RULESET, len(raw), raw)
        if field == "rnr":
            return self.gen_cmp(OR_LINKHDR, PFLOG_RULENR, BPF_W, int(value))
        if field == "srnr":
            return self.gen_cmp(OR_LINKHDR, PFLOG_SUBRULENR, BPF_W, int(value))
        if field == "reason":
            return self.gen_cmp(OR_LINKHDR, PFLOG_REASON, BPF_B, int(value))
        if field == "action":
            return self.gen_cmp(OR_LINKHDR, PFLOG_ACTION, BPF_B, int(value))
        raise AssertionError(field)

    # ------------------------------------------------------------------ 802.11

    def gen_p80211_type(self, type_, mask):
        # libpcap: gen_p80211_type()
        if self.linktype in WLAN_DLTS and self.linktype != DLT["PPI"]:
            return self.gen_mcmp(OR_LINKHDR, 0, BPF_B, type_, mask)
        _err("802.11 link-layer types supported only on 802.11")

    def gen_p80211_fcdir(self, fcdir):
        # libpcap: gen_p80211_fcdir()
        if not (self.linktype in WLAN_DLTS and self.linktype != DLT["PPI"]):
            _err("frame direction supported only with 802.11 headers")
        return self.gen_mcmp(OR_LINKHDR, 1, BPF_B, fcdir, IEEE80211_FC1_DIR_MASK)

    def gen_wlan(self, field, value):
        if field == "dir":
            return self.gen_p80211_fcdir(int(value))
        if isinstance(value, tuple):
            t, st = value
            if t & ~IEEE80211_FC0_TYPE_MASK:
                _err(f"invalid 802.11 type value 0x{t:02x}")
            if st & ~IEEE80211_FC0_SUBTYPE_MASK:
                _err(f"invalid 802.11 subtype value 0x{st:02x}")
            return self.gen_p80211_type(t | st, IEEE80211_FC0_TYPE_MASK | IEEE80211_FC0_SUBTYPE_MASK)
        if field == "type":
            if value & ~IEEE80211_FC0_TYPE_MASK:
                _err(f"invalid 802.11 type value 0x{value:02x}")
            return self.gen_p80211_type(value, IEEE80211_FC0_TYPE_MASK)
        return self.gen_p80211_type(value, IEEE80211_FC0_TYPE_MASK | IEEE80211_FC0_SUBTYPE_MASK)

    # ------------------------------------------------------------------ encapsulations

    def gen_vlan(self, vlan_num):
        # libpcap: gen_vlan() for a savefile (no BPF_SPECIAL_VLAN_HANDLING): the
        # gen_vlan_no_bpf_extensions() variant.
        if self.label_stack_depth > 0:
            _err("no VLAN match after MPLS")
        if self.linktype in ETHER_DLTS or (self.linktype in WLAN_DLTS and self.linktype != DLT["PPI"]):
            b0 = gen_or(self.gen_linktype(ETHERTYPE_8021Q), self.gen_linktype(ETHERTYPE_8021AD))
            b0 = gen_or(b0, self.gen_linktype(ETHERTYPE_8021QINQ))
            b0 = self._and_id(b0, vlan_num, "VLAN tag", 0x0FFF, OR_LINKPL, 0, BPF_H, 0)
            self.off_linkpl.constant_part = (self.off_linkpl.constant_part + 4) & 0xFFFFFFFF
            self.off_linktype.constant_part = (self.off_linktype.constant_part + 4) & 0xFFFFFFFF
        else:
            _err(f"no VLAN support for {self._linktype_desc()}")
        self.vlan_stack_depth += 1
        return b0

    def _and_id(self, b0, value, what, limit, offrel, offset, size, shift):
        """b0, and when `value` is given (at most `limit`) the test that the field of
        limit's width at `shift` bits of the `size` load at offrel+offset holds it (the
        VLAN, MPLS, PPPoE and Geneve ids of libpcap's gen_vlan(), gen_mpls(), ...)."""
        if value is None:
            return b0
        if value > limit:
            _err(f"{what} {value} greater than maximum {limit}")
        return gen_and(b0, self.gen_mcmp(offrel, offset, size, (value << shift) & 0xFFFFFFFF,
                                         (limit << shift) & 0xFFFFFFFF))

    def gen_mpls(self, label):
        # libpcap: gen_mpls()
        if self.label_stack_depth > 0:
            b0 = self.gen_mcmp(OR_PREVMPLSHDR, 2, BPF_B, 0, 0x01)
        else:
            lt = self.linktype
            if lt in (DLT["C_HDLC"], DLT["HDLC"]) or lt in ETHER_DLTS:
                b0 = self.gen_linktype(ETHERTYPE_MPLS)
            elif lt == DLT["PPP"]:
                b0 = self.gen_linktype(PPP_MPLS_UCAST)
            else:
                _err(f"no MPLS support for {self._linktype_desc()}")
        b0 = self._and_id(b0, label, "MPLS label", 0xFFFFF, OR_LINKPL, 0, BPF_W, 12)
        self.off_nl_nosnap = (self.off_nl_nosnap + 4) & 0xFFFFFFFF
        self.off_nl = (self.off_nl + 4) & 0xFFFFFFFF
        self.label_stack_depth += 1
        return b0

    def gen_pppoed(self):
        # libpcap: gen_pppoed()
        return self.gen_linktype(ETHERTYPE_PPPOED)

    def gen_pppoes(self, sess_num):
        # libpcap: gen_pppoes()
        b0 = self.gen_linktype(ETHERTYPE_PPPOES)
        b0 = self._and_id(b0, sess_num, "PPPoE session number", 0xFFFF, OR_LINKPL, 0, BPF_W, 0)
        self._push_linkhdr(DLT["PPP"], self.off_linkpl.is_variable,
                           (self.off_linkpl.constant_part + self._nl() + 6) & 0xFFFFFFFF,
                           self.off_linkpl.reg)
        self.off_linktype = self.off_linkhdr.copy()
        self.off_linkpl.constant_part = (self.off_linkhdr.constant_part + 2) & 0xFFFFFFFF
        self.off_nl = 0
        self.off_nl_nosnap = 0
        return b0

    def _geneve_check(self, v6, vni):
        # libpcap: gen_geneve_check()
        if v6:
            b0 = self.gen_port6(GENEVE_PORT, IPPROTO_UDP, Q_DST)
            offrel = OR_TRAN_IPV6
        else:
            b0 = self.gen_port(GENEVE_PORT, IPPROTO_UDP, Q_DST)
            offrel = OR_TRAN_IPV4
        b0 = gen_and(b0, self.gen_mcmp(offrel, 8, BPF_B, 0, 0xC0))
        return self._and_id(b0, vni, "Geneve VNI", 0xFFFFFF, offrel, 12, BPF_W, 8)

    def gen_geneve(self, vni):
        # libpcap: gen_geneve(), gen_geneve4(), gen_geneve6(), gen_geneve_offsets()
        b0 = self._geneve_check(False, vni)
        s = self.gen_loadx_iphdrlen()
        s.append(Stmt(BPF_MISC | BPF_TXA))
        b1 = Block(BPF_JMP | BPF_JEQ | BPF_X, 0, s)
        gen_and(b0, b1)
        g4 = b1

        b0 = self._geneve_check(True, vni)
        s = self.gen_abs_offset_varpart(self.off_linkpl)
        if s is not None:
            s += [Stmt(BPF_LD | BPF_IMM, 40), Stmt(BPF_ALU | BPF_ADD | BPF_X, 0)]
        else:
            s = [Stmt(BPF_LD | BPF_IMM, 40)]
        s.append(Stmt(BPF_MISC | BPF_TAX))
        b1 = Block(BPF_JMP | BPF_JEQ | BPF_X, 0, s)
        gen_and(b0, b1)
        gen_or(g4, b1)
        b0 = b1

        s = [Stmt(BPF_ALU | BPF_ADD | BPF_K, self.off_linkpl.constant_part + self._nl() + 8),
             Stmt(BPF_MISC | BPF_TAX), Stmt(BPF_ALU | BPF_ADD | BPF_K, 2)]
        self.off_linktype = AbsOffset(0, True, self.alloc_reg())
        s += [Stmt(BPF_ST, self.off_linktype.reg), Stmt(BPF_LD | BPF_IND | BPF_B, 0),
              Stmt(BPF_ALU | BPF_AND | BPF_K, 0x3F), Stmt(BPF_ALU | BPF_MUL | BPF_K, 4),
              Stmt(BPF_ALU | BPF_ADD | BPF_K, 8), Stmt(BPF_ALU | BPF_ADD | BPF_X, 0)]
        self._push_linkhdr(DLT["EN10MB"], True, 0, self.alloc_reg())
        s.append(Stmt(BPF_ST, self.off_linkhdr.reg))
        self.no_optimize = True
        s += [Stmt(BPF_LD | BPF_IND | BPF_H, 2), Stmt(BPF_LDX | BPF_MEM, self.off_linkhdr.reg)]
        j_proto = Stmt(JMP(BPF_JEQ), ETHERTYPE_TEB)
        s.append(j_proto)
        txa = Stmt(BPF_MISC | BPF_TXA)
        s.append(txa)
        j_proto.jt = txa
        s += [Stmt(BPF_ALU | BPF_ADD | BPF_K, 12), Stmt(BPF_ST, self.off_linktype.reg),
              Stmt(BPF_ALU | BPF_ADD | BPF_K, 2), Stmt(BPF_MISC | BPF_TAX)]
        self.off_linkpl = AbsOffset(0, True, self.alloc_reg())
        stx = Stmt(BPF_STX, self.off_linkpl.reg)
        s.append(stx)
        j_proto.jf = stx
        self.off_nl = 0

        b1 = self.gen_true()
        b1.stmts = s + b1.stmts
        gen_and(b0, b1)
        self.is_geneve = True
        return b1

    # ------------------------------------------------------------------ the AST walk

    def lower(self, node):
        """The partial result (a block with open exits) for an expression node."""
        meth = self._dispatch.get(type(node))
        if meth is None:
            _err(f"unsupported expression element {type(node).__name__}")
        try:
            b = meth(self, node)
        except FilterError as err:
            _give_span(err, node)
            raise
        if self.track_origins and type(node) not in (A.And, A.Or, A.Not):
            _tag_origin(b.head, (node.pos, node.end))
        return b

    def _lower_chain(self, n):
        # `a or b or c ...` parses left-deep; walk the left spine iteratively so that chains
        # of thousands of terms need no deep recursion, lowering operands left to right.
        spine = []
        while type(n) in (A.And, A.Or):
            spine.append(n)
            n = n.left
        b0 = self.lower(n)
        for node in reversed(spine):
            b1 = self.lower(node.right)
            (gen_and if type(node) is A.And else gen_or)(b0, b1)
            b0 = b1
        return b0

    def _lower_not(self, n):
        b = self.lower(n.operand)
        gen_not(b)
        return b

    def _lower_id(self, n):
        q = n.quals
        vk = n.value_kind
        if vk == "num":
            return self.gen_ncode(None, n.value & 0xFFFFFFFF, q)
        if vk == "ipv4":
            if n.masklen is not None:
                return self.gen_mcode(n.value, None, n.masklen, q)
            if n.mask is not None:
                return self.gen_mcode(n.value, n.mask, 0, q)
            if q.kind in ("port", "portrange", "proto", "protochain"):
                _err(f"'{q.kind}' modifier applied to ip host")
            return self.gen_ncode(n.value, 0, q)
        if vk == "ipv6":
            return self.gen_mcode6(n.value, n.mask, 128 if n.masklen is None else n.masklen, q)
        if vk == "mac":
            return self.gen_ecode(bytes(n.value), q)
        if vk == "aid":
            return self.gen_acode(int(n.value) & 0xFF, q)
        if vk == "range":
            lo, hi = n.value
            return self.gen_scode(f"{lo}-{hi}", q)
        if vk == "name":
            return self.gen_scode(n.value, q)
        raise AssertionError(vk)

    def _lower_signal_field(self, n):
        # libpcap's grammar: atmfield atmvalue / mtp3field mtp3value; a parenthesized list
        # ORs one equality test per value, left to right
        gen = self.gen_atmfield if n.field in ("vpi", "vci") else self.gen_mtp3field
        if len(n.values) == 1:
            code, rev = _RELOPS[n.op]
            return gen(n.field, n.values[0], code, rev)
        b = None
        for v in n.values:
            b1 = gen(n.field, v)
            if b is not None:
                gen_or(b, b1)
            b = b1
        return b

    def _lower_abbrev(self, n):
        return self.gen_proto_abbrev(n.proto)

    def _lower_relation(self, n):
        code, rev = _RELOPS[n.op]
        a0 = self.arith(n.left)
        a1 = self.arith(n.right)
        return self.gen_relation(code, a0, a1, rev)

    def arith(self, n):
        """An Arth for an arithmetic node, evaluated left to right as libpcap's grammar does."""
        # `a + b + c ...` parses left-deep (a flat chain, not nesting): walk the left spine
        # iteratively, as _lower_chain does, so chains of 10,000 terms need no deep recursion.
        spine = []
        while type(n) is A.Binary:
            spine.append(n)
            n = n.left
        a0 = self._arith_operand(n)
        for node in reversed(spine):
            a1 = self.arith(node.right)
            try:
                a0 = self.gen_arth(_ARITH_OPS[node.op], a0, a1)
            except FilterError as err:
                _give_span(err, node)
                raise
        return a0

    def _arith_operand(self, n):
        """An Arth for an arithmetic node other than a binary operation."""
        t = type(n)
        if t is A.Number:
            return self.gen_loadi(n.value)
        if t is A.Length:
            return self.gen_loadlen()
        if t is A.Load:
            inst = self.arith(n.index)
            try:
                return self.gen_load(n.proto, inst, n.size)
            except FilterError as err:
                _give_span(err, n)
                raise
        if t is A.Negate:
            return self.gen_neg(self.arith(n.operand))
        _err(f"unsupported arithmetic element {t.__name__}")

    _dispatch = {
        A.And: _lower_chain,
        A.Or: _lower_chain,
        A.Not: _lower_not,
        A.Id: _lower_id,
        A.ProtoAbbrev: _lower_abbrev,
        A.Relation: _lower_relation,
        A.Broadcast: lambda self, n: self.gen_broadcast(n.proto),
        A.Multicast: lambda self, n: self.gen_multicast(n.proto),
        A.Less: lambda self, n: self._less(n.value),
        A.Greater: lambda self, n: self.gen_len(BPF_JGE, n.value),
        A.ByteOp: lambda self, n: self.gen_byteop(n.op, n.index, n.value),
        A.Inbound: lambda self, n: self.gen_inbound(0),
        A.Outbound: lambda self, n: self.gen_inbound(1),
        A.Ifindex: lambda self, n: self.gen_ifindex(n.value),
        A.Vlan: lambda self, n: self.gen_vlan(n.value),
        A.Mpls: lambda self, n: self.gen_mpls(n.value),
        A.Pppoed: lambda self, n: self.gen_pppoed(),
        A.Pppoes: lambda self, n: self.gen_pppoes(n.value),
        A.Geneve: lambda self, n: self.gen_geneve(n.value),
        A.Llc: lambda self, n: self.gen_llc(n.kind),
        A.PfField: lambda self, n: self.gen_pf(n.field, n.value),
        A.Wlan: lambda self, n: self.gen_wlan(n.field, n.value),
        A.Circuit: lambda self, n: (self.gen_atmtype(n.kind) if n.kind in _ATM_KINDS
                                    else self.gen_mtp2type(n.kind)),
        A.SignalField: _lower_signal_field,
    }

    def _less(self, n):
        # libpcap: gen_less(): "less" is really less-or-equal
        b = self.gen_len(BPF_JGT, n)
        gen_not(b)
        return b


_TRANSPORTS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "sctp": IPPROTO_SCTP}
_TRANSPORT_NAMES = {v: k for k, v in _TRANSPORTS.items()}

# names.port_number()'s protocol ("tcp", "udp" or None: both) as libpcap's IP protocol number
_PORT_PROTO = {None: PROTO_UNDEF, "tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}

_MAC_LINKS = (
    (frozenset({DLT["FDDI"]}), "FDDI"),
    (frozenset({DLT["IEEE802"]}), "token ring"),
    (WLAN_DLTS, "802.11"),
    (frozenset({DLT["IP_OVER_FC"]}), "Fibre Channel"),
)

