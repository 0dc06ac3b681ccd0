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
