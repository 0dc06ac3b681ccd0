"""The SS7 (MTP2/MTP3) and SunATM keywords against libpcap 1.10.3.

Bytecode: every keyword, alone, with each comparison and value list, and combined with other
primitives (`lane` re-targets the rest of the expression at LANE Ethernet), compiles to
libpcap's unoptimized program on each link type that has it (DLT_SUNATM; DLT_MTP2,
DLT_MTP2_WITH_PHDR and DLT_ERF), and is refused with libpcap's message where libpcap refuses
it (other link types, values out of range).

Verdicts: captures of those link types are generated here (SunATM cells with varied protocol
types, VPI/VCI and Q.2931 message types, LANE Ethernet and LLC/SNAP payloads; MTP2 and MTP2-HSL
signal units with varied length indicators, SIO and routing labels), written as pcap files, and
filtered by libpcap (its program for the capture's own savefile handle, run by its bpf_filter)
and by pfilter (compile + run_batch on the file pfilter reads): the verdicts must be equal.
"""
import random
import struct

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter.compiler.driver import compile_to_tuples
from pfilter.errors import FilterError

SUNATM, MTP2, MTP2_WITH_PHDR, ERF, EN10MB = 123, 140, 139, 197, 1
SS7_DLTS = (MTP2, MTP2_WITH_PHDR, ERF)

ATM_EXPRESSIONS = [
    "lane", "metac", "bcc", "oamf4ec", "oamf4sc", "sc", "ilmic", "oam", "oamf4", "connectmsg",
    "metaconnect", "vpi 0", "vpi 5", "vci 5", "vci 16", "vpi > 3", "vpi >= 1", "vci < 5",
    "vci <= 16", "vpi != 5", "vci = 2", "vpi (1 or 5)", "vci (1 or 2 or 16)", "vpi 300",
    "vci 70000", "lane and ip", "lane and tcp port 80", "lane and ether host 0:1:2:3:4:5",
    "lane and ether broadcast", "lane and arp", "lane and vpi 1", "ip and lane and ip",
    "llc and ip", "llc", "ip", "ip6", "arp", "not oam and metac", "sc or ilmic or bcc",
    "vpi 1 and vci 5 or lane and udp", "connectmsg and not metaconnect", "oamf4 or oam",
    "lane and vlan and ip", "lane and (ip or arp)", "(vpi 0) and (vci 5)",
]

SS7_EXPRESSIONS = [
    "fisu", "lssu", "lsu", "msu", "hfisu", "hlssu", "hmsu", "sio 5", "sio 131", "opc 100",
    "opc 12345", "dpc 7", "dpc 16383", "sls 15", "sls 3", "hsio 3", "hopc 12345", "hdpc 7",
    "hsls 2", "sio > 4", "sio >= 5", "opc < 1000", "opc <= 100", "dpc != 7", "sls > 2",
    "sio (1 or 5)", "dpc (1 or 300 or 16000)", "hopc (100 or 5)", "sio 256", "opc 16384",
    "dpc 20000", "sls 16", "hsls 16", "hsio 300", "msu and sio 5 and dpc 7",
    "fisu or lssu", "msu and not opc 100", "hmsu and hdpc 7 and hsls 2", "lssu and sls 15",
    "not fisu", "msu and (opc 12345 or dpc 300)", "len > 20 and msu",
]

REFUSED_ELSEWHERE = ["lane", "vpi 1", "vci (1 or 2)", "oamf4sc", "connectmsg", "fisu", "hmsu",
                     "sio 1", "hopc 5", "dpc > 3", "sls (1 or 2)"]


def _libpcap_or_error(expr, dlt):
    try:
        return list(ref.compile(expr, dlt))
    except ref.RefError as err:
        return f"error: {err}"


def _ours_or_error(expr, dlt):
    try:
        return compile_to_tuples(expr, dlt, savefile=False)
    except FilterError as err:
        return f"error: {err.message}"


@pytest.mark.parametrize("dlt,expressions", [(SUNATM, ATM_EXPRESSIONS + SS7_EXPRESSIONS[:8])]
                         + [(d, SS7_EXPRESSIONS + ATM_EXPRESSIONS[:12]) for d in SS7_DLTS])
def test_bytecode_is_libpcaps(dlt, expressions):
    mismatches, compiled = [], 0
    for expr in expressions:
        theirs = _libpcap_or_error(expr, dlt)
        ours = _ours_or_error(expr, dlt)
        compiled += not isinstance(theirs, str)
        if ours != theirs:
            mismatches.append((expr, theirs, ours))
    assert not mismatches, mismatches[:5]
    assert compiled >= len(expressions) // 2     # the keywords of this link type do compile


@pytest.mark.parametrize("dlt", [EN10MB, 0, 113, 9])
def test_refused_on_other_link_types_as_libpcap_does(dlt):
    for expr in REFUSED_ELSEWHERE:
        theirs = _libpcap_or_error(expr, dlt)
        assert isinstance(theirs, str), expr
        assert _ours_or_error(expr, dlt) == theirs


# ----------------------------------------------------------------------------- captures

def _ipv4(rng, proto=6):
    payload = struct.pack(">HHIIBBHHH", rng.choice([80, 53, 1234]), rng.choice([80, 53, 443]),
                          rng.getrandbits(32), 0, 0x50, 2, 8192, 0, 0)
    total = 20 + len(payload)
    hdr = struct.pack(">BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, proto, 0,
                      bytes([10, 0, 0, rng.randrange(1, 5)]), bytes([10, 0, 0, rng.randrange(1, 5)]))
    return hdr + payload


def _sunatm_cell(rng):
    ptype = rng.choice([0x01, 0x02, 0x05, 0x06, 0x00])
    vpi = rng.choice([0, 0, 1, 5, 200])
    vci = rng.choice([1, 2, 3, 4, 5, 16, 7, 0x1234])
    head = bytes([rng.choice([0x00, 0x80]) | ptype, vpi]) + struct.pack(">H", vci)
    kind = rng.randrange(4)
    if kind == 0:      # LANE: LEC id, then an Ethernet frame
        et = rng.choice([0x0800, 0x0806, 0x8100])
        dst = b"\xff" * 6 if rng.random() < 0.3 else bytes([0, 1, 2, 3, 4, 5])
        body = b"\x00\x01" + dst + bytes([0, 1, 2, 3, 4, rng.randrange(6)]) + struct.pack(">H", et)
        if et == 0x8100:
            body += struct.pack(">HH", 5, 0x0800)
        body += _ipv4(rng, rng.choice([6, 17]))
    elif kind == 1:    # LLC/SNAP-encapsulated IP or ARP
        body = b"\xaa\xaa\x03\x00\x00\x00" + struct.pack(">H", rng.choice([0x0800, 0x0806, 0x86DD]))
        body += _ipv4(rng, rng.choice([6, 17]))
    else:              # signalling: a Q.2931 message type at payload offset 5
        msg = rng.choice([0x05, 0x02, 0x07, 0x0F, 0x4D, 0x5A, 0x33])
        body = bytes([0x09, 0x03, 0x00, 0x00, 0x01, msg]) + bytes(rng.getrandbits(8) for _ in range(10))
    return head + body


_SS7_PREFIX = {MTP2: 0, MTP2_WITH_PHDR: 4, ERF: 20}


def _mtp2_unit(rng, dlt):
    prefix = bytes(rng.getrandbits(8) for _ in range(_SS7_PREFIX[dlt]))
    hsl = rng.random() < 0.4
    sio = rng.choice([1, 3, 5, 131, rng.getrandbits(8)])
    dpc = rng.choice([1, 7, 300, 16000, 16383, rng.getrandbits(14)])
    opc = rng.choice([5, 100, 12345, rng.getrandbits(14)])
    sls = rng.choice([2, 3, 15, rng.getrandbits(4)])
    label = struct.pack("<I", dpc | (opc << 14) | (sls << 28))     # ITU routing label
    if hsl:            # MTP2-HSL: 16-bit sequence numbers, a 9-bit length indicator
        li = rng.choice([0, 1, 2, 3, 300])
        head = struct.pack(">HHH", rng.getrandbits(16), rng.getrandbits(16), (li << 7) | rng.getrandbits(7))
    else:
        li = rng.choice([0, 1, 2, 3, 20, 63])
        head = bytes([rng.getrandbits(8), rng.getrandbits(8), li | (rng.getrandbits(2) << 6)])
    return prefix + head + bytes([sio]) + label + bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 12)))


def _write_pcap(path, dlt, packets):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, dlt))
        for i, p in enumerate(packets):
            f.write(struct.pack("<IIII", 1000 + i, 0, len(p), len(p)) + p)


def _agree(path, dlt, expressions):
    _, _, pkts, _ = ref.read_capture(str(path))
    with pfilter.open(str(path)) as cap:
        batches = list(cap)
    assert sum(len(b) for b in batches) == len(pkts)
    checked = both_ways = 0
    for expr in expressions:
        try:
            theirs_prog = ref.compile_for_capture(str(path), expr, optimize=True)
        except ref.RefError as err:
            if "rejects all packets" not in str(err):    # libpcap's optimizer proved it false
                with pytest.raises(FilterError):
                    pfilter.compile(expr, linktype=dlt)
                continue
            theirs_prog = [(6, 0, 0, 0)]
        theirs = np.array([ref.bpf_filter(theirs_prog, p, w) != 0 for p, w, _ in pkts])
        prog = pfilter.compile(expr, linktype=dlt)
        ours = np.concatenate([prog.run_batch(b) != 0 for b in batches])
        assert (ours == theirs).all(), (expr, np.flatnonzero(ours != theirs)[:5])
        checked += 1
        both_ways += 0 < theirs.sum() < len(theirs)
    return checked, both_ways


def test_verdicts_on_sunatm_captures_are_libpcaps(tmp_path):
    rng = random.Random(123)
    path = tmp_path / "sunatm.pcap"
    _write_pcap(path, SUNATM, [_sunatm_cell(rng) for _ in range(600)])
    checked, both_ways = _agree(path, SUNATM, ATM_EXPRESSIONS)
    assert checked >= 35 and both_ways >= 30, (checked, both_ways)


@pytest.mark.parametrize("dlt", SS7_DLTS)
def test_verdicts_on_mtp2_captures_are_libpcaps(tmp_path, dlt):
    rng = random.Random(dlt)
    path = tmp_path / f"mtp2-{dlt}.pcap"
    _write_pcap(path, dlt, [_mtp2_unit(rng, dlt) for _ in range(600)])
    checked, both_ways = _agree(path, dlt, SS7_EXPRESSIONS)
    assert checked >= 30 and both_ways >= 28, (checked, both_ways)
