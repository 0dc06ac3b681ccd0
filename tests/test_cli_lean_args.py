"""pfilter.cli.lean_args: the common command lines read without building the argparse parser give
the very namespace the parser gives (every destination, every default), and every other command
line is left to the parser (None), so its rules and error messages stay the only ones."""
import subprocess
import sys

import pytest

from pfilter import cli

LEAN = [
    ["-r", "in.pcap", "-w", "out.pcap", "ip", "and", "tcp", "port", "80"],
    ["-r", "in.pcap", "--count", "tcp"],
    ["-j", "2", "-r", "in.pcap", "--count", "tcp"],
    ["-j2", "-r", "in.pcap", "--count", "tcp"],
    ["--workers", "1", "-r", "in.pcap", "-w", "out.pcap", "vlan and ip"],
    ["tcp", "-r", "in.pcap", "port", "80", "-w", "o.pcap"],          # words between the options
    ["--quiet", "-n", "--no-progress", "-r", "a.pcap", "-r", "b.pcap", "-w", "o.pcap"],
    ["-r", "in.pcap"],
    ["-r", "in.pcap", "-j", "3", "-j", "04", "udp"],                   # the last -j stands
    ["-r", "in.pcap", ""],
    [],
    ["-r", "in.pcap", "--after", "1700000000.5", "--before", "2023-11-14 22:13", "-w", "o.pcap", "tcp"],
    ["--before", "1700000001", "-r", "in.pcap", "--count"],
]

NOT_LEAN = [
    ["-r", "-", "-w", "out.pcap"],              # a value that starts with '-'
    ["-rin.pcap", "tcp"],                        # attached value
    ["--workers=2", "-r", "in.pcap"],
    ["-r", "in.pcap", "-w", "a.pcap", "-w", "b.pcap"],
    ["-r", "in.pcap", "-j", "0"],
    ["-r", "in.pcap", "-j0"],
    ["-r", "in.pcap", "-jx"],
    ["-r", "in.pcap", "-j", "two"],
    ["-r", "in.pcap", "-j", "\u0662"],          # a digit, not ASCII
    ["-r", "in.pcap", "-j"],
    ["-r", "in.pcap", "-c", "10", "tcp"],
    ["-r", "in.pcap", "--", "tcp"],
    ["-r", "in.pcap", "-w", "out.pcap", "--dedup"],
    ["-d", "tcp"],
    ["--help"],
    ["-r", "in.pcap", "-w", ""],
    ["-r", "in.pcap", "less", "-1"],
    ["-r", "in.pcap", "--after", "-5", "--count"],   # (a value that starts with '-')
    ["-r", "in.pcap", "--after", "1", "--after", "2"],
    ["-r", "in.pcap", "--after=1", "--count"],
]


@pytest.mark.parametrize("argv", LEAN, ids=" ".join)
def test_lean_args_give_the_parsers_namespace(argv):
    lean = cli.lean_args(argv)
    assert lean is not None
    assert vars(lean) == vars(cli.parse_args(cli.build_parser(), cli.bare_dedup(argv)))


@pytest.mark.parametrize("argv", NOT_LEAN, ids=" ".join)
def test_other_command_lines_are_left_to_the_parser(argv):
    assert cli.lean_args(argv) is None


def test_the_defaults_are_the_parsers():
    assert cli.lean_defaults() == vars(cli.parse_args(cli.build_parser(), []))


def test_a_lean_run_imports_no_argument_parser(tmp_path):
    """The common run (a cached program, the fast path) imports neither argparse nor re nor enum."""
    import pfilter
    src = tmp_path / "in.pcap"
    pfilter.PacketBatch.from_packets([bytes(60)], linktype=1)   # (the package imports fine)
    src.write_bytes(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    # (what the interpreter's site had imported before is not pfilter's doing)
    code = ("import sys; before = set(sys.modules); from pfilter.cli import _main;"
            "status = _main(['--quiet', '-r', sys.argv[1], '--count', 'tcp']); new = set(sys.modules) - before;"
            "print(status, *(m in new for m in ('argparse', 're', 'enum')))")
    for _ in range(2):                      # the second run finds the program in the cache
        out = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-4:] == ["0", "False", "False", "False"], out.stdout + out.stderr
