"""File-level facts every capture path shares, without numpy: the classic pcap file header (read
and written as libpcap does), snapshot-length rules, output format from a name, and atomic output
files that refuse to overwrite an input.

Imports pfilter.errors and pfilter.linktypes only, so that the command's fast path
(pfilter.capture.fastpath) can use them without loading numpy; reader.py and writer.py build on
them.
"""
import os
import struct
import sys

from ..errors import CaptureFormatError, FilterError

PCAP_MAGIC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAP_MAGIC_KUZNETZOV = 0xA1B2CD34
MAXIMUM_SNAPLEN = 262144
INT_MAX = 0x7FFFFFFF
LT_LINKTYPE_MASK = 0x03FFFFFF


def max_snaplen_for_linktype(linktype):
    """The largest packet libpcap accepts for a link type."""
    # libpcap: max_snaplen_for_dlt()
    return {231: 128 * 1024 * 1024,   # DBUS
            279: 8 * 1024 * 1024,     # EBHSCR
            249: 1024 * 1024,         # USBPCAP
            }.get(linktype, MAXIMUM_SNAPLEN)


def adjust_snaplen(linktype, snaplen):
    """A header's snapshot length as libpcap uses it: 0 or above INT_MAX means the maximum."""
    # libpcap: pcap_adjust_snapshot()
    if snaplen == 0 or snaplen > INT_MAX:
        return max_snaplen_for_linktype(linktype)
    return snaplen


def file_linktype(linktype):
    """The LINKTYPE_ value libpcap writes for a link type read from a file: a DLT number used
    as a file value (12 for raw IP) becomes its LINKTYPE_ (101)."""
    # libpcap: dlt_to_linktype(linktype_to_dlt())
    from ..linktypes import LINKTYPE_TO_DLT, linktype_for_file
    return linktype_for_file(LINKTYPE_TO_DLT.get(linktype, linktype))


def same_file(a, b):
    """True when paths a and b name the same existing file (device and inode)."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, TypeError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def format_for_path(path, default="pcap"):
    """Output format from a destination name: .pcapng/.ntar (optionally compressed) -> pcapng."""
    name = os.fspath(path).lower() if path not in (None, "-") else ""
    for suffix in (".gz", ".zst", ".xz", ".bz2"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return "pcapng" if name.endswith((".pcapng", ".ntar", ".scap")) else default


def _exchange(tmp, path):
    """Swap the finished temporary file with an existing destination in one atomic step
    (renameat2 RENAME_EXCHANGE), then remove the temporary name, which now holds the old file.
    True when done; False when the destination does not exist or the system cannot exchange
    (then os.replace does it). Why not always os.replace: ext4 forces the new file's delayed
    allocation out at a rename over an existing file (auto_da_alloc), 0.15-0.25 s for 700 MB,
    which an exchange does not trigger; either way the destination always names a whole file."""
    if not os.path.lexists(path):
        return False
    try:
        from ._writer import exchange_paths
    except ImportError:
        return False
    if not exchange_paths(os.fsencode(tmp), os.fsencode(path)):
        return False
    try:
        os.unlink(tmp)
    except OSError:
        pass
    return True


class AtomicFile:
    """A binary file written under a temporary name in the destination's directory and renamed
    to `path` on commit(). A destination that exists and is not a regular file (/dev/null, a
    FIFO, a terminal) is written directly, as tcpdump does: it cannot be replaced."""

    def __init__(self, path, protect=()):
        self.path = path
        self.direct = False
        if path == "-":
            self.f, self.tmp = sys.stdout.buffer, None
            return
        path = os.fspath(path)
        for src in protect:
            if src not in (None, "-") and not hasattr(src, "read") and same_file(path, src):
                raise FilterError(f"{path}: refusing to overwrite the input file {src}")
        if os.path.isdir(path):
            raise FilterError(f"{path}: is a directory")
        if os.path.exists(path) and not os.path.isfile(path):
            try:
                self.f, self.tmp, self.direct = open(path, "wb", buffering=0), None, True
            except OSError as e:
                raise FilterError(f"{path}: {e.strerror or e}") from None
            return
        directory = os.path.dirname(os.path.abspath(path))
        for _attempt in range(100):
            tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            try:
                # 0o666 less the umask, as any new file (tcpdump's output too)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise FilterError(f"{path}: {e.strerror or e}") from None
        else:
            raise FilterError(f"{path}: cannot create a temporary file next to it")
        self.tmp = tmp
        self.f = os.fdopen(fd, "wb", buffering=0)

    def write(self, data):
        view = memoryview(data).cast("B")
        try:
            while len(view):
                n = self.f.write(view)
                view = view[n:]
        except OSError as e:
            raise FilterError(f"{self.path}: {e.strerror or e}") from None

    def fileno(self):
        """The file descriptor, for writes that bypass Python (everything before is flushed)."""
        self.f.flush()
        return self.f.fileno()

    def commit(self):
        if self.tmp is None:
            try:
                self.f.close() if self.direct else self.f.flush()
            except OSError as e:
                raise FilterError(f"{self.path}: {e.strerror or e}") from None
            return
        try:
            self.f.close()
            if not _exchange(self.tmp, self.path):
                os.replace(self.tmp, self.path)
        except OSError as e:
            self.abort()
            raise FilterError(f"{self.path}: {e.strerror or e}") from None
        self.tmp = None

    def abort(self):
        if self.tmp is None:
            if self.direct:
                try:
                    self.f.close()
                except OSError:
                    pass
            return
        try:
            self.f.close()
        except OSError:
            pass
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
        self.tmp = None




def pcap_file_header(linktype, snaplen, nsec, linktype_ext=0):
    """The 24-byte header pfilter's pcap writer (and tcpdump on a little-endian host) writes:
    version 2.4, little-endian, zone and sigfigs 0, the LINKTYPE_ value for the link type."""
    magic = PCAP_MAGIC_NSEC if nsec else PCAP_MAGIC
    return struct.pack("<IHHiIII", magic, 2, 4, 0, 0, int(snaplen) & 0xFFFFFFFF,
                       (file_linktype(int(linktype)) | int(linktype_ext)) & 0xFFFFFFFF)


class PcapHeader:
    """A classic pcap file header as libpcap reads it (pcap_check_header): byte order, timestamp
    resolution, version, link type (upper bits masked off, kept in linktype_ext), snapshot length
    (adjusted), record header size and whether caplen/len may be swapped (old versions)."""

    __slots__ = ("byteorder", "swapped", "nsec", "kuznetzov", "version", "linktype", "linktype_ext",
                 "snaplen_raw", "snaplen", "hdrsize", "lengths_swapped", "maxcap")

    @property
    def ts_resolution(self):
        return "ns" if self.nsec else "us"


def pcap_magic_order(head):
    """For the first 4 bytes of a file: ("little" | "big", magic) when they are a classic pcap
    magic number, else None."""
    for order, prefix in (("little", "<"), ("big", ">")):
        magic = struct.unpack(prefix + "I", head[:4])[0]
        if magic in (PCAP_MAGIC, PCAP_MAGIC_NSEC, PCAP_MAGIC_KUZNETZOV):
            return order, magic
    return None


def parse_pcap_header(hdr, path=None):
    """The PcapHeader of a file starting with a classic pcap magic; CaptureFormatError (libpcap's
    message, the offset) when the 24 bytes are short or name an unsupported version."""
    # libpcap: pcap_check_header()
    if len(hdr) < 24:
        raise CaptureFormatError(f"truncated dump file; tried to read 24 file header bytes, only got {len(hdr)}",
                                 0, path)
    order, magic = pcap_magic_order(hdr)
    prefix = "<" if order == "little" else ">"
    major, minor, _zone, _sigfigs, snaplen, linktype = struct.unpack(prefix + "HHiIII", hdr[4:24])
    if major < 2:
        raise CaptureFormatError("archaic pcap savefile format", 4, path)
    if not ((major == 2 and minor <= 4) or (major == 543 and minor == 0)):
        raise CaptureFormatError(f"unsupported pcap savefile version {major}.{minor}", 4, path)
    h = PcapHeader()
    h.byteorder = order
    h.swapped = order != sys.byteorder
    h.version = (major, minor)
    h.linktype = linktype & LT_LINKTYPE_MASK
    h.linktype_ext = linktype & ~LT_LINKTYPE_MASK & 0xFFFFFFFF
    h.snaplen_raw = snaplen
    h.snaplen = adjust_snaplen(h.linktype, snaplen)
    h.nsec = magic == PCAP_MAGIC_NSEC
    h.kuznetzov = magic == PCAP_MAGIC_KUZNETZOV
    if major == 2 and minor < 3 or major == 543:
        h.lengths_swapped = 2
    elif major == 2 and minor == 3:
        h.lengths_swapped = 1
    else:
        h.lengths_swapped = 0
    h.hdrsize = 16
    if h.kuznetzov:
        h.hdrsize = 24
        if h.linktype == 1:
            h.snaplen = min(h.snaplen + 14, INT_MAX)
    h.maxcap = max_snaplen_for_linktype(h.linktype)
    return h
