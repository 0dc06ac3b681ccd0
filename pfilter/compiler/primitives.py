"""Code-generation primitives: the state of one compilation and the loads and comparisons
every other part of the code generator is made of.
Imports pfilter.errors, pfilter.opcodes and pfilter.compiler.{blocks,constants,linkctx}.

`Primitives(link_context, ...)` holds libpcap's compiler_state_t: the current link-layer
offsets (which `vlan`, `mpls`, `pppoes` and `geneve` shift for the rest of the expression) and
the scratch-register allocator, and the primitives of gencode.c that build blocks from them
(gen_load_a, gen_cmp, gen_mcmp, gen_bcmp, gen_true, ...). The link-layer half of the code
generator (linklayer.LinkLayer) and the rest of it (gencode.Codegen) are built on it, so
imports point one way: gencode -> linklayer -> primitives.
"""

from pfilter.errors import FilterError
from pfilter.opcodes import (
    BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_IMM, BPF_IND, BPF_JEQ, BPF_JGE, BPF_JGT,
    BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_LDX, BPF_LSH, BPF_MEM, BPF_MEMWORDS, BPF_MISC, BPF_MSH,
    BPF_RET, BPF_TAX, BPF_W, BPF_H, BPF_X,
)
from pfilter.compiler.blocks import Block, JMP, Stmt, gen_and, gen_not
from pfilter.compiler.constants import (
    OFFSET_NOT_SET, OR_LINKHDR, OR_LINKPL, OR_LINKPL_NOSNAP, OR_LINKTYPE, OR_LLC, OR_PACKET,
    OR_PREVLINKHDR, OR_PREVMPLSHDR, OR_TRAN_IPV4, OR_TRAN_IPV6,
)
from pfilter.compiler.linkctx import DLT_DESCRIPTIONS

__all__ = ["Primitives", "AbsOffset", "fail"]


class AbsOffset:
    """libpcap: bpf_abs_offset: constant part, plus a scratch register when variable."""

    __slots__ = ("is_variable", "constant_part", "reg")

    def __init__(self, constant_part=0, is_variable=False, reg=-1):
        self.constant_part = constant_part
        self.is_variable = is_variable
        self.reg = reg

    def copy(self):
        return AbsOffset(self.constant_part, self.is_variable, self.reg)


def fail(msg):
    """Refuse the expression: a FilterError (the AST walk gives it its primitive's span)."""
    raise FilterError(msg)


def _set(offset):
    """A LinkContext offset as libpcap holds it: None (no such field) is OFFSET_NOT_SET."""
    return OFFSET_NOT_SET if offset is None else offset


class Primitives:
    """The state of one compilation (libpcap: compiler_state_t) and the primitives."""

    def __init__(self, link, snaplen=262144, netmask=None, savefile=True, swapped=False,
                 track_origins=False):
        self.link = link
        # provenance (pfilter.explain): tag every block with the span of the primitive it
        # was made for; never changes the code
        self.track_origins = track_origins
        self.snaplen = snaplen
        self.netmask = netmask
        self.savefile = savefile
        self.swapped = swapped
        self.regused = [False] * BPF_MEMWORDS
        self.curreg = 0
        dlt = link.dlt
        self.outermostlinktype = dlt
        self.prevlinktype = dlt
        self.linktype = dlt
        self.off_linkhdr = AbsOffset(link.off_linkhdr, link.linkhdr_variable)
        self.off_linkpl = AbsOffset(_set(link.off_linkpl), link.linkpl_variable)
        self.off_linktype = AbsOffset(_set(link.off_linktype))
        self.off_outermostlinkhdr = self.off_linkhdr.copy()
        self.off_prevlinkhdr = self.off_linkhdr.copy()
        self.off_nl = _set(link.off_nl)
        self.off_nl_nosnap = _set(link.off_nl_nosnap)
        self.is_geneve = self.is_vlan_vloffset = self.no_optimize = False
        self.label_stack_depth = self.vlan_stack_depth = 0

    @staticmethod
    def gen_retblk(v):
        return Block(BPF_RET | BPF_K, v & 0xFFFFFFFF)

    def alloc_reg(self):
        # libpcap: alloc_reg()
        for _ in range(BPF_MEMWORDS):
            if self.regused[self.curreg]:
                self.curreg = (self.curreg + 1) % BPF_MEMWORDS
            else:
                self.regused[self.curreg] = True
                return self.curreg
        fail("too many registers needed to evaluate expression")

    def free_reg(self, n):
        self.regused[n] = False

    def _linktype_desc(self, dlt=None):
        dlt = self.linktype if dlt is None else dlt
        return DLT_DESCRIPTIONS.get(dlt) or f"DLT {dlt}"

    def gen_load_absoffsetrel(self, off, offset, size):
        # libpcap: gen_load_absoffsetrel()
        s = self.gen_abs_offset_varpart(off)
        if s is not None:
            s.append(Stmt(BPF_LD | BPF_IND | size, off.constant_part + offset))
            return s
        return [Stmt(BPF_LD | BPF_ABS | size, off.constant_part + offset)]

    def gen_load_a(self, offrel, offset, size):
        # libpcap: gen_load_a()
        if offrel == OR_PACKET:
            return [Stmt(BPF_LD | BPF_ABS | size, offset)]
        if offrel == OR_LINKHDR:
            return self.gen_load_absoffsetrel(self.off_linkhdr, offset, size)
        if offrel == OR_PREVLINKHDR:
            return self.gen_load_absoffsetrel(self.off_prevlinkhdr, offset, size)
        if offrel == OR_LLC:
            return self.gen_load_absoffsetrel(self.off_linkpl, offset, size)
        if offrel == OR_PREVMPLSHDR:
            return self.gen_load_absoffsetrel(self.off_linkpl, self._nl() - 4 + offset, size)
        if offrel == OR_LINKPL:
            return self.gen_load_absoffsetrel(self.off_linkpl, self._nl() + offset, size)
        if offrel == OR_LINKPL_NOSNAP:
            return self.gen_load_absoffsetrel(self.off_linkpl, self._nl_nosnap() + offset, size)
        if offrel == OR_LINKTYPE:
            return self.gen_load_absoffsetrel(self.off_linktype, offset, size)
        if offrel == OR_TRAN_IPV4:
            s = self.gen_loadx_iphdrlen()
            s.append(Stmt(BPF_LD | BPF_IND | size,
                          self.off_linkpl.constant_part + self._nl() + offset))
            return s
        if offrel == OR_TRAN_IPV6:
            return self.gen_load_absoffsetrel(self.off_linkpl, self._nl() + 40 + offset, size)
        raise AssertionError(offrel)

    def _nl(self):
        # An unset offset is libpcap's OFFSET_NOT_SET (0xffffffff) and takes part in the
        # (32-bit, wrapping) arithmetic just as in libpcap.
        return self.off_nl

    def _nl_nosnap(self):
        return self.off_nl_nosnap

    def gen_loadx_iphdrlen(self):
        # libpcap: gen_loadx_iphdrlen()
        s = self.gen_abs_offset_varpart(self.off_linkpl)
        if s is not None:
            s.append(Stmt(BPF_LD | BPF_IND | BPF_B, self.off_linkpl.constant_part + self._nl()))
            s.append(Stmt(BPF_ALU | BPF_AND | BPF_K, 0xF))
            s.append(Stmt(BPF_ALU | BPF_LSH | BPF_K, 2))
            s.append(Stmt(BPF_ALU | BPF_ADD | BPF_X))
            s.append(Stmt(BPF_MISC | BPF_TAX))
            return s
        return [Stmt(BPF_LDX | BPF_MSH | BPF_B, self.off_linkpl.constant_part + self._nl())]

    def gen_abs_offset_varpart(self, off):
        # libpcap: gen_abs_offset_varpart()
        if off.is_variable:
            if off.reg == -1:
                off.reg = self.alloc_reg()
            return [Stmt(BPF_LDX | BPF_MEM, off.reg)]
        return None

    def gen_uncond(self, rsense):
        # libpcap: gen_uncond()
        return Block(JMP(BPF_JEQ), 0, [Stmt(BPF_LD | BPF_IMM, 0 if rsense else 1)])

    def gen_true(self):
        return self.gen_uncond(True)

    def gen_false(self):
        return self.gen_uncond(False)

    def gen_ncmp(self, offrel, offset, size, mask, jtype, reverse, v):
        # libpcap: gen_ncmp()
        s = self.gen_load_a(offrel, offset, size)
        if mask != 0xFFFFFFFF:
            s.append(Stmt(BPF_ALU | BPF_AND | BPF_K, mask & 0xFFFFFFFF))
        b = Block(JMP(jtype), v & 0xFFFFFFFF, s)
        if reverse and jtype in (BPF_JGT, BPF_JGE):
            gen_not(b)
        return b

    def gen_cmp(self, offrel, offset, size, v):
        return self.gen_ncmp(offrel, offset, size, 0xFFFFFFFF, BPF_JEQ, False, v)

    def gen_cmp_gt(self, offrel, offset, size, v):
        return self.gen_ncmp(offrel, offset, size, 0xFFFFFFFF, BPF_JGT, False, v)

    def gen_cmp_ge(self, offrel, offset, size, v):
        return self.gen_ncmp(offrel, offset, size, 0xFFFFFFFF, BPF_JGE, False, v)

    def gen_cmp_lt(self, offrel, offset, size, v):
        return self.gen_ncmp(offrel, offset, size, 0xFFFFFFFF, BPF_JGE, True, v)

    def gen_cmp_le(self, offrel, offset, size, v):
        return self.gen_ncmp(offrel, offset, size, 0xFFFFFFFF, BPF_JGT, True, v)

    def gen_mcmp(self, offrel, offset, size, v, mask):
        return self.gen_ncmp(offrel, offset, size, mask, BPF_JEQ, False, v)

    def gen_bcmp(self, offrel, offset, size, v):
        # libpcap: gen_bcmp(): compare `size` bytes, last word first, then halfwords, a byte
        b = None
        for width, code in ((4, BPF_W), (2, BPF_H), (1, BPF_B)):
            while size >= width:
                tmp = self.gen_cmp(offrel, offset + size - width, code,
                                   int.from_bytes(v[size - width:size], "big"))
                if b is not None:
                    gen_and(b, tmp)
                b = tmp
                size -= width
        return b

    def _jset_block(self, offset, k, negate=False):
        b = Block(JMP(BPF_JSET), k, self.gen_load_a(OR_LINKHDR, offset, BPF_B))
        if negate:
            gen_not(b)
        return b
    def _push_linkhdr(self, new_linktype, is_variable, constant_part, reg):
        # libpcap: PUSH_LINKHDR()
        self.prevlinktype = self.linktype
        self.off_prevlinkhdr = self.off_linkhdr.copy()
        self.linktype = new_linktype
        self.off_linkhdr = AbsOffset(constant_part, is_variable, reg)
        self.is_geneve = False

    def gen_geneve_ll_check(self):
        # libpcap: gen_geneve_ll_check()
        s = [Stmt(BPF_LD | BPF_MEM, self.off_linkhdr.reg),
             Stmt(BPF_LDX | BPF_MEM, self.off_linkpl.reg)]
        b0 = Block(BPF_JMP | BPF_JEQ | BPF_X, 0, s)
        gen_not(b0)
        return b0
