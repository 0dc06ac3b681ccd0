"""PcapCopy's ring (what pfilter.dask's ring on one host runs): several processes share one pass
as a local pass's threads do, their turns handed on through blocks of a mapped file; the output
is byte-identical to one worker's whatever the number of members, several passes chained into
one output; a member that never comes, or one that dies, stops the others within the ring's wait
with status "ring-failed" (a member that dies holding the turns' lock makes the next to take it
stop the same way: the lock is robust), never a silent short output; and what cannot be a ring is refused.
The members are real processes (os.fork), as the workers of a cluster are.
"""
import ctypes
import mmap
import os
import signal
import time

import pytest

from pfilter.capture import _fastcopy
from pfilter.capture.fastpath import ring_bytes
from pfilter.capture.files import RESYNC_DEPTH, RESYNC_SPAN
from test_fastpath_mapped import _capture, _program

EXPRESSIONS = ["", "tcp", "udp port 53 or icmp"]


def _ring(tmp_path, blocks, first_out):
    path = tmp_path / "ring"
    size = ring_bytes(_fastcopy, blocks)
    with open(path, "wb") as f:
        f.truncate(size)
    fd = os.open(path, os.O_RDWR)
    try:
        ring = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    _fastcopy.ring_init(ring, blocks, first_out)
    return path


def _output_and_ring(tmp_path, srcs):
    """(the output holding the first input's file header, a ring of one block per input)."""
    out = tmp_path / "ring.pcap"
    with open(srcs[0], "rb") as f, open(out, "wb") as o:
        o.write(f.read(24))
    return out, _ring(tmp_path, len(srcs), 24)


def _member(srcs, expr, out, ring_path, m, w, wait=30.0, chunk=1 << 16, report=None, stall=None):
    """The body of member m (in a forked child): every input in turn, each one ring pass; writes
    'status matched done total' per input to `report` and exits 0 when every pass ended at eof."""
    code = 1
    try:
        fd = os.open(ring_path, os.O_RDWR)
        ring = mmap.mmap(fd, 0)
        os.close(fd)
        out_fd = os.open(out, os.O_WRONLY)
        at, lines = 24, []
        for k, src in enumerate(srcs):
            decoded, clear = _program(expr)
            in_fd = os.open(src, os.O_RDONLY)
            job = _fastcopy.PcapCopy(decoded, clear, in_fd, out_fd, 24, 262144, out_size=at, workers=1, chunk=chunk,
                                     mapped=True, guess_depth=RESYNC_DEPTH, guess_span=RESYNC_SPAN, ring=ring,
                                     ring_block=k, member=m, members=w, ring_wait=wait)
            if stall is not None:
                stall()
            status = job.run()
            done, total = job.ring_chunks
            lines.append(f"{status} {job.matched} {done} {total}")
            at = job.out_size
            if status != "eof":
                break
        if report is not None:
            with open(report, "w") as f:
                f.write("\n".join(lines))
        code = 0 if all(line.startswith("eof ") for line in lines) else 3
    finally:
        os._exit(code)


def _run_ring(tmp_path, srcs, expr, w, members=None, **kw):
    """Fork the members (all of 0..w-1, or those in `members`); (output bytes, exit codes,
    reports)."""
    out, ring_path = _output_and_ring(tmp_path, srcs)
    pids = {}
    for m in range(w) if members is None else members:
        pid = os.fork()
        if pid == 0:
            _member(srcs, expr, out, ring_path, m, w, report=tmp_path / f"report{m}", **kw)
        pids[m] = pid
    codes = {m: os.waitpid(pid, 0)[1] for m, pid in pids.items()}
    reports = {m: (tmp_path / f"report{m}").read_text().split("\n") for m in pids
               if (tmp_path / f"report{m}").exists()}
    return out.read_bytes(), codes, reports


def _one_worker(tmp_path, srcs, expr):
    out = tmp_path / "one.pcap"
    decoded, clear = _program(expr)
    with open(out, "wb") as o:
        o.write(open(srcs[0], "rb").read(24))
    out_fd = os.open(out, os.O_WRONLY)
    at, matched = 24, 0
    try:
        for src in srcs:
            fd = os.open(src, os.O_RDONLY)
            job = _fastcopy.PcapCopy(decoded, clear, fd, out_fd, 24, 262144, out_size=at, workers=1, chunk=1 << 16)
            assert job.run() == "eof"
            os.close(fd)
            at, matched = job.out_size, matched + job.matched
    finally:
        os.close(out_fd)
    return out.read_bytes(), matched


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("w", [1, 2, 3])
def test_a_ring_writes_what_one_worker_writes(tmp_path, expr, w):
    srcs = [_capture(tmp_path, n=3000, seed=11, big=3), _capture(tmp_path, n=200, seed=12),
            _capture(tmp_path, n=2500, seed=13)]
    want, matched = _one_worker(tmp_path, srcs, expr)
    got, codes, reports = _run_ring(tmp_path, srcs, expr, w)
    assert set(codes.values()) == {0}
    assert got == want
    for k in range(len(srcs)):          # every member ends each pass with the same totals
        lines = [reports[m][k] for m in reports]
        assert len(lines) == w and all(line.split()[0] == "eof" for line in lines)
        counts = [tuple(map(int, line.split()[1:])) for line in lines]
        # the same matches and chunks for all; the last member to end saw every chunk written
        assert len({(c[0], c[2]) for c in counts}) == 1
        assert max(done for _m, done, _t in counts) == counts[0][2] >= 1
    assert sum(int(reports[0][k].split()[1]) for k in range(len(srcs))) == matched


def test_more_members_than_chunks(tmp_path):
    """A pass of one chunk and a ring of three: the members without a chunk see the pass end."""
    src = _capture(tmp_path, n=50, seed=14)
    want, _ = _one_worker(tmp_path, [src], "tcp")
    got, codes, reports = _run_ring(tmp_path, [src], "tcp", 3, chunk=1 << 20)
    assert set(codes.values()) == {0} and got == want
    assert all(reports[m][0].split()[0] == "eof" for m in reports)
    assert max(int(reports[m][0].split()[2]) for m in reports) == int(reports[0][0].split()[3]) == 1


def test_a_member_that_never_comes(tmp_path):
    """Member 1 of 2 never runs: member 0 waits for chunk 1's turn no longer than the ring's
    wait, then stops with ring-failed (the caller drops the output)."""
    src = _capture(tmp_path, n=3000, seed=15)
    started = time.monotonic()
    _got, codes, reports = _run_ring(tmp_path, [src], "tcp", 2, members=[0], wait=0.5)
    assert time.monotonic() - started < 20
    assert codes[0] != 0 and reports[0][0].split()[0] == "ring-failed"


def test_a_member_killed_before_its_turn(tmp_path):
    """Member 1 is killed (SIGKILL) before its first turn: member 0 waits for it no longer than
    the ring's wait and stops with ring-failed."""
    src = _capture(tmp_path, n=3000, seed=16)
    out, ring_path = _output_and_ring(tmp_path, [src])
    victim = os.fork()
    if victim == 0:
        _member([src], "tcp", out, ring_path, 1, 2, wait=30.0, stall=lambda: time.sleep(60))
    survivor = os.fork()
    if survivor == 0:
        _member([src], "tcp", out, ring_path, 0, 2, wait=1.0, report=tmp_path / "report0")
    time.sleep(0.3)
    os.kill(victim, signal.SIGKILL)
    os.waitpid(victim, 0)
    started = time.monotonic()
    _pid, code = os.waitpid(survivor, 0)
    assert time.monotonic() - started < 20
    assert code != 0 and (tmp_path / "report0").read_text().split()[0] == "ring-failed"


def test_a_member_killed_while_it_waits_does_not_hang_the_others(tmp_path):
    """Member 1 waits for chunk 0's turn (member 0 has not run) and is killed there (SIGKILL, as
    the OOM killer does): a later wake of the ring's waiters (here ring_cancel from outside, as
    the command's cancel; member 0's turns alike) returns. With a process-shared condition
    variable it did not: glibc's broadcast waits for every waiter of a group to leave it."""
    src = _capture(tmp_path, n=3000, seed=19)
    out, ring_path = _output_and_ring(tmp_path, [src])
    victim = os.fork()
    if victim == 0:
        _member([src], "tcp", out, ring_path, 1, 2, wait=60.0)
    time.sleep(1.0)                       # (in its wait for chunk 0's turn by now)
    os.kill(victim, signal.SIGKILL)
    os.waitpid(victim, 0)
    canceller = os.fork()
    if canceller == 0:
        code = 1
        try:
            with open(ring_path, "r+b") as f:
                _fastcopy.ring_cancel(mmap.mmap(f.fileno(), 0), 1)
            code = 0
        finally:
            os._exit(code)
    _ends_within(canceller, time.monotonic(), 10, "waking the ring's waiters hung on the member killed in its wait")
    # and member 0, run now, sees the cancelled ring at once
    survivor = os.fork()
    if survivor == 0:
        _member([src], "tcp", out, ring_path, 0, 2, wait=30.0, report=tmp_path / "report0")
    _ends_within(survivor, time.monotonic(), 20, "member 0 hung after its partner was killed in its wait")
    assert (tmp_path / "report0").read_text().split()[0] == "cancelled"


def _ends_within(pid, started, seconds, failure):
    """Reap the forked `pid`, or kill it and fail the test with `failure` once `seconds` have
    passed since `started`."""
    while not os.waitpid(pid, os.WNOHANG)[0]:
        if time.monotonic() - started > seconds:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(failure)
        time.sleep(0.02)


def test_a_member_that_dies_holding_the_turns_lock(tmp_path):
    """Member 1 takes the turns' lock (the first field of the ring's block, as ring_init lays it
    out) and exits holding it: the lock is robust, so member 0's first lock learns of the death
    and stops the pass with ring-failed at once, not after the ring's wait, and never hangs."""
    src = _capture(tmp_path, n=3000, seed=18)
    out, ring_path = _output_and_ring(tmp_path, [src])
    victim = os.fork()
    if victim == 0:
        code = 1
        try:
            fd = os.open(ring_path, os.O_RDWR)
            ring = mmap.mmap(fd, 0)
            lock = ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(ring)))
            code = 0 if ctypes.CDLL(None).pthread_mutex_lock(lock) == 0 else 2
        finally:
            os._exit(code)         # with the lock held
    _pid, status = os.waitpid(victim, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    started = time.monotonic()
    survivor = os.fork()
    if survivor == 0:
        _member([src], "tcp", out, ring_path, 0, 2, wait=30.0, report=tmp_path / "report0")
    # (a lock that is not robust: blocked for good)
    _ends_within(survivor, started, 10, "member 0 did not stop within 10 s of taking a dead member's lock")
    assert (tmp_path / "report0").read_text().split()[0] == "ring-failed"


def test_what_cannot_be_a_ring_is_refused(tmp_path):
    src = _capture(tmp_path, n=100, seed=17)
    ring = bytearray(_fastcopy.RING_BLOCK_BYTES)
    _fastcopy.ring_init(ring, 1, 24)
    decoded, clear = _program("tcp")
    fd = os.open(src, os.O_RDONLY)
    try:
        for kw in (dict(workers=2), dict(hold=True, out_fd=-1), dict(max_count=5), dict(rotate_size=1000),
                   dict(member=2, members=2), dict(ring_block=1)):
            out_fd = kw.pop("out_fd", 1)
            with pytest.raises(ValueError):
                _fastcopy.PcapCopy(decoded, clear, fd, out_fd, 24, 262144, ring=ring, **dict(dict(members=2), **kw))
        with pytest.raises(ValueError):
            _fastcopy.ring_init(bytearray(10), 1, 24)
    finally:
        os.close(fd)


def test_a_cancelled_ring_keeps_whole_records(tmp_path):
    """cancel() of member 0 while the ring runs stops every member at its next chunk: the output
    is a prefix of one worker's, ending on a record boundary, with the size the ring reports."""
    import threading
    srcs = [_capture(tmp_path, n=60000, seed=18, distinct=3000)]
    want, _ = _one_worker(tmp_path, srcs, "")
    out = tmp_path / "ring.pcap"
    with open(srcs[0], "rb") as f, open(out, "wb") as o:
        o.write(f.read(24))
    ring_path = _ring(tmp_path, 1, 24)
    child = os.fork()
    if child == 0:
        _member(srcs, "", out, ring_path, 1, 2, report=tmp_path / "report1")
    fd = os.open(ring_path, os.O_RDWR)
    ring = mmap.mmap(fd, 0)
    os.close(fd)
    decoded, clear = _program("")
    in_fd, out_fd = os.open(srcs[0], os.O_RDONLY), os.open(out, os.O_WRONLY)
    job = _fastcopy.PcapCopy(decoded, clear, in_fd, out_fd, 24, 262144, out_size=24, workers=1, chunk=1 << 16,
                             mapped=True, ring=ring, member=0, members=2)
    ran = threading.Thread(target=job.run)
    ran.start()
    size = os.path.getsize(srcs[0])
    deadline = time.monotonic() + 10
    while job.done < size // 4 and ran.is_alive() and time.monotonic() < deadline:
        pass
    job.cancel()
    ran.join()
    _pid, code = os.waitpid(child, 0)
    os.close(in_fd)
    os.close(out_fd)
    got = out.read_bytes()
    assert _fastcopy.STATUS[job.status] == "cancelled"
    assert (tmp_path / "report1").read_text().split()[0] == "cancelled"
    assert 24 < len(got) == job.out_size < len(want) and got == want[:len(got)]
    at = 24                                                   # whole records
    while at < len(got):
        at += 16 + int.from_bytes(got[at + 8:at + 12], "little")
    assert at == len(got)


def test_the_command_forks_its_workers_and_starts_over_when_one_dies(tmp_path, monkeypatch):
    """pfilter -j 2 on a regular file runs its second worker as a forked process (the ring's
    turns in an anonymous shared mapping): the same bytes as one worker. A member that dies
    (here: exits at once, status 4) cancels the ring as soon as it is seen, and the general path
    writes the output instead: still the same bytes, nothing left behind."""
    import pfilter
    from pfilter.capture import fastpath
    src = _capture(tmp_path, n=20000, seed=19, big=2, distinct=2000)
    one = tmp_path / "one.pcap"
    pfilter.filter_file(str(src), str(one), "tcp", workers=1)
    monkeypatch.setattr(fastpath, "other_threads", lambda: 0)      # (pytest-xdist's threads: not ours)
    forked = []
    real = fastpath._fork_ring
    monkeypatch.setattr(fastpath, "_fork_ring", lambda *a: forked.append(real(*a)) or forked[-1])
    monkeypatch.setattr(fastpath, "_sized", lambda n, w, h=None, counting=False: dict(
        chunk=1 << 16, workers=w, mapped=True, guess_depth=RESYNC_DEPTH, guess_span=RESYNC_SPAN, nsec=h.nsec))
    two = tmp_path / "two.pcap"
    stats = pfilter.filter_file(str(src), str(two), "tcp", workers=2)
    assert len(forked) == 1 and two.read_bytes() == one.read_bytes() and stats.written > 0
    monkeypatch.setattr(_fastcopy, "ring_child", lambda parent: False)      # the member gives up at once
    three = tmp_path / "three.pcap"
    stats = pfilter.filter_file(str(src), str(three), "tcp", workers=2)
    assert len(forked) == 2 and three.read_bytes() == one.read_bytes()
    assert sorted(os.listdir(tmp_path)) == sorted(["one.pcap", "two.pcap", "three.pcap", src.name])
