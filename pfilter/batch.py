"""PacketBatch: many packets in flat numpy arrays, the unit every VM and reader works on.

Imports pfilter.errors, and pfilter._vm (when built) for its one-pass bounds check. Holds no
Python object per packet: one uint8 buffer with all packet bytes back to back, and parallel arrays
of offsets, captured lengths, wire lengths, timestamps.

A batch is checked when it is built (bounds computed without overflow: 0 <= offset <= len(data)
and caplen <= len(data) - offset). Its arrays stay ordinary, writable numpy arrays, so the native
code that reads them (the VM, the classifier, the writers) checks each packet's bounds again as it
reads it: a batch changed after it was built raises FilterError there, never reads outside data.
"""
from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _impl
from .errors import FilterError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from numpy.typing import ArrayLike, NDArray

_native: Any = _impl.native("pfilter._vm")


def packet_bytes(packet: object, what: str = "packet") -> bytes:
    """The bytes of one bytes-like packet (bytes, bytearray, memoryview, numpy array); anything
    else (an int, a str, a list) raises FilterError instead of becoming some other bytes."""
    if isinstance(packet, bytes):
        return packet
    if not isinstance(packet, (str, int)):
        try:
            return memoryview(packet).tobytes()  # type: ignore[arg-type]
        except TypeError:
            pass
    raise FilterError(f"{what} must be bytes-like, not {type(packet).__name__}")


def as_array(values: ArrayLike, dtype: Any, name: str) -> NDArray[Any]:
    """values as a 1-D C-contiguous array of integer dtype `dtype`; FilterError when they are not
    integers or do not fit it (no silent truncation or wrap-around)."""
    dtype = np.dtype(dtype)
    try:
        arr = values if isinstance(values, np.ndarray) else np.asarray(values)
    except (TypeError, ValueError, OverflowError) as e:
        raise FilterError(f"{name}: {e}") from None
    if arr.ndim != 1:
        raise FilterError(f"{name} must be one-dimensional, not of shape {arr.shape}")
    if arr.dtype != dtype:
        if arr.size == 0:
            arr = arr.astype(dtype)
        elif arr.dtype.kind not in "iub":
            raise FilterError(f"{name} must be integers, not {arr.dtype}")
        else:
            info = np.iinfo(dtype)
            if arr.dtype.kind != "b" and (int(arr.min()) < info.min or int(arr.max()) > info.max):
                raise FilterError(f"{name} must lie in {info.min}..{info.max}")
            arr = arr.astype(dtype)
    return np.ascontiguousarray(arr)


def first_bad_packet(data: NDArray[np.uint8], offsets: NDArray[np.int64], caplen: NDArray[np.uint32],
                     index: NDArray[np.int64] | None = None, before: int = 0) -> int:
    """The first packet (of `index`, else of all) whose offset and caplen point outside data,
    or whose offset is below `before` (room for a record header in front); -1 when none.
    Computed without overflow: the rule the native checks (pfilter._vm.inside) follow."""
    size = len(data)
    if index is None:
        if _native is not None and before == 0:
            return int(_native.first_bad_packet(data, offsets, caplen))
        o, c = offsets, caplen
    else:
        o, c = offsets[index], caplen[index]
    if len(o) == 0:
        return -1
    ok = (o >= before) & (o <= size)
    ok &= c.astype(np.int64) <= size - np.clip(o, 0, size)
    if ok.all():
        return -1
    first = int(np.argmin(ok))
    return first if index is None else int(index[first])


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
        if isinstance(data, (bytes, bytearray, memoryview)):
            data = np.frombuffer(data, dtype=np.uint8)
        self.data = as_array(data, np.uint8, "PacketBatch data")
        self.offsets = as_array(offsets, np.int64, "PacketBatch offsets")
        self.caplen = as_array(caplen, np.uint32, "PacketBatch caplen")
        self.wirelen = as_array(wirelen, np.uint32, "PacketBatch wirelen")
        n = len(self.offsets)
        if timestamps is None:
            timestamps = np.zeros(n, dtype=np.int64)
        self.timestamps = as_array(timestamps, np.int64, "PacketBatch timestamps")
        try:
            self.linktype = operator.index(linktype)
        except TypeError:
            raise FilterError(f"PacketBatch linktype must be an integer, not {type(linktype).__name__}") from None
        self.linktypes = None if linktypes is None else as_array(linktypes, np.uint16, "PacketBatch linktypes")
        self.interfaces = None if interfaces is None else as_array(interfaces, np.uint32, "PacketBatch interfaces")
        self.file_offsets = (None if file_offsets is None
                             else as_array(file_offsets, np.int64, "PacketBatch file_offsets"))
        if not (len(self.caplen) == len(self.wirelen) == len(self.timestamps) == n):
            raise FilterError("PacketBatch arrays differ in length")
        for extra in (self.linktypes, self.interfaces, self.file_offsets):
            if extra is not None and len(extra) != n:
                raise FilterError("PacketBatch arrays differ in length")
        bad = first_bad_packet(self.data, self.offsets, self.caplen)
        if bad >= 0:
            raise self.bounds_error(bad)

    def bounds_error(self, i: int) -> FilterError:
        """The FilterError for packet i, whose offset/caplen point outside the data buffer."""
        return FilterError(f"PacketBatch packet {i}: offset {int(self.offsets[i])} and caplen "
                           f"{int(self.caplen[i])} point outside the data buffer ({len(self.data)} bytes)")

    def native_arrays(self) -> tuple[NDArray[np.uint8], NDArray[np.int64], NDArray[np.uint32], NDArray[np.uint32]]:
        """(data, offsets, caplen, wirelen) as native code takes them, after O(1) checks of their
        types and lengths (the attributes may have been replaced since the batch was built); the
        native code checks every packet's bounds itself as it reads it."""
        arrays = (self.data, self.offsets, self.caplen, self.wirelen)
        for arr, dtype, name in zip(arrays, (np.uint8, np.int64, np.uint32, np.uint32),
                                    ("data", "offsets", "caplen", "wirelen")):
            if not (isinstance(arr, np.ndarray) and arr.dtype == dtype and arr.ndim == 1
                    and arr.flags.c_contiguous):
                raise FilterError(f"PacketBatch {name} is no longer a 1-D contiguous {np.dtype(dtype)} array")
        if not len(self.offsets) == len(self.caplen) == len(self.wirelen):
            raise FilterError("PacketBatch arrays differ in length")
        return arrays  # type: ignore[return-value]

    def check(self) -> None:
        """Raise FilterError unless every packet still lies inside the data buffer (for code that
        reads the arrays itself; the VM and the writers check as they read)."""
        data, offsets, caplen, _ = self.native_arrays()
        bad = first_bad_packet(data, offsets, caplen)
        if bad >= 0:
            raise self.bounds_error(bad)

    @classmethod
    def from_packets(cls, packets: Iterable[bytes | bytearray | memoryview],
                     wirelens: ArrayLike | None = None, linktype: int = 1,
                     timestamps: ArrayLike | None = None) -> PacketBatch:
        """Build a batch from a list of bytes-like packets; wire lengths default to the lengths."""
        packets = [packet_bytes(p, f"packet {i}") for i, p in enumerate(packets)]
        lens = np.fromiter((len(p) for p in packets), dtype=np.uint32, count=len(packets))
        offsets = np.zeros(len(packets), dtype=np.int64)
        if len(packets) > 1:
            np.cumsum(lens[:-1], out=offsets[1:])
        data = np.frombuffer(b"".join(packets), dtype=np.uint8) if packets else np.zeros(0, np.uint8)
        if wirelens is None:
            wl = lens.copy()
        else:
            wl = as_array(wirelens, np.uint32, "wirelens")
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
        self.check()
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != (len(self),):
            raise FilterError(f"select needs a bool mask of {len(self)} entries")
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
