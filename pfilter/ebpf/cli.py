"""The command's eBPF options: `pfilter --ebpf HOOK -o FILE EXPR` writes the ELF object,
`--ebpf-dump` prints the listing (pfilter.cli parses, this module acts).

Imports pfilter.errors, pfilter.capture.files (the atomic output) and pfilter.ebpf.
"""
from __future__ import annotations

import sys
from typing import Any, cast

from ..errors import FilterError
from . import to_ebpf


def _verdict(text: str | None) -> str | int | None:
    return int(text, 0) if text is not None and text.strip().isdigit() else text


def run(args: Any, prog: Any) -> int:
    """Act on --ebpf/-o/--ebpf-dump for the compiled program; the exit status."""
    hook = args.ebpf or "xdp"
    if args.ebpf_output and not args.ebpf:
        raise FilterError("-o FILE writes the object of --ebpf HOOK: give --ebpf xdp, tc or socket")
    if args.ebpf and not args.ebpf_output and not args.ebpf_dump:
        raise FilterError(f"--ebpf {hook} writes an object file: give -o FILE (or --ebpf-dump to print it)")
    eb = to_ebpf(prog, hook, _verdict(args.on_match), _verdict(args.on_miss))
    if args.ebpf_output:
        from ..capture import files
        cast(Any, files).write_whole(args.ebpf_output, eb.object())
    if args.ebpf_dump:
        sys.stdout.write(f"; {hook} program, {len(eb)} instructions, match -> {eb.on_match or 'the cBPF value'}, "
                         f"miss -> {eb.on_miss}\n")
        sys.stdout.write(eb.dump())
    return 0
