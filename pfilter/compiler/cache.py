"""The on-disk cache of compiled programs: a repeated command (or filter_file call) skips
importing and running the compiler.

Imports only os and zlib at import time (a cache hit imports neither the compiler nor numpy);
pfilter.compile and pfilter.validate when it needs them. Entries live in
$XDG_CACHE_HOME/pfilter/programs (default ~/.cache/pfilter/programs), one text file per program
keyed by the expression, link type, snapshot length, optimization, options and the compiler's
source files; PFILTER_NO_CACHE=1 turns the cache off. Used by pfilter.filter_file (cache=True,
the default) and the `pfilter` command.
"""
import os

__all__ = ["cached_program", "cached_compile", "prune_cache"]


#: the compiled-program cache keeps about this many programs and bytes at most: when a new entry
#: finds more, the least recently used go until three quarters are left
CACHE_MAX_ENTRIES = 2000
CACHE_MAX_BYTES = 64 * 1024 * 1024
#: one new entry in this many (at random) checks the cache's size, so that a run with a cached
#: program never lists the cache and a compiling run rarely does (~2 ms for 2000 entries)
CACHE_PRUNE_EVERY = 16
#: an entry larger than this is damaged (the largest programs pfilter compiles take ~1 MB)
CACHE_ENTRY_MAX_BYTES = 16 * 1024 * 1024
#: a temporary entry older than this was left by a killed run
CACHE_STALE_TMP_SECONDS = 3600


def _cache_dir():
    """$XDG_CACHE_HOME/pfilter/programs (~/.cache when unset, or not absolute as the XDG
    specification says), None with PFILTER_NO_CACHE=1."""
    if os.environ.get("PFILTER_NO_CACHE", "") not in ("", "0"):
        return None
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pfilter", "programs")


def _read_cache_entry(path):
    """The text of a cache entry, or None when there is no usable one. Never blocks (an entry
    replaced by a FIFO is opened non-blocking and refused as not a regular file) and reads a
    bounded amount. A hit marks the entry as recently used (its modification time)."""
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > CACHE_ENTRY_MAX_BYTES:
            return None
        chunks, left = [], st.st_size + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        try:
            os.utime(fd)
        except OSError:
            pass            # a read-only cache still serves hits
        return b"".join(chunks).decode("utf-8", "surrogatepass")
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def prune_cache(directory, max_entries=None, max_bytes=None):
    """Bound the program cache in `directory`: when it holds more than max_entries entries or
    max_bytes bytes (default CACHE_MAX_ENTRIES, CACHE_MAX_BYTES), remove the least recently
    used until three quarters of each are left; remove temporary entries of killed runs. Returns
    the number of files removed. Errors (a file gone meanwhile, no permission) are ignored."""
    import time
    max_entries = CACHE_MAX_ENTRIES if max_entries is None else max_entries
    max_bytes = CACHE_MAX_BYTES if max_bytes is None else max_bytes
    entries, total, removed = [], 0, 0
    stale = time.time() - CACHE_STALE_TMP_SECONDS
    try:
        subdirs = [e.path for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return 0
    for sub in subdirs:
        try:
            with os.scandir(sub) as it:
                for e in it:
                    try:
                        st = e.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if e.name.endswith(".tmp"):
                        if st.st_mtime < stale:
                            removed += _unlink(e.path)
                    elif e.name.endswith(".txt"):
                        entries.append((st.st_mtime_ns, st.st_size, e.path))
                        total += st.st_size
        except OSError:
            continue
    if len(entries) <= max_entries and total <= max_bytes:
        return removed
    entries.sort()
    keep_entries, keep_bytes = max_entries * 3 // 4, max_bytes * 3 // 4
    count = len(entries)
    for _mtime, size, path in entries:
        if count <= keep_entries and total <= keep_bytes:
            break
        if _unlink(path):
            removed += 1
            count -= 1
            total -= size
    return removed


def _unlink(path):
    try:
        os.unlink(path)
        return 1
    except OSError:
        return 0


def _compiler_stamp():
    """Changes whenever the compiler's sources (or the version) change."""
    from .. import __version__
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parts = [__version__]
    for sub in ("compiler", "optimizer"):
        try:
            entries = sorted(os.scandir(os.path.join(here, sub)), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.name.endswith(".py"):
                st = e.stat()
                parts.append(f"{sub}/{e.name}:{st.st_mtime_ns}:{st.st_size}")
    for name in ("linktypes.py", "program.py", "validate.py"):
        try:
            st = os.stat(os.path.join(here, name))
            parts.append(f"{name}:{st.st_mtime_ns}:{st.st_size}")
        except OSError:
            pass
    return "|".join(parts)


def cached_program(expr, linktype=1, snaplen=262144, optimize=True, **options):
    """The expression compiled, as (instruction tuples, rejects_all, Program or None), through an
    on-disk cache of the instructions ($XDG_CACHE_HOME/pfilter, by default ~/.cache/pfilter,
    keyed by the expression, link type, snapshot length, optimization, options and the
    compiler's source files; bounded by prune_cache; PFILTER_NO_CACHE=1 turns it off). A cache
    hit imports neither the compiler nor numpy (the Program is then None); a damaged or
    unwritable cache is a miss, never an error: an entry is its key line, its verdict line with
    a CRC-32 of the instructions, and the instructions, so that one changed into another valid
    program (a bad sync, an edit) is a miss too. rejects_all is only decided for optimized
    programs."""
    import zlib
    directory = _cache_dir()
    path = None
    if directory is not None:
        # The file holds its full key on the first line, so a hash collision is only a miss.
        level = optimize if isinstance(optimize, str) else bool(optimize)     # "shareable" too
        key = repr((_compiler_stamp(), expr, str(linktype), int(snaplen), level, sorted(options.items())))
        raw = key.encode("utf-8", "surrogatepass")
        name = f"{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}{len(raw):x}"
        path = os.path.join(directory, name[:2], name + ".txt")
        try:
            text = _read_cache_entry(path)
            if text is None:
                raise ValueError("no entry")
            key_line, flag_line, body = text.split("\n", 2)
            flag, _, check = flag_line.partition(" ")
            if key_line != key or flag not in ("ok", "rejects-all"):
                raise ValueError("another key")
            if check != f"{zlib.crc32(body.encode('ascii')):08x}":
                raise ValueError("a body changed since it was written")    # (a valid program, not ours)
            tuples = [tuple(int(v) for v in line.split()) for line in body.split("\n") if line]
            from ..validate import COMPILED_MAX_INSNS, validate
            validate(tuples, COMPILED_MAX_INSNS)
        except Exception:       # whatever is wrong with an entry (damaged, foreign), it is a miss
            pass
        else:
            return tuples, flag == "rejects-all", None
    import pfilter
    prog = pfilter.compile(expr, linktype=linktype, snaplen=snaplen, optimize=optimize, **options)
    rejects = bool(prog.rejects_all) if optimize else False
    tuples = prog.to_tuples()
    if path is not None:
        tmp = f"{path}.{os.getpid()}.{os.urandom(3).hex()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            body = "".join(f"{c} {jt} {jf} {k}\n" for c, jt, jf, k in tuples)
            text = (key + "\n" + ("rejects-all" if rejects else "ok")
                    + f" {zlib.crc32(body.encode('ascii')):08x}\n" + body)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            with open(fd, "wb") as f:
                f.write(text.encode("utf-8", "surrogatepass"))
            os.replace(tmp, path)
        except (OSError, ValueError):
            _unlink(tmp)       # a full or read-only cache: this run goes on without it
        else:
            if os.urandom(1)[0] < 256 // CACHE_PRUNE_EVERY:
                prune_cache(directory)
    return tuples, rejects, prog


def cached_compile(expr, linktype=1, snaplen=262144, optimize=True, **options):
    """pfilter.compile through the on-disk cache of cached_program: the same Program's
    instructions, without importing the compiler on a hit."""
    tuples, _rejects, prog = cached_program(expr, linktype, snaplen, optimize, **options)
    return prog if prog is not None else program_of(tuples, linktype, snaplen, expr)


def program_of(tuples, linktype, snaplen, expr):
    """The Program of a compiled expression's cached instructions: as long as the compiler
    makes them (validate.COMPILED_MAX_INSNS, not the kernel's 4096, which a compiled filter
    of hundreds of hosts passes: the compiler's own Program takes it)."""
    from ..program import Program
    from ..validate import COMPILED_MAX_INSNS
    return Program.from_tuples(tuples, linktype=linktype, snaplen=snaplen, source=expr, max_insns=COMPILED_MAX_INSNS)
