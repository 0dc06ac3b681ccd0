"""Progress bars for long runs: the `progress=` argument of pfilter's file functions and the
command's bar on a terminal. Imports pfilter.errors only, and no numpy (the command's fast path
may use it).

`progress_callback(progress, total)` turns what a caller passes (None/False: nothing, True: a
bar, a callable: itself) into (callback, close). A bar is tqdm's when tqdm is installed, else a
small built-in one on standard error; tqdm stays optional. Callbacks are called as
callback(bytes_done, bytes_total, info) where info is the function's running statistics.
"""
import sys
import time

from .errors import FilterError

#: the built-in bar redraws at most this often (seconds)
REDRAW_SECONDS = 0.1

_SHOWN = []         # the bars on the terminal now (say() writes above the newest)


class ProgressBar:
    """A byte-count progress bar on `file` (default standard error) that disappears when closed
    (as tqdm's leave=False). Call it as bar(bytes_done, bytes_total=None, info=None)."""

    def __init__(self, total, desc="pfilter", file=None):
        self.total = max(0, int(total or 0))
        self.desc = desc
        self.file = sys.stderr if file is None else file
        self.done = 0
        self._tqdm = None
        self._drawn = 0
        self._last = 0.0
        _SHOWN.append(self)
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self._tqdm = tqdm(total=self.total or None, unit="B", unit_scale=True, unit_divisor=1024,
                          file=self.file, leave=False, desc=desc)

    def say(self, line):
        """Write the text `line` (ending in a newline) on the bar's line, the bar drawn again
        below it: a line written while the bar shows would otherwise follow the bar."""
        if self._tqdm is not None:
            self._tqdm.clear()
            self._write(line)
            self._tqdm.refresh()
            return
        drawn, self._drawn = self._drawn, 0
        self._write(("\r" + " " * drawn + "\r" if drawn else "") + line)
        if drawn:
            self._draw()

    def __call__(self, done, total=None, info=None):
        done = max(0, int(done))
        if self.total:
            done = min(done, self.total)
        if self._tqdm is not None:
            self._tqdm.update(max(0, done - self._tqdm.n))
            self.done = done
            return
        self.done = done
        now = time.monotonic()
        if now - self._last >= REDRAW_SECONDS:
            self._last = now
            self._draw()

    def _draw(self):
        if self.total:
            share = self.done / self.total
            width = 30
            fill = int(share * width)
            text = (f"{self.desc}: {100 * share:3.0f}% |{'#' * fill}{'.' * (width - fill)}| "
                    f"{_size(self.done)}/{_size(self.total)}")
        else:
            text = f"{self.desc}: {_size(self.done)}"
        pad = " " * max(0, self._drawn - len(text))
        self._write("\r" + text + pad)
        self._drawn = len(text)

    def _write(self, text):
        try:
            self.file.write(text)
            self.file.flush()
        except (OSError, ValueError):
            pass

    def close(self):
        """Remove the bar from the terminal."""
        if self in _SHOWN:
            _SHOWN.remove(self)
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None
        elif self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def say(line, file=None):
    """Write the text `line` (ending in a newline) to `file` (standard error), above the progress
    bar shown there if there is one."""
    file = sys.stderr if file is None else file
    bar = next((b for b in reversed(_SHOWN) if b.file is file), None)
    if bar is not None:
        bar.say(line)
    else:
        file.write(line)


def _size(n):
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}"


def progress_callback(progress, total, desc="pfilter"):
    """(callback, close) for a `progress=` argument: None or False -> (None, a no-op); True -> a
    ProgressBar over `total` bytes; a callable -> (progress, a no-op); anything else is a
    FilterError."""
    if progress is None or progress is False:
        return None, _nothing
    if progress is True:
        bar = ProgressBar(total, desc)
        return bar, bar.close
    if callable(progress):
        return progress, _nothing
    raise FilterError(f"progress must be True, False, None or a callable, not {type(progress).__name__}")


def _nothing():
    pass
