"""Classic BPF opcode constants, with libpcap's names. Imports nothing from pfilter.

An opcode is 16 bits; only the low 8 are used:

    7  6  5  4  3  2  1  0
   +--------+-----+--------+
   |  op    | src | class  |   ALU and JMP: op (4 bits) | src (K or X) | class
   +--------+-----+--------+
   | mode   |size | class  |   LD, LDX, ST, STX: mode (3 bits) | size (2 bits) | class
   +--------+-----+--------+
   RET: rval (K, X or A) in bits 3-4 | class;  MISC: TAX or TXA in bits 3-7 | class
"""

# instruction classes
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_RET = 0x06
BPF_MISC = 0x07

# load sizes
BPF_W = 0x00
BPF_H = 0x08
BPF_B = 0x10

# load modes
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_LEN = 0x80
BPF_MSH = 0xA0

# ALU operations
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xA0

# jump operations
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40

# operand source
BPF_K = 0x00
BPF_X = 0x08
BPF_A = 0x10  # BPF_RET only

# BPF_MISC operations
BPF_TAX = 0x00
BPF_TXA = 0x80

BPF_MEMWORDS = 16
BPF_MAXINSNS = 4096


def _bits(name, mask):
    """libpcap's macro `name`: the opcode's bits under mask."""
    def bits(code):
        return code & mask
    bits.__name__ = bits.__qualname__ = name
    bits.__doc__ = f"code & {mask:#04x}"
    return bits


BPF_CLASS = _bits("BPF_CLASS", 0x07)
BPF_SIZE = _bits("BPF_SIZE", 0x18)
BPF_MODE = _bits("BPF_MODE", 0xE0)
BPF_OP = _bits("BPF_OP", 0xF0)
BPF_SRC = _bits("BPF_SRC", 0x08)
BPF_RVAL = _bits("BPF_RVAL", 0x18)
BPF_MISCOP = _bits("BPF_MISCOP", 0xF8)


# Linux "ancillary data" loads: a BPF_LD|BPF_ABS at SKF_AD_OFF + n reads packet metadata in the
# kernel. In libpcap's userland bpf_filter (no metadata available), they are plain loads past the
# packet and so make the program return 0.
SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL = 0
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8
SKF_AD_NLATTR = 12
SKF_AD_NLATTR_NEST = 16
SKF_AD_MARK = 20
SKF_AD_QUEUE = 24
SKF_AD_HATYPE = 28
SKF_AD_RXHASH = 32
SKF_AD_CPU = 36
SKF_AD_ALU_XOR_X = 40
SKF_AD_VLAN_TAG = 44
SKF_AD_VLAN_TAG_PRESENT = 48
SKF_AD_PAY_OFFSET = 52
SKF_AD_RANDOM = 56
SKF_AD_VLAN_TPID = 60
SKF_NET_OFF = -0x100000
SKF_LL_OFF = -0x200000

#: every opcode the validator and the VMs accept
VALID_OPCODES = frozenset(
    [BPF_LD | BPF_IMM, BPF_LD | BPF_MEM, BPF_LD | BPF_W | BPF_LEN, BPF_LDX | BPF_W | BPF_LEN]
    + [BPF_LD | size | mode for size in (BPF_W, BPF_H, BPF_B) for mode in (BPF_ABS, BPF_IND)]
    + [BPF_LDX | BPF_IMM, BPF_LDX | BPF_MEM, BPF_LDX | BPF_B | BPF_MSH, BPF_ST, BPF_STX]
    + [BPF_ALU | op | src for op in (BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND,
                                     BPF_LSH, BPF_RSH, BPF_MOD, BPF_XOR) for src in (BPF_K, BPF_X)]
    + [BPF_ALU | BPF_NEG, BPF_JMP | BPF_JA]
    + [BPF_JMP | op | src for op in (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET) for src in (BPF_K, BPF_X)]
    + [BPF_RET | BPF_K, BPF_RET | BPF_A, BPF_MISC | BPF_TAX, BPF_MISC | BPF_TXA]
)
