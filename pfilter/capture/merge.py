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

# Batches of each input: small, since every input holds one while the merge runs.
MERGE_BATCH_BYTES = 1 << 18
# Descriptors a merge keeps beside one per input (the output, standard streams, a compressed
# input's second one, the interpreter's own).
SPARE_DESCRIPTORS = 64


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
    `ts` (their timestamps), `pos` (the next one)."""

    def __init__(self, number, path, programs, window, stats):
        self.number, self.programs, self.window, self.stats = number, programs, window, stats
        self.done = 0         # bytes of the input read (the last batch's last record's offset; at
        try:                  # its end, its size)
            self.size = os.path.getsize(path)
        except (OSError, TypeError):
            self.size = 0
        self.cap = open_capture(path, batch_bytes=MERGE_BATCH_BYTES)
        self.swapped = getattr(self.cap, "byteorder", sys.byteorder) != sys.byteorder
        self.programs.for_linktype(self.cap.linktype, self.cap.snaplen, self.swapped)
        self.batches = iter(self.cap)
        self.batch = self.idx = self.ts = None
        self.pos = 0
        self.unit = 1         # timestamps compared in units of the output's resolution

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
        return True

    def head(self):
        return int(self.ts[self.pos])

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
    try:
        for i, s in enumerate(sources):
            inputs.append(_Input(i, s, programs, window, stats))
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
                    if edited:          # (split.Output: --snaplen, --dedup, -C/-G)
                        before = writer.bytes_written
                        stats.written += writer.write(c.batch, rows)
                        stats.bytes += writer.bytes_written - before
                    else:
                        writer.write(c.batch, rows)
                        stats.bytes += int(c.batch.caplen[rows].sum(dtype=np.int64))
                        stats.written += len(rows)
                stats.matched += len(rows)
            if on_batch is not None:
                on_batch(c.batch, rows)
            if left is not None:
                left -= run
                if left <= 0:
                    break
            if edited and writer.stopped:       # -G -W: the last file is done
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
