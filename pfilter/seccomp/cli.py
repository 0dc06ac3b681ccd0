"""`pfilter seccomp disasm|emu|asm|dump`: the seccomp sub-command. Imports pfilter.seccomp,
pfilter.errors and pfilter.cli's helpers (only inside cli_main); registered in pfilter.cli's
SUBCOMMANDS, which runs it under the common handling of Ctrl-C and a closed standard output.

  disasm FILE   a raw filter (struct sock_filter[], `-` for standard input) as text
  emu FILE SYSCALL [ARGS...]   the action the filter returns for one system call
  asm FILE      the readable text (disasm's default style) back to a raw filter (-o OUT, written
                with pfilter.capture.files' atomic writer; -o - is standard output)
  dump PID      the filters installed in a running process (ptrace PTRACE_SECCOMP_GET_FILTER;
                needs CAP_SYS_ADMIN and a kernel with CONFIG_CHECKPOINT_RESTORE); a process with
                no filter (/proc/PID/status `Seccomp:` 0, or 1 for strict mode) is said so
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import sys

from .._argparse import Parser, UsageError as _UsageError

COMMANDS = ("disasm", "emu", "asm", "dump")
PTRACE_ATTACH, PTRACE_DETACH, PTRACE_SECCOMP_GET_FILTER = 16, 17, 0x420C
_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
              "riscv64": "riscv64", "i686": "i386", "i386": "i386"}.get(platform.machine().lower(), "x86_64")


def _parser():
    ap = Parser(prog="pfilter seccomp",
                description="Read, run and write seccomp filters (classic BPF over struct seccomp_data): "
                            "disasm FILE shows a raw filter (libseccomp's export_bpf format) as text; emu FILE "
                            "SYSCALL [ARGS...] prints the action it returns for one system call; asm FILE turns "
                            "the readable text back into a raw filter; dump PID shows the filters of a running "
                            "process (ptrace, needs CAP_SYS_ADMIN).")
    ap.add_argument("command", choices=COMMANDS, metavar="disasm|emu|asm|dump", help="what to do")
    ap.add_argument("target", metavar="FILE|PID",
                    help="the raw filter (disasm, emu; - for standard input), the text (asm), or a process id (dump)")
    ap.add_argument("call", nargs="*", metavar="SYSCALL ARGS",
                    help="emu: the system call (name or number) and up to 6 arguments (decimal or 0x hex)")
    ap.add_argument("--style", choices=("readable", "libseccomp"), default="readable",
                    help="disasm and dump: the readable style (default; asm reads it back) or scmp_bpf_disasm's")
    ap.add_argument("--arch", default=None, metavar="ARCH",
                    help="x86_64, i386, x32, aarch64, arm or riscv64: emu's record (default: this machine's, "
                         f"{_HOST_ARCH}); for disasm and asm, the system call names to assume before the filter "
                         "checks an architecture")
    ap.add_argument("-o", dest="output", metavar="OUT",
                    help="asm: write the raw filter to OUT (atomically; through a symbolic link, straight "
                         "into a FIFO or device; - for standard output)")
    return ap


def _read_input(path):
    """The text asm reads (all of it)."""
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def _read_filter(path):
    """A raw filter's bytes (at most one more than the longest filter: /dev/zero is refused as
    too long, not read to the end), refused with its name when it is a capture file or too long."""
    import pfilter.seccomp as S
    from ..errors import FilterError
    if path == "-":
        raw = S.read_raw(sys.stdin.buffer)
    else:
        with open(path, "rb") as f:
            raw = S.read_raw(f)
    problem = S.raw_problem(raw)
    if problem is not None:
        raise FilterError(f"{'standard input' if path == '-' else path}: {problem}")
    return raw


def _syscall(text):
    """emu's system call argument: a name (`read`, `x32:read`) or a number (decimal, 0x hex,
    negative)."""
    if text[:1].isdigit() or text[:1] in "-+":
        try:
            return int(text, 0)
        except ValueError:
            raise _UsageError(f"system call {text!r} is neither a name nor a number (decimal or 0x hex)") from None
    return text


def _number(text):
    try:
        v = int(text, 0)
    except ValueError:
        raise _UsageError(f"argument {text!r} is not a number (decimal or 0x hex)") from None
    return v


def _dump(pid, style, arch):
    """The raw filters of process `pid`, most recently installed first."""
    import pfilter.seccomp as S
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]

    def fail(what):
        e = ctypes.get_errno()
        if e in (errno.EMEDIUMTYPE, errno.EINVAL):
            _check_mode(pid)                  # not in filter mode: the kernel says EINVAL
        if e == errno.EMEDIUMTYPE:
            raise OSError(e, f"process {pid} has no seccomp filter")
        if e == errno.EACCES or e == errno.EPERM:
            raise PermissionError(e, f"{what} on process {pid}: {os.strerror(e)} (needs CAP_SYS_ADMIN)")
        raise OSError(e, f"{what} on process {pid}: {os.strerror(e)}")

    _check_mode(pid)
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) == -1:
        fail("ptrace(PTRACE_ATTACH)")
    try:
        os.waitpid(pid, getattr(os, "__WALL", 0x40000000))
        out = []
        index = 0
        while True:
            n = libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(index), None)
            if n == -1:
                if ctypes.get_errno() == errno.ENOENT and index > 0:
                    break
                fail("ptrace(PTRACE_SECCOMP_GET_FILTER)")
            buf = ctypes.create_string_buffer(n * 8)
            if libc.ptrace(PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(index), buf) == -1:
                fail("ptrace(PTRACE_SECCOMP_GET_FILTER)")
            out.append(buf.raw)
            index += 1
    finally:
        libc.ptrace(PTRACE_DETACH, pid, None, None)
    text = []
    for i, raw in enumerate(out):
        text.append(f"# filter {i} of {len(out)} (0 is the most recent): {len(raw) // 8} instructions\n")
        text.append(S.disasm(S.load(raw), style=style, arch=arch))
    return "".join(text)


def _seccomp_mode(pid):
    """The `Seccomp:` field of /proc/PID/status (0 none, 1 strict, 2 filter), or None when it
    cannot be read (no such process, no such field: ptrace then says what is wrong)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Seccomp:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check_mode(pid):
    """Refuse, in words, a process that is not in seccomp filter mode (PTRACE_SECCOMP_GET_FILTER
    would fail with EINVAL: 'Invalid argument')."""
    mode = _seccomp_mode(pid)
    if mode == 0:
        raise OSError(errno.EINVAL, f"process {pid} has no seccomp filter")
    if mode == 1:
        raise OSError(errno.EINVAL, f"process {pid} is in seccomp strict mode: it has no filter to show")


def cli_main(argv):
    """`pfilter seccomp COMMAND ...`; returns the exit status (0 ok, 1 bad input, 2 bad usage)."""
    import pfilter.seccomp as S
    from ..errors import FilterError
    argv = list(argv)
    if argv and argv[0] == "seccomp":
        argv = argv[1:]
    try:
        args = _parser().parse_args(argv)
        if args.command != "emu" and args.call:
            raise _UsageError(f"{args.command} takes one argument, not {1 + len(args.call)}")
        if args.command == "emu" and not args.call:
            raise _UsageError("emu needs a system call: emu FILE SYSCALL [ARGS...]")
        if args.output is not None and args.command != "asm":
            raise _UsageError("-o applies to asm")
        if args.command == "dump":
            try:
                pid = int(args.target)
            except ValueError:
                raise _UsageError(f"dump needs a process id, not {args.target!r}") from None
    except _UsageError as e:
        print(f"pfilter seccomp: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:           # --help
        return e.code if isinstance(e.code, int) else 0
    try:
        if args.command == "disasm":
            sys.stdout.write(S.disasm(S.load(_read_filter(args.target)), style=args.style, arch=args.arch))
        elif args.command == "emu":
            arch = args.arch or _HOST_ARCH
            name, *values = args.call
            if len(values) > 6:
                raise FilterError(f"a system call has at most 6 arguments, not {len(values)}")
            call = _syscall(name)
            rec = S.record(call, *[_number(v) for v in values], arch=arch)
            print(S.Action(int(S.run(S.load(_read_filter(args.target)), rec)[0])))
        elif args.command == "asm":
            text = _read_input(args.target).decode("utf-8", errors="strict")
            raw = S.assemble(text, arch=args.arch).sock_fprog()
            if args.output is None:
                if sys.stdout.isatty():
                    raise FilterError("asm writes a binary filter: give -o OUT (or redirect standard output)")
                sys.stdout.buffer.write(raw)
            elif args.output == "-":
                sys.stdout.flush()
                sys.stdout.buffer.write(raw)
                sys.stdout.buffer.flush()
            else:
                # the project's atomic writer: through a symbolic link, straight into a FIFO or device
                from ..capture.files import write_whole
                write_whole(args.output, raw, protect=[args.target])
        else:
            sys.stdout.write(_dump(pid, args.style, args.arch))
    except _UsageError as e:
        print(f"pfilter seccomp: {e}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as e:
        print(f"pfilter seccomp: {args.target}: not UTF-8 text ({e.reason} at byte {e.start})", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise                         # pfilter.cli.main: a closed standard output ends quietly
    except (FilterError, OSError) as e:
        where = getattr(e, "filename", None)
        msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        msg = " ".join(msg.split())
        print(f"pfilter seccomp: {where + ': ' if where else ''}{msg}", file=sys.stderr)
        return 1
    return 0

