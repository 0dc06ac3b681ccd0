"""pfilter on a Dask cluster (the `dask` extra: pip install 'pfilter-bpf[dask]', which is
dask.distributed): the same results as the local calls, with the work spread over the cluster's
workers.

    import pfilter.dask
    from distributed import Client
    client = Client("tcp://scheduler:8786")       # or its address; None: the current client, else a LocalCluster
    pfilter.dask.count(paths, "tcp port 80", client=client)             # the total
    pfilter.dask.filter_files(paths, "tcp", "out.pcap", client=client)  # as `pfilter -r ... -w out.pcap`
    pfilter.dask.filter_files(paths, "tcp", "outdir/", client=client)   # one output per input
    pfilter.dask.classify(paths, rules, client=client)                 # one Classification

Large classic pcap files are cut into byte ranges on record boundaries (each range's first
record found after a cut by pfilter.capture.index.resync: by a planning task on a worker, or,
for one output, by the member that filters the range); the ranges travel to the workers, not
the packets: every worker reads its range from the file itself, so the paths must name the same
files on every worker (a shared file system), and so must the output's directory. One output
from classic pcap inputs: a ring of tasks, one per worker thread, writes the output itself (a
named temporary file next to it, renamed when complete), each member taking every W-th chunk,
as the threads of a local pass share a file; each match is written once. Members all on one
host (_shared_ring_member) run a local pass's turns through blocks of a small mapped file next
to the output (PcapCopy's ring): chunks of a local pass's size, each written straight from its
mapping at the offset its turn gives. Members on several hosts (_ring_member) take chunks of
RING_CHUNK_BYTES: each member filters its chunk while the others filter or write theirs,
keeping the matches as runs of input offsets, then writes them at the chunk's output offset,
which the member of the chunk before sends it, having sent the offset after them on to the next
member first (distributed.Queue: only offsets travel).
Otherwise (a directory of outputs; a ring that cannot finish)
each range task writes a part file (in a temporary directory next to the output) and the parts
are joined in input order as they complete. The output appears atomically, as every pfilter
output. Other captures (pcapng, compressed) are one task each. A scheduler without a worker
(none started, or all lost during a call) would leave the tasks waiting for ever: a call waits
NO_WORKERS_SECONDS for one, then raises FilterError saying so.

Imports pfilter.errors and pfilter.capture at once; dask.distributed only when a function is
called, so `import pfilter.dask` works without the extra and the calls then raise
DaskUnavailableError (a FilterError and an ImportError) naming it.
"""
from __future__ import annotations

import errno
import functools
import os
import shutil
import tempfile

from .errors import CaptureFormatError, FilterError

# A range task's share of a large pcap file (bytes): large enough that a task's overhead
# (a few ms on the scheduler) vanishes, small enough to spread a file over many workers.
RANGE_BYTES = 256 << 20
EXTRA = "pip install 'pfilter-bpf[dask]'"
# Why filter_files takes no "-" (its parts and its ring are files next to the output).
NO_STDOUT = "standard output cannot be written by a cluster's workers: give an output file"


class DaskUnavailableError(FilterError, ImportError):
    """dask.distributed is not installed (the `dask` extra)."""


def _distributed():
    try:
        import distributed
    except ImportError as e:
        raise DaskUnavailableError(f"pfilter.dask needs dask.distributed ({e.name or e}): {EXTRA}") from None
    return distributed


def connect(address):
    """(client, close) for the CLI's --scheduler: 'local' starts a LocalCluster of this machine
    (one single-threaded worker process per usable core), anything else is a scheduler's address.
    close(abandon=True) after a run given up: a local cluster's workers are killed, not waited for."""
    distributed = _distributed()
    if address == "local":
        import signal
        import threading

        from .capture.fastpath import default_workers
        # The cluster's processes start with SIGINT ignored (kept across exec, and by Python's
        # start-up): Ctrl-C at a terminal reaches the whole process group, and only this process
        # is to answer it (closing the cluster), not every worker with a traceback of its own.
        # (A Ctrl-C while the cluster starts, two or three seconds, is lost with it.)
        main = threading.current_thread() is threading.main_thread()
        saved = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            # (its workers' logs not shown: warnings, tasks cancelled by an interruption, a task's
            # failure with its traceback, which reaches this process as the exception that the
            # command's one line names; the
            # scheduler's HTTP server on a free port: its default, 8787, may be another cluster's)
            import logging
            cluster = distributed.LocalCluster(n_workers=default_workers(), threads_per_worker=1, processes=True,
                                               dashboard_address=":0", silence_logs=logging.CRITICAL)
        finally:
            if main:
                signal.signal(signal.SIGINT, saved)
        client = distributed.Client(cluster)

        def close(abandon=False):
            """abandon: the run was given up (Ctrl-C, an error): the workers' processes are
            killed first, not asked to end (they would wait for their running task: seconds)."""
            client.close()
            if abandon:
                import signal
                for nanny in list(cluster.workers.values()):
                    pid = getattr(getattr(getattr(nanny, "process", None), "process", None), "pid", None)
                    if pid:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass
            cluster.close()
        return client, close
    _reachable(address)
    try:
        client = distributed.Client(address)
    except OSError:
        raise                  # (distributed's own: timed out, or the connection closed, naming the address)
    except Exception:          # MemoryError included: a length read from a stranger's bytes
        raise FilterError(f"{address}: what answers there is not a Dask scheduler (its first bytes "
                          f"are not a scheduler's handshake)") from None
    return client, lambda abandon=False: client.close()


def quiet(names=("asyncio", "distributed", "tornado")):
    """Silence what these loggers log from here on: asyncio's (a task of the client's event loop
    abandoned by an interruption: 'Task exception was never retrieved', from the loop's thread at
    any moment), and on a run given up, dask.distributed's (closed connections), so that the
    command's one line is what it prints."""
    import logging
    for name in names:
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _reachable(address):
    """Raise the OSError of a TCP connection to a tcp:// or tls:// scheduler address that cannot
    be made (refused, unknown host, no answer within distributed's connect timeout), naming the
    address: distributed itself retries a refused connection until its timeout (30 s) and then
    says only that it timed out. Other schemes are left to distributed."""
    import socket

    import dask.config
    from dask.utils import parse_timedelta
    from distributed.comm.addressing import parse_address, parse_host_port
    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
    except ValueError as e:
        raise FilterError(f"--scheduler {address}: not a scheduler address ({e}); "
                          "expected tcp://HOST:PORT or 'local'") from None
    if scheme not in ("tcp", "tls"):
        from distributed.comm.registry import get_backend
        try:
            get_backend(scheme)
        except (ValueError, ImportError) as e:
            raise FilterError(f"--scheduler {address}: not a scheduler address ({e}); "
                              "expected tcp://HOST:PORT or 'local'") from None
        return
    timeout = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect"), default="seconds")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if scheme == "tcp":
                # a scheduler speaks first (its handshake, as soon as it accepts): something
                # else that accepts and waits (a web server) would keep distributed's handshake
                # waiting without end
                try:
                    said = sock.recv(1, socket.MSG_PEEK)
                except TimeoutError:
                    raise FilterError(f"{address}: what answers there is not a Dask scheduler (it said "
                                      f"nothing within {timeout:g} s)") from None
                if not said:
                    raise FilterError(f"{address}: what answers there is not a Dask scheduler (it closed "
                                      f"the connection)")
    except socket.gaierror as e:
        raise OSError(e.errno, f"unknown host {host!r} ({e.strerror})", address) from None
    except TimeoutError:
        raise TimeoutError(errno.ETIMEDOUT, f"no answer within {timeout:g} s", address) from None
    except ConnectionRefusedError:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "connection refused: no Dask scheduler listens "
                                     "there", address) from None
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), address) from None


# A scheduler without a worker keeps tasks waiting for one for ever: a call waits this long for
# a first worker, and is given up once every worker has been gone this long (seconds).
NO_WORKERS_SECONDS = 30.0
# Why a call was given up, by the id of its thread (_watch; _as_given raises it).
_LOST = {}


def _client(client):
    """(client, close) of _found_client, watched (_watch) until close()."""
    found, close = _found_client(client)
    return found, _watch(found, close)


def _watch(client, close):
    """close, with a watch on the scheduler's workers until it is called: FilterError now when
    none comes within NO_WORKERS_SECONDS; and when all are gone that long during the call, its
    futures cancelled, which _as_given turns into a FilterError saying why."""
    import threading
    import time
    address = getattr(getattr(client, "scheduler", None), "address", "the scheduler")

    def workers():
        try:
            return len(client.nthreads())
        except Exception:           # (the scheduler gone: the call's own wait says so)
            return -1
    if workers() == 0:
        try:
            client.wait_for_workers(1, timeout=NO_WORKERS_SECONDS)
        except Exception:
            close()
            raise FilterError(f"{address}: the Dask scheduler has no worker (none came within "
                              f"{NO_WORKERS_SECONDS:g} s): start some (dask worker {address})") from None
    stop = threading.Event()
    me = threading.get_ident()

    def watch():
        since = None
        while not stop.wait(min(1.0, NO_WORKERS_SECONDS / 4)):
            if workers() != 0:
                since = None
                continue
            since = since if since is not None else time.monotonic()
            if time.monotonic() - since >= NO_WORKERS_SECONDS:
                _LOST[me] = (f"{address}: the Dask scheduler has had no worker for {NO_WORKERS_SECONDS:g} s "
                             f"(all of them lost): the run is given up")
                try:        # (again each time: the call may submit more while it ends)
                    client.cancel(list(client.futures.values()), force=True)
                except Exception:
                    pass
    thread = threading.Thread(target=watch, name="pfilter-dask-workers", daemon=True)
    thread.start()

    def closing(*args, **kwargs):
        stop.set()
        thread.join()
        return close(*args, **kwargs)
    return closing


def _finishing(futures):
    """The futures (distributed's, or _Share's: their futures) as they finish, waited for in
    steps: a call _watch gave up on ends with FilterError rather than wait for ever."""
    import threading
    from distributed import wait
    me = threading.get_ident()
    left = list({f.key: getattr(f, "future", f) for f in futures}.values())
    while left:
        if me in _LOST:
            raise FilterError(_LOST[me])
        try:
            done, _pending = wait(left, timeout=0.5, return_when="FIRST_COMPLETED")
        except TimeoutError:
            continue
        if me in _LOST:         # (its futures were cancelled: done, but gathering them would wait)
            raise FilterError(_LOST[me])
        for f in done:
            yield f
        left = [f for f in left if f not in done]


def _done(futures):
    """Wait until every one of the futures has finished (_finishing)."""
    for _f in _finishing(futures):
        pass
    return futures


def _found_client(client):
    """(client, close): the given one (a scheduler's address: a client of it, closed after), the
    current one, or a temporary LocalCluster. FilterError for a closed client and for anything
    else given."""
    distributed = _distributed()
    if isinstance(client, str):
        return connect(client)         # (a scheduler's address, as --scheduler takes it)
    if client is not None:
        if not isinstance(client, distributed.Client):
            raise FilterError(f"client: a distributed.Client or a scheduler's address, not "
                              f"{type(client).__name__}")
        if client.status in ("closing", "closed"):
            raise FilterError("client: this distributed.Client is closed (make a new one, or give "
                              "client=None for a LocalCluster of this machine)")
        return client, lambda: None
    try:
        return distributed.get_client(), lambda: None
    except ValueError:
        return connect("local")


# ---------------------------------------------------------------------------------- worker side

@functools.lru_cache(maxsize=64)
def _tuples(expr, linktype, snaplen):
    """The program of `expr` for a link type, as pfilter.filter_file compiles it (one that
    rejects every packet is run, as there: `pfilter --scheduler` refuses it before, as tcpdump)."""
    import pfilter
    return pfilter.compile(expr, linktype=linktype, snaplen=snaplen, netmask=0).to_tuples()


def _plan_file(path, range_bytes):
    """On a worker: the byte ranges of a file ([(start, end or None)], starts guessed by
    pfilter.capture.index.planned_ranges, checked after the pass), or [None] (the whole file,
    as one task) when it is not a classic pcap file the fast path reads or is small."""
    from .capture.fastpath import _peek
    if _peek(path) is None or os.path.getsize(path) <= range_bytes:
        return [None]
    from .capture.index import planned_ranges
    return planned_ranges(path, range_bytes) or [None]


def _run_part(path, expr, byte_range, part, ts_resolution):
    """On a worker: filter one range of a pcap file, or the whole file (byte_range None), into
    `part` (None: count only); the stats as a dict, or None when the fast path gave up inside
    a range (damage, another timestamp resolution): the client then redoes the whole file."""
    from .capture.fastpath import fast_filter_file
    stats = fast_filter_file(path, part, lambda lt, snap, swapped: _tuples(expr, lt, snap),
                             byte_range=byte_range, workers=1, ts_resolution=ts_resolution)
    damage = None
    if stats is None:
        if byte_range is not None:
            return None
        from .capture.fastpath import FilterStats
        from .capture.filterfile import filter_file
        from .errors import CaptureFormatError
        try:
            stats = filter_file(path, part, expr, workers=1, ts_resolution=ts_resolution,
                                format="pcap" if part is not None else None)
        except CaptureFormatError as err:
            # a damaged input: the packets before the damage were filtered (and kept in `part`),
            # the client decides whether the run ends here (_damaged)
            damage, stats = err, err.stats if err.stats is not None else FilterStats(files=[path])
            err.stats = None
    result = stats.as_dict()
    result["range_end"] = stats.range_end
    result["matched_bytes"] = stats.matched_bytes      # None: not the fast path
    result["damage"] = damage
    return result


def _pass(path, expr, byte_range, out_fd, offset, cut=False, hold=False, drain=None):
    """Filter a range (or the whole file: None) of a classic pcap file into out_fd at offset
    (PcapCopy, one thread; hold: into nothing yet, the matches kept as runs of file offsets for
    job.write_held; drain: (an earlier hold pass, output descriptor, offset) whose matches this
    pass writes as it goes, PcapCopy.drain); (the finished job, where the range began, the
    input's descriptor: the caller closes it), or None when the fast path does not take the
    file, gave up inside the range (damage, or a failed write of the drained matches) or (cut:
    the range starts at a cut, its first record found by pfilter.capture.index.resync, as
    planned_ranges does) found no record after the cut: the caller then starts over another way."""
    from .capture import _fastcopy
    from .capture.fastpath import _decode, _open_eligible, _sized
    opened = _open_eligible(path)
    if opened is None:
        return None
    in_fd, h = opened
    try:
        decoded, clear_mem = _decode(_fastcopy, _tuples(expr, h.linktype, h.snaplen))
        start, end = (24, -1) if byte_range is None else (byte_range[0], -1 if byte_range[1] is None else byte_range[1])
        if cut and start > 24:
            from .capture.index import resync
            start = resync(in_fd, h, start, os.fstat(in_fd).st_size)
            if start is None:
                os.close(in_fd)
                return None
        job = _fastcopy.PcapCopy(decoded, clear_mem, in_fd, -1 if hold else out_fd, start,
                                 min(h.snaplen, h.maxcap), out_size=offset, end=end, hold=hold,
                                 **_sized(max(1, (os.fstat(in_fd).st_size if end < 0 else end) - start), 1, h))
        if drain is not None:
            job.drain(*drain)
        if job.run() != "eof":
            os.close(in_fd)
            return None
        return job, start, in_fd
    except BaseException:
        os.close(in_fd)
        raise


def _ring_member(chunks, expr, mine, names, shared, first, wait, topic=None):
    """On a worker: one member of the ring that writes one output (`shared`, a named file) from
    the chunks (each (range number, path, byte range)) in order; this member takes the chunk
    numbers `mine` (every W-th of W = len(names)), its queue is names[mine[0]]. For each of its
    chunks it filters the range without writing (the matches kept as runs of input offsets,
    PcapCopy's hold mode), takes the chunk's output offset from its queue (chunk 0: `first`),
    puts the offset after its matches on the queue of the next chunk's member, and writes the
    matches during the pass over its next chunk (PcapCopy.drain: a chunk's worth at a time, so
    that the members' writes into the one file spread out as a local pass's do instead of
    colliding). So the members filter and write at the same time, each match is written once,
    and only offsets travel. ({range number: stats dict}, the output's size (the member of the
    last chunk; else None)), or None when the fast path left a range, an offset did not come
    within `wait` seconds (a member not running: a busy cluster), or another member gave up
    (an offset of -1, which this one passes on as it gives up): the client then starts over.
    topic: an event topic the client follows for its progress, told the input bytes of each
    chunk as it is judged."""
    import time
    from distributed import Queue
    w, m = len(names), mine[0]
    queues = [Queue(name) for name in names] if w > 1 else []
    out_fd = os.open(shared, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    results, told, passed_on = {}, first, -1     # passed_on: the last chunk whose successor was told
    pending = None          # (held job, its input descriptor, output offset): written by the next pass

    def tell(j, offset):
        """Pass the offset after chunk j on to the member of chunk j + 1."""
        nonlocal passed_on, told
        passed_on, told = j, offset
        if j + 1 < len(chunks) and w > 1:
            queues[(j + 1) % w].put(offset)
    done = False
    try:
        for j in mine:
            n, path, rng = chunks[j]
            started = time.perf_counter()
            try:
                passed = _pass(path, expr, rng, -1, 0, cut=True, hold=True,
                               drain=pending and (pending[0], out_fd, pending[2]))
            finally:
                if pending is not None:
                    os.close(pending[1])
                    pending = None
            if passed is None:
                return None
            job, start, fd = passed
            pending = (job, fd, None)
            results[n] = dict(read=job.read, matched=job.matched, written=job.matched, bytes=job.bytes,
                              seconds=time.perf_counter() - started, range_end=job.done,
                              matched_bytes=job.bytes, start=start)
            if topic is not None:
                from distributed import get_worker
                get_worker().log_event(topic, job.done - (0 if rng is None or rng[0] <= 24 else start))
            at = first if j == 0 else queues[m].get(timeout=wait) if w > 1 else told
            if at < 0:
                return None
            pending = (job, fd, at)
            tell(j, at + job.out_size)
        if pending is not None:
            pending[0].write_held(out_fd, pending[2])
        done = True
        return results, told if mine[-1] == len(chunks) - 1 else None
    except TimeoutError:
        return None
    finally:
        if pending is not None:
            os.close(pending[1])
        if not done and w > 1:
            # the next member gives up at once (and passes it on), not after `wait`
            nxt = min([j for j in mine if j > passed_on] or [len(chunks)])
            if nxt + 1 < len(chunks):
                queues[(nxt + 1) % w].put(-1)
        os.close(out_fd)


def _shared_ring_member(paths, expr, member, members, ring_path, shared, first, wait, chunk):
    """On a worker: member `member` of a ring of `members` tasks on one host that writes one
    output (`shared`, a named file) from classic pcap inputs, as the threads of a local pass
    do: each input one pass whose chunks (of `chunk` bytes) go to the members in turn (chunk i
    to member i mod members), their walk and write turns handed on through block k of the file
    `ring_path`, mapped by every member (PcapCopy's ring; pfilter.capture._fastcopy.ring_init
    made the blocks), so each match is written once, straight from the chunk's mapping, at the
    offset the turn gives. ([{stats of input k}], the output's size), or None when the fast
    path left an input or the ring failed (a turn that did not come within `wait` seconds, a
    member that died in one): the client then starts over."""
    import mmap
    import time
    from .capture import _fastcopy
    from .capture.fastpath import _decode, _open_eligible, _sized
    fd = os.open(ring_path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    try:
        ring = mmap.mmap(fd, 0)
    finally:
        os.close(fd)
    out_fd = os.open(shared, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    results, at, job = [], first, None
    try:
        for k, path in enumerate(paths):
            opened = _open_eligible(path)
            if opened is None:
                return None
            in_fd, h = opened
            started = time.perf_counter()
            try:
                decoded, clear_mem = _decode(_fastcopy, _tuples(expr, h.linktype, h.snaplen))
                sized = _sized(max(1, os.fstat(in_fd).st_size - 24), members, h)
                sized.update(chunk=min(sized["chunk"], chunk), workers=1)
                job = _fastcopy.PcapCopy(decoded, clear_mem, in_fd, out_fd, 24, min(h.snaplen, h.maxcap),
                                         out_size=at, ring=ring, ring_block=k, member=member, members=members,
                                         ring_wait=wait, **sized)
                status = job.run()
            finally:
                os.close(in_fd)
            if status != "eof":
                return None
            done, total = job.ring_chunks
            results.append(dict(read=job.read, matched=job.matched, written=job.matched, bytes=job.bytes,
                                seconds=time.perf_counter() - started, chunks_done=done, chunks=total))
            at = job.out_size
        return results, at
    finally:
        os.close(out_fd)
        job = None
        try:
            ring.close()
        except BufferError:         # (a job still holds it: closed when collected)
            pass


def _copy(fi, fo, start, length, offset, name):
    """Copy bytes [start, start + length) of the file fi into fo at offset (None: at its
    position), in the kernel where it can (copy_file_range; sendfile from another file system)."""
    done = 0
    while done < length:
        at = None if offset is None else offset + done
        try:
            n = os.copy_file_range(fi, fo, length - done, start + done, at)
        except (AttributeError, OSError):
            try:
                if at is not None:
                    os.lseek(fo, at, os.SEEK_SET)
                n = os.sendfile(fo, fi, start + done, length - done)
            except (AttributeError, OSError):
                data = os.pread(fi, min(length - done, 1 << 22), start + done)
                n = 0 if not data else os.write(fo, data) if at is None else os.pwrite(fo, data, at)
        if n <= 0:
            raise OSError(f"{name}: short copy")
        done += n


# ---------------------------------------------------------------------------------- client side

def _names(paths):
    """The inputs' names as given (str)."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    out = [os.fsdecode(p) if isinstance(p, bytes) else os.fspath(p) for p in paths]
    if not out:
        raise FilterError("no input capture")
    if "-" in out:
        raise FilterError("standard input cannot be read by a cluster's workers: give capture files")
    return out


def _as_given(fn):
    """fn (count_stats, filter_files, classify) with the input an OSError names (a missing file,
    one that cannot be read) named as the caller gave it, not as the absolute path the workers
    were given (_paths); a call _watch gave up raises FilterError saying why."""
    @functools.wraps(fn)
    def call(paths, *args, **kwargs):
        import threading
        if not isinstance(paths, (str, bytes, os.PathLike)):
            paths = list(paths)                   # (read twice: an iterator once)
        me = threading.get_ident()
        _LOST.pop(me, None)
        try:
            return _files_as_given(fn(paths, *args, **kwargs), paths)
        except CaptureFormatError as err:
            if fn.__name__ != "classify":         # (the local calls' err.stats: what was read)
                from .capture.fastpath import FilterStats
                err.stats = _files_as_given(err.stats if err.stats is not None else FilterStats(), paths)
            raise
        except OSError as err:
            given = _as_named(paths)
            for attr in ("filename", "filename2"):
                name = getattr(err, attr, None)
                if isinstance(name, str) and name in given:
                    setattr(err, attr, given[name])
            raise
        except BaseException:
            lost = _LOST.pop(me, None)
            if lost is None:
                raise
            raise FilterError(lost) from None
        finally:
            _LOST.pop(me, None)
    return call


def _as_named(paths):
    """{absolute path (as the workers get it): the name the caller gave}; {} when `paths` names
    no input (the call's own error says so)."""
    try:
        return {os.path.abspath(g): g for g in _names(paths)}
    except FilterError:
        return {}


def _files_as_given(stats, paths):
    """A FilterStats whose `files` (the inputs read, as the workers were given them: absolute)
    are named as the caller gave them, as the local calls name them; anything else as it is."""
    files = getattr(stats, "files", None)
    if isinstance(files, list):
        given = _as_named(paths)
        stats.files = [given.get(f, f) for f in files]
    return stats


def _paths(paths):
    """The inputs as absolute paths: a worker's working directory is not this process's, and a
    relative name would open another file there, or none."""
    return [os.path.abspath(p) for p in _names(paths)]


def _damaged(results, tasks, names, on_damage):
    """The damaged inputs among the tasks' results, in input order, each error naming its input
    as the caller did (names): with on_damage, each is passed to it, as filter_file's on_damage,
    and len(names) returned (every input kept); without, the number of inputs kept (those up to
    the first damaged one, whose packets before the damage count) and its error."""
    seen = set()
    for k, r in enumerate(results):
        i = tasks[k][0]
        if r is not None and r.get("damage") is not None and i not in seen:
            seen.add(i)
            err = r["damage"].renamed(names[i])
            if on_damage is None:
                return i + 1, err
            on_damage(err)
    return len(names), None


def _kept(results, tasks, paths, keep, err):
    """The FilterStats of the first `keep` inputs; raised as err.stats when an input was damaged
    (err)."""
    stats = _total([r for k, r in enumerate(results) if tasks[k][0] < keep], paths[:keep])
    if err is not None:
        err.stats = stats
        raise err
    return stats


def _plan(client, paths, range_bytes):
    """The tasks [(input number, path, byte range or None)], planned on the workers (a few
    inputs to a task, _grouped)."""
    cuts = _grouped(client, len(paths))
    groups = client.map(_plan_files, [paths[a:b] for a, b in cuts], [range_bytes] * len(cuts), pure=False)
    plans = [plan for group in client.gather(_done(groups)) for plan in group]
    return [(i, p, r) for i, (p, ranges) in enumerate(zip(paths, plans)) for r in ranges]


def _plan_files(paths, range_bytes):
    """On a worker: _plan_file of each path."""
    return [_plan_file(p, range_bytes) for p in paths]


# The most inputs one task plans, or filters whole (a task costs a few ms of the scheduler's and
# a worker's time: a directory of 1,500 small captures took 5 s on a LocalCluster of 2 workers
# with a task per input for each); fewer when that would leave a worker thread without
# GROUP_SHARE tasks.
GROUP_FILES = 32
GROUP_SHARE = 4


def _grouped(client, n):
    """[(start, end)]: n consecutive items cut into groups of at most GROUP_FILES, at least
    GROUP_SHARE groups per worker thread where there are that many items."""
    threads = max(1, sum(client.nthreads().values()))
    size = max(1, min(GROUP_FILES, n // (GROUP_SHARE * threads)))
    return [(a, min(a + size, n)) for a in range(0, n, size)]


def _total(dicts, paths):
    from .capture.fastpath import FilterStats
    stats = FilterStats(files=list(paths))
    for d in dicts:
        if d is not None:
            for k in ("read", "matched", "written", "bytes"):
                setattr(stats, k, getattr(stats, k) + d[k])
    return stats


def _timed(fn):
    """fn (count_stats, filter_files) with its FilterStats' seconds the wall time of the call, as
    the local calls' (the workers' tasks overlap: none of theirs is the run's)."""
    @functools.wraps(fn)
    def timed(*args, **kwargs):
        import time
        from .errors import CaptureFormatError
        started = time.perf_counter()
        try:
            stats = fn(*args, **kwargs)
        except CaptureFormatError as err:
            if err.stats is not None:
                err.stats.seconds = time.perf_counter() - started
            raise
        stats.seconds = time.perf_counter() - started
        return stats
    return timed


def count(paths, expr, client=None, *, range_bytes=RANGE_BYTES):
    """The number of packets of the captures `paths` that `expr` matches (as `pfilter -r ...
    --count`), counted across the cluster's workers."""
    return count_stats(paths, expr, client, range_bytes=range_bytes).matched


@_as_given
@_timed
def count_stats(paths, expr, client=None, *, range_bytes=RANGE_BYTES, on_damage=None, progress=None):
    """count()'s FilterStats (packets read and matched). A damaged input counts its packets
    before the damage, as pfilter.filter_file's: then without on_damage its CaptureFormatError is
    raised (err.stats: the inputs up to it), with on_damage it is passed to it (each, in input
    order) and the inputs after it are counted too. progress: called as progress(bytes_done,
    bytes_total, None) as the ranges are done (filter_file's; the inputs' sizes as this
    process sees them)."""
    names = _names(paths)
    paths = _paths(paths)
    _tuples(expr, 1, 262144) if expr else None          # a syntax error is raised here, not on a worker
    client, close = _client(client)
    try:
        tasks = _plan(client, paths, range_bytes)
        results = _gather_parts(client, tasks, expr, [None] * len(tasks), [None] * len(tasks),
                                progress=_Progress(progress, tasks, paths))
        return _kept(results, tasks, paths, *_damaged(results, tasks, names, on_damage))
    finally:
        close()


def _submit(client, tasks, expr, parts, resolutions):
    """A future per task [(input number, path, byte range)], in order (part files `parts`,
    timestamp resolutions of their outputs): _Share of a task that filters several whole inputs
    one after another (consecutive ones, _grouped), or of one range of a large input."""
    whole = [k for k, t in enumerate(tasks) if t[2] is None]
    cuts = dict((whole[a], whole[b - 1] + 1) for a, b in _grouped(client, len(whole)))
    futures, k = [], 0
    while k < len(tasks):
        end = k + 1
        if k in cuts:                       # (whole inputs: consecutive, up to the group's end)
            while end < cuts[k] and tasks[end][2] is None:
                end += 1
        group = client.submit(_run_parts, [(tasks[m][1], expr, tasks[m][2], parts[m], resolutions[m])
                                           for m in range(k, end)], pure=False)
        fetched = []                        # (the group's results, once fetched: shared by its tasks)
        futures.extend(_Share(group, m - k, fetched) for m in range(k, end))
        k = end
    return futures


def _run_parts(items):
    """On a worker: _run_part of each (path, expr, byte range, part, resolution), in order."""
    return [_run_part(*item) for item in items]


class _Share:
    """A task's share of a future that runs several (_run_parts): its result is the future's
    at position `pos`, fetched once for all its shares (`fetched`: a list they share; a fetch
    is a round trip through the client's event loop)."""
    __slots__ = ("future", "pos", "fetched")

    def __init__(self, future, pos, fetched):
        self.future, self.pos, self.fetched = future, pos, fetched

    @property
    def key(self):
        return self.future.key

    def result(self):
        if not self.fetched:
            self.fetched.append(self.future.result())
        return self.fetched[0][self.pos]

    def cancel(self):
        self.future.cancel()


def _gathered(client, shares):
    """The results of _submit's futures, in order (each future gathered once)."""
    futures = list({s.key: s.future for s in shares}.values())
    got = dict(zip([f.key for f in futures], client.gather(_done(futures))))
    return [got[s.key][s.pos] for s in shares]


def _joins(tasks, results, k):
    """Whether task k's range ends where task k + 1's starts (the start it found after its cut,
    else its planned one), or they are of different files."""
    if k + 1 >= len(tasks) or tasks[k][0] != tasks[k + 1][0] or tasks[k][2] is None:
        return True
    nxt = results[k + 1] if k + 1 < len(results) and results[k + 1] is not None else {}
    return results[k]["range_end"] == nxt.get("start", tasks[k + 1][2][0])


class _Progress:
    """A progress callback (progress(bytes_done, bytes_total, None), as filter_file's) told of
    the tasks as they end: each counts the bytes of its range (its file, when whole), once."""

    def __init__(self, report, tasks, paths):
        self.report = report or None
        sizes = {i: 0 for i in range(len(paths))}
        for i, p in enumerate(paths if self.report is not None else ()):     # (no progress: no stat)
            try:
                sizes[i] = os.path.getsize(p)
            except OSError:               # (one that only the workers see)
                sizes[i] = 0
        self.total = sum(sizes.values())
        first = {}                        # an input's first range counts its header too
        for i, _p, r in tasks:
            first.setdefault(i, r)
        self.share = [sizes[i] if r is None else
                      (sizes[i] if r[1] is None else min(r[1], sizes[i])) - (0 if r is first[i] else r[0])
                      for i, _p, r in tasks]
        self.seen, self.done = set(), 0

    def ended(self, k):
        if self.report is not None and k not in self.seen:
            self.seen.add(k)
            self.done += max(0, self.share[k])
            self.report(min(self.done, self.total), self.total, None)

    def reached(self, nbytes):
        """Report nbytes of the inputs done (a ring's members, not its tasks, tell them)."""
        if self.report is not None:
            self.report(min(nbytes, self.total), self.total, None)

    def finished(self):
        self.reached(self.total)

    def watch(self, futures):
        """Wait for the futures, each reported as it ends."""
        if self.report is None:
            return
        where = {}
        for k, f in enumerate(futures):               # (a _Share's future: several tasks)
            where.setdefault(f.key, []).append(k)
        for f in _finishing(futures):
            for k in where[f.key]:
                self.ended(k)


def _gather_parts(client, tasks, expr, parts, resolutions, futures=None, progress=None):
    """Run the tasks; their stats dicts, in order. An input whose range the fast path gave up
    on, or whose ranges do not join (a guessed start that is not where the walk of the range
    before stopped), is filtered whole again. progress: a _Progress, told of each task."""
    if futures is None:
        futures = _submit(client, tasks, expr, parts, resolutions)
    if progress is not None:
        progress.watch(futures)
    results = _gathered(client, futures)
    redo = {tasks[k][0] for k, r in enumerate(results) if r is None}
    redo |= {tasks[k][0] for k in range(len(tasks)) if results[k] is not None and not _joins(tasks, results, k)}
    for i in sorted(redo):
        ks = [k for k, t in enumerate(tasks) if t[0] == i]
        for k in ks:
            results[k] = None
            if parts[k] is not None and os.path.exists(parts[k]):
                os.unlink(parts[k])
        results[ks[0]] = _done([client.submit(_run_part, tasks[ks[0]][1], expr, None, parts[ks[0]],
                                              resolutions[ks[0]], pure=False)])[0].result()
    return results


@_as_given
@_timed
def filter_files(paths, expr, out, client=None, *, range_bytes=None, on_damage=None, progress=None, names=()):
    """Write the packets of `paths` that `expr` matches: `out` a file (pcap): the inputs'
    matches in the order given, byte for byte what `pfilter -r A -r B ... -w out` writes; `out`
    a directory (existing, or a name ending in '/'): one output per input, named as the input
    (as a pcap file: 'a.pcapng.gz' gives 'a.pcap'; an input under one of the directories `names`
    keeps its path under it: capture.files.output_names). Relative paths are this process's.
    range_bytes: the size of a range (default: into one file, RING_CHUNK_BYTES, the chunks of the
    ring of workers that writes it in place; into a directory, RANGE_BYTES, one task each).
    Returns a FilterStats (the sums over all inputs). A damaged input is kept up to its damage,
    as pfilter.filter_file keeps it: without on_damage the outputs end with it (inputs after it
    not written) and its CaptureFormatError is raised (err.stats: what was written); with
    on_damage it is passed to it (each, in input order) and the inputs after it are written.
    progress: as count_stats' (a ring that writes one output in place: as its walks go on)."""
    from .capture.filterfile import output_header
    from .capture.files import (AtomicFile, compression_for_path, directory_targets, file_linktype, format_for_path,
                                output_target, overwritten, pcap_file_header)
    from .capture.reader import PEEK_WINDOW_BYTES, open_capture
    from .errors import CaptureFormatError
    given = _names(paths)
    paths = _paths(paths)
    shown = out = os.fsdecode(out) if isinstance(out, bytes) else os.fspath(out)   # (shown: as given)
    if out == "-":
        raise FilterError(NO_STDOUT)
    to_dir = out.endswith(os.sep) or os.path.isdir(out)
    out = os.path.abspath(out)
    _tuples(expr, 1, 262144) if expr else None
    if not to_dir and (format_for_path(out) != "pcap" or compression_for_path(out)):
        raise FilterError(f"{shown}: pfilter.dask writes uncompressed pcap outputs (or a directory of them)")
    def opened(i):
        """The i-th input opened here (a damaged one's error naming it as the caller did)."""
        try:
            return open_capture(paths[i], window_bytes=PEEK_WINDOW_BYTES)
        except CaptureFormatError as e:
            raise e.renamed(given[i]) from None

    if not to_dir and len(paths) > 1:
        kinds = {}
        for i, p in enumerate(paths):
            try:
                with opened(i) as cap:
                    kinds.setdefault(file_linktype(cap.linktype), p)
            except CaptureFormatError:
                if i == 0:          # (the output's header is the first input's, as without a cluster)
                    raise
                # a later input that is no capture: its task says so (_damaged)
        if len(kinds) > 1:
            # (the local command's words; it would write pcapng, which the cluster's ring does not)
            (first, _), (other, path) = list(kinds.items())[:2]
            raise FilterError(f"{given[paths.index(path)]}: link type {other} cannot go into {shown}, a pcap file of "
                              f"link type {first}: give a directory instead (one output per input)")
    # an output that is an input (or two of one name), refused before anything is written
    if to_dir:
        targets = directory_targets(out, shown, paths, given, names, hint="give one output file instead")
    else:
        targets = [out] * len(paths)
        hit = overwritten([output_target(out)], paths)
        if hit is not None:
            raise FilterError(f"{shown}: refusing to overwrite the input file {given[paths.index(hit[1])]}")
    client, close = _client(client)
    try:
        work = tempfile.mkdtemp(prefix=".pfilter-parts-", dir=os.path.dirname(os.path.abspath(targets[0])))
    except OSError as e:          # (the output's directory: missing, not writable)
        close()
        raise type(e)(e.errno, e.strerror, shown) from None
    try:
        if range_bytes is None:
            range_bytes = RANGE_BYTES if to_dir else RING_CHUNK_BYTES
        headers = {}                  # (none for an input of a directory that is no capture)
        for i, p in enumerate(paths):
            if to_dir or i == 0:
                try:
                    cap = opened(i)
                except CaptureFormatError:
                    if not to_dir:
                        raise
                    continue
                with cap:
                    snaplen, resolution = output_header(cap, [p] if to_dir else paths)
                    headers[i] = (pcap_file_header(cap.linktype, snaplen, resolution == "ns", cap.linktype_ext),
                                  resolution)
        if not to_dir:
            # one ring at a time on a cluster: a ring takes every worker thread, and two rings
            # started at once could each hold a thread the other's member waits for (until
            # RING_WAIT_SECONDS, then the output is made again from parts)
            from distributed import Lock
            lock = Lock(RING_LOCK, scheduler_rpc=client.scheduler, loop=client.loop)
            tracker = _Progress(progress, [], paths)
            try:
                with lock:
                    direct = _write_ring(client, _cuts(paths, range_bytes), expr, paths, targets[0], *headers[0],
                                         range_bytes, tracker if progress else None)
            finally:
                # its lease-refreshing timer holds it on the client's loop (close() would end
                # the lock for every client)
                timer = getattr(lock, "refresh_callback", None)
                if timer is not None:
                    timer.stop()
            if direct is not None:
                tracker.finished()
                return _total(direct, paths)
        tasks = _plan(client, paths, range_bytes)
        parts = [os.path.join(work, f"{k:06d}.pcap") for k in range(len(tasks))]
        resolutions = [headers.get(t[0] if to_dir else 0, (None, None))[1] for t in tasks]
        futures = _submit(client, tasks, expr, parts, resolutions)
        tracker = _Progress(progress, tasks, paths)
        if not to_dir:
            # one output: each part is joined as soon as it and those before it are done (up to
            # a damaged input: then the parts are joined below, as far as the run goes)
            streamed = _stream(futures, tasks, parts, targets[0], headers[0][0], paths, on_damage is None, tracker)
            if streamed is not None:
                return _kept(streamed, tasks, paths, *_damaged(streamed, tasks, given, on_damage))
        results = _gather_parts(client, tasks, expr, parts, resolutions, futures, tracker)
        keep, err = _damaged(results, tasks, given, on_damage)
        # join the parts in input order (their own pcap headers left out)
        for i in (range(keep) if to_dir else [0]):
            if i not in headers:
                continue
            header = headers[i][0]
            mine = [k for k, t in enumerate(tasks) if t[0] < keep and (not to_dir or t[0] == i)]
            # (every output was checked against every input above, by inode: here each would
            # stat every input again, 2.25 million stats for a directory of 1,500)
            _write_joined(AtomicFile(targets[i], protect=paths if not to_dir else ()), header, mine, parts)
        return _kept(results, tasks, paths, keep, err)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        close()


class _SharedOutput:
    """pfilter's atomic output with a temporary file that has a name (next to the target), so
    that the workers can open it and write their ranges into it."""

    def __new__(cls, target, protect):
        from .capture.files import AtomicFile

        class Named(AtomicFile):
            def _unnamed(self):
                return -1
        out = Named(target, protect=protect)
        out.shared_path = None if getattr(out, "named", None) is None else os.path.join(
            os.path.dirname(os.path.abspath(out.target)), out.named)
        return out


# One output from classic pcap inputs: the ring's chunks (input bytes, one range each). Each
# chunk's offset costs a message through the scheduler (a ms or so) on the path from one
# chunk's write to the next; a member holds a chunk's matches as runs of input offsets (16
# bytes a run) until it writes them.
RING_CHUNK_BYTES = 64 << 20
# How long a ring member waits for an offset (a chunk takes well under a second) before the
# client starts over through part files.
RING_WAIT_SECONDS = 60.0
# The name of the cluster-wide lock that lets one ring run at a time (filter_files).
RING_LOCK = "pfilter-ring"
# Members that all run on one host share their turns through a mapped file (_shared_ring_member:
# a chunk's turn is handed on in microseconds, so chunks are as small as a local pass's and each
# is written straight from its mapping); members on several hosts pass offsets by
# distributed.Queue (_ring_member: a message through the scheduler per chunk).
RING_SHARED = True
# How often (seconds) the client looks at a running ring: its progress on one host (_watching),
# a member's worker that left the cluster (_ring_parts).
RING_PROGRESS_SECONDS = 0.25


def _here(addresses):
    """Whether the worker addresses are all of this host (a loopback address, or one of its
    own): a process-shared lock in a file they map is then this process's to take too."""
    import socket
    from distributed.comm import get_address_host
    own = {"localhost", "127.0.0.1", "::1", socket.gethostname()}
    try:
        own.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return all(get_address_host(a) in own for a in addresses)


def _one_host(addresses):
    """Whether the worker addresses are all on one host."""
    from distributed.comm import get_address_host
    return len({get_address_host(a) for a in addresses}) == 1


def _members(client, n):
    """The worker addresses of a ring of at most n members: one per worker thread."""
    info = client.scheduler_info(n_workers=-1)["workers"] if n else {}
    addresses = [a for a, w in sorted(info.items()) for _ in range(max(1, w.get("nthreads", 1)))]
    # the workers' threads taken in turn: a ring of two on two workers spans both
    order = sorted(range(len(addresses)), key=lambda i: addresses[:i].count(addresses[i]))
    return [addresses[i] for i in order][:n]


def _busy(client, addresses):
    """Whether any of the workers runs or holds tasks (another client's: a ring runs alone, see
    RING_LOCK): then a ring member there might not start for a while, and the others would wait
    for its turns up to RING_WAIT_SECONDS before the output is made from parts anyway."""
    held = client.processing()           # (all of them: a worker that has left is no key)
    return any(held.get(a) for a in set(addresses))


def _cuts(paths, range_bytes):
    """The ring's tasks [(input number, path, (cut, next cut or None))]: each input cut every
    range_bytes without reading it (the members find each range's first record after its cut,
    and the client checks that the range before ended there)."""
    return [(i, p, (a, b if b < size else None)) for i, p in enumerate(paths)
            for size in [os.path.getsize(p)] for a in range(24, max(size, 25), range_bytes)
            for b in [a + range_bytes]]


def _drop(futures, dst):
    """A ring that raised: its tasks cancelled, its output dropped."""
    for f in futures:
        f.cancel()
    dst.abort()


def _write_shared_ring(client, members, expr, paths, dst, header, range_bytes, progress=None):
    """_write_ring for members on one host (_shared_ring_member): the results per input, or None
    (the output dropped) when the ring did not finish. progress: a _Progress, told of the
    bytes the members' walks have reached (_watching)."""
    import tempfile
    from .capture import _fastcopy
    fd, ring_path = tempfile.mkstemp(prefix=".pfilter-ring-", dir=os.path.dirname(dst.shared_path))
    futures = []
    try:
        import mmap
        from .capture.fastpath import ring_bytes, total_size
        size = ring_bytes(_fastcopy, len(paths))
        os.ftruncate(fd, size)
        ring = mmap.mmap(fd, size)
        try:
            _fastcopy.ring_init(ring, len(paths), len(header))
            ring.flush()
        finally:
            ring.close()
        dst.write(header)
        # at most every input's records: allocated at once (where that pays), cut on commit
        dst.preallocate(total_size(paths), _fastcopy.preallocate)
        w = len(members)
        futures = [client.submit(_shared_ring_member, paths, expr, m, w, ring_path, dst.shared_path, len(header),
                                 RING_WAIT_SECONDS, range_bytes, workers=[address], allow_other_workers=False,
                                 pure=False)
                   for m, address in enumerate(members)]
        parts = _ring_parts(client, futures, members, _watching(fd, paths, progress))
        if parts is None and _here(members):
            # the members still waiting for the turns of one that left stop now, not after
            # RING_WAIT_SECONDS (their workers are then free for the parts)
            with mmap.mmap(fd, 0) as ring:
                _fastcopy.ring_cancel(ring, len(paths))
        if parts is None or any(p is None for p in parts):
            dst.abort()
            return None
        results = []
        for k in range(len(paths)):
            mine = [p[0][k] for p in parts]
            # every chunk judged and written: the last member to end saw them all
            if max(r["chunks_done"] for r in mine) != max(r["chunks"] for r in mine) or not mine[0]["chunks"]:
                dst.abort()
                return None
            results.append(max(mine, key=lambda r: r["chunks_done"]))
        size = max(p[1] for p in parts)       # (commit cuts the file to it)
    except BaseException:
        _drop(futures, dst)
        raise
    finally:
        os.close(fd)
        os.unlink(ring_path)
    dst.commit(size)
    return results


def _watching(fd, paths, progress):
    """A tick for _ring_parts that tells progress (a _Progress) the bytes the members' walks have
    reached, as the turns' file `fd` (a block per input) tells them (the members themselves report
    to no client while they run); None without progress."""
    if progress is None:
        return None
    import mmap
    from .capture import _fastcopy

    def tick():
        ring = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        try:
            progress.reached(sum(_fastcopy.ring_done(ring, len(paths))))
        finally:
            ring.close()
    return tick


def _ring_parts(client, futures, members, tick=None):
    """The results of a ring's member tasks (futures, the i-th bound to worker members[i]), a
    member's error raised; None, the tasks cancelled, when a member's worker left the cluster
    before its result came: its task may run on that worker only, and a worker that comes back
    (a nanny's restart) has another address, so it would wait for ever; the others give up on
    its turns within RING_WAIT_SECONDS, and the client makes the output from parts. tick: called
    every RING_PROGRESS_SECONDS while the members run."""
    from distributed import wait
    while True:
        try:
            wait(futures, timeout=RING_PROGRESS_SECONDS)
        except TimeoutError:
            if tick is not None:
                tick()
            present = client.processing()          # (every worker of the cluster: a key each)
            if all(f.done() or a in present for f, a in zip(futures, members)):
                continue
        else:
            try:
                return [f.result(timeout=RING_WAIT_SECONDS) for f in futures]
            except TimeoutError:        # (a member's worker left between its end and its result)
                pass
        for f in futures:
            f.cancel()
        return None


def _write_ring(client, tasks, expr, paths, target, header, resolution, range_bytes=RING_CHUNK_BYTES,
                progress=None):
    """One output from classic pcap inputs of its timestamp resolution, written in place by a
    ring of tasks, one per worker thread, each taking every W-th chunk (_ring_member): the
    workers filter at the same time, as the threads of a local pass do, and each match is
    written into the output once. The results, or None (nothing written) when that does not apply: an input off
    the fast path, another resolution, no worker or a busy one, a range the fast path gave up on or whose
    successor's guessed start it did not reach, a member that did not run in time. progress: a
    _Progress told of the members' bytes as they go, or None."""
    import uuid
    from distributed import Queue
    from .capture import _fastcopy
    from .capture.fastpath import _peek, total_size
    for p in set(paths):
        h = _peek(p)
        if h is None or h.ts_resolution != resolution:
            return None
    n = len(tasks)
    members = _members(client, n)
    if not members or _busy(client, members):
        return None
    dst = _SharedOutput(target, paths)
    if dst.shared_path is None:              # written in place (a device): not for this
        dst.abort()
        return None
    if RING_SHARED and _one_host(members):
        return _write_shared_ring(client, members, expr, paths, dst, header, range_bytes, progress)
    chunks = [(k, path, rng) for k, (_i, path, rng) in enumerate(tasks)]
    w = min(len(members), len(chunks))
    names = [f"pfilter-ring-{uuid.uuid4().hex}" for _ in range(w)]
    queues = [Queue(name, client=client) for name in names] if w > 1 else []    # held until all are done
    futures, topic = [], None
    try:
        topic = _follow(client, progress)
        dst.write(header)
        dst.preallocate(total_size(paths), _fastcopy.preallocate)
        futures = [client.submit(_ring_member, chunks, expr, list(range(m, len(chunks), w)), names,
                                 dst.shared_path, len(header), RING_WAIT_SECONDS, topic, workers=[address],
                                 allow_other_workers=False, pure=False)
                   for m, address in enumerate(members[:w])]
        parts = _ring_parts(client, futures, members[:w])
        if parts is None:
            dst.abort()
            return None
        results = [None] * n
        for part in parts:
            for j, r in (part or ({}, None))[0].items():
                results[j] = r
        size = max((part[1] for part in parts if part and part[1] is not None), default=None)
        if any(r is None for r in results) or not all(_joins(tasks, results, k) for k in range(n)):
            dst.abort()
            return None
    except BaseException:
        _drop(futures, dst)
        raise
    finally:
        for q in queues:
            q.close()
        if topic is not None:
            client.unsubscribe_topic(topic)
    dst.commit(size)
    return results


def _follow(client, progress):
    """A new event topic whose events (a chunk's input bytes, from _ring_member) are added up
    and told to progress (a _Progress); None without it. (An event is sent through the
    scheduler before its member's result, so all have come once the results have.)"""
    if progress is None:
        return None
    import uuid
    topic = f"pfilter-ring-progress-{uuid.uuid4().hex}"
    tally = [0]

    def seen(event):
        tally[0] += event[1]
        progress.reached(tally[0])
    client.subscribe_topic(topic, seen)
    return topic


def _stream(futures, tasks, parts, target, header, paths, stop_at_damage, progress):
    """Join the parts into target in order while later tasks still run; the results, or None
    (nothing written) when a range needs redoing (then _gather_parts does it) or
    (stop_at_damage) an input was damaged. progress: a _Progress, told of each part joined."""
    from .capture.files import AtomicFile
    dst = AtomicFile(target, protect=paths)
    results = []

    def joins(k):
        _done([futures[k]])
        results.append(futures[k].result())
        progress.ended(k)
        return (results[-1] is not None and _joins(tasks, results, k)
                and not (stop_at_damage and results[-1]["damage"] is not None))
    return results if _write_joined(dst, header, range(len(futures)), parts, joins) else None


def _write_joined(dst, header, ks, parts, before_each=None):
    """Write header, then the parts ks in order (those that exist), into the AtomicFile dst and
    name it: True. before_each(k) returning False first drops dst: False."""
    try:
        dst.write(header)
        fd = dst.fileno()
        for k in ks:
            if before_each is not None and not before_each(k):
                dst.abort()
                return False
            if os.path.exists(parts[k]):
                _append(fd, parts[k])
    except BaseException:
        dst.abort()
        raise
    dst.commit()
    return True


def _append(fd, part):
    """Copy a part after its 24-byte header to fd (at its position)."""
    with open(part, "rb") as f:
        _copy(f.fileno(), fd, 24, os.fstat(f.fileno()).st_size - 24, None, part)


def _classify_file(path, rules, options):
    """One input's classification, on a worker; a damaged input's error is returned (its
    `partial`: the packets before the damage), not raised, so that the client can put the
    inputs before it in front. Its RuleLinkTypeWarnings are not shown there (a worker's
    standard error is no user's): the result's `inapplicable` carries them back."""
    import warnings

    import pfilter
    from .classification import RuleLinkTypeWarning
    from .errors import CaptureFormatError
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuleLinkTypeWarning)
        try:
            return pfilter.classify(path, rules, **options)
        except CaptureFormatError as err:
            return err


def _classify_files(paths, rules, options):
    """On a worker: _classify_file of each path, in order."""
    return [_classify_file(p, rules, options) for p in paths]


@_as_given
def classify(paths, rules, client=None, **options):
    """pfilter.classify over several captures, a task per input or per few consecutive small
    ones (_grouped): a Classification whose
    matrix rows are the inputs' packets in the order given and whose counts are the sums, as
    pfilter.classify(paths, rules) gives (options: its keyword arguments, except split). A rules
    file is read here and its rules sent to the workers (they need no copy of it). A damaged
    input raises its CaptureFormatError, as pfilter.classify does: its `partial` is the
    Classification of the inputs before it and of its packets before the damage (on_damage: as
    pfilter.classify's, the error passed to it and the next inputs kept). progress: as
    pfilter.classify's (True: a bar), told of each input as its task ends (the third argument
    of a callable is None)."""
    from ._progress import progress_callback
    from .errors import CaptureFormatError
    if "split" in options or "unmatched" in options:
        raise FilterError("pfilter.dask.classify does not write split files")
    if not isinstance(paths, (str, bytes, os.PathLike)) and not paths:
        import pfilter
        return pfilter.classify([], rules, **options)       # (no input, no task: as locally)
    given = _names(paths)
    paths = _paths(paths)
    if isinstance(rules, (str, bytes, os.PathLike)):
        # a rules file is read here: the rules travel, and a worker on another machine needs no copy
        from .classification.rules import parse_rules
        rules = dict(parse_rules(os.fsdecode(rules)))
    wanted = options.pop("progress", None)
    on_damage = options.pop("on_damage", None)
    tracker = _Progress(wanted, [(i, p, None) for i, p in enumerate(paths)], paths)
    tracker.report, close_progress = progress_callback(wanted, tracker.total)
    client, close = _client(client)
    try:
        # consecutive inputs a task (_grouped, as count's and filter_files' whole inputs): a task
        # an input made a directory of 1,000 small captures 8 times slower than the local call
        shares = []
        for a, b in _grouped(client, len(paths)):
            group, fetched = client.submit(_classify_files, paths[a:b], rules, options, pure=False), []
            shares.extend(_Share(group, m - a, fetched) for m in range(a, b))
        tracker.watch(shares)
        results = _gathered(client, shares)
    finally:
        close_progress()
        close()
    kept = []
    for i, r in enumerate(results):
        if isinstance(r, CaptureFormatError):
            err = r.renamed(given[i])
            if on_damage is not None:       # (said, and the next input's classification kept)
                on_damage(err)
                kept += [(r.partial, given[i])] if r.partial is not None else []
                continue
            before = [k for k, _ in kept] + ([r.partial] if r.partial is not None else [])
            err.partial = _joined(before, given[:i + 1]) if before else None
            _warn_inapplicable(err.partial)
            raise err
        kept.append((r, given[i]))
    joined = _joined([k for k, _ in kept], [n for _, n in kept])
    _warn_inapplicable(joined)
    return joined


def _warn_inapplicable(result):
    """A RuleLinkTypeWarning here for each rule that had no meaning on a link type of the
    inputs, as pfilter.classify warns (the workers' own warnings stay on the workers)."""
    if result is None:
        return
    import warnings
    from .classification.rules import RuleLinkTypeWarning, caller_stacklevel, inapplicable_message
    for item in result.inapplicable:
        warnings.warn(RuleLinkTypeWarning(inapplicable_message(*item)), stacklevel=caller_stacklevel())


def _joined(results, names):
    """One Classification of several inputs' (in order): matrices joined, counts summed."""
    import numpy as np
    from .classification import Classification
    first = results[0]

    def cat(name):
        parts = [getattr(r, name) for r in results]
        return None if any(p is None for p in parts) else np.concatenate(parts)
    res = Classification(first.rules, first.expressions, cat("matrix"), first.packed,
                         sum(r.counts for r in results), sum(r.bytes for r in results),
                         sum(r.packets for r in results), sum(r.total_bytes for r in results),
                         sum(r.matched for r in results), sum(r.matched_bytes for r in results),
                         cat("wirelen"), cat("timestamps"), first.order, first.default)
    seen = []
    for r in results:
        for item in r.inapplicable:
            if item not in seen:
                seen.append(item)
    res.inapplicable = seen
    res.source = list(names)
    return res
