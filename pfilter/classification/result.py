"""pfilter.classification.result: Classification, what pfilter.classify returns (counts, the
verdict matrix, first-match labels, a pandas view, the per-rule table, split files written later).

Imports numpy and pfilter.errors; at call time pfilter.classification.run (to read a source
again) and pfilter.capture.split (to write it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, overload

import numpy as np

from ..errors import FilterError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import EllipsisType
    from typing import Any, Literal

    import pandas as pd
    from numpy.typing import NDArray

    from ..errors import CaptureFormatError
    from ..program import Program

__all__ = ["Classification"]


#: the number of zero bits above the highest set bit of a byte (0 for 0: not used there)
_LEADING_ZEROS = np.array([0] + [8 - v.bit_length() for v in range(1, 256)], dtype=np.int32)


def block_codes(block: NDArray[Any], packed: bool, nrules: int, idx: list[int]) -> NDArray[np.int32]:
    """label_codes of the rows `block` of a matrix (packed: packbits rows of nrules bits): for
    each row, the position in idx of the first rule of idx that accepts it, -1 if none does."""
    if not idx:
        return np.full(len(block), -1, dtype=np.int32)
    # the rules in their own order (the common case): the block as it is, no column copy;
    # packed, the first set bit of each row's first non-zero byte (packbits: rule 0 is the
    # first byte's high bit), without unpacking
    identity = idx == list(range(nrules))
    if identity and packed:
        nonzero = block != 0
        first = nonzero.argmax(axis=1)
        byte = block[np.arange(len(block)), first]
        return np.where(nonzero.any(axis=1), first * 8 + _LEADING_ZEROS[byte], -1).astype(np.int32)
    if packed:
        block = np.unpackbits(block, axis=1, count=nrules)
    sub = block if identity else block[:, idx]
    sub = sub.astype(bool, copy=False)
    return np.where(sub.any(axis=1), sub.argmax(axis=1), -1).astype(np.int32)


class Classification:
    """The result of pfilter.classify.

    rules: tuple of rule names; expressions: tuple of the rules' expressions (or Programs);
    matrix: bool array (packets x rules), or with packed=True np.packbits(bool_matrix, axis=1)
    (uint8, packets x ceil(rules/8)), or None with counts_only=True;
    counts / bytes: int64 per rule (packets accepted, their wire bytes);
    packets / total_bytes: totals over all packets; matched / matched_bytes: packets accepted by
    at least one rule; wirelen, timestamps: per packet (None with counts_only=True);
    inapplicable: (rule name, link type name, reason) for each rule that had no meaning on a link
    type of the input and so matched no packet of it (see RuleLinkTypeWarning)."""

    rules: tuple[str, ...]
    expressions: tuple[str | Program, ...]
    matrix: NDArray[np.bool_] | NDArray[np.uint8] | None
    packed: bool
    counts: NDArray[np.int64]
    packets: int
    total_bytes: int
    matched: int
    matched_bytes: int
    wirelen: NDArray[np.uint32] | None
    timestamps: NDArray[np.int64] | None
    order: tuple[str, ...]
    default: str | None
    inapplicable: list[tuple[str, str, str]]
    bytes: NDArray[np.int64]

    def __init__(self, rules: Sequence[str], expressions: Sequence[str | Program],
                 matrix: NDArray[np.bool_] | NDArray[np.uint8] | None, packed: bool,
                 counts: NDArray[np.int64], nbytes: NDArray[np.int64], packets: int, total_bytes: int,
                 matched: int, matched_bytes: int, wirelen: NDArray[np.uint32] | None,
                 timestamps: NDArray[np.int64] | None, order: Sequence[str] | None,
                 default: str | None) -> None:
        self.rules, self.expressions = tuple(rules), tuple(expressions)
        self.matrix, self.packed = matrix, packed
        self.counts, self.bytes = counts, nbytes
        self.packets, self.total_bytes = packets, total_bytes
        self.matched, self.matched_bytes = matched, matched_bytes
        self.wirelen, self.timestamps = wirelen, timestamps
        self.order = tuple(order) if order is not None else self.rules
        self.default = default
        self.inapplicable = []
        #: split files written: {rule name (None: unmatched): [file names]}
        self.files: dict[str | None, list[str]] = {}
        #: the capture paths classified (what write() reads again), None for other sources
        self.source: list[str] | None = None

    def __len__(self) -> int:
        return self.packets

    def __repr__(self) -> str:
        return f"<Classification {self.packets} packets x {len(self.rules)} rules>"

    def write(self, split: str | None = None, *, source: Any = None, first_match: bool = False,
              unmatched: str | None = None, format: str | None = None, truncate: int | None = None,
              dedup: int | bool | None = None, rotate: Any = None,
              on_damage: Callable[[CaptureFormatError], object] | None = None) -> dict[str | None, list[str]]:
        """Write every rule's packets into its own file (`split`, a template with {rule}) and
        the packets no rule accepts into `unmatched`, as classify(split=...) does, from this
        result's matrix: the capture (`source`, default the paths classified) is read again but
        no rule runs again. on_damage: as classify's, for a result classify made with it (a
        damaged capture's packets before its damage written, its error passed on, the next
        capture read). Returns {rule name (None: unmatched): [file names]}."""
        if self.matrix is None:
            raise FilterError("write needs the matrix: classify(..., counts_only=True) keeps none")
        if split is None and unmatched is None:
            raise FilterError("write needs split= (a template with {rule}) or unmatched=")
        src = self.source if source is None else source
        if src is None:
            raise FilterError("write needs source= (the capture this result classified)")
        from ..capture.split import SplitSink
        from .run import _iter_batches, _sources
        items, _size = _sources(src)
        sink = SplitSink(items, self.rules, self.order, split, first_match, unmatched, format,
                          truncate, dedup, rotate)
        row = 0
        try:
            for batch, _done in _iter_batches(items, sink.opened, on_damage):
                n = len(batch)
                if row + n > self.packets:
                    raise FilterError(f"write: the source has more packets than the {self.packets} classified")
                sink.write(batch, self.matrix[row:row + n].view(np.uint8), self.packed)
                row += n
            if row != self.packets:
                raise FilterError(f"write: the source has {row} packets, {self.packets} were classified")
            sink.commit()
        finally:
            sink.abort()
        return sink.files()

    def column(self, name: str) -> NDArray[np.bool_]:
        """The bool column of one rule."""
        r = self._index(name)
        if self.matrix is None:
            raise FilterError("counts_only=True keeps no matrix")
        if not self.packed:
            return self.matrix[:, r]
        return (self.matrix[:, r >> 3] & (0x80 >> (r & 7))) != 0

    def bool_matrix(self) -> NDArray[np.bool_]:
        """The matrix as bool (packets x rules), unpacking it if it was packed."""
        if self.matrix is None:
            raise FilterError("counts_only=True keeps no matrix")
        if not self.packed:
            return self.matrix
        return np.unpackbits(self.matrix, axis=1, count=len(self.rules)).astype(bool)

    def _index(self, name):
        try:
            return self.rules.index(name)
        except ValueError:
            raise FilterError(f"no rule named {name!r}") from None

    def label_codes(self, order: Sequence[str] | None = None) -> tuple[NDArray[np.int32], tuple[str, ...]]:
        """(codes, names): codes[i] is the index in names of the first rule of `order` (default:
        classify's order, else the rules' order) that accepts packet i, -1 if none does."""
        if self.matrix is None:
            raise FilterError("labels need the matrix: classify(..., counts_only=True) keeps none")
        names = tuple(self.order if order is None else order)
        idx = [self._index(nm) for nm in names]
        codes = np.full(self.packets, -1, dtype=np.int32)
        if not idx:
            return codes, names
        # the rules in their own order (the common case): the matrix as it is, no column copy;
        # packed, the first set bit of each row's first non-zero byte (packbits: rule 0 is the
        # first byte's high bit), without unpacking
        chunk = 1 << 16
        for s in range(0, self.packets, chunk):
            block = self.matrix[s:s + chunk]
            codes[s:s + len(block)] = block_codes(block, self.packed, len(self.rules), idx)
        return codes, names

    @overload
    def labels(self, order: Sequence[str] | None = None, default: str | None | EllipsisType = Ellipsis,
               codes: Literal[False] = False) -> NDArray[Any]: ...
    @overload
    def labels(self, order: Sequence[str] | None = None, default: str | None | EllipsisType = Ellipsis, *,
               codes: Literal[True]) -> tuple[NDArray[np.int32], tuple[str, ...]]: ...
    def labels(self, order: Sequence[str] | None = None, default: str | None | EllipsisType = Ellipsis,
               codes: bool = False) -> NDArray[Any] | tuple[NDArray[np.int32], tuple[str, ...]]:
        """First-match label per packet: the name of the first rule of `order` that accepts it,
        else `default` (default: classify's default). A numpy str array, or an object array when
        the default is None; with codes=True the pair (codes, names) of label_codes()."""
        c, names = self.label_codes(order)
        if codes:
            return c, names
        default = self.default if default is Ellipsis else default
        if default is None:
            table = np.array(list(names) + [None], dtype=object)
        else:
            table = np.array(list(names) + [str(default)], dtype=str)
        return table[c]       # -1 picks the default, the last entry

    def to_pandas(self) -> pd.DataFrame:
        """A pandas DataFrame: one bool column per rule (index: packet number), plus `label`
        (labels() with classify's order and default), `wirelen` and `timestamp`
        (datetime64[ns]) columns unless a rule already has that name."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Classification.to_pandas() needs pandas: pip install 'pfilter[pandas]'") from None
        m = self.bool_matrix()
        cols = {name: m[:, r] for r, name in enumerate(self.rules)}
        if "label" not in cols:
            cols["label"] = self.labels()
        if "wirelen" not in cols and self.wirelen is not None:
            cols["wirelen"] = self.wirelen
        if "timestamp" not in cols and self.timestamps is not None:
            cols["timestamp"] = pd.to_datetime(self.timestamps, unit="ns")
        df = pd.DataFrame(cols)
        df.index.name = "packet"
        return df

    def table(self) -> str:
        """The per-rule table the CLI prints: rule, packets, bytes, share of all packets."""
        width = max([len("rule"), len("(no rule)")] + [len(r) for r in self.rules])
        lines = [f"{'rule':<{width}}  {'packets':>12}  {'bytes':>15}  {'share':>7}"]

        def row(name, p, b):
            share = 100.0 * p / self.packets if self.packets else 0.0
            return f"{name:<{width}}  {p:>12}  {b:>15}  {share:>6.2f}%"

        for r, name in enumerate(self.rules):
            lines.append(row(name, int(self.counts[r]), int(self.bytes[r])))
        lines.append(row("(no rule)", self.packets - self.matched, self.total_bytes - self.matched_bytes))
        lines.append(row("total", self.packets, self.total_bytes))
        return "\n".join(lines) + "\n"
