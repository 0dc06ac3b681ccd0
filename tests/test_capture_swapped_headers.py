"""Pseudo-headers of a capture from a host of the other byte order (pfilter.capture.swap): libpcap
1.10.3 swaps the CAN ID of Linux cooked captures (LINUX_SLL, LINUX_SLL2), the USB_LINUX and
USB_LINUX_MMAPPED headers (and isochronous descriptors), the NFLOG TLV lengths and types and the
PFLOG uid/pid fields into the reading host's order before filtering and before tcpdump -w writes
them; pfilter must filter, deliver and write the same bytes.

Every capture here is generated in the byte order that is not this host's (pcap and pcapng), its
packets mostly random bytes so that a field swapped wrongly, or swapped where libpcap leaves it,
shows, and cut at every length around each field libpcap checks.
"""
import gzip
import random
import re
import struct
import subprocess
import sys

import pytest

import pfilter
import reference as ref
from pfilter import cli

OTHER = ">" if sys.byteorder == "little" else "<"       # the byte order of a "foreign" host
HOST = "<" if OTHER == ">" else ">"


@pytest.fixture(autouse=True)
def private_program_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


# -- packets of each link type (data as written by a host of byte order `o`, wire length) ----------

def _rand(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def _cuts(data, wire, lengths):
    """The packet cut to each captured length (and whole), wire length kept."""
    out = [(data[:n], wire) for n in lengths if n < len(data)]
    return out + [(data, wire)]


def sll_packets(o, rng, v2=False):
    hdr = 20 if v2 else 16
    pkts = []
    for proto in (0x000C, 0x000D, 0x0800, 0x000B, 0x0C00):
        for _ in range(2):
            can_id = rng.getrandbits(32)
            if v2:
                cooked = struct.pack(">HHIHBB8s", proto, 0, rng.getrandbits(16), 280, 0, 0, _rand(rng, 8))
            else:
                cooked = struct.pack(">HHH8sH", rng.getrandbits(2), 280, 0, _rand(rng, 8), proto)
            data = cooked + struct.pack(o + "I", can_id) + _rand(rng, 12 + rng.getrandbits(3))
            pkts += _cuts(data, len(data), (0, 3, hdr - 1, hdr, hdr + 2, hdr + 3, hdr + 4, hdr + 5))
            # the wire length checked too: captured bytes beyond a short wire length
            pkts += [(data[:hdr + 6], hdr + 3), (data[:hdr + 6], hdr - 1), (data[:hdr + 4], hdr + 4)]
    return pkts


def pflog_packets(o, rng):
    pkts = []
    for hlen in (0, 47, 48, 51, 52, 56, 59, 60, 61, 64, 255):
        body = bytes([hlen]) + _rand(rng, 43) + struct.pack(o + "IiIi", *(rng.getrandbits(31) for _ in range(4)))
        data = body + _rand(rng, 8 + rng.getrandbits(4))
        pkts += _cuts(data, len(data), (20, 47, 48, 50, 52, 55, 56, 59, 60))
        pkts += [(data[:62], 50), (data[:62], 57), (data[:58], 60)]
    return pkts


def usb_packets(o, rng, mmapped):
    pkts = []
    hlen = 64 if mmapped else 48
    for xfer in (0, 0, 0, 1, 2, 3):         # 0: isochronous
        for ndesc in ((0, 1, 3, 1000, 0xFFFFFFFF) if mmapped and xfer == 0 else (rng.getrandbits(32),)):
            h = struct.pack(o + "Q", rng.getrandbits(64)) + bytes([ord("SCE"[rng.getrandbits(1)]), xfer,
                                                                  0x80 | rng.getrandbits(4), rng.getrandbits(7)])
            h += struct.pack(o + "H", rng.getrandbits(16)) + bytes([rng.getrandbits(1), 1])   # data_flag set
            h += struct.pack(o + "qiiII", rng.getrandbits(40), rng.getrandbits(20), -rng.getrandbits(7),
                             rng.getrandbits(12), rng.getrandbits(12))
            h += _rand(rng, 8)              # setup, or iso error_count and numdesc
            if mmapped:
                h += struct.pack(o + "iiII", rng.getrandbits(8), rng.getrandbits(16), rng.getrandbits(9), ndesc)
            desc = b"".join(struct.pack(o + "iII", -rng.getrandbits(4), rng.getrandbits(16), rng.getrandbits(10))
                            + _rand(rng, 4) for _ in range(4))
            data = h + desc + _rand(rng, rng.getrandbits(4))
            assert len(h) == hlen
            pkts += _cuts(data, len(data) + 3, (0, 7, 8, 13, 14, 23, 24, 28, 35, 39, 40, 43, 44, 47, 48, 51,
                                                52, 60, 63, 64, 67, 68, 71, 72, 75, 76, 80, 84, 95, 100))
    return pkts


def nflog_packets(o, rng):
    def tlv(length, typ, value=None):
        value = _rand(rng, max(0, length - 4)) if value is None else value
        return struct.pack(o + "HH", length, typ) + value + b"\0" * (-len(value) % 4)
    pkts = []
    good = b"".join(tlv(n, rng.getrandbits(5)) for n in (8, 5, 4, 12, 7))
    for version in (0, 1):
        head = bytes([2, version]) + struct.pack(">H", rng.getrandbits(16))
        data = head + good
        pkts += _cuts(data, len(data), (0, 3, 4, 6, 7, 8, 11, 12, 13, 15, 16, 20, 24, 27, 28, 31))
        pkts += [(data, 20), (data, 18), (data, 3)]
    head = bytes([10, 0, 0, 1])
    for bad in (tlv(2, 9, b""), tlv(0, 9, b""), tlv(1, 3, b""), struct.pack(o + "HH", 0xFFFD, 4) + _rand(rng, 12),
                struct.pack(o + "HH", 0xFFFF, 4) + _rand(rng, 12), tlv(40, 1, _rand(rng, 8)), tlv(4, 1)):
        data = head + tlv(8, 1) + bad + tlv(6, 2) + tlv(8, 3)
        pkts.append((data, len(data)))
    return pkts


LINKTYPES = {   # name: (LINKTYPE, packets(o, rng), expressions' (offset, size) to compare with tcpdump)
    "LINUX_SLL": (113, sll_packets, [(16, 4), (16, 1), (17, 2), (19, 1), (14, 2)]),
    "LINUX_SLL2": (276, lambda o, rng: sll_packets(o, rng, v2=True), [(20, 4), (20, 2), (23, 1), (0, 2)]),
    "PFLOG": (117, pflog_packets, [(44, 4), (48, 4), (52, 4), (56, 4), (40, 4), (0, 1)]),
    "USB_LINUX": (189, lambda o, rng: usb_packets(o, rng, False),
                  [(0, 4), (12, 2), (16, 4), (24, 4), (28, 4), (32, 4), (36, 4), (40, 4), (44, 4)]),
    "USB_LINUX_MMAPPED": (220, lambda o, rng: usb_packets(o, rng, True),
                          [(12, 2), (36, 4), (44, 4), (48, 4), (56, 4), (60, 4), (64, 4), (72, 4), (84, 4),
                           (92, 2)]),
    "NFLOG": (239, nflog_packets, [(4, 2), (6, 2), (12, 2), (14, 1), (20, 2), (22, 2), (28, 2)]),
}


# -- files -------------------------------------------------------------------------------------------

def pcap_bytes(o, linktype, pkts):
    out = struct.pack(o + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for i, (data, wire) in enumerate(pkts):
        out += struct.pack(o + "IIII", 1700000000 + i, i, len(data), wire) + data
    return out


def _block(o, btype, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack(o + "II", btype, len(body) + 12) + body + struct.pack(o + "I", len(body) + 12)


def pcapng_section(o, linktypes, pkts):
    """A section (SHB, one IDB per link type, an EPB per packet): pkts of (data, wire[, iface])."""
    out = _block(o, 0x0A0D0D0A, struct.pack(o + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    for lt in linktypes:
        out += _block(o, 1, struct.pack(o + "HHI", lt, 0, 65535))
    for i, p in enumerate(pkts):
        data, wire = p[0], p[1]
        iface = p[2] if len(p) > 2 else 0
        ts = (1700000000 + i) * 10**6 + i
        out += _block(o, 6, struct.pack(o + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), wire) + data)
    return out


def make(tmp_path, name, fmt, o=OTHER, seed=1):
    """The capture file of a link type's packets in byte order o."""
    lt, gen, _ = LINKTYPES[name]
    pkts = gen(o, random.Random(f"{name}-{seed}"))
    path = tmp_path / f"{name}-{fmt}-{o == OTHER}.{fmt}"
    path.write_bytes(pcap_bytes(o, lt, pkts) if fmt == "pcap" else pcapng_section(o, [lt], pkts))
    return path, pkts


# -- the references ----------------------------------------------------------------------------------

def tcpdump_count(path, expr):
    done = subprocess.run([ref.tcpdump(), "-r", str(path), "--count", expr], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return int(re.search(r"(\d+) packets?", done.stdout).group(1))


def pfilter_count(path, expr, capsys):
    capsys.readouterr()
    assert cli.main(["--quiet", "-r", str(path), "--count", expr]) == 0
    return int(re.search(r"(\d+) packets?", capsys.readouterr().out).group(1))


def expressions(path, written, fields):
    """`link[a:w] = V` for each field, V its value in a packet as libpcap delivers it: the first
    packet whose field libpcap changed (else any), and a masked comparison."""
    _dlt, _snap, pkts, _err = ref.read_capture(str(path))
    exprs = []
    for k, (at, width) in enumerate(fields):
        have = [(p[0], w[0]) for p, w in zip(pkts, written) if len(p[0]) >= at + width]
        changed = [d for d, raw in have if d[at:at + width] != raw[at:at + width]]
        data = changed[0] if changed else have[(7 * k) % len(have)][0]
        value = int.from_bytes(data[at:at + width], "big")
        exprs.append(f"link[{at}:{width}] = {value:#x}" if width > 1 else f"link[{at}] = {value:#x}")
        if width == 4:
            exprs.append(f"link[{at}:4] & 0xff = {value & 0xff:#x}")
    return exprs


def libpcap_packets(path):
    dlt, _snap, pkts, err = ref.read_capture(str(path))
    assert err is None, err
    return [(data, wire) for data, wire, _ts in pkts]


def pfilter_packets(path, **options):
    out = []
    with pfilter.open(str(path), **options) as cap:
        for batch in cap:
            for i in range(len(batch)):
                off, n = int(batch.offsets[i]), int(batch.caplen[i])
                out.append((batch.data[off:off + n].tobytes(), int(batch.wirelen[i])))
    return out


# -- tests -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("name", list(LINKTYPES))
def test_filters_see_the_swapped_fields_like_tcpdump(tmp_path, capsys, name, fmt):
    path, written = make(tmp_path, name, fmt)
    for expr in expressions(path, written, LINKTYPES[name][2]):
        theirs = tcpdump_count(path, expr)
        assert theirs >= 1, expr
        assert pfilter_count(path, expr, capsys) == theirs, expr


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("name", list(LINKTYPES))
def test_written_file_is_tcpdump_s_byte_for_byte(tmp_path, capsys, name, fmt, workers):
    path, written = make(tmp_path, name, fmt)
    theirs, ours = tmp_path / "t.pcap", tmp_path / "p.pcap"
    for expr in ("", expressions(path, written, LINKTYPES[name][2][:1])[0]):
        done = subprocess.run([ref.tcpdump(), "-r", str(path), "-w", str(theirs), expr], capture_output=True)
        assert done.returncode == 0, done.stderr
        assert cli.main(["--quiet", "-r", str(path), "-w", str(ours), "-j", str(workers), expr]) == 0
        assert ours.read_bytes() == theirs.read_bytes(), expr


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("name", list(LINKTYPES))
def test_delivered_packets_are_libpcap_s_in_any_batching(tmp_path, name, fmt):
    """Every packet as libpcap delivers it, whatever the batches and read windows (a window that
    moves on keeps the undelivered bytes, never swapped twice), compressed input too; a capture
    in this host's order is delivered as written."""
    path, written = make(tmp_path, name, fmt, HOST)
    assert pfilter_packets(path) == libpcap_packets(path) == written
    path, written = make(tmp_path, name, fmt)
    expected = libpcap_packets(path)
    assert expected != written
    assert pfilter_packets(path) == expected
    assert pfilter_packets(path, batch_packets=3, window_bytes=200) == expected
    assert pfilter_packets(path, batch_packets=7, reuse_buffer=True, window_bytes=512) == expected
    gz = tmp_path / (path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert pfilter_packets(gz, batch_packets=5, window_bytes=300) == expected


def test_sections_of_both_orders_and_interfaces_of_several_link_types(tmp_path):
    """pfilter reads on where libpcap stops (a section of the other byte order, interfaces of
    different link types): each packet is swapped as its own section and link type ask, which
    is what libpcap gives for a file of that section and link type alone."""
    rng = random.Random(5)
    sll = sll_packets(OTHER, rng)[:30]
    usb = usb_packets(OTHER, rng, True)[:40]
    usb_host = usb_packets(HOST, rng, True)[:25]
    nflog = nflog_packets(OTHER, rng)[:20]
    eth = [(_rand(rng, 60), 60) for _ in range(10)]
    # section 1 (foreign): SLL on interface 0, USB_LINUX_MMAPPED on 1, EN10MB on 2, interleaved
    order = [(iface, k) for iface, pkts in enumerate((sll, usb, eth)) for k in range(len(pkts))]
    rng.shuffle(order)
    mixed = pcapng_section(OTHER, [113, 220, 1], [(sll, usb, eth)[i][k] + (i,) for i, k in order])
    # section 2 (this host's order): USB_LINUX_MMAPPED, swapped by nobody; section 3 foreign NFLOG
    mixed += pcapng_section(HOST, [220], usb_host) + pcapng_section(OTHER, [239], nflog)
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(mixed)
    alone = {}
    for key, o, lt, pkts in (("sll", OTHER, 113, sll), ("usb", OTHER, 220, usb), ("eth", OTHER, 1, eth),
                             ("host", HOST, 220, usb_host), ("nflog", OTHER, 239, nflog)):
        single = tmp_path / f"{key}.pcap"
        single.write_bytes(pcap_bytes(o, lt, pkts))
        alone[key] = libpcap_packets(single)
    expected = [alone[("sll", "usb", "eth")[i]][k] for i, k in order] + alone["host"] + alone["nflog"]
    assert pfilter_packets(path) == expected
    assert pfilter_packets(path, batch_packets=4, window_bytes=256) == expected
