"""Capture files in and out: the reader (pfilter.open), the writers, and filter_file.

Imports pfilter.batch and pfilter.errors (reader, writer); filterfile also uses the compiler and
Program through the public package. Nothing below imports the CLI. Capture and open_capture are
imported on first use, so that the numpy-free fast path (capture.fastpath, capture.files) loads
without the reader.
"""
__all__ = ["Capture", "open_capture"]


def __getattr__(name):
    if name in __all__:
        from . import reader
        return getattr(reader, name)
    raise AttributeError(f"module 'pfilter.capture' has no attribute {name!r}")
