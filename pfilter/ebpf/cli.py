"""The command's eBPF options: `pfilter --ebpf HOOK -o FILE EXPR` writes the ELF object,
`--ebpf-dump` prints the listing (pfilter.cli parses, this module acts).

Every refusal is a FilterError (one line, status 1): -o, --on-match or --on-miss without --ebpf;
the options of a capture run (-r, -w, -d, -c, --count, the printing and output options), which
have nothing to act on; a verdict that is no verdict of the hook, or one whose target the program
does not set (redirect); a link type (-y) whose header the hook's packets do not have.

Imports pfilter.errors, pfilter.capture.files (the atomic output) and pfilter.ebpf.
"""
from __future__ import annotations

import re
import sys
from typing import Any, cast

from ..errors import FilterError
from . import linktype_problem, target_problem, to_ebpf, verdicts

#: a verdict given as a number: decimal (leading zeros too) or 0x hex, maybe signed (tc's unspec is -1)
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+)\Z")

#: the options of a capture run (destination, as the user writes it); a counted flag is repeated
#: (-dd) as often as given. --ebpf reads, writes and prints no packets: each is refused with it
_CAPTURE_OPTIONS = (
    ("read", "-r FILE"), ("list_file", "-V FILE"), ("write", "-w FILE"), ("dump", "-d"),
    ("count", "-c COUNT"), ("count_only", "--count"), ("merge", "--merge"), ("after", "--after"),
    ("before", "--before"), ("index_file", "--index"), ("scheduler", "--scheduler"),
    ("eflag", "-e"), ("tflag", "-t"), ("xflag", "-x"), ("Xflag", "-X"), ("Aflag", "-A"),
    ("Sflag", "-S"), ("numbered", "-#"), ("vflag", "-v"), ("quick", "-q"), ("resolution", None),
    ("format", "--format"), ("file_size", "-C"), ("rotate_seconds", "-G"), ("file_count", "-W"),
    ("truncate", "--snaplen"), ("dedup", "--dedup"),
)


def _verdict(text: str | None) -> str | int | None:
    """A verdict as given: a number (decimal, leading zeros included, or 0x hex) or a name."""
    if text is None:
        return None
    t = text.strip()
    if not _NUMBER.match(t):
        return t
    sign = -1 if t[0] == "-" else 1
    t = t.lstrip("+-")
    return sign * (int(t, 16) if t[:2].lower() == "0x" else int(t, 10))


def _capture_options(args: Any) -> list[str]:
    """The options of a capture run given, as the user wrote them."""
    given = []
    for dest, shown in _CAPTURE_OPTIONS:
        value = getattr(args, dest, None)
        if value is None or value is False or (value == 0 and not isinstance(value, str)):
            continue
        if shown is None:                                # --nano, --micro (--time-stamp-precision)
            shown = "--nano" if value in ("ns", "nano") else "--micro"
        elif len(shown) == 2 and isinstance(value, int) and not isinstance(value, bool) and value > 1:
            shown = "-" + shown[1] * value               # -dd, -tt, -vv
        given.append(shown)
    return given


def _refuse_misplaced(args: Any, hook: str) -> None:
    """FilterError for options that do nothing here (see the module's docstring)."""
    if not args.ebpf and not args.ebpf_dump:
        verdict_options = [o for o, v in (("--on-match", args.on_match), ("--on-miss", args.on_miss)) if v is not None]
        if verdict_options:
            say = " and ".join(verdict_options)
            raise FilterError(f"{say} {'are the verdicts' if len(verdict_options) > 1 else 'is the verdict'} "
                              f"of the program --ebpf HOOK writes: give --ebpf xdp, tc or socket")
    if args.ebpf_output and not args.ebpf:
        raise FilterError("-o FILE writes the object of --ebpf HOOK: give --ebpf xdp, tc or socket")
    given = _capture_options(args)
    if given:
        what = f"--ebpf {hook}" if args.ebpf else "--ebpf-dump"
        hints = []
        if any(o.startswith(("-r", "-V")) for o in given):
            hints.append("the hook decides the link type: -y EN10MB, the default, or RAW, IPV4, IPV6")
        if any(o.startswith("-d") for o in given):
            hints.append("--ebpf-dump prints the eBPF listing")
        raise FilterError(f"{what} compiles the expression for the kernel and reads, writes and prints no "
                          f"packets: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not go with it"
                          + "".join(f"; {h}" for h in hints))


def run(args: Any, prog: Any) -> int:
    """Act on --ebpf/-o/--ebpf-dump for the compiled program; the exit status."""
    hook = args.ebpf or "xdp"
    _refuse_misplaced(args, hook)
    if args.ebpf and not args.ebpf_output and not args.ebpf_dump:
        raise FilterError(f"--ebpf {hook} writes an object file: give -o FILE (or --ebpf-dump to print it)")
    on_match, _, on_miss, _ = verdicts(hook, _verdict(args.on_match), _verdict(args.on_miss),
                                       what=("--on-match", "--on-miss"))
    for option, name in (("--on-match", on_match), ("--on-miss", on_miss)):
        problem = target_problem(hook, name, option)
        if problem:
            raise FilterError(problem)
    problem = linktype_problem(hook, prog.linktype)
    if problem:
        raise FilterError(f"--ebpf {hook}: {problem}: give -y EN10MB (the default), RAW, IPV4 or IPV6")
    match_value: str | int | None = int(on_match) if hook == "socket" and on_match is not None else on_match
    eb = to_ebpf(prog, hook, match_value, on_miss)
    if args.ebpf_output:
        from ..capture import files
        cast(Any, files).write_whole(args.ebpf_output, eb.object())
    if args.ebpf_dump:
        sys.stdout.write(f"; {hook} program, {len(eb)} instructions, match -> {eb.on_match or 'the cBPF value'}, "
                         f"miss -> {eb.on_miss}\n")
        sys.stdout.write(eb.dump())
    return 0
