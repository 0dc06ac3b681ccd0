"""File-level facts every capture path shares, without numpy: the classic pcap file header (read
and written as libpcap does), snapshot-length rules, output format from a name, and atomic output
files that refuse to overwrite an input.

Imports pfilter.errors, pfilter.linktypes and pfilter._signals only, so that the command's fast path
(pfilter.capture.fastpath) can use them without loading numpy; reader.py and writer.py build on
them.
"""
import errno
import os
import stat
import struct
import sys

from .._signals import deferred
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


# pcapng: the first block's type, the byte-order magic (in the section's order), the largest
# section header block, and the largest block before the first interface says its link type
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BOM = 0x1A2B3C4D
SHB_INSANE_MAX = 1024 * 1024
INITIAL_MAX_BLOCKSIZE = 16 * 1024 * 1024


def pcapng_resolution(units):
    """The timestamp resolution ("us" or "ns") a pcapng capture reads as, from its first
    interface's units per second (if_tsresol): nanoseconds for anything finer than microseconds."""
    return "ns" if units > 1000000 else "us"


def max_blocksize(linktype):
    """The largest pcapng block libpcap reads once the first interface's link type is known."""
    # libpcap: MAX_BLOCKSIZE_FOR_SNAPLEN()
    return max(INITIAL_MAX_BLOCKSIZE, 8 + 20 + max_snaplen_for_linktype(linktype) + 131072 + 4)


def file_linktype(linktype):
    """The LINKTYPE_ value libpcap writes for a link type read from a file: a DLT number used
    as a file value (12 for raw IP) becomes its LINKTYPE_ (101)."""
    # libpcap: dlt_to_linktype(linktype_to_dlt())
    from ..linktypes import LINKTYPE_TO_DLT, linktype_for_file
    return linktype_for_file(LINKTYPE_TO_DLT.get(linktype, linktype))


def room_for_open_files(need, refusal):
    """Let this process hold `need` open files: the soft limit (1,024 on a stock Debian shell)
    raised towards the hard one when it is short; FilterError(refusal(hard limit)) when even the
    hard limit is short."""
    try:
        import resource
    except ImportError:                   # (no such limits here)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise FilterError(refusal(hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def same_place(path):
    """A path as the file system reaches it (its directory's links resolved, '.' and '..' gone),
    for telling whether two output names are one file before either exists."""
    path = os.path.abspath(os.fsdecode(path))
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def same_file(a, b):
    """True when paths a and b name the same existing file (device and inode)."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, TypeError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _file_id(fd):
    """(device, inode) of an open descriptor that is a regular file, or None."""
    try:
        st = os.fstat(fd)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


#: the regular files this process reads as captures (pfilter.open and every reader, until
#: closed, read to their end or collected): (device, inode) -> (name, the file objects); no
#: output replaces one of them
_READING = {}


def reading(f, name):
    """Note that `f` (an open file object) is read as a capture named `name`; the key to give
    back to done_reading with `f`, or None when it is no regular file."""
    import weakref
    try:
        key = _file_id(f.fileno())
    except (AttributeError, OSError, ValueError):
        return None
    if key is not None:
        _READING.setdefault(key, (name, weakref.WeakSet()))[1].add(f)
    return key


def done_reading(key, f):
    """`f`, noted as `key` (reading), is no longer read."""
    held = _READING.get(key)
    if held is not None:
        held[1].discard(f)
        if not held[1]:
            del _READING[key]


def _being_read():
    """{(device, inode): name} of the captures this process reads now (_READING)."""
    ids = {}
    for key, (name, objs) in list(_READING.items()):
        if any(not getattr(f, "closed", True) for f in list(objs)):
            ids[key] = name
    return ids


class Inputs:
    """The inputs `sources` that no output may replace, by device and inode, each stat-ed once
    (None and paths that do not exist skipped; "-" and open files by what they are open on, when
    that is a regular file: `-r - < in.pcap`): outputs made one after another (-C/-G rotation,
    classify --split) check against one Inputs, not against every input again."""

    def __init__(self, sources):
        self.ids = {}
        for src in sources:
            if src is None:
                continue
            if isinstance(src, str) and src == "-" or hasattr(src, "read"):
                try:
                    key = _file_id(0 if isinstance(src, str) else src.fileno())
                except (AttributeError, OSError, ValueError):
                    key = None
                if key is not None:
                    self.ids.setdefault(key, "- (standard input)" if isinstance(src, str)
                                        else getattr(src, "name", "<stream>"))
                continue
            try:
                st = os.stat(src)
            except (OSError, TypeError, ValueError):
                continue
            self.ids.setdefault((st.st_dev, st.st_ino), src)


def overwritten(targets, sources):
    """The first (target, source) where an output target is an existing input source (device
    and inode), or a capture this process has open for reading (reading), or None; each path
    stat-ed once. sources: paths (see Inputs) or an Inputs."""
    inputs = (sources if isinstance(sources, Inputs) else Inputs(sources)).ids
    if _READING:
        inputs = {**_being_read(), **inputs}
    for target in targets if inputs else ():
        try:
            st = os.stat(target)
        except (OSError, TypeError, ValueError):
            continue
        if (st.st_dev, st.st_ino) in inputs:
            return target, inputs[st.st_dev, st.st_ino]
    return None


def stdout_overwrites(protect):
    """The input standard output is open on (`-w - >> in.pcap`), or None."""
    key = _file_id(1)
    if key is None:
        return None
    inputs = (protect if isinstance(protect, Inputs) else Inputs(protect)).ids
    return inputs.get(key) or _being_read().get(key)


#: output compression by the destination name's extension (the reader recognises all four by
#: their magic numbers, whatever the name)
COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".xz": "xz", ".bz2": "bzip2"}


def compression_for_path(path):
    """The compression an output name asks for ("gzip", "zstd", "xz", "bzip2"), or None."""
    if path in (None, "-", b"-") or not isinstance(path, (str, bytes, os.PathLike)):
        return None
    name = os.fsdecode(path).lower()
    for suffix, kind in COMPRESSION_SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    return None


def output_name_for(path):
    """The name of an input's output in a directory (`-w DIR/`, pfilter.dask.filter_files into a
    directory): the input's, as an uncompressed pcap file ('a.pcap.gz' -> 'a.pcap', 'b.pcapng'
    -> 'b.pcap')."""
    name = os.path.basename(os.fsdecode(path))
    for suffix in COMPRESSION_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[:-len(suffix)]
    stem, ext = os.path.splitext(name)
    return stem + ".pcap" if ext.lower() in (".pcapng", ".ntar", ".scap") else name


def output_names(paths, roots=()):
    """The names (paths relative to the output directory) of the inputs' outputs in a directory:
    an input found under one of the directories `roots` (the `-r DIR` given) keeps its path under
    it, as `cp -r` would ('day1/eth0.pcap' and 'day2/eth0.pcap' stay apart), any other its name;
    each as output_name_for names it."""
    names = []
    for path in paths:
        path = os.fsdecode(path)
        rel = None
        for root in roots:
            under = os.path.relpath(path, os.fsdecode(root))
            if under != os.pardir and not under.startswith(os.pardir + os.sep):
                rel = under
                break
        head = os.path.dirname(rel) if rel is not None else ""
        names.append(os.path.join(head, output_name_for(path)))
    return names


def name_clash(names, sources):
    """Where two inputs would write one output of a directory (output_names), or one output's
    name is another's directory: the words for it ('several inputs would write NAME (A and B)',
    'A is given twice', ...), or None."""
    first = {}
    for name, src in zip(names, sources):
        if name not in first:
            first[name] = src
            continue
        earlier = first[name]
        try:
            twice = os.path.samefile(earlier, src)
        except (OSError, TypeError, ValueError):
            twice = earlier == src
        return f"{src} is given twice" if twice else f"several inputs would write {name} ({earlier} and {src})"
    for name, src in zip(names, sources):
        # one output's name as another's directory ('sub.pcap' and 'sub.pcap/c.pcap')
        folder = os.path.dirname(name)
        while folder:
            if folder in first:
                return (f"the output {folder} of {first[folder]} would also be the directory of the "
                        f"output {name} of {src}")
            folder = os.path.dirname(folder)
    return None


def directory_targets(out, shown, sources, given=None, roots=(), hint="give -w FILE", suffix=None):
    """The outputs of the inputs `sources` in the directory `out` (output_names; `suffix` the
    extension each takes instead, if any), refused in one FilterError before anything is written
    where two would have one name (name_clash) or one would replace an input; then their
    directories made. shown: `out` as the caller named it; given: the inputs so named (default:
    sources); hint: what to do instead, said after a clash."""
    sources = list(sources)
    given = sources if given is None else list(given)
    names = output_names(given, roots)
    if suffix is not None:
        names = [os.path.splitext(n)[0] + suffix for n in names]
    clash = name_clash(names, given)
    if clash is not None:
        raise FilterError(f"{shown}: {clash}; {hint}")
    targets = [os.path.join(out, n) for n in names]
    resolved = {output_target(t): t for t in targets}
    hit = overwritten(resolved, sources)
    if hit is not None:
        raise FilterError(f"{os.path.join(shown, os.path.relpath(resolved[hit[0]], out))}: refusing to overwrite "
                          f"the input file {given[sources.index(hit[1])]}")
    for where in dict.fromkeys(os.path.dirname(t) for t in targets):
        os.makedirs(where, exist_ok=True)
    return targets


def format_for_path(path, default="pcap"):
    """Output format from a destination name: .pcapng/.ntar (optionally compressed) -> pcapng."""
    name = os.fsdecode(path).lower() if path not in (None, "-", b"-") else ""
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return "pcapng" if name.endswith((".pcapng", ".ntar", ".scap")) else default


def compressor(kind, path=None):
    """A streaming compressor (compress(data) -> bytes, flush() -> bytes) for `kind`; the zstd
    one needs the zstandard package (the `zstd` extra): FilterError naming it when missing."""
    if kind == "gzip":
        import zlib
        # level 6, as gzip(1); wbits 31: a gzip member that gzip, zcat and pfilter read
        return zlib.compressobj(6, zlib.DEFLATED, 31)
    if kind == "xz":
        import lzma
        return lzma.LZMACompressor(format=lzma.FORMAT_XZ)
    if kind == "bzip2":
        import bz2
        return bz2.BZ2Compressor(9)
    if kind == "zstd":
        try:
            import zstandard
        except ImportError:
            where = f"{os.fsdecode(path)}: " if path is not None else ""
            raise FilterError(f"{where}zstd output needs the zstandard package: "
                              f"pip install 'pfilter[zstd]'") from None
        return zstandard.ZstdCompressor(level=3).compressobj()
    raise FilterError(f"unknown compression {kind!r}")


#: --dedup's default window, editcap -D's (its -d), and editcap's largest (numpy-free here: the
#: command's parser names them; pfilter.capture.split applies them)
DEDUP_DEFAULT_WINDOW = 5
DEDUP_MAX_WINDOW = 1000000


# Create outputs as unnamed files (Linux O_TMPFILE) that get their name only on commit; False
# (tests) or a file system without it: a short-named temporary file instead.
USE_O_TMPFILE = hasattr(os, "O_TMPFILE")


def _os_error(err, path):
    """err (an OSError) naming `path`, of the same subclass (FileNotFoundError, ...)."""
    return OSError(err.errno, err.strerror or str(err), os.fsdecode(path)) if err.errno else err


def output_target(path):
    """The file an output path writes: a symbolic link is followed (to its target, existing or
    not), as tcpdump's fopen() does, so the link stays and its target is replaced."""
    path = os.fspath(path)
    if not os.path.islink(path):
        return path
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return path     # a pipe, socket or device (/dev/stdout): written through the link
    except OSError:
        pass
    return os.path.realpath(path)


def _why_not(target, st, err):
    """The error to report when no new file could be made beside `target` (its os.stat_result
    st, None when there is none) for replacing it: opening the file itself for writing (not cut)
    says what is wrong with it ('Permission denied'); when that open works, err says that no new
    file can be made in the directory (a temporary file's 'No such file or directory' alone
    named a file that is there: /proc/version). Without a file there, err as it is."""
    if st is None or not err.errno:
        return err                  # (tcpdump's words: its fopen() fails the same way)
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CLOEXEC))
    except OSError as e:
        return e
    where = os.path.dirname(os.path.abspath(target))
    return OSError(err.errno, f"cannot make a new file in {where}: {err.strerror}")


class AtomicFile:
    """A binary output file that appears whole under its name on commit(), or not at all.

    A regular destination (new or existing) is written as an unnamed file in its directory
    (O_TMPFILE) and linked in on commit: no name exists before, so no signal or crash leaves a
    temporary file behind. Over an existing file the new one gets the old one's mode and
    ownership, is flushed to disk (fsync), linked under a short temporary name and renamed over
    the old in one step, so the name always holds a whole file, the old or the new. Where
    O_TMPFILE is missing, a short-named temporary file is written instead and removed on abort.
    A symbolic link is written through (its target is replaced, the link stays). A destination
    that exists and is not a regular file (/dev/null, a FIFO, a terminal) is written directly, as
    tcpdump does: it cannot be replaced. File-system failures raise the OSError subclass of their
    errno (FileNotFoundError, PermissionError, ...) naming the path."""

    def __init__(self, path, protect=()):
        self.path = os.fsdecode(path) if isinstance(path, bytes) else path
        self.direct = False       # written in place (standard output, a device, a FIFO)
        self.named = None         # the temporary file's name (fallback without O_TMPFILE)
        self.replaces = None      # os.stat_result of the file being replaced, if any
        self._fd = -1
        self._finished = False    # committed or aborted
        self._reserved = False    # blocks allocated ahead (preallocate): commit() needs the length
        if path in ("-", b"-"):
            src = stdout_overwrites(protect)
            if src is not None:
                raise FilterError(f"-: standard output is the input file {src}: refusing to overwrite it")
            self.f, self.direct = sys.stdout.buffer, True
            return
        target = output_target(path)
        hit = overwritten([target], protect)
        if hit is not None:
            raise FilterError(f"{self.path}: refusing to overwrite the input file {hit[1]}")
        self.target = target
        try:
            st = os.stat(target)
        except FileNotFoundError:
            st = None
        except OSError as e:
            raise _os_error(e, self.path) from None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), self.path)
        if st is not None and not stat.S_ISREG(st.st_mode):
            try:
                self.f, self.direct = open(target, "wb", buffering=0), True
            except OSError as e:
                raise _os_error(e, self.path) from None
            return
        self._dir = -1            # the destination's directory, open: names are made relative to it
        self._name = os.path.basename(target)
        if st is not None and not os.access(target, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
            # the new file is renamed over the old, which the directory alone allows: a file its
            # user may not write is refused, as tcpdump's open of it fails (with its reason: a
            # read-only file system says so, as there)
            try:
                readonly = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
            except OSError:
                readonly = False
            code = errno.EROFS if readonly else errno.EACCES
            raise OSError(code, os.strerror(code), self.path)
        try:
            self._dir = os.open(os.path.dirname(os.path.abspath(target)),
                                os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fd = self._unnamed()
            if fd < 0:
                fd = self._named_temp()
            self._fd = fd
            if st is not None:
                self.replaces = st
                _copy_owner_and_mode(fd, st)
        except OSError as e:
            self._discard()
            raise _os_error(_why_not(target, st, e), self.path) from None
        self.f = os.fdopen(fd, "wb", buffering=0, closefd=False)

    def _unnamed(self):
        """An O_TMPFILE file descriptor in the directory, or -1 when the system cannot make one
        (or cannot link it later through /proc)."""
        if not USE_O_TMPFILE:
            return -1
        try:
            # 0o666 less the umask, as any new file (tcpdump's output too)
            fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666, dir_fd=self._dir)
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                return -1
            raise
        if not os.path.exists(f"/proc/self/fd/{fd}"):
            os.close(fd)
            return -1
        return fd

    def _named_temp(self):
        for _attempt in range(100):
            name = _short_temp_name()
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666,
                             dir_fd=self._dir)
            except FileExistsError:
                continue
            self.named = name
            return fd
        raise FileExistsError(errno.EEXIST, "cannot create a temporary file next to it", self.path)

    def _link(self, name):
        """Give the unnamed file `name` in the directory (linkat through /proc, following the
        link: the only way without privileges)."""
        os.link(f"/proc/self/fd/{self._fd}", name, dst_dir_fd=self._dir, follow_symlinks=True)

    def write(self, data):
        view = memoryview(data).cast("B")
        try:
            while len(view):
                n = self.f.write(view)
                view = view[n:]
        except OSError as e:
            raise _os_error(e, self.path) from None

    def fileno(self):
        """The file descriptor, for writes that bypass Python (everything before is flushed)."""
        self.f.flush()
        return self.f.fileno()

    def preallocate(self, end, allocate):
        """Allocate the file's blocks up to `end` bytes before they are written, with
        allocate(fd, at, length) -> bool (pfilter.capture._fastcopy.preallocate, which does it
        where it pays); the file's size is then `end` until commit(length) cuts it to what was
        written. Nothing is done for an output written in place (standard output, a FIFO, a
        device). True when the blocks were allocated."""
        if self._fd < 0 or self._reserved:
            return False
        at = self.f.tell()
        try:
            self._reserved = bool(allocate(self._fd, at, end - at))
        except OSError as e:
            raise _os_error(e, self.path) from None
        return self._reserved

    def commit(self, length=None):
        """Give the finished file its name (flushed to disk first when it replaces one). Given
        `length` (the bytes written), the file is cut to it first; after preallocate() it is
        required."""
        with deferred():
            if self._finished:
                return
            if self._reserved and length is None:
                raise ValueError("AtomicFile.commit: a preallocated file needs its length")
            if length is not None and self._fd >= 0:
                try:
                    os.ftruncate(self._fd, length)
                except OSError as e:
                    raise _os_error(e, self.path) from None
            self._finished = True
            if self.direct:
                try:
                    self.f.flush()
                    if self.f is not sys.stdout.buffer:
                        self.f.close()
                except OSError as e:
                    raise _os_error(e, self.path) from None
                return
            if self._fd < 0:
                return
            try:
                self._link_in()
            except OSError as e:
                self._discard()
                raise _os_error(e, self.path) from None
            self._close_fd()

    def _link_in(self):
        replacing = os.path.lexists(self.target)
        if self.named is None and not replacing:
            try:
                self._link(self._name)
                return
            except FileExistsError:       # created meanwhile: replace it as below
                replacing = True
        if replacing:
            # The data reaches the disk before the name does, so a crash right after never
            # leaves an empty file where the old output was. (A new name needs no such care:
            # nothing is lost if it ends up empty.)
            os.fsync(self._fd)
        if self.named is None:
            for _attempt in range(100):
                name = _short_temp_name()
                try:
                    self._link(name)
                    break
                except FileExistsError:
                    continue
            else:
                raise FileExistsError(errno.EEXIST, "cannot create a temporary name next to it", self.path)
            self.named = name
        os.replace(self.named, self._name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
        self.named = None

    def abort(self):
        """Drop the file; an existing destination is left as it was."""
        with deferred():
            if self._finished:
                return
            self._finished = True
            if self.direct:
                if self.f is not sys.stdout.buffer:
                    try:
                        self.f.close()
                    except OSError:
                        pass
                return
            self._discard()

    def _discard(self):
        if self.named is not None:
            try:
                os.unlink(self.named, dir_fd=self._dir)
            except OSError:
                pass
            self.named = None
        self._close_fd()

    def _close_fd(self):
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            try:
                self.f.close()
            except (OSError, AttributeError):
                pass
            os.close(fd)
        if getattr(self, "_dir", -1) >= 0:
            fd, self._dir = self._dir, -1
            os.close(fd)


class CompressedAtomicFile(AtomicFile):
    """An AtomicFile whose bytes are compressed on the way (gzip, zstd, xz or bzip2, from the
    name's extension: compression_for_path); the compressed stream is finished on commit().
    Writes cannot bypass it: fileno() raises ValueError, so writers take their buffered path."""

    def __init__(self, path, protect=(), kind=None):
        kind = kind or compression_for_path(path)
        self._z = compressor(kind, path)      # before creating anything: a missing module is an error
        self.compression = kind
        super().__init__(path, protect)

    def write(self, data):
        out = self._z.compress(bytes(memoryview(data).cast("B")))
        if out:
            super().write(out)

    def fileno(self):
        raise ValueError(f"{self.path}: a compressed output has no file descriptor to write to")

    def finish(self):
        """Write the end of the compressed stream (idempotent); commit() does it too."""
        if self._z is not None:
            z, self._z = self._z, None
            tail = z.flush()
            if tail:
                super().write(tail)

    def commit(self):
        if not self._finished:
            try:
                self.finish()
            except BaseException:
                self.abort()
                raise
        super().commit()


def atomic_output(path, protect=(), kind=None):
    """The atomic output for `path`: compressed as `kind` says ("gzip", ...), else when its name
    ends in .gz, .zst, .xz or .bz2 (CompressedAtomicFile), else a plain AtomicFile. "-"
    (standard output) is compressed only when `kind` says so."""
    kind = kind or compression_for_path(path)
    if kind is not None:
        return CompressedAtomicFile(path, protect, kind)
    return AtomicFile(path, protect)


def write_whole(path, data, protect=()):
    """Write the bytes `data` to `path` through an AtomicFile: the file appears whole or not at
    all (nothing is left when the write fails); never over a file of `protect`."""
    out = AtomicFile(path, protect=protect)
    try:
        out.write(data)
    except BaseException:
        out.abort()
        raise
    out.commit()


def _short_temp_name():
    """A temporary name short enough next to any output name (the name limit is per component)."""
    return f".pf{os.urandom(5).hex()}.tmp"


def _copy_owner_and_mode(fd, st):
    """Give a replacement file the mode and, as far as permitted, the owner and group of the
    file it replaces (chown first: it may clear set-id bits that chmod then restores)."""
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except PermissionError:
            try:
                os.fchown(fd, -1, st.st_gid)       # a group the user belongs to
            except PermissionError:
                pass
    os.fchmod(fd, stat.S_IMODE(st.st_mode))


# Record headers in a row that pfilter.capture.index.resync() (and the speculative walk of a
# chunk by several workers, pfilter/capture/_fastcopy.pyx's _guess) wants to see before it takes
# a position as a record boundary.
RESYNC_DEPTH = 64
# How far (seconds) from the first record's time they take a record's time as plausible.
RESYNC_SPAN = 5 * 365 * 86400


def truncated_snaplen(snaplen, truncate):
    """The header snapshot length of an output whose records are cut to `truncate` bytes
    (--snaplen), where it would say `snaplen` uncut (None: not known yet): the smaller of the
    two, as editcap -s writes it."""
    # Divergence: an input whose header says 0 is read as libpcap reads it (the link type's
    # largest, 262144 for most), so the output says the cut; editcap -s writes 262144 for it.
    if truncate is None or snaplen is None:
        return snaplen if truncate is None else truncate
    return min(snaplen, truncate)


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
        # (libpcap counts the bytes after the magic number, which it read first)
        raise CaptureFormatError(f"truncated dump file; tried to read 24 file header bytes, only got "
                                 f"{max(len(hdr) - 4, 0)}", 0, path)
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
