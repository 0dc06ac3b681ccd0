"""The reader's guarded memory maps (issue 18 item 5): a plain capture file is read through memory
maps, and a file truncated while mapped never kills the process with SIGBUS. The reader survives,
delivers the packets libpcap finds intact in the file as it now is, then raises libpcap's
"truncated dump file" error at the offset after the last of them; batches kept from before the
truncation read zeros where the file is gone. SIGBUS that is not ours still ends the process as
before (the default action, faulthandler's traceback); maps are registered and dropped from many
threads; when every guard slot is taken the reader reads instead of mapping.

Whatever can die of a signal runs in a child process, so a failure is a report, not a dead suite.
"""
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter.capture import reader
from test_capture_formats import build_pcap, epb, idb, shb, write

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not hasattr(reader._scan, "map_file"),
                                reason="the pure-Python build reads with pread and maps nothing")

# 400 packets of 60..1499 bytes (about 330 KB): one reader window of 1 MB maps all of it
MANY = [bytes([i % 251]) * (60 + (i * 37) % 1440) for i in range(400)]
MANY_TIMES = [(1_700_000_000 + i, i) for i in range(400)]


def many_pcapng():
    return shb() + idb() + b"".join(epb("<", 0, (1_700_000_000 + i) * 10**6 + i, p) for i, p in enumerate(MANY))


CAPTURES = {"pcap": lambda: build_pcap(MANY, MANY_TIMES), "pcapng": many_pcapng}


def run_child(code, *args, env=None):
    """Run python code in a child; its CompletedProcess (a signal kills only the child)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'tests'}", **(env or {})))


def record_offsets(fmt):
    """The file offset of every packet record, and the offset after the last one."""
    if fmt == "pcap":
        return list(np.cumsum([24] + [16 + len(p) for p in MANY]))
    first = len(shb()) + len(idb())
    return list(np.cumsum([first] + [len(epb("<", 0, 0, p)) for p in MANY]))


# ----------------------------------------------------------------------------- truncated while mapped

TRUNCATED_WHILE_MAPPED = """
    import faulthandler, subprocess, sys
    CUT = "import os, sys; os.truncate(sys.argv[1], int(sys.argv[2]))"
    if sys.argv[3] == "faulthandler-before":
        faulthandler.enable()           # as under pytest: the guard goes on top of faulthandler
    import pfilter
    path, cut = sys.argv[1], int(sys.argv[2])
    n = 0
    try:
        with pfilter.open(path, window_bytes=1 << 20, batch_packets=16) as cap:
            src = cap._src
            for b in cap:
                n += len(b)
                if n == 16 and sys.argv[3] == "faulthandler-after":
                    faulthandler.enable()   # over the guard: the next scan puts the guard back on top
                if n == 16:             # another process cuts the file (copytruncate) mid-read
                    m = src.map
                    assert m is not None and len(cap._arr) == len(m)    # all of the file in one map
                    subprocess.run([sys.executable, "-c", CUT, path, str(cut)], check=True)
                    cap.batch_packets = 1 << 20         # the next scan runs across the cut
    except pfilter.CaptureFormatError as e:
        print(n, e.offset, src.map_fd is None, m.faulted, str(e))
        sys.exit(0)
    print(n, "no error")
"""


@pytest.mark.parametrize("fmt", sorted(CAPTURES))
@pytest.mark.parametrize("where, handlers", [("page", "faulthandler-before"), ("mid-page", "faulthandler-before"),
                                             ("near-end", "faulthandler-before"), ("page", "none"),
                                             ("page", "faulthandler-after")])
def test_a_file_truncated_while_mapped_ends_like_a_truncated_file(tmp_path, fmt, where, handlers):
    data = CAPTURES[fmt]()
    path = write(tmp_path, f"mapped-{where}-{handlers}.{fmt}", data)
    offsets = record_offsets(fmt)
    # the scanner's reads past the new end fault (SIGBUS, caught), except in the rest of the new
    # last page, which the kernel fills with zeros
    cut = {"page": len(data) // 2 // 4096 * 4096, "mid-page": len(data) // 2 + 5,
           "near-end": len(data) * 9 // 10}[where]
    child = run_child(TRUNCATED_WHILE_MAPPED, path, cut, handlers)
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-800:]}"
    n, offset, unmapped, faulted, message = child.stdout.split(" ", 4)
    assert unmapped == "True", "the reader must have seen the cut and read on with pread"
    if where == "page" or fmt == "pcap":    # (pcapng's scan stops at a zero block in the last page)
        assert faulted == "True", "the scan must have run into the cut inside the map (SIGBUS, caught)"
    # libpcap on the file as it is now: the same intact packets, the same message
    _dlt, _snap, want, want_err = ref.read_capture(str(path))
    assert int(n) == len(want) and 16 < len(want) < len(MANY)
    assert want_err is not None and want_err in message
    assert int(offset) == offsets[len(want)] < cut < offsets[len(want) + 1]


KEPT_BATCH = """
    import sys
    import numpy as np
    import pfilter
    path, cut = sys.argv[1], int(sys.argv[2])
    cap = pfilter.open(path, window_bytes=1 << 20)
    b = next(iter(cap))                 # every packet, in one map of the whole file
    before = [b.packet(i) for i in range(len(b))]
    with open(path, "r+b") as f:
        f.truncate(cut)
    after = [b.packet(i) for i in range(len(b))]
    hits = pfilter.compile("len >= 60").match_batch(b)      # the VM reads the zero pages too
    ends = b.file_offsets + 16 + b.caplen
    intact = int(np.sum(ends <= cut))
    assert after[:intact] == before[:intact], "bytes before the cut changed"
    page = 4096
    gone = [i for i in range(len(b)) if b.file_offsets[i] + 16 >= (cut + page - 1) // page * page]
    assert gone and all(after[i] == bytes(len(after[i])) for i in gone), "bytes past the cut are not zeros"
    print(len(b), intact, int(hits.sum()), len(gone))
"""


def test_a_batch_kept_past_a_truncation_reads_zeros_without_crashing(tmp_path):
    data = build_pcap(MANY, MANY_TIMES)
    path = write(tmp_path, "kept.pcap", data)
    child = run_child(KEPT_BATCH, path, len(data) // 3)
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-800:]}"
    n, intact, hits, gone = map(int, child.stdout.split())
    assert n == len(MANY) and 0 < intact < n and hits == n and gone > 0


def test_a_classify_of_a_file_truncated_while_mapped_gives_the_intact_part(tmp_path):
    data = build_pcap(MANY, MANY_TIMES)
    path = write(tmp_path, "classify.pcap", data)
    code = """
        import subprocess, sys
        import pfilter
        from pfilter.capture import reader
        CUT = "import os, sys; os.truncate(sys.argv[1], int(sys.argv[2]))"
        path, cut = sys.argv[1], int(sys.argv[2])
        scan = reader.Capture._scan_pcap
        calls = [0]
        def cutting(self):
            calls[0] += 1
            if calls[0] == 2:
                subprocess.run([sys.executable, "-c", CUT, path, str(cut)], check=True)
            return scan(self)
        reader.Capture._scan_pcap = cutting
        init = reader.Capture.__init__
        reader.Capture.__init__ = lambda self, p, **o: init(self, p, **dict(o, window_bytes=1 << 20, batch_packets=16))
        try:
            pfilter.classify(path, {"all": "len > 0"})
        except pfilter.CaptureFormatError as e:
            print(int(e.partial.counts[0]), e.offset, str(e))
            sys.exit(0)
        print("no error")
    """
    cut = len(data) // 2 + 3
    child = run_child(code, path, cut)
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-800:]}"
    n, offset, message = child.stdout.split(" ", 2)
    _dlt, _snap, want, want_err = ref.read_capture(str(path))
    assert int(n) == len(want) and want_err in message
    assert int(offset) == record_offsets("pcap")[len(want)]


# ----------------------------------------------------------------------------- SIGBUS that is not ours

# An ASan build reports the foreign SIGBUS these children die of: on their stderr, where the test
# looks for it, not as a report file for scripts/asan.sh to count as a finding.
EXPECTED_REPORT = {"ASAN_OPTIONS": os.environ["ASAN_OPTIONS"] + ":log_path=stderr"} if os.environ.get("ASAN_OPTIONS") else {}


def died_of_sigbus(child):
    """The child ended as a SIGBUS ends a process: killed by the signal, or, in an
    AddressSanitizer build (scripts/asan.sh, whose handler is the one before ours), ASan's report."""
    if "AddressSanitizer: BUS" in child.stderr:
        return child.returncode != 0
    return child.returncode == -signal.SIGBUS


FOREIGN = """
    import faulthandler, mmap, os, signal, sys
    import pfilter
    from pfilter.capture import _reader
    capture, other, how = sys.argv[1], sys.argv[2], sys.argv[3]
    if how == "faulthandler-before":
        faulthandler.enable()
    if how == "ignored":
        signal.signal(signal.SIGBUS, signal.SIG_IGN)
    cap = pfilter.open(capture)
    kept = next(iter(cap))              # a live guarded map: the handler is installed
    if how == "faulthandler-after":
        faulthandler.enable()           # on top of the guard ...
        cap2 = pfilter.open(capture)
        kept2 = next(iter(cap2))        # ... which the next map puts back on top of it
    assert _reader.guard_slots_in_use() >= 1

    def touch_foreign_map():
        fd = os.open(other, os.O_RDWR)
        mm = mmap.mmap(fd, 1 << 16, prot=mmap.PROT_READ)
        os.ftruncate(fd, 100)
        return mm[40000:40010]          # past the end of a map that is not ours: SIGBUS

    print("ready", flush=True)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGBUS)
        print("survived a sent SIGBUS", flush=True)
        sys.exit(0)
    if how == "ignored":
        os.kill(os.getpid(), signal.SIGBUS)
        print("ignored a sent SIGBUS", flush=True)
    touch_foreign_map()
    print("survived a foreign fault", flush=True)
"""


@pytest.mark.parametrize("how", ["default", "faulthandler-before", "faulthandler-after", "kill", "ignored"])
def test_a_sigbus_outside_the_guarded_maps_still_ends_the_process(tmp_path, how):
    capture = write(tmp_path, "a.pcap", build_pcap(MANY, MANY_TIMES))
    other = write(tmp_path, "other.bin", bytes(1 << 16))
    child = run_child(FOREIGN, capture, other, how, env=EXPECTED_REPORT)
    assert child.stdout.startswith("ready")
    assert "survived" not in child.stdout
    assert died_of_sigbus(child), (child.returncode, child.stderr[-800:])
    if how == "ignored":            # a sent SIGBUS stays ignored; a fault never is
        assert "ignored a sent SIGBUS" in child.stdout
    if how.startswith("faulthandler"):
        # faulthandler's report, once, naming the Python function that faulted
        assert child.stderr.count("Fatal Python error: Bus error") == 1, child.stderr[-2000:]
        assert "touch_foreign_map" in child.stderr
    else:
        assert "Fatal Python error" not in child.stderr


def test_without_the_guard_the_same_fault_kills(tmp_path):
    """The control for the tests above: the child's foreign fault really is a SIGBUS."""
    other = write(tmp_path, "other.bin", bytes(1 << 16))
    code = """
        import mmap, os, sys
        fd = os.open(sys.argv[1], os.O_RDWR)
        mm = mmap.mmap(fd, 1 << 16, prot=mmap.PROT_READ)
        os.ftruncate(fd, 100)
        mm[40000:40010]
        print("survived")
    """
    child = run_child(code, other, env=EXPECTED_REPORT)
    assert died_of_sigbus(child) and "survived" not in child.stdout


# ----------------------------------------------------------------------------- maps and their slots

def test_maps_are_released_when_no_batch_holds_them(tmp_path):
    from pfilter.capture import _reader
    path = write(tmp_path, "released.pcap", build_pcap(MANY, MANY_TIMES))
    start = _reader.guard_slots_in_use()
    got, live = [], []
    with pfilter.open(path, window_bytes=32768, batch_packets=8) as cap:
        for b in cap:
            got.extend(b.packet(i) for i in range(len(b)))
            if not live:        # the file is read through a map, as /proc/self/maps shows
                assert str(path) in Path("/proc/self/maps").read_text()
            live.append(_reader.guard_slots_in_use() - start)
            del b
    assert got == MANY
    assert len(live) > 20 and max(live) <= 2        # ~20 windows, at most two maps alive at once
    assert _reader.guard_slots_in_use() == start
    assert str(path) not in Path("/proc/self/maps").read_text()


def test_kept_batches_keep_their_maps_and_stay_intact(tmp_path):
    from pfilter.capture import _reader
    path = write(tmp_path, "kept.pcap", build_pcap(MANY, MANY_TIMES))
    start = _reader.guard_slots_in_use()
    with pfilter.open(path, window_bytes=32768, batch_packets=8) as cap:
        kept = list(cap)
    assert [b.packet(i) for b in kept for i in range(len(b))] == MANY
    assert _reader.guard_slots_in_use() - start > 3
    del kept
    assert _reader.guard_slots_in_use() == start


def test_a_file_object_handed_over_mid_file_is_mapped_from_there(tmp_path):
    data = build_pcap(MANY, MANY_TIMES)
    for junk in (100, 4096, 5000):
        path = write(tmp_path, f"junk{junk}.bin", bytes(junk) + data)
        with open(path, "rb") as f:
            f.seek(junk)
            with pfilter.open(f, window_bytes=16384) as cap:
                got = [(b.packet(i), int(b.file_offsets[i])) for b in cap for i in range(len(b))]
        assert [p for p, _ in got] == MANY
        assert [o for _, o in got] == record_offsets("pcap")[:-1]


def test_when_every_guard_slot_is_taken_the_reader_reads_instead(tmp_path):
    code = """
        import os, sys
        import pfilter
        from pfilter.capture import _reader
        path = sys.argv[1]
        fd = os.open(path, os.O_RDONLY)
        hold = []
        while True:
            m = _reader.map_file(fd, 0, 4096)
            if m is None:
                break
            hold.append(m)
        assert len(hold) == _reader.GUARD_SLOTS - _reader.guard_slots_in_use() + len(hold)
        with pfilter.open(path, window_bytes=32768, batch_packets=8) as cap:
            kept = list(cap)
        assert all(b.data.base is not None for b in kept)
        n = sum(len(b) for b in kept)
        del hold[:10]
        with pfilter.open(path, window_bytes=32768, batch_packets=8) as cap:
            kept2 = list(cap)       # 10 windows mapped, the rest read
        print(len(hold), n, sum(len(b) for b in kept2), _reader.guard_slots_in_use())
    """
    path = write(tmp_path, "full.pcap", build_pcap(MANY, MANY_TIMES))
    child = run_child(code, path)
    assert child.returncode == 0, child.stderr[-800:]
    held, n, n2, in_use = map(int, child.stdout.split())
    from pfilter.capture import _reader
    assert held + 10 >= _reader.GUARD_SLOTS - 2 and n == n2 == len(MANY) and in_use >= held


THREADS = """
    import os, sys, threading
    import numpy as np
    from pfilter.capture import _reader
    path = sys.argv[1]
    size = os.path.getsize(path)
    data = np.fromfile(path, np.uint8)
    fd = os.open(path, os.O_RDONLY)
    errors, held = [], []
    barrier = threading.Barrier(9)

    def churn(seed):
        rng = np.random.default_rng(seed)
        m = None
        try:
            for _ in range(300):
                first = int(rng.integers(0, size // 4096)) * 4096
                length = int(rng.integers(1, size - first + 1))
                m = _reader.map_file(fd, first, length)
                a = np.frombuffer(m, np.uint8)
                if not np.array_equal(a, data[first:first + length]):
                    errors.append(f"map at {first} of {length} bytes differs")
            m = _reader.map_file(fd, 0, size)       # each thread keeps one map while the file is cut
        except Exception as e:
            errors.append(repr(e))
        barrier.wait()
        barrier.wait()
        if m is not None:
            a = np.frombuffer(m, np.uint8)
            if int(a[size // 2:].sum()) != 0 or not m.faulted:
                errors.append("a read past the cut is not zeros")
            if not np.array_equal(a[:size // 4], data[:size // 4]):
                errors.append("a read before the cut changed")

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    barrier.wait()
    os.truncate(path, size // 2 - 4096)
    barrier.wait()
    for t in threads:
        t.join()
    print(len(errors), _reader.guard_slots_in_use(), *errors[:3])
"""


def test_maps_made_and_dropped_in_threads_stay_guarded(tmp_path):
    rng = np.random.default_rng(5)
    path = write(tmp_path, "threads.bin", rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    child = run_child(THREADS, path)
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-800:]}"
    assert child.stdout.split()[:2] == ["0", "0"], child.stdout


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_regular_file_whose_size_says_nothing_is_read_not_mapped():
    """/proc files are regular files of size 0 that do hold bytes: nothing to map, so they are
    read (here: not a capture, and said so, rather than an empty file)."""
    with pytest.raises(pfilter.CaptureFormatError, match="unknown file format"):
        pfilter.open("/proc/self/status")
