"""The `pfilter` command on hostile or awkward input and surroundings: -F files that never end,
hold NUL bytes, are not UTF-8 or start with a byte-order mark; a compiled-program cache that is
bounded, follows XDG_CACHE_HOME and survives damage; --help and the man page (built from the
argument parser) naming the sub-commands; unknown link-type names; Ctrl-C and a closed standard
output in every command (one line or none, never a traceback).
"""
import os
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import pfilter
import reference as ref
from pfilter import _signals, cli
from pfilter.compiler import cache
from pfilter.linktypes import ALIASES, DLT, linktype_number

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.pcap"


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("PFILTER_NO_CACHE", raising=False)


def run(capsys, *argv):
    status = cli.main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return status, out, err


def command(*argv, timeout=60, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.update(kw.pop("env", {}))
    return subprocess.run([sys.executable, "-m", "pfilter", *map(str, argv)], capture_output=True,
                          text=True, env=env, timeout=timeout, **kw)


# ----------------------------------------------------------------------------- -F files

def test_filter_file_from_dev_zero_is_refused_in_one_line_without_reading_on():
    done = command("-F", "/dev/zero", "-d")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == ["pfilter: /dev/zero: filter file larger than 8 MiB"]


@pytest.mark.parametrize("content, message", [
    (b"tcp\0port 80", "filter file is not text (NUL byte at offset 3)"),
    (b"tcp port \xe98\n", "filter file is not UTF-8 text (byte 0xe9 at offset 9)"),
])
def test_filter_file_that_is_not_text_is_one_line(tmp_path, capsys, content, message):
    f = tmp_path / "f.txt"
    f.write_bytes(content)
    status, out, err = run(capsys, "-F", f, "-d")
    assert status == 1 and out == "" and err == f"pfilter: {f}: {message}\n"


def test_filter_file_with_a_byte_order_mark_compiles_as_without(tmp_path, capsys):
    f = tmp_path / "f.txt"
    f.write_bytes(b"\xef\xbb\xbfip and tcp port 80 # web\n")
    status, out, _ = run(capsys, "-F", f, "-O", "-d")
    assert status == 0 and out == ref.tcpdump_dump("ip and tcp port 80", "EN10MB", "d", optimize=False)


def test_filter_file_over_the_limit_is_refused_and_at_the_limit_read(tmp_path, capsys, monkeypatch):
    from pfilter import _textfile
    f = tmp_path / "f.txt"
    f.write_text("tcp\n" + "#" * 95 + "\n")
    monkeypatch.setattr(_textfile, "MAX_TEXT_FILE_BYTES", 99)
    status, _, err = run(capsys, "-F", f, "-d")
    assert status == 1 and err == f"pfilter: {f}: filter file larger than 99 bytes\n"
    monkeypatch.setattr(_textfile, "MAX_TEXT_FILE_BYTES", 100)
    status, out, _ = run(capsys, "-F", f, "-d")
    assert status == 0 and out == ref.tcpdump_dump("tcp", "EN10MB", "d", optimize=True)


def test_filter_file_that_is_missing_or_a_directory_is_one_line(tmp_path, capsys):
    for path, reason in ((tmp_path / "nope", "No such file or directory"), (tmp_path, "Is a directory")):
        status, _, err = run(capsys, "-F", path, "-d")
        assert status == 1 and err == f"pfilter: {path}: {reason}\n"


# ----------------------------------------------------------------------------- program cache

def cache_entries(tmp_path):
    return sorted((tmp_path / "cache" / "pfilter" / "programs").rglob("*.txt"))


def test_cache_stays_bounded_keeping_the_recently_used(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_MAX_ENTRIES", 20)
    monkeypatch.setattr(cache, "CACHE_PRUNE_EVERY", 1)
    cache.cached_program("tcp port 1")
    sizes = []
    for i in range(2, 80):
        cache.cached_program(f"tcp port {i}")
        tuples, _rejects, prog = cache.cached_program("tcp port 1")     # used again: stays
        assert prog is None                                         # a hit
        sizes.append(len(cache_entries(tmp_path)))
    assert max(sizes) <= 20 and min(sizes[40:]) >= 15
    # the entries kept are the most recent ones, and the one used all along
    assert cache.cached_program("tcp port 79")[2] is None
    assert cache.cached_program("tcp port 2")[2] is not None
    assert tuples == pfilter.compile("tcp port 1").to_tuples()


def test_cache_is_bounded_in_bytes_too(tmp_path):
    directory = tmp_path / "c"
    for i in range(10):
        (directory / f"{i:02x}").mkdir(parents=True)
        (directory / f"{i:02x}" / f"e{i}.txt").write_bytes(b"x" * 1000)
        os.utime(directory / f"{i:02x}" / f"e{i}.txt", (1_000_000 + i, 1_000_000 + i))
    assert cache.prune_cache(str(directory), max_entries=100, max_bytes=4000) == 7
    assert sorted(p.name for p in directory.rglob("*.txt")) == ["e7.txt", "e8.txt", "e9.txt"]


def test_cache_prunes_temporary_files_of_killed_runs_but_not_of_running_ones(tmp_path):
    sub = tmp_path / "c" / "ab"
    sub.mkdir(parents=True)
    old, new = sub / "x.txt.1.aa.tmp", sub / "y.txt.2.bb.tmp"
    old.write_text("partial")
    new.write_text("partial")
    os.utime(old, (time.time() - 2 * cache.CACHE_STALE_TMP_SECONDS,) * 2)
    assert cache.prune_cache(str(tmp_path / "c")) == 1
    assert not old.exists() and new.exists()


def test_a_cache_hit_never_lists_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "CACHE_PRUNE_EVERY", 1)
    cache.cached_program("udp")
    monkeypatch.setattr(cache, "prune_cache", lambda *a, **k: pytest.fail("pruned on a hit"))
    (entry,) = cache_entries(tmp_path)
    os.utime(entry, (1_000_000, 1_000_000))
    assert cache.cached_program("udp")[2] is None
    assert entry.stat().st_mtime > 1_000_000          # marked as recently used


def test_cache_follows_xdg_cache_home_and_ignores_a_relative_one(tmp_path, monkeypatch):
    assert cache._cache_dir() == str(tmp_path / "cache" / "pfilter" / "programs")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache._cache_dir() == str(tmp_path / "home" / ".cache" / "pfilter" / "programs")
    monkeypatch.setenv("PFILTER_NO_CACHE", "1")
    assert cache._cache_dir() is None


def damage(entry, how):
    entry.unlink()
    if how == "garbage":
        entry.write_bytes(b"\xff\xfe garbage \0\n1 2 3\n")
    elif how == "wrong program":
        entry.write_text("key\nok\n6 0 0 1\n")
    elif how == "invalid program":
        lines = entry.with_suffix(".bak").read_text().split("\n")
        entry.write_text("\n".join(lines[:2] + ["21 200 200 0"] + lines[2:]))
    elif how == "valid program of another port":      # (a bad sync, an edit: its CRC says so)
        lines = entry.with_suffix(".bak").read_text().split("\n")
        assert any(line.endswith(" 443") for line in lines[2:])
        entry.write_text("\n".join(lines[:2] + [line[:-4] + " 444" if line.endswith(" 443") else line
                                                for line in lines[2:]]))
    elif how == "fifo":
        os.mkfifo(entry)
    elif how == "directory":
        entry.mkdir()


@pytest.mark.parametrize("how", ["garbage", "wrong program", "invalid program", "valid program of another port",
                                 "fifo", "directory"])
def test_a_damaged_cache_entry_is_a_miss(tmp_path, how):
    out = tmp_path / "o.pcap"
    assert command("--quiet", "-r", SAMPLE, "-w", out, "tcp port 443",
                   env={"XDG_CACHE_HOME": str(tmp_path / "cache")}).returncode == 0
    (entry,) = cache_entries(tmp_path)
    shutil.copy(entry, entry.with_suffix(".bak"))
    damage(entry, how)
    want = subprocess.run([ref.tcpdump(), "-r", str(SAMPLE), "-w", "-", "tcp port 443"], capture_output=True).stdout
    done = command("--quiet", "-r", SAMPLE, "-w", out, "tcp port 443", env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
                   timeout=30)
    assert done.returncode == 0 and done.stderr == "" and out.read_bytes() == want


def test_an_unusable_cache_directory_never_breaks_a_run(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    status, out, err = run(capsys, "-d", "ip and tcp port 80")
    assert status == 0 and err == "" and out == ref.tcpdump_dump("ip and tcp port 80", "EN10MB", "d", optimize=True)
    assert blocker.read_text() == "not a directory"


# ----------------------------------------------------------------------------- help, man page, names

def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in cli.SUBCOMMANDS:
        assert f"\n       pfilter {name} " in out.split("\n\n")[0]       # in the usage
        assert f"\n  pfilter {name} " in "\n" + out.split("commands:\n", 1)[1]    # in the commands section
    assert cli.main(["classify", "--help"]) == 0
    assert "usage: pfilter classify" in capsys.readouterr().out


def test_help_and_man_page_name_nothing_outside_the_repository(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    cli.main(["classify", "--help"])
    text = capsys.readouterr().out + (ROOT / "man" / "pfilter.1").read_text()
    from pfilter import _progress, _textfile, classification, display, linktypes
    from pfilter.classification import plan, result, rules, run
    for module in (cli, classification, plan, result, rules, run, display, linktypes, _progress, _textfile):
        text += module.__doc__ or ""
    assert "../shared" not in text and "shared/" not in text


def test_committed_man_page_is_what_the_script_generates_now():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_man.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_man_page_renders_without_warnings():
    page = ROOT / "man" / "pfilter.1"
    if shutil.which("groff"):
        done = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True)
        assert done.returncode == 0 and done.stderr == ""
    if not shutil.which("man"):
        pytest.skip("man is not installed")
    done = subprocess.run(["man", "-l", str(page)], capture_output=True, text=True,
                          env=dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80"))
    assert done.returncode == 0, done.stderr
    for word in ["SYNOPSIS", "pfilter classify", "-R RULES", "EXIT STATUS", "XDG_CACHE_HOME"]:
        assert word in done.stdout.replace("\u2010", "-")


def test_an_unknown_link_type_name_lists_the_known_names_in_one_line(capsys):
    status, _, err = run(capsys, "-y", "EN10M", "-d", "tcp")
    lines = err.splitlines()
    assert status == 1 and len(lines) == 1
    assert lines[0].startswith("pfilter: unknown data link type 'EN10M' (did you mean EN10MB")
    listed = lines[0].split("known names: ")[1].split(" and ")[0].split(", ")
    assert {"EN10MB", "LINUX_SLL", "RAW", "NULL", "IEEE802_11_RADIO"} <= set(listed)
    for name in listed:                 # every name listed is accepted
        assert linktype_number(name) == DLT[name]
    more = int(lines[0].split(" and ")[-1].split()[0])
    assert more == len(set(DLT) | set(ALIASES)) - len(listed)
    status, _, err = run(capsys, "-y", "NOSUCHTHING", "-d", "tcp")
    assert status == 1 and "did you mean" not in err and "known names: NULL, EN10MB" in err


# ----------------------------------------------------------------------------- signals and pipes

def pcap_stream_then_wait(argv):
    """The command reading a capture from a pipe that stays open: it is mid-run when signalled."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "pfilter", *argv], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdin.write(SAMPLE.read_bytes()[:200_000])
    proc.stdin.flush()
    return proc


@pytest.mark.parametrize("argv, signum", [
    (["-r", "-", "tcp"], signal.SIGINT),
    (["--count", "-r", "-", "tcp"], signal.SIGINT),
    (["classify", "-r", "-", "-R", "RULES"], signal.SIGINT),
    (["classify", "-r", "-", "-R", "RULES"], signal.SIGTERM),
])
def test_ctrl_c_is_one_line_and_status_130_in_every_command(tmp_path, argv, signum):
    rules = tmp_path / "r.rules"
    rules.write_text("web: tcp\n")
    proc = pcap_stream_then_wait([str(rules) if a == "RULES" else a for a in argv])
    time.sleep(3)                       # started and blocked reading the pipe
    proc.send_signal(signum)
    try:
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    lines = [line for line in err.decode().splitlines() if not line.startswith("reading from file")]
    assert proc.returncode == 128 + signum, err
    assert len(lines) == 1 and lines[0].startswith(f"pfilter: interrupted by {signal.Signals(signum).name}")
    assert b"Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["-r", SAMPLE],
    ["-r", SAMPLE, "-r", SAMPLE, "tcp"],
    ["classify", "-r", SAMPLE, "-R", "RULES"],
])
def test_a_closed_standard_output_ends_quietly(tmp_path, argv):
    rules = tmp_path / "r.rules"
    rules.write_text("".join(f"rule{i}: tcp port {i}\n" for i in range(300)))
    read_end, write_end = os.pipe()
    os.close(read_end)                  # the reader is gone before the first write
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        done = subprocess.run([sys.executable, "-m", "pfilter", *[str(rules) if a == "RULES" else str(a) for a in argv]],
                              stdout=write_end, stderr=subprocess.PIPE, env=env, timeout=120)
    finally:
        os.close(write_end)
    err = [line for line in done.stderr.decode().splitlines() if not line.startswith("reading from file")]
    assert done.returncode == _signals.BROKEN_PIPE_STATUS and err == [], done.stderr


@pytest.mark.parametrize("argv, line", [
    (["-j", "abc"], "pfilter: argument -j/--workers: invalid number 'abc'"),
    (["-c", "abc"], "pfilter: argument -c: invalid int value: 'abc'"),
    (["--backend", "x"], "pfilter: argument --backend: invalid choice: 'x' (choose from 'vm', 'native', 'auto')"),
    (["--snaplen", "0"], None),
])
def test_a_bad_value_of_a_known_option_is_one_line_and_an_unknown_option_shows_the_usage(capsys, argv, line):
    """As tcpdump ('tcpdump: invalid packet count abc'): a known option given a bad value is one
    line, status 1; an unknown option prints the usage before its line."""
    status, out, err = run(capsys, "-r", SAMPLE, *argv, "tcp")
    assert status == 1 and out == "" and err.count("\n") == 1 and "usage:" not in err, err
    assert line is None or err == line + "\n"
    status, out, err = run(capsys, "-r", SAMPLE, "--no-such-option", "tcp")
    assert status == 1 and err.startswith("usage: pfilter") and err.endswith(
        "pfilter: unrecognized arguments: --no-such-option\n")


def _closing(*fds):
    def close():
        for fd in fds:
            os.close(fd)
    return close


def test_closed_or_full_standard_streams(tmp_path):
    """Started with a standard stream closed (cron jobs, daemons: `2>&-`) or standard error on a
    full device: the work is done and its status kept, as tcpdump's; what goes to a closed
    standard output is lost, as tcpdump loses it (status 0), never written into a file that took
    the descriptor's number; a closed standard input read (`-r -`) is one line, status 1."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), XDG_CACHE_HOME=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "pfilter", "-r", str(SAMPLE)]
    want = tmp_path / "want.pcap"
    assert subprocess.run(cmd + ["-w", str(want), "tcp"], env=env, capture_output=True).returncode == 0
    for how in (dict(preexec_fn=_closing(2)), dict(stderr=open("/dev/full", "w"))):
        out = tmp_path / "out.pcap"
        r = subprocess.run(cmd + ["-w", str(out), "tcp"], env=env, stdout=subprocess.PIPE, **how)
        assert r.returncode == 0 and out.read_bytes() == want.read_bytes()
        out.unlink()
        r = subprocess.run(cmd + ["--count", "tcp"], env=env, stdout=subprocess.PIPE, **how)
        assert r.returncode == 0 and r.stdout.split()[1:] == [b"packets"]
    for argv in (["-w", "-", "tcp"], ["-c", "2", "tcp"], ["-c", "2", "-e", "tcp"], ["--count", "tcp"]):
        r = subprocess.run(cmd + argv, env=env, stderr=subprocess.PIPE, text=True, preexec_fn=_closing(1),
                           cwd=tmp_path)
        assert r.returncode == 0 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    out, two = tmp_path / "out.pcap", tmp_path / "two.pcap"
    pfilter.filter_file(str(SAMPLE), str(two), "tcp", count=2)
    r = subprocess.run(cmd + ["-c", "2", "-w", str(out), "tcp"], env=env, stderr=subprocess.PIPE, preexec_fn=_closing(1))
    assert r.returncode == 0 and out.read_bytes() == two.read_bytes()     # (the file is not on descriptor 1)
    r = subprocess.run([sys.executable, "-m", "pfilter", "-r", "-", "--count", "tcp"], env=env, stderr=subprocess.PIPE,
                       text=True, preexec_fn=_closing(0))
    assert r.returncode == 1 and r.stderr == "pfilter: standard input: Bad file descriptor\n"


def test_an_empty_file_name_is_named_in_the_error(capsys, tmp_path):
    """-r '' and -w '': one line that shows the empty name (tcpdump: ': No such file ...')."""
    for argv in (["-r", ""], ["-r", SAMPLE, "-w", ""]):
        status, out, err = run(capsys, *argv, "tcp")
        assert status == 1 and err.splitlines()[-1] == "pfilter: '': No such file or directory"


@pytest.mark.parametrize("raised, line, status", [
    (RuntimeError("can't start new thread"),
     "pfilter: cannot start a thread: out of memory or over the limit on processes", 1),
    (RuntimeError("first line\nsecond line"), "pfilter: internal error: RuntimeError: first line", 3),
    (KeyError("x"), "pfilter: internal error: KeyError: 'x'", 3),
])
def test_resource_failures_and_internal_errors_are_one_line(monkeypatch, capsys, raised, line, status):
    from pfilter import cli

    def fail(_args):
        raise raised
    monkeypatch.setattr(cli, "_run", fail)
    assert cli.main(["-r", str(SAMPLE), "tcp"]) == status
    assert capsys.readouterr().err == line + "\n"


def test_a_module_that_will_not_load_names_its_loader_s_reason(monkeypatch, capsys):
    """Under a memory limit numpy's import fails with pages of advice around its loader's
    one-line reason (the exception's cause): that reason is the line."""
    from pfilter import cli

    def fail(_args):
        try:
            raise ImportError("libx.so: failed to map segment from shared object")
        except ImportError as inner:
            raise ImportError("\n\nIMPORTANT: PLEASE READ THIS\n\nmany lines") from inner
    monkeypatch.setattr(cli, "_run", fail)
    assert cli.main(["-r", str(SAMPLE), "tcp"]) == 1
    assert capsys.readouterr().err == ("pfilter: cannot load a module it needs: libx.so: failed to map segment "
                                       "from shared object\n")
