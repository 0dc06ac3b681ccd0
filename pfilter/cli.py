"""The `pfilter` command (also `python -m pfilter`): tcpdump's offline options with the same
meaning, and sub-commands for what tcpdump lacks (`pfilter classify ...`).

Imports the public pfilter API (compile, Program, errors), pfilter.capture (reader, writer,
filter_file), pfilter.display and pfilter.linktypes; pfilter.classification is imported only
when `pfilter classify` (classify_main, below) runs. Errors are one line on stderr ("pfilter: ..."), never a traceback, with a
non-zero exit status.
"""
import os
import sys

from ._argparse import UsageError as _UsageError, add_options

# One filtering process needs no BLAS thread pool: spinning its threads up costs ~0.1 s of CPU
# at numpy's import. Only the command does this, never `import pfilter`.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

EPILOG = """\
examples:
  pfilter -r in.pcap -w out.pcap 'ip and tcp port 80'   keep the HTTP packets
  pfilter -r in.pcapng 'udp port 53 or icmp'            one tcpdump -n style line per match
  pfilter -r in.pcap --count vlan and ip                how many packets match
  pfilter -r captures/ -w all-dns.pcap udp port 53      every capture of a directory, one output
  pfilter -r in.pcap.gz -c 100 -w first100.pcap tcp     gzip/zstd input; stop after 100 matches
  pfilter -d 'ip host 192.0.2.1'                        the cBPF program in tcpdump -d's form
  pfilter -y LINUX_SLL -ddd 'tcp'                       ... for another link type (-dd: C array)
  pfilter -r in.pcap -F filter.txt -w out.pcap          the expression from a file
  pfilter classify -r in.pcap -R rules.txt              many named filters, one pass (see --help)

environment:
  XDG_CACHE_HOME                                        compiled programs are kept in
                                                        $XDG_CACHE_HOME/pfilter (default ~/.cache)
  PFILTER_NO_CACHE=1                                    compile every time, keep no cache

The expression is the trailing words, in tcpdump's language (man pcap-filter).
Output is pcap (pcapng when the output name ends in .pcapng or with --format pcapng), with the
input's timestamp resolution (several: nanoseconds when any has them; pcapng: each input's)
unless --micro / --nano say otherwise.
"""


# Inputs smaller than this finish too fast for a progress bar to help.
PROGRESS_MIN_BYTES = 64 * 1024 * 1024
# An empty --scheduler (pfilter and pfilter classify).
SCHEDULER_NEEDED = "--scheduler needs a scheduler's address (tcp://HOST:PORT) or 'local'"




# The options of the main command, in --help's order (pfilter._argparse.add_options reads these
# tables); tcpdump's display flags are read by pfilter.display.Printer.
_MAIN_OPTIONS = """
-r FILE              read*                    read packets from FILE (pcap or pcapng, maybe
                                              gzip/zstd/xz/bzip2; '-' is standard input; a directory means
                                              every capture in it; a quoted wildcard, the captures it
                                              matches, ** at any depth); repeatable
-w FILE              write                    write the matching packets to FILE ('-' is standard output)
                                              instead of printing them; a directory (DIR/): one output per
                                              input, named as it (its path under a -r DIR)
-d                   dump+                    print the compiled program and exit: -d as text, -dd as a C
                                              array, -ddd as decimal numbers
-y LINKTYPE          linktype                 link type to compile for (name like EN10MB or number); default:
                                              the capture's, or EN10MB without -r. With -r it overrides the
                                              file's (tcpdump ignores -y there); with --ebpf, what the hook
                                              sees (EN10MB, or RAW, IPV4, IPV6)
-s SNAPLEN           snaplen:int              snapshot length to compile for without -r (default 262144); with
                                              -r the capture's is used, as tcpdump does
-c COUNT             count:int                stop after COUNT matching packets
-O                   no_optimize!             do not optimize the program
-F FILE              filter_file              read the expression from FILE ('#' starts a comment); trailing
                                              words are then ignored
--count              count_only!              print only the number of matching packets
-V FILE              list_file*               read the names of the input files from FILE, one a line (tcpdump
                                              -V); repeatable
-j, --workers N      workers:positive         threads sharing the work: the parts of one file, or several
                                              files at a time (default: the usable cores); the output does not
                                              depend on it
--merge              merge!                   write the matches of all inputs in timestamp order (mergecap's
                                              order: on equal timestamps the later input's packet first);
                                              without it the inputs are concatenated in the order given
--after TIME         after                    only packets at or after TIME (editcap -A): epoch seconds (with
                                              a fraction) or an ISO 8601 date and time (2023-11-14T22:13:20.5Z,
                                              2023-11-14 22:13; no zone: local time)
--before TIME        before                   only packets before TIME (editcap -B), as --after
--index FILE         index_file               write the capture index of the (single) input to FILE (record
                                              offsets, timestamps, lengths; numpy .npz) once the run has
                                              gone well (a damaged input: none)
--scheduler ADDRESS  scheduler                run on a Dask cluster (the dask extra: pip install
                                              'pfilter-bpf[dask]'): the scheduler's address (tcp://host:8786),
                                              or 'local' for a LocalCluster of this machine; inputs are split
                                              by index ranges across its workers
"""

_PRINT_OPTIONS = """
-n                   numeric!                 do not resolve addresses (pfilter never does; accepted for
                                              tcpdump habits)
--quiet              quiet!                   no 'reading from file' lines, no final count line
-e                   eflag+                   print the link-level header on each line
-t                   tflag+                   time stamps: -t none, -tt seconds since 1970, -ttt delta from
                                              the previous packet, -tttt date and time, -ttttt delta from the
                                              first packet
-x                   xflag+                   each packet in hex after its line (-xx: with the link-level
                                              header)
-X                   Xflag+                   each packet in hex and ASCII (-XX: with the link-level header)
-A                   Aflag+                   each packet in ASCII (-AA: with the link-level header)
-S                   Sflag!                   absolute TCP sequence numbers
-#                   numbered!                a packet number at the start of each line
-v                   vflag+                   verbose: the IP header's TTL, id, flags, protocol, length;
                                              checksums
-q                   quick!                   quick output: less protocol information per line (tcpdump's -q;
                                              pfilter's quiet mode is --quiet)
-K                   Kflag!                   with -v, do not verify IP, TCP and UDP checksums (tcpdump -K)
-l                   line_buffered!           send printed lines on as each batch of packets is printed rather
                                              than when the output buffer fills (tcpdump -l: pfilter -r F -l
                                              | grep ...)
-U                   packet_buffered!         accepted for tcpdump habits: -w - sends written packets on batch
                                              by batch; a -w file appears whole when it is complete
--nano               resolution=ns            nanosecond timestamps in output and printed times
--micro              resolution=us            microsecond timestamps in output and printed times
"""

_EBPF_OPTIONS = """
--ebpf HOOK          ebpf:{xdp,tc,socket}     compile the expression to an eBPF program for HOOK (xdp, tc or
                                              socket) and write it as an ELF object to -o FILE (bpftool prog
                                              load FILE ...; tc filter ... bpf obj FILE sec tc)
-o FILE              ebpf_output              the object file --ebpf writes
--ebpf-dump          ebpf_dump!               print the eBPF program's listing (for --ebpf HOOK; xdp without
                                              it)
--on-match VERDICT   on_match                 the eBPF program's verdict for a matching packet (xdp: pass, tc:
                                              ok; socket: the bytes to keep, by default the filter's snapshot
                                              length)
--on-miss VERDICT    on_miss                  its verdict for the others (xdp: drop, tc: shot)
"""

_ROTATION_OPTIONS = """
-C FILE_SIZE         file_size:positive       start a new output file once the current one holds more than
                                              FILE_SIZE million bytes (named OUT, OUT1, OUT2, ... as tcpdump
                                              -C does)
-G SECONDS           rotate_seconds:positive  start a new output file every SECONDS of packet time, its name
                                              through strftime (tcpdump -G, by the packets' timestamps)
-W FILECOUNT         file_count:positive      with -C: reuse the names after FILECOUNT files (OUT0 ... OUTn);
                                              with -G alone: stop after FILECOUNT files
"""

_EDIT_OPTIONS = """
--snaplen N          truncate:positive        cut written packets to N bytes, keeping their wire length
                                              (editcap -s N)
--dedup [=WINDOW]    dedup:positive           --dedup or --dedup=WINDOW: drop a written packet whose bytes
                                              equal one of the WINDOW - 1 packets before it (editcap -D
                                              WINDOW; default 5)
"""


def _main_parser_class():
    """The main command's parser class (made on first use: it needs argparse)."""
    import argparse
    from ._argparse import Parser

    class _Formatter(argparse.RawDescriptionHelpFormatter):
        """argparse's formatter, its width found without importing shutil (argparse imports it for
        shutil.get_terminal_size, and shutil imports bz2, lzma and fnmatch: a cost at every start,
        while the parser makes a formatter for each option but formats text only for --help or an
        error). The same width: $COLUMNS, else standard output's terminal, else 80; minus 2."""

        def __init__(self, prog, indent_increment=2, max_help_position=24, width=None, **kwargs):
            if width is None:
                try:
                    width = int(os.environ.get("COLUMNS", ""))
                except ValueError:
                    width = 0
                if width <= 0:
                    try:
                        width = os.get_terminal_size(sys.__stdout__.fileno()).columns
                    except (AttributeError, ValueError, OSError):
                        width = 0
                width = (width or 80) - 2
            super().__init__(prog, indent_increment, max_help_position, width, **kwargs)

    class _MainParser(Parser):
        """The main command's parser: its usage names the sub-commands too, made when first printed
        (formatting it is work a run without --help or an error does not need)."""
        _usage_text = None

        @property
        def usage(self):
            if self._usage_text is None:
                self._usage_text = ""           # while formatting, argparse's own usage (None)
                self._usage_text = self.format_usage()[len("usage: "):].rstrip() + "".join(
                    f"\n       pfilter {name} {synopsis}" for name, (synopsis, _text) in SUBCOMMANDS.items())
            return self._usage_text or None

        @usage.setter
        def usage(self, value):                 # argparse's __init__ sets None: made when first read
            self._usage_text = value

    _MainParser.formatter_for_help = _Formatter
    return _MainParser


def build_parser():
    commands = "".join(f"  pfilter {name} {synopsis}\n      {text}\n"
                       for name, (synopsis, text) in SUBCOMMANDS.items())
    import argparse
    cls = _main_parser_class()
    p = cls(prog="pfilter", description="Filter capture files with tcpdump's filter language, "
                    "compiled to classic BPF and run at native speed.", epilog=f"commands:\n{commands}\n{EPILOG}",
                    formatter_class=cls.formatter_for_help)
    add_options(p, _MAIN_OPTIONS, _TYPES)
    add_backend_option(p, "the filter")
    add_options(p, _PRINT_OPTIONS, _TYPES)
    p.add_argument("--time-stamp-precision", dest="resolution", choices=("micro", "nano"),
                   help=argparse.SUPPRESS)
    # tcpdump's live-capture options: refused in one line that says what to use (_run)
    for flags, kind in _LIVE_OPTIONS:
        p.add_argument(*flags, dest="live", action="append_const" if kind == "!" else "append",
                       **({"const": flags[0]} if kind == "!" else {}), help=argparse.SUPPRESS)
    p.add_argument("--format", choices=("pcap", "pcapng"),
                   help="output format (default: pcapng for a .pcapng name, else pcap)")
    add_output_options(p)
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (shown on a terminal for large inputs)")
    p.add_argument("--progress", dest="progress", action="store_const", const="always",
                   help="a progress bar on standard error even when it is not a terminal or the "
                        "input is small")
    # eBPF for the kernel's hooks (pfilter.ebpf); the listing and the object file are its cli's
    add_options(p, _EBPF_OPTIONS, _TYPES)
    p.add_argument("--version", action="version", version=_version())
    p.add_argument("expression", nargs="*",
                   help="the filter expression (tcpdump syntax); empty matches every packet")
    return p


# The options lean_args takes (flag -> (destination, kind)): those of the common runs, `pfilter
# [-j N] [--quiet] [-n] [--no-progress] -r IN (-w OUT | --count) EXPRESSION`.
_LEAN = {"-r": ("read", "*"), "-w": ("write", ""), "--count": ("count_only", "!"), "--quiet": ("quiet", "!"),
         "-n": ("numeric", "!"), "-j": ("workers", "positive"), "--workers": ("workers", "positive"),
         "--no-progress": ("progress", "false"), "--after": ("after", ""), "--before": ("before", "")}


def lean_args(argv):
    """The namespace parse_args(build_parser(), argv) gives, without building the parser (argparse
    and what it imports are a visible share of a short run's start: bench/results/latest_scale.md
    "start s"), when argv holds only the options of _LEAN, each value a separate word that does
    not start with '-' (-jN also), and expression words that do not start with '-'; else None (the
    parser then decides, with its error messages). The defaults come from the option tables
    (lean_defaults); tests/test_cli_lean_args.py holds both to the parser's result."""
    values = {}
    words = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if not word.startswith("-") or word == "-":
            if word == "-":
                return None
            words.append(word)
            i += 1
            continue
        entry = _LEAN.get(word)
        if entry is None and word[:2] == "-j" and word[2:].isdigit():
            argv = argv[:i] + ["-j", word[2:]] + argv[i + 1:]      # -j2: -j 2, as the parser reads it
            entry = _LEAN["-j"]
        if entry is None:
            return None
        dest, kind = entry
        if kind == "!":
            values[dest] = True
        elif kind == "false":
            values[dest] = False
        else:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-") or not argv[i + 1]:
                return None
            value = argv[i + 1]
            i += 1
            if kind == "*":
                values.setdefault(dest, []).append(value)
            elif kind == "positive":
                if not value.isdigit() or not value.isascii() or int(value) <= 0:
                    return None
                values[dest] = int(value)
            elif dest in values:
                return None            # given twice: the parser's rules (the last one wins)
            else:
                values[dest] = value
        i += 1
    args = _Args()
    args.__dict__.update(lean_defaults(), **values)
    args.expression = words
    return args


class _Args:
    """lean_args' namespace: argparse.Namespace's attributes (vars() gives them), without
    importing types for SimpleNamespace (the command's start-up)."""

    def __repr__(self):
        return "Args(" + ", ".join(f"{k}={v!r}" for k, v in vars(self).items()) + ")"


#: tcpdump's options for capturing live (flags, '!' for those that take no value): pfilter reads
#: files, and says so in one line rather than with its usage (_run)
_LIVE_OPTIONS = ((("-i", "--interface"), ""), (("-D", "--list-interfaces"), "!"),
                 (("-L", "--list-data-link-types"), "!"), (("-I", "--monitor-mode"), "!"))


def lean_defaults():
    """Every destination of the main command's parser with its default: those of the option
    tables (pfilter._argparse.table_defaults), and those of the options build_parser adds itself."""
    from ._argparse import table_defaults
    defaults = {}
    for table in (_MAIN_OPTIONS, _PRINT_OPTIONS, _EBPF_OPTIONS, _ROTATION_OPTIONS, _EDIT_OPTIONS):
        for name, default in table_defaults(table).items():
            defaults.setdefault(name, default)
    defaults.update(backend="vm", resolution=None, format=None, progress=True, expression=[], live=None)
    return defaults


def parse_args(parser, argv):
    """parser.parse_intermixed_args(argv): the expression's words may come before, between and
    after the options, as tcpdump takes them. In one pass when they are together (no word left
    over): the same namespace, without the intermixed parse's first step, which formats the
    whole usage (a good part of the command's argument parsing time)."""
    args, extras = parser.parse_known_args(argv)
    return parser.parse_intermixed_args(argv) if extras else args


def add_backend_option(p, what):
    """--backend, checked by pfilter.backend (the one place the choice is made)."""
    from .backend import BACKENDS
    p.add_argument("--backend", choices=BACKENDS, default="vm",
                   help=f"what runs {what}: the VM (default), native code (needs llvmlite: "
                        "pip install 'pfilter-bpf[native]'), or auto (native code for large inputs "
                        "where llvmlite is installed)")


def add_output_options(p, rotation=True):
    """The options that shape written files (also `pfilter classify --split`'s)."""
    if rotation:
        add_options(p, _ROTATION_OPTIONS, _TYPES)
    add_options(p, _EDIT_OPTIONS, _TYPES)


def _positive_int(text):
    try:
        value = int(text, 10)
    except ValueError:
        import argparse
        raise argparse.ArgumentTypeError(f"invalid number {text!r}") from None
    if value <= 0:
        import argparse
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


#: the value types the option tables name (dest:TYPE)
_TYPES = {"int": int, "positive": _positive_int}


def bare_dedup(argv):
    """argv with a bare --dedup (no =WINDOW) given editcap's default window, so that the word
    after it stays part of the expression."""
    from .capture.files import DEDUP_DEFAULT_WINDOW
    return [f"--dedup={DEDUP_DEFAULT_WINDOW}" if a == "--dedup" else a for a in argv]


def output_edits(args):
    """(truncate, dedup, rotate) for filter_file / classify from the parsed options; -W without
    -C or -G is ignored, as tcpdump ignores it."""
    rotate = None
    if getattr(args, "file_size", None) or getattr(args, "rotate_seconds", None):
        from .capture.rotate import C_UNIT
        rotate = dict(size=args.file_size * C_UNIT if args.file_size else None,
                      seconds=args.rotate_seconds, files=args.file_count)
    truncate = args.truncate
    if truncate is not None:
        from .capture.split import check_snaplen       # (numpy: not for a plain run's start)
        truncate = check_snaplen(truncate)
    return truncate, args.dedup, rotate


def _version():
    from . import __version__
    return f"pfilter {__version__}"


def _fail(message, status=1):
    sys.stderr.write(f"pfilter: {message}\n")
    sys.stderr.flush()
    return status


def _one_line(err):
    """An error as one line: FilterSyntaxError's caret drawing becomes 'at offset N'."""
    from .errors import FilterSyntaxError
    if isinstance(err, FilterSyntaxError) and err.expression:
        return f"{err.message} (at offset {err.position} of '{err.expression}')"
    return " ".join(str(err).split("\n")[:1]) or type(err).__name__


def _expression(args):
    if args.filter_file:
        # Divergence: tcpdump reads a -F file of any size and bytes; pfilter reads at most
        # MAX_TEXT_FILE_BYTES of UTF-8 without NUL (`-F /dev/zero` is refused, not read forever).
        from ._textfile import read_text_file
        lines = [line.split("#", 1)[0] for line in read_text_file(args.filter_file, "filter file").splitlines()]
        return " ".join(" ".join(lines).split())
    words = list(args.expression)
    if words and words[0] == "--":
        words = words[1:]
    return " ".join(words)


def _sources(paths, lists=()):
    """Input paths; a directory stands for the capture files in it (recursively, sorted by path
    as `find DIR | LC_ALL=C sort` lists them; hidden entries skipped; symbolic links to files followed,
    to directories not, as `grep -r`), a -r name that does not exist but holds a wildcard for
    the names it matches (sorted; `**` for any depth; what is no capture among them skipped with
    a warning, as in a directory), and -V FILE for the names it lists (one a line, each taken as
    it is, as tcpdump takes them). A directory or file that cannot be read raises its OSError
    (nothing is left out unsaid); a name that does not exist is left to _all_there."""
    out = []
    paths = list(paths or [])
    listed = len(paths)             # (the names after these come from -V lists)
    for listing in lists or ():
        from ._textfile import read_text_file
        # Divergence: tcpdump drops only a line's newline, so that a blank line is an empty name
        # (an error) and a CRLF list's names end in CR; pfilter drops the whitespace around each
        # name and skips blank lines.
        names = [line.strip() for line in read_text_file(listing, "file list", names=True).splitlines() if line.strip()]
        if not names:
            from .errors import FilterError
            raise FilterError(f"{listing}: no file names in this list")
        paths.extend(names)
    expanded = []
    for k, path in enumerate(paths):
        # Divergence: tcpdump opens a -r name as it is; pfilter expands a name that does not
        # exist and holds a wildcard (a quoted 'day*.pcap'), in sorted order.
        if k < listed and path != "-" and not os.path.lexists(path) and _has_magic(path):
            out.extend(_glob_captures(path))
        elif path != "-" and os.path.isdir(path):
            out.extend(_directory_captures(path))
        else:
            out.append(path)
    return out


def _all_there(sources):
    """Raise the OSError of the first input that is not there (FileNotFoundError, ...): called
    once the options are known good and before any input is read, so that a missing name late in
    a list is said before the work on the ones before it (whose output it would end)."""
    for path in sources:
        if path != "-":
            os.stat(path)


def _path_order(path):
    """The sort key of `find DIR | LC_ALL=C sort`: the path's bytes."""
    return os.fsencode(path)


def _has_magic(word):
    """Whether a -r name (or one word of it) holds a wildcard."""
    return any(c in word for c in "*?[")


def _glob_captures(pattern):
    """The captures a -r wildcard stands for: the files it matches and those under the
    directories it matches, each once, in path order (_path_order). Its words match as glob's
    (hidden names only by a word starting with '.'; `**`: any number of directories), but `**`
    descends into directories only, not into symbolic links to them, as -r DIR walks (a link
    back up the tree would repeat every file below it, without end)."""
    import fnmatch
    from .errors import FilterError

    def names(base):          # (in any order: the captures found are sorted at the end)
        try:
            with os.scandir(base or os.curdir) as it:
                return [(e.name, e) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as err:
            raise OSError(err.errno, err.strerror, base or os.curdir) from None

    def hidden(name, word):
        return name.startswith(".") and not word.startswith(".")

    def expand(base, words):
        if not words:
            yield base
            return
        word, rest = words[0], words[1:]
        if word == "**":
            yield from expand(base, rest)                   # no directory
            for name, entry in names(base):
                if not name.startswith(".") and entry.is_dir(follow_symlinks=False):
                    yield from expand(os.path.join(base, name), words)
        elif _has_magic(word):
            for name, entry in names(base):
                if fnmatch.fnmatchcase(name, word) and not hidden(name, word):
                    yield from expand(os.path.join(base, name), rest)
        else:
            nxt = os.path.join(base, word) if base else word
            if rest or os.path.lexists(nxt):
                yield from expand(nxt, rest)

    words = [w for w in pattern.split(os.sep) if w]
    matches = [m for m in expand(os.sep if pattern.startswith(os.sep) else "", words) if m and os.path.lexists(m)]
    if not matches:
        raise FilterError(f"{pattern}: no file matches")
    found, seen = [], set()
    for m in matches:
        for f in (_directory_captures(m, empty_ok=True) if os.path.isdir(m) else
                  [m] if _looks_like_capture(m) else []):
            key = os.path.normpath(f)
            if key not in seen:
                seen.add(key)
                found.append(f)
    if not found:
        raise FilterError(f"{pattern}: no capture file matches")
    return sorted(found, key=_path_order)


def _directory_captures(path, empty_ok=False):
    """The capture files under a directory, in path order (see _sources); FilterError when
    there is none, unless empty_ok."""
    def unreadable(err):
        raise OSError(err.errno, err.strerror, err.filename) from None

    entries = []
    for root, dirs, files in os.walk(path, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        entries += [os.path.join(root, name) for name in files if not name.startswith(".")]
    # in path order, and so are the warnings of what is skipped
    entries.sort(key=_path_order)
    found = [full for full in entries if _looks_like_capture(full)]
    if not found and not empty_ok:
        from .errors import FilterError
        raise FilterError(f"{path}: no capture files in this directory")
    return found


_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d",
           b"\x34\xcd\xb2\xa1", b"\xa1\xb2\xcd\x34", b"\x0a\x0d\x0d\x0a")
#: compressed files: their magic, and what the inside must start with (one of _MAGICS)
_PACKED = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd", b"\xfd7zXZ": "xz", b"BZh": "bzip2"}


def _looks_like_capture(path):
    """Whether a directory entry is a capture: a regular file starting with a capture's magic,
    or compressed (gzip, xz, bzip2, zstd) with one at the start of what it holds. Opened
    non-blocking (a FIFO that appears under the name cannot hang the open); anything else is
    skipped with a one-line warning, and so is a symbolic link that leads nowhere. A file that
    cannot be opened or read raises its OSError."""
    import errno
    import stat
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):     # (a socket cannot even be opened: ENXIO)
            sys.stderr.write(f"pfilter: warning: {path}: not a regular file, skipped\n")
            return False
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        if os.path.islink(path) and err.errno in (errno.ENOENT, errno.ELOOP):
            what = "a loop of symbolic links" if err.errno == errno.ELOOP else "a symbolic link to nothing"
            sys.stderr.write(f"pfilter: warning: {path}: {what}, skipped\n")
            return False
        raise OSError(err.errno, err.strerror, path) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            sys.stderr.write(f"pfilter: warning: {path}: not a regular file, skipped\n")
            return False
        head = os.pread(fd, 1 << 12, 0)
    except OSError as err:
        raise OSError(err.errno, err.strerror, path) from None
    finally:
        os.close(fd)
    kind = next((k for m, k in _PACKED.items() if head.startswith(m)), None)
    if kind is not None:
        head = _unpacked_head(kind, head)
    if head is not None and not any(head.startswith(m) for m in _MAGICS):
        sys.stderr.write(f"pfilter: warning: {path}: not a capture file, skipped\n")
        return False
    return True


def _unpacked_head(kind, data):
    """The first bytes that a compressed file's start (`data`) decompresses to: b"" when it is
    not what it claims; None when that start cannot tell (bzip2's first block decompresses only
    whole, up to 900 KB; a zstd block of more than `data`; zstd without the zstandard package:
    the file is then taken as a capture, and the reader says what it is). Not the reader's
    capture.sources.Inflater: that module imports numpy, which a directory scan needs not."""
    try:
        if kind == "bzip2":
            # "BZh", the block size 1-9, and a block's magic (the digits of pi)
            ok = b"1" <= data[3:4] <= b"9" and data[4:10] == b"\x31\x41\x59\x26\x53\x59"
            return None if ok else b""
        if kind == "gzip":
            import zlib
            head = zlib.decompressobj(31).decompress(data, 8)
        elif kind == "xz":
            import lzma
            head = lzma.LZMADecompressor().decompress(data, 8)
        else:
            try:
                import zstandard
            except ImportError:
                return None
            head = zstandard.ZstdDecompressor().decompressobj().decompress(data)[:8]
    except Exception:       # zlib.error, lzma.LZMAError, zstandard.ZstdError, ...: not that format
        return b""
    return head or None


def _linktype_label(linktype):
    from .linktypes import linktype_label
    return linktype_label(linktype)


def _program_tuples(expr, linktype, snaplen, optimize, **options):
    """Like _compile, as instruction tuples (numpy-free on a cache hit)."""
    from .compiler.cache import cached_program
    options.setdefault("netmask", 0)
    tuples, rejects, _prog = cached_program(expr, linktype, snaplen, optimize, **options)
    _refuse_rejects_all(optimize, rejects)
    return tuples


def _compile(expr, linktype=1, snaplen=262144, optimize=True, **options):
    """As tcpdump compiles, through the on-disk program cache (pfilter.compiler.cache): netmask 0
    (`ip broadcast` is accepted), savefile semantics unless told otherwise (`-d` without `-r`
    compiles for a live handle, like `tcpdump -y DLT -d`), and an optimized program that rejects
    every packet refused ("expression rejects all packets"), as tcpdump does."""
    from .compiler.cache import cached_program
    options.setdefault("netmask", 0)
    tuples, rejects, prog = cached_program(expr, linktype, snaplen, optimize, **options)
    _refuse_rejects_all(optimize, rejects)
    if prog is None:
        from .compiler.cache import program_of
        prog = program_of(tuples, linktype, snaplen, expr)
    return prog


def _refuse_rejects_all(optimize, rejects):
    if optimize and rejects:
        from .errors import RejectsAllError
        raise RejectsAllError("expression rejects all packets")


def _progress_bar(args, sources):
    always = args.progress == "always"
    if not args.progress or not (always or sys.stderr.isatty()):
        return None, None
    total = 0
    for s in sources:
        path = getattr(s, "path", s)
        try:
            total += os.path.getsize(path) if path != "-" else 0
        except (OSError, TypeError):
            pass
    if total < PROGRESS_MIN_BYTES and not always:
        return None, None
    from ._progress import ProgressBar     # tqdm's bar when installed, else a built-in one
    bar = ProgressBar(total, "pfilter")
    return bar, bar


#: the sub-commands: name -> (synopsis, one line of help) (each is `pfilter NAME ...`, with its own --help)
SUBCOMMANDS = {
    "classify": ("-r FILE [-r FILE ...] -R RULES [options]",
                 "label every packet by many named filters in one pass (pfilter classify --help)"),
    "seccomp": ("disasm|emu|asm|dump FILE|PID [SYSCALL ARGS...] [options]",
                "read, run and write seccomp filters (pfilter seccomp --help)"),
    "explain": ("-r FILE [-c N] [--packet I] EXPR",
                "why the filter accepts or rejects each packet, caret under the deciding primitive"),
    "debug": ("[-r FILE] [EXPR]", "an interactive stepper in the spirit of bpf_dbg (commands on standard input)"),
    "profile": ("-r FILE EXPR", "per-instruction and per-primitive counts over a whole capture"),
}

#: each sub-command's entry point and parser: (module, main function, parser function)
SUBCOMMAND_ENTRIES = {"classify": ("pfilter.cli", "classify_main", "classify_parser"),
                      "seccomp": ("pfilter.seccomp.cli", "cli_main", "_parser"),
                      "explain": ("pfilter.explain", "cli_main", "_parser"),
                      "debug": ("pfilter.debugger", "cli_main", "_parser"),
                      "profile": ("pfilter.profile", "cli_main", "_parser")}


def subcommand_functions(name):
    """(main, parser factory) of the sub-command `name`; ImportError when it cannot load."""
    import importlib
    module, main_name, parser_name = SUBCOMMAND_ENTRIES[name]
    mod = importlib.import_module(module)
    return getattr(mod, main_name), getattr(mod, parser_name)


def _subcommand(name, argv):
    """Run `pfilter NAME argv...`; its errors are its own one-line messages, while Ctrl-C and a
    closed standard output are handled by main() as for every command."""
    try:
        cli_main, _parser = subcommand_functions(name)
    except ImportError as e:
        return _fail(f"{name} is not available: {e}")
    from ._signals import interruptible
    with interruptible():     # SIGINT, SIGTERM, SIGHUP: one line from main(), 128 + signum
        return cli_main(argv)


def main(argv=None):
    """Entry point of the `pfilter` console script; returns the exit status. As the program
    itself (argv None), a run that the fast path did whole ends the process here (_quick_exit)."""
    if argv is None:
        _closed_streams()
    status = _main(list(sys.argv[1:] if argv is None else argv))
    if argv is None and _FAST_PATH_DONE and status == 0:
        _quick_exit(status)
    return status


class _ClosedInput:
    """Standard input when the program was started without it (`<&-`): reading it (`-r -`) is
    an OSError naming it, one line and status 1, as a file that cannot be read."""

    def _closed(self, *args, **kwargs):
        import errno
        raise OSError(errno.EBADF, os.strerror(errno.EBADF), "standard input")

    read = readline = fileno = _closed
    buffer = property(_closed)

    def isatty(self):
        return False


class _Diagnostics:
    """Standard error for the program: a diagnostic that cannot be written (2>/dev/full, a reader
    gone) is dropped, as tcpdump drops it, instead of failing the work it reports on."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError:
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except OSError:
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _closed_streams():
    """The standard streams the program was started without: each descriptor held by /dev/null,
    so that no file opened later takes its number (an output file on descriptor 1 would take
    whatever is printed). Standard output and error then write there: what goes to them is lost
    and the status is the work's, as tcpdump's (`>&-` asks for that: lines, counts, `-w -`);
    standard input is _ClosedInput. Standard error is _Diagnostics."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        if getattr(sys, name) is not None:
            continue
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
        setattr(sys, name, _ClosedInput() if fd == 0 else open(fd, "w", closefd=False))
    sys.stderr = _Diagnostics(sys.stderr)


#: set when the fast path filtered every input: nothing the interpreter's finalization would do
#: is left (the output committed and closed, no thread, no numpy)
_FAST_PATH_DONE = False


def _quick_exit(status):
    """End the process with `status` without the interpreter's finalization (freeing every
    module and object: a visible share of the start-up, bench/results/latest_scale.md
    "start s"), once standard output and error are flushed, and
    only when no exit handler or other thread is there to run. Otherwise (or when a flush
    fails: main's usual handling then applies at exit) it returns."""
    from .capture.fastpath import other_threads
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    ncallbacks = getattr(__import__("atexit"), "_ncallbacks", None)
    if ncallbacks is None or ncallbacks() or other_threads():
        return
    os._exit(status)


def _main(argv):
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return _subcommand(argv[0], argv[1:])
        args = lean_args(argv)
        return _run(args if args is not None else parse_args(build_parser(), bare_dedup(argv)))
    except _UsageError as e:       # an unknown flag or a missing argument: status 1, as tcpdump
        from ._argparse import wants_usage
        if wants_usage(str(e)):
            sys.stderr.write(build_parser().format_usage())
        return _fail(str(e), 1)
    except KeyboardInterrupt as e:    # Ctrl-C, or SIGTERM/SIGHUP (pfilter._signals)
        from ._signals import exit_status, signal_name
        return _fail(f"interrupted by {signal_name(e)}", exit_status(e))
    except BrokenPipeError:           # the reader of standard output went away: quietly, as tcpdump
        from ._signals import BROKEN_PIPE_STATUS, silence_stdout
        silence_stdout()
        return BROKEN_PIPE_STATUS
    except MemoryError as e:
        return _fail(str(e) if str(e).startswith("out of memory") else "out of memory")
    except ValueError as e:   # FilterError and its subclasses are ValueErrors
        return _fail(_one_line(e))
    except ImportError as e:    # a part of pfilter or numpy that would not load (a memory limit, a broken install)
        cause = e
        while cause.__cause__ is not None or cause.__context__ is not None:     # (numpy's: its loader's)
            cause = cause.__cause__ or cause.__context__
        text = next((line.strip() for line in str(cause).splitlines() if line.strip()), type(cause).__name__)
        return _fail(f"cannot load {e.name or 'a module it needs'}: {text}")
    except OSError as e:
        name = getattr(e, "filename", None)
        if name == "" or name == b"":
            name = "''"                 # (an empty name given: -r '', said as such)
        return _fail(f"{os.fsdecode(name)}: {e.strerror or e}" if name else f"{e.strerror or e}")
    except RuntimeError as e:
        if "can't start new thread" in str(e):      # (threading's words: a memory or process limit)
            return _fail("cannot start a thread: out of memory or over the limit on processes")
        return _fail(f"internal error: {type(e).__name__}: {_one_line(e)}", 3)
    except Exception as e:   # a bug in pfilter: still one line, and say so
        return _fail(f"internal error: {type(e).__name__}: {_one_line(e)}", 3)


def _stdin_is_a_terminal():
    try:
        return os.isatty(0)
    except OSError:
        return False


def _run(args):
    from .errors import FilterError
    from .linktypes import linktype_number

    expr = _expression(args)
    optimize = not args.no_optimize
    resolution = {"micro": "us", "nano": "ns"}.get(args.resolution, args.resolution)
    # Divergence: with -r, tcpdump ignores -y; pfilter compiles for it (a file whose header
    # names the wrong link type can still be filtered).
    forced_lt = linktype_number(args.linktype) if args.linktype is not None else None
    if args.live:
        what = args.live[0]
        shown = f"-i {what}" if not what.startswith("-") else what
        raise FilterError(f"{shown}: pfilter reads capture files, it does not capture: capture with tcpdump "
                          f"(tcpdump -i IFACE -w FILE), then pfilter -r FILE")
    from .capture.files import MAXIMUM_SNAPLEN
    if args.snaplen is not None and not 0 <= args.snaplen <= MAXIMUM_SNAPLEN:
        raise FilterError(f"invalid snaplen {args.snaplen} (must be >= 0 and <= {MAXIMUM_SNAPLEN})")   # tcpdump's
    if args.snaplen == 0:
        args.snaplen = 262144
    if args.tflag > 5:
        raise FilterError("only -t, -tt, -ttt, -tttt and -ttttt are supported")                      # tcpdump's
    if args.read:
        args.snaplen = None     # tcpdump -r compiles for the file's snapshot length, whatever -s says
    if args.count is not None and args.count <= 0:
        raise FilterError(f"invalid packet count {args.count}")

    sources = _sources(args.read, args.list_file) if (args.read or args.list_file) else []
    if "-" in sources and _stdin_is_a_terminal():
        raise FilterError("-r -: standard input is a terminal, not a capture: redirect a file or a pipe into it")
    if args.ebpf or args.ebpf_dump or args.ebpf_output or args.on_match is not None or args.on_miss is not None:
        from .ebpf.cli import run as run_ebpf
        return run_ebpf(args, _compile(expr, 1 if forced_lt is None else forced_lt, args.snaplen or 262144, optimize))
    if args.dump:
        from .capture.reader import PEEK_WINDOW_BYTES, open_capture
        lt, snap, swapped = forced_lt, args.snaplen, False
        if sources:
            with open_capture(sources[0], window_bytes=PEEK_WINDOW_BYTES) as cap:
                lt = cap.linktype if lt is None else lt
                snap = cap.snaplen if snap is None else snap
                swapped = getattr(cap, "byteorder", sys.byteorder) != sys.byteorder
        prog = _compile(expr, 1 if lt is None else lt, snap or 262144, optimize,
                        savefile=bool(sources), swapped=swapped)
        sys.stdout.write(prog.dump({1: "d", 2: "dd"}.get(args.dump, "ddd")))
        return 0
    if not sources:
        raise FilterError("no input: give a capture file with -r FILE (pfilter reads captures, "
                          "it does not capture)")
    if (args.file_size or args.rotate_seconds) and args.write is None:
        from .capture.rotate import NEEDS_OUTPUT
        raise FilterError(NEEDS_OUTPUT)
    _all_there(sources)
    _keep_text_inputs(args)

    from ._signals import interruptible
    with interruptible():     # SIGINT, SIGTERM, SIGHUP: keep what was written, say so, 128 + signum
        try:
            return _filter(args, expr, sources, forced_lt, optimize, resolution)
        except KeyboardInterrupt as err:
            return _interrupted(args, err)


def _interrupted(args, err):
    """One line for an interrupted -r run (the packets written so far were kept as a valid
    capture); the exit status is 128 + the signal number."""
    # Divergence: tcpdump keeps the packets too but says "Interrupted system call" and exits 1;
    # pfilter names the signal and exits as a shell reports a process it killed (130 for Ctrl-C).
    from ._signals import exit_status, signal_name
    stats = getattr(err, "stats", None)
    what = f"interrupted by {signal_name(err)}"
    if stats is not None and args.write not in (None, "-"):
        where = ""              # (none when nothing was made: a merge interrupted before writing)
        if os.path.lexists(args.write):
            where = f" to {args.write}" + (" and the files after it" if output_edits(args)[2] else "")
        what += f": {stats.written} packet{'s' if stats.written != 1 else ''} written{where} ({stats.read} read)"
        if getattr(err, "cut_short", None):
            what += f"; {err.cut_short} ends where its input was interrupted"
    elif stats is not None:
        what += f" after {stats.read} packet{'s' if stats.read != 1 else ''} read"
    try:
        sys.stdout.flush()
    except OSError:
        pass
    return _fail(what, exit_status(err))


def _filter(args, expr, sources, forced_lt, optimize, resolution):
    """The -r path: filter, copy (-w), count (--count) or print the packets of the inputs."""
    from .errors import CaptureFormatError, FilterError
    announced = [0]               # inputs announced so far

    def announce(path, linktype, snaplen, index=0):
        """tcpdump's line for the index-th input, once (a fast pass that hands over to the general
        path has announced the inputs it reached)."""
        if index >= announced[0]:
            from ._progress import say          # (above the bar, when one shows)
            from .linktypes import file_warnings
            say(f"reading from file {path}, link-type {_linktype_label(linktype)}, snapshot length {snaplen}\n"
                + file_warnings(linktype))
            announced[0] = index + 1
    if args.quiet:
        announce = None

    truncate, dedup, rotate = output_edits(args)
    if args.write is None and (truncate or dedup or rotate):
        raise FilterError("-C, -G, --snaplen and --dedup shape the output file: give -w FILE")
    from .backend import use_native
    from .capture.fastpath import check_workers, fast_path_applies, total_size
    workers = check_workers(args.workers)
    native = use_native(args.backend, nbytes=total_size(sources))
    timed = args.after is not None or args.before is not None
    if args.scheduler is None and args.write not in (None, "-") and (
            args.write.endswith(os.sep) or os.path.isdir(args.write)):
        return _per_input(args, expr, sources, forced_lt, optimize, resolution, announce, workers)
    if args.scheduler is not None or args.merge or args.index_file or (timed and len(sources) != 1):
        return _scale(args, expr, sources, forced_lt, optimize, resolution, announce, workers)
    byte_range = None
    if timed:
        # one pcap file and a time window: the fast path over the window's records, numpy-free
        # (filter_file decides the same way; the general path scans what the index cannot take)
        from .capture.index import parse_window, window_range
        byte_range = window_range(sources[0], *parse_window(args.after, args.before, ("--after", "--before")), workers)
        if byte_range is None:
            return _scale(args, expr, sources, forced_lt, optimize, resolution, announce, workers)
    if fast_path_applies(per_batch=args.write is None and not args.count_only, dedup=dedup, native=native):
        # Plain pcap files to copy or count: the fast path, numpy-free (None: not for these inputs).
        from .capture.fastpath import fast_filter_file

        def program_for(linktype, snaplen, swapped):
            lt = forced_lt if forced_lt is not None else linktype
            return _program_tuples(expr, lt, args.snaplen or snaplen, optimize, swapped=swapped)
        bar, update = _progress_bar(args, sources)
        try:
            from .capture.rotate import Rotation
            stats = fast_filter_file(sources, args.write, program_for, count=args.count,
                                     format=args.format, ts_resolution=resolution, progress=update,
                                     announce=announce, truncate=truncate, rotate=Rotation.make(rotate),
                                     workers=workers, byte_range=byte_range)
        finally:
            if bar is not None:
                bar.close()
        if stats is not None:
            global _FAST_PATH_DONE
            _FAST_PATH_DONE = True
            return _report(args, stats, 0)
    if timed:
        return _scale(args, expr, sources, forced_lt, optimize, resolution, announce, workers)

    # Compile (and refuse) before creating any output, for the first input's link type.
    # The first input is opened once (it may be a pipe) and handed to filter_file open.
    from .capture.filterfile import filter_file, open_for_filtering
    skipped = []        # leading inputs of several whose header is damaged: reported, read on
    while True:
        try:
            first = open_for_filtering(sources[0])
            break
        except CaptureFormatError as err:
            if len(sources) < 2:
                raise
            sys.stdout.flush()
            _fail(_one_line(err))
            skipped.append(err)
            sources = sources[1:]
    try:
        first_lt, first_snap = first.linktype, first.snaplen
        _compile(expr, forced_lt if forced_lt is not None else first_lt, args.snaplen or first_snap, optimize,
                 swapped=getattr(first, "byteorder", sys.byteorder) != sys.byteorder)
        if announce is not None:
            announce(first.path, first.linktype, first.snaplen)
    except BaseException:
        first.close()
        raise
    sources[0] = first

    printer = _printer(args, resolution, first_snap) if args.write is None and not args.count_only else None

    bar, update = _progress_bar(args, sources)
    status = 0
    stats = None
    on_damage, damaged = _reading_on(sources if not skipped else sources + skipped)
    damaged += skipped
    try:
        stats = filter_file(sources, args.write, expr, linktype=forced_lt, snaplen=args.snaplen,
                            count=args.count, optimize=optimize, progress=update,
                            format=args.format, ts_resolution=resolution, on_batch=printer,
                            compiler=_compile, truncate=truncate, dedup=dedup, rotate=rotate,
                            backend=args.backend, announce=announce, on_damage=on_damage)
        status = 1 if damaged else 0
    except CaptureFormatError as err:
        stats = getattr(err, "stats", None)
        _say_damage(err, bar)
        bar = None
        status = 1
    finally:
        if bar is not None:
            bar.close()
    return _report(args, stats, status)


def _keep_text_inputs(args):
    """Refuse an output (-w) that is the -V file list or the -F expression file, as an input
    capture is refused (tcpdump would replace it)."""
    if args.write in (None, "-"):
        return
    from .capture.files import output_target, same_file
    from .errors import FilterError
    target = output_target(args.write)
    for what, path in [("file list", p) for p in (args.list_file or ())] + [("filter file", args.filter_file)]:
        if path not in (None, "-") and same_file(target, path):
            raise FilterError(f"{args.write}: refusing to overwrite the {what} {path}")


def _check_index_file(args, sources):
    """--index FILE: one input, a capture file, and an index file that is neither standard output
    nor the output."""
    from .capture.files import output_target
    from .errors import FilterError
    if len(sources) != 1:
        raise FilterError("--index writes the index of one input: give one -r FILE")
    if sources[0] == "-":
        raise FilterError("--index needs a capture file (standard input is read once)")
    if args.index_file in ("", "-"):
        raise FilterError("--index needs a file name for the index")
    if args.scheduler is not None:
        raise FilterError("--index is written here, not on a cluster: leave out --scheduler")
    if args.write not in (None, "-") and os.path.abspath(output_target(args.index_file)) == \
            os.path.abspath(output_target(args.write)):
        raise FilterError(f"{args.index_file}: the index and the output (-w) need names of their own")


def _workers_count(text):
    """classify's -j N: 1 to WORKERS_MAX, as the main command takes it (argparse's type)."""
    import argparse
    from .capture.fastpath import WORKERS_MAX
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= WORKERS_MAX:
        raise argparse.ArgumentTypeError(f"a number from 1 to {WORKERS_MAX}, not {text!r}")
    return int(text)


def _reading_on(sources):
    """(filter_file's on_damage, the list of the damaged inputs' errors): with several inputs
    concatenated, a damaged one is reported on its line and the next is read, as `tcpdump -V`
    reads on (the exit status then says 1); one input: (None, []), its error ends the run."""
    # Divergence: tcpdump -V stops at a file it cannot open (a damaged header) and exits with
    # the last file's status; pfilter reads on after any damaged input and exits 1.
    damaged = []
    if len(sources) < 2:
        return None, damaged

    def on_damage(err):
        if sys.stdout is not None:
            sys.stdout.flush()
        _fail(_one_line(err))
        damaged.append(err)
    return on_damage, damaged


def _per_input(args, expr, sources, forced_lt, optimize, resolution, announce, workers):
    """-w DIR (a directory, or a name ending in '/', made when missing): one output per input,
    named as the input (capture.files.output_names: under a -r DIR, its path there; .pcapng
    with --format pcapng), as
    pfilter.dask.filter_files and --scheduler write a directory; each input filtered as it would
    be alone (its fast path, its workers, -c N of its own as tcpdump -V counts). A damaged input,
    or one of a link type the expression has no meaning on, is reported on its line and the next
    one read (exit 1); one summary for all."""
    import time
    from .capture.fastpath import FilterStats
    from .capture.files import directory_targets
    from .capture.filterfile import filter_file
    from .errors import CaptureFormatError, FilterError, FilterSyntaxError
    truncate, dedup, rotate = output_edits(args)
    named = args.write.rstrip(os.sep) or os.sep     # ('/': the root directory)
    if os.path.exists(named) and not os.path.isdir(named):
        import errno
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), args.write)
    if args.merge or rotate:
        raise FilterError(f"{args.write}: a directory takes one output per input: --merge, -C and -G write "
                          f"one output (give -w FILE)")
    if "-" in sources:
        raise FilterError(f"{args.write}: standard input has no name for an output in a directory (give -w FILE)")
    targets = directory_targets(args.write, args.write, sources, roots=_roots(args),
                                suffix=".pcapng" if args.format == "pcapng" else None)
    after = before = None
    if args.after is not None or args.before is not None:
        from .capture.index import parse_window
        after, before = parse_window(args.after, args.before, ("--after", "--before"))
    total, damaged, started = FilterStats(), [], time.perf_counter()
    bar, update = _progress_bar(args, sources)
    base = [0]
    try:
        for i, (src, target) in enumerate(zip(sources, targets)):
            told = None if announce is None else (lambda path, lt, snap, _k=0, i=i: announce(path, lt, snap, i))
            moved = None if update is None else (lambda done, whole, info: update(base[0] + done, None, info))
            try:
                stats = None
                stats = filter_file(src, target, expr, linktype=forced_lt, snaplen=args.snaplen, count=args.count,
                                    optimize=optimize, format=args.format, ts_resolution=resolution,
                                    compiler=_compile, truncate=truncate, dedup=dedup, backend=args.backend,
                                    workers=1 if _small(src) else workers, after=after, before=before,
                                    announce=told, progress=moved)
            except FilterError as err:
                if isinstance(err, FilterSyntaxError):
                    raise                   # (the expression's: every input's)
                # damaged, or the expression without meaning on its link type: said, and the next
                stats = getattr(err, "stats", None)
                if bar is not None:
                    bar.close()
                    bar = update = None
                _fail(_one_line(err) if isinstance(err, CaptureFormatError) else f"{src}: {_one_line(err)}")
                damaged.append(err)
            except KeyboardInterrupt as err:        # (its line says what all the outputs hold)
                stats = getattr(err, "stats", None)
                _add_stats(total, stats)
                total.seconds = time.perf_counter() - started
                err.stats = total
                if stats is not None and os.path.lexists(target) and not getattr(err, "complete", False):
                    err.cut_short = target          # (whole records, up to where it stopped)
                raise
            _add_stats(total, stats)
            try:
                base[0] += os.path.getsize(src)
            except OSError:
                pass
    finally:
        if bar is not None:
            bar.close()
    total.seconds = time.perf_counter() - started
    return _report(args, total, 1 if damaged else 0)


def _roots(args):
    """The -r arguments that are directories: an output directory keeps its inputs' paths under
    them (capture.files.output_names)."""
    return [r for r in args.read or () if r != "-" and os.path.isdir(r)]


def _add_stats(total, stats):
    """Add a FilterStats (None: nothing) to the running `total`."""
    if stats is not None:
        for k in ("read", "matched", "written", "bytes"):
            setattr(total, k, getattr(total, k) + getattr(stats, k))
        total.files += stats.files


def _small(path):
    """Whether an input is small enough for one worker (a pass of milliseconds, which a second
    worker's start would cost as much as it saves: capture.fastpath.SMALL_FILE_BYTES)."""
    from .capture.fastpath import SMALL_FILE_BYTES
    try:
        return os.path.getsize(path) < SMALL_FILE_BYTES
    except OSError:
        return False


def _scale(args, expr, sources, forced_lt, optimize, resolution, announce, workers):
    """-r with --scheduler (a Dask cluster), --merge, --after/--before or --index."""
    from .errors import FilterError
    if args.index_file is not None:
        _check_index_file(args, sources)
    after = before = None
    if args.after is not None or args.before is not None:
        from .capture.index import parse_window
        after, before = parse_window(args.after, args.before, ("--after", "--before"))
    edits = output_edits(args)
    if args.scheduler is not None:
        if not args.scheduler.strip():
            raise FilterError(SCHEDULER_NEEDED)
        if args.write is None and not args.count_only:
            raise FilterError("--scheduler needs -w FILE (or DIR/) or --count")
        if args.write == "-":
            from .dask import NO_STDOUT
            raise FilterError(NO_STDOUT)
        if (args.merge or after is not None or before is not None or any(edits) or args.count
                or forced_lt is not None or args.no_optimize or args.resolution or args.format):
            raise FilterError("--scheduler takes none of --merge, --after/--before, -c, -y, -O, --micro/--nano, "
                              "--format and the output options")
        from . import dask as pdask
        from .errors import CaptureFormatError
        if expr:
            # refused here as without a cluster (the first input's link type: "expression rejects
            # all packets"); pfilter.dask, as pfilter.filter_file, filters with such a program
            try:            # (a regular file: a FIFO's open would wait for its writer here)
                first = _peek_linktype(sources[0]) if os.path.isfile(sources[0]) else (1, 262144)
            except (OSError, CaptureFormatError):
                first = (1, 262144)         # (left to the workers to open, and to report)
            _program_tuples(expr, *first, True)
        pdask.quiet(("asyncio",))
        client, close = pdask.connect(args.scheduler)
        if announce is not None:
            _announce_all(sources, announce)
        # a damaged input: as without --scheduler (its packets before the damage kept; with
        # several inputs its line and the next input, with one the line ends the run)
        on_damage, damaged = _reading_on(sources)
        bar, update = _progress_bar(args, sources)
        abandon = True
        try:
            if args.count_only and args.write is None:
                stats = pdask.count_stats(sources, expr, client=client, on_damage=on_damage, progress=update)
            else:
                stats = pdask.filter_files(sources, expr, args.write, client=client, on_damage=on_damage,
                                           progress=update, names=_roots(args))
        except CaptureFormatError as err:
            # (one input that is no capture: its line alone, as without --scheduler)
            stats = err.stats if err.stats is not None and (err.stats.read or len(sources) > 1) else None
            _say_damage(err, bar)
            bar = None
            damaged.append(err)
            abandon = False
        except BaseException:
            pdask.quiet()           # the one line pfilter prints, not the client's abandoned tasks
            raise
        else:
            abandon = False
        finally:
            if bar is not None:
                bar.close()
            close(abandon)          # (given up: a local cluster's workers killed, not waited for)
        return _report(args, stats, 1 if damaged else 0)
    if args.write is None and not args.count_only and args.merge:
        raise FilterError("--merge writes a file: give -w FILE (or --count)")
    from .capture.filterfile import filter_file
    from .errors import CaptureFormatError
    compiler = _compile
    if announce is not None and sources[0] != "-":     # (standard input is read once, by the pass)
        announce(sources[0], *_peek_linktype(sources[0]))
    index_out = None
    if args.index_file is not None:
        # opened before the pass (a place it cannot be made is said before the work), written
        # after it: once the run has gone well (its arguments, expression and input all good)
        from .capture.files import AtomicFile
        index_out = AtomicFile(args.index_file, protect=sources)
    on_damage, damaged = _reading_on(sources) if not args.merge else (None, [])
    bar, update = _progress_bar(args, sources)
    try:
        try:
            stats = filter_file(sources, args.write, expr, linktype=forced_lt, snaplen=args.snaplen,
                                count=args.count, optimize=optimize, format=args.format, ts_resolution=resolution,
                                compiler=compiler, truncate=edits[0], dedup=edits[1], rotate=edits[2],
                                backend=args.backend, workers=workers, merge=args.merge, after=after, before=before,
                                announce=announce, on_batch=_printer(args, resolution)
                                if args.write is None and not args.count_only else None,
                                on_damage=on_damage, progress=update)
        except CaptureFormatError as err:
            # one damaged input (or --merge's): the packets before the damage were written and
            # counted; the summary says so after the damage's line, as on the other paths (no index)
            stats = getattr(err, "stats", None)
            _say_damage(err, bar, " (no index written)" if index_out is not None else "")
            bar = None
            damaged.append(err)
        else:
            if index_out is not None:
                from .capture.index import build_index
                try:
                    build_index(sources[0]).save(args.index_file, out=index_out)
                except MemoryError:
                    # (the output is complete: say so, for the index, of the packets' count, failed)
                    done = f"; {args.write} is complete" if args.write not in (None, "-") else ""
                    raise MemoryError(f"out of memory building the index (no index written){done}") from None
                index_out = None
    finally:
        if bar is not None:
            bar.close()
        if index_out is not None:
            index_out.abort()
    return _report(args, stats, 1 if damaged else 0)


def _say_damage(err, bar, note=""):
    """A damaged input's one line (and `note`), after the progress bar is closed and what was
    printed on standard output before the damage is flushed."""
    if bar is not None:
        bar.close()
    if sys.stdout is not None:
        sys.stdout.flush()
    _fail(_one_line(err) + note)


def _announce_all(sources, announce):
    """Announce every input that this host can read (a cluster's workers read them, and may see
    files that it does not: those are left to the workers to open, and to report)."""
    from .errors import CaptureFormatError
    for i, path in enumerate(sources):
        if path != "-":
            try:
                announce(path, *_peek_linktype(path), i)
            except (OSError, CaptureFormatError):
                pass


def _peek_linktype(path):
    from .capture.reader import PEEK_WINDOW_BYTES, open_capture
    with open_capture(path, window_bytes=PEEK_WINDOW_BYTES) as cap:
        return cap.linktype, cap.snaplen


def _printer(args, resolution, snaplen=None):
    """The on_batch of print mode: each batch's matching packets as tcpdump's lines on standard
    output (microseconds, also from a nanosecond file, unless --nano says otherwise, as tcpdump),
    flushed after each batch with -l."""
    from .display import Printer
    lines = Printer(e=args.eflag, t=args.tflag, x=args.xflag, X=args.Xflag, A=args.Aflag, S=args.Sflag,
                    number=args.numbered, v=args.vflag, q=args.quick, K=args.Kflag,
                    resolution=resolution or "us", snaplen=snaplen)
    out = sys.stdout

    def printer(batch, idx):
        lines.write_batch(batch, idx, out)
        if args.line_buffered:
            out.flush()
    return printer


def _report(args, stats, status):
    """The --count line on standard output and the final summary on standard error. With
    standard output closed (None) there is no line, as tcpdump's is lost there too."""
    if sys.stdout is not None:
        sys.stdout.flush()
    if stats is not None:
        shown = stats.written if args.write is not None else stats.matched
        # never into a capture on standard output
        if args.count_only and args.write != "-" and sys.stdout is not None:
            sys.stdout.write(f"{shown} packet{'s' if shown != 1 else ''}\n")
            sys.stdout.flush()
        if not args.quiet:
            verb = "written" if args.write is not None else "matched"
            sys.stderr.write(f"{shown} packet{'s' if shown != 1 else ''} {verb}, {stats.read} read"
                             f"{f' from {len(stats.files)} files' if len(stats.files) > 1 else ''}"
                             f" in {stats.seconds:.2f} s\n")
    return status


# ----------------------------------------------------------------------------- pfilter classify

def _usable_cores():
    from .capture.fastpath import default_workers
    return default_workers()


def classify_parser():
    """The parser of `pfilter classify`."""
    from ._argparse import Parser as _Parser
    ap = _Parser(prog="pfilter classify", description="Classify every packet by many named filters in one pass.")
    ap.add_argument("-r", dest="files", action="append", metavar="FILE",
                    help="capture to read (pcap or pcapng), repeatable; a directory: the captures in it, "
                         "recursively (hidden entries skipped); a quoted wildcard: the captures it matches (** at any depth)")
    ap.add_argument("-V", dest="list_file", action="append", metavar="FILE",
                    help="read the names of the captures from FILE, one a line (as tcpdump -V)")
    ap.add_argument("-R", dest="rules", required=True, metavar="RULES",
                    help="rules file: 'name: expression' per line, '#' comments")
    ap.add_argument("--labels", metavar="OUT", help="write the first-match label of every packet to OUT.csv or OUT.npy")
    ap.add_argument("--default", default="", metavar="LABEL", help="label of packets no rule accepts (default: empty)")
    ap.add_argument("-y", dest="linktype", metavar="LINKTYPE", help="compile the rules for this link type")
    ap.add_argument("-O", dest="optimize", action="store_false", help="do not optimize the rule programs")
    ap.add_argument("-j", "--workers", "--threads", dest="threads", type=_workers_count, default=None, metavar="N",
                    help="threads sharing each batch (default: the usable cores)")
    ap.add_argument("--split", metavar="TEMPLATE",
                    help="write every rule's packets into its own file, the name TEMPLATE with "
                         "{rule} replaced by the rule's name ('out/{rule}.pcap'; .pcapng, .gz, .zst, "
                         ".xz, .bz2 by extension), in the same pass")
    ap.add_argument("--first-match", action="store_true",
                    help="with --split/--unmatched: a packet goes only into the first rule that "
                         "matches it (default: into every one)")
    ap.add_argument("--unmatched", metavar="FILE", help="write the packets no rule matches to FILE")
    ap.add_argument("--format", choices=("pcap", "pcapng"),
                    help="format of the split files (default: pcapng for a .pcapng name, else pcap)")
    add_output_options(ap)
    add_backend_option(ap, "the rules")
    ap.add_argument("--progress", dest="progress", action="store_true", default=None,
                    help="show a progress bar on standard error (default: on a terminal, for large inputs)")
    ap.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no progress bar")
    ap.add_argument("--scheduler", metavar="ADDRESS",
                    help="run on a Dask cluster (the dask extra: pip install 'pfilter-bpf[dask]'), one "
                         "task per input: the scheduler's address (tcp://host:8786), or 'local' for a "
                         "LocalCluster of this machine; the table and --labels as without it "
                         "(--split and --unmatched are not written through a cluster: leave it out)")
    return ap


def classify_main(argv):
    """`pfilter classify -r FILE|DIR [-r ...] [-V LIST] -R RULES [--labels OUT.csv|OUT.npy] [--default LABEL]
    [-y LINKTYPE] [-O] [-j N] [--split 'DIR/{rule}.pcap'] [--first-match] [--unmatched FILE]
    [--format F] [--snaplen N] [--dedup[=W]] [-C MB] [-G S] [-W N] [--backend vm|native|auto]
    [--progress | --no-progress]`:
    prints a per-rule table (rule, packets, bytes, share); errors are one line on stderr. A rule
    that cannot apply to a link type of the input is one warning line and matches nothing
    there. A damaged capture: the table (and labels) of the packets before the damage, then the
    error line. Returns the exit status: 0 ok, 1 bad input, 2 bad usage. (Ctrl-C and a closed
    standard output are handled by pfilter.cli.main, as for every command.)"""
    argv = list(argv)
    if argv and argv[0] == "classify":
        argv = argv[1:]
    import warnings

    from .classification import RuleLinkTypeWarning, classify
    from .errors import CaptureFormatError, FilterError
    try:
        args = classify_parser().parse_args(bare_dedup(argv))
    except _UsageError as e:
        print(f"pfilter classify: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:           # --help
        return e.code if isinstance(e.code, int) else 0
    from pathlib import Path
    if args.labels and Path(args.labels).suffix.lower() not in (".csv", ".npy"):
        print(f"pfilter classify: --labels needs a .csv or .npy file name, not {args.labels!r}", file=sys.stderr)
        return 2
    if not args.files and not args.list_file:
        print("pfilter classify: give the captures to read: -r FILE (or DIR) or -V FILE", file=sys.stderr)
        return 2
    truncate, dedup, rotate = output_edits(args)
    writing = args.split is not None or args.unmatched is not None
    if not writing and (args.first_match or truncate or dedup or rotate or args.format):
        print("pfilter classify: --first-match, --format, --snaplen, --dedup, -C and -G apply to "
              "--split / --unmatched files", file=sys.stderr)
        return 2
    if args.scheduler is not None:
        if not args.scheduler.strip():
            print(f"pfilter classify: {SCHEDULER_NEEDED}", file=sys.stderr)
            return 2
        if writing:
            print("pfilter classify: --scheduler takes no --split or --unmatched (the cluster's workers "
                  "classify, this process writes only the table and --labels)", file=sys.stderr)
            return 2
    status = 0
    labels_out = stream = None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuleLinkTypeWarning)
        try:
            try:
                files = _sources(args.files, args.list_file)
                _all_there(files)
                if args.labels:         # opened before the pass: a place it cannot be made fails first
                    from .capture.files import AtomicFile
                    labels_out = AtomicFile(args.labels, protect=list(files) + [args.rules] + list(
                        args.list_file or ()))
                # several inputs: a damaged one said on its line and the next read, as -r reads on
                damaged = []

                def on_damage(err):
                    print(f"pfilter classify: {_classify_error(err, args.rules)}", file=sys.stderr)
                    damaged.append(err)
                options = dict(linktype=args.linktype, default=args.default, packed=True,
                               counts_only=not args.labels, optimize=args.optimize, backend=args.backend,
                               on_damage=on_damage if len(files) > 1 else None)
                if args.scheduler is not None:
                    result = _classify_on_cluster(args, files, dict(options, progress=_classify_progress(args, files)))
                else:
                    if labels_out is not None:      # written as the pass goes: no matrix kept
                        from .classification.rules import parse_rules
                        stream = _LabelStream(labels_out, args.labels, [n for n, _ in parse_rules(args.rules)],
                                              args.default)
                        options.update(counts_only=True, on_block=stream.add)
                    result = classify(files, args.rules,
                                      threads=args.threads if args.threads is not None else _usable_cores(),
                                      progress=_classify_progress(args, files),
                                      split=args.split, first_match=args.first_match,
                                      unmatched=args.unmatched, format=args.format, truncate=truncate,
                                      dedup=dedup, rotate=rotate, **options)
                status = 1 if damaged else 0
            except KeyboardInterrupt as e:
                if args.split is None and args.unmatched is None:
                    raise
                # (the split files are kept, whole records, as -w keeps its output: say so)
                from ._signals import exit_status, signal_name
                partial = getattr(e, "partial", None)
                read = "" if partial is None else f" ({partial.packets} packet{'s' if partial.packets != 1 else ''} read)"
                _classify_warnings(caught)
                return _fail(f"interrupted by {signal_name(e)}: the split files hold the packets before it{read}"
                             + ("; no labels written" if args.labels else ""), exit_status(e))
            except CaptureFormatError as e:
                result = getattr(e, "partial", None)
                if result is None or (not result.packets and e.offset == 0):
                    raise                   # (no capture opened: no table, as tcpdump makes no file)
                _classify_warnings(caught)
                failure = e
            else:
                _classify_warnings(caught)
                failure = None
            sys.stdout.write(result.table())
            sys.stdout.flush()
            if labels_out is not None:
                if stream is not None:
                    stream.finish()
                    labels_out.commit()
                else:
                    _write_labels(labels_out, args.labels, result)
                labels_out = None
            if failure is not None:
                raise failure
        except BrokenPipeError:
            raise                         # pfilter.cli.main: a closed standard output ends quietly
        except (FilterError, OSError) as e:
            _classify_warnings(caught)
            print(f"pfilter classify: {_classify_error(e, args.rules)}", file=sys.stderr)
            status = 1
        finally:
            if labels_out is not None:
                labels_out.abort()
    return status


def _classify_on_cluster(args, files, options):
    """classify_main's --scheduler: pfilter.dask.classify on the cluster, one task per input (the
    workers' threads: one each, as the cluster gives them). The rules that had no meaning on a
    link type of the input are warned of by pfilter.dask.classify, as the local run warns."""
    from . import dask as pdask
    from .errors import CaptureFormatError
    pdask.quiet(("asyncio",))
    client, close = pdask.connect(args.scheduler)
    abandon = True
    try:
        result = pdask.classify(files, args.rules, client=client, threads=args.threads or 1, **options)
        abandon = False
    except BaseException as e:
        pdask.quiet()           # the one line pfilter prints, not the client's abandoned tasks
        abandon = not isinstance(e, CaptureFormatError)       # (a damaged input: every task ended)
        raise
    finally:
        close(abandon)
    return result


def _classify_warnings(caught):
    """The recorded RuleLinkTypeWarnings as one stderr line each (once each)."""
    from .classification import RuleLinkTypeWarning
    for w in caught:
        if issubclass(w.category, RuleLinkTypeWarning):
            print(f"pfilter classify: warning: {w.message}", file=sys.stderr)
    caught.clear()


def _classify_progress(args, files):
    """--progress: a bar; --no-progress: none; neither: a bar on a terminal for large inputs
    (the same threshold as the other commands)."""
    if args.progress is not None:
        return args.progress
    if not sys.stderr.isatty():
        return None
    from .capture.fastpath import total_size
    return True if total_size(files) >= PROGRESS_MIN_BYTES else None


def _classify_error(err, rules_path):
    """An error as one line; a file-system failure names its file (and the rules file as such)."""
    from .errors import FilterSyntaxError
    if isinstance(err, FilterSyntaxError):
        return _one_line(err)       # (at offset N of 'expression'), as the main command says it
    if isinstance(err, OSError) and err.strerror:
        name = err.filename if err.filename is not None else ""
        what = "cannot read rules file: " if name and os.fsdecode(name) == rules_path else ""
        return f"{os.fsdecode(name)}: {what}{err.strerror}" if name else err.strerror
    return str(err).splitlines()[0] if str(err) else type(err).__name__


#: packets whose labels are made and written at a time (the whole file is never held as text)
LABELS_CHUNK = 1 << 16


class _LabelStream:
    """--labels written a block of packets at a time: add(block) takes a block of rows of the
    matrix (packed; each batch's, as the pass goes), add_codes(codes) their label codes
    (Classification.label_codes); first-match labels of `names` (`default` for none) as OUT.npy
    (a numpy str array, as result.labels()) or OUT.csv (header `packet,label`, one row a packet).
    finish() gives the .npy header its shape (the packets), written again in place at the length
    it was given first. Memory: one block's labels, whatever the input."""

    def __init__(self, out, path, names, default):
        from pathlib import Path

        import numpy as np
        self.out, self.names = out, list(names)
        self.table = np.array(self.names + [str(default or "")], dtype=str)    # -1: the default
        self.npy = Path(path).suffix.lower() == ".npy"
        self.packets = 0
        if self.npy:
            self.head_bytes = len(self._head(10 ** 19))
            out.write(self._head(0))
        else:
            out.write(b"packet,label\n")

    def _head(self, n):
        import numpy as np
        text = repr({"descr": np.lib.format.dtype_to_descr(self.table.dtype), "fortran_order": False,
                     "shape": (n,)})
        size = getattr(self, "head_bytes", None) or -(-(10 + len(text) + 1) // 64) * 64
        text = text + " " * (size - 10 - len(text) - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin-1")

    def add(self, block):
        from .classification.result import block_codes
        self.add_codes(block_codes(block, True, len(self.names), list(range(len(self.names)))))

    def add_codes(self, codes):
        labels = self.table[codes]
        if self.npy:
            self.out.write(labels.tobytes())
        else:
            import csv
            import io
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows(
                zip(range(self.packets, self.packets + len(labels)), labels.tolist()))
            self.out.write(text.getvalue().encode("utf-8"))
        self.packets += len(labels)

    def finish(self):
        """The .npy header's shape made the packets written."""
        if self.npy:
            os.pwrite(self.out.fileno(), self._head(self.packets), 0)


def _write_labels(out, path, result):
    """The first-match labels of a Classification (a cluster's: its matrix) to `out` (the
    AtomicFile of `path`), as _LabelStream writes them, a chunk of packets at a time, committed:
    the file appears whole or not at all."""
    codes, names = result.label_codes()
    stream = _LabelStream(out, path, names, result.default)
    for s in range(0, len(codes), LABELS_CHUNK):
        stream.add_codes(codes[s:s + LABELS_CHUNK])
    stream.finish()
    out.commit()
