"""Link-layer contexts: where each link type puts its type field, its payload and the network
header, as libpcap 1.10.3's init_linktype() lays them out. Imports pfilter.errors and pfilter.linktypes only.

A `LinkContext` is an immutable description chosen by DLT number. The code generator copies
its offsets into its own mutable state at the start of each compilation, because `vlan`,
`mpls`, `pppoes` and `geneve` shift them for the rest of the expression.

Offsets are absolute from the start of the packet, except `off_nl` / `off_nl_nosnap`, which
are relative to the link-layer payload (libpcap's convention). `None` means "not set"
(libpcap's OFFSET_NOT_SET): the link type has no such field.
"""

from dataclasses import dataclass
from typing import Optional

from pfilter.errors import FilterError
from pfilter.linktypes import DLT, LINKTYPE_TO_DLT, linktype_name

__all__ = ["LinkContext", "link_context", "dlt_from_linktype", "DLT", "DLT_NAMES", "DLT_DESCRIPTIONS"]

# DLT numbers and names come from pfilter.linktypes, the one table of them.
DLT_NAMES = {v: linktype_name(v) for v in set(DLT.values())}

# libpcap's pcap_datalink_val_to_description(), for messages that name a link type.
DLT_DESCRIPTIONS = {
    195: 'IEEE 802.15.4 with FCS',
    0: 'BSD loopback', 1: 'Ethernet', 6: 'Token ring', 7: 'BSD ARCNET', 8: 'SLIP', 9: 'PPP',
    10: 'FDDI', 11: 'RFC 1483 LLC-encapsulated ATM', 12: 'Raw IP', 15: 'BSD/OS SLIP',
    16: 'BSD/OS PPP', 19: 'Linux Classical IP over ATM', 50: 'PPP over serial', 51: 'PPPoE',
    99: 'Symantec Firewall', 104: 'Cisco HDLC', 105: '802.11', 107: 'Frame Relay',
    108: 'OpenBSD loopback', 109: 'OpenBSD encapsulated IP', 113: 'Linux cooked v1',
    114: 'Localtalk', 117: 'OpenBSD pflog file', 119: '802.11 plus Prism header',
    122: 'RFC 2625 IP-over-Fibre Channel', 123: 'Sun raw ATM', 127: '802.11 plus radiotap header',
    129: 'Linux ARCNET', 130: 'Juniper Multi-Link PPP', 131: 'Juniper Multi-Link Frame Relay',
    132: 'Juniper Encryption Services PIC', 133: 'Juniper GGSN PIC',
    134: 'Juniper FRF.16 Frame Relay', 135: 'Juniper ATM2 PIC',
    136: 'Juniper Advanced Services PIC', 137: 'Juniper ATM1 PIC', 138: 'Apple IP-over-IEEE 1394',
    139: 'SS7 MTP2 with Pseudo-header', 140: 'SS7 MTP2', 141: 'SS7 MTP3', 142: 'SS7 SCCP',
    143: 'DOCSIS', 144: 'Linux IrDA', 163: '802.11 plus AVS radio information header',
    164: 'Juniper Passive Monitor PIC', 165: 'BACnet MS/TP',
    166: 'PPP for pppd, with direction flag', 167: 'Juniper PPPoE', 168: 'Juniper PPPoE/ATM',
    169: 'GPRS LLC', 170: 'GPF-T', 171: 'GPF-F', 174: 'Juniper PIC Peer',
    175: 'Ethernet with Endace ERF header', 176: 'Packet-over-SONET with Endace ERF header',
    177: 'Linux vISDN LAPD', 178: 'Juniper Ethernet', 179: 'Juniper PPP',
    180: 'Juniper Frame Relay', 181: 'Juniper C-HDLC', 182: 'FRF.16 Frame Relay',
    183: 'Juniper Voice PIC', 184: 'Arinc 429', 185: 'Arinc 653 Interpartition Communication',
    186: 'USB with FreeBSD header', 187: 'Bluetooth HCI UART transport layer',
    188: 'IEEE 802.16 MAC Common Part Sublayer', 189: 'USB with Linux header',
    190: 'Controller Area Network (CAN) v. 2.0B', 191: 'IEEE 802.15.4 with Linux padding',
    192: 'Per-Packet Information',
    193: 'IEEE 802.16 MAC Common Part Sublayer plus radiotap header',
    194: 'Juniper Integrated Service Module', 196: 'SITA pseudo-header', 197: 'Endace ERF header',
    198: 'Ethernet with u10 Networks pseudo-header', 199: 'IPMB with Kontron pseudo-header',
    200: 'Juniper Secure Tunnel', 201: 'Bluetooth HCI UART transport layer plus pseudo-header',
    202: 'AX.25 with KISS header', 209: 'IPMB with Linux/Pigeon Point pseudo-header',
    215: 'IEEE 802.15.4 with non-ASK PHY data', 216: 'Linux evdev events',
    219: 'MPLS with label as link-layer header', 220: 'USB with padded Linux header', 221: 'DECT',
    222: 'AOS Space Data Link protocol', 223: 'Wireless HART', 224: 'Fibre Channel FC-2',
    225: 'Fibre Channel FC-2 with frame delimiters', 226: 'Solaris ipnet',
    227: 'CAN-bus with SocketCAN headers', 228: 'Raw IPv4', 229: 'Raw IPv6',
    230: 'IEEE 802.15.4 without FCS', 231: 'D-Bus', 232: 'Juniper Virtual Server',
    233: 'Juniper SRX E2E', 234: 'Juniper Fibre Channel', 235: 'DVB-CI', 236: 'MUX27010',
    237: 'STANAG 5066 D_PDUs', 238: 'Juniper ATM CEMIC', 239: 'Linux netfilter log messages',
    240: 'Ethernet with Hilscher netANALYZER pseudo-header',
    241: 'Ethernet with Hilscher netANALYZER pseudo-header and with preamble and SFD',
    242: 'RFC 4391 IP-over-Infiniband', 243: 'MPEG-2 transport stream',
    244: 'ng40 protocol tester Iub/Iur', 245: 'NFC LLCP PDUs with pseudo-header',
    246: 'Packet filter state syncing', 247: 'InfiniBand', 248: 'SCTP',
    249: 'USB with USBPcap header', 250: 'Schweitzer Engineering Laboratories RTAC packets',
    251: 'Bluetooth Low Energy air interface', 253: 'Linux netlink',
    254: 'Bluetooth Linux Monitor',
    255: 'Bluetooth Basic Rate/Enhanced Data Rate baseband packets',
    256: 'Bluetooth Low Energy air interface with pseudo-header', 257: 'PROFIBUS data link layer',
    258: 'Apple DLT_PKTAP', 259: 'Ethernet with 802.3 Clause 65 EPON preamble',
    260: 'IPMI trace packets', 261: 'Z-Wave RF profile R1 and R2 packets',
    262: 'Z-Wave RF profile R3 packets',
    263: 'WattStopper Digital Lighting Management (DLM) and Legrand Nitoo Open protocol',
    264: 'ISO 14443 messages', 265: 'IEC 62106 Radio Data System groups',
    266: 'USB with Darwin header', 267: 'OpenBSD DLT_OPENFLOW', 268: 'IBM SDLC frames',
    269: 'TI LLN sniffer frames', 271: 'Linux vsock',
    272: 'Nordic Semiconductor Bluetooth LE sniffer frames',
    273: 'Excentis XRA-31 DOCSIS 3.1 RF sniffer frames', 274: '802.3br mPackets',
    275: 'DisplayPort AUX channel monitoring data', 276: 'Linux cooked v2', 278: 'OpenVizsla USB',
    279: 'Elektrobit High Speed Capture and Replay (EBHSCR)', 280: 'VPP graph dispatch tracer',
    281: 'Broadcom tag', 282: 'Broadcom tag (prepended)', 283: 'IEEE 802.15.4 with pseudo-header',
    284: 'Marvell DSA', 285: 'Marvell EDSA', 286: 'ELEE lawful intercept packets',
    287: 'Z-Wave serial frames between host and chip',
    288: 'USB 2.0/1.1/1.0 as transmitted over the cable', 289: 'ATSC Link-Layer Protocol packets',
}

DLT_MATCHING_MIN = 104
DLT_MATCHING_MAX = 289

# The 802.11 family: 802.11 headers, possibly behind a radio header.
WLAN_DLTS = frozenset(DLT[n] for n in (
    "IEEE802_11", "PRISM_HEADER", "IEEE802_11_RADIO_AVS", "IEEE802_11_RADIO", "PPI"))
ETHER_DLTS = frozenset(DLT[n] for n in ("EN10MB", "NETANALYZER", "NETANALYZER_TRANSPARENT"))
JUNIPER_DLTS = frozenset(DLT[n] for n in (
    "JUNIPER_MFR", "JUNIPER_MLFR", "JUNIPER_MLPPP", "JUNIPER_ATM1", "JUNIPER_ATM2",
    "JUNIPER_PPPOE", "JUNIPER_PPPOE_ATM", "JUNIPER_GGSN", "JUNIPER_ES", "JUNIPER_MONITOR",
    "JUNIPER_SERVICES", "JUNIPER_ETHER", "JUNIPER_PPP", "JUNIPER_FRELAY", "JUNIPER_CHDLC",
    "JUNIPER_VP", "JUNIPER_ST", "JUNIPER_ISM", "JUNIPER_VS", "JUNIPER_SRX_E2E",
    "JUNIPER_FIBRECHANNEL", "JUNIPER_ATM_CEMIC"))


@dataclass(frozen=True)
class LinkContext:
    """How one link type lays out its headers (libpcap: init_linktype())."""
    dlt: int
    name: str
    off_linktype: Optional[int]      # the type field (or LLC header), absolute
    off_linkpl: Optional[int]        # the link-layer payload, absolute (constant part)
    off_nl: Optional[int]            # network header, relative to the payload
    off_nl_nosnap: Optional[int]     # the same when there is 802.2 LLC but no SNAP
    off_linkhdr: int = 0             # start of the link-layer header (constant part)
    linkhdr_variable: bool = False   # a variable-length prefix precedes the link header
    linkpl_variable: bool = False    # the link header itself is variable-length

    @property
    def is_wlan(self):
        return self.dlt in WLAN_DLTS

    @property
    def is_ether(self):
        return self.dlt in ETHER_DLTS


def _lc(dlt, ltype, lpl, nl, nosnap, **kw):
    return LinkContext(dlt, DLT_NAMES.get(dlt, str(dlt)), ltype, lpl, nl, nosnap, **kw)


_N = None   # OFFSET_NOT_SET

_TABLE = {}


def _add(names, ltype, lpl, nl, nosnap, **kw):
    for n in names.split():
        _TABLE[DLT[n]] = _lc(DLT[n], ltype, lpl, nl, nosnap, **kw)


_add("ARCNET", 2, 6, 0, 0)
_add("ARCNET_LINUX", 4, 8, 0, 0)
_add("EN10MB", 12, 14, 0, 3)
_add("SLIP", _N, 16, 0, 0)
_add("SLIP_BSDOS", _N, 24, 0, 0)
_add("NULL LOOP", 0, 4, 0, 0)
_add("ENC", 0, 12, 0, 0)
_add("PPP PPP_PPPD C_HDLC HDLC PPP_SERIAL", 2, 4, 0, 0)
_add("PPP_ETHER", 6, 8, 0, 0)
_add("PPP_BSDOS", 5, 24, 0, 0)
_add("FDDI", 13, 13, 8, 3)
_add("IEEE802", 14, 14, 8, 3)
_add("PRISM_HEADER IEEE802_11_RADIO_AVS IEEE802_11_RADIO", 24, 0, 8, 3,
     linkhdr_variable=True, linkpl_variable=True)
_add("IEEE802_11", 24, 0, 8, 3, linkpl_variable=True)
_add("PPI", 24, 0, 8, 3, linkhdr_variable=True, linkpl_variable=True)
_add("ATM_RFC1483 ATM_CLIP", 0, 0, 8, 3)
_add("SUNATM", 4, 4, 8, 3)
_add("RAW IPV4 IPV6", _N, 0, 0, 0)
_add("LINUX_SLL", 14, 16, 0, 0)
_add("LINUX_SLL2", 0, 20, 0, 0)
_add("LTALK", _N, 0, 0, 0)
_add("IP_OVER_FC", 16, 16, 8, 3)
_add("FRELAY", _N, 0, 0, 0)
_add("MFR", _N, 0, 4, 0)
_add("APPLE_IP_OVER_IEEE1394", 16, 18, 0, 0)
_add("SYMANTEC_FIREWALL", 6, 44, 0, 0)
_add("PFLOG", 0, 0, 0, 0, linkpl_variable=True)
_add("JUNIPER_MFR JUNIPER_MLFR JUNIPER_MLPPP JUNIPER_PPP JUNIPER_CHDLC JUNIPER_FRELAY",
     4, 4, 0, _N)
_add("JUNIPER_ATM1", 4, 4, 0, 10)
_add("JUNIPER_ATM2", 8, 8, 0, 10)
_add("JUNIPER_PPPOE JUNIPER_ETHER", 16, 14, 18, 21)
_add("JUNIPER_PPPOE_ATM", 4, 6, 0, _N)
_add("JUNIPER_GGSN", 6, 12, 0, _N)
_add("JUNIPER_ES", 6, _N, _N, _N)
_add("JUNIPER_MONITOR", 12, 12, 0, _N)
_add("BACNET_MS_TP", _N, _N, _N, _N)
_add("JUNIPER_SERVICES", 12, _N, _N, _N)
_add("JUNIPER_VP JUNIPER_ST", 18, _N, _N, _N)
_add("JUNIPER_ISM JUNIPER_VS JUNIPER_SRX_E2E JUNIPER_FIBRECHANNEL JUNIPER_ATM_CEMIC",
     8, _N, _N, _N)
_add("MTP2 MTP2_WITH_PHDR ERF", _N, _N, _N, _N)
_add("PFSYNC", _N, 4, 0, 0)
_add("AX25_KISS", _N, _N, _N, _N)
_add("IPNET", 1, 24, 0, _N)
_add("NETANALYZER", 16, 18, 0, 3, off_linkhdr=4)
_add("NETANALYZER_TRANSPARENT", 24, 26, 0, 3, off_linkhdr=12)


def dlt_from_linktype(n):
    """The DLT value libpcap uses for capture-file link type `n`."""
    return LINKTYPE_TO_DLT.get(n, n)


def link_context(dlt):
    """The LinkContext for a DLT number; FilterError for an unknown one."""
    ctx = _TABLE.get(dlt)
    if ctx is not None:
        return ctx
    if DLT_MATCHING_MIN <= dlt <= DLT_MATCHING_MAX:
        # Only raw `link[N:M]` filtering is possible on these.
        ctx = _lc(dlt, _N, _N, _N, _N)
        _TABLE[dlt] = ctx
        return ctx
    raise FilterError(f"unknown data link type {dlt} (min {DLT_MATCHING_MIN}, max {DLT_MATCHING_MAX})")
