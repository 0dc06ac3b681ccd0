"""Output file rotation as tcpdump does it: -C (a new file once the current one holds more than
a size), -G (a new file every so many seconds, its name through strftime), -W (a limit on the
number of files), with tcpdump's file names.

Imports pfilter.errors only; pfilter.capture.split applies it to the packets being written.

tcpdump's rules (tcpdump.c, dump_packet_and_trunc), decided before each packet is written:

- -G: when the packet's time minus the time the current file was started is at least G
  seconds, a new file is started at that time; with -W and no -C, tcpdump stops once it has
  started W files after the first (so it writes at most W files).
- -C: when the current file already holds more than C bytes (header included), a new file with
  the next number is started; with -W the numbers wrap around after W - 1 (the oldest file is
  replaced). A -G rotation restarts the numbers at 0.
- Names: the -w name, passed through strftime(local time of the current -G period's start)
  when -G is given, followed by the file number when -C is given and either the number is not
  0 or -W asks for a fixed width: -W COUNT writes numbers with as many digits as COUNT - 1
  has ("out.pcap0", "out.pcap1", ... for -W 3; "out.pcap", "out.pcap1", ... without -W).
"""
from __future__ import annotations

import time

from ..errors import FilterError

# Divergence: tcpdump -G reads the wall clock (time(NULL)) even when reading a file, so over
# a saved capture it writes one file named after the moment it ran; pfilter -G uses the
# packets' own timestamps, so the files cut the capture by its own time.

#: tcpdump -C counts in units of 1,000,000 bytes
C_UNIT = 1000000
#: what a rotation without an output file is told
NEEDS_OUTPUT = "rotating output files (-C/-G) needs an output file (-w)"


class Rotation:
    """When to start a new output file: size (bytes: the current file holds more than this;
    tcpdump's -C MB is size=MB * 1000000), seconds (-G: the packets' time), files (-W)."""

    __slots__ = ("size", "seconds", "files")

    def __init__(self, size: int | None = None, seconds: int | None = None,
                 files: int | None = None) -> None:
        for name, value in (("size", size), ("seconds", seconds), ("files", files)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise FilterError(f"rotation {name} must be a positive integer, not {value!r}")
        if files is not None and size is None and seconds is None:
            raise FilterError("a file count (-W) needs a size (-C) or a time (-G) to rotate by")
        self.size, self.seconds, self.files = size, seconds, files

    @classmethod
    def make(cls, value: Rotation | dict | None) -> Rotation | None:
        """A Rotation from a Rotation, a dict of its fields, or None (no rotation)."""
        if value is None or isinstance(value, Rotation):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__slots__)
            if unknown:
                raise FilterError(f"unknown rotation option(s): {', '.join(sorted(unknown))}")
            return cls(**value)
        raise FilterError(f"rotate must be a Rotation or a dict, not {type(value).__name__}")

    @property
    def width(self) -> int:
        """Digits of the file number (tcpdump's WflagChars): those of files - 1, else 0."""
        if not self.files:
            return 0
        return len(str(self.files - 1)) if self.files > 1 else 0

    def name(self, template: str, number: int, started: int | None) -> str:
        """The name of file `number` of a -G period started at `started` (seconds), as
        tcpdump's MakeFilename makes it."""
        base = template
        if self.seconds is not None:
            base = time.strftime(template, time.localtime(started))
        if number == 0 and (self.width == 0 or self.size is None):
            return base
        return f"{base}{number:0{self.width if self.size is not None else 0}d}"

    def numbered(self, base: str, name: str) -> bool:
        """Whether `name` is one of the -C numbered files of the output `base` ('out.pcap3' of
        'out.pcap'; with -W 10, 'out.pcap0' .. 'out.pcap9'): base, then a number as name() writes it."""
        digits = name[len(base):]
        if self.size is None or not name.startswith(base) or not digits.isdigit() or not digits.isascii():
            return False
        n, width = int(digits), self.width
        return (n > 0 or width > 0) and f"{n:0{width}d}" == digits and (self.files is None or n < self.files)

    def refuse_over_input(self, dst: str, sources) -> None:
        """A FilterError when a -C rotation of the output `dst` would write over an input among
        `sources` (paths; other objects are skipped): said before the first file is written
        (the writer also refuses each file it opens over an input, after the files before it).
        A -G name with strftime fields is not predicted here."""
        import os

        from .files import output_target, same_place
        if self.size is None or dst in (None, "-") or (self.seconds is not None and "%" in dst):
            return
        base = same_place(output_target(dst))
        for src in sources:
            path = getattr(src, "path", src)
            if isinstance(path, (str, os.PathLike)) and self.numbered(base, same_place(path)):
                raise FilterError(f"{os.fsdecode(dst)}: -C would rotate into the input file "
                                  f"{os.fsdecode(path)}: refusing to overwrite it")

    def __repr__(self) -> str:
        return f"Rotation(size={self.size}, seconds={self.seconds}, files={self.files})"
