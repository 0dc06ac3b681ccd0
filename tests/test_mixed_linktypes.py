"""pcapng files whose interfaces have different link types (libpcap refuses them): every packet
is filtered by the program compiled for its own interface's link type, with libpcap's meaning for
that link type."""
import struct

import numpy as np

import pfilter
import reference as ref

ETH_HDR = bytes.fromhex("001122334455" "66778899aabb" "0800")
SLL_HDR = struct.pack(">HHH8sH", 0, 1, 6, bytes(8), 0x0800)


def ipv4_tcp(sport, dport):
    ip = bytes.fromhex("45000028000100004006" "0000" "c0000201" "c0000202")
    return ip + struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 0x50, 0x02, 1024, 0, 0)


def block(btype, body):
    pad = (-len(body)) % 4
    length = 12 + len(body) + pad
    return struct.pack("<II", btype, length) + body + b"\0" * pad + struct.pack("<I", length)


def mixed_pcapng(path, packets):
    """packets: [(interface, bytes)]; interface 0 Ethernet, 1 raw IP, 2 Linux cooked."""
    out = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    for linktype in (1, 101, 113):
        out += block(1, struct.pack("<HHI", linktype, 0, 262144))
    for i, (iface, pkt) in enumerate(packets):
        out += block(6, struct.pack("<IIIII", iface, 0, i, len(pkt), len(pkt)) + pkt)
    path.write_bytes(out)


def test_each_packet_is_filtered_with_its_interfaces_link_type(tmp_path):
    packets = []
    for i, port in enumerate([80, 443, 80, 22, 8080, 80, 53, 80, 80]):
        iface = i % 3
        body = ipv4_tcp(40000 + i, port)
        packets.append((iface, {0: ETH_HDR, 1: b"", 2: SLL_HDR}[iface] + body))
    src = tmp_path / "mixed.pcapng"
    mixed_pcapng(src, packets)

    with pfilter.open(src) as cap:
        batches = list(cap)
    linktypes = np.concatenate([b.linktypes for b in batches]).tolist()
    assert linktypes == [[1, 101, 113][i % 3] for i in range(len(packets))]

    for expr in ["tcp port 80", "ip and tcp[13] & 2 != 0", "tcp dst port 80 or tcp dst port 22"]:
        dst = tmp_path / "out.pcapng"
        stats = pfilter.filter_file(src, dst, expr)
        with pfilter.open(dst) as out:
            kept = [b.packet(i) for b in out for i in range(len(b))]
        want = []
        for iface, pkt in packets:
            dlt = {0: 1, 1: 12, 2: 113}[iface]
            insns = ref.compile_savefile(expr, dlt, False, 262144)
            if ref.bpf_filter(insns, pkt):
                want.append(pkt)
        assert kept == want, expr
        assert stats.read == len(packets) and stats.written == len(want) > 0
