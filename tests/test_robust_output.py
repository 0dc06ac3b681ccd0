"""Outputs and the -r/-w path under stress (issues 18.8, 18.11, 18.15-18.18 and 19): FIFO inputs
are opened once; several inputs give an output whose snapshot length covers every record;
replacing a file keeps its mode and owner, writes through a symbolic link and reaches the disk
first; no temporary name exists while writing, so no signal leaves one; long output names work;
SIGINT/SIGTERM/SIGHUP keep the packets written as a valid capture; a closed pipe is quiet; a
full disk never leaves a damaged or truncated output; progress=True draws a bar; file-system
failures are OSError subclasses. Every output is read back with libpcap.
"""
import os
import resource
import signal
import stat
import struct
import subprocess
import sys
import threading
import time

import pytest

import pfilter
import reference as ref
from pfilter.capture import files

SAMPLE = ref.ROOT / "data" / "sample.pcap"
PFILTER = [sys.executable, "-m", "pfilter"]


def eth_ipv4(proto, size, seq):
    """An Ethernet/IPv4 packet of `size` bytes (protocol 6 or 17), its payload marked by seq."""
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, size - 14, seq & 0xFFFF, 0, 64, proto, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    l4 = struct.pack(">HHI", 1000 + seq % 7, 53 if proto == 17 else 80, seq)
    body = bytes(12) + b"\x08\x00" + ip + l4
    return body + bytes((seq + i) & 0xFF for i in range(size - len(body)))


def pcap_bytes(packets, snaplen=262144, start=0):
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1)]
    for i, p in enumerate(packets):
        out.append(struct.pack("<IIII", start + i, i % 1000000, len(p), len(p)) + p)
    return b"".join(out)


def packets(n, sizes=(60, 200, 1000), seed=0):
    return [eth_ipv4(17 if (i + seed) % 3 else 6, sizes[(i + seed) % len(sizes)], i + seed) for i in range(n)]


def write_pcap(path, pkts, snaplen=262144):
    path.write_bytes(pcap_bytes(pkts, snaplen))
    return path


def libpcap_packets(path):
    """The packets libpcap reads from path (bytes only); fails on a damaged file."""
    _dlt, _snap, pkts, err = read_capture(path)
    assert err is None, err
    return [p for p, _w, _t in pkts]


def read_capture(path):
    """ref.read_capture, not cached: these tests rewrite the same names."""
    return ref.read_capture.__wrapped__(str(path))


def is_udp(p):
    return p[23] == 17


@pytest.fixture(params=["fast", "general"])
def path_kind(request, monkeypatch):
    """Both filter_file paths: the numpy-free fast path and the general one."""
    if request.param == "general":
        monkeypatch.setenv("PFILTER_NO_FASTPATH", "1")
    return request.param


# -- 18.8: a FIFO as input is opened once ----------------------------------------------------------


def feed_fifo(fifo, data, outcome):
    def run():
        try:
            with open(fifo, "wb") as f:
                f.write(data)
            outcome.append("ok")
        except OSError as e:          # the reader went away: what opening twice did
            outcome.append(repr(e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("how", ["api", "cli-w", "cli-count"])
def test_fifo_input_is_read_whole_once_without_hanging(tmp_path, how):
    pkts = packets(3000)
    data = pcap_bytes(pkts)
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out.pcap"
    if how == "api":
        cmd = [sys.executable, "-c", "import sys, pfilter; s = pfilter.filter_file(sys.argv[1], sys.argv[2], "
               "'udp'); print(s.written)", str(fifo), str(out)]
    elif how == "cli-w":
        cmd = PFILTER + ["--quiet", "-r", str(fifo), "-w", str(out), "udp"]
    else:
        cmd = PFILTER + ["--quiet", "-r", str(fifo), "--count", "udp"]
    outcome = []
    writer = feed_fifo(fifo, data, outcome)
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    writer.join(10)
    want = [p for p in pkts if is_udp(p)]
    assert run.returncode == 0, run.stderr
    assert outcome == ["ok"]                       # the writer delivered everything to one reader
    if how == "cli-count":
        assert run.stdout == f"{len(want)} packets\n"
    else:
        assert libpcap_packets(out) == want


# -- 18.11: several inputs, one output whose snapshot length covers every record -----------------


def test_several_inputs_get_the_largest_snapshot_length_and_lose_no_byte(tmp_path, path_kind):
    small = write_pcap(tmp_path / "small.pcap", packets(50, sizes=(60, 100)), snaplen=100)
    large = write_pcap(tmp_path / "large.pcap", packets(50, sizes=(1500, 900), seed=1), snaplen=2000)
    for order in ([small, large], [large, small]):
        out = tmp_path / "out.pcap"
        stats = pfilter.filter_file(order, out, "")
        want = libpcap_packets(order[0]) + libpcap_packets(order[1])
        assert libpcap_packets(out) == want and stats.written == 100
        assert read_capture(out)[1] == 2000
        tcpdump = subprocess.run([ref.tcpdump(), "-r", str(out), "-w", str(tmp_path / "td.pcap")],
                                 capture_output=True)
        assert tcpdump.returncode == 0 and libpcap_packets(tmp_path / "td.pcap") == want
    single = tmp_path / "single.pcap"
    pfilter.filter_file(small, single, "")
    assert read_capture(single)[1] == 100     # one input: its own, as tcpdump writes


def test_cli_several_inputs_one_of_them_a_fifo_gets_the_link_type_maximum(tmp_path):
    small = write_pcap(tmp_path / "small.pcap", packets(20, sizes=(60, 100)), snaplen=100)
    big = packets(20, sizes=(1500,), seed=2)
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    outcome = []
    writer = feed_fifo(fifo, pcap_bytes(big, snaplen=1500), outcome)
    out = tmp_path / "out.pcap"
    run = subprocess.run(PFILTER + ["--quiet", "-r", str(small), "-r", str(fifo), "-w", str(out)],
                         capture_output=True, text=True, timeout=60)
    writer.join(10)
    assert run.returncode == 0, run.stderr
    assert read_capture(out)[1] == 262144     # the FIFO's header could not be read first
    assert libpcap_packets(out) == libpcap_packets(small) + big


# -- 18.15 / 18.16: replacing a file --------------------------------------------------------------


def test_replacing_a_file_keeps_its_mode_and_owner(tmp_path, path_kind):
    src = write_pcap(tmp_path / "in.pcap", packets(200))
    out = tmp_path / "out.pcap"
    out.write_bytes(b"old")
    os.chmod(out, 0o600)
    owner = (os.getuid(), os.getgid())
    if os.geteuid() == 0:
        owner = (4242, 4343)
        os.chown(out, *owner)
    pfilter.filter_file(src, out, "udp")
    st = os.stat(out)
    assert stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == owner
    assert libpcap_packets(out) == [p for p in packets(200) if is_udp(p)]
    new = tmp_path / "new.pcap"
    pfilter.filter_file(src, new, "udp")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(new).st_mode) == 0o666 & ~umask     # a new file: as any new file


def test_a_symlinked_output_is_written_through(tmp_path, path_kind):
    src = write_pcap(tmp_path / "in.pcap", packets(100))
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "target.pcap"
    target.write_bytes(b"old")
    link = tmp_path / "link.pcap"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.pcap"
    dangling.symlink_to(tmp_path / "real" / "created.pcap")
    want = [p for p in packets(100) if is_udp(p)]
    for name in (link, dangling):
        pfilter.filter_file(src, name, "udp")
        assert name.is_symlink() and libpcap_packets(name) == want
    assert libpcap_packets(target) == want and libpcap_packets(tmp_path / "real" / "created.pcap") == want
    assert sorted(os.listdir(tmp_path / "real")) == ["created.pcap", "target.pcap"]


def test_the_new_file_reaches_the_disk_before_it_replaces_an_existing_one(tmp_path, monkeypatch, path_kind):
    src = write_pcap(tmp_path / "in.pcap", packets(100))
    events = []
    real_fsync, real_replace, real_link = os.fsync, os.replace, os.link
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda *a, **k: (events.append("replace"), real_replace(*a, **k))[1])
    monkeypatch.setattr(os, "link", lambda *a, **k: (events.append("link"), real_link(*a, **k))[1])
    out = tmp_path / "out.pcap"
    # cache=False: the compiled-program cache names its own entries (os.replace); only the
    # output's steps are recorded here
    pfilter.filter_file(src, out, "udp", cache=False)
    assert events == ["link"]                      # a new name: linked in, no fsync (fast case)
    events.clear()
    pfilter.filter_file(src, out, "tcp", cache=False)
    assert events == ["fsync", "link", "replace"]  # over an existing file: on disk first
    assert libpcap_packets(out) == [p for p in packets(100) if not is_udp(p)]


# -- 18.17 / 18.18: no temporary name, short names -------------------------------------------------


@pytest.mark.parametrize("unnamed", [True, False])
def test_no_name_exists_while_writing_and_none_is_left_after_failure(tmp_path, monkeypatch, unnamed):
    monkeypatch.setattr(files, "USE_O_TMPFILE", unnamed)
    src = write_pcap(tmp_path / "in.pcap", packets(3000))
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "o.pcap"
    seen = []

    def look(batch, idx):
        seen.append(sorted(os.listdir(tmp_path / "out")))
        raise RuntimeError("stop")
    with pytest.raises(RuntimeError):
        pfilter.filter_file(src, out, "udp", on_batch=look, batch_packets=100)
    if unnamed:
        assert seen == [[]]                        # O_TMPFILE: nothing has a name until commit
    else:
        assert len(seen[0]) == 1 and len(seen[0][0]) <= 20 and seen[0][0].startswith(".pf")
    assert os.listdir(tmp_path / "out") == []      # the failure left nothing


@pytest.mark.parametrize("unnamed", [True, False])
def test_output_names_of_any_allowed_length_work(tmp_path, monkeypatch, path_kind, unnamed):
    monkeypatch.setattr(files, "USE_O_TMPFILE", unnamed)
    src = write_pcap(tmp_path / "in.pcap", packets(100))
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / ("x" * 250 + ".pcap")    # 255 bytes, the limit of a name
    for expr in ("udp", "tcp"):                        # new, then replacing
        pfilter.filter_file(src, out, expr)
        assert libpcap_packets(out) == [p for p in packets(100) if is_udp(p) == (expr == "udp")]
    assert os.listdir(tmp_path / "out") == [out.name]


def start_stalled(tmp_path, args, data, stdin=False):
    """pfilter reading `data` from a FIFO (or its standard input) whose writer then stalls."""
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    if stdin:
        proc = subprocess.Popen(PFILTER + ["-r", "-"] + args, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                cwd=out_dir)
        writer = proc.stdin
    else:
        fifo = tmp_path / "in.fifo"
        os.mkfifo(fifo)
        proc = subprocess.Popen(PFILTER + ["-r", str(fifo)] + args, stderr=subprocess.PIPE, cwd=out_dir)
        writer = open(fifo, "wb")
    writer.write(data)
    writer.flush()
    return proc, writer


def wait_for_progress(proc, out_dir, timeout=30):
    """Until pfilter has read past its first window (it writes nothing before the end; its
    progress shows in /proc as the input it consumed): a fixed pause, checked alive."""
    deadline = time.monotonic() + timeout
    time.sleep(1.0)
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            io = open(f"/proc/{proc.pid}/io").read()
            if int(io.split("rchar: ")[1].split()[0]) > 8_000_000:
                return
        except (OSError, IndexError, ValueError):
            return
        time.sleep(0.1)


@pytest.mark.parametrize("sig, stdin", [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGINT, False),
                                        (signal.SIGINT, True)])
def test_a_signal_keeps_the_packets_written_as_a_valid_capture(tmp_path, sig, stdin):
    if os.environ.get("PFILTER_SANITIZED") == "1" and sig != signal.SIGINT:
        # (scripts/asan.sh: the native code a signal interrupts is the same for every signal;
        # the SIGINT cases run it, from a file and from standard input)
        pytest.skip("under the sanitizers: SIGINT stands for every signal")
    pkts = packets(12000, sizes=(1000,))
    data = pcap_bytes(pkts)
    proc, writer = start_stalled(tmp_path, ["-w", "kept.pcap", "udp"], data[:10_000_000], stdin)
    try:
        wait_for_progress(proc, tmp_path / "out")
        proc.send_signal(sig)
        err = proc.communicate(timeout=30)[1].decode()
    finally:
        writer.close()
        proc.kill()
    lines = err.splitlines()
    assert proc.returncode == 128 + sig
    assert len(lines) == 2 and lines[1].startswith(f"pfilter: interrupted by {signal.Signals(sig).name}: ")
    kept = libpcap_packets(tmp_path / "out" / "kept.pcap")
    want = [p for p in pkts if is_udp(p)]
    assert 0 < len(kept) < len(want) and kept == want[:len(kept)]
    assert f" {len(kept)} packets written to kept.pcap" in lines[1]
    assert os.listdir(tmp_path / "out") == ["kept.pcap"]      # and nothing else, hidden or not


@pytest.mark.parametrize("stdin", [False, True], ids=["file", "stdin"])
def test_two_signals_at_once_still_keep_the_packets_written(tmp_path, stdin):
    """Ctrl-C pressed twice, or `timeout -s INT` with a process group: the second signal lands
    while the first is handled (the handler once imported the signal module to name it, and a
    second signal inside that import ended the run with an AttributeError and no output)."""
    pkts = packets(12000, sizes=(1000,))
    proc, writer = start_stalled(tmp_path, ["-w", "kept.pcap", "udp"], pcap_bytes(pkts)[:10_000_000], stdin)
    try:
        wait_for_progress(proc, tmp_path / "out")
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=30)[1].decode()
    finally:
        writer.close()
        proc.kill()
    # 130, or ended by SIGINT (-2): a second signal that comes once the first has been handled
    # and said (the output named) ends the interpreter as an uncaught Ctrl-C does; a shell sees
    # 130 either way
    assert proc.returncode in (130, -signal.SIGINT), err
    assert "internal error" not in err and "Traceback" not in err
    assert err.splitlines()[-1].startswith("pfilter: interrupted by SIGINT: ")
    kept = libpcap_packets(tmp_path / "out" / "kept.pcap")
    want = [p for p in pkts if is_udp(p)]
    assert 0 < len(kept) < len(want) and kept == want[:len(kept)]
    assert os.listdir(tmp_path / "out") == ["kept.pcap"]


def test_a_thread_whose_end_was_interrupted_is_still_seen_to_end():
    """fastpath._start_thread's ended(): a KeyboardInterrupt between taking the finished
    thread's sentinel and giving it back leaves it held here; the wait after it (the pass's
    clean-up after Ctrl-C) used to wait for it forever."""
    from pfilter.capture import fastpath
    import _thread
    sentinels = []
    real = _thread._set_sentinel

    def keep():
        lock = real()
        sentinels.append(lock)
        return lock
    _thread._set_sentinel = keep
    try:
        ended = fastpath._start_thread(lambda: None)
    finally:
        _thread._set_sentinel = real
    deadline = time.monotonic() + 10
    while not sentinels[0].acquire(True, 0.1):      # what the interrupted ended() left behind
        assert time.monotonic() < deadline
    started = time.monotonic()
    assert ended(None) and time.monotonic() - started < 5
    assert ended(0) and ended(None)


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("where", ["mid-record", "record-boundary"])
def test_an_input_cut_while_the_fast_path_reads_it_is_not_taken_for_its_end(tmp_path, monkeypatch, workers, where):
    """The input is cut while the fast path's pass runs (another process truncating it): a
    pass took a chunk starting past the new end for the end of the file and wrote a valid but
    shorter capture, exit 0, or wrote pages the cut emptied. Whatever the pass made of it, a
    file shorter at the pass's end than at its start is filtered again by the general path, as
    it is now: the records before the cut, and a cut record said as tcpdump says it. (Here the
    cut comes as the pass ends, the one moment a test can choose.)"""
    from pfilter.capture import fastpath
    pkts = packets(12000, sizes=(1000,))
    src = write_pcap(tmp_path / "in.pcap", pkts)
    cut = 24 + 5000 * (16 + 1000) + (300 if where == "mid-record" else 0)
    real = fastpath._run

    def cutting(job, *a, **kw):
        status = real(job, *a, **kw)
        os.truncate(src, cut)
        return status
    monkeypatch.setattr(fastpath, "_run", cutting)
    out = tmp_path / "out.pcap"
    if where == "mid-record":
        with pytest.raises(pfilter.CaptureFormatError, match=f"offset {cut - 300}: truncated dump file"):
            pfilter.filter_file(src, out, "udp", workers=workers)
    else:
        stats = pfilter.filter_file(src, out, "udp", workers=workers)
        assert stats.read == 5000
    want = [p for p in pkts[:5000] if is_udp(p)]
    assert libpcap_packets(out) == want


def test_sigkill_leaves_no_file_and_the_old_output_intact(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.pcap").write_bytes(b"old contents")
    proc, writer = start_stalled(tmp_path, ["-w", "old.pcap", "udp"], pcap_bytes(packets(12000, sizes=(1000,)))[:10_000_000])
    try:
        wait_for_progress(proc, tmp_path / "out")
        proc.kill()
        proc.wait(30)
    finally:
        writer.close()
    assert os.listdir(tmp_path / "out") == ["old.pcap"]
    assert (tmp_path / "out" / "old.pcap").read_bytes() == b"old contents"


def test_an_interruption_in_the_api_keeps_whole_packets_with_the_stats(tmp_path, path_kind):
    src = write_pcap(tmp_path / "in.pcap", packets(5000))
    out = tmp_path / "out.pcap"
    calls = []

    def interrupt(done, total, stats):
        calls.append(done)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt) as e:
        pfilter.filter_file(src, out, "udp", progress=interrupt)
    kept = libpcap_packets(out)
    assert calls and kept == [p for p in packets(5000) if is_udp(p)][:len(kept)]
    assert e.value.stats.written == len(kept)
    assert sorted(os.listdir(tmp_path)) == ["in.pcap", "out.pcap"]


def _on_ext4(path):
    """Whether path is on ext4, where the fast path allocates its output's blocks ahead."""
    run = subprocess.run(["stat", "-f", "-c", "%t", str(path)], capture_output=True, text=True, check=True)
    return run.stdout.strip() == "ef53"


@pytest.mark.parametrize("workers, inputs", [(1, 1), (2, 1), (2, 2)])
def test_an_interrupted_fast_pass_keeps_whole_records_and_no_allocated_tail(tmp_path, monkeypatch, workers, inputs):
    # The fast path allocates the output's blocks ahead, as long as the input, where that pays
    # (ext4: AtomicFile.preallocate) and cuts the file to what was written when it commits:
    # interrupted in the middle of the pass, the output still ends after its last whole record.
    from pfilter.capture import _fastcopy
    pkts = packets(100000, sizes=(200,))      # 21 MB: watched by a helper thread (SMALL_FILE_BYTES)
    src = write_pcap(tmp_path / "in.pcap", pkts)
    out = tmp_path / "out.pcap"
    allocated, real = [], _fastcopy.preallocate

    def preallocate(fd, at, length):
        allocated.append(real(fd, at, length))
        return allocated[-1]
    monkeypatch.setattr(_fastcopy, "preallocate", preallocate)
    # every packet (no port of the list is theirs) runs the whole unoptimized program of 24,000
    # instructions: a pass long enough (a second) to interrupt after its first output
    slow = pfilter.compile(" or ".join(f"tcp port {p}" for p in range(2000, 3000)) + " or udp", optimize=False)

    def interrupt(done, total, stats):
        if stats.matched:
            raise KeyboardInterrupt
    sources = [src] if inputs == 1 else [src, write_pcap(tmp_path / "in2.pcap", pkts)]
    with pytest.raises(KeyboardInterrupt) as e:
        pfilter.filter_file(sources, out, slow, progress=interrupt, workers=workers)
    kept = libpcap_packets(out)
    want = [p for p in pkts * inputs if is_udp(p)]
    assert 0 < len(kept) < len(want) and kept == want[:len(kept)]
    assert e.value.stats.written == len(kept)
    assert out.stat().st_size == 24 + sum(16 + len(p) for p in kept)
    assert allocated == [_on_ext4(tmp_path)]


def test_preallocation_takes_back_what_it_could_not_finish(tmp_path):
    # Past the file-size limit (as past the free space) the allocation fails: the file keeps its
    # size and the writes that follow allocate as they go (and fail where the limit is).
    code = ("import os, resource, sys\n"
            "from pfilter.capture import _fastcopy\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)\n"
            "os.write(fd, bytes(24))\n"
            "print(_fastcopy.preallocate(fd, 24, 10_000), _fastcopy.preallocate(fd, 10_024, 1_000_000),"
            " os.fstat(fd).st_size)\n")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "o.pcap")], capture_output=True, text=True,
                         cwd=ref.ROOT)
    assert run.returncode == 0, run.stderr
    first, second, size = run.stdout.split()
    ext4 = _on_ext4(tmp_path)
    assert (first, second, int(size)) == (str(ext4), "False", 10_024 if ext4 else 24)


# -- 19: closed pipes, full disks -----------------------------------------------------------------


def test_a_closed_output_pipe_ends_quietly_as_tcpdump(tmp_path):
    ours = subprocess.Popen(PFILTER + ["-r", str(SAMPLE), "-w", "-", "udp"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    reader = subprocess.run([ref.tcpdump(), "-r", "-", "-c1"], stdin=ours.stdout, capture_output=True)
    ours.stdout.close()
    err = ours.communicate(timeout=60)[1].decode()
    theirs = subprocess.Popen([ref.tcpdump(), "-r", str(SAMPLE), "-w", "-", "udp"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    subprocess.run([ref.tcpdump(), "-r", "-", "-c1"], stdin=theirs.stdout, capture_output=True)
    theirs.stdout.close()
    theirs_err = theirs.communicate(timeout=60)[1].decode()
    assert reader.returncode == 0 and len(reader.stdout.splitlines()) == 1
    assert ours.returncode == theirs.returncode == 0
    assert "Broken pipe" not in err and "Traceback" not in err
    assert len(err.splitlines()) == len(theirs_err.splitlines()) == 1    # "reading from file ..."


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
@pytest.mark.parametrize("how", ["dev-full", "file-size-limit"])
def test_a_full_disk_gives_one_line_and_leaves_the_old_output_intact(tmp_path, path_kind, how, fmt):
    src = write_pcap(tmp_path / "in.pcap", packets(3000))
    if fmt == "pcapng":             # (its own fast path: pfilter.capture._fastcopy.NgCopy)
        pfilter.filter_file(src, tmp_path / "in.pcapng", "")
        src = tmp_path / "in.pcapng"
    (tmp_path / "out").mkdir()
    old = tmp_path / "out" / "o.pcap"
    old.write_bytes(b"old contents")
    target = "/dev/full" if how == "dev-full" else str(old)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    run = subprocess.run(PFILTER + ["--quiet", "-r", str(src), "-w", target, ""], capture_output=True, text=True,
                         preexec_fn=limit if how == "file-size-limit" else None, timeout=60)
    message = "No space left on device" if how == "dev-full" else "File too large"
    assert run.returncode == 1 and run.stderr == f"pfilter: {target}: {message}\n"
    assert old.read_bytes() == b"old contents" and os.listdir(tmp_path / "out") == ["o.pcap"]


def test_file_system_failures_are_oserror_subclasses(tmp_path, path_kind):
    src = write_pcap(tmp_path / "in.pcap", packets(100))
    with pytest.raises(FileNotFoundError) as e:
        pfilter.filter_file(src, tmp_path / "missing" / "o.pcap", "udp")
    assert e.value.filename == str(tmp_path / "missing" / "o.pcap")
    (tmp_path / "dir.pcap").mkdir()
    with pytest.raises(IsADirectoryError):
        pfilter.filter_file(src, tmp_path / "dir.pcap", "udp")
    with pytest.raises(OSError) as e:
        pfilter.filter_file(src, "/dev/full", "udp")
    assert e.value.errno == 28 and not isinstance(e.value, pfilter.FilterError)
    with pytest.raises(FileNotFoundError):
        pfilter.filter_file(tmp_path / "missing.pcap", tmp_path / "o.pcap", "udp")
    assert not (tmp_path / "o.pcap").exists()
    with pytest.raises(pfilter.FilterError, match="refusing to overwrite the input"):
        pfilter.filter_file(src, src, "udp")           # a usage error stays a FilterError
    import io
    with pytest.raises(pfilter.FilterError, match="dst: a file name, '-' .* not BytesIO"):
        pfilter.filter_file(src, io.BytesIO(), "udp")
    with pytest.raises(pfilter.FilterError, match="cut packets to: 0 .*truncate="):
        pfilter.filter_file(src, None, "udp", truncate=0)


def test_a_file_its_user_may_not_write_is_not_replaced(tmp_path):
    """The new output is renamed over the old one, which only the directory's permission
    allows: a file the user may not write (mode 444) is refused as tcpdump's open of it fails
    ('Permission denied', status 1), left as it was, with its owner. (Run without root's power to
    write any file: setpriv drops it.)"""
    if os.geteuid() == 0 and subprocess.run(["setpriv", "--bounding-set", "-dac_override", "true"]).returncode:
        pytest.skip("setpriv cannot drop root's file access override here")
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    kept = tmp_path / "kept.pcap"
    kept.write_bytes(b"old")
    kept.chmod(0o444)
    theirs = subprocess.run(prefix + [ref.tcpdump(), "-r", str(SAMPLE), "-w", str(kept), "tcp"],
                            capture_output=True, text=True)
    ours = subprocess.run(prefix + [sys.executable, "-m", "pfilter", "-r", str(SAMPLE), "-w", str(kept), "tcp"],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ref.ROOT)))
    said = theirs.stderr.splitlines()[-1].removeprefix("tcpdump: ")
    assert said.endswith("Permission denied") and theirs.returncode == ours.returncode == 1
    assert ours.stderr.splitlines()[-1] == f"pfilter: {said}" and kept.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["kept.pcap"]


def test_an_output_on_a_read_only_file_system_says_so_as_tcpdump(tmp_path):
    """An existing output on a read-only mount: 'Read-only file system' (EROFS), as tcpdump says
    and as a new name there says, not 'Permission denied'; the old file left as it was."""
    if os.geteuid() != 0:
        ref._missing("root, to mount a read-only tmpfs")
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ro)]).returncode:
        ref._missing("mount -t tmpfs")
    try:
        (ro / "o.pcap").write_bytes(b"old")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        for name in ("o.pcap", "new.pcap"):
            theirs = subprocess.run(["tcpdump", "-r", str(SAMPLE), "-w", str(ro / name), "tcp"],
                                    capture_output=True, text=True)
            ours = subprocess.run([sys.executable, "-m", "pfilter", "-r", str(SAMPLE), "-w", str(ro / name), "tcp"],
                                  capture_output=True, text=True)
            assert theirs.stderr.splitlines()[-1].endswith("Read-only file system")
            assert ours.returncode == 1 and ours.stderr.splitlines()[-1] == f"pfilter: {ro / name}: Read-only file system"
        with pytest.raises(OSError) as e:
            pfilter.filter_file(SAMPLE, ro / "o.pcap", "tcp")
        assert e.value.errno == 30 and (ro / "o.pcap").read_bytes() == b"old"
    finally:
        subprocess.run(["umount", str(ro)])


def test_a_file_no_new_file_can_be_made_beside_is_named_with_its_directory(tmp_path):
    """/proc/version: opening it for writing works (as root), but no file can be made in /proc
    to replace it: the message says so, not 'No such file or directory' of a file that is there."""
    if not os.path.isfile("/proc/version") or not os.access("/proc/version", os.W_OK):
        pytest.skip("needs /proc/version writable (root)")
    with pytest.raises(OSError) as e:
        pfilter.filter_file(str(SAMPLE), "/proc/version", "tcp")
    assert e.value.filename == "/proc/version" and e.value.strerror.startswith("cannot make a new file in /proc: ")


def test_bytes_paths_work(tmp_path, path_kind):
    src = write_pcap(tmp_path / "in.pcap", packets(100))
    stats = pfilter.filter_file(os.fsencode(src), os.fsencode(tmp_path / "o.pcap"), "udp")
    assert libpcap_packets(tmp_path / "o.pcap") == [p for p in packets(100) if is_udp(p)]
    assert stats.written == len(libpcap_packets(tmp_path / "o.pcap"))
    pfilter.filter_file([os.fsencode(src)], os.fsencode(tmp_path / "o.pcapng"), "udp")
    assert libpcap_packets(tmp_path / "o.pcapng") == libpcap_packets(tmp_path / "o.pcap")


# -- 19: progress ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tqdm", [True, False])
def test_progress_true_draws_a_bar_on_stderr(tmp_path, capsys, monkeypatch, path_kind, tqdm):
    if not tqdm:
        monkeypatch.setitem(sys.modules, "tqdm", None)      # the built-in bar
    else:
        pytest.importorskip("tqdm")
    src = write_pcap(tmp_path / "in.pcap", packets(3000))
    stats = pfilter.filter_file(src, tmp_path / "o.pcap", "udp", progress=True)
    err = capsys.readouterr().err
    assert stats.written == sum(1 for p in packets(3000) if is_udp(p))
    assert "pfilter" in err and ("%" in err or "B" in err)


def test_progress_callable_sees_the_whole_input(tmp_path, path_kind):
    src = write_pcap(tmp_path / "in.pcap", packets(3000))
    seen = []
    pfilter.filter_file(src, tmp_path / "o.pcap", "udp", progress=lambda d, t, s: seen.append((d, t)))
    assert seen and seen[-1][1] == os.path.getsize(src)
    assert seen[-1][0] == os.path.getsize(src)          # ends at 100%
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:]))
    with pytest.raises(pfilter.FilterError, match="progress"):
        pfilter.filter_file(src, tmp_path / "o.pcap", "udp", progress="yes")


@pytest.mark.parametrize("how", ["merge", "window"])
def test_progress_of_a_merge_and_of_a_scanned_window(tmp_path, how):
    """--merge and a time window scanned (a pcapng input) report progress too, up to the whole
    input (all inputs, for a merge)."""
    from pfilter.capture.writer import PcapngWriter
    a = write_pcap(tmp_path / "a.pcap", packets(3000))
    b = write_pcap(tmp_path / "b.pcap", packets(2000))
    seen = []
    if how == "merge":
        sources, options = [a, b], dict(merge=True)
    else:
        ng = tmp_path / "in.pcapng"
        with pfilter.open(a) as cap, PcapngWriter(str(ng), linktype=cap.linktype) as w:
            for batch in cap:
                w.write(batch)
        first = next(iter(pfilter.open(ng))).timestamps[0]
        sources, options = [ng], dict(after=int(first) + 1)
    stats = pfilter.filter_file(sources, tmp_path / "o.pcap", "udp", progress=lambda d, t, s: seen.append((d, t)),
                                **options)
    total = sum(os.path.getsize(s) for s in sources)
    assert stats.written > 0 and len(seen) >= 2 and seen[-1] == (total, total)
    assert all(x[0] <= y[0] for x, y in zip(seen, seen[1:]))


def test_cli_progress_option_shows_the_bar_off_a_terminal(tmp_path):
    src = write_pcap(tmp_path / "in.pcap", packets(3000))
    env = dict(os.environ, PFILTER_NO_FASTPATH="1")
    run = subprocess.run(PFILTER + ["--quiet", "--progress", "-r", str(src), "-w", str(tmp_path / "o.pcap"), "udp"],
                         capture_output=True, text=True, env=env, timeout=60)
    quiet = subprocess.run(PFILTER + ["--quiet", "-r", str(src), "-w", str(tmp_path / "p.pcap"), "udp"],
                           capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == quiet.returncode == 0
    assert "pfilter" in run.stderr and quiet.stderr == ""


@pytest.mark.parametrize("how", ["stdin", "stdin-rotated", "stdout-append", "stdout-readwrite", "classify-split"])
def test_standard_streams_on_the_input_never_overwrite_it(tmp_path, how):
    """`-r - < in.pcap -w in.pcap` (or a -C name equal to standard input's file, a --split
    output) and `-w - >> in.pcap` / `1<> in.pcap` would replace or corrupt the input: refused
    with one line, the input untouched (standard input and output are checked by what they are
    open on, as any other input)."""
    src = write_pcap(tmp_path / "in.pcap", packets(3000))     # (over 1 MB: -C 1 makes o.pcap1)
    before = src.read_bytes()
    stdin, stdout = subprocess.DEVNULL, subprocess.PIPE
    if how == "stdin":
        argv, stdin = ["-r", "-", "-w", str(src), "udp"], open(src, "rb")
    elif how == "stdin-rotated":
        rotated = tmp_path / "o.pcap1"
        rotated.write_bytes(before)
        src, argv, stdin = rotated, ["-r", "-", "-w", str(tmp_path / "o.pcap"), "-C", "1", ""], open(rotated, "rb")
    elif how == "classify-split":
        rules = tmp_path / "rules.txt"
        rules.write_text("in: udp\n")
        argv = ["classify", "-r", "-", "-R", str(rules), "--split", str(tmp_path / "{rule}.pcap")]
        stdin = open(src, "rb")
    else:
        argv = ["-r", str(src), "-w", "-", "udp"]
        stdout = open(src, "ab" if how == "stdout-append" else "r+b")
    with stdin if stdin is not subprocess.DEVNULL else open(os.devnull, "rb") as i:
        run = subprocess.run(PFILTER + ["--quiet"] * (not argv[0] == "classify") + argv, stdin=i,
                             stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60)
    if stdout is not subprocess.PIPE:
        stdout.close()
    assert run.returncode == 1 and run.stderr.count("\n") == 1 and "refusing to overwrite" in run.stderr, run.stderr
    assert src.read_bytes() == before


def test_an_output_never_replaces_a_capture_this_process_reads(tmp_path):
    """A Writer (pfilter.open(path, "w")) over a capture still open for reading in this process
    is refused (the README's read-filter-write loop with one name twice); once the reader is
    closed or read to its end the name may be written."""
    src = write_pcap(tmp_path / "in.pcap", packets(300))
    before = src.read_bytes()
    prog = pfilter.compile("udp")
    with pfilter.open(src) as cap:
        with pytest.raises(pfilter.FilterError, match="refusing to overwrite the input file"):
            with pfilter.open(src, "w") as out:
                for batch in cap:
                    out.write(batch, prog.match_batch(batch))
    assert src.read_bytes() == before and str(src) not in files._being_read().values()
    cap = pfilter.open(src)
    batches = list(cap)        # read to its end, not closed: no longer an input
    with pfilter.open(src, "w") as out:
        for batch in batches:
            out.write(batch, prog.match_batch(batch))
    assert 0 < len(src.read_bytes()) < len(before)


def test_a_link_to_a_pipe_is_written_through(tmp_path):
    """-w /dev/stdout with standard output a pipe (a link to 'pipe:[N]', a name that does not
    exist) is written through the link, as -w - ('No such file or directory' before), and so is
    a link to a FIFO."""
    src = write_pcap(tmp_path / "in.pcap", packets(300))
    want = subprocess.run(PFILTER + ["--quiet", "-r", str(src), "-w", "-", "udp"], capture_output=True, timeout=60)
    got = subprocess.run(PFILTER + ["--quiet", "-r", str(src), "-w", "/dev/stdout", "udp"], capture_output=True,
                         timeout=60)
    assert got.returncode == 0 and got.stderr == b"" and got.stdout == want.stdout and len(want.stdout) > 24
    fifo, link = tmp_path / "fifo", tmp_path / "link.pcap"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    run = subprocess.run(PFILTER + ["--quiet", "-r", str(src), "-w", str(link), "udp"], capture_output=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    assert reader.communicate(timeout=60)[0] == want.stdout and link.is_symlink()


@pytest.mark.parametrize("passes_before", [1, 2])
def test_an_interruption_as_a_rotation_opens_its_next_file_leaves_no_empty_file(tmp_path, monkeypatch, passes_before):
    """-C on the fast path interrupted just as a pass starts into the next file of the rotation
    (before any record of it): the files before it are kept whole, and no file holding only a
    header is left (tcpdump -C never makes a file without a packet)."""
    from pfilter.capture import fastpath
    pkts = packets(3000, sizes=(1000,))
    src = write_pcap(tmp_path / "in.pcap", pkts)
    out = tmp_path / "out.pcap"
    real, calls = fastpath._run, []

    def run(*args, **kwargs):
        calls.append(1)
        if len(calls) > passes_before:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    monkeypatch.setattr(fastpath, "_run", run)
    with pytest.raises(KeyboardInterrupt):
        pfilter.filter_file(src, out, "", rotate=dict(size=1_000_000))       # files of 1 MB
    names = sorted(os.listdir(tmp_path))
    assert names == ["in.pcap", "out.pcap"] + [f"out.pcap{k}" for k in range(1, passes_before)]
    kept = [p for n in names[1:] for p in libpcap_packets(tmp_path / n)]
    assert kept == pkts[:len(kept)] and all(os.path.getsize(tmp_path / n) > 24 for n in names)


def test_a_signal_as_an_output_of_a_directory_is_named_does_not_call_it_cut_short(tmp_path, monkeypatch, capsys):
    """-w DIR/: a signal that comes as an input's output is named (its pass over; the signal is
    raised once the name is given) leaves that output whole, and the line does not say it
    "ends where its input was interrupted"; one that comes mid-pass does."""
    from pfilter import cli
    from pfilter.capture import fastpath, files
    d = tmp_path / "in"
    d.mkdir()
    pkts = packets(20000, sizes=(200,))
    for name in ("a.pcap", "b.pcap"):
        write_pcap(d / name, pkts)
    real = files.AtomicFile.commit
    hit = []

    def commit(self, length=None):
        real(self, length)
        if str(self.path).endswith("a.pcap") and not hit:
            hit.append(self.path)
            raise KeyboardInterrupt
    monkeypatch.setattr(files.AtomicFile, "commit", commit)
    out = tmp_path / "out"
    assert cli.main(["--quiet", "-j", "1", "-r", str(d), "-w", f"{out}/", ""]) == 130
    err = capsys.readouterr().err
    assert hit and "ends where its input was interrupted" not in err, err
    assert libpcap_packets(out / "a.pcap") == pkts and not (out / "b.pcap").exists()
    monkeypatch.setattr(files.AtomicFile, "commit", real)
    real_run = fastpath._run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(fastpath, "_run", interrupted)
    assert cli.main(["--quiet", "-j", "1", "-r", str(d), "-w", f"{tmp_path / 'out2'}/", ""]) == 130
    assert f"{tmp_path / 'out2' / 'a.pcap'} ends where its input was interrupted" in capsys.readouterr().err
    monkeypatch.setattr(fastpath, "_run", real_run)
