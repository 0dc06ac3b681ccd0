"""What `pfilter -r IN -w OUT EXPR` (and --count) imports: the start-up is part of every run's
CPU time (bench/results/latest_scale.md, "start s"), so the fast path loads only what it uses.
With the program in the cache: no compiler, no numpy (the fast path works on bytes), none of
the printing, Dask, native-code or classification modules, and neither typing nor shutil (the
main parser's formatter finds the terminal width itself), nor collections: Cython's typed
memoryviews import it (pfilter._vm has them; pfilter.capture._fastcopy compiles the VM's core
in and has none). Each run is a fresh interpreter; what
it imports is what sys.modules gained after the interpreter's own start.
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pfilter import cli

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample.pcap"

#: never imported by a fast-path run whose program is cached
NOT_ON_THE_FAST_PATH = ("numpy", "pfilter.compiler.driver", "pfilter.compiler.parser", "pfilter.compiler.lexer",
                        "pfilter.compiler.ast", "pfilter.compiler.gencode", "pfilter.optimizer", "pfilter.program",
                        "pfilter.display", "pfilter.dask", "dask", "distributed", "pfilter.native", "llvmlite",
                        "pfilter.classification", "pfilter.capture.filterfile", "typing", "shutil",
                        "pfilter._vm", "collections")

RUN = """
import json, sys
before = set(sys.modules)
from pfilter import cli
status = cli.main(sys.argv[1:])
print(json.dumps([status, sorted(set(sys.modules) - before)]))
"""


def _run(args, cache):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    env.pop("PFILTER_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", RUN, "--quiet", *args], env=env, capture_output=True, text=True,
                         check=True).stdout
    status, imported = json.loads(out.splitlines()[-1])
    assert status == 0
    return set(imported)


@pytest.mark.parametrize("mode", ["write", "count"])
def test_fast_path_with_a_cached_program_imports_no_compiler(tmp_path, mode):
    outs = [tmp_path / f"out{i}.pcap" for i in range(2)]
    runs = []
    for out in outs:
        tail = ["-w", str(out)] if mode == "write" else ["--count"]
        runs.append(_run(["-j", "1", "-r", str(SAMPLE), *tail, "ip and tcp port 80"], tmp_path / "cache"))
    miss, hit = runs
    assert "pfilter.compiler.driver" in miss            # the first run compiled ...
    assert "pfilter.capture.fastpath" in hit            # ... the second took the fast path ...
    assert not hit & set(NOT_ON_THE_FAST_PATH), sorted(hit & set(NOT_ON_THE_FAST_PATH))   # ... from the cache
    if mode == "write":
        assert outs[0].stat().st_size > 24 and outs[0].read_bytes() == outs[1].read_bytes()


@pytest.mark.parametrize("columns", [None, "50", "300"])
def test_main_parser_formats_as_argparse_does(monkeypatch, columns):
    """The formatter that skips shutil gives argparse's width: the same --help and usage."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    ours = cli.build_parser()
    stock = cli.build_parser()
    stock.formatter_class = argparse.RawDescriptionHelpFormatter
    assert ours.format_help() == stock.format_help()
    assert ours.format_usage() == stock.format_usage()
    usage = ours.format_usage()
    assert usage.startswith("usage: pfilter [-h]") and all(f"\n       pfilter {name} " in usage
                                                            for name in cli.SUBCOMMANDS)


QUICK = """
import atexit, os, sys
handlers = atexit._ncallbacks()
if sys.argv[1] == "handler":
    atexit.register(lambda: print("handler ran", flush=True))
real_exit = os._exit
def spy(status):
    print("quick exit", status, flush=True)
    real_exit(status)
os._exit = spy
print("handlers before", handlers, flush=True)
sys.argv[1:2] = []
from pfilter import cli
sys.exit(cli.main())
"""


@pytest.mark.parametrize("handler", [False, True])
def test_a_fast_path_run_ends_without_finalization_unless_an_exit_handler_waits(tmp_path, handler):
    """The command ends with os._exit after a fast-path run (no finalization to pay for), with
    its output flushed; an exit handler registered by someone else still runs (no quick exit)."""
    out = tmp_path / "out.pcap"
    runs = []
    for args in (["-w", str(out)], ["--count"]):
        proc = subprocess.run([sys.executable, "-c", QUICK, "handler" if handler else "-", "--quiet", "-r",
                               str(SAMPLE), *args, "tcp"], env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)),
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        runs.append(proc.stdout.splitlines())
    written, counted = runs
    quick = not handler and written[0] == "handlers before 0"
    assert ("quick exit 0" in written) == quick and ("quick exit 0" in counted) == quick
    assert ("handler ran" in written) == handler and ("handler ran" in counted) == handler
    count = [line for line in counted if line.endswith(" packets")]
    assert len(count) == 1 and int(count[0].split()[0]) > 0          # the --count line got out
    assert out.stat().st_size > 24 and out.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")


@pytest.mark.parametrize("argv", [
    ["--quiet", "-j", "1", "-r", "in.pcap", "-w", "out.pcap", "ip and tcp port 80"],
    ["-r", "in.pcap", "tcp", "port", "80"],
    ["tcp", "-r", "in.pcap", "port", "80", "-w", "out.pcap"],         # words around the options
    ["port", "80", "-r", "a.pcap", "and", "tcp", "-r", "b.pcap", "--count", "or", "udp"],
    ["-r", "in.pcap", "--", "-1", "+", "2", "=", "1"],
    ["-r", "in.pcap", "--count"],
    ["--dedup=5", "-dd", "-y", "EN10MB", "vlan", "and", "ip"],
])
def test_arguments_parse_as_intermixed_parsing_does(argv):
    assert vars(cli.parse_args(cli.build_parser(), argv)) == vars(cli.build_parser().parse_intermixed_args(argv))


def test_arguments_refused_as_intermixed_parsing_refuses():
    for argv in (["-r"], ["tcp", "-c", "many", "port", "80"], ["-j", "0", "-r", "x"]):
        with pytest.raises(cli._UsageError) as ours:
            cli.parse_args(cli.build_parser(), argv)
        with pytest.raises(cli._UsageError) as theirs:
            cli.build_parser().parse_intermixed_args(argv)
        assert str(ours.value) == str(theirs.value)


def test_count_with_standard_output_closed_ends_as_tcpdump_does(tmp_path):
    """`--count` with standard output closed: tcpdump's line is lost and it exits 0; so does pfilter."""
    import reference as ref

    def closed(cmd):          # run with file descriptor 1 closed
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1),
                              env=dict(os.environ, XDG_CACHE_HOME=str(tmp_path)))

    theirs = closed([ref.tcpdump(), "-r", str(SAMPLE), "--count", "tcp"])
    ours = closed([sys.executable, "-m", "pfilter", "-r", str(SAMPLE), "--count", "tcp"])
    assert ours.returncode == theirs.returncode == 0
    assert b"internal error" not in ours.stderr and b"Traceback" not in ours.stderr
