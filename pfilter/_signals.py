"""Interruptions and closed pipes, decided once for the library and the command.

- `Interrupted(signum)`: a KeyboardInterrupt that names its signal (SIGINT, SIGTERM, SIGHUP), so
  `except KeyboardInterrupt` catches all three; `exit_status(exc)` is 128 + the signal number
  (130 for Ctrl-C), as a shell reports a process killed by it.
- `interruptible(signals)`: while active (main thread only), those signals raise Interrupted,
  except inside `deferred()` blocks, where one is remembered and raised as the block ends. The
  writers defer while they put records out and while they commit a file, so an interruption always
  lands between whole records and never between "file linked" and "temporary name removed".
  Handlers a program installed itself are left alone.
- A closed output pipe (`pfilter -r x -w - | tcpdump -r - -c1`): no message and
  `BROKEN_PIPE_STATUS` (0, as `tcpdump -w -` exits there, measured with tcpdump 4.99.3), and
  `silence_stdout()`, so that nothing more is written to the closed pipe (the interpreter's final
  flush would complain).

Imports the standard library only: the signal module's C core (_signal), the signal module
itself (and with it enum) only to name a signal, so that a run never interrupted does without it.
"""
import _signal as signal
import os
import sys

#: exit status after the output pipe was closed by its reader: tcpdump -w - exits 0 there
BROKEN_PIPE_STATUS = 0
#: the signals the command turns into "keep what was written, say so, exit 128 + signum"
TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal (SIGINT, SIGTERM or SIGHUP)."""

    def __init__(self, signum=signal.SIGINT):
        super().__init__(_name(signum))
        self.signum = int(signum)


def signal_name(exc):
    """'SIGINT', 'SIGTERM', ... for an interruption (a plain KeyboardInterrupt is SIGINT)."""
    return _name(getattr(exc, "signum", signal.SIGINT))


#: the names of TERMINATING, known without importing the signal module: a second signal that
#: lands while the handler of the first imports it would leave that import half done (and the
#: run ended by an AttributeError instead of keeping what was written)
_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def _name(signum):
    name = _NAMES.get(int(signum))
    if name is not None:
        return name
    import signal as named
    return named.Signals(signum).name


def exit_status(exc):
    """128 + the signal number of an interruption (130 for Ctrl-C)."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


_depth = 0          # deferred() blocks currently open
_pending = None     # signal number that arrived inside one


def _handler(signum, _frame):
    global _pending
    if _depth:
        if _pending is None:
            _pending = signum
        return
    raise Interrupted(signum)


class deferred:
    """Context manager: a signal handled by interruptible() waits until the block ends."""

    __slots__ = ()

    def __enter__(self):
        global _depth
        _depth += 1
        return self

    def __exit__(self, exc_type, exc, tb):
        global _depth, _pending
        _depth -= 1
        if _depth == 0 and _pending is not None and exc_type is None:
            signum, _pending = _pending, None
            raise Interrupted(signum)
        return False


class interruptible:
    """Context manager: `signals` raise Interrupted (deferred inside deferred() blocks) while it
    is active. Only in the main thread, and only for signals whose handler is still Python's
    default (SIG_DFL, or default_int_handler for SIGINT); restored on exit."""

    def __init__(self, signals=TERMINATING):
        self.signals = tuple(signals)
        self._saved = []

    def __enter__(self):
        for signum in self.signals:        # (signal.signal refuses other threads than the main one)
            try:
                current = signal.getsignal(signum)
                if current in (signal.SIG_DFL, signal.default_int_handler):
                    signal.signal(signum, _handler)
                    self._saved.append((signum, current))
            except (OSError, ValueError):
                pass
        return self

    def __exit__(self, exc_type, exc, tb):
        global _pending
        for signum, previous in reversed(self._saved):
            try:
                signal.signal(signum, previous)
            except (OSError, ValueError):
                pass
        self._saved = []
        if _depth == 0 and _pending is not None:
            signum, _pending = _pending, None
            if exc_type is None:
                raise Interrupted(signum)
        return False


def silence_stdout():
    """Point standard output at /dev/null after its reader went away, so that nothing (not even
    the interpreter's final flush) writes to the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
