"""pfilter: tcpdump's filter language compiled to classic BPF and run at native speed over
batches of packets from pcap/pcapng files.

    prog = pfilter.compile("ip and tcp port 80")
    with pfilter.open("capture.pcap") as cap:
        for batch in cap:
            hits = prog.match_batch(batch)

This module only re-exports the public API (see ../shared/DESIGN.md). Program and PacketBatch
are imported on first use, so that `import pfilter.cli` stays light until it needs numpy (the
command sets numpy's thread options before that).
"""
from .errors import CaptureFormatError, FilterError, FilterSyntaxError, InvalidProgramError

__version__ = "0.1.0"

__all__ = ["compile", "open", "filter_file", "classify", "Program", "PacketBatch", "FilterError",
           "FilterSyntaxError", "InvalidProgramError", "CaptureFormatError", "__version__"]


def __getattr__(name):
    if name == "Program":
        from .program import Program
        return Program
    if name == "PacketBatch":
        from .batch import PacketBatch
        return PacketBatch
    raise AttributeError(f"module 'pfilter' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"Program", "PacketBatch"})


def compile(expr, linktype="EN10MB", snaplen=262144, optimize=True, **options):
    """Compile a pcap-filter expression into a validated Program for the given link type
    (a DLT name or number). `snaplen` is what accepting programs return; options are passed to
    the compiler (e.g. `netmask` for `ip broadcast`). `optimize`: True (smallest program),
    False, or "shareable" (optimized, but IPv4 and IPv6 copies of a test kept apart: what
    pfilter.classify shares best across many rules)."""
    from .compiler.driver import compile_expression
    return compile_expression(expr, linktype=linktype, snaplen=snaplen, optimize=optimize, **options)


def open(path, **options):
    """Open a pcap or pcapng capture (format from the magic bytes): a context manager and an
    iterable of PacketBatch objects."""
    from .capture import open_capture
    return open_capture(path, **options)


def filter_file(src, dst, expr, **options):
    """Copy the packets of capture `src` that match `expr` into `dst`; returns stats."""
    from .capture.filterfile import filter_file as _filter_file
    return _filter_file(src, dst, expr, **options)


def classify(source, rules, **options):
    """Evaluate many named filters over every packet of `source` in one pass."""
    from .classifier import classify as _classify
    return _classify(source, rules, **options)
