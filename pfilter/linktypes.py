"""Link-layer types: names and numbers (DLT_* as libpcap uses them on Linux, LINKTYPE_* as files
store them). Imports pfilter.errors only.

`linktype_number` turns what a user says ("EN10MB", "DLT_RAW", "linux_sll", 1, 101, "113") into the
DLT number the compiler works with; `linktype_name` goes back. File values that differ from the
Linux DLT values (LINKTYPE_RAW 101, ...) map onto the DLT as libpcap's linktype_to_dlt() does.
"""
from .errors import FilterError

#: DLT name -> number, as <pcap/dlt.h> defines them on Linux
DLT = {
    "NULL": 0, "EN10MB": 1, "EN3MB": 2, "AX25": 3, "PRONET": 4,
    "CHAOS": 5, "IEEE802": 6, "ARCNET": 7, "SLIP": 8, "PPP": 9,
    "FDDI": 10, "ATM_RFC1483": 11, "RAW": 12, "SLIP_BSDOS": 15, "PPP_BSDOS": 16,
    "HIPPI": 15, "PFSYNC": 246, "ATM_CLIP": 19, "REDBACK_SMARTEDGE": 32, "PPP_SERIAL": 50,
    "PPP_ETHER": 51, "SYMANTEC_FIREWALL": 99, "C_HDLC": 104, "IEEE802_11": 105, "FRELAY": 107,
    "LOOP": 108, "ENC": 109, "HDLC": 112, "LINUX_SLL": 113, "LTALK": 114,
    "ECONET": 115, "IPFILTER": 116, "PFLOG": 117, "CISCO_IOS": 118, "PRISM_HEADER": 119,
    "AIRONET_HEADER": 120, "IP_OVER_FC": 122, "SUNATM": 123, "RIO": 124, "PCI_EXP": 125,
    "AURORA": 126, "IEEE802_11_RADIO": 127, "TZSP": 128, "ARCNET_LINUX": 129, "JUNIPER_MLPPP": 130,
    "JUNIPER_MLFR": 131, "JUNIPER_ES": 132, "JUNIPER_GGSN": 133, "JUNIPER_MFR": 134, "JUNIPER_ATM2": 135,
    "JUNIPER_SERVICES": 136, "JUNIPER_ATM1": 137, "APPLE_IP_OVER_IEEE1394": 138, "MTP2_WITH_PHDR": 139, "MTP2": 140,
    "MTP3": 141, "SCCP": 142, "DOCSIS": 143, "LINUX_IRDA": 144, "IBM_SP": 145,
    "IBM_SN": 146, "USER0": 147, "USER1": 148, "USER2": 149, "USER3": 150,
    "USER4": 151, "USER5": 152, "USER6": 153, "USER7": 154, "USER8": 155,
    "USER9": 156, "USER10": 157, "USER11": 158, "USER12": 159, "USER13": 160,
    "USER14": 161, "USER15": 162, "IEEE802_11_RADIO_AVS": 163, "JUNIPER_MONITOR": 164, "BACNET_MS_TP": 165,
    "PPP_PPPD": 166, "JUNIPER_PPPOE": 167, "JUNIPER_PPPOE_ATM": 168, "GPRS_LLC": 169, "GPF_T": 170,
    "GPF_F": 171, "GCOM_T1E1": 172, "GCOM_SERIAL": 173, "JUNIPER_PIC_PEER": 174, "ERF_ETH": 175,
    "ERF_POS": 176, "LINUX_LAPD": 177, "JUNIPER_ETHER": 178, "JUNIPER_PPP": 179, "JUNIPER_FRELAY": 180,
    "JUNIPER_CHDLC": 181, "MFR": 182, "JUNIPER_VP": 183, "A429": 184, "A653_ICM": 185,
    "USB_FREEBSD": 186, "USB": 186, "BLUETOOTH_HCI_H4": 187, "IEEE802_16_MAC_CPS": 188, "USB_LINUX": 189,
    "CAN20B": 190, "IEEE802_15_4_LINUX": 191, "PPI": 192, "IEEE802_16_MAC_CPS_RADIO": 193, "JUNIPER_ISM": 194,
    "IEEE802_15_4_WITHFCS": 195, "SITA": 196, "ERF": 197, "RAIF1": 198, "IPMB_KONTRON": 199,
    "JUNIPER_ST": 200, "BLUETOOTH_HCI_H4_WITH_PHDR": 201, "AX25_KISS": 202, "LAPD": 203, "PPP_WITH_DIR": 204,
    "C_HDLC_WITH_DIR": 205, "FRELAY_WITH_DIR": 206, "LAPB_WITH_DIR": 207, "IPMB_LINUX": 209, "FLEXRAY": 210,
    "MOST": 211, "LIN": 212, "X2E_SERIAL": 213, "X2E_XORAYA": 214, "IEEE802_15_4_NONASK_PHY": 215,
    "LINUX_EVDEV": 216, "GSMTAP_UM": 217, "GSMTAP_ABIS": 218, "MPLS": 219, "USB_LINUX_MMAPPED": 220,
    "DECT": 221, "AOS": 222, "WIHART": 223, "FC_2": 224, "FC_2_WITH_FRAME_DELIMS": 225,
    "IPNET": 226, "CAN_SOCKETCAN": 227, "IPV4": 228, "IPV6": 229, "IEEE802_15_4_NOFCS": 230,
    "DBUS": 231, "JUNIPER_VS": 232, "JUNIPER_SRX_E2E": 233, "JUNIPER_FIBRECHANNEL": 234, "DVB_CI": 235,
    "MUX27010": 236, "STANAG_5066_D_PDU": 237, "JUNIPER_ATM_CEMIC": 238, "NFLOG": 239, "NETANALYZER": 240,
    "NETANALYZER_TRANSPARENT": 241, "IPOIB": 242, "MPEG_2_TS": 243, "NG40": 244, "NFC_LLCP": 245,
    "INFINIBAND": 247, "SCTP": 248, "USBPCAP": 249, "RTAC_SERIAL": 250, "BLUETOOTH_LE_LL": 251,
    "WIRESHARK_UPPER_PDU": 252, "NETLINK": 253, "BLUETOOTH_LINUX_MONITOR": 254, "BLUETOOTH_BREDR_BB": 255, "BLUETOOTH_LE_LL_WITH_PHDR": 256,
    "PROFIBUS_DL": 257, "PKTAP": 258, "EPON": 259, "IPMI_HPM_2": 260, "ZWAVE_R1_R2": 261,
    "ZWAVE_R3": 262, "WATTSTOPPER_DLM": 263, "ISO_14443": 264, "RDS": 265, "USB_DARWIN": 266,
    "OPENFLOW": 267, "SDLC": 268, "TI_LLN_SNIFFER": 269, "LORATAP": 270, "VSOCK": 271,
    "NORDIC_BLE": 272, "DOCSIS31_XRA31": 273, "ETHERNET_MPACKET": 274, "DISPLAYPORT_AUX": 275, "LINUX_SLL2": 276,
    "SERCOS_MONITOR": 277, "OPENVIZSLA": 278, "EBHSCR": 279, "VPP_DISPATCH": 280, "DSA_TAG_BRCM": 281,
    "DSA_TAG_BRCM_PREPEND": 282, "IEEE802_15_4_TAP": 283, "DSA_TAG_DSA": 284, "DSA_TAG_EDSA": 285, "ELEE": 286,
    "Z_WAVE_SERIAL": 287, "USB_2_0": 288, "ATSC_ALP": 289,
}

#: LINKTYPE_* values (in files) that differ from the Linux DLT_* value they stand for
LINKTYPE_TO_DLT = {100: 11, 101: 12, 102: 15, 103: 16, 106: 19, 14: 12}

#: other names users write for link types
ALIASES = {"ETHERNET": 1, "ETHER": 1, "SLL": 113, "LINUX_SLL1": 113, "SLL2": 276, "RAW_IP": 12,
           "RADIOTAP": 127, "IEEE802_11_RADIOTAP": 127, "WIFI": 105, "CHDLC": 104, "PPP_HDLC": 50}

#: the preferred name of each DLT number (first name listed wins; aliases below)
_NAME_OF = {}
for _name, _num in DLT.items():
    _NAME_OF.setdefault(_num, _name)
_NAME_OF[12] = "RAW"
_NAME_OF[186] = "USB_FREEBSD"
_NAME_OF[195] = "IEEE802_15_4_WITHFCS"

#: LINKTYPE_* value written to files for a DLT value, where they differ
DLT_TO_LINKTYPE = {11: 100, 12: 101, 15: 102, 16: 103, 19: 106}


def _index(value):
    """operator.index(value), without importing operator (the command's start-up)."""
    method = getattr(type(value), "__index__", None)
    if method is None:
        raise TypeError(f"{type(value).__name__!r} object cannot be interpreted as an integer")
    return method(value)


def linktype_number(value):
    """The DLT number for a name or number (LINKTYPE_ numbers accepted); FilterError if unknown."""
    if isinstance(value, bool):
        raise FilterError(f"unknown data link type {value!r}")
    try:
        num = _index(value)  # ints, numpy integers
    except TypeError:
        text = str(value).strip()
        try:
            num = int(text, 0)
        except ValueError:
            key = text.upper()
            for prefix in ("DLT_", "LINKTYPE_"):
                if key.startswith(prefix):
                    key = key[len(prefix):]
            if key in DLT:
                return DLT[key]
            if key in ALIASES:
                return ALIASES[key]
            raise FilterError(f"unknown data link type {text!r}{_known_names_hint(key)}") from None
    if num < 0 or num > 0xFFFF:
        raise FilterError(f"unknown data link type {num}")
    return LINKTYPE_TO_DLT.get(num, num)


def _known_names_hint(key):
    """'; did you mean ...? known names: ...': close matches, then the names tcpdump describes
    (the common ones; the full list is DLT and ALIASES), in one line."""
    import difflib
    close = difflib.get_close_matches(key, list(DLT) + list(ALIASES), n=3, cutoff=0.6)
    common = [name for name in (DESCRIPTIONS[n][0] for n in sorted(DESCRIPTIONS)) if name in DLT]
    others = len(set(DLT) | set(ALIASES)) - len(common)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return (f"{hint}; known names: {', '.join(common)} and {others} more (a DLT_ or LINKTYPE_ "
            f"name, or a number)")


def linktype_name(num):
    """The DLT name of a number ("EN10MB"), or the number as text when unknown."""
    num = LINKTYPE_TO_DLT.get(num, num)
    return _NAME_OF.get(num, str(num))


#: how tcpdump describes a link type ("reading from file ..., link-type EN10MB (Ethernet)"):
#: libpcap's name and description; types libpcap has no name for (USER0..15) show as a number
DESCRIPTIONS = {
    0: ("NULL", "BSD loopback"), 1: ("EN10MB", "Ethernet"), 6: ("IEEE802", "Token ring"),
    8: ("SLIP", "SLIP"), 9: ("PPP", "PPP"), 10: ("FDDI", "FDDI"),
    11: ("ATM_RFC1483", "RFC 1483 LLC-encapsulated ATM"), 12: ("RAW", "Raw IP"),
    50: ("PPP_SERIAL", "PPP over serial"), 51: ("PPP_ETHER", "PPPoE"), 104: ("C_HDLC", "Cisco HDLC"),
    105: ("IEEE802_11", "802.11"), 107: ("FRELAY", "Frame Relay"), 108: ("LOOP", "OpenBSD loopback"),
    109: ("ENC", "OpenBSD encapsulated IP"), 113: ("LINUX_SLL", "Linux cooked v1"),
    117: ("PFLOG", "OpenBSD pflog file"), 123: ("SUNATM", "Sun raw ATM"),
    127: ("IEEE802_11_RADIO", "802.11 plus radiotap header"), 129: ("ARCNET_LINUX", "Linux ARCNET"),
    140: ("MTP2", "SS7 MTP2"), 165: ("BACNET_MS_TP", "BACnet MS/TP"),
    178: ("JUNIPER_ETHER", "Juniper Ethernet"), 195: ("IEEE802_15_4", "IEEE 802.15.4 with FCS"),
    226: ("IPNET", "Solaris ipnet"), 228: ("IPV4", "Raw IPv4"), 229: ("IPV6", "Raw IPv6"),
    231: ("DBUS", "D-Bus"), 239: ("NFLOG", "Linux netfilter log messages"),
    242: ("IPOIB", "RFC 4391 IP-over-Infiniband"), 253: ("NETLINK", "Linux netlink"),
    258: ("PKTAP", "Apple DLT_PKTAP"), 271: ("VSOCK", "Linux vsock"), 276: ("LINUX_SLL2", "Linux cooked v2"),
    281: ("DSA_TAG_BRCM", "Broadcom tag"), 282: ("DSA_TAG_BRCM_PREPEND", "Broadcom tag (prepended)"),
    284: ("DSA_TAG_DSA", "Marvell DSA"), 285: ("DSA_TAG_EDSA", "Marvell EDSA"),
}


def linktype_label(num):
    """A link type as tcpdump names it when reading a file: "EN10MB (Ethernet)"; a USERn type
    as its number; one missing from DESCRIPTIONS by its DLT name alone."""
    num = LINKTYPE_TO_DLT.get(num, num)
    if num in DESCRIPTIONS:
        return "%s (%s)" % DESCRIPTIONS[num]
    if 147 <= num <= 162:
        return str(num)
    return linktype_name(num)


def file_warnings(linktype):
    """What tcpdump writes to stderr after its "reading from file" line for a capture of this
    (first) link type: for Linux cooked v2, that the interface names (looked up by index on the
    machine reading the file) might be wrong."""
    return "Warning: interface names might be incorrect\n" if int(linktype) == 276 else ""


def linktype_for_file(dlt):
    """The LINKTYPE_ value to store in a capture file header for a DLT number."""
    return DLT_TO_LINKTYPE.get(dlt, dlt)
