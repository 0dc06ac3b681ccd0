"""`pfilter seccomp disasm|emu|asm|dump`: the seccomp sub-command. Imports pfilter.seccomp,
pfilter.errors and pfilter.cli's helpers (only inside cli_main); registered in pfilter.cli's
SUBCOMMANDS, which runs it under the common handling of Ctrl-C and a closed standard output.

  disasm FILE   a raw filter (struct sock_filter[], `-` for standard input) as text
  emu FILE SYSCALL [ARGS...]   the action the filter returns for one system call
  asm FILE      the readable text (disasm's default style) back to a raw filter (-o OUT)
  dump PID      the filters installed in a running process (ptrace PTRACE_SECCOMP_GET_FILTER;
                needs CAP_SYS_ADMIN and a kernel with CONFIG_CHECKPOINT_RESTORE)
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
    ap.add_argument("-o", dest="output", metavar="OUT", help="asm: write the raw filter to OUT (atomically)")
    return ap


def _read_input(path):
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


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
        if e == errno.EMEDIUMTYPE:
            raise OSError(e, f"process {pid} has no seccomp filter")
        if e == errno.EACCES or e == errno.EPERM:
            raise PermissionError(e, f"{what} on process {pid}: {os.strerror(e)} (needs CAP_SYS_ADMIN)")
        raise OSError(e, f"{what} on process {pid}: {os.strerror(e)}")

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
            sys.stdout.write(S.disasm(S.load(_read_input(args.target)), style=args.style, arch=args.arch))
        elif args.command == "emu":
            arch = args.arch or _HOST_ARCH
            name, *values = args.call
            if len(values) > 6:
                raise FilterError(f"a system call has at most 6 arguments, not {len(values)}")
            call = int(name, 0) if name[:1].isdigit() or name[:1] == "-" else name
            rec = S.record(call, *[_number(v) for v in values], arch=arch)
            print(S.Action(int(S.run(S.load(_read_input(args.target)), rec)[0])))
        elif args.command == "asm":
            text = _read_input(args.target).decode("utf-8", errors="strict")
            raw = S.assemble(text, arch=args.arch).sock_fprog()
            if args.output is None:
                if sys.stdout.isatty():
                    raise FilterError("asm writes a binary filter: give -o OUT (or redirect standard output)")
                sys.stdout.buffer.write(raw)
            else:
                _write_atomic(args.output, raw, args.target)
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


def _write_atomic(path, data, source):
    """Write `data` to `path` through a temporary file in its directory, renamed over it at the
    end; never over the input."""
    import tempfile
    if source != "-" and os.path.exists(path) and os.path.samefile(path, source):
        raise OSError(errno.EINVAL, f"{path}: the output would replace the input")
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pfilter-seccomp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
