"""The public writer: pfilter.open(path, "w") and pfilter.write(path, batches).

Imports pfilter.errors, pfilter.linktypes and the writers of pfilter.capture.writer (which make
the file atomic: written under a temporary name and moved into place on success, never over an
input). This module only decides what the header says when the caller leaves it open: the link
type of the first batch written, a snapshot length that covers every record, microsecond
timestamps (as tcpdump writes) unless asked for nanoseconds, or all three from a Capture being
copied.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import FilterError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

    from .._typing import CaptureFormat, IndexArg, LinkTypeArg, PathArg, TsResolution
    from ..batch import PacketBatch
    from .reader import Capture
    from .writer import PcapngWriter, PcapWriter

__all__ = ["Writer", "write"]


class Writer:
    """A capture file being written, returned by `pfilter.open(path, "w")`; a context manager.

    The file appears at `path` complete when the writer is closed (or its `with` block ends
    without an exception); an exception inside the block, or abort(), leaves whatever was at
    `path` untouched. "-" writes to standard output (not atomic). The file is created when the
    link type is known: at once when `linktype` is given, else at the first write (or close),
    which is then where a file-system failure (a missing directory: FileNotFoundError) shows.

    format: "pcap" or "pcapng" (None: pcapng for a .pcapng/.ntar name, else pcap).
    linktype: the file's link type, a DLT name or number (None: the first batch's; a file that
    receives no packet says EN10MB). A pcapng file gets one interface per link type, so batches
    of several link types may go into one; a pcap file refuses packets of another link type.
    snaplen: the snapshot length in the header (None: the link type's maximum, 262144 for most);
    a packet with more captured bytes is refused, since readers would cut it.
    ts_resolution: "us" (default, as tcpdump writes) or "ns"; packet timestamps are nanoseconds,
    microsecond files keep them rounded down.

    Attributes: path, format, linktype and snaplen (None until the first batch when not given),
    ts_resolution, packets_written, closed."""

    def __init__(self, path: PathArg, *, format: CaptureFormat | None = None,
                 linktype: LinkTypeArg | None = None, snaplen: int | None = None,
                 ts_resolution: TsResolution = "us", _like: Capture | None = None) -> None:
        from .files import format_for_path
        from .writer import FORMATS
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if format is not None and format not in FORMATS:
            raise FilterError(f"unknown capture format {format!r} (pcap or pcapng)")
        if ts_resolution not in ("us", "ns"):
            raise FilterError(f"timestamp resolution must be 'us' or 'ns', not {ts_resolution!r}")
        if snaplen is not None and (isinstance(snaplen, bool) or not isinstance(snaplen, int)
                                    or not 0 < snaplen <= 0x7FFFFFFF):
            raise FilterError(f"invalid snaplen {snaplen!r}")
        self.path = path
        self.format: CaptureFormat = format or format_for_path(path)
        self.linktype: int | None = None
        if linktype is not None:
            from ..linktypes import linktype_number
            self.linktype = linktype_number(linktype)
        self.snaplen: int | None = snaplen
        self.ts_resolution: TsResolution = ts_resolution
        self.packets_written = 0
        self.closed = False
        self._like = _like
        self._out: PcapWriter | PcapngWriter | None = None
        if self.linktype is not None:
            self._open(self.linktype)

    def _open(self, linktype: int) -> PcapWriter | PcapngWriter:
        from .files import max_snaplen_for_linktype
        from .writer import open_writer
        like = self._like
        if self.snaplen is None:
            self.snaplen = max_snaplen_for_linktype(linktype)
        self.linktype = linktype
        interfaces = like.interfaces if like is not None and self.format == "pcapng" else None
        protect = [like.path] if like is not None and isinstance(like.path, (str, bytes)) else []
        self._out = open_writer(self.path, format=self.format, linktype=linktype, snaplen=self.snaplen,
                                ts_resolution=self.ts_resolution,
                                linktype_ext=like.linktype_ext if like is not None else 0,
                                interfaces=interfaces, protect=protect)
        return self._out

    def write(self, batch: PacketBatch, index: IndexArg | None = None) -> int:
        """Write the packets of `batch` (all of them, those where the bool mask `index` is
        true, or the packets numbered in `index`, in that order); returns how many."""
        from ..batch import PacketBatch
        if self.closed:
            raise FilterError(f"{self.path}: writer is closed")
        if not isinstance(batch, PacketBatch):
            raise FilterError(f"write needs a PacketBatch, not {type(batch).__name__}")
        out = self._out if self._out is not None else self._open(batch.linktype)
        if len(batch) and self.snaplen is not None:
            import numpy as np
            try:
                caplen = batch.caplen if index is None else batch.caplen[np.asarray(index)]
            except (IndexError, ValueError, TypeError):
                caplen = batch.caplen[:0]      # the writer names what is wrong with `index`
            longest = int(caplen.max()) if len(caplen) else 0
            if longest > self.snaplen:
                raise FilterError(f"{self.path}: a packet of {longest} captured bytes does not fit "
                                  f"the snapshot length {self.snaplen}")
        n = int(out.write(batch, index))
        self.packets_written += n
        return n

    def close(self) -> None:
        """Finish the file and move it into place (idempotent)."""
        if self.closed:
            return
        out = self._out if self._out is not None else self._open(1)
        self.closed = True
        out.close()

    def abort(self) -> None:
        """Drop everything written; whatever was at `path` stays as it was."""
        if self.closed:
            return
        self.closed = True
        if self._out is not None:
            self._out.abort()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __repr__(self) -> str:
        return (f"<Writer {self.path!r} {self.format} linktype {self.linktype} "
                f"{self.packets_written} packets{' closed' if self.closed else ''}>")


def write(path: PathArg, batches: PacketBatch | Iterable[PacketBatch], *,
          format: CaptureFormat | None = None, linktype: LinkTypeArg | None = None,
          snaplen: int | None = None, ts_resolution: TsResolution | None = None) -> int:
    """Write every packet of `batches` into a new capture file at `path`; returns how many.

    See pfilter.open(path, "w") (the Writer) for the options. `batches` may be one PacketBatch,
    any iterable of them, or an open Capture: then the link type, snapshot length and
    timestamp resolution default to the capture's (pcapng: its interfaces too), and `path`
    may not be the capture's own file."""
    from .reader import Capture
    like = batches if isinstance(batches, Capture) else None
    if like is not None:
        linktype = like.linktype if linktype is None else linktype
        snaplen = like.snaplen if snaplen is None else snaplen
        ts_resolution = like.ts_resolution if ts_resolution is None else ts_resolution
    from ..batch import PacketBatch
    items: Iterable[PacketBatch] = [batches] if isinstance(batches, PacketBatch) else batches
    with Writer(path, format=format, linktype=linktype, snaplen=snaplen,
                ts_resolution=ts_resolution or "us", _like=like) as w:
        for batch in items:
            w.write(batch)
    return w.packets_written
