"""PcapCopy's hold mode and drain (what pfilter.dask's ring writes its chunks with): a pass that
keeps its matches as runs of input offsets, written later at an offset known only then, or
spread over the next pass; the same bytes as a pass that writes them at once, whatever the cut
into ranges, the chunk size or whether the chunks are mapped; refused where it cannot apply;
and a write that fails, or an input that shrank in between, is an error, never a short output.
"""
import errno
import os

import pytest

from pfilter.capture import _fastcopy
from pfilter.capture.index import planned_ranges
from test_fastpath_mapped import _capture, _program

EXPRESSIONS = ["", "tcp", "udp port 53 or icmp", "ip6"]


def _direct(src, expr, dst):
    decoded, clear = _program(expr)
    fd = os.open(src, os.O_RDONLY)
    out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(out, open(src, "rb").read(24))
        job = _fastcopy.PcapCopy(decoded, clear, fd, out, 24, 262144, out_size=24, workers=1)
        assert job.run() == "eof"
    finally:
        os.close(fd)
        os.close(out)
    return open(dst, "rb").read()


def _held(src, expr, start, end, mapped=True, chunk=1 << 16):
    decoded, clear = _program(expr)
    fd = os.open(src, os.O_RDONLY)
    job = _fastcopy.PcapCopy(decoded, clear, fd, -1, start, 262144, end=-1 if end is None else end, workers=1,
                             chunk=chunk, mapped=mapped, hold=True)
    assert job.run() == "eof"
    return job, fd


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize("mapped", [True, False])
def test_held_then_written_equals_written_at_once(tmp_path, expr, mapped):
    src = _capture(tmp_path, n=4000, big=3)
    want = _direct(src, expr, tmp_path / "direct.pcap")
    ranges = planned_ranges(src, 200_000)
    assert len(ranges) > 3
    out = os.open(tmp_path / "held.pcap", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    jobs = []
    try:
        os.write(out, want[:24])
        at = 24
        for start, end in ranges:
            jobs.append(_held(src, expr, start, end, mapped=mapped))
        # written in reverse order, each at the offset the sizes before it give: the place
        # of a range's matches does not depend on when they are written
        offsets = [24]
        for job, _fd in jobs:
            offsets.append(offsets[-1] + job.out_size)
        for (job, _fd), at in reversed(list(zip(jobs, offsets))):
            assert job.write_held(out, at) == at + job.out_size
            assert job.written == job.matched and job.held_runs == 0
    finally:
        os.close(out)
        for _job, fd in jobs:
            os.close(fd)
    assert open(tmp_path / "held.pcap", "rb").read() == want


@pytest.mark.parametrize("expr", ["tcp", ""])
def test_drained_over_the_next_pass_equals_written_at_once(tmp_path, expr):
    """Each range's matches written during the pass over the next one (a chunk's worth after
    each of its chunks, the rest at its end), the last one by write_held."""
    src = _capture(tmp_path, n=4000, big=3)
    want = _direct(src, expr, tmp_path / "direct.pcap")
    out = os.open(tmp_path / "drained.pcap", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fds = []
    try:
        os.write(out, want[:24])
        decoded, clear = _program(expr)
        at, pending = 24, None
        for start, end in planned_ranges(src, 150_000):
            fd = os.open(src, os.O_RDONLY)
            fds.append(fd)
            job = _fastcopy.PcapCopy(decoded, clear, fd, -1, start, 262144, end=-1 if end is None else end,
                                     workers=1, chunk=1 << 16, mapped=True, hold=True)
            if pending is not None:
                job.drain(pending[0], out, pending[1])
            assert job.run() == "eof"
            if pending is not None:
                assert pending[0].written == pending[0].matched and pending[0].held_runs == 0
            pending = (job, at)
            at += job.out_size
        assert pending[0].write_held(out, pending[1]) == at
    finally:
        os.close(out)
        for fd in fds:
            os.close(fd)
    assert open(tmp_path / "drained.pcap", "rb").read() == want


def test_hold_is_refused_where_it_cannot_apply(tmp_path):
    src = _capture(tmp_path, n=300)
    decoded, clear = _program("tcp")
    fd = os.open(src, os.O_RDONLY)
    try:
        for kw in (dict(workers=2), dict(max_count=5), dict(truncate=60), dict(rotate_size=1000)):
            with pytest.raises(ValueError, match="hold"):
                _fastcopy.PcapCopy(decoded, clear, fd, -1, 24, 262144, hold=True, **kw)
        with pytest.raises(ValueError, match="hold"):
            _fastcopy.PcapCopy(decoded, clear, fd, 1, 24, 262144, hold=True)
        plain = _fastcopy.PcapCopy(decoded, clear, fd, -1, 24, 262144, workers=1)
        with pytest.raises(ValueError, match="write_held"):
            plain.write_held(1, 24)          # not a hold pass
        held = _fastcopy.PcapCopy(decoded, clear, fd, -1, 24, 262144, workers=1, hold=True)
        with pytest.raises(ValueError, match="write_held"):
            held.write_held(1, 24)           # not run yet
        with pytest.raises(ValueError, match="drain"):
            plain.drain(held, 1, 24)         # a pass that did not end
    finally:
        os.close(fd)


def test_a_full_disk_is_an_error_not_a_short_output(tmp_path):
    src = _capture(tmp_path, n=2000)
    job, fd = _held(src, "", 24, None)
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as e:
            job.write_held(full, 24)
        assert e.value.errno == errno.ENOSPC
        job2, fd2 = _held(src, "", 24, None)
        nxt = _fastcopy.PcapCopy(*_program(""), fd, -1, 24, 262144, workers=1, chunk=1 << 16, mapped=True, hold=True)
        nxt.drain(job2, full, 24)
        assert nxt.run() == "write-error" and nxt.error == errno.ENOSPC
        os.close(fd2)
    finally:
        os.close(full)
        os.close(fd)


@pytest.mark.parametrize("mapped", [True, False])
def test_an_input_that_shrank_before_the_write_is_a_read_error(tmp_path, mapped):
    src = _capture(tmp_path, n=3000)
    job, fd = _held(src, "", 24, None, mapped=mapped)
    out = os.open(tmp_path / "out.pcap", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.truncate(src, os.path.getsize(src) // 2)
        with pytest.raises(OSError) as e:
            job.write_held(out, 24)
        assert e.value.errno == errno.EIO
    finally:
        os.close(out)
        os.close(fd)


def test_held_runs_are_no_longer_than_a_write_window(tmp_path):
    """Every record matching: the held runs are cut at HELD_WINDOW_BYTES (what write_held maps
    or reads at a time), so a long run of matches never maps or buffers more than that."""
    one = open(_capture(tmp_path, n=4000), "rb").read()
    src = tmp_path / "big.pcap"
    with open(src, "wb") as f:
        f.write(one)
        for _ in range(1, -(-(10 << 20) // len(one))):
            f.write(one[24:])
    size = os.path.getsize(src)
    want = _direct(src, "", tmp_path / "direct.pcap")
    for mapped in (True, False):
        job, fd = _held(src, "", 24, None, mapped=mapped, chunk=1 << 20)
        try:
            assert job.held_runs >= -(-(size - 24) // _fastcopy.HELD_WINDOW_BYTES)
            out = os.open(tmp_path / "held.pcap", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.write(out, want[:24])
                assert job.write_held(out, 24) == size
            finally:
                os.close(out)
        finally:
            os.close(fd)
        assert open(tmp_path / "held.pcap", "rb").read() == want
