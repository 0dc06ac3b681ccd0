"""How each link type is recognized and parsed: the link-layer half of the code generator.
Imports pfilter.opcodes and pfilter.compiler.{blocks,constants,linkctx,primitives}.

`LinkLayer` holds the gen_* routines that depend on the link type: the test for a
link-layer protocol (libpcap's gen_linktype() and the per-link-type functions it dispatches
to through the table `_LINKTYPE_TESTS`), LLC, and the code that computes variable header
lengths (radiotap, Prism, AVS, PPI, 802.11, pflog) at the start of the program. It is built
on the primitives of pfilter.compiler.primitives (gen_cmp, gen_load_a, ...); gencode.Codegen is
built on it.
Adding a link type means a LinkContext entry (linkctx.py) and, if its type field is not a plain
Ethernet type, one small function here.
"""

from pfilter.opcodes import (
    BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JA, BPF_JEQ, BPF_JGT,
    BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LSH, BPF_MEM, BPF_MISC, BPF_OR, BPF_ST, BPF_TAX,
    BPF_TXA, BPF_W, BPF_X,
)
from pfilter.compiler.blocks import JMP, Block, Stmt, gen_and, gen_not, gen_or
from pfilter.compiler.constants import (
    AF_INET, AF_INET6_LINUX, ARCTYPE_ARP, ARCTYPE_ATALK, ARCTYPE_INET6, ARCTYPE_IP,
    ARCTYPE_REVARP, BSD_AFNUM_INET6_BSD, BSD_AFNUM_INET6_DARWIN,
    BSD_AFNUM_INET6_FREEBSD, ETHERMTU, ETHERTYPE_AARP, ETHERTYPE_ARP, ETHERTYPE_ATALK,
    ETHERTYPE_DN, ETHERTYPE_IP, ETHERTYPE_IPV6, ETHERTYPE_IPX, ETHERTYPE_NS, ETHERTYPE_REVARP,
    IPH_AF_INET, IPH_AF_INET6, ISO10589_ISIS, ISO8473_CLNP, ISO9542_ESIS, LINUX_SLL_P_802_2,
    LINUX_SLL_P_802_3, LLCSAP_8021D, LLCSAP_IP, LLCSAP_IPX, LLCSAP_ISONS, LLCSAP_NETBEUI,
    LLCSAP_SNAP, LLC_S_CMD_MASK, LLC_S_FMT, LLC_S_SUBTYPES, LLC_U_CMD_MASK, LLC_U_FMT,
    LLC_U_SUBTYPES, OFFSET_NOT_SET, OR_LINKHDR, OR_LINKPL, OR_LINKTYPE, OR_LLC, OR_PREVLINKHDR,
    PFLOG_AF, PPP_APPLE, PPP_BRPDU, PPP_DECNET, PPP_IP, PPP_IPV6, PPP_IPX, PPP_NS, PPP_OSI,
    PPP_VJC, PPP_VJNC, swap32,
)
from pfilter.compiler.constants import (
    ATM_MSG_TYPE_POS, ATM_PROTO_POS, OR_PACKET, PT_LANE, PT_LLC, Q2931_CALL_PROCEED,
    Q2931_CONNECT, Q2931_CONNECT_ACK, Q2931_RELEASE, Q2931_RELEASE_DONE, Q2931_SETUP,
    SUNATM_PKT_BEGIN_POS, SUNATM_VCI_POS, SUNATM_VPI_POS,
)
from pfilter.compiler.linkctx import DLT, ETHER_DLTS, JUNIPER_DLTS, WLAN_DLTS
from pfilter.compiler.primitives import Primitives, fail as _err


def _put(s, stmt):
    """Append stmt to the statement list s; returns it (for jumps to point at)."""
    s.append(stmt)
    return stmt


class LinkLayer(Primitives):
    """Link-type-dependent code generation, on the primitives; gencode.Codegen builds on it."""

    # ------------------------------------------------------------------ variable-length headers

    def _load_radiotap_like_llprefixlen(self):
        # libpcap: gen_load_radiotap_llprefixlen() / gen_load_ppi_llprefixlen()
        if self.off_linkhdr.reg == -1:
            return None
        return [Stmt(BPF_LD | BPF_B | BPF_ABS, 3), Stmt(BPF_ALU | BPF_LSH | BPF_K, 8),
                Stmt(BPF_MISC | BPF_TAX), Stmt(BPF_LD | BPF_B | BPF_ABS, 2),
                Stmt(BPF_ALU | BPF_OR | BPF_X), Stmt(BPF_ST, self.off_linkhdr.reg),
                Stmt(BPF_MISC | BPF_TAX)]

    def _load_avs_llprefixlen(self):
        # libpcap: gen_load_avs_llprefixlen()
        if self.off_linkhdr.reg == -1:
            return None
        return [Stmt(BPF_LD | BPF_W | BPF_ABS, 4), Stmt(BPF_ST, self.off_linkhdr.reg),
                Stmt(BPF_MISC | BPF_TAX)]

    def _load_prism_llprefixlen(self):
        # libpcap: gen_load_prism_llprefixlen()
        self.no_optimize = True
        if self.off_linkhdr.reg == -1:
            return None
        s = [Stmt(BPF_LD | BPF_W | BPF_ABS, 0), Stmt(BPF_ALU | BPF_AND | BPF_K, 0xFFFFF000)]
        jeq_avs = _put(s, Stmt(JMP(BPF_JEQ), 0x80211000))
        s2 = Stmt(BPF_LD | BPF_W | BPF_ABS, 4)
        s.append(s2)
        jeq_avs.jt = s2
        jcommon = _put(s, Stmt(JMP(BPF_JA), 1))
        s2 = Stmt(BPF_LD | BPF_W | BPF_IMM, 144)
        s.append(s2)
        jeq_avs.jf = s2
        s2 = _put(s, Stmt(BPF_ST, self.off_linkhdr.reg))
        jcommon.jf = s2
        s.append(Stmt(BPF_MISC | BPF_TAX))
        return s

    def _load_pflog_llprefixlen(self):
        # libpcap: gen_load_pflog_llprefixlen()
        if self.off_linkpl.reg == -1:
            return None
        return [Stmt(BPF_LD | BPF_B | BPF_ABS, 0), Stmt(BPF_ALU | BPF_ADD | BPF_K, 3),
                Stmt(BPF_ALU | BPF_AND | BPF_K, 0xFFFFFFFC), Stmt(BPF_ST, self.off_linkpl.reg),
                Stmt(BPF_MISC | BPF_TAX)]

    def _load_802_11_header_len(self, s, snext):
        # libpcap: gen_load_802_11_header_len()
        if self.off_linkpl.reg == -1:
            return s
        self.no_optimize = True
        reg = self.off_linkpl.reg
        if s is None:
            s = [Stmt(BPF_LDX | BPF_IMM, self.off_outermostlinkhdr.constant_part)]
        s += [Stmt(BPF_MISC | BPF_TXA), Stmt(BPF_ALU | BPF_ADD | BPF_K, 24), Stmt(BPF_ST, reg),
              Stmt(BPF_LD | BPF_IND | BPF_B, 0)]
        j_data1 = _put(s, Stmt(JMP(BPF_JSET), 0x08))
        j_data2 = Stmt(JMP(BPF_JSET), 0x04)
        j_data1.jt = j_data2
        s.append(j_data2)
        j_data1.jf = snext
        j_data2.jt = snext
        j_qos = Stmt(JMP(BPF_JSET), 0x80)
        j_data2.jf = j_qos
        s.append(j_qos)
        s2 = Stmt(BPF_LD | BPF_MEM, reg)
        j_qos.jt = s2
        s += [s2, Stmt(BPF_ALU | BPF_ADD | BPF_IMM, 2), Stmt(BPF_ST, reg)]
        if self.linktype == DLT["IEEE802_11_RADIO"]:
            s2 = Stmt(BPF_LD | BPF_ABS | BPF_W, 4)
            j_qos.jf = s2
            s.append(s2)
            j_flags = _put(s, Stmt(JMP(BPF_JSET), swap32(0x00000002)))
            j_flags.jf = snext
            j_ext = _put(s, Stmt(JMP(BPF_JSET), swap32(0x80000000)))
            j_flags.jt = j_ext
            j_ext.jt = snext
            j_tsft = _put(s, Stmt(JMP(BPF_JSET), swap32(0x00000001)))
            j_ext.jf = j_tsft
            s2 = _put(s, Stmt(BPF_LD | BPF_ABS | BPF_B, 16))
            j_tsft.jt = s2
            j_tsft_pad = _put(s, Stmt(JMP(BPF_JSET), 0x20))
            s2 = Stmt(BPF_LD | BPF_ABS | BPF_B, 8)
            s.append(s2)
            j_tsft.jf = s2
            j_notsft_pad = _put(s, Stmt(JMP(BPF_JSET), 0x20))
            roundup = Stmt(BPF_LD | BPF_MEM, reg)
            s += [roundup, Stmt(BPF_ALU | BPF_ADD | BPF_IMM, 3),
                  Stmt(BPF_ALU | BPF_AND | BPF_IMM, 0xFFFFFFFC), Stmt(BPF_ST, reg)]
            j_tsft_pad.jt = roundup
            j_tsft_pad.jf = snext
            j_notsft_pad.jt = roundup
            j_notsft_pad.jf = snext
        else:
            j_qos.jf = snext
        return s

    def insert_compute_vloffsets(self, b):
        # libpcap: insert_compute_vloffsets()
        if self.off_linkpl.reg != -1 and self.off_linkhdr.is_variable and self.off_linkhdr.reg == -1:
            self.off_linkhdr.reg = self.alloc_reg()
        outer = self.outermostlinktype
        s = None
        if outer == DLT["PRISM_HEADER"]:
            s = self._load_prism_llprefixlen()
        elif outer == DLT["IEEE802_11_RADIO_AVS"]:
            s = self._load_avs_llprefixlen()
        elif outer in (DLT["IEEE802_11_RADIO"], DLT["PPI"]):
            s = self._load_radiotap_like_llprefixlen()
        if outer in WLAN_DLTS:
            s = self._load_802_11_header_len(s, b.stmts[0] if b.stmts else None)
        elif outer == DLT["PFLOG"]:
            s = self._load_pflog_llprefixlen()
        if s is None and self.is_vlan_vloffset:
            if self.off_linkpl.reg == -1:
                self.off_linkpl.reg = self.alloc_reg()
            if self.off_linktype.reg == -1:
                self.off_linktype.reg = self.alloc_reg()
            s = [Stmt(BPF_LD | BPF_W | BPF_IMM, 0), Stmt(BPF_ST, self.off_linkpl.reg),
                 Stmt(BPF_ST, self.off_linktype.reg)]
        if s is not None:
            b.stmts = s + b.stmts

    def gen_ppi_dlt_check(self):
        # libpcap: gen_ppi_dlt_check()
        if self.linktype == DLT["PPI"]:
            return Block(JMP(BPF_JEQ), swap32(DLT["IEEE802_11"]), [Stmt(BPF_LD | BPF_W | BPF_ABS, 4)])
        return None

    # ------------------------------------------------------------------ link-layer types

    def gen_prevlinkhdr_check(self):
        # libpcap: gen_prevlinkhdr_check()
        if self.is_geneve:
            return self.gen_geneve_ll_check()
        if self.prevlinktype == DLT["SUNATM"]:
            b0 = self.gen_cmp(OR_PREVLINKHDR, 4, BPF_H, 0xFF00)
            gen_not(b0)
            return b0
        return None

    def _ether_llc(self):
        """Ethernet: the frame is 802.3 with an 802.2 header (length field, not a type)."""
        b0 = self.gen_cmp_gt(OR_LINKTYPE, 0, BPF_H, ETHERMTU)
        gen_not(b0)
        return b0

    def _sll_llc(self):
        """Linux cooked: the protocol field says 802.2."""
        return self.gen_cmp(OR_LINKTYPE, 0, BPF_H, LINUX_SLL_P_802_2)

    def _llc_linktype(self, ll_proto, llc, dsap):
        """What gen_ether_linktype() and gen_linux_sll_linktype() test alike for everything
        but IPX: `llc` makes the "802.2 frame" block, `dsap` is where the DSAP byte is."""
        if ll_proto in (LLCSAP_ISONS, LLCSAP_IP, LLCSAP_NETBEUI):
            return gen_and(llc(), self.gen_cmp(OR_LLC, 0, BPF_H, (ll_proto << 8) | ll_proto))
        if ll_proto in (ETHERTYPE_ATALK, ETHERTYPE_AARP):
            b0 = llc()
            if ll_proto == ETHERTYPE_ATALK:
                b1 = self.gen_snap(0x080007, ETHERTYPE_ATALK)
            else:
                b1 = self.gen_snap(0x000000, ETHERTYPE_AARP)
            gen_and(b0, b1)
            b0 = self.gen_cmp(OR_LINKTYPE, 0, BPF_H, ll_proto)
            return gen_or(b0, b1)
        if ll_proto <= ETHERMTU:
            return gen_and(llc(), self.gen_cmp(dsap[0], dsap[1], BPF_B, ll_proto))
        return self.gen_cmp(OR_LINKTYPE, 0, BPF_H, ll_proto)

    def gen_ether_linktype(self, ll_proto):
        # libpcap: gen_ether_linktype()
        if ll_proto == LLCSAP_IPX:
            b0 = self.gen_cmp(OR_LLC, 0, BPF_B, LLCSAP_IPX)
            b1 = self.gen_cmp(OR_LLC, 0, BPF_H, 0xFFFF)
            gen_or(b0, b1)
            b0 = self.gen_snap(0x000000, ETHERTYPE_IPX)
            gen_or(b0, b1)
            b0 = self._ether_llc()
            gen_and(b0, b1)
            b0 = self.gen_cmp(OR_LINKTYPE, 0, BPF_H, ETHERTYPE_IPX)
            return gen_or(b0, b1)
        return self._llc_linktype(ll_proto, self._ether_llc, (OR_LINKTYPE, 2))

    def gen_loopback_linktype(self, ll_proto):
        # libpcap: gen_loopback_linktype(); for NULL/ENC the AF_ value is in the byte order of
        # the host that wrote the capture: this (little-endian) host's, unless `swapped` says
        # the savefile came from a host of the other byte order.
        if self.linktype in (DLT["NULL"], DLT["ENC"]):
            if self.savefile and self.swapped:
                ll_proto = swap32(ll_proto)
            ll_proto = swap32(ll_proto)
        return self.gen_cmp(OR_LINKHDR, 0, BPF_W, ll_proto)

    def gen_ipnet_linktype(self, ll_proto):
        # libpcap: gen_ipnet_linktype()
        return self._ip_version_byte(ll_proto, OR_LINKTYPE, 0, IPH_AF_INET, IPH_AF_INET6)

    def _ip_version_byte(self, ll_proto, offrel, offset, v4, v6):
        """For link types that carry only IPv4 and IPv6: the byte at offrel+offset is v4 (v6)
        for ETHERTYPE_IP (ETHERTYPE_IPV6); false for every other protocol."""
        if ll_proto in (ETHERTYPE_IP, ETHERTYPE_IPV6):
            return self.gen_cmp(offrel, offset, BPF_B, v4 if ll_proto == ETHERTYPE_IP else v6)
        return self.gen_false()

    def gen_linux_sll_linktype(self, ll_proto):
        # libpcap: gen_linux_sll_linktype()
        if ll_proto == LLCSAP_IPX:
            b0 = self.gen_cmp(OR_LLC, 0, BPF_B, LLCSAP_IPX)
            b1 = self.gen_snap(0x000000, ETHERTYPE_IPX)
            gen_or(b0, b1)
            b0 = self._sll_llc()
            gen_and(b0, b1)
            b0 = self.gen_cmp(OR_LINKTYPE, 0, BPF_H, LINUX_SLL_P_802_3)
            gen_or(b0, b1)
            b0 = self.gen_cmp(OR_LINKTYPE, 0, BPF_H, ETHERTYPE_IPX)
            return gen_or(b0, b1)
        return self._llc_linktype(ll_proto, self._sll_llc, (OR_LINKHDR, self.off_linkpl.constant_part))

    @staticmethod
    def ethertype_to_ppptype(ll_proto):
        return {ETHERTYPE_IP: PPP_IP, ETHERTYPE_IPV6: PPP_IPV6, ETHERTYPE_DN: PPP_DECNET,
                ETHERTYPE_ATALK: PPP_APPLE, ETHERTYPE_NS: PPP_NS, LLCSAP_ISONS: PPP_OSI,
                LLCSAP_8021D: PPP_BRPDU, LLCSAP_IPX: PPP_IPX}.get(ll_proto, ll_proto)

    def gen_linktype(self, ll_proto):
        """Test that the packet's link layer carries `ll_proto` (an Ethernet type, or an LLC
        SAP when <= 1500), the way the current link type says it (libpcap: gen_linktype())."""
        if self.label_stack_depth > 0:
            return self.gen_mpls_linktype(ll_proto)
        handler = _LINKTYPE_TESTS.get(self.linktype)
        if handler is not None:
            return handler(self, ll_proto)
        unimpl = _NO_LINKTYPE_FILTERING.get(self.linktype)
        if unimpl is not None:
            _err(f"{unimpl} link-layer type filtering not implemented")
        if self.off_linktype.constant_part != OFFSET_NOT_SET:
            # A type field of unknown kind: assume it holds an Ethernet type.
            return self.gen_cmp(OR_LINKTYPE, 0, BPF_H, ll_proto)
        _err(f"{self._linktype_desc()} link-layer type filtering not implemented")

    # The per-link-type tests gen_linktype() dispatches to (table _LINKTYPE_TESTS below).

    def _lt_ether(self, ll_proto):
        b0 = self.gen_prevlinkhdr_check() if not self.is_geneve else None
        b1 = self.gen_ether_linktype(ll_proto)
        if b0 is not None:
            gen_and(b0, b1)
        return b1

    def _lt_chdlc(self, ll_proto):
        if ll_proto == LLCSAP_ISONS:
            ll_proto = (ll_proto << 8) | LLCSAP_ISONS
        return self.gen_cmp(OR_LINKTYPE, 0, BPF_H, ll_proto)

    def _lt_wlan(self, ll_proto):
        return gen_and(self.gen_check_802_11_data_frame(), self.gen_llc_linktype(ll_proto))

    def _lt_llc(self, ll_proto):
        return self.gen_llc_linktype(ll_proto)

    def _lt_sunatm(self, ll_proto):
        return gen_and(self.gen_atm_llc_check(), self.gen_llc_linktype(ll_proto))

    def _lt_raw(self, ll_proto):
        # no type field: look at the IP version nibble
        if ll_proto == ETHERTYPE_IP:
            return self.gen_mcmp(OR_LINKHDR, 0, BPF_B, 0x40, 0xF0)
        if ll_proto == ETHERTYPE_IPV6:
            return self.gen_mcmp(OR_LINKHDR, 0, BPF_B, 0x60, 0xF0)
        return self.gen_false()

    def _lt_ipv4(self, ll_proto):
        return self.gen_true() if ll_proto == ETHERTYPE_IP else self.gen_false()

    def _lt_ipv6(self, ll_proto):
        return self.gen_true() if ll_proto == ETHERTYPE_IPV6 else self.gen_false()

    def _lt_ppp(self, ll_proto):
        return self.gen_cmp(OR_LINKTYPE, 0, BPF_H, self.ethertype_to_ppptype(ll_proto))

    def _lt_ppp_bsdos(self, ll_proto):
        if ll_proto == ETHERTYPE_IP:
            b0 = self.gen_cmp(OR_LINKTYPE, 0, BPF_H, PPP_IP)
            b1 = self.gen_cmp(OR_LINKTYPE, 0, BPF_H, PPP_VJC)
            gen_or(b0, b1)
            b0 = self.gen_cmp(OR_LINKTYPE, 0, BPF_H, PPP_VJNC)
            return gen_or(b1, b0)
        return self._lt_ppp(ll_proto)

    def _lt_loopback(self, ll_proto):
        if ll_proto == ETHERTYPE_IP:
            return self.gen_loopback_linktype(AF_INET)
        if ll_proto == ETHERTYPE_IPV6:
            if self.savefile:
                # the AF_INET6 values of the BSDs, FreeBSD and Darwin: any may be in a file
                b0 = self.gen_loopback_linktype(BSD_AFNUM_INET6_BSD)
                b1 = self.gen_loopback_linktype(BSD_AFNUM_INET6_FREEBSD)
                gen_or(b0, b1)
                b0 = self.gen_loopback_linktype(BSD_AFNUM_INET6_DARWIN)
                return gen_or(b0, b1)
            return self.gen_loopback_linktype(AF_INET6_LINUX)
        return self.gen_false()

    def _lt_pflog(self, ll_proto):
        return self._ip_version_byte(ll_proto, OR_LINKHDR, PFLOG_AF, AF_INET, AF_INET6_LINUX)

    def _lt_arcnet(self, ll_proto):
        # Divergence: libpcap 1.10.3 also accepts the RFC 1051 system codes for IPv4 and ARP
        # (240, 241), but reads the IPv4/ARP header where RFC 1201 puts it, so `ip` and `arp`
        # programs that look into the header are wrong on RFC 1051 frames; pfilter tests only
        # the RFC 1201 codes, as libpcap does since 1.11 ("Do not try matching RFC 1051
        # system codes for ARCnet").
        sc = {ETHERTYPE_IPV6: ARCTYPE_INET6, ETHERTYPE_IP: ARCTYPE_IP, ETHERTYPE_ARP: ARCTYPE_ARP,
              ETHERTYPE_REVARP: ARCTYPE_REVARP, ETHERTYPE_ATALK: ARCTYPE_ATALK}.get(ll_proto)
        if sc is None:
            return self.gen_false()
        return self.gen_cmp(OR_LINKTYPE, 0, BPF_B, sc)

    def _lt_ltalk(self, ll_proto):
        return self.gen_true() if ll_proto == ETHERTYPE_ATALK else self.gen_false()

    def _lt_frelay(self, ll_proto):
        # the NLPID after a 2-byte address and the UI control byte
        if ll_proto == ETHERTYPE_IP:
            return self.gen_cmp(OR_LINKHDR, 2, BPF_H, (0x03 << 8) | 0xCC)
        if ll_proto == ETHERTYPE_IPV6:
            return self.gen_cmp(OR_LINKHDR, 2, BPF_H, (0x03 << 8) | 0x8E)
        if ll_proto == LLCSAP_ISONS:
            b0 = self.gen_cmp(OR_LINKHDR, 2, BPF_H, (0x03 << 8) | ISO8473_CLNP)
            b1 = self.gen_cmp(OR_LINKHDR, 2, BPF_H, (0x03 << 8) | ISO9542_ESIS)
            b2 = self.gen_cmp(OR_LINKHDR, 2, BPF_H, (0x03 << 8) | ISO10589_ISIS)
            gen_or(b1, b2)
            return gen_or(b0, b2)
        return self.gen_false()

    def _lt_mfr(self, ll_proto):
        _err("Multi-link Frame Relay link-layer type filtering not implemented")

    def _lt_juniper(self, ll_proto):
        # only the magic number of the Juniper pseudo-header is checked
        return self.gen_mcmp(OR_LINKHDR, 0, BPF_W, 0x4D474300, 0xFFFFFF00)

    def _lt_bacnet(self, ll_proto):
        return self.gen_mcmp(OR_LINKHDR, 0, BPF_W, 0x55FF0000, 0xFFFF0000)

    def gen_snap(self, orgcode, ptype):
        # libpcap: gen_snap()
        block = bytes([LLCSAP_SNAP, LLCSAP_SNAP, 0x03, (orgcode >> 16) & 0xFF,
                       (orgcode >> 8) & 0xFF, orgcode & 0xFF, (ptype >> 8) & 0xFF, ptype & 0xFF])
        return self.gen_bcmp(OR_LLC, 0, 8, block)

    def gen_llc_linktype(self, ll_proto):
        # libpcap: gen_llc_linktype()
        if ll_proto in (LLCSAP_IP, LLCSAP_ISONS, LLCSAP_NETBEUI):
            return self.gen_cmp(OR_LLC, 0, BPF_H, (ll_proto << 8) | ll_proto)
        if ll_proto == LLCSAP_IPX:
            return self.gen_cmp(OR_LLC, 0, BPF_B, LLCSAP_IPX)
        if ll_proto == ETHERTYPE_ATALK:
            return self.gen_snap(0x080007, ETHERTYPE_ATALK)
        if ll_proto <= ETHERMTU:
            return self.gen_cmp(OR_LLC, 0, BPF_B, ll_proto)
        return self.gen_cmp(OR_LLC, 6, BPF_H, ll_proto)

    def gen_check_802_11_data_frame(self):
        # libpcap: gen_check_802_11_data_frame()
        b0 = Block(JMP(BPF_JSET), 0x08, self.gen_load_a(OR_LINKHDR, 0, BPF_B))
        b1 = Block(JMP(BPF_JSET), 0x04, self.gen_load_a(OR_LINKHDR, 0, BPF_B))
        gen_not(b1)
        return gen_and(b1, b0)

    def gen_atm_llc_check(self):
        # libpcap: gen_atmfield_code_internal(A_PROTOTYPE, PT_LLC, BPF_JEQ, 0)
        return self.gen_atmfield("proto", PT_LLC)

    def gen_mpls_linktype(self, ll_proto):
        # libpcap: gen_mpls_linktype()
        if ll_proto == ETHERTYPE_IP:
            return gen_and(self.gen_mcmp(OR_LINKPL, -2, BPF_B, 0x01, 0x01),
                           self.gen_mcmp(OR_LINKPL, 0, BPF_B, 0x40, 0xF0))
        if ll_proto == ETHERTYPE_IPV6:
            return gen_and(self.gen_mcmp(OR_LINKPL, -2, BPF_B, 0x01, 0x01),
                           self.gen_mcmp(OR_LINKPL, 0, BPF_B, 0x60, 0xF0))
        _err("unsupported protocol over mpls")

    # ------------------------------------------------------------------ SunATM and SS7

    def gen_atmfield(self, field, value, jtype=BPF_JEQ, reverse=False):
        # libpcap: gen_atmfield_code_internal(): "vpi", "vci", the protocol type nibble
        # ("proto") or the Q.2931 message type ("msgtype") of the SunATM pseudo-header
        if field in ("vpi", "vci"):
            if self.outermostlinktype != DLT["SUNATM"]:
                _err(f"'{field}' supported only on raw ATM")
            offset, size, mask = (SUNATM_VPI_POS, BPF_B, 0xFFFFFFFF) if field == "vpi" else \
                (SUNATM_VCI_POS, BPF_H, 0xFFFFFFFF)
        elif field == "proto":
            offset, size, mask = ATM_PROTO_POS, BPF_B, 0x0F
        else:
            offset, size, mask = SUNATM_PKT_BEGIN_POS + ATM_MSG_TYPE_POS, BPF_B, 0xFFFFFFFF
        return self.gen_ncmp(OR_LINKHDR, offset, size, mask, jtype, reverse, value)

    def _atm_circuit(self, vci):
        """vpi 0 and vci `vci` (libpcap: gen_atmtype_metac(), gen_atmtype_sc(), ...)."""
        return gen_and(self.gen_atmfield("vpi", 0), self.gen_atmfield("vci", vci))

    def gen_atmtype(self, kind):
        # libpcap: gen_atmtype_abbrev(), gen_atmmulti_abbrev(), gen_msg_abbrev()
        if self.outermostlinktype != DLT["SUNATM"]:
            _err(f"'{_ATM_WORDS.get(kind, kind)}' supported only on raw ATM")
        if kind in _ATM_CIRCUITS:
            return self._atm_circuit(_ATM_CIRCUITS[kind])
        if kind in ("oam", "oamf4"):
            b0 = self.gen_atmfield("vci", 3)
            b1 = self.gen_atmfield("vci", 4)
            gen_or(b0, b1)
            b0 = self.gen_atmfield("vpi", 0)
            return gen_and(b0, b1)
        if kind in ("connectmsg", "metaconnect"):
            types = _Q2931_CONNECT if kind == "connectmsg" else _Q2931_METACONNECT
            b0 = self.gen_atmfield("msgtype", types[0])
            b1 = self.gen_atmfield("msgtype", types[1])
            gen_or(b0, b1)
            for t in types[2:]:
                b0 = self.gen_atmfield("msgtype", t)
                gen_or(b0, b1)
            b0 = self._atm_circuit(5 if kind == "connectmsg" else 1)
            return gen_and(b0, b1)
        if kind == "lane":
            b1 = self.gen_atmfield("proto", PT_LANE)
            # every later test sees LANE-encapsulated Ethernet after the pseudo-header
            self._push_linkhdr(DLT["EN10MB"], False, SUNATM_PKT_BEGIN_POS + 2, -1)
            self.off_linktype.constant_part = self.off_linkhdr.constant_part + 12
            self.off_linkpl.constant_part = self.off_linkhdr.constant_part + 14
            self.off_nl = 0
            self.off_nl_nosnap = 3
            return b1
        raise AssertionError(kind)

    def gen_mtp2type(self, kind):
        # libpcap: gen_mtp2type_abbrev(): the length indicator of an MTP2 signal unit
        offsets = _SS7_OFFSETS.get(self.linktype)
        if offsets is None:
            _err(f"'{kind}' supported only on {'MTP2_HSL' if kind[0] == 'h' else 'MTP2'}")
        li, li_hsl = offsets[0], offsets[1]
        if kind[0] == "h":       # MTP2-HSL: a 9-bit length in a 16-bit field
            off, size, mask, two = li_hsl, BPF_H, 0xFF80, 0x0100
        else:
            off, size, mask, two = li, BPF_B, 0x3F, 2
        if kind.endswith("fisu"):
            return self.gen_ncmp(OR_PACKET, off, size, mask, BPF_JEQ, False, 0)
        if kind.endswith("msu"):
            return self.gen_ncmp(OR_PACKET, off, size, mask, BPF_JGT, False, two)
        b0 = self.gen_ncmp(OR_PACKET, off, size, mask, BPF_JGT, True, two)
        b1 = self.gen_ncmp(OR_PACKET, off, size, mask, BPF_JGT, False, 0)
        return gen_and(b1, b0)

    def gen_mtp3field(self, field, value, jtype=BPF_JEQ, reverse=False):
        # libpcap: gen_mtp3field_code(); the h- fields (MTP2-HSL) are 3 bytes further on
        base = field[1:] if field[0] == "h" else field
        offsets = _SS7_OFFSETS.get(self.outermostlinktype)
        if offsets is None:
            _err(f"'{base}' supported only on SS7")
        slot, limit, size, mask = _MTP3_FIELDS[base]
        if value > limit:
            _err(f"{base} value {value} too big; max value = {limit}")
        if base == "opc":
            value = ((value & 0x3C00) >> 10) + ((value & 0x3FC) << 6) + ((value & 0x3) << 22)
        elif base == "dpc":
            value = ((value & 0xFF) << 24) + ((value & 0x3F00) << 8)
        elif base == "sls":
            value <<= 4
        offset = offsets[slot] + (3 if base != field else 0)
        return self.gen_ncmp(OR_PACKET, offset, size, mask, jtype, reverse, value)

    # ------------------------------------------------------------------ LLC

    def gen_llc_internal(self):
        # libpcap: gen_llc_internal()
        lt = self.linktype
        if lt == DLT["EN10MB"]:
            b0 = self.gen_cmp_gt(OR_LINKTYPE, 0, BPF_H, ETHERMTU)
            gen_not(b0)
            b1 = self.gen_cmp(OR_LLC, 0, BPF_H, 0xFFFF)
            gen_not(b1)
            return gen_and(b0, b1)
        if lt == DLT["SUNATM"]:
            b0 = self.gen_atm_llc_check()
            self.linktype = self.prevlinktype     # libpcap: gen_atmtype_llc()
            return b0
        if lt in (DLT["IEEE802"], DLT["FDDI"], DLT["ATM_RFC1483"]):
            return self.gen_true()
        if lt in WLAN_DLTS:
            return self.gen_check_802_11_data_frame()
        _err(f"'llc' not supported for {self._linktype_desc()}")

    def gen_llc(self, kind):
        # libpcap: gen_llc(), gen_llc_i(), gen_llc_s(), gen_llc_u(), gen_llc_*_subtype()
        if kind is None:
            return self.gen_llc_internal()
        k = kind.lower()
        if k == "i":
            b0 = self.gen_llc_internal()
            b1 = Block(JMP(BPF_JSET), 0x01, self.gen_load_a(OR_LLC, 2, BPF_B))
            gen_not(b1)
            return gen_and(b0, b1)
        if k in ("s", "u"):
            b0 = self.gen_llc_internal()
            b1 = self.gen_mcmp(OR_LLC, 2, BPF_B, LLC_S_FMT if k == "s" else LLC_U_FMT, 0x03)
            return gen_and(b0, b1)
        if k in LLC_S_SUBTYPES:
            return gen_and(self.gen_llc_internal(),
                           self.gen_mcmp(OR_LLC, 2, BPF_B, LLC_S_SUBTYPES[k], LLC_S_CMD_MASK))
        if k in LLC_U_SUBTYPES:
            return gen_and(self.gen_llc_internal(),
                           self.gen_mcmp(OR_LLC, 2, BPF_B, LLC_U_SUBTYPES[k], LLC_U_CMD_MASK))
        _err(f'unknown LLC type name "{kind}"')


def _linktype_tests():
    m = LinkLayer
    groups = [
        (ETHER_DLTS, m._lt_ether),
        (("C_HDLC", "HDLC"), m._lt_chdlc),
        (WLAN_DLTS, m._lt_wlan),
        (("FDDI", "IEEE802", "ATM_RFC1483", "ATM_CLIP", "IP_OVER_FC"), m._lt_llc),
        (("SUNATM",), m._lt_sunatm),
        (("LINUX_SLL",), m.gen_linux_sll_linktype),
        (("SLIP", "SLIP_BSDOS", "RAW"), m._lt_raw),
        (("IPV4",), m._lt_ipv4),
        (("IPV6",), m._lt_ipv6),
        (("PPP", "PPP_PPPD", "PPP_SERIAL", "PPP_ETHER"), m._lt_ppp),
        (("PPP_BSDOS",), m._lt_ppp_bsdos),
        (("NULL", "LOOP", "ENC"), m._lt_loopback),
        (("PFLOG",), m._lt_pflog),
        (("ARCNET", "ARCNET_LINUX"), m._lt_arcnet),
        (("LTALK",), m._lt_ltalk),
        (("FRELAY",), m._lt_frelay),
        (("MFR",), m._lt_mfr),
        (JUNIPER_DLTS, m._lt_juniper),
        (("BACNET_MS_TP",), m._lt_bacnet),
        (("IPNET",), m.gen_ipnet_linktype),
    ]
    table = {}
    for dlts, fn in groups:
        for d in dlts:
            table[DLT[d] if isinstance(d, str) else d] = fn
    return table


# atmtype words testing `vpi 0 and vci N`: N (libpcap: gen_atmtype_abbrev())
_ATM_CIRCUITS = {"metac": 1, "bcc": 2, "oamf4sc": 3, "oamf4ec": 4, "sc": 5, "ilmic": 16}
# the words libpcap's messages use for them
_ATM_WORDS = {"oamf4sc": "oam4sc", "oamf4ec": "oam4ec"}
# the Q.2931 message types of `connectmsg` and `metaconnect`, in libpcap's order
_Q2931_CONNECT = (Q2931_SETUP, Q2931_CALL_PROCEED, Q2931_CONNECT, Q2931_CONNECT_ACK,
                  Q2931_RELEASE, Q2931_RELEASE_DONE)
_Q2931_METACONNECT = (Q2931_SETUP, Q2931_CALL_PROCEED, Q2931_CONNECT, Q2931_RELEASE,
                      Q2931_RELEASE_DONE)
# DLT -> packet offsets of the MTP2 length indicator (li, li_hsl) and the MTP3 sio, opc, dpc
# and sls (libpcap: init_linktype())
_SS7_OFFSETS = {DLT["MTP2"]: (2, 4, 3, 4, 4, 7), DLT["MTP2_WITH_PHDR"]: (6, 8, 7, 8, 8, 11),
                DLT["ERF"]: (22, 24, 23, 24, 24, 27)}
# MTP3 field -> (index in _SS7_OFFSETS, largest value, load size, mask)
_MTP3_FIELDS = {"sio": (2, 255, BPF_B, 0xFFFFFFFF), "opc": (3, 16383, BPF_W, 0x00C0FF0F),
                "dpc": (4, 16383, BPF_W, 0xFF3F0000), "sls": (5, 15, BPF_B, 0xF0)}

# DLT -> how gen_linktype() tests the link-layer protocol on it.
_LINKTYPE_TESTS = _linktype_tests()


_NO_LINKTYPE_FILTERING = {
    DLT["LINUX_IRDA"]: "IrDA", DLT["DOCSIS"]: "DOCSIS", DLT["MTP2"]: "MTP2",
    DLT["MTP2_WITH_PHDR"]: "MTP2", DLT["ERF"]: "ERF", DLT["PFSYNC"]: "PFSYNC",
    DLT["LINUX_LAPD"]: "LAPD", DLT["USB_FREEBSD"]: "USB", DLT["USB_LINUX"]: "USB",
    DLT["USB_LINUX_MMAPPED"]: "USB", DLT["USBPCAP"]: "USB",
    DLT["BLUETOOTH_HCI_H4"]: "Bluetooth", DLT["BLUETOOTH_HCI_H4_WITH_PHDR"]: "Bluetooth",
    DLT["CAN20B"]: "CAN", DLT["CAN_SOCKETCAN"]: "CAN",
    DLT["IEEE802_15_4_WITHFCS"]: "IEEE 802.15.4", DLT["IEEE802_15_4_LINUX"]: "IEEE 802.15.4",
    DLT["IEEE802_15_4_NONASK_PHY"]: "IEEE 802.15.4", DLT["IEEE802_15_4_NOFCS"]: "IEEE 802.15.4",
    DLT["IEEE802_15_4_TAP"]: "IEEE 802.15.4", DLT["IEEE802_16_MAC_CPS_RADIO"]: "IEEE 802.16",
    DLT["SITA"]: "SITA", DLT["RAIF1"]: "RAIF1", DLT["IPMB_KONTRON"]: "IPMB",
    DLT["IPMB_LINUX"]: "IPMB", DLT["AX25_KISS"]: "AX.25", DLT["NFLOG"]: "NFLOG",
}
