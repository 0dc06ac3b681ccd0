"""Capture files in and out: the reader (pfilter.open), the writers, and filter_file.

Imports pfilter.batch and pfilter.errors (reader, writer); filterfile also uses the compiler and
Program through the public pfilter API. Nothing below imports the CLI.
"""
from .reader import Capture, open_capture

__all__ = ["Capture", "open_capture"]
