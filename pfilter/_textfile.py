"""Small text files a user hands pfilter: the expression file of `pfilter -F` and the rules file of
`pfilter classify -R` / `pfilter.classify(..., rules=path)`. Imports pfilter.errors only (the
command's numpy-free fast path reads -F files through it).

A text file is read whole but bounded (MAX_TEXT_FILE_BYTES: `-F /dev/zero` must not eat the
memory), must be UTF-8 without NUL bytes, and loses a leading UTF-8 byte-order mark (editors on
Windows write one; it would otherwise become part of the first rule's name or the first word of
the expression). Content errors are FilterErrors; file-system failures stay OSErrors.
"""
import os

from .errors import FilterError

#: the largest expression or rules file read (an `or` of 10,000 hosts is ~200 KB)
MAX_TEXT_FILE_BYTES = 8 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"


def read_text_file(path, what="file", limit=None, names=False):
    """The text of `path` (a str, bytes or os.PathLike), BOM removed. `what` names the file in
    messages ("filter file", "rules file"). Raises FilterError when the file is larger than
    `limit` bytes (default MAX_TEXT_FILE_BYTES), holds a NUL byte or is not UTF-8; OSError (with
    the file name) when it cannot be read. Reads at most limit + 1 bytes, so a device or a pipe
    that never ends is refused rather than read forever. names: a list of file names (tcpdump
    -V), whose bytes are taken as the file system takes a name's (os.fsdecode: any bytes but
    NUL), not as UTF-8 text."""
    limit = MAX_TEXT_FILE_BYTES if limit is None else limit
    name = os.fsdecode(path)
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FilterError(f"{name}: {what} larger than {_size(limit)}")
    skip = len(_BOM) if data.startswith(_BOM) else 0     # offsets in messages count from byte 0
    nul = data.find(b"\0", skip)
    if nul >= 0:
        raise FilterError(f"{name}: {what} is not text (NUL byte at offset {nul})")
    if names:
        return os.fsdecode(data[skip:])
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise FilterError(f"{name}: {what} is not UTF-8 text (byte 0x{data[skip + e.start]:02x} at "
                          f"offset {skip + e.start})") from None


def _size(n):
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n} bytes"
