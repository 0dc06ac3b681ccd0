"""The fast path's mapped passes (PcapCopy mapped=True, what pfilter.capture.fastpath uses unless
PFILTER_NO_MMAP=1) against its read passes: the same records judged, the same bytes written, the
same ending at the same offset, whatever the chunk size, the number of workers, the byte range,
-c or a record cut by the end of the file; and a file that shrinks under a mapped pass ends it
with a read error (the caller then starts over on the general path) instead of killing the
process with SIGBUS.
"""
import os
import random
import struct
import subprocess
import sys

import pytest

import pfilter
from pfilter import _vm
from pfilter.capture import _fastcopy
from pfilter.capture.fastpath import _decode
from pfilter.capture.files import RESYNC_DEPTH, RESYNC_SPAN
from test_capture_fastpath import packet, write_pcap

EXPRESSIONS = ["", "tcp", "udp port 53 or icmp", "vlan and ip", "ip6"]


def _program(expr):
    return _decode(_vm, pfilter.compile(expr).to_tuples())


def _pass(src, dst, expr, mapped, **kw):
    """(status, read, matched, bytes, stop_offset, output bytes) of one PcapCopy pass, and `done`
    where it is decided (at the end of the input; after -c or -C it is only a progress mark)."""
    decoded, clear = _program(expr)
    fd = os.open(src, os.O_RDONLY)
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644) if dst is not None else -1
    try:
        job = _fastcopy.PcapCopy(decoded, clear, fd, out, 24, kw.pop("limit", 262144), mapped=mapped, **kw)
        status = job.run()
    finally:
        os.close(fd)
        if out >= 0:
            os.close(out)
    data = open(dst, "rb").read() if dst is not None else None
    return status, job.read, job.matched, job.bytes, job.stop_offset, job.done if status == "eof" else None, data


def _capture(tmp_path, n=2500, seed=5, big=0, tail=b"", distinct=None):
    """n records (distinct of them built, repeated in turn: building a packet costs far more than
    writing one), `big` of them replaced by records larger than a 64 KiB chunk."""
    rng = random.Random(seed)
    built = [(packet(rng), None, None) for _ in range(min(n, distinct or n))]
    recs = [built[i % len(built)] for i in range(n)]
    for i in range(big):             # records larger than a 64 KiB chunk, straddling chunk ends
        recs[rng.randrange(n)] = (packet(rng, size=100) + b"\xab" * (70000 + rng.randrange(90000)), None, None)
    return write_pcap(tmp_path / f"in-{seed}-{big}.pcap", recs, tail=tail)


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_mapped_and_read_passes_write_the_same_bytes(tmp_path, expr, workers):
    src = _capture(tmp_path, big=6)
    for chunk in (1 << 16, 1 << 20):
        read = _pass(src, tmp_path / "read.pcap", expr, False, chunk=chunk, workers=workers)
        mapped = _pass(src, tmp_path / "mapped.pcap", expr, True, chunk=chunk, workers=workers)
        assert mapped == read and read[0] == "eof" and read[1] == 2500
        assert (read[2] == 2500) == (expr == "") and read[6]


def test_mapped_passes_stop_where_read_passes_stop(tmp_path):
    src = _capture(tmp_path, tail=struct.pack("<IIII", 1700009999, 0, 100, 100) + b"x" * 30)   # cut short
    size = os.path.getsize(src)
    cases = [dict(), dict(max_count=333), dict(end=size // 2), dict(limit=1000), dict(rotate_size=100000)]
    for kw in cases:
        for workers in (1, 2):
            got = [_pass(src, tmp_path / f"o{m}.pcap", "tcp", m, chunk=1 << 16, workers=workers, **dict(kw))
                   for m in (False, True)]
            assert got[0] == got[1], kw
    assert _pass(src, None, "tcp", True, chunk=1 << 16, workers=1)[0] == "truncated"


def test_a_file_that_cannot_be_mapped_is_read():
    """A /proc file can be read but not mapped: PcapCopy's probe falls back to reading it (a
    mapped pass would end with a read error where the read pass judges its bytes)."""
    decoded, clear = _program("tcp")
    outcomes = []
    for mapped in (False, True):
        fd = os.open("/proc/version", os.O_RDONLY)
        try:
            job = _fastcopy.PcapCopy(decoded, clear, fd, -1, 0, 262144, workers=1, mapped=mapped)
            outcomes.append((job.run(), job.error, job.stop_offset))
        finally:
            os.close(fd)
    assert outcomes[0] == outcomes[1] and outcomes[0][0] in ("anomaly", "truncated", "eof")


SHRINK = """
import os, sys, threading, time
sys.path[:0] = [sys.argv[3]]
import pfilter
from pfilter import _vm
from pfilter.capture import _fastcopy
from pfilter.capture.fastpath import _decode
src, keep, kw, expr = sys.argv[1], int(sys.argv[2]), eval(sys.argv[4]), sys.argv[5]
decoded, clear = _decode(_vm, pfilter.compile(expr).to_tuples())
outcomes = set()
for attempt in range(40):
    with open(src, "r+b") as f:                     # the whole file back
        f.seek(0, 2)
        if f.tell() < FULL:
            f.truncate(FULL)
    fd = os.open(src, os.O_RDONLY)
    out = os.open(src + ".out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    job = _fastcopy.PcapCopy(decoded, clear, fd, out, 24, 262144, workers=2, mapped=True, **kw)
    t = threading.Thread(target=lambda: outcomes.add((job.run(), job.error)))
    t.start()
    while t.is_alive() and job.done < keep // 4:
        pass
    os.truncate(src, keep)                          # shrink it under the pass
    t.join()
    os.close(fd)
    os.close(out)
print(sorted(outcomes))
"""


@pytest.mark.parametrize("kw", [dict(chunk=1 << 16),
                                dict(chunk=1 << 20, guess_depth=RESYNC_DEPTH, guess_span=RESYNC_SPAN),
                                dict(chunk=1 << 20, guess_depth=RESYNC_DEPTH, guess_span=RESYNC_SPAN, small=True)],
                         ids=["one-chain", "chains", "gathered"])
def test_a_file_shrinking_under_a_mapped_pass_ends_it_with_a_read_error(tmp_path, kw):
    if kw.pop("small", False):           # many small runs: each chunk's gathered (and SIGBUS there caught)
        src, expr = _many_small_matches(tmp_path / "shrinking.pcap", n=240000), "udp port 53"
    else:
        rng = random.Random(9)
        recs = [(packet(rng, size=1400), None, None) for _ in range(600)] * 20     # (12,000: building is slow)
        src, expr = write_pcap(tmp_path / "shrinking.pcap", recs), "tcp"
    full = os.path.getsize(src)
    code = SHRINK.replace("FULL", str(full))
    root = os.path.dirname(os.path.dirname(os.path.abspath(pfilter.__file__)))
    proc = subprocess.run([sys.executable, "-c", code, str(src), str(full // 3), root, repr(kw), expr],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]          # never killed by SIGBUS
    outcomes = eval(proc.stdout.strip())
    assert {status for status, _error in outcomes} <= {"eof", "truncated", "read-error"}
    assert ("read-error", 5) in outcomes or ("truncated", 0) in outcomes, outcomes     # EIO


LIMITED = """
import os, resource, sys
sys.path[:0] = [sys.argv[4]]
import pfilter
from pfilter import _vm
from pfilter.capture import _fastcopy
from pfilter.capture.fastpath import _decode
src, dst, headroom = sys.argv[1], sys.argv[2], int(sys.argv[3])
decoded, clear = _decode(_vm, pfilter.compile("tcp").to_tuples())
fd, out = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
with open("/proc/self/status") as f:
    vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, resource.RLIM_INFINITY))
job = _fastcopy.PcapCopy(decoded, clear, fd, out, 24, 262144, chunk=1 << 20, workers=1, mapped=True)
print(job.run(), job.read, job.matched)
"""


def test_a_pass_whose_file_cannot_be_mapped_at_once_maps_each_chunk(tmp_path):
    """When the part of the file a pass reads cannot be mapped at once (here: an address-space
    limit below its size; also what a file that grew since the pass began has beyond), each
    chunk maps itself: the same bytes as a read pass."""
    one = open(_capture(tmp_path), "rb").read()
    src = tmp_path / "big.pcap"
    with open(src, "wb") as f:
        f.write(one)
        for _ in range(1, -(-(48 << 20) // len(one))):
            f.write(one[24:])
    read = _pass(src, tmp_path / "read.pcap", "tcp", False, chunk=1 << 20, workers=1)
    root = os.path.dirname(os.path.dirname(os.path.abspath(pfilter.__file__)))
    got = subprocess.run([sys.executable, "-c", LIMITED, str(src), str(tmp_path / "limited.pcap"), str(24 << 20), root],
                         capture_output=True, text=True, check=True).stdout.split()
    assert got == ["eof", str(read[1]), str(read[2])]
    assert (tmp_path / "limited.pcap").read_bytes() == read[6]


def _many_small_matches(path, n=60000):
    """n records of 42-byte UDP packets, every tenth to port 53: a tenth of the bytes match, in
    runs of one record (thousands of runs a megabyte)."""
    import dpkt

    def udp(dport):
        ip = dpkt.ip.IP(src=b"\x0a\0\0\x01", dst=b"\x0a\0\0\x02", p=17, data=dpkt.udp.UDP(sport=1, dport=dport))
        ip.len = len(ip)
        return bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip))
    hit, miss = udp(53), udp(9)
    return write_pcap(path, [(hit if i % 10 == 3 else miss, None, None) for i in range(n)])


def test_many_small_runs_are_gathered_and_written_as_they_are(tmp_path):
    """A pass of several mapped workers writes a chunk of many small runs (at least GATHER_RUNS,
    less than 1 / GATHER_SHARE of its bytes) from its worker's buffer in one piece: the same
    output as a read pass, in threads and in the command's forked workers."""
    src = _many_small_matches(tmp_path / "in.pcap")
    want = _pass(src, tmp_path / "read.pcap", "udp port 53", False, chunk=1 << 20, workers=1)
    decoded, clear = _program("udp port 53")
    fd, out = os.open(src, os.O_RDONLY), os.open(tmp_path / "mapped.pcap", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        job = _fastcopy.PcapCopy(decoded, clear, fd, out, 24, 262144, mapped=True, chunk=1 << 20, workers=2,
                                 guess_depth=RESYNC_DEPTH, guess_span=RESYNC_SPAN)
        assert job.run() == "eof"
    finally:
        os.close(fd)
        os.close(out)
    assert job.gathered >= 3 and job.matched == 6000
    assert (tmp_path / "mapped.pcap").read_bytes() == want[-1]
    one = _pass(src, tmp_path / "one.pcap", "udp port 53", True, chunk=1 << 20, workers=1)
    assert one[-1] == want[-1]
    cmd = [sys.executable, "-m", "pfilter", "--quiet", "-j", "2", "-r", str(src), "-w", str(tmp_path / "cli.pcap"),
           "udp port 53"]
    subprocess.run(cmd, check=True)
    assert (tmp_path / "cli.pcap").read_bytes() == open(src, "rb").read(24) + want[-1]
