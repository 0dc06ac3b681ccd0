"""802.11 frames, bare (link type 105) or after a radiotap header (127), in tcpdump 4.99's words:
the radiotap fields tcpdump prints (TSFT, flags, rate, channel, FHSS, signal/noise, lock quality,
attenuation, TX power, antenna; "[bit N]" and the rest skipped at a field it does not know), the
management frames (beacon, probe, (re)association, authentication, deauthentication,
disassociation), the control frames and data frames (LLC/SNAP to the network printers, "Data IV:"
for protected ones). With -e the addresses tcpdump prints before the frame; -v's frame-control
words with -e. Anything else: the frame's name only.
"""
import struct

from ._util import mac, safe_char

MGMT_NAMES = {0: "Assoc Request", 1: "Assoc Response", 2: "ReAssoc Request", 3: "ReAssoc Response",
              4: "Probe Request", 5: "Probe Response", 8: "Beacon", 9: "ATIM", 10: "Disassociation",
              11: "Authentication", 12: "DeAuthentication", 13: "Action"}
CTRL_NAMES = {7: "Control Wrapper", 8: "BAR", 9: "BA", 10: "Power Save-Poll", 11: "Request-To-Send",
              12: "Clear-To-Send", 13: "Acknowledgment", 14: "CF-End", 15: "CF-End+CF-Ack"}
#: control frame subtype -> header length
CTRL_HDRLEN = {7: 6, 8: 24, 9: 16, 10: 16, 11: 16, 12: 10, 13: 10, 14: 16, 15: 16}
AUTH_ALGS = ["Open System", "Shared Key", "EAP"]
#: tcpdump's texts of the status codes (index: the code)
STATUS = [   'Successful',
    'Unspecified failure',
    'TDLS wakeup schedule rejected but alternative schedule provided',
    'TDLS wakeup schedule rejected',
    'Reserved',
    'Security disabled',
    'Unacceptable lifetime',
    'Not in same BSS',
    'Reserved',
    'Reserved',
    'Cannot Support all requested capabilities in the Capability Information field',
    'Reassociation denied due to inability to confirm that association exists',
    'Association denied due to reason outside the scope of this standard',
    'Responding STA does not support the specified authentication algorithm',
    'Received an Authentication frame with authentication transaction sequence number out of expected '
    'sequence',
    'Authentication rejected because of challenge failure',
    'Authentication rejected due to timeout waiting for next frame in sequence',
    'Association denied because AP is unable to handle additional associated STAs',
    'Association denied due to requesting STA not supporting all of the data rates in the BSSBasicRateSet '
    'parameter, the Basic HT-MCS Set field of the HT Operation parameter, or the Basic VHT-MCS and NSS Set '
    'field in the VHT Operation parameter',
    'Association denied due to requesting STA not supporting the short preamble option',
    'Reserved',
    'Reserved',
    'Association request rejected because Spectrum Management capability is required',
    'Association request rejected because the information in the Power Capability element is unacceptable',
    'Association request rejected because the information in the Supported Channels element is '
    'unacceptable',
    'Association denied due to requesting STA not supporting the Short Slot Time option',
    'Reserved',
    'Association denied because the requested STA does not support HT features',
    'R0KH unreachable',
    'Association denied because the requesting STA does not support the phased coexistence operation (PCO) '
    'transition time required by the AP',
    'Association request rejected temporarily; try again later',
    'Robust management frame policy violation',
    'Unspecified, QoS-related failure',
    'Association denied because QoS AP or PCP has insufficient bandwidth to handle another QoS STA',
    'Association denied due to excessive frame loss rates and/or poor conditions on current operating '
    'channel',
    'Association (with QoS BSS) denied because the requesting STA does not support the QoS facility',
    'Reserved',
    'The request has been declined',
    'The request has not been successful as one or more parameters have invalid values',
    'The allocation or TS has not been created because the request cannot be honored; however, a suggested '
    'TSPEC/DMG TSPEC is provided so that the initiating STA can attempt to set another allocation or TS '
    'with the suggested changes to the TSPEC/DMG TSPEC',
    'Invalid element, i.e., an element defined in this standard for which the content does not meet the '
    'specifications in Clause 9',
    'Invalid group cipher',
    'Invalid pairwise cipher',
    'Invalid AKMP',
    'Unsupported RSNE version',
    'Invalid RSNE capabilities',
    'Cipher suite rejected because of security policy',
    'The TS or allocation has not been created; however, the HC or PCP might be capable of creating a TS '
    'or allocation, in response to a request, after the time indicated in the TS Delay element',
    'Direct Link is not allowed in the BSS by policy',
    'The Destination STA is not present within this BSS',
    'The Destination STA is not a QoS STA',
    'Association denied because the listen interval is too large',
    'Invalid FT Action frame count',
    'Invalid pairwise master key identifier (PMKID)',
    'Invalid MDE',
    'Invalid FTE',
    'Requested TCLAS processing is not supported by the AP or PCP',
    'The AP or PCP has insufficient TCLAS processing resources to satisfy the request',
    'The TS has not been created because the request cannot be honored; however, the HC or PCP suggests '
    'that the STA transition to a different BSS to set up the TS',
    'GAS Advertisement Protocol not supported',
    'No outstanding GAS request',
    'GAS Response not received from the Advertisement Server',
    'STA timed out waiting for GAS Query Response',
    'LARGE GAS Response is larger than query response length limit',
    'Request refused because home network does not support request',
    'Advertisement Server in the network is not currently reachable',
    'Reserved',
    'Request refused due to permissions received via SSPN interface',
    'Request refused because the AP or PCP does not support unauthenticated access',
    'Reserved',
    'Reserved',
    'Reserved',
    'Invalid contents of RSNE',
    'U-APSD coexistence is not supported',
    'Requested U-APSD coexistence mode is not supported',
    'Requested Interval/Duration value cannot be supported with U-APSD coexistence',
    'Authentication is rejected because an Anti-Clogging Token is required',
    'Authentication is rejected because the offered finite cyclic group is not supported',
    'The TBTT adjustment request has not been successful because the STA could not find an alternative '
    'TBTT',
    'Transmission failure',
    'Requested TCLAS Not Supported',
    'TCLAS Resources Exhausted',
    'Rejected with Suggested BSS transition',
    'Reject with recommended schedule',
    'Reject because no wakeup schedule specified',
    'Success, the destination STA is in power save mode',
    'FST pending, in process of admitting FST session',
    'Performing FST now',
    'FST pending, gap(s) in block ack window',
    'Reject because of U-PID setting',
    'Reserved',
    'Reserved',
    '(Re)Association refused for some external reason',
    '(Re)Association refused because of memory limits at the AP',
    '(Re)Association refused because emergency services are not supported at the AP',
    'GAS query response not yet received',
    'Reject since the request is for transition to a frequency band subject to DSE procedures and FST '
    'Initiator is a dependent STA',
    'Requested TCLAS processing has been terminated by the AP',
    'The TS schedule conflicts with an existing schedule; an alternative schedule is provided',
    'The association has been denied; however, one or more Multi-band elements are included that can be '
    'used by the receiving STA to join the BSS',
    'The request failed due to a reservation conflict',
    'The request failed due to exceeded MAF limit',
    'The request failed due to exceeded MCCA track limit',
    'Association denied because the information in theSpectrum Management field is unacceptable',
    'Association denied because the requesting STA does not support VHT features',
    'Enablement denied',
    'Enablement denied due to restriction from an authorized GDB',
    'Authorization deenabled']
#: tcpdump's texts of the reason codes (index: the code)
REASONS = [   'Reserved',
    'Unspecified reason',
    'Previous authentication no longer valid',
    'Deauthenticated because sending STA is leaving (or has left) IBSS or ESS',
    'Disassociated due to inactivity',
    'Disassociated because AP is unable to handle all currently  associated STAs',
    'Class 2 frame received from nonauthenticated STA',
    'Class 3 frame received from nonassociated STA',
    'Disassociated because sending STA is leaving (or has left) BSS',
    'STA requesting (re)association is not authenticated with responding STA',
    'Disassociated because the information in the Power Capability element is unacceptable',
    'Disassociated because the information in the Supported Channels element is unacceptable',
    'Disassociated due to BSS transition management',
    'Invalid element, i.e., an element defined in this standard for which the content does not meet the '
    'specifications in Clause 9',
    'Message integrity code (MIC) failure',
    '4-Way Handshake timeout',
    'Group key handshake timeout',
    'Information element in 4-Way Handshake different from (Re)AssociationRequest/Probe Response/Beacon '
    'frame',
    'Invalid group cipher',
    'Invalid pairwise cipher',
    'Invalid AKMP',
    'Unsupported RSNE version',
    'Invalid RSNE capabilities',
    'IEEE 802.1X authentication failed',
    'Cipher suite rejected because of the security policy',
    'TDLS direct-link teardown due to TDLS peer STA unreachable via the TDLS direct link',
    'TDLS direct-link teardown for unspecified reason',
    'Disassociated because session terminated by SSP request',
    'Disassociated because of lack of SSP roaming agreement',
    'Requested service rejected because of SSP cipher suite or AKM requirement',
    'Requested service not authorized in this location',
    'TS deleted because QoS AP lacks sufficient bandwidth for this QoS STA due to a change in BSS service '
    'characteristics or operational mode (e.g. an HT BSS change from 40 MHz channel to 20 MHz channel)',
    'Disassociated for unspecified, QoS-related reason',
    'Disassociated because QoS AP lacks sufficient bandwidth for this QoS STA',
    'Disassociated because of excessive number of frames that need to be acknowledged, but are not '
    'acknowledged due to AP transmissions and/or poor channel conditions',
    'Disassociated because STA is transmitting outside the limits of its TXOPs',
    'Requested from peer STA as the STA is leaving the BSS (or resetting)',
    'Requested from peer STA as it does not want to use the mechanism',
    'Requested from peer STA as the STA received frames using the mechanism for which a set up is required',
    'Requested from peer STA due to time out',
    'Reserved',
    'Reserved',
    'Reserved',
    'Reserved',
    'Reserved',
    'Peer STA does not support the requested cipher suite',
    'In a DLS Teardown frame: The teardown was initiated by the DLS peer. In a Disassociation frame: '
    'Disassociated because authorized access limit reached',
    'In a DLS Teardown frame: The teardown was initiated by the AP. In a Disassociation frame: '
    'Disassociated due to external service requirements',
    'Invalid FT Action frame count',
    'Invalid pairwise master key identifier (PMKID)',
    'Invalid MDE',
    'Invalid FTE',
    'Mesh peering canceled for unknown reasons',
    'The mesh STA has reached the supported maximum number of peer mesh STAs',
    'The received information violates the Mesh Configuration policy configured in the mesh STA profile',
    'The mesh STA has received a Mesh Peering Close frame requesting to close the mesh peering',
    'The mesh STA has resent dot11MeshMaxRetries Mesh Peering Open frames, without receiving a Mesh '
    'Peering Confirm frame',
    'The confirmTimer for the mesh peering instance times out',
    'The mesh STA fails to unwrap the GTK or the values in the wrapped contents do not match',
    'The mesh STA receives inconsistent information about the mesh parameters between mesh peering '
    'Management frames',
    'The mesh STA fails the authenticated mesh peering exchange because due to failure in selecting either '
    'the pairwise ciphersuite or group ciphersuite',
    'The mesh STA does not have proxy information for this external destination',
    'The mesh STA does not have forwarding information for this destination',
    'The mesh STA determines that the link to the next hop of an active path in its forwarding information '
    'is no longer usable',
    'The Deauthentication frame was sent because the MAC address of the STA already exists in the mesh BSS',
    'The mesh STA performs channel switch to meet regulatory requirements',
    'The mesh STA performs channel switching with unspecified reason']


def le16(b, i):
    return b[i] | b[i + 1] << 8


# ----------------------------------------------------------------------------- radiotap

#: radiotap field -> (alignment, size) for the fields tcpdump knows
_FIELDS = {0: (8, 8), 1: (1, 1), 2: (1, 1), 3: (2, 4), 4: (1, 2), 5: (1, 1), 6: (1, 1), 7: (2, 2), 8: (2, 2),
           9: (2, 2), 10: (1, 1), 11: (1, 1), 12: (1, 1), 13: (1, 1), 14: (2, 2), 18: (4, 8), 19: (1, 3),
           20: (4, 8), 21: (2, 12)}

#: 802.11n data rates in Mb/s by MCS index 0..76: 20 MHz long GI, 20 MHz short GI, 40 MHz long GI,
#: 40 MHz short GI (0.0: no such rate)
_HT_RATES = (
    6.5,7.2,13.5,15.0, 13.0,14.4,27.0,30.0, 19.5,21.7,40.5,45.0, 26.0,28.9,54.0,60.0,
    39.0,43.3,81.0,90.0, 52.0,57.8,108.0,120.0, 58.5,65.0,121.5,135.0, 65.0,72.2,135.0,150.0,
    13.0,14.4,27.0,30.0, 26.0,28.9,54.0,60.0, 39.0,43.3,81.0,90.0, 52.0,57.8,108.0,120.0,
    78.0,86.7,162.0,180.0, 104.0,115.6,216.0,240.0, 117.0,130.0,243.0,270.0, 130.0,144.4,270.0,300.0,
    19.5,21.7,40.5,45.0, 39.0,43.3,81.0,90.0, 58.5,65.0,121.5,135.0, 78.0,86.7,162.0,180.0,
    117.0,130.0,243.0,270.0, 156.0,173.3,324.0,360.0, 175.5,195.0,364.5,405.0, 195.0,216.7,405.0,450.0,
    26.0,28.9,54.0,60.0, 52.0,57.8,108.0,120.0, 78.0,86.7,162.0,180.0, 104.0,115.6,216.0,240.0,
    156.0,173.3,324.0,360.0, 208.0,231.1,432.0,480.0, 234.0,260.0,486.0,540.0, 260.0,288.9,540.0,600.0,
    0.0,0.0,6.0,6.7, 39.0,43.3,81.0,90.0, 52.0,57.8,108.0,120.0, 65.0,72.2,135.0,150.0,
    58.5,65.0,121.5,135.0, 78.0,86.7,162.0,180.0, 97.5,108.3,202.5,225.0, 52.0,57.8,108.0,120.0,
    65.0,72.2,135.0,150.0, 65.0,72.2,135.0,150.0, 78.0,86.7,162.0,180.0, 91.0,101.1,189.0,210.0,
    91.0,101.1,189.0,210.0, 104.0,115.6,216.0,240.0, 78.0,86.7,162.0,180.0, 97.5,108.3,202.5,225.0,
    97.5,108.3,202.5,225.0, 117.0,130.0,243.0,270.0, 136.5,151.7,283.5,315.0, 136.5,151.7,283.5,315.0,
    156.0,173.3,324.0,360.0, 65.0,72.2,135.0,150.0, 78.0,86.7,162.0,180.0, 91.0,101.1,189.0,210.0,
    78.0,86.7,162.0,180.0, 91.0,101.1,189.0,210.0, 104.0,115.6,216.0,240.0, 117.0,130.0,243.0,270.0,
    104.0,115.6,216.0,240.0, 117.0,130.0,243.0,270.0, 130.0,144.4,270.0,300.0, 130.0,144.4,270.0,300.0,
    143.0,158.9,297.0,330.0, 97.5,108.3,202.5,225.0, 117.0,130.0,243.0,270.0, 136.5,151.7,283.5,315.0,
    117.0,130.0,243.0,270.0, 136.5,151.7,283.5,315.0, 156.0,173.3,324.0,360.0, 175.5,195.0,364.5,405.0,
    156.0,173.3,324.0,360.0, 175.5,195.0,364.5,405.0, 195.0,216.7,405.0,450.0, 195.0,216.7,405.0,450.0,
    214.5,238.3,445.5,495.0,
)
_HT_BANDWIDTH = ("20 MHz", "40 MHz", "20 MHz (L)", "20 MHz (U)")
_VHT_BANDWIDTH = ("20 MHz", "40 MHz", "20 MHz (L)", "20 MHz (U)", "80 MHz", "80 MHz (L)", "80 MHz (U)",
                  "80 MHz (LL)", "80 MHz (LU)", "80 MHz (UL)", "80 MHz (UU)", "160 MHz", "160 MHz (L)",
                  "160 MHz (U)", "160 MHz (LL)", "160 MHz (LU)", "160 MHz (UL)", "160 MHz (UU)",
                  "160 MHz (LLL)", "160 MHz (LLU)", "160 MHz (LUL)", "160 MHz (UUU)", "160 MHz (ULL)",
                  "160 MHz (ULU)", "160 MHz (UUL)", "160 MHz (UUU)") + tuple(f"unknown ({i})" for i in range(26, 32))


def _mcs(b, o):
    """tcpdump's text of the radiotap MCS field (known, flags, index)."""
    known, flags, index = b[o], b[o + 1], b[o + 2]
    text = ""
    if known & 0x02:
        rate = 0.0
        if index <= 76 and known & 0x05:
            rate = _HT_RATES[4 * index + (2 if flags & 3 == 1 else 0) + (1 if flags & 4 else 0)]
        text += f"{rate:.1f} Mb/s MCS {index} " if rate else f"MCS {index} "
    if known & 0x01:
        text += _HT_BANDWIDTH[flags & 3] + " "
    if known & 0x04:
        text += ("short" if flags & 4 else "long") + " GI "
    if known & 0x08:
        text += ("greenfield" if flags & 8 else "mixed") + " "
    if known & 0x10:
        text += ("LDPC" if flags & 0x10 else "BCC") + " FEC "
    if known & 0x20:
        text += f"RX-STBC{(flags & 0x60) >> 5} "
    return text


def _vht(b, o):
    """tcpdump's text of the radiotap VHT field: each user's MCS and coding, bandwidth, GI."""
    known, flags, bw, coding = le16(b, o), b[o + 2], b[o + 3], b[o + 8]
    text = ""
    for user in range(4):
        mcs_nss = b[o + 4 + user]
        if mcs_nss & 0x0F:
            text += f"User {user} MCS {mcs_nss >> 4} {'LDPC' if coding & (1 << user) else 'BCC'} FEC "
    if known & 0x40:
        text += _VHT_BANDWIDTH[bw & 0x1F] + " "
    if known & 0x04:
        text += ("short" if flags & 4 else "long") + " GI "
    return text


def _chaninfo(freq, flags, present):
    text = f"{freq} MHz"
    if present & (1 << 19):
        text += " 11n"
    else:
        if flags & 0x880 == 0x880:
            text += " FHSS"
        half = "/10Mhz" if flags & 0x4000 else "/5Mhz" if flags & 0x8000 else ""
        if flags & 0x140 == 0x140:
            text += " 11a" + half
        if flags & 0x480 == 0x480 or flags & 0xC0 == 0xC0:
            text += " 11g" + half
        elif flags & 0xA0 == 0xA0:
            text += " 11b"
        if flags & 0x10:
            text += " Turbo"
    if flags & 0x10000:
        text += " ht/20"
    elif flags & 0x40000:
        text += " ht/40-"
    elif flags & 0x20000:
        text += " ht/40+"
    return text + " "


def _s8(b, off):
    return struct.unpack_from("b", b, off)[0]


#: radiotap field -> its text, for the fields printed from their own bytes alone
_FIELD_TEXT = {
    0: lambda b, o: f"{int.from_bytes(b[o:o + 8], 'little')}us tsft ",
    2: lambda b, o: f"MCS {b[o] & 0x7F} " if 0x80 <= b[o] <= 0x8F else f"{0.5 * b[o]:2.1f} Mb/s ",
    4: lambda b, o: f"fhset {b[o]} fhpat {b[o + 1]} ",
    5: lambda b, o: f"{_s8(b, o)}dBm signal ", 6: lambda b, o: f"{_s8(b, o)}dBm noise ",
    7: lambda b, o: f"{le16(b, o)} sq ", 8: lambda b, o: f"{-le16(b, o)} tx power ",
    9: lambda b, o: f"{-le16(b, o)}dB tx attenuation ", 10: lambda b, o: f"{_s8(b, o)}dBm tx power ",
    11: lambda b, o: f"antenna {b[o]} ", 12: lambda b, o: f"{b[o]}dB signal ", 13: lambda b, o: f"{b[o]}dB noise ",
    19: _mcs, 21: _vht,
}


def _field(bit, b, off, present):
    """tcpdump's text for one radiotap field at b[off:]."""
    if bit in _FIELD_TEXT:
        return _FIELD_TEXT[bit](b, off)
    if bit == 1:
        f = b[off]
        return "".join(w for m, w in ((1, "cfp "), (2, "short preamble "), (4, "wep "), (8, "fragmented "),
                                      (0x40, "bad-fcs ")) if f & m)
    if bit == 3:
        return "" if present & (1 << 18) else _chaninfo(le16(b, off), le16(b, off + 2), present)
    if bit == 18:
        return _chaninfo(le16(b, off + 4), int.from_bytes(b[off:off + 4], "little"), present)
    return ""


def radiotap(p, b, wirelen):
    """(text, header length) of a radiotap packet: the fields, then the 802.11 frame."""
    if len(b) < 8 or le16(b, 2) < 8 or len(b) < le16(b, 2):
        return "[|802.11_radio]", len(b)
    hlen = le16(b, 2)
    words = [int.from_bytes(b[4:8], "little")]
    while words[-1] & 0x80000000:
        if 8 + 4 * len(words) + 4 > hlen:
            return "[|802.11_radio]", len(b)
        words.append(int.from_bytes(b[8 + 4 * (len(words) - 1):12 + 4 * (len(words) - 1)], "little"))
    off, text, flags, bit0 = 4 + 4 * len(words), "", 0, 0
    for present in words:
        stop = False
        for bitno in range(29):
            if not present & (1 << bitno):
                continue
            bit = bit0 + bitno
            if bit not in _FIELDS:
                text += f"[bit {bit}] "
                stop = True
                break
            align, size = _FIELDS[bit]
            off = (off + align - 1) // align * align
            if off + size > hlen:
                return text + "[|802.11_radio]", len(b)
            if bit == 1:
                flags = b[off]
            text += _field(bit, b, off, words[0])
            off += size
        if stop or present & 0x40000000:    # an unknown field, or a vendor namespace: not followed
            break
        bit0 = 0 if present & 0x20000000 else bit0 + 32
    fcs = 4 if flags & 0x10 else 0
    body, hdr = frame(p, b[hlen:], wirelen - hlen, pad=bool(flags & 0x20), fcslen=fcs)
    return text + body, hlen + hdr


def bare(p, b, wirelen):
    """(text, header length) of a bare 802.11 frame (link type 105)."""
    return frame(p, b, wirelen)


# ----------------------------------------------------------------------------- 802.11 frames

def _elements(b):
    """{element id: bytes} of the first occurrence of each information element, or None when
    the elements run off the frame (tcpdump still prints what it read before)."""
    out, i = {}, 0
    while i < len(b):
        if i + 2 > len(b) or i + 2 + b[i + 1] > len(b):
            return out, False
        out.setdefault(b[i], b[i + 2:i + 2 + b[i + 1]])
        i += 2 + b[i + 1]
    return out, True


def _ssid_rates(el, rates=True):
    text = ""
    if 0 in el:
        ssid = el[0]
        text += " (" + "".join(map(safe_char, ssid)) + ")"
    if rates and el.get(1):
        text += " [" + " ".join(f"{0.5 * (r & 0x7F):2.1f}{'*' if r & 0x80 else ''}" for r in el[1]) + " Mbit]"
    return text


def _channel(el, cap):
    text = f" CH: {el[3][0]}" if len(el.get(3, b"")) == 1 else ""
    return text + (", PRIVACY" if cap & 0x10 else "")


def _mgmt(p, sub, fc, b, src):
    name = MGMT_NAMES.get(sub, f"Unhandled Management subtype({sub:x})")
    if fc & 0x4000:
        return name + _wep(b)
    n = len(b)
    if sub in (8, 5):
        if n < 12:
            return name + " [|802.11]"
        cap = le16(b, 10)
        el, ok = _elements(b[12:])
        text = name + _ssid_rates(el)
        if sub == 8:
            text += " ESS" if cap & 1 else " IBSS"
        return text + _channel(el, cap) + ("" if ok else " [|802.11]")
    if sub in (0, 4):
        skip = 4 if sub == 0 else 0
        if n < skip:
            return name + " [|802.11]"
        el, ok = _elements(b[skip:])
        return name + _ssid_rates(el) + ("" if ok else " [|802.11]")
    if sub in (1, 3):
        if n < 6:
            return name + " [|802.11]"
        cap, status, aid = le16(b, 0), le16(b, 2), le16(b, 4)
        return (name + f" AID({aid & 0x3FFF:x}) :{' PRIVACY ' if cap & 0x10 else ''}: "
                + (STATUS[status] if status < len(STATUS) else "n/a"))
    if sub == 2:
        if n < 10:
            return name + " [|802.11]"
        el, ok = _elements(b[10:])
        return name + _ssid_rates(el, rates=False) + f" AP : {mac(b[4:10])}"
    if sub in (10, 12):
        if n < 2:
            return name + " [|802.11]"
        code = le16(b, 0)
        reason = REASONS[code] if code < len(REASONS) else "Reserved"
        if sub == 12 and not p.e:
            return name + f" ({mac(src)}): {reason}"
        return name + f": {reason}"
    if sub == 11:
        if n < 6:
            return name + " [|802.11]"
        alg, seq, status = le16(b, 0), le16(b, 2), le16(b, 4)
        algname = AUTH_ALGS[alg] if alg < len(AUTH_ALGS) else "Reserved"
        st = (STATUS[status] if status < len(STATUS) else "n/a") if seq % 2 else ""
        if alg == 1 and seq in (2, 3):
            return name + f" ({algname})-{seq:x} [Challenge Text] {st}"
        return name + f" ({algname})-{seq:x}: {st}"
    return name


def _wep(b):
    if len(b) < 4:
        return " [|802.11]"
    iv = int.from_bytes(b[:4], "little")
    return f" IV:{iv & 0xFFFFFF:3x} Pad {(iv >> 24) & 0x3F:x} KeyID {(iv >> 30) & 3:x}"


def _ctrl(p, sub, h):
    name = CTRL_NAMES.get(sub, "Unknown Ctrl Subtype")
    if sub == 10:
        return name + f" AID({le16(h, 2):x})"
    if p.e:
        return name
    if sub == 8:
        return name + f" RA:{mac(h[4:10])} TA:{mac(h[10:16])} CTL({le16(h, 16):x}) SEQ({le16(h, 18)}) "
    if sub == 11:
        return name + f" TA:{mac(h[10:16])} "
    if sub in (9, 12, 13, 14, 15):
        return name + f" RA:{mac(h[4:10])} "
    return name


def _header_e(p, fc, h):
    """What tcpdump -e prints before the frame."""
    text = ""
    if p.v:
        text += "".join(w for m, w in ((0x2000, "More Data "), (0x400, "More Fragments "), (0x1000, "Pwr Mgmt "),
                                       (0x800, "Retry "), (0x8000, "Strictly Ordered "), (0x4000, "Protected "))
                        if fc & m)
        if (fc >> 2) & 3 != 1 or (fc >> 4) & 15 != 10:
            text += f"{le16(h, 2)}us "
    typ, sub = (fc >> 2) & 3, (fc >> 4) & 15
    if typ == 0:
        return text + f"BSSID:{mac(h[16:22])} DA:{mac(h[4:10])} SA:{mac(h[10:16])} "
    if typ == 1:
        a1 = mac(h[4:10])
        if sub == 8:
            return text + f" RA:{a1} TA:{mac(h[10:16])} CTL({le16(h, 16):x}) SEQ({le16(h, 18)}) "
        if sub in (10, 11, 14, 15):
            a2 = mac(h[10:16])
            return text + {10: f"BSSID:{a1} TA:{a2} ", 11: f"RA:{a1} TA:{a2} "}.get(sub, f"RA:{a1} BSSID:{a2} ")
        return text + (f"RA:{a1} " if sub in (9, 12, 13) else "")
    if sub & 0xB:
        text += "CF " + ("Ack/Poll" if sub & 3 == 3 else "Ack" if sub & 1 else "Poll" if sub & 2 else "")
        text += ("+QoS" if sub & 8 else "") + " "
    ds = (fc >> 8) & 3              # bit 0: to DS, bit 1: from DS
    names = _DATA_ADDRS[ds]
    return text + "".join(f"{name}:{mac(h[off:off + 6])} " for name, off in zip(names, (4, 10, 16, 24)))


#: the names of a data frame's addresses 1..4 by its to/from DS bits
_DATA_ADDRS = {0: ("DA", "SA", "BSSID"), 2: ("DA", "BSSID", "SA"), 1: ("BSSID", "SA", "DA"), 3: ("RA", "TA", "DA", "SA")}


def frame(p, b, wirelen, pad=False, fcslen=0):
    """(text, header length) of one 802.11 frame."""
    from . import link
    if wirelen < fcslen:
        return " [|802.11]", len(b)
    wirelen -= fcslen
    if len(b) > wirelen:
        b = b[:wirelen]
    if len(b) < 2:
        return " [|802.11]", len(b)
    fc = le16(b, 0)
    typ, sub = (fc >> 2) & 3, (fc >> 4) & 15
    if typ == 0:
        hdrlen = 24
    elif typ == 1:
        if sub not in CTRL_HDRLEN:
            return f"unknown 802.11 ctrl frame subtype ({sub})", 0
        hdrlen = CTRL_HDRLEN[sub]
    elif typ == 2:
        hdrlen = (30 if fc & 0x300 == 0x300 else 24) + (2 if sub & 8 else 0)
    else:
        return f"unknown 802.11 frame type ({typ})", 0
    if pad:
        hdrlen = (hdrlen + 3) & ~3
    if len(b) < hdrlen:
        return " [|802.11]", len(b)
    text = _header_e(p, fc, b) if p.e else ""
    body = b[hdrlen:]
    if typ == 0:
        return text + _mgmt(p, sub, fc, body, b[10:16]), hdrlen
    if typ == 1:
        return text + _ctrl(p, sub, b), hdrlen
    if sub & 4:                 # no data (null function frames)
        return text, hdrlen
    if fc & 0x4000:
        return text + "Data" + _wep(body), hdrlen
    # the source and destination by the to/from DS bits (tcpdump's get_data_src_dst_mac)
    src, dst = {0: (10, 4), 2: (16, 4), 1: (10, 16), 3: (24, 16)}[(fc >> 8) & 3]
    out, llc_hdr, unknown = link.llc(p, body, wirelen - hdrlen, mac(b[src:src + 6]), mac(b[dst:dst + 6]))
    if unknown:
        out += link.default_print(p, body)
    return text + out, hdrlen + llc_hdr


__all__ = ["radiotap", "bare", "frame"]
