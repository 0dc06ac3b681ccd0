"""Type aliases of the public API, written once and used in annotations only.

Modules import this under `if TYPE_CHECKING:` (their annotations are strings, from
`from __future__ import annotations`), so nothing here is loaded when pfilter runs. Imports
numpy's typing module and nothing from pfilter.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import IO, Any, Literal, Union

import numpy as np
from numpy.typing import NDArray

#: a file name: str, bytes or os.PathLike ("-" is standard input or output where allowed)
PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
#: where a capture is read from: a file name, "-" (standard input) or a binary file object
InputArg = Union[PathArg, IO[bytes]]
#: a link type: DLT/LINKTYPE name ("EN10MB") or number
LinkTypeArg = Union[int, str]
#: the optimizer setting: on, off, or "shareable" (what pfilter.classify shares best)
OptimizeArg = Union[bool, Literal["shareable"]]
#: progress=True draws a bar on standard error; a callable is called with the progress so far
ProgressArg = Union[bool, Callable[..., object], None]
#: capture file formats pfilter writes
CaptureFormat = Literal["pcap", "pcapng"]
#: timestamp resolutions: microseconds or nanoseconds
TsResolution = Literal["us", "ns"]
#: which packets of a batch: a bool mask (one per packet), or packet indices
IndexArg = Union[NDArray[np.bool_], NDArray[np.integer[Any]], Sequence[int]]
