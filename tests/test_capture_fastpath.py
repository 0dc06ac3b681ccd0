"""The fast path of filter_file and `pfilter -r IN.pcap -w OUT.pcap` (pfilter.capture.fastpath and
_fastcopy): whatever it takes, it must write exactly what the general path writes, give the same
stats, and hand everything unusual (records above the snapshot length, a cut last record, damage)
to the general path, which then behaves as it always did. Chunks are shrunk to 64 KiB here so
that records straddle chunk ends all the time, including records larger than a chunk.
"""
import os
import random
import struct
import subprocess
import sys

import dpkt
import pytest

import pfilter
import reference as ref
from pfilter.capture import _fastcopy, _writer

EXPRESSIONS = ["", "tcp", "udp port 53 or icmp", "vlan and ip", "ip and tcp port 80", "ip6"]


def general(src, dst, expr, **kw):
    old = os.environ.get("PFILTER_NO_FASTPATH")
    os.environ["PFILTER_NO_FASTPATH"] = "1"
    try:
        return pfilter.filter_file(src, dst, expr, **kw)
    finally:
        if old is None:
            del os.environ["PFILTER_NO_FASTPATH"]
        else:
            os.environ["PFILTER_NO_FASTPATH"] = old


def outcome(fn, src, dst, expr, **kw):
    """(stats without seconds, output bytes) or (error message, output bytes)."""
    try:
        stats = fn(src, dst, expr, **kw)
        result = tuple(stats[k] for k in ("read", "matched", "written", "bytes"))
    except pfilter.FilterError as e:
        result = (type(e).__name__, str(e))
    data = open(dst, "rb").read() if dst is not None and os.path.exists(dst) else None
    return result, data


def packet(rng, size=None):
    kind = rng.choice(["tcp80", "tcp", "dns", "icmp", "vlan", "ip6", "arp"])
    payload = bytes(rng.getrandbits(8) for _ in range(size if size is not None else rng.choice([0, 10, 200, 1400])))
    if kind == "ip6":
        ip = dpkt.ip6.IP6(src=b"\x20\x01" + b"\0" * 14, dst=b"\xfe\x80" + b"\0" * 14, nxt=17, hlim=64,
                          data=dpkt.udp.UDP(sport=1, dport=2, data=payload))
        ip.plen = len(ip.data)
        return bytes(dpkt.ethernet.Ethernet(type=0x86DD, data=ip))
    if kind == "arp":
        return bytes(dpkt.ethernet.Ethernet(type=0x0806, data=dpkt.arp.ARP())) + payload
    if kind == "icmp":
        l4, p = dpkt.icmp.ICMP(type=8, data=dpkt.icmp.ICMP.Echo(data=payload)), 1
    elif kind == "dns":
        l4, p = dpkt.udp.UDP(sport=5353, dport=53, data=payload), 17
    else:
        l4, p = dpkt.tcp.TCP(sport=40000, dport=80 if kind == "tcp80" else 22, data=payload), 6
    ip = dpkt.ip.IP(src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", p=p, data=l4)
    ip.len = len(ip)
    eth = bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip))
    if kind == "vlan":
        eth = eth[:12] + b"\x81\x00\x00\x07" + eth[12:]
    return eth


def write_pcap(path, records, snaplen=262144, nsec=False, tail=b""):
    """records: (packet bytes, caplen written in the header or None, wirelen or None)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D if nsec else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for i, (data, cap, wire) in enumerate(records):
            cap = len(data) if cap is None else cap
            f.write(struct.pack("<IIII", 1700000000 + i, (i * 7919) % 1000000, cap,
                                len(data) + 4 if wire is None else wire) + data)
        f.write(tail)
    return path


def generated(tmp_path, n=3000, seed=1, **kw):
    rng = random.Random(seed)
    recs = [(packet(rng), None, None) for _ in range(n)]
    return write_pcap(tmp_path / "in.pcap", recs, **kw), recs


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_generated_capture_same_bytes_and_stats_as_the_general_path(tmp_path, small_chunks, expr):
    src, _ = generated(tmp_path)
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", expr)
    slow = outcome(general, src, tmp_path / "slow.pcap", expr)
    assert [job.status for job in small_chunks] == [0]       # taken, to the end of the file
    assert fast == slow
    assert fast[0][0] == 3000 and (fast[0][1] == 3000 if expr == "" else 0 < fast[0][1] < 3000)


def test_records_larger_than_a_chunk_straddle_chunk_ends(tmp_path, small_chunks):
    rng = random.Random(7)
    # Ethernet frames with a long trailer: the IP packet stays valid, the record grows.
    recs = [(packet(rng, size=100) + b"\xab" * rng.choice([0, 100, 70000, 150000, 262144 - 300]), None, None)
            for _ in range(60)]
    recs.append((b"\0" * 262144, None, None))                 # caplen exactly the snapshot length
    src = write_pcap(tmp_path / "big.pcap", recs)
    for expr in ("", "tcp", "ip"):
        fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", expr)
        assert fast == outcome(general, src, tmp_path / "slow.pcap", expr)
    assert all(job.status == 0 for job in small_chunks) and len(small_chunks) == 3


@pytest.mark.parametrize("count", [1, 7, 500, 2999, 3000, 5000])
def test_count_stops_where_the_general_path_stops(tmp_path, small_chunks, count):
    src, _ = generated(tmp_path)
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "ip", count=count)
    assert fast == outcome(general, src, tmp_path / "slow.pcap", "ip", count=count)


def test_counting_without_output(tmp_path, small_chunks):
    src, _ = generated(tmp_path)
    fast = pfilter.filter_file(src, None, "tcp")
    slow = general(src, None, "tcp")
    assert (fast.read, fast.matched, fast.written, fast.bytes) == (slow.read, slow.matched, 0, 0)
    assert small_chunks and small_chunks[0].status == 0


def test_caplen_above_snapshot_length_goes_to_the_general_path(tmp_path, small_chunks):
    rng = random.Random(3)
    recs = [(packet(rng, size=300), None, None) for _ in range(2000)]
    recs[1500] = (packet(rng, size=1400), None, None)          # above the 1000-byte snapshot length
    src = write_pcap(tmp_path / "snap.pcap", recs, snaplen=1000)
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "")
    assert [job.status for job in small_chunks] == [1]         # anomaly: handed over
    assert 24 < small_chunks[0].stop_offset < os.path.getsize(src)
    assert fast == outcome(general, src, tmp_path / "slow.pcap", "")
    assert fast[0][0] == 2000
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("cut", [3, 16, 40])
def test_cut_last_record_gives_the_general_paths_error_and_packets(tmp_path, small_chunks, cut):
    src, recs = generated(tmp_path, n=500)
    data = open(src, "rb").read()
    open(src, "wb").write(data[:len(data) - cut])
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "")
    assert [job.status for job in small_chunks] == [2]         # truncated: handed over
    slow = outcome(general, src, tmp_path / "slow.pcap", "")
    assert fast == slow
    assert fast[0][0] == "CaptureFormatError" and "truncated dump file" in fast[0][1]
    assert fast[1] is not None and len(fast[1]) > 24            # the packets before were kept


def test_caplen_above_link_type_maximum_is_the_general_paths_error(tmp_path, small_chunks):
    src, _ = generated(tmp_path, n=100)
    with open(src, "ab") as f:
        f.write(struct.pack("<IIII", 1, 0, 300000, 300000) + b"\0" * 300000)
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "")
    assert fast == outcome(general, src, tmp_path / "slow.pcap", "")
    assert "bigger than" in fast[0][1]


def test_header_only_file(tmp_path, small_chunks):
    src = write_pcap(tmp_path / "empty.pcap", [])
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "tcp")
    assert fast == outcome(general, src, tmp_path / "slow.pcap", "tcp")
    assert fast[0] == (0, 0, 0, 0) and len(fast[1]) == 24


def test_nanosecond_file_keeps_its_resolution_and_micro_output_is_general(tmp_path, small_chunks):
    src, _ = generated(tmp_path, nsec=True)
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "udp")
    assert fast == outcome(general, src, tmp_path / "slow.pcap", "udp")
    assert len(small_chunks) == 1
    pfilter.filter_file(src, tmp_path / "us.pcap", "udp", ts_resolution="us")
    assert len(small_chunks) == 1                               # conversion: general path


def test_not_taken_for_pcapng_output_big_endian_or_old_versions(tmp_path, small_chunks):
    src, _ = generated(tmp_path, n=50)
    pfilter.filter_file(src, tmp_path / "out.pcapng", "tcp")
    data = bytearray(open(src, "rb").read())
    data[6:8] = struct.pack("<H", 3)                            # version 2.3
    old = tmp_path / "old.pcap"
    old.write_bytes(bytes(data))
    pfilter.filter_file(old, tmp_path / "o2.pcap", "tcp")
    assert small_chunks == []


def test_refuses_to_overwrite_its_input(tmp_path, small_chunks):
    src, _ = generated(tmp_path, n=50)
    before = open(src, "rb").read()
    with pytest.raises(pfilter.FilterError, match="refusing to overwrite"):
        pfilter.filter_file(src, src, "tcp")
    assert open(src, "rb").read() == before


def test_cancelled_pass_stops_and_reports_it(tmp_path):
    src, _ = generated(tmp_path, n=50)
    prog = pfilter.compile("tcp")
    from pfilter import _vm
    raw = prog.instructions.tobytes()
    fd = os.open(src, os.O_RDONLY)
    try:
        job = _fastcopy.PcapCopy(_vm.decode(raw), False, fd, -1, 24, 262144)
        job.cancel()
        assert job.run() == "cancelled" and job.read == 0
    finally:
        os.close(fd)


@pytest.mark.parametrize("expr", ["tcp", "udp port 53 or icmp"])
def test_corpus_pcaps_same_as_general_path(tmp_path, small_chunks, expr):
    """Every corpus file: fast or not, identical output and stats (or the same error)."""
    taken = 0
    for row in ref.corpus_pcaps():
        path = row["file"]
        before = len(small_chunks)
        fast = outcome(pfilter.filter_file, path, tmp_path / "fast.pcap", expr)
        slow = outcome(general, path, tmp_path / "slow.pcap", expr)
        assert fast == slow, path
        taken += len(small_chunks) > before and small_chunks[-1].status in (0, 3)
        for p in ("fast.pcap", "slow.pcap"):
            if os.path.exists(tmp_path / p):
                os.unlink(tmp_path / p)
    assert taken >= 100, f"the fast path took only {taken} corpus files"


def test_cli_with_a_cached_program_never_imports_numpy(tmp_path):
    src, _ = generated(tmp_path, n=200)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    code = ("import sys; from pfilter import cli; s = cli.main(['--quiet', '-r', sys.argv[1], '-w', sys.argv[2], "
            "'tcp']); print(s, 'numpy' in sys.modules)")
    outs = [subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / f"o{i}.pcap")], env=env,
                           capture_output=True, text=True, check=True).stdout.split() for i in range(2)]
    assert outs[1] == ["0", "False"], outs          # the second run finds the program in the cache
    assert open(tmp_path / "o0.pcap", "rb").read() == open(tmp_path / "o1.pcap", "rb").read()


def test_output_over_an_existing_file_is_swapped_in_whole(tmp_path, small_chunks):
    src, _ = generated(tmp_path, n=300)
    dst = tmp_path / "out.pcap"
    dst.write_bytes(b"old contents")
    other = tmp_path / "elsewhere.pcap"
    other.write_bytes(b"the link's target")
    link = tmp_path / "link.pcap"
    link.symlink_to(other)
    for target in (dst, link):
        stats = pfilter.filter_file(src, target, "tcp")
        assert stats.written > 0
        general(src, tmp_path / "ref.pcap", "tcp")
        assert target.read_bytes() == (tmp_path / "ref.pcap").read_bytes()
    assert link.is_symlink()                                   # written through the link (issue 18.15)
    assert other.read_bytes() == (tmp_path / "ref.pcap").read_bytes()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_exchange_paths_swaps_or_says_it_cannot(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"A")
    b.write_bytes(b"B")
    assert _writer.exchange_paths(os.fsencode(a), os.fsencode(b)) is True
    assert (a.read_bytes(), b.read_bytes()) == (b"B", b"A")
    assert _writer.exchange_paths(os.fsencode(a), os.fsencode(tmp_path / "missing")) is False


@pytest.mark.parametrize("fast", [True, False])
def test_output_to_a_device_is_written_into_it_not_replaced(tmp_path, monkeypatch, fast):
    if not fast:
        monkeypatch.setenv("PFILTER_NO_FASTPATH", "1")
    src, _ = generated(tmp_path, n=200)
    before = os.stat("/dev/null")
    stats = pfilter.filter_file(src, "/dev/null", "tcp")
    after = os.stat("/dev/null")
    assert stats.written > 0
    assert (after.st_ino, after.st_mode, after.st_rdev) == (before.st_ino, before.st_mode, before.st_rdev)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    import threading
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    pfilter.filter_file(src, fifo, "tcp")
    reader.join(10)
    general(src, tmp_path / "ref.pcap", "tcp")
    assert got == [(tmp_path / "ref.pcap").read_bytes()]
    assert fifo.exists() and not fifo.is_file()


def test_a_pass_runs_once(tmp_path):
    src, _ = generated(tmp_path, n=20)
    from pfilter import _vm
    fd = os.open(src, os.O_RDONLY)
    try:
        job = _fastcopy.PcapCopy(_vm.decode(pfilter.compile("").instructions.tobytes()), False, fd, -1, 24, 262144)
        assert job.run() == "eof" and (job.read, job.matched) == (20, 20)
        with pytest.raises(RuntimeError):
            job.run()
    finally:
        os.close(fd)


def test_mutated_captures_same_as_the_general_path(tmp_path, small_chunks):
    """Random damage to record headers (caplen, wire length), cuts and trailing garbage: the fast
    path must end exactly as the general path does (same packets written, same error)."""
    src, recs = generated(tmp_path, n=1500, seed=9)
    clean = open(src, "rb").read()
    starts, pos = [], 24
    for data, _c, _w in recs:
        starts.append(pos)
        pos += 16 + len(data)
    rng = random.Random(21)
    for trial in range(60):
        data = bytearray(clean)
        for _ in range(rng.randint(1, 3)):
            at = rng.choice(starts)
            what = rng.choice(["caplen", "caplen-small", "wirelen", "cut", "garbage"])
            if what == "caplen":
                data[at + 8:at + 12] = struct.pack("<I", rng.choice([262145, 0xFFFFFFFF, 70000, 262144]))
            elif what == "caplen-small":
                old = struct.unpack("<I", data[at + 8:at + 12])[0]
                data[at + 8:at + 12] = struct.pack("<I", rng.randint(0, old))
            elif what == "wirelen":
                data[at + 12:at + 16] = struct.pack("<I", rng.getrandbits(32))
            elif what == "cut":
                del data[at + rng.randint(1, 40):]
            else:
                data += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
        path = tmp_path / f"m{trial}.pcap"
        path.write_bytes(bytes(data))
        for expr in ("", "tcp"):
            fast = outcome(pfilter.filter_file, path, tmp_path / "fast.pcap", expr)
            slow = outcome(general, path, tmp_path / "slow.pcap", expr)
            assert fast == slow, (trial, expr)
            for p in ("fast.pcap", "slow.pcap"):
                if os.path.exists(tmp_path / p):
                    os.unlink(tmp_path / p)
    assert {job.status for job in small_chunks} >= {0, 1, 2}    # clean ends, handovers, cuts
