"""The record scanners' status codes and timestamp modes, written once: the Cython scanners
(pfilter.capture._reader reads them into C constants at import), their pure-Python twin
pfilter.capture._pyscan and the reader (pfilter.capture.pcap, .pcapng) use these names.

Imports nothing from pfilter.
"""

# What stopped a scan (the third value a scanner returns; `info` is the fourth).
ST_LIMIT = 0      # batch full (packet or byte bound); more records may follow
ST_MORE = 1       # the record at pos is not entirely in the window; `info` = bytes it needs
ST_BADCAPLEN = 2  # pcap: caplen above the link type's maximum; `info` = caplen
ST_BLOCK = 3      # pcapng: SHB or IDB at pos, for Python
ST_BADLEN = 4     # pcapng: block total length < 12; `info` = length
ST_UNALIGNED = 5  # pcapng: block total length not a multiple of 4
ST_TOOBIG = 6     # pcapng: block total length above the maximum
ST_TRAILER = 7    # pcapng: trailer length differs from header length
ST_SHORT = 8      # pcapng: block body too short for its fixed part or its packet; `info` = type
ST_NOIFACE = 9    # pcapng: packet on an interface without IDB; `info` = interface id
ST_CAPLEN = 10    # pcapng: caplen above the interface's snapshot length; `info` = caplen
ST_END = 11       # the window ends exactly at pos (no partial record)
ST_FULL = 12      # pcapng: an IDB at pos, but the interface table is full (grow it, call again)

ST_NAMES = {v: k[3:].lower() for k, v in globals().items() if k.startswith("ST_")}

# Per-interface timestamp modes (pcapng).
TS_MICRO = 0      # units 10^6
TS_NANO = 1       # units 10^9
TS_DECUP = 2      # units 10^k, k < 9: multiply the fraction
TS_GENERAL = 3    # anything else: 128-bit scale


def ts_mode(units, binary):
    """The timestamp mode of an interface whose if_tsresol gives `units` per second (a power
    of 2 when `binary`); _reader.pyx decides the same in C."""
    if units == 1000000:
        return TS_MICRO
    if units == 1000000000:
        return TS_NANO
    return TS_DECUP if not binary and units < 1000000000 else TS_GENERAL

# Seconds a timestamp may have and still fit int64 nanoseconds (year 2262).
MAX_SECONDS = 9223372035
