"""The argument parser of every pfilter command and sub-command: a command line it refuses raises
UsageError (the command then prints its usage and one line, and exits non-zero) instead of
argparse's own exit."""
import argparse
import sys


class UsageError(Exception):
    """A command line the parser refuses."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def capture_parser(prog, description, count_help):
    """The parser of a sub-command that reads one capture: -r FILE and -c N; the caller adds the
    rest (the expression last)."""
    ap = Parser(prog=prog, description=description)
    ap.add_argument("-r", dest="read", required=True, metavar="FILE", help="the capture file (pcap or pcapng)")
    ap.add_argument("-c", dest="count", type=_count, default=None, metavar="N", help=count_help)
    return ap


def _count(text):
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("needs a count >= 0")
    return value


def parse(parser, argv):
    """`parser`'s namespace for `argv`; None after printing the usage and the error in one line
    (the caller then exits with status 1)."""
    try:
        return parser.parse_args(argv)
    except UsageError as e:
        sys.stderr.write(parser.format_usage())
        sys.stderr.write(f"pfilter: {e}\n")
        sys.stderr.flush()
        return None
