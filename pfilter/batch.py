"""PacketBatch: many packets in flat numpy arrays, the unit every VM and reader works on.

Imports only pfilter.errors. Holds no Python object per packet: one uint8 buffer with all packet
bytes back to back, and parallel arrays of offsets, captured lengths, wire lengths, timestamps.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import FilterError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import ArrayLike, NDArray


class PacketBatch:
    """Packets i = 0..n-1: bytes data[offsets[i] : offsets[i] + caplen[i]], wire length wirelen[i],
    timestamp timestamps[i] (int64 nanoseconds since the epoch), link type `linktype` (an int for
    the whole batch) or `linktypes` (uint16 per packet, pcapng with mixed interfaces; else None),
    interface index `interfaces` (uint32 per packet, pcapng; else None)."""

    __slots__ = ("data", "offsets", "caplen", "wirelen", "timestamps", "linktype", "linktypes",
                 "interfaces", "file_offsets")

    data: NDArray[np.uint8]
    offsets: NDArray[np.int64]
    caplen: NDArray[np.uint32]
    wirelen: NDArray[np.uint32]
    timestamps: NDArray[np.int64]
    linktype: int
    linktypes: NDArray[np.uint16] | None
    interfaces: NDArray[np.uint32] | None
    file_offsets: NDArray[np.int64] | None

    def __init__(self, data: ArrayLike, offsets: ArrayLike, caplen: ArrayLike, wirelen: ArrayLike,
                 timestamps: ArrayLike | None = None, linktype: int = 1, linktypes: ArrayLike | None = None,
                 interfaces: ArrayLike | None = None, file_offsets: ArrayLike | None = None) -> None:
        self.data = np.ascontiguousarray(data, dtype=np.uint8)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.caplen = np.ascontiguousarray(caplen, dtype=np.uint32)
        self.wirelen = np.ascontiguousarray(wirelen, dtype=np.uint32)
        n = len(self.offsets)
        if timestamps is None:
            timestamps = np.zeros(n, dtype=np.int64)
        self.timestamps = np.ascontiguousarray(timestamps, dtype=np.int64)
        self.linktype = int(linktype)
        self.linktypes = None if linktypes is None else np.ascontiguousarray(linktypes, dtype=np.uint16)
        self.interfaces = None if interfaces is None else np.ascontiguousarray(interfaces, dtype=np.uint32)
        self.file_offsets = None if file_offsets is None else np.ascontiguousarray(file_offsets, dtype=np.int64)
        if not (len(self.caplen) == len(self.wirelen) == len(self.timestamps) == n):
            raise FilterError("PacketBatch arrays differ in length")
        if n and (int(self.offsets.min()) < 0
                  or int((self.offsets + self.caplen.astype(np.int64)).max()) > len(self.data)):
            raise FilterError("PacketBatch offsets/caplen point outside the data buffer")

    @classmethod
    def from_packets(cls, packets: Iterable[bytes | bytearray | memoryview],
                     wirelens: ArrayLike | None = None, linktype: int = 1,
                     timestamps: ArrayLike | None = None) -> PacketBatch:
        """Build a batch from a list of bytes-like packets; wire lengths default to the lengths."""
        packets = [bytes(p) for p in packets]
        lens = np.fromiter((len(p) for p in packets), dtype=np.uint32, count=len(packets))
        offsets = np.zeros(len(packets), dtype=np.int64)
        if len(packets) > 1:
            np.cumsum(lens[:-1], out=offsets[1:])
        data = np.frombuffer(b"".join(packets), dtype=np.uint8) if packets else np.zeros(0, np.uint8)
        if wirelens is None:
            wl = lens.copy()
        else:
            wl = np.asarray(wirelens, dtype=np.uint32)
            if len(wl) != len(packets):
                raise FilterError("wirelens and packets differ in length")
        return cls(data, offsets, lens, wl, timestamps=timestamps, linktype=linktype)

    def __len__(self) -> int:
        return len(self.offsets)

    def packet(self, i: int) -> bytes:
        """The captured bytes of packet i."""
        o = int(self.offsets[i])
        return self.data[o:o + int(self.caplen[i])].tobytes()

    def linktype_of(self, i: int) -> int:
        """The link type of packet i."""
        return self.linktype if self.linktypes is None else int(self.linktypes[i])

    def select(self, mask: NDArray[np.bool_]) -> PacketBatch:
        """A new batch with the packets where mask (bool array) is true, compacted."""
        idx = np.flatnonzero(mask)
        caplen = self.caplen[idx]
        offsets = np.zeros(len(idx), dtype=np.int64)
        if len(idx) > 1:
            np.cumsum(caplen[:-1].astype(np.int64), out=offsets[1:])
        total = int(caplen.sum(dtype=np.int64))
        starts = self.offsets[idx]
        # gather bytes: positions = repeat(starts - offsets, caplen) + arange(total)
        src = np.repeat(starts - offsets, caplen.astype(np.int64)) + np.arange(total, dtype=np.int64)
        data = self.data[src] if total else np.zeros(0, np.uint8)
        pick = lambda a: None if a is None else a[idx]
        return PacketBatch(data, offsets, caplen, self.wirelen[idx], self.timestamps[idx],
                           self.linktype, pick(self.linktypes), pick(self.interfaces),
                           pick(self.file_offsets))

    def __repr__(self) -> str:
        return f"<PacketBatch {len(self)} packets, {len(self.data)} bytes, linktype {self.linktype}>"
