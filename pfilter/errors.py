"""Exceptions pfilter raises on bad input. Imports nothing from pfilter.

Every error caused by the caller's input is a FilterError, itself a ValueError, so
`except ValueError` keeps working for code that does not know pfilter.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .capture.fastpath import FilterStats
    from .classification import Classification


class FilterError(ValueError):
    """Base class of every error pfilter raises on bad input."""


class FilterSyntaxError(FilterError):
    """An expression that does not parse.

    `.position` is the 0-based offset of the offending token in `.expression`;
    str() shows the expression with a caret under that spot and what was expected there.
    """

    message: str
    expression: str
    position: int
    length: int

    def __init__(self, message: str, expression: str = "", position: int = 0, length: int = 1) -> None:
        self.message = message
        self.expression = expression
        self.position = position
        self.length = max(1, length)
        super().__init__(self._render())

    def _render(self) -> str:
        if not self.expression:
            return self.message
        # whitespace that is not a plain space (tab, newline) is shown as one space, so the caret
        # sits under the offending character in any terminal
        shown = "".join(" " if c.isspace() else c for c in self.expression)
        caret = " " * self.position + "^" * min(self.length, max(1, len(shown) - self.position))
        return f"{self.message}\n  {shown}\n  {caret}"


class RejectsAllError(FilterError):
    """"expression rejects all packets": the command's refusal (pfilter.cli, as tcpdump's) of an
    optimized program that accepts nothing on the link type it was compiled for."""


class InvalidProgramError(FilterError):
    """A cBPF program the validator refuses. `.index` names the offending instruction (or None)."""

    index: int | None

    def __init__(self, message: str, index: int | None = None) -> None:
        self.index = index
        super().__init__(message if index is None else f"instruction {index}: {message}")


class CaptureFormatError(FilterError):
    """A damaged or unsupported capture file. `.offset` is the file offset of the damage (in
    the decompressed stream for compressed input), `.path` the file's name. From
    pfilter.filter_file, `.stats` is the FilterStats of the packets before the damage (which
    were written); from pfilter.classify, `.partial` is the Classification of those packets;
    else both are None."""

    offset: int | None
    path: str | bytes | None
    stats: FilterStats | None = None
    partial: Classification | None = None

    def __init__(self, message: str, offset: int | None = None, path: str | bytes | None = None) -> None:
        self.offset = offset
        self.path = path
        self.detail = message
        where = []
        if path is not None:
            where.append(str(path))
        if offset is not None:
            where.append(f"offset {offset}")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)

    def renamed(self, path: str | bytes) -> CaptureFormatError:
        """The same error naming the file `path` (a name of it as the user gave it, where this
        one names it as a worker opened it), its stats and partial kept; itself when it names
        no file."""
        if self.path is None:
            return self
        err = CaptureFormatError(self.detail, self.offset, path)
        err.stats, err.partial = self.stats, self.partial
        return err
