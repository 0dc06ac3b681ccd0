"""Outputs with editcap's and tcpdump's per-file operations, and sets of them written in one
pass: `--snaplen` (truncate, as editcap -s), `--dedup` (as editcap -D), rotation (-C/-G/-W, as
tcpdump), compression by extension (files.atomic_output), and `--split` (one file per rule).

Imports numpy, pfilter.errors, the writers (pfilter.capture.writer) and rotation
(pfilter.capture.rotate); pfilter.classify (SplitSink) and filter_file feed it batches and the indices of the
packets to write. Nothing here touches a Python object per packet: selections are numpy index
arrays, truncation is a caplen array, duplicates are found by pfilter.capture._writer.dedup_select
(without the GIL), rotation points by vectorised sums over a batch.

The --split fast path (FastSplit, pfilter.capture._splitwrite): plain pcap outputs of a classic
pcap input get their records writev()n straight from the read buffer, in C, by two writer
threads (each a share of the files) while the next batch is read and classified; one pass over
the verdict matrix finds every file's ranges. Measured in bench/results/latest_split.md.

Atomicity: every file is written as an unnamed file and named only when it is complete
(files.AtomicFile). An OutputSet names all its files at the end, after all of them were flushed,
or none (abort); a rotated output names each file when the next one starts (a file of a
rotation is complete then), and the last at the end.
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import FilterError
from .rotate import Rotation
from .files import (DEDUP_DEFAULT_WINDOW, DEDUP_MAX_WINDOW, AtomicFile, compression_for_path, file_linktype,
                    format_for_path, room_for_open_files, same_place, truncated_snaplen)
from .writer import _native, open_writer



def check_snaplen(snaplen):
    """A --snaplen value: a positive integer up to 2^31 - 1 (None: no truncation)."""
    if snaplen is None:
        return None
    if isinstance(snaplen, bool) or not isinstance(snaplen, int) or not 0 < snaplen <= 0x7FFFFFFF:
        raise FilterError(f"invalid length to cut packets to: {snaplen!r} (--snaplen, truncate=: a positive "
                          f"number of bytes)")
    return snaplen


def check_dedup(window):
    """A --dedup window (packets, as editcap -D: a packet is compared with the window - 1
    before it): None or 0 for none, True for editcap's default (5), up to 1000000."""
    if window is None or window is False or window == 0:
        return None
    if window is True:
        return DEDUP_DEFAULT_WINDOW
    if isinstance(window, bool) or not isinstance(window, int) or not 0 < window <= DEDUP_MAX_WINDOW:
        raise FilterError(f"invalid dedup window {window!r} (1 to {DEDUP_MAX_WINDOW} packets)")
    return window


class Dedup:
    """The window of editcap -D over one output's packets, kept across batches."""

    def __init__(self, window):
        self.window = window
        self.ring1 = np.zeros(window, np.uint64)
        self.ring2 = np.zeros(window, np.uint64)
        self.ringlen = np.zeros(window, np.uint32)
        self.state = np.array([-1, 0], np.int64)
        self._py = []          # pure-Python fallback: (caplen, digest) of the last window packets

    def select(self, batch, idx):
        """The packets of idx (in order) that are not duplicates."""
        if _native is not None:
            keep = np.empty(len(idx), np.int64)
            n = _native.dedup_select(batch.data, batch.offsets, batch.caplen, idx, self.ring1,
                                     self.ring2, self.ringlen, self.state, keep)
            if n < 0:
                from .writer import _bad_packet
                raise _bad_packet(batch, n)
            return keep[:n]
        import hashlib
        keep = []
        for i in idx.tolist():
            o, c = int(batch.offsets[i]), int(batch.caplen[i])
            key = (c, hashlib.md5(batch.data[o:o + c].tobytes()).digest())
            dup = key in self._py[-(self.window - 1):] if self.window > 1 else False
            self._py.append(key)
            del self._py[:-self.window]
            if not dup:
                keep.append(i)
        return np.array(keep, np.int64)


def truncated(batch, snaplen):
    """The batch with every caplen cut to snaplen (wire lengths kept), as editcap -s writes;
    the batch itself when no packet is longer."""
    if snaplen is None or not len(batch) or int(batch.caplen.max()) <= snaplen:
        return batch
    from ..batch import PacketBatch
    return PacketBatch(batch.data, batch.offsets, np.minimum(batch.caplen, np.uint32(snaplen)),
                       batch.wirelen, batch.timestamps, batch.linktype, batch.linktypes,
                       batch.interfaces)


class Output:
    """One destination of packets: a capture file (compressed by its extension), or a rotating
    series of them, with optional truncation and duplicate removal. write(batch, idx, raw)
    like a writer's; finish() flushes everything, commit() names the files, abort() drops the
    unnamed ones.

    writer_args: open_writer's keyword arguments (format, linktype, snaplen, ts_resolution,
    linktype_ext, interfaces, protect); truncate: --snaplen (the header's snapshot length
    becomes it, as editcap -s writes); dedup: a window; rotate: a Rotation."""

    def __init__(self, path, writer_args, truncate=None, dedup=None, rotate=None):
        self.path = os.fsdecode(path) if isinstance(path, bytes) else path
        self.truncate = check_snaplen(truncate)
        self.dedup = Dedup(check_dedup(dedup)) if check_dedup(dedup) else None
        self.rotate = Rotation.make(rotate)
        if self.rotate is not None and self.path == "-":
            raise FilterError("rotating output files (-C/-G) needs a file name, not standard output")
        self.args = dict(writer_args)
        self.format = self.args.get("format") or format_for_path(self.path)
        if self.truncate is not None and self.format == "pcap":
            # Divergence: editcap -F pcap -s N keeps a pcapng input interface's snapshot length;
            # pfilter's header cuts it as a pcap input's (no record is longer). The packets are
            # the same. A pcapng output's interfaces keep theirs, as editcap -F pcapng -s N.
            self.args["snaplen"] = truncated_snaplen(self.args.get("snaplen"), self.truncate)
        self.nsec = self.args.get("ts_resolution", "us") == "ns"
        self.interfaces = self.args.get("interfaces")
        self.source = 0
        self.source_nsec = self.nsec    # the resolution of the input `source` (a pcap input)
        self.packets_written = 0
        self.bytes_written = 0          # captured bytes of the packets written
        self.files = []                 # names of the files started, in order
        self.committed = []             # those already named
        self.stopped = False            # -G -W: the last file is done, nothing more is written
        self._writer = None
        self._number = 0                # tcpdump's Cflag_count
        self._periods = 0               # tcpdump's Gflag_count
        self._started = None            # start (seconds) of the current -G period
        self._closed = False
        if self.rotate is None or self.rotate.seconds is None:
            self._open(self.path if self.rotate is None else self.rotate.name(self.path, 0, None))

    # -- files

    def _open(self, name):
        # a rotated file has the format and compression of the name given ('r.pcap.gz1': gzip)
        self._writer = open_writer(name, **{"format": self.format, **self.args},
                                   compression=compression_for_path(self.path))
        self.format = self._writer.format
        self.files.append(name)
        return self._writer

    def _next_file(self, name):
        """Finish the current file (named now: it is complete) and start `name`."""
        if self._writer is not None:
            w, self._writer = self._writer, None
            w.close()
            self.committed.append(w.path)
        self._open(name)

    # -- packets

    def write(self, batch, idx=None, raw=None):
        """Write packets idx of batch (all when None); returns how many were written (after
        duplicate removal; -G -W may stop taking packets)."""
        if self._closed:
            raise FilterError(f"{self.path}: output is closed")
        idx = np.arange(len(batch), dtype=np.int64) if idx is None else np.asarray(idx, dtype=np.int64)
        if self.stopped or not len(idx):
            return 0
        batch = truncated(batch, self.truncate)
        if self.dedup is not None:
            idx = self.dedup.select(batch, idx)
            if not len(idx):
                return 0
        if self.rotate is None:
            n = self._put(batch, idx, raw)
        else:
            n = self._rotating(batch, idx, raw)
        self.packets_written += n
        return n

    def from_input(self, cap, source):
        """The packets written next are input number `source`'s, the open Capture `cap`."""
        self.interfaces, self.source, self.source_nsec = cap.interfaces, source, cap.ts_resolution == "ns"

    def _put(self, batch, idx, raw):
        w = self._writer
        if w.format == "pcapng":
            w.interfaces, w.source, w.source_nsec = self.interfaces, self.source, self.source_nsec
            n = w.write(batch, idx)
        elif raw is not None:
            n = w.write(batch, idx, raw)
        else:
            n = w.write(batch, idx)
        self.bytes_written += int(batch.caplen[idx].sum(dtype=np.int64))
        return n

    def _record_sizes(self, batch, idx):
        caplen = batch.caplen[idx].astype(np.int64)
        if self.format == "pcapng":
            return 32 + ((caplen + 3) & ~3)
        return 16 + caplen

    def _rotating(self, batch, idx, raw):
        """tcpdump's per-packet checks (-G, then -C, then write), a run of packets at a time."""
        rot = self.rotate
        sizes = self._record_sizes(batch, idx)
        secs = batch.timestamps[idx] // 1000000000 if rot.seconds is not None else None
        written = 0
        j, n = 0, len(idx)
        while j < n:
            if rot.seconds is not None:
                t = int(secs[j])
                if self._started is None:
                    self._started = t
                    self._open(rot.name(self.path, 0, t))
                elif t - self._started >= rot.seconds:
                    self._started = t
                    self._periods += 1
                    if rot.size is None and rot.files is not None and self._periods >= rot.files:
                        # tcpdump: "Maximum file limit reached", and it stops
                        self.stopped = True
                        break
                    self._number = 0
                    self._next_file(rot.name(self.path, 0, t))
            if rot.size is not None and self._writer.bytes_written > rot.size:
                self._number += 1
                if rot.files is not None and self._number >= rot.files:
                    self._number = 0
                self._next_file(rot.name(self.path, self._number, self._started))
            # packets j..k-1 go into the current file: k is the next packet that rotates
            k = n
            if rot.seconds is not None and j + 1 < n:
                late = (secs[j + 1:] - self._started) >= rot.seconds
                if late.any():
                    k = j + 1 + int(np.argmax(late))
            if rot.size is not None and j + 1 < k:
                before = self._writer.bytes_written + np.cumsum(sizes[j:k - 1])   # size before j+1..k-1
                over = before > rot.size
                if over.any():
                    k = j + 1 + int(np.argmax(over))
            written += self._put(batch, idx[j:k], raw)
            j = k
        return written

    # -- the end

    def finish(self):
        """Flush everything written (the files stay unnamed until commit())."""
        w = self._writer
        if w is not None:
            w.flush()
            finish = getattr(w._out, "finish", None)
            if finish is not None:
                finish()

    def commit(self):
        """Name the files (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is None and self.rotate is not None and not self.files:
            # -G and no packet at all: tcpdump still writes its first file (named for now)
            import time
            self._started = int(time.time())
            self._open(self.rotate.name(self.path, 0, self._started))
        if self._writer is not None:
            w, self._writer = self._writer, None
            w.close()
            self.committed.append(w.path)

    close = commit

    def abort(self):
        """Drop the file not yet named (those of a rotation already named stay)."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            w, self._writer = self._writer, None
            w.abort()

    def __repr__(self):
        return f"<Output {self.path!r} {self.packets_written} packets in {len(self.files)} file(s)>"


class OutputSet:
    """Several Outputs written in one pass that appear together: commit() flushes every file
    first (a failure there drops them all), then names them; abort() drops them all."""

    def __init__(self):
        self.outputs = {}

    def add(self, key, output):
        self.outputs[key] = output
        return output

    def __getitem__(self, key):
        return self.outputs[key]

    def __iter__(self):
        return iter(self.outputs.values())

    def __len__(self):
        return len(self.outputs)

    def commit(self):
        try:
            for out in self.outputs.values():
                out.finish()
        except BaseException:
            self.abort()
            raise
        first_error = None
        for out in self.outputs.values():
            try:
                out.commit()
            except BaseException as e:       # name the others anyway: each is whole
                first_error = first_error or e
        if first_error is not None:
            raise first_error

    def abort(self):
        for out in self.outputs.values():
            out.abort()


# ----------------------------------------------------------------------------- the fast path

#: writer threads of the --split fast path (at most the usable cores): the kernel's copies into
#: the page cache are most of a split's work; two share it with the thread reading and
#: classifying (bench/results/latest_split.md)
SPLIT_WRITERS = 2

#: the most (packets x outputs) entries a writer thread decides at a time (its range lists take
#: 16 bytes an entry: 16 MB at most, touched only as far as there are ranges)
FAST_ENTRIES = 1 << 20


class FastSplit:
    """The --split fast path (pfilter.capture._splitwrite): the records of a classic pcap input,
    as they sit in the read buffer, written to the plain pcap outputs with writev() by
    `workers` threads (GIL released), each taking a share of the outputs (balanced by the bytes
    they took in the batch before), while the caller reads and classifies the next batch.
    Outputs that truncate, remove duplicates, rotate, compress or write pcapng take the general
    path (Output.write).

    write() first waits for the previous batch's writes (each file's records stay in order, and
    a read buffer is reused only once its records are out), then starts this batch's; drain()
    waits for all of them (an interruption then leaves whole records in every file); a failed
    write raises its OSError at the next write() or drain()."""

    def __init__(self, native, workers):
        from concurrent.futures import ThreadPoolExecutor
        self.native = native
        self.workers = max(1, int(workers))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="pfilter-split")
        self._pending = []          # (future, outputs, nbytes, npackets) of the writes in flight
        self._scratch = [None] * self.workers     # each worker's range lists, reused
        self._load = {}             # bytes each output took in the last batch (by id)

    @staticmethod
    def usable(out):
        """Whether `out` (an Output) can take the fast path: one plain pcap file."""
        w = out._writer
        return (out.rotate is None and out.dedup is None and out.truncate is None and w is not None
                and w.format == "pcap" and out.path != "-" and type(w._out) is AtomicFile)

    def _lists(self, g, nout):
        """Worker g's range lists (starts, ends, runs) for up to nout outputs, FAST_ENTRIES in
        all: kept from batch to batch (the writes that used them are done when write() runs)."""
        s = self._scratch[g]
        if s is None or s[0].shape[0] < nout:
            rows = max(1, FAST_ENTRIES // nout)
            s = self._scratch[g] = (np.empty((nout, rows), np.int64), np.empty((nout, rows), np.int64),
                                    np.empty(nout, np.int64))
        return s

    def write(self, batch, bits, columns, outputs):
        """Start writing packets of `batch` to `outputs` (Outputs that are usable()): packet i
        to outputs[k] when column columns[k] of row i of `bits` is set (a selection matrix
        packed by np.packbits(..., axis=1)). Returns how many of the batch's packets, from the
        first, are being written: fewer than all at a packet whose record cannot be copied as
        it is (its pcap record header does not say its caplen and wirelen); the caller writes
        the rest on the general path, after wait()."""
        self.wait()
        n = self.native.verbatim_records(batch.data, batch.offsets, batch.caplen, batch.wirelen)
        if not n:
            return 0
        data, offsets, caplen, bits = batch.data, batch.offsets[:n], batch.caplen[:n], bits[:n]
        groups = [[] for _ in range(self.workers)]
        load = [0] * self.workers
        order = sorted(range(len(outputs)), key=lambda k: -self._load.get(id(outputs[k]), 0))
        for k in order:
            g = load.index(min(load))
            load[g] += self._load.get(id(outputs[k]), 0) + 1
            groups[g].append(k)
            w = outputs[k]._writer
            if w._fill:
                w.flush()                 # the header (or a general-path write) goes first
        width = bits.shape[1]
        for g, ks in enumerate(groups):
            if not ks:
                continue
            mask = np.zeros(width, np.uint8)
            slot = np.full(8 * width, -1, np.int64)
            for pos, k in enumerate(ks):
                c = columns[k]
                mask[c >> 3] |= 0x80 >> (c & 7)
                slot[c] = pos
            fds = np.array([outputs[k]._writer._out.fileno() for k in ks], np.int64)
            starts, ends, runs = self._lists(g, len(outputs))
            nbytes = np.zeros(len(ks), np.int64)
            npk = np.zeros(len(ks), np.int64)
            fut = self._pool.submit(self.native.write_selected, fds, data, offsets, caplen, bits, mask, slot,
                                    starts, ends, runs, nbytes, npk)
            self._pending.append((fut, [outputs[k] for k in ks], nbytes, npk))
        return n

    def wait(self):
        """Wait for the writes in flight; raise the first failure (an OSError naming its file).
        An interruption while waiting leaves the writes not yet seen in flight (for drain())."""
        error = None
        while self._pending:
            fut, outs, nbytes, npk = self._pending[0]
            try:
                err, k = fut.result()
            except Exception as e:          # not reached: the arrays were checked before
                err, k, error = 0, -1, error or e
            del self._pending[0]
            for out, size, c in zip(outs, nbytes.tolist(), npk.tolist()):
                self._load[id(out)] = size
                out.packets_written += c
                out.bytes_written += size - 16 * c
                out._writer.packets_written += c
                out._writer.bytes_written += size
            if err and error is None:
                error = (OSError(err, os.strerror(err), outs[k].path) if err > 0 else
                         FilterError("a packet lies outside its batch's data"))
        if error is not None:
            raise error

    def _settle(self):
        """Return once no write is in flight, even through interruptions (the last one is
        raised then): the files hold whole records, and nothing writes to them any more."""
        interrupted = None
        for fut, *_ in list(self._pending):
            while True:
                try:
                    fut.exception()
                    break
                except KeyboardInterrupt as e:
                    interrupted = e
        if interrupted is not None:
            raise interrupted

    def drain(self):
        """wait() for every write in flight, whatever interrupts the waiting."""
        self._settle()
        self.wait()

    def close(self):
        """Wait for the writes in flight (failures ignored: the caller is dropping the files)
        and end the threads."""
        try:
            self._settle()
        finally:
            self._pending = []
            self._pool.shutdown()


# ----------------------------------------------------------------------------- names

_FIELD = re.compile(r"\{(\w*)\}")


def split_paths(template, rules, strftime=False):
    """{rule name: output path} from a template containing `{rule}` (each rule's name put in
    its place). Names are checked to make distinct, plain file names: a rule name that is not
    usable in a file name (a '/', '..', a NUL) is refused. strftime: the paths go through
    strftime (-G): a '%' of a rule name is kept as it is ('%Y' stays '%Y', not the year)."""
    if not isinstance(template, (str, os.PathLike)):
        raise FilterError(f"split template must be a path with {{rule}}, not {type(template).__name__}")
    template = os.fsdecode(template)
    fields = _FIELD.findall(template)
    if "rule" not in fields:
        raise FilterError(f"split template {template!r} must contain {{rule}}")
    unknown = sorted(set(fields) - {"rule"})
    if unknown:
        raise FilterError(f"split template {template!r}: unknown field {{{unknown[0]}}} (only {{rule}})")
    paths = {}
    for name in rules:
        if "/" in name or "\0" in name or name in (".", ".."):
            raise FilterError(f"rule name {name!r} cannot be part of a file name")
        part = name.replace("%", "%%") if strftime else name
        paths[name] = _FIELD.sub(lambda m: part, template)
    return paths


#: descriptors a split keeps open per output (its unnamed file and its directory) and beside them
SPLIT_DESCRIPTORS_PER_OUTPUT = 2
SPLIT_SPARE_DESCRIPTORS = 64


def _clashing_outputs(targets, rotate):
    """Words for two outputs of a split that would write one file, or None: the same file under
    two spellings ('u1/./tcp.pcap'), or a -C rotation's numbered files ('a' rotates into 'a1',
    'a2', ...) taking another output's name."""
    seen = {}
    for t in targets:
        place = same_place(t)
        if place in seen:
            return f"two outputs would have the same file name {t}" + (
                f" ({seen[place]} and {t})" if seen[place] != t else "")
        seen[place] = t
    if rotate is not None and rotate.size is not None:
        for other_place, other in seen.items():
            # a name that is another output's and a number: one of that output's rotated files
            place = other_place
            while place[-1:].isdigit():
                place = place[:-1]
                if place in seen:
                    t = seen[place]
                    return (f"{t} rotates (-C) into {t}{other_place[len(place):]}, which is also an output "
                            f"({other}): rename a rule")
    return None



class SplitSink:
    """pfilter.classify's split outputs: one Output per rule (and one for the
    unmatched packets), created when the first input is opened (its header decides theirs, as
    tcpdump -w takes the input's), written from each batch's verdict matrix, named together
    at the end (OutputSet)."""

    def __init__(self, items, names, order, split, first_match, unmatched, format, truncate, dedup,
                 rotate):
        self.sources = [i for i in items if isinstance(i, (str, os.PathLike))] if isinstance(
            items, (list, tuple)) else []
        self.names = list(names)
        self.order = [self.names.index(o) for o in (order if order is not None else names)]
        rotation = Rotation.make(rotate)
        self.paths = split_paths(split, self.names, strftime=rotation is not None and rotation.seconds is not None
                                 ) if split is not None else {}
        self.first_match = bool(first_match)
        self.unmatched = os.fsdecode(unmatched) if unmatched is not None else None
        if format is not None and format not in ("pcap", "pcapng"):
            raise FilterError(f"unknown capture format {format!r} (pcap or pcapng)")
        self.format = format
        self.options = dict(truncate=check_snaplen(truncate), dedup=check_dedup(dedup), rotate=rotation)
        targets = list(self.paths.values()) + ([self.unmatched] if self.unmatched else [])
        if "-" in targets:
            # (standard output carries the table: a capture there would be cut by its text)
            raise FilterError("split: a split output cannot be standard output ('-'): name a file")
        clash = _clashing_outputs(targets, rotation)
        if clash is not None:
            raise FilterError(f"split: {clash}")
        if rotation is not None:
            for t in targets:
                rotation.refuse_over_input(t, self.sources)
        room_for_open_files(SPLIT_DESCRIPTORS_PER_OUTPUT * len(targets) + SPLIT_SPARE_DESCRIPTORS, lambda hard: (
            f"split: {len(targets)} outputs at once need more open files than the {hard} this process "
            f"may have (ulimit -Hn): split fewer rules at a time"))
        self.set = None
        self.raw = None
        self.fast = None            # FastSplit once the first batch is written (False: none)

    def opened(self, cap):
        from .filterfile import _writer_args
        if self.set is None:
            sources = self.sources or [cap]
            outputs = OutputSet()
            try:
                for r, name in enumerate(self.names):
                    if name in self.paths:
                        path = self.paths[name]
                        outputs.add(r, Output(path, _writer_args(path, cap, self.format, None, sources),
                                              **self.options))
                if self.unmatched:
                    outputs.add(-1, Output(self.unmatched, _writer_args(self.unmatched, cap, self.format,
                                                                        None, sources), **self.options))
            except BaseException:
                outputs.abort()
                raise
            self.set = outputs
            self.nsec = cap.ts_resolution == "ns"
        self.raw = cap.pcap_layout if cap.format == "pcap" and (cap.ts_resolution == "ns") == self.nsec else None
        self.source = (self.source + 1) if hasattr(self, "source") else 0
        for out in self.set:
            out.from_input(cap, self.source)

    def _from_batch(self, batch):
        """Outputs for batches given directly (no file header): the batch's link type, the
        link type's largest snapshot length, microseconds."""
        from .files import max_snaplen_for_linktype
        outputs = OutputSet()
        args = dict(format=None, linktype=batch.linktype, snaplen=max_snaplen_for_linktype(batch.linktype),
                    ts_resolution="us")
        try:
            for r, name in enumerate(self.names):
                if name in self.paths:
                    outputs.add(r, Output(self.paths[name], dict(args, format=self.format), **self.options))
            if self.unmatched:
                outputs.add(-1, Output(self.unmatched, dict(args, format=self.format), **self.options))
        except BaseException:
            outputs.abort()
            raise
        self.set = outputs
        self.nsec = False

    def write(self, batch, out, packed):
        """Write the batch's packets by the verdicts `out` (packets x rules, packed or not)."""
        if self.set is None:
            self._from_batch(batch)
        nr = len(self.names)
        verdicts = None
        if not packed:
            verdicts = out.view(bool)
        elif self.first_match or self.unmatched or not self._fast_ready():
            verdicts = np.unpackbits(out, axis=1, count=nr).view(bool)
        # the packets each output takes: (key, bool column; None: column `key` of packed `out`)
        columns = []
        taken = np.zeros(len(batch), dtype=bool)
        in_order = set(self.order)
        for r in (self.order if self.first_match else range(nr)):
            col = verdicts[:, r] if verdicts is not None else None
            if self.first_match:
                col = col & ~taken
                taken |= col
            elif self.unmatched and r in in_order:
                taken |= col
            if r in self.set.outputs:
                columns.append((r, col))
        if self.unmatched:
            columns.append((-1, ~taken))
        fast, done = self._write_fast(batch, columns, out if packed and verdicts is None else None)
        for key, col in columns:
            first = done if key in fast else 0
            if first >= len(batch):
                continue
            if col is None:         # a rule's column of the packed matrix
                col = ((out[:, key >> 3] >> np.uint8(7 - (key & 7))) & np.uint8(1)).view(bool)
            idx = np.flatnonzero(col[first:])
            if len(idx):
                if first:
                    idx += first
                self.set[key].write(batch, idx, self.raw)

    def _fast_ready(self):
        """Whether the fast path is (or will be) in use: creates it on first use."""
        if self.fast is None:
            native = None
            if self.raw is not None and os.environ.get("PFILTER_NO_FASTPATH", "") in ("", "0"):
                from .. import _impl
                native = _impl.native("pfilter.capture._splitwrite")
            if native is None:
                self.fast = False
            else:
                from .fastpath import default_workers
                self.fast = FastSplit(native, min(SPLIT_WRITERS, default_workers()))
                # {key: file link type} of the outputs it can write (they stay so to the end)
                self._fast_keys = {k: file_linktype(o._writer.linktype) for k, o in self.set.outputs.items()
                                   if FastSplit.usable(o)}
        return bool(self.fast) and self.raw == (16, False)

    def _write_fast(self, batch, columns, packed):
        """Start writing the outputs that can take the fast path (FastSplit); returns their
        keys and how many of the batch's packets were written to them. packed: the packed
        verdict matrix, when the columns are its own (else each column is a bool array)."""
        keys = []
        if self._fast_ready() and batch.linktypes is None and len(batch):
            lt = file_linktype(batch.linktype)
            keys = [k for k, _ in columns if self._fast_keys.get(k) == lt]
        if not keys:
            if self.fast:
                self.fast.wait()    # the writers may write the same files now: these go first
            return (), 0
        if packed is not None:
            bits, cols = packed, keys
        else:
            chosen = set(keys)
            bits = np.packbits(np.column_stack([c for k, c in columns if k in chosen]), axis=1)
            cols = list(range(len(keys)))
        done = self.fast.write(batch, bits, cols, [self.set[k] for k in keys])
        if done < len(batch):
            self.fast.wait()        # the rest goes through the writers, after these records
        return set(keys), done

    def commit(self):
        """Wait for the writes in flight, then name every file (OutputSet.commit); an
        interruption meanwhile is raised once the files are named (pfilter._signals)."""
        from .._signals import deferred
        with deferred():
            if self.fast:
                try:
                    self.fast.drain()
                except BaseException:
                    self.abort()
                    raise
                fast, self.fast = self.fast, False
                fast.close()
            if self.set is not None:
                self.set.commit()

    def abort(self):
        fast, self.fast = self.fast, False
        try:
            if fast:
                fast.close()
        finally:
            if self.set is not None:
                self.set.abort()

    def files(self):
        """{rule name (None: unmatched): [file names]}"""
        if self.set is None:
            return {}
        return {(self.names[k] if k >= 0 else None): list(o.files) for k, o in self.set.outputs.items()}
