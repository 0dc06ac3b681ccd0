"""The pcapng fast path (pfilter.capture._fastcopy.NgCopy, driven by pfilter.capture.fastpath):
a pcapng input filtered into a pcap file, or counted, without the general path's batches.

It must write what the general path writes (PFILTER_NO_FASTPATH=1) byte for byte and stop as it
does (same packets kept, same error) on every input, and what tcpdump writes where tcpdump is the
reference; whatever it leaves to the general path (sections of the other byte order, interfaces
of another link type, damage) the general path then does from the start."""
import os
import random
import struct
import subprocess
import sys

import pytest

import pfilter
import reference as ref
from test_capture_fastpath import general, outcome, packet, write_pcap

EXPRESSIONS = ["", "tcp", "udp port 53 or icmp", "vlan and ip", "ip and tcp port 80", "ip6"]


@pytest.fixture
def ng_jobs(monkeypatch):
    """The NgCopy jobs the fast path runs (their status after the pass: 0 eof, 1 anomaly...)."""
    from pfilter.capture import _fastcopy
    runs = []
    real = _fastcopy.NgCopy

    def make(*args, **kw):
        job = real(*args, **kw)
        runs.append(job)
        return job
    monkeypatch.setattr(_fastcopy, "NgCopy", make)
    return runs


# -- pcapng blocks, written here so that a test can make any section, interface or damage ------

def block(btype, body, order="<"):
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(order + "II", btype, total) + body + struct.pack(order + "I", total)


def shb(order="<", minor=0):
    return block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, minor, -1), order)


def idb(linktype=1, snaplen=262144, tsresol=None, tsoffset=None, order="<"):
    opts = b""
    if tsresol is not None:
        opts += struct.pack(order + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0"
    if tsoffset is not None:
        opts += struct.pack(order + "HHq", 14, 8, tsoffset)
    if opts:
        opts += struct.pack(order + "HH", 0, 0)
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + opts, order)


def epb(data, ts, iface=0, wire=None, order="<"):
    return block(6, struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                len(data) + 4 if wire is None else wire) + data, order)


def spb(data, wire=None, order="<"):
    return block(3, struct.pack(order + "I", len(data) + 4 if wire is None else wire) + data, order)


def generated_pcapng(path, n=2000, seed=1, tsresol=None, tsoffset=None, extra=b""):
    """One section, one Ethernet interface, n EPBs (a few SPBs and a name-resolution block among
    them); the blocks' file offsets too."""
    rng = random.Random(seed)
    units = 10 ** 6 if tsresol is None else (1 << (tsresol & 0x7F) if tsresol & 0x80 else 10 ** tsresol)
    data = shb() + idb(tsresol=tsresol, tsoffset=tsoffset)
    starts = []
    t = 1700000000 * units
    for i in range(n):
        starts.append(len(data))
        t += rng.randint(0, 3 * units // 1000 + 1)
        p = packet(rng)
        if i % 97 == 5:
            data += spb(p, wire=len(p))          # (libpcap: a longer wire length is a short block)
        elif i % 211 == 7:
            data += block(4, b"\x01\0\x08\0\x0a\0\0\x01host\0\0\0\0\0\0\0\0")    # a name record
        else:
            data += epb(p, t)
    data += extra
    path.write_bytes(data)
    return path, starts


def cleanup(*paths):
    for p in paths:
        if os.path.exists(p):
            os.unlink(p)


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_generated_pcapng_same_bytes_and_stats_as_the_general_path(tmp_path, ng_jobs, expr):
    src, _ = generated_pcapng(tmp_path / "in.pcapng")
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", expr)
    slow = outcome(general, src, tmp_path / "slow.pcap", expr)
    assert [job.status for job in ng_jobs] == [0]        # taken, to the end of the file
    assert fast == slow
    assert fast[0][0] == sum(i % 211 != 7 for i in range(2000)) and 0 < fast[0][1] <= fast[0][0]
    fast = outcome(pfilter.filter_file, src, None, expr)
    assert fast == outcome(general, src, None, expr) and ng_jobs[-1].status == 0


@pytest.mark.parametrize("tsresol,tsoffset", [(None, None), (9, None), (3, None), (0x80 | 20, None),
                                              (6, 1000), (9, -5)])
def test_timestamp_resolutions_and_offsets_as_the_general_path(tmp_path, ng_jobs, tsresol, tsoffset):
    """if_tsresol (decimal, binary) and if_tsoffset: every record's seconds and fraction as the
    general path writes them, in the output resolution it picks (ns for a finer interface)."""
    src, _ = generated_pcapng(tmp_path / "in.pcapng", n=500, seed=3, tsresol=tsresol, tsoffset=tsoffset)
    for kw in ({}, {"ts_resolution": "us"}, {"ts_resolution": "ns"}):
        fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "udp or icmp", **kw)
        slow = outcome(general, src, tmp_path / "slow.pcap", "udp or icmp", **kw)
        assert fast == slow, kw
        assert ng_jobs[-1].status == 0
        cleanup(tmp_path / "fast.pcap", tmp_path / "slow.pcap")


@pytest.mark.parametrize("expr", ["tcp", "udp port 53 or icmp", "not vlan"])
def test_editcap_pcapng_same_as_tcpdump(tmp_path, ng_jobs, expr):
    """A capture converted by editcap (Wireshark's own pcapng writer) filtered by pfilter and by
    tcpdump: the same pcap file, byte for byte."""
    rng = random.Random(5)
    pcap = write_pcap(tmp_path / "in.pcap", [(packet(rng), None, None) for _ in range(3000)])
    src = tmp_path / "in.pcapng"
    # (without scripts/asan.sh's preloaded sanitizer runtime, which is for pfilter's native code:
    # editcap hangs under it)
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    subprocess.run([ref.editcap(), "-F", "pcapng", str(pcap), str(src)], check=True, capture_output=True, env=env,
                   timeout=120)
    subprocess.run([ref.tcpdump(), "-r", str(src), "-w", str(tmp_path / "td.pcap"), expr], check=True,
                   capture_output=True)
    stats = pfilter.filter_file(src, tmp_path / "pf.pcap", expr)
    assert [job.status for job in ng_jobs] == [0]
    assert (tmp_path / "pf.pcap").read_bytes() == (tmp_path / "td.pcap").read_bytes()
    assert stats["read"] == 3000


@pytest.mark.parametrize("count", [1, 7, 500, 1990, 5000])
def test_packet_count_limit_stops_where_the_general_path_stops(tmp_path, ng_jobs, count):
    src, _ = generated_pcapng(tmp_path / "in.pcapng", seed=4)
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "tcp", count=count)
    assert fast == outcome(general, src, tmp_path / "slow.pcap", "tcp", count=count)
    assert ng_jobs[-1].status in (0, 3)


def test_left_to_the_general_path_which_starts_over(tmp_path, ng_jobs):
    """A later section in the other byte order, an interface of another link type, an unusual
    interface (snapshot length 0): NgCopy stops ("anomaly") and the general path's result is
    the call's."""
    body, _ = generated_pcapng(tmp_path / "base.pcapng", n=300, seed=6)
    base = body.read_bytes()
    rng = random.Random(8)
    tails = {
        "big-endian section": shb(">") + idb(order=">") + b"".join(epb(packet(rng), 5 << 32, order=">")
                                                               for _ in range(20)),
        "raw IP interface": idb(linktype=101) + b"".join(epb(packet(rng)[14:], 7 << 32, iface=1)
                                                         for _ in range(20)),
        "snapshot length 0": idb(snaplen=0) + epb(packet(rng), 9 << 32, iface=1),
    }
    for name, tail in tails.items():
        src = tmp_path / "in.pcapng"
        src.write_bytes(base + tail + epb(packet(rng), 11 << 32))
        for expr in ("", "tcp", "ip"):
            fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", expr)
            slow = outcome(general, src, tmp_path / "slow.pcap", expr)
            assert fast == slow, (name, expr)
            assert ng_jobs[-1].status == 1, name
            cleanup(tmp_path / "fast.pcap", tmp_path / "slow.pcap")


def test_not_taken_where_the_first_section_or_interface_is_not_for_it(tmp_path, ng_jobs):
    """Big-endian first section, version 1.1, no interface before the first packet, snapshot
    length 0: never started (the general path reads them)."""
    rng = random.Random(2)
    p = packet(rng)
    cases = {
        "big-endian": shb(">") + idb(order=">") + epb(p, 1 << 32, order=">"),
        "version 1.1": shb(minor=1) + idb() + epb(p, 1 << 32),
        "packet first": shb() + epb(p, 1 << 32) + idb(),
        "snapshot length 0": shb() + idb(snaplen=0) + epb(p, 1 << 32),
    }
    for name, data in cases.items():
        src = tmp_path / "in.pcapng"
        src.write_bytes(data)
        fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "tcp")
        assert fast == outcome(general, src, tmp_path / "slow.pcap", "tcp"), name
        cleanup(tmp_path / "fast.pcap", tmp_path / "slow.pcap")
    assert ng_jobs == []


def test_mutated_pcapng_same_as_the_general_path(tmp_path, ng_jobs):
    """Random damage to block lengths, trailers, interface ids and captured lengths, cuts and
    trailing garbage: NgCopy must end as the general path does (same packets, same error)."""
    src, starts = generated_pcapng(tmp_path / "clean.pcapng", n=800, seed=9)
    clean = src.read_bytes()
    rng = random.Random(21)
    for trial in range(80):
        data = bytearray(clean)
        for _ in range(rng.randint(1, 3)):
            at = rng.choice(starts)
            what = rng.choice(["total", "trailer", "iface", "caplen", "cut", "garbage", "type"])
            if what == "total":
                data[at + 4:at + 8] = struct.pack("<I", rng.choice([0, 8, 13, 1 << 30, rng.getrandbits(16) * 4]))
            elif what == "trailer":
                total = struct.unpack_from("<I", data, at + 4)[0]
                if at + total <= len(data):
                    data[at + total - 4:at + total] = struct.pack("<I", rng.getrandbits(32))
            elif what == "iface":
                data[at + 8:at + 12] = struct.pack("<I", rng.choice([1, 5, 0xFFFFFFFF]))
            elif what == "caplen":
                data[at + 20:at + 24] = struct.pack("<I", rng.choice([0, 1, 262145, 0xFFFFFFFF, rng.getrandbits(12)]))
            elif what == "cut":
                del data[at + rng.randint(1, 40):]
            elif what == "type":
                data[at:at + 4] = struct.pack("<I", rng.choice([1, 2, 3, 5, 0x0A0D0D0A, 0xBAD]))
            else:
                data += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
        path = tmp_path / f"m{trial}.pcapng"
        path.write_bytes(bytes(data))
        for expr in ("", "tcp"):
            fast = outcome(pfilter.filter_file, path, tmp_path / "fast.pcap", expr)
            slow = outcome(general, path, tmp_path / "slow.pcap", expr)
            assert fast == slow, (trial, expr)
            cleanup(tmp_path / "fast.pcap", tmp_path / "slow.pcap")
    assert {job.status for job in ng_jobs} >= {0, 1}       # clean ends and handovers


@pytest.mark.parametrize("expr", ["tcp", "udp port 53 or icmp"])
def test_corpus_pcapng_same_as_general_path(tmp_path, ng_jobs, expr):
    """Every pcapng capture of the corpus: the same output and stats (or the same error)."""
    taken = 0
    for row in ref.corpus_pcaps():
        if row["format"] != "pcapng":
            continue
        path = row["file"]
        before = len(ng_jobs)
        fast = outcome(pfilter.filter_file, path, tmp_path / "fast.pcap", expr)
        slow = outcome(general, path, tmp_path / "slow.pcap", expr)
        assert fast == slow, path
        taken += len(ng_jobs) > before and ng_jobs[-1].status in (0, 3)
        cleanup(tmp_path / "fast.pcap", tmp_path / "slow.pcap")
    assert taken >= 20, f"the pcapng fast path took only {taken} corpus files"


def test_cli_on_pcapng_with_a_cached_program_never_imports_numpy(tmp_path):
    src, _ = generated_pcapng(tmp_path / "in.pcapng", n=200)
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    code = ("import sys; from pfilter import cli; s = cli.main(['--quiet', '-r', sys.argv[1], '-w', sys.argv[2], "
            "'tcp']); print(s, 'numpy' in sys.modules)")
    outs = [subprocess.run([sys.executable, "-c", code, str(src), str(tmp_path / f"o{i}.pcap")], env=env,
                           capture_output=True, text=True, check=True).stdout.split() for i in range(2)]
    assert outs[1] == ["0", "False"], outs
    general(src, tmp_path / "slow.pcap", "tcp")
    assert (tmp_path / "o1.pcap").read_bytes() == (tmp_path / "slow.pcap").read_bytes()


def test_cancelled_pass_stops_and_reports_it(tmp_path):
    from pfilter import _vm
    from pfilter.capture import _fastcopy
    src, _ = generated_pcapng(tmp_path / "in.pcapng", n=50)
    fd = os.open(src, os.O_RDONLY)
    try:
        job = _fastcopy.NgCopy(_vm.decode(pfilter.compile("tcp").instructions.tobytes()), False, fd, -1, 1,
                               16 << 20)
        job.cancel()
        assert job.run() == "cancelled" and job.read == 0
        with pytest.raises(ValueError, match="once"):
            job.run()
    finally:
        os.close(fd)


def test_several_pcapng_and_pcap_files_counted_and_concatenated_as_the_general_path(tmp_path, ng_jobs,
                                                                                     small_chunks):
    """Several inputs (a directory of a ring buffer's pcapng files, pcap ones among them): counted
    in parallel and written one after the other into one pcap output, as the general path does;
    each pcapng file by its NgCopy."""
    srcs = []
    for i in range(6):
        if i == 3:
            rng = random.Random(40 + i)
            srcs.append(write_pcap(tmp_path / f"f{i}.pcap", [(packet(rng), None, None) for _ in range(300)]))
        else:
            srcs.append(generated_pcapng(tmp_path / f"f{i}.pcapng", n=300 + i, seed=40 + i)[0])
    for expr in ("tcp", "udp port 53 or icmp"):
        for kw in ({}, {"count": 777}):
            fast = outcome(pfilter.filter_file, srcs, tmp_path / "fast.pcap", expr, **kw)
            slow = outcome(general, srcs, tmp_path / "slow.pcap", expr, **kw)
            assert fast == slow, (expr, kw)
            cleanup(tmp_path / "fast.pcap", tmp_path / "slow.pcap")
        before = len(ng_jobs)
        fast = outcome(pfilter.filter_file, srcs, None, expr, workers=2)
        assert fast == outcome(general, srcs, None, expr, workers=2)
        assert len(ng_jobs) - before == 5 and all(j.status == 0 for j in ng_jobs[before:])


def test_cli_counts_a_directory_of_pcapng_files_as_tcpdump(tmp_path, ng_jobs):
    d = tmp_path / "ring"
    d.mkdir()
    total = 0
    for i in range(5):
        src, _ = generated_pcapng(d / f"ring_{i:05d}.pcapng", n=200, seed=60 + i)
        out = subprocess.run([ref.tcpdump(), "-r", str(src), "-w", "-", "tcp"], capture_output=True, check=True).stdout
        total += sum(1 for _ in _records(out))
    from pfilter import cli
    assert cli.main(["--quiet", "-r", str(d), "--count", "tcp"]) == 0
    assert len(ng_jobs) == 5
    assert sum(j.matched for j in ng_jobs) == total


def _records(pcap_bytes):
    at = 24
    while at + 16 <= len(pcap_bytes):
        cap = struct.unpack_from("<I", pcap_bytes, at + 8)[0]
        yield at
        at += 16 + cap


def test_simple_packet_blocks_longer_on_the_wire_as_the_general_path(tmp_path, ng_jobs):
    """An SPB whose wire length exceeds the data it holds (the general path's documented
    divergence from libpcap, which calls it short): the same packets, from the same scanner."""
    rng = random.Random(12)
    data = shb() + idb(snaplen=100)
    for i in range(200):
        p = packet(rng)
        data += spb(p[:100], wire=len(p)) if i % 3 else epb(p[:100], (1 << 32) + i, wire=len(p))
    src = tmp_path / "spb.pcapng"
    src.write_bytes(data)
    for expr in ("", "tcp", "greater 120"):
        fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", expr)
        assert fast == outcome(general, src, tmp_path / "slow.pcap", expr), expr
        assert ng_jobs[-1].status == 0
        cleanup(tmp_path / "fast.pcap", tmp_path / "slow.pcap")


# -- interruptions and inputs that shrink (full disks: test_robust_output.py) ----------------------------------------------

def many_pcapng(path, pkts):
    data = [shb(), idb()]
    data += [epb(p, (1700000000 << 20) + i) for i, p in enumerate(pkts)]
    path.write_bytes(b"".join(data))
    return path


def test_an_interrupted_pcapng_pass_keeps_whole_records(tmp_path, ng_jobs):
    from test_robust_output import is_udp, libpcap_packets, packets
    pkts = packets(100000, sizes=(200,))      # 24 MB: watched by a helper thread (SMALL_FILE_BYTES)
    src = many_pcapng(tmp_path / "in.pcapng", pkts)
    out = tmp_path / "out.pcap"
    # every packet runs the whole unoptimized program of 24,000 instructions: a pass long enough
    # to interrupt after its first output
    slow = pfilter.compile(" or ".join(f"tcp port {p}" for p in range(2000, 3000)) + " or udp", optimize=False)

    def interrupt(done, total, stats):
        if stats.matched:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt) as e:
        pfilter.filter_file(src, out, slow, progress=interrupt)
    kept = libpcap_packets(out)
    want = [p for p in pkts if is_udp(p)]
    assert 0 < len(kept) < len(want) and kept == want[:len(kept)]
    assert e.value.stats.written == len(kept) and ng_jobs[-1].status == 6       # cancelled
    assert out.stat().st_size == 24 + sum(16 + len(p) for p in kept)
    assert os.listdir(tmp_path) == ["in.pcapng", "out.pcap"]


def test_a_pcapng_file_shrinking_under_the_pass_ends_it_with_a_read_error(tmp_path):
    """Mapped pages past the new end raise SIGBUS in the scan, or fail the write (EFAULT): the
    pass ends with "read-error" (or ends before the cut), the process is never killed."""
    from test_fastpath_mapped import SHRINK
    rng = random.Random(9)
    src = many_pcapng(tmp_path / "shrinking.pcapng", [packet(rng, size=1400) for _ in range(600)] * 40)
    full = os.path.getsize(src)
    pcap_pass = "_fastcopy.PcapCopy(decoded, clear, fd, out, 24, 262144, workers=2, mapped=True, **kw)"
    assert pcap_pass in SHRINK
    code = SHRINK.replace("FULL", str(full)).replace(pcap_pass, "_fastcopy.NgCopy(decoded, clear, fd, out, 1, 16 << 20)")
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(full // 3), str(ref.ROOT), "{}", "tcp"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]          # never killed by SIGBUS
    outcomes = eval(proc.stdout.strip())
    assert {status for status, _error in outcomes} <= {"eof", "anomaly", "read-error"}, outcomes
    assert any(status == "read-error" for status, _error in outcomes), outcomes


# -- one file counted by several workers (_ng_shared) ---------------------------------------------

@pytest.fixture
def shared_small(monkeypatch):
    """Every pcapng file counted with workers > 1 is shared among them, however small."""
    from pfilter.capture import fastpath
    monkeypatch.setattr(fastpath, "NG_SHARED_BYTES", 0)


def counted(src, expr, workers):
    stats = pfilter.filter_file(src, None, expr, workers=workers)
    return stats.read, stats.matched


@pytest.mark.parametrize("workers", [2, 3, 5, 8])
def test_shared_counts_equal_one_pass(tmp_path, ng_jobs, shared_small, workers):
    src, _ = generated_pcapng(tmp_path / "in.pcapng", n=3000, seed=workers)
    for expr in ("", "tcp", "udp port 53 or icmp"):
        before = len(ng_jobs)
        assert counted(src, expr, workers) == counted(src, expr, 1) == tuple(
            outcome(general, src, None, expr)[0][:2])
        ranges = ng_jobs[before:-1]                 # (the last: the one-worker count)
        assert len(ranges) == workers and all(j.status == 0 for j in ranges)
        assert [j.start for j in ranges[1:]] == [j.range_end for j in ranges[:-1]]


def test_shared_count_falls_back_to_one_pass_where_ranges_do_not_join(tmp_path, ng_jobs, shared_small):
    """An interface described halfway, a second section, and a packet whose payload is a packet
    block (a pcapng file carried in a capture) where a range is looked for: the ranges are given
    up for one pass, whose count is the general path's."""
    rng = random.Random(30)
    head, _ = generated_pcapng(tmp_path / "a.pcapng", n=1000, seed=31)
    half = head.read_bytes()
    tail = b"".join(epb(packet(rng), (1 << 40) + i) for i in range(1000))
    fake = epb(b"\x06\0\0\0\x40\0\0\0" + bytes(56) + b"\x40\0\0\0", 5)      # an EPB inside an EPB
    cases = {"interface": half + idb() + tail,
             "section": half + shb() + idb() + tail,
             "block in a payload": half + b"".join(epb(fake * 40, 3 << 32) for _ in range(400)) + tail}
    for name, data in cases.items():
        src = tmp_path / "in.pcapng"
        src.write_bytes(data)
        for workers in (2, 3):
            before = len(ng_jobs)
            assert counted(src, "tcp", workers) == tuple(outcome(general, src, None, "tcp")[0][:2]), name
            jobs = ng_jobs[before:]
            assert jobs[-1].start == 0 and jobs[-1].stop == -1 and jobs[-1].status == 0, name   # one pass


def test_shared_counts_of_damaged_files_equal_the_general_path(tmp_path, ng_jobs, shared_small):
    src, starts = generated_pcapng(tmp_path / "clean.pcapng", n=1500, seed=33)
    clean = src.read_bytes()
    rng = random.Random(34)
    for trial in range(30):
        data = bytearray(clean)
        at = rng.choice(starts)
        what = rng.choice(["total", "trailer", "cut", "garbage"])
        if what == "total":
            data[at + 4:at + 8] = struct.pack("<I", rng.choice([0, 13, 1 << 30]))
        elif what == "trailer":
            total = struct.unpack_from("<I", data, at + 4)[0]
            data[at + total - 4:at + total] = b"\xff\xff\xff\xff"
        elif what == "cut":
            del data[at + rng.randint(1, 40):]
        else:
            data += bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))
        path = tmp_path / f"m{trial}.pcapng"
        path.write_bytes(bytes(data))
        for workers in (2, 4):
            fast = outcome(pfilter.filter_file, path, None, "tcp", workers=workers)
            assert fast == outcome(general, path, None, "tcp"), (trial, what, workers)


def test_no_mapping_asked_for_leaves_pcapng_to_the_general_path(tmp_path, ng_jobs, monkeypatch):
    """PFILTER_NO_MMAP=1: NgCopy only maps its input, so a pcapng file is read by the general
    path, with the same result."""
    src, _ = generated_pcapng(tmp_path / "in.pcapng", n=300, seed=70)
    monkeypatch.setenv("PFILTER_NO_MMAP", "1")
    fast = outcome(pfilter.filter_file, src, tmp_path / "fast.pcap", "tcp")
    assert ng_jobs == []
    assert fast == outcome(general, src, tmp_path / "slow.pcap", "tcp")
