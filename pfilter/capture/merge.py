"""--merge: the matching packets of several captures in one output in timestamp order, in
mergecap's order: each input is read in its own order, and the next packet written is the
earliest of the inputs' next matching packets (any input's own order is kept).

On equal timestamps mergecap (Wireshark 4.0's merge.c: the last input whose next packet is
"earlier or equal") takes the later input's packet first (not the first input's, as issue 20
supposed); pfilter follows mergecap, whose output it must equal (tests/test_scale_inputs.py).

Imports numpy, pfilter.errors, pfilter.capture.reader and filterfile's writer helpers. Memory:
one small batch per input; the runs of consecutive packets one input contributes are found with
numpy and written as index arrays, so Python works per run, not per packet.
"""
import heapq
import os
import sys
import time

import numpy as np

from .._signals import deferred
from ..errors import CaptureFormatError, FilterError
from .fastpath import FilterStats
from .reader import open_capture

# Batches of each input: small, since every input holds one while the merge runs. Each input
# reads through a window (its batches' bytes; a record longer widens it while it is read) of
# MERGE_MEMORY_BYTES shared out among the inputs, between MERGE_MIN_WINDOW_BYTES and
# MERGE_BATCH_BYTES; a quarter of it goes to inputs the merge takes a whole batch of at a time
# (their packets come before every other input's): their windows double, up to
# MERGE_BATCH_BYTES, and go back to their share once another input's packets come between.
# 1,000 inputs of 1 MB once held 2.2 GB (a whole reader window each).
MERGE_BATCH_BYTES = 1 << 18
MERGE_MEMORY_BYTES = 16 << 20
MERGE_MIN_WINDOW_BYTES = 16 << 10


class _Windows:
    """The inputs' window sizes: `share` each, some grown within `spare` bytes more."""

    def __init__(self, inputs):
        self.share = max(MERGE_MIN_WINDOW_BYTES,
                         min(MERGE_BATCH_BYTES, MERGE_MEMORY_BYTES * 3 // 4 // max(1, inputs)))
        self.spare = MERGE_MEMORY_BYTES // 4

    def resize(self, c, size):
        """c's window to `size` (within its share and MERGE_BATCH_BYTES, as spare allows)."""
        size = max(self.share, min(MERGE_BATCH_BYTES, size))
        if size - c.window_bytes > self.spare:
            return
        self.spare -= size - c.window_bytes
        c.set_window(size)


# Descriptors a merge keeps beside one per input: the standard streams, the output and its
# directory, a compressed input's second one, a few the interpreter opens while it imports.
SPARE_DESCRIPTORS = 16


def _room_for(inputs):
    """Let this process open every input at once (a merge reads them side by side): the soft
    limit on open files raised towards the hard one when it is short (1,024 on a stock Debian
    shell, a directory of 1,500 captures failed with "Too many open files"); FilterError, saying
    so, when even the hard limit is short."""
    from .files import room_for_open_files
    room_for_open_files(inputs + SPARE_DESCRIPTORS, lambda hard: (
        f"--merge reads its {inputs} inputs at once and may open only {hard} files "
        f"(ulimit -Hn): merge fewer at a time, then merge the outputs"))


class _Input:
    """One input's matching packets, a batch at a time: `batch`, `idx` (its matching rows) and
    `ts` (their timestamps), `pos` (the next one); `keys`: each one's merge key, the largest
    timestamp of the input's matching packets up to it (see _merge_batches)."""

    def __init__(self, number, path, programs, window, stats, window_bytes=MERGE_BATCH_BYTES):
        self.number, self.programs, self.window, self.stats = number, programs, window, stats
        self.done = 0         # bytes of the input read (the last batch's last record's offset; at
        try:                  # its end, its size)
            self.size = os.path.getsize(path)
        except (OSError, TypeError):
            self.size = 0
        self.cap = open_capture(path, batch_bytes=window_bytes, window_bytes=window_bytes, reuse_buffer=True,
                                batch_packets=max(64, window_bytes // 32))
        self.window_bytes = window_bytes
        self.swapped = getattr(self.cap, "byteorder", sys.byteorder) != sys.byteorder
        self.programs.for_linktype(self.cap.linktype, self.cap.snaplen, self.swapped)
        self.batches = iter(self.cap)
        self.batch = self.idx = self.ts = self.keys = None
        self.pos = 0
        self.unit = 1         # timestamps compared in units of the output's resolution
        self.key_max = None   # the largest timestamp of the matching packets so far
        self.loads = 0        # batches with matching packets loaded

    def advance(self):
        """Load batches until one has a matching packet; False at the end of the input."""
        while self.batch is None or self.pos >= len(self.idx):
            self.batch = self.idx = self.ts = None
            try:
                batch = next(self.batches)
            except StopIteration:
                self.done = max(self.done, self.size)
                return False
            mask = self.programs.match(batch, self.cap.snaplen, self.swapped, self.cap.linktype)
            after, before = self.window
            if after is not None or before is not None:
                inside = np.ones(len(batch), bool)
                if after is not None:
                    inside &= batch.timestamps >= after
                if before is not None:
                    inside &= batch.timestamps < before
                mask &= inside
                self.stats.read += int(inside.sum())
            else:
                self.stats.read += len(batch)
            self.batch, self.idx, self.pos = batch, np.flatnonzero(mask), 0
            if batch.file_offsets is not None and len(batch):
                self.done = int(batch.file_offsets[-1])
            self.ts = batch.timestamps[self.idx] // self.unit
            if len(self.ts):
                self.keys = np.maximum.accumulate(self.ts)
                if self.key_max is not None:
                    np.maximum(self.keys, self.key_max, out=self.keys)
                self.key_max = int(self.keys[-1])
                self.loads += 1
        return True

    def head(self):
        return int(self.ts[self.pos])

    def set_window(self, size):
        """Read the next batches through a window (and in batches) of `size` bytes."""
        self.cap.set_window_bytes(size, batch_packets=max(64, size // 32))
        self.window_bytes = size

    def close(self):
        self.cap.close()


def merge_filter(sources, dst, programs, count=None, format=None, ts_resolution=None, window=(None, None),
                 on_batch=None, writer_for=None, announce=None, progress=None, total_bytes=0):
    """Write the packets of `sources` (paths) that `programs` (a filterfile.ProgramSet) accepts
    to dst (None: count only) in mergecap's order; returns a FilterStats. window: (after,
    before) in ns (editcap -A / -B). writer_for(dst, first_capture, sources): the output.
    announce(path, linktype, snaplen, index): called as each input is opened (all of them
    before the first packet is read). progress(bytes_done, total_bytes, stats): called as the
    inputs are read (bytes_done: over all of them)."""
    from .filterfile import keep_written
    started = time.perf_counter()
    stats = FilterStats(files=[str(s) for s in sources])
    inputs, writer = [], None
    _room_for(len(sources))
    windows = _Windows(len(sources))
    try:
        for i, s in enumerate(sources):
            inputs.append(_Input(i, s, programs, window, stats, windows.share))
            if announce is not None:
                announce(inputs[-1].cap.path, inputs[-1].cap.linktype, inputs[-1].cap.snaplen, i)
        first = inputs[0].cap
        if len({c.cap.linktype for c in inputs}) > 1 and (format or "") != "pcapng" and not str(dst or "").endswith(".pcapng"):
            kinds = sorted({c.cap.linktype for c in inputs})
            raise FilterError(f"inputs of several link types ({', '.join(map(str, kinds))}) need pcapng output "
                              f"(name the output .pcapng)")
        if dst is not None:
            writer = writer_for(dst, first, format, ts_resolution, list(sources))
        edited = writer is not None and hasattr(writer, "rotate")
        # Timestamps are compared as the output holds them (microseconds: cut, as written), as
        # mergecap compares the files tcpdump wrote; a pcapng output with no resolution asked
        # for keeps each input's (writer.PcapngWriter, keep_resolution): compared whole.
        kept = writer is not None and writer.format == "pcapng" and ts_resolution is None
        if writer is not None:
            output_ns = writer.nsec
        else:       # (counting: the resolution an output would have, from the inputs open here)
            from .filterfile import output_header
            output_ns = (ts_resolution or output_header(first, [c.cap for c in inputs])[1]) == "ns"
        if not kept and not output_ns:
            for c in inputs:
                c.unit = 1000
        if on_batch is None and (writer is None or writer.format == "pcap"):
            _merge_batches(inputs, writer, edited, stats, count, progress, total_bytes, windows)
            w, writer = writer, None
            keep_written(w, stats, started)
            stats.seconds = time.perf_counter() - started
            return stats
        # heap keys (timestamp, -input): the last input first on equal timestamps, as mergecap
        heap = [(c.head(), -c.number) for c in inputs if c.advance()]
        heapq.heapify(heap)
        reported = [c.done for c in inputs]
        left = count
        while heap:
            _t, nk = heapq.heappop(heap)
            k = -nk
            c = inputs[k]
            # the run of c's packets that come before every other input's next one
            if heap:
                t2, nk2 = heap[0]
                rest = c.ts[c.pos:]
                ok = (rest < t2) | ((rest == t2) & (k > -nk2))
                run = int(np.argmin(ok)) if not ok.all() else len(rest)
                run = max(run, 1)
            else:
                run = len(c.idx) - c.pos
            if left is not None:
                run = min(run, left)
            rows = c.idx[c.pos:c.pos + run]
            c.pos += run
            with deferred():      # an interruption comes after the run is written and counted
                if writer is not None:
                    if writer.format == "pcapng":
                        writer.from_input(c.cap, k)
                    _write_counted(writer, edited, stats, c.batch, rows)
                stats.matched += len(rows)
            if on_batch is not None:
                on_batch(c.batch, rows)
            left = None if left is None else left - run
            if _stops(left, edited, writer):
                break
            if c.advance():
                heapq.heappush(heap, (c.head(), -k))
            if progress is not None and c.done != reported[k]:
                reported[k] = c.done
                progress(sum(reported), total_bytes, stats)
        w, writer = writer, None
        keep_written(w, stats, started)
    except (CaptureFormatError, KeyboardInterrupt) as err:
        w, writer = writer, None
        keep_written(w, stats, started, err)
        raise
    finally:
        for c in inputs:
            c.close()
        if writer is not None:
            writer.abort()
    stats.seconds = time.perf_counter() - started
    return stats


def _stops(left, edited, writer):
    """Whether the merge ends here: -c's count reached, or -G -W's last file done."""
    return (left is not None and left <= 0) or bool(edited and writer.stopped)


def _write_counted(writer, edited, stats, batch, rows):
    """Write the batch's packets `rows` (in that order) and count them in stats."""
    if edited:          # (split.Output: --snaplen, --dedup, -C/-G: it says what it wrote)
        before = writer.bytes_written
        stats.written += writer.write(batch, rows)
        stats.bytes += writer.bytes_written - before
    else:
        writer.write(batch, rows)
        stats.bytes += int(batch.caplen[rows].sum(dtype=np.int64))
        stats.written += len(rows)


def _merge_batches(inputs, writer, edited, stats, count, progress, total_bytes, windows):
    """merge_filter's loop for a pcap output or a count, many packets at a time rather than a
    run of one input's packets at a time (inputs whose packets alternate made runs of one
    packet, and Python's work per packet cost 10 times mergecap's time).

    mergecap writes the earliest of the inputs' next packets (the later input first on equal
    timestamps). That order is the packets sorted by (key, -input, position in the input), a
    packet's key being the largest timestamp of its input up to it: a packet earlier than one
    before it in its input is written right after that one (it is then the earliest head,
    since that one was), and keys never go back within an input. So the loaded packets whose
    (key, -input) is at most the smallest of the inputs' last loaded (key, -input), the bound,
    come before every packet not loaded yet: they are sorted and written at once, which empties
    the batch of the input that set the bound, and its next is loaded. Two heaps: the inputs'
    next packets (key, -input), to visit only those with packets within the bound; their last
    loaded ones, for the bound."""
    heads, tails = [], []
    for c in inputs:
        if c.advance():
            heads.append((int(c.keys[c.pos]), -c.number))
            tails.append((c.key_max, -c.number, c.loads))
    heapq.heapify(heads)
    heapq.heapify(tails)
    reported = [c.done for c in inputs]
    left = count
    while heads:
        while tails[0][2] != inputs[-tails[0][1]].loads:     # (an earlier batch, or an input ended)
            heapq.heappop(tails)
        bound = tails[0][:2]
        parts = []
        while heads and heads[0] <= bound:
            c = inputs[-heapq.heappop(heads)[1]]
            keys = c.keys[c.pos:]
            parts.append((c, c.pos + int(np.searchsorted(keys, bound[0], "right" if -c.number <= bound[1] else "left"))))
        if left is not None and sum(end - c.pos for c, end in parts) > left:
            parts = _first(parts, left)
        if len(parts) == 1:             # one input's packets, in its order: from its batch
            c, end = parts[0]
            batch, order = c.batch, c.idx[c.pos:end]
            if c.pos == 0 and end == len(c.idx):
                windows.resize(c, c.window_bytes * 2)   # it leads: read it in larger batches
        else:
            order = _merged_order(parts)[1]
            batch = _gathered(parts) if writer is not None else None
            for c, _end in parts:
                if c.window_bytes > windows.share:
                    windows.resize(c, windows.share)
        n = len(order)
        with deferred():      # an interruption comes after these packets are written and counted
            if writer is not None and n:
                _write_counted(writer, edited, stats, batch, order)
            elif n:
                stats.bytes += sum(int(c.batch.caplen[c.idx[c.pos:end]].sum(dtype=np.int64)) for c, end in parts)
            stats.matched += n
            for c, end in parts:
                c.pos = end
        left = None if left is None else left - n
        if _stops(left, edited, writer):
            break
        for c, _end in parts:
            if c.pos < len(c.idx):
                heapq.heappush(heads, (int(c.keys[c.pos]), -c.number))
            elif c.advance():
                heapq.heappush(heads, (int(c.keys[c.pos]), -c.number))
                heapq.heappush(tails, (c.key_max, -c.number, c.loads))
            else:
                c.loads = -1            # (its tail in the heap goes with it)
                windows.resize(c, windows.share)
                c.batch = c.idx = c.ts = c.keys = None
                c.close()               # (its buffers and descriptor: a merge of many ends one by one)
            if progress is not None and c.done != reported[c.number]:
                reported[c.number] = c.done
                progress(sum(reported), total_bytes, stats)


def _merged_order(parts):
    """(which, order) of the packets parts take ((input, end): its matching rows from its
    position to end), laid one input after the other: which[k], the part of the k-th; order, the
    merge's order of them (by key, -input, position)."""
    which = np.repeat(np.arange(len(parts)), [end - c.pos for c, end in parts])
    keys = np.concatenate([c.keys[c.pos:end] for c, end in parts])
    return which, np.lexsort((np.arange(len(keys)), -np.array([c.number for c, _ in parts])[which], keys))


def _first(parts, n):
    """parts cut to the first n packets of their merged order (-c): each input's first ones, as
    many as it has among them."""
    which, order = _merged_order(parts)
    taken = np.bincount(which[order[:n]], minlength=len(parts))
    return [(c, c.pos + int(k)) for (c, _end), k in zip(parts, taken)]


def _gathered(parts):
    """One PacketBatch of the packets parts take ((input, end): its matching rows from its
    position to end), input after input: each input's bytes from its first taken packet to the
    end of its last copied into one buffer."""
    from ..batch import PacketBatch
    datas, offsets, caplen, wirelen, stamps, kinds = [], [], [], [], [], []
    base = 0
    typed = any(c.batch.linktypes is not None for c, _ in parts)
    for c, end in parts:
        b, rows = c.batch, c.idx[c.pos:end]
        off, cap = b.offsets[rows], b.caplen[rows]
        lo, hi = int(off.min()), int((off + cap).max())
        datas.append(b.data[lo:hi])
        offsets.append(off - (lo - base))
        base += hi - lo
        caplen.append(cap)
        wirelen.append(b.wirelen[rows])
        stamps.append(b.timestamps[rows])
        if typed:
            kinds.append(b.linktypes[rows] if b.linktypes is not None else np.full(len(rows), b.linktype, np.uint16))
    return PacketBatch(np.concatenate(datas), np.concatenate(offsets), np.concatenate(caplen),
                       np.concatenate(wirelen), np.concatenate(stamps), parts[0][0].batch.linktype,
                       linktypes=np.concatenate(kinds) if typed else None)
