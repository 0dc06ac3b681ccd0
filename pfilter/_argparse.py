"""The argument parser of every pfilter command and sub-command: a command line it refuses raises
UsageError (the command then prints its usage and one line, and exits non-zero) instead of
argparse's own exit."""
import argparse


class UsageError(Exception):
    """A command line the parser refuses."""


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)
