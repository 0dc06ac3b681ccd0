"""The argument parser of every pfilter command and sub-command: a command line it refuses raises
UsageError (the command then prints its usage and one line, and exits non-zero) instead of
argparse's own exit.

argparse (and with it re, enum and gettext) is imported when Parser is first used, not with this
module: the `pfilter` command's common command lines never build a parser (pfilter.cli.lean_args).
"""
import sys


class UsageError(Exception):
    """A command line the parser refuses."""


def _parser_class():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise UsageError(message)

        # an option whose value is optional and attached (its metavar '[=WINDOW]': --dedup or
        # --dedup=5) shows as `--dedup[=WINDOW]`, as GNU tools show one, not `--dedup [=WINDOW]`
        def format_usage(self):
            return super().format_usage().replace(" [=", "[=")

        def format_help(self):
            return super().format_help().replace(" [=", "[=")
    Parser.__module__ = __name__
    globals()["Parser"] = Parser
    return Parser


def __getattr__(name):
    # Parser (an argparse.ArgumentParser that raises UsageError), made on first use
    if name == "Parser":
        return _parser_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def add_options(parser, table, types=None):
    """Add the options of `table` to `parser`, in order. The table is laid out as --help prints
    options: each starts at the line's first column with its flags and metavar (`-j, --workers
    N`), then, after two spaces or more, its destination with its kind, then its help, continued
    on the following lines that start with white space. Kinds: `dest` a string; `dest*` a list,
    the option repeatable; `dest+` a count (-dd: 2); `dest!` a flag (True when given);
    `dest=VALUE` the string VALUE when given; `dest:{a,b}` one of the choices; `dest:TYPE` a
    value converted by types[TYPE]."""
    for flags, name, kind, value, text, metavar in table_entries(table):
        kw = dict(help=text)
        if metavar is not None:
            kw["metavar"] = metavar
        if kind:
            kw.update({"*": dict(action="append"), "+": dict(action="count", default=0),
                       "!": dict(action="store_true")}[kind])
        elif value and value[0] == "=":
            kw.update(action="store_const", const=value[1:])
        elif value and value[1] == "{":
            kw["choices"] = tuple(value[2:-1].split(","))
        elif value:
            kw["type"] = types[value[1:]]
        parser.add_argument(*flags, dest=name, **kw)


def table_defaults(table):
    """{destination: default} of the options of `table`, as add_options makes them (a count: 0;
    a flag: False; anything else: None), for a namespace made without a parser."""
    return {name: 0 if kind == "+" else False if kind == "!" else None
            for _flags, name, kind, _value, _text, _metavar in table_entries(table)}


def table_entries(table):
    """The options of an add_options table: (flags, destination, kind ('*', '+', '!' or ''),
    value ('=VALUE', ':{a,b}', ':TYPE' or ''), help text, metavar or None) each."""
    entries = []
    for line in table.strip("\n").splitlines():
        if line[:1].isspace():
            entries[-1][4].append(line.strip())
            continue
        head, dest, text = _columns(line.strip())
        words = head.replace(",", " ").split()
        flags = [w for w in words if w.startswith("-")]
        metavar = " ".join(w for w in words if not w.startswith("-")) or None
        end = 0
        while end < len(dest) and (dest[end].isalnum() or dest[end] == "_"):
            end += 1
        name, rest = dest[:end], dest[end:]
        kind, value = (rest, "") if rest in ("*", "+", "!") else ("", rest)
        entries.append([flags, name, kind, value, [text], metavar])
    return [(f, n, k, v, " ".join(t), m) for f, n, k, v, t, m in entries]


def _columns(line):
    """A table line's three columns: split at the first two runs of two spaces or more."""
    out = []
    for _ in range(2):
        cut = line.find("  ")
        out.append(line[:cut])
        line = line[cut:].lstrip()
    return out + [line]


def capture_parser(prog, description, count_help):
    """The parser of a sub-command that reads one capture: -r FILE and -c N; the caller adds the
    rest (the expression last)."""
    ap = _parser_class()(prog=prog, description=description)
    ap.add_argument("-r", dest="read", required=True, metavar="FILE", help="the capture file (pcap or pcapng)")
    ap.add_argument("-c", dest="count", type=_count, default=None, metavar="N", help=count_help)
    return ap


def _count(text):
    import argparse
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("needs a count >= 0")
    return value


def wants_usage(message):
    """Whether a refused command line's message calls for the usage before it: an unknown option,
    a missing argument, options that exclude each other. A bad value of a known option ('-j abc')
    is one line alone, as tcpdump says 'invalid packet count abc'."""
    bad_value = message.startswith("argument ") and ": expected " not in message \
        and "not allowed with argument" not in message
    return not bad_value


def parse(parser, argv):
    """`parser`'s namespace for `argv`; None after printing the error in one line, after the
    usage where it helps (wants_usage); the caller then exits with status 1."""
    try:
        return parser.parse_args(argv)
    except UsageError as e:
        if wants_usage(str(e)):
            sys.stderr.write(parser.format_usage())
        sys.stderr.write(f"pfilter: {e}\n")
        sys.stderr.flush()
        return None
