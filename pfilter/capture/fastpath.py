"""The fast path of filter_file: one classic pcap file in, its matching records copied as they are
into a pcap file (or only counted), by pfilter.capture._fastcopy, without numpy.

Imports pfilter.errors, pfilter.validate, pfilter._vm and pfilter.capture.files / _fastcopy; never
numpy, the compiler or the reader, so the `pfilter` command starts in a few milliseconds when its
compiled program is cached (pfilter.cli). Everything it does not handle goes to filter_file's
general path, which gives the same bytes: fast_filter_file then returns None before writing
anything, or, when it meets a record a plain copy would get wrong (caplen above the snapshot
length, a record cut by the end of the file), after dropping its temporary output, so the general
path starts over and applies libpcap's rules and error messages.

It applies when: the input is one regular, uncompressed pcap file of version 2.4 with
little-endian headers (what the writer writes) on a little-endian host, standard 16-byte record
headers; the output is a pcap file (not standard output) of the input's timestamp resolution, or
there is no output (counting); and nothing wants the packets themselves (no printing).
"""
from __future__ import annotations

import os
import stat
import struct
import sys
import threading
import time

from ..errors import FilterError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
from .files import AtomicFile, compression_for_path, format_for_path, parse_pcap_header, pcap_file_header, pcap_magic_order

# Largest record a chunk's headroom must hold; link types allowing more take the general path.
MAX_FAST_RECORD = 1 << 20
# How often (seconds) the progress callback is called while the copy runs.
PROGRESS_INTERVAL = 0.1


class FilterStats:
    """What filter_file did: packets read, matched and written, bytes of packet data written,
    wall seconds, and the inputs it read. Reads like a dict too (stats["written"])."""

    __slots__ = ("read", "matched", "written", "bytes", "seconds", "files")
    FIELDS = ("read", "matched", "written", "bytes", "seconds", "files")

    read: int
    matched: int
    written: int
    files: list[str]
    seconds: float
    bytes: int

    def __init__(self, read: int = 0, matched: int = 0, written: int = 0, bytes: int = 0,
                 seconds: float = 0.0, files: list[str] | None = None) -> None:
        self.read, self.matched, self.written, self.bytes = read, matched, written, bytes
        self.seconds = seconds
        self.files = [] if files is None else files

    def __getitem__(self, key: str) -> Any:
        if key not in self.FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> list[str]:
        return list(self.FIELDS)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FilterStats) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return "FilterStats(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.FIELDS) + ")"


def _native():
    if os.environ.get("PFILTER_PUREPYTHON", "") not in ("", "0"):
        return None
    if os.environ.get("PFILTER_NO_FASTPATH", "") not in ("", "0"):
        return None
    try:
        from .. import _vm
        from . import _fastcopy
    except ImportError:
        return None
    return _vm, _fastcopy


def _open_eligible(src):
    """(file descriptor, PcapHeader) of src when the fast path can read it, else None: one
    open for the header check and the pass. Whether src is a regular file is decided from its
    stat() before opening it: anything else (a FIFO, a terminal, a device) is left unopened for
    the general path, since opening a FIFO here and again there would take its writer's data
    (or its life: SIGPIPE) away."""
    if not isinstance(src, (str, bytes, os.PathLike)) or src in ("-", b"-") or sys.byteorder != "little":
        return None
    try:
        before = os.stat(src)
        if not stat.S_ISREG(before.st_mode):
            return None
        # O_NONBLOCK: should the name have become a FIFO since, the open does not wait for it
        fd = os.open(src, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (before.st_dev, before.st_ino):
            os.set_blocking(fd, True)
            head = os.pread(fd, 24, 0)
            if len(head) == 24 and pcap_magic_order(head) is not None:
                h = parse_pcap_header(head, src)
                if (h.byteorder == "little" and h.version == (2, 4) and not h.kuznetzov
                        and h.hdrsize == 16 and min(h.snaplen, h.maxcap) <= MAX_FAST_RECORD):
                    return fd, h
    except (OSError, ValueError):
        pass
    os.close(fd)
    return None


def fast_filter_file(src, dst, program_for, count=None, format=None, ts_resolution=None,
                     progress=None, announce=None, truncate=None, rotate=None):
    """filter_file's fast path, or None when it does not apply (see the module docstring).

    truncate: cut written records to this many bytes (editcap -s; the header says it).
    rotate: a Rotation by size only (tcpdump -C, with -W): each time the output holds more than
    rotate.size bytes before a matching record, the file is named and the pass goes on from that
    record into the next file, named as tcpdump names them.

    program_for(linktype, snaplen, swapped): the expression compiled for the file, as
    (code, jt, jf, k) tuples; it may raise FilterError (e.g. "expression rejects all packets"),
    which propagates. announce(path, linktype, snaplen) is called once the program is ready,
    before the pass. progress(bytes_done, bytes_total, stats) is called while it runs."""
    if isinstance(src, (list, tuple)):
        if len(src) != 1:
            return None
        src = src[0]
    if count is not None and count <= 0:
        return None
    if rotate is not None and (rotate.seconds is not None or rotate.size is None or dst is None):
        return None
    if truncate is not None and dst is None:
        return None
    if dst is not None and (not isinstance(dst, (str, os.PathLike)) or dst == "-"
                            or (format or format_for_path(dst)) != "pcap"
                            or compression_for_path(dst) is not None):
        return None
    native = _native()
    if native is None:
        return None
    _vm, _fastcopy = native
    opened = _open_eligible(src)
    if opened is None:
        return None
    in_fd, h = opened
    out = job = total = None
    try:
        if dst is not None and ts_resolution not in (None, h.ts_resolution):
            return None
        started = time.perf_counter()
        decoded, clear_mem = _decode(_vm, program_for(h.linktype, h.snaplen, False))
        if announce is not None:
            announce(src, h.linktype, h.snaplen)
        header = pcap_file_header(h.linktype, truncate if truncate is not None else h.snaplen, h.nsec,
                                  h.linktype_ext)
        number = 0
        name = dst if rotate is None else rotate.name(dst, 0, None)
        if dst is not None:
            out = AtomicFile(name, protect=[src])
            out.write(header)
        total = _Totals()
        start = 24
        while True:
            job = _fastcopy.PcapCopy(decoded, clear_mem, in_fd, out.fileno() if out is not None else -1,
                                     start, min(h.snaplen, h.maxcap),
                                     (count - total.matched) if count else -1,
                                     truncate=truncate or 0,
                                     rotate_size=rotate.size if rotate is not None else -1,
                                     out_size=len(header))
            status = _run(job, progress, os.fstat(in_fd).st_size, src, total)
            total.add(job)
            if status != "rotate":
                break
            # tcpdump -C: this file is complete; the next one starts with the record at
            # stop_offset (the numbers wrap around after -W files)
            if rotate.files is not None and number + 1 >= rotate.files:
                number = 0
            else:
                number += 1
            done, out = out, None
            done.commit()
            out = AtomicFile(rotate.name(dst, number, None), protect=[src])
            out.write(header)
            start = job.stop_offset
        job = total
        if status not in ("eof", "count"):
            if status == "write-error":
                raise OSError(job.error, os.strerror(job.error), out.path)
            if out is not None:
                out.abort()
            # the general path starts over and says what is wrong, if anything (files of a
            # rotation named already are written again by it, whole, under the same names)
            return None
        if out is not None:
            out.commit()
    except KeyboardInterrupt as err:
        # Interrupted (Ctrl-C, SIGTERM, SIGHUP): the pass has stopped between chunks, so the
        # output holds whole records; keep them as a valid capture, as tcpdump does.
        if total is not None and job is not total:
            total.add(job)
            job = total
        if out is not None:
            if job is not None:
                out.commit()
            else:
                out.abort()
        err.stats = _stats(job, out, src, started if job is not None else time.perf_counter())
        raise
    except BaseException:
        if out is not None:
            out.abort()
        raise
    finally:
        os.close(in_fd)
    return _stats(job, out, src, started)


def _stats(job, out, src, started):
    if job is None:
        return FilterStats(seconds=time.perf_counter() - started, files=[os.fspath(src)])
    return FilterStats(read=job.read, matched=job.matched, written=job.written,
                       bytes=job.bytes if out is not None else 0,
                       seconds=time.perf_counter() - started, files=[os.fspath(src)])


def _decode(_vm, tuples):
    from ..validate import COMPILED_MAX_INSNS, validate
    tuples = [tuple(int(v) for v in t) for t in tuples]
    validate(tuples, COMPILED_MAX_INSNS)
    raw = b"".join(struct.pack("<HBBI", *t) for t in tuples)
    return _vm.decode(raw), bool(_vm.reads_scratch(raw))


class _Totals:
    """The counts of the passes of a rotated copy, added up (and the last pass's status)."""

    def __init__(self):
        self.read = self.matched = self.written = self.bytes = 0
        self.error = 0

    def add(self, job):
        self.read += job.read
        self.matched += job.matched
        self.written += job.written
        self.bytes += job.bytes
        self.error = job.error


def _run(job, progress, total, src, base=None):
    """job.run() in a helper thread, so that this one can report progress and take Ctrl-C (the
    pass itself runs without the GIL). base: the counts of the passes before (a _Totals)."""
    r0 = base.read if base is not None else 0
    m0 = base.matched if base is not None else 0
    outcome = {}

    def work():
        try:
            outcome["status"] = job.run()
        except BaseException as e:      # handed to the calling thread
            outcome["error"] = e

    thread = threading.Thread(target=work, name="pfilter-copy", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(PROGRESS_INTERVAL)
            if progress is not None:
                progress(job.done, total, FilterStats(read=r0 + job.read, matched=m0 + job.matched,
                                                      files=[src]))
    except BaseException:
        job.cancel()
        thread.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    if progress is not None and outcome.get("status") != "rotate":
        progress(job.done, total, FilterStats(read=r0 + job.read, matched=m0 + job.matched, files=[src]))
    return outcome["status"]
