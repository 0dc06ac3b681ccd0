"""Protocol numbers and header constants the code generator uses (values from libpcap 1.10.3's
headers: ethertype.h, llc.h, nlpid.h, ppp.h, ieee80211.h, sll.h, pflog.h). Imports nothing
from pfilter.
"""

ETHERMTU = 1500

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_REVARP = 0x8035
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_ATALK = 0x809B
ETHERTYPE_AARP = 0x80F3
ETHERTYPE_DN = 0x6003
ETHERTYPE_SCA = 0x6007
ETHERTYPE_LAT = 0x6004
ETHERTYPE_MOPDL = 0x6001
ETHERTYPE_MOPRC = 0x6002
ETHERTYPE_NS = 0x0600
ETHERTYPE_IPX = 0x8137
ETHERTYPE_TEB = 0x6558
ETHERTYPE_8021Q = 0x8100
ETHERTYPE_8021AD = 0x88A8
ETHERTYPE_8021QINQ = 0x9100
ETHERTYPE_MPLS = 0x8847
ETHERTYPE_PPPOED = 0x8863
ETHERTYPE_PPPOES = 0x8864

LLCSAP_IP = 0x06
LLCSAP_ISONS = 0xFE
LLCSAP_NETBEUI = 0xF0
LLCSAP_IPX = 0xE0
LLCSAP_SNAP = 0xAA
LLCSAP_8021D = 0x42

ISO8473_CLNP = 0x81
ISO9542_ESIS = 0x82
ISO10589_ISIS = 0x83
ISIS_L1_LAN_IIH = 15
ISIS_L2_LAN_IIH = 16
ISIS_PTP_IIH = 17
ISIS_L1_LSP = 18
ISIS_L2_LSP = 20
ISIS_L1_CSNP = 24
ISIS_L2_CSNP = 25
ISIS_L1_PSNP = 26
ISIS_L2_PSNP = 27

IPPROTO_HOPOPTS = 0
IPPROTO_ICMP = 1
IPPROTO_IGMP = 2
IPPROTO_TCP = 6
IPPROTO_IGRP = 9
IPPROTO_UDP = 17
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
IPPROTO_PIM = 103
IPPROTO_VRRP = 112
IPPROTO_CARP = 112
IPPROTO_SCTP = 132
PROTO_UNDEF = -1

PPP_IP = 0x0021
PPP_OSI = 0x0023
PPP_NS = 0x0025
PPP_DECNET = 0x0027
PPP_APPLE = 0x0029
PPP_IPX = 0x002B
PPP_VJC = 0x002D
PPP_VJNC = 0x002F
PPP_BRPDU = 0x0031
PPP_IPV6 = 0x0057
PPP_MPLS_UCAST = 0x0281

LINUX_SLL_P_802_3 = 0x0001
LINUX_SLL_P_802_2 = 0x0004
LINUX_SLL_OUTGOING = 4

LLC_S_FMT = 1
LLC_U_FMT = 3
LLC_S_CMD_MASK = 0x0F
LLC_U_CMD_MASK = 0xEF
LLC_S_SUBTYPES = {"rr": 0x01, "rnr": 0x05, "rej": 0x09}
LLC_U_SUBTYPES = {"ui": 0x03, "ua": 0x63, "disc": 0x43, "dm": 0x0F, "sabme": 0x6F,
                  "test": 0xE3, "xid": 0xAF, "frmr": 0x87}

IEEE80211_FC0_TYPE_MASK = 0x0C
IEEE80211_FC0_SUBTYPE_MASK = 0xF0
IEEE80211_FC0_TYPE_CTL = 0x04
IEEE80211_FC0_SUBTYPE_CTS = 0xC0
IEEE80211_FC0_SUBTYPE_ACK = 0xD0
IEEE80211_FC1_DIR_MASK = 0x03
IEEE80211_FC1_DIR_DSTODS = 0x03

# struct pfloghdr field offsets (libpcap's pflog.h on Linux)
PFLOG_AF, PFLOG_ACTION, PFLOG_REASON, PFLOG_IFNAME, PFLOG_RULESET = 1, 2, 3, 4, 20
PFLOG_RULENR, PFLOG_SUBRULENR, PFLOG_DIR = 36, 40, 60
PFLOG_IFNAMSIZ = 16
PF_IN, PF_OUT = 1, 2
AF_INET, AF_INET6_LINUX = 2, 10
PF_REASONS = ("match", "bad-offset", "fragment", "short", "normalize", "memory",
              "bad-timestamp", "congestion", "ip-option", "proto-cksum", "state-mismatch",
              "state-insert", "state-limit", "src-limit", "synproxy")
PF_ACTIONS = {"pass": 0, "accept": 0, "drop": 1, "block": 1, "scrub": 2, "noscrub": 3,
              "nat": 4, "nonat": 5, "binat": 6, "nobinat": 7, "rdr": 8, "nordr": 9,
              "synproxy-drop": 10}

IPNET_OUTBOUND, IPNET_INBOUND = 1, 2
IPH_AF_INET, IPH_AF_INET6 = 2, 26
PPP_PPPD_IN, PPP_PPPD_OUT = 0, 1
ARCTYPE_IP, ARCTYPE_IP_OLD, ARCTYPE_ARP, ARCTYPE_ARP_OLD = 212, 240, 213, 241
ARCTYPE_REVARP, ARCTYPE_ATALK, ARCTYPE_INET6 = 214, 221, 0xC4

BSD_AFNUM_INET6_BSD, BSD_AFNUM_INET6_FREEBSD, BSD_AFNUM_INET6_DARWIN = 24, 28, 30

GENEVE_PORT = 6081

# the direction byte of the SLIP pseudo-header (libpcap's slip.h)
SLIPDIR_IN, SLIPDIR_OUT = 0, 1

# SunATM pseudo-header and Q.2931 (libpcap's sunatmpos.h, atmuni31.h)
SUNATM_VPI_POS, SUNATM_VCI_POS, SUNATM_PKT_BEGIN_POS = 1, 2, 4
ATM_PROTO_POS, ATM_MSG_TYPE_POS = 0, 5
PT_LANE, PT_LLC = 0x01, 0x02
Q2931_SETUP, Q2931_CALL_PROCEED, Q2931_CONNECT, Q2931_CONNECT_ACK = 0x05, 0x02, 0x07, 0x0F
Q2931_RELEASE, Q2931_RELEASE_DONE = 0x4D, 0x5A

# Where a load is relative to (libpcap: enum e_offrel).
OR_PACKET, OR_LINKHDR, OR_PREVLINKHDR, OR_LLC, OR_PREVMPLSHDR, OR_LINKTYPE, OR_LINKPL, \
    OR_LINKPL_NOSNAP, OR_TRAN_IPV4, OR_TRAN_IPV6 = range(10)

# libpcap's OFFSET_NOT_SET: the link type has no such field. It takes part in offset arithmetic
# (32-bit, wrapping) exactly as in libpcap.
OFFSET_NOT_SET = 0xFFFFFFFF


def swap32(v):
    """Byte-swap a 32-bit value (libpcap: SWAPLONG)."""
    return int.from_bytes((v & 0xFFFFFFFF).to_bytes(4, "big"), "little")


def swap16(v):
    """Byte-swap a 16-bit value (ntohs on a little-endian host)."""
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)
