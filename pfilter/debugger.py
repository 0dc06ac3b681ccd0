"""`pfilter debug`: an interactive stepper for filters, in the spirit of the kernel's bpf_dbg
(tools/bpf/bpf_dbg.c): load a program or an expression and a capture, select a packet, step
through the instructions, set breakpoints, run over the capture, print A, X and M[].

Imports pfilter.errors, pfilter.program, pfilter.trace, pfilter.explain and, when a capture is
loaded, pfilter.open. The program runs on the real VM: a packet's trace (pfilter.trace) is what
the stepper walks, so what it shows is what the VM executed. Line editing and history come from
readline when it is installed and standard input is a terminal (history in $PFILTER_HISTORY,
default ~/.pfilter_history).
"""
from __future__ import annotations

import cmd
import os
import sys
from typing import Any

from .errors import FilterError
from ._argparse import Parser, parse

__all__ = ["Debugger", "cli_main"]

HELP = """commands:
  load expr EXPR        compile a filter expression (for the capture's link type)
  load bpf TEXT         a program as tcpdump -ddd / -dd text or `N,code jt jf k,...`
  load asm FILE         a program in the kernel's bpf_asm syntax
  load pcap FILE        a capture (pcap or pcapng)
  select N              packet N (1 is the first) for step, explain, print
  step [N]              run N instructions (1) of the selected packet
  continue              run to the next breakpoint or the end of the packet
  break [PC]            set a breakpoint at instruction PC (no PC: list them)
  break reset           remove every breakpoint
  run [N]               run over N packets (all) from the first; stops at a breakpoint
  print [A|X|M]         the registers (and scratch memory) at the current step
  disassemble           the -d listing, the next instruction marked with =>
  trace                 every step of the selected packet
  explain               why the expression accepts or rejects the selected packet
  quit                  leave"""


class Debugger(cmd.Cmd):
    prompt = "(pfilter) "
    intro = "pfilter debug: `help` lists the commands"

    def __init__(self, stdin: Any = None, stdout: Any = None) -> None:
        super().__init__(stdin=stdin, stdout=stdout)
        self.use_rawinput = stdin is None
        self.program: Any = None
        self.expression: str | None = None
        self.capture: list[tuple[bytes, int, int]] = []
        self.linktype = 1
        self.selected: int | None = None
        self.trace: Any = None
        self.pos = 0
        self.breakpoints: set[int] = set()
        self.failed = False

    # ------------------------------------------------------------------ plumbing
    def say(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def onecmd(self, line: str) -> bool:
        try:
            return bool(super().onecmd(line))
        except (FilterError, ValueError) as e:
            self.say(f"error: {' '.join(str(e).split())}")
        except OSError as e:
            self.say(f"error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}")
        self.failed = True
        return False

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> bool:
        self.say(f"unknown command {line.split()[0]!r}: `help` lists the commands")
        self.failed = True
        return False

    def do_help(self, arg: str) -> None:
        self.say(HELP)

    def do_quit(self, arg: str) -> bool:
        return True

    do_exit = do_quit

    def do_EOF(self, arg: str) -> bool:
        self.say()
        return True

    # ------------------------------------------------------------------ loading
    def do_load(self, arg: str) -> None:
        what, _, rest = arg.strip().partition(" ")
        rest = rest.strip()
        from .program import Program
        if what == "expr":
            from . import compile as _compile
            self.program = _compile(rest, linktype=self.linktype)
            self.expression = rest
            self.say(f"{len(self.program)} instructions")
        elif what == "bpf":
            self.program = Program.from_text(rest.replace(",", "\n") if rest[:1].isdigit() and "," in rest
                                             and not rest.startswith("{") else rest)
            self.expression = None
            self.say(f"{len(self.program)} instructions")
        elif what == "asm":
            with open(rest) as f:
                self.program = Program.from_asm(f.read())
            self.expression = None
            self.say(f"{len(self.program)} instructions")
        elif what == "pcap":
            from . import open as _open
            from .errors import CaptureFormatError
            pkts = []
            lts = set()
            damage = None
            try:
                with _open(rest) as cap:
                    for batch in cap:
                        for i in range(len(batch)):
                            lt = batch.linktype_of(i)
                            lts.add(lt)
                            pkts.append((batch.packet(i), int(batch.wirelen[i]), lt))
            except CaptureFormatError as e:
                if not pkts:
                    raise           # nothing intact before the damage (or a damaged header): an error
                damage = e          # the packets before the damage are kept, the damage said
            self.capture = pkts
            if lts:
                self.linktype = min(lts)
            if self.expression is not None:
                from . import compile as _compile
                self.program = _compile(self.expression, linktype=self.linktype)
            self.selected = None
            self.trace = None
            self.say(f"{len(pkts)} packets")
            if damage is not None:
                self.say(f"warning: {' '.join(str(damage).split())} (the {len(pkts)} packets before it are loaded)")
        else:
            raise FilterError("load expr EXPR | load bpf TEXT | load asm FILE | load pcap FILE")

    def _need(self, packet: bool = True) -> None:
        if self.program is None:
            raise FilterError("no program: load expr EXPR, load bpf TEXT or load asm FILE first")
        if packet and not self.capture:
            raise FilterError("no capture: load pcap FILE first")

    def _select(self, n: int) -> None:
        self._need()
        if not 1 <= n <= len(self.capture):
            raise FilterError(f"packet numbers run from 1 to {len(self.capture)}")
        pkt, wl, _lt = self.capture[n - 1]
        self.selected = n
        self.trace = self.program.trace(pkt, wl)
        self.pos = 0

    def do_select(self, arg: str) -> None:
        n = _number(arg, "select N: N is a packet number (1 is the first)")
        self._select(n)
        self.say(f"packet {n}: {len(self.capture[n - 1][0])} bytes, {len(self.trace.steps)} steps")

    # ------------------------------------------------------------------ stepping
    def _current(self) -> Any:
        self._need()
        if self.trace is None:
            self._select(1)
        return self.trace

    def _show(self, k: int) -> None:
        self.say(str(self.trace.steps[k]))

    def _finished(self) -> None:
        r = self.trace.result
        self.say(f"-- packet {self.selected}: return {r} ({'accept' if r else 'reject'})")

    def do_step(self, arg: str) -> None:
        t = self._current()
        n = _number(arg, "step [N]: N is how many instructions to run, 1 or more", low=1) if arg.strip() else 1
        if self.pos >= len(t.steps):
            self._finished()
            return
        for _ in range(n):
            if self.pos >= len(t.steps):
                break
            self._show(self.pos)
            self.pos += 1
        if self.pos >= len(t.steps):
            self._finished()

    def do_continue(self, arg: str) -> None:
        t = self._current()
        first = True
        while self.pos < len(t.steps):
            if not first and t.steps[self.pos].pc in self.breakpoints:
                self.say(f"-- breakpoint at {t.steps[self.pos].pc}")
                return
            first = False
            self._show(self.pos)
            self.pos += 1
        self._finished()

    def do_break(self, arg: str) -> None:
        arg = arg.strip()
        if not arg:
            self.say("breakpoints: " + (" ".join(str(b) for b in sorted(self.breakpoints)) or "none"))
        elif arg == "reset":
            self.breakpoints.clear()
        else:
            self._need(packet=False)
            pc = _number(arg, "break [PC | reset]: PC is an instruction number (0 is the first)")
            if not 0 <= pc < len(self.program):
                raise FilterError(f"instructions run from 0 to {len(self.program) - 1}")
            self.breakpoints.add(pc)
            self.say(f"breakpoint at {pc}")

    do_breakpoint = do_break

    def do_run(self, arg: str) -> None:
        self._need()
        n = (_number(arg, "run [N]: N is how many packets to run over, 1 or more", low=1) if arg.strip()
             else len(self.capture))
        matched = 0
        for i in range(1, min(n, len(self.capture)) + 1):
            pkt, wl, _lt = self.capture[i - 1]
            if self.breakpoints:
                t = self.program.trace(pkt, wl)
                for k, s in enumerate(t.steps):
                    if s.pc in self.breakpoints:
                        self.selected, self.trace, self.pos = i, t, k
                        self.say(f"-- breakpoint at {s.pc}, packet {i}")
                        return
            matched += self.program.run(pkt, wl) != 0
        self.say(f"{matched} of {min(n, len(self.capture))} packets matched")

    # ------------------------------------------------------------------ looking
    def do_print(self, arg: str) -> None:
        t = self._current()
        if self.pos < len(t.steps):
            s = t.steps[self.pos]
            a, x = s.a_before, s.x_before
        else:
            a, x = t.steps[-1].a_after, t.steps[-1].x_after
        mem = [0] * 16
        for s in t.steps[:self.pos]:
            if s.mem_write is not None:
                mem[s.mem_write[0]] = s.mem_write[1]
        what = arg.strip().upper() or "AXM"
        if not set(what) <= set("AXM"):
            raise FilterError(f"print [A|X|M]: no register {arg.strip()!r}: A (the accumulator), X (the index) "
                              "and M (scratch memory M[0..15]) can be printed (nothing: all three)")
        if "A" in what:
            self.say(f"A = 0x{a:x} ({a})")
        if "X" in what:
            self.say(f"X = 0x{x:x} ({x})")
        if "M" in what:
            self.say("M[] = " + " ".join(f"{i}:0x{v:x}" for i, v in enumerate(mem)))

    def do_disassemble(self, arg: str) -> None:
        self._need(packet=False)
        nxt = None
        if self.trace is not None and self.pos < len(self.trace.steps):
            nxt = self.trace.steps[self.pos].pc
        for line in self.program.dump("d").splitlines():
            pc = int(line[1:4]) if line.startswith("(") else -1
            mark = "=>" if pc == nxt else ("b " if pc in self.breakpoints else "  ")
            self.say(f"{mark} {line}")

    do_list = do_disassemble

    def do_trace(self, arg: str) -> None:
        t = self._current()
        self.say(str(t).rstrip("\n"))

    def do_explain(self, arg: str) -> None:
        self._current()
        if self.expression is None:
            raise FilterError("explain needs a program loaded as an expression (load expr EXPR)")
        pkt, wl, _lt = self.capture[self.selected - 1]   # type: ignore[operator]
        self.say(str(self.program.explain(pkt, wl)))


def _number(arg: str, usage: str, low: int | None = None) -> int:
    """arg as a whole number (at least `low`), or a FilterError saying what was expected."""
    text = arg.strip()
    try:
        n = int(text)
    except ValueError:
        raise FilterError(f"{usage}, not {text!r}") from None
    if low is not None and n < low:
        raise FilterError(f"{usage}, not {text!r}")
    return n


def _parser() -> Any:
    ap = Parser(prog="pfilter debug",
                description="An interactive stepper for filters in the spirit of the kernel's bpf_dbg: load an "
                            "expression or a program and a capture, select a packet, step, set breakpoints, run, "
                            "print A, X and M[] (`help` inside lists the commands). Commands are read from "
                            "standard input, with line editing and history when it is a terminal.")
    ap.add_argument("-r", dest="read", metavar="FILE", help="load this capture first")
    ap.add_argument("--asm", metavar="FILE", help="load a program in bpf_asm syntax instead of an expression")
    ap.add_argument("expression", nargs="*", metavar="EXPR", help="load this filter expression first")
    return ap


def _history() -> Any:
    """readline with history, when standard input is a terminal: (readline module, path)."""
    if not sys.stdin.isatty():
        return None, None
    try:
        import readline
    except ImportError:
        return None, None
    path = os.environ.get("PFILTER_HISTORY") or os.path.expanduser("~/.pfilter_history")
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    return readline, path


def cli_main(argv: list[str]) -> int:
    """`pfilter debug [-r FILE] [EXPR]`: commands from standard input."""
    args = parse(_parser(), argv)
    if args is None:
        return 1
    if args.asm and args.expression:
        from .cli import _fail
        return _fail("debug: give a program (--asm FILE) or an expression, not both")
    dbg = Debugger(stdin=None if sys.stdin.isatty() else sys.stdin)
    if not sys.stdin.isatty():
        dbg.prompt = ""
        dbg.intro = None
    readline, path = _history()
    if args.read:
        dbg.onecmd(f"load pcap {args.read}")
    if args.asm:
        dbg.onecmd(f"load asm {args.asm}")
    elif args.expression:
        dbg.onecmd("load expr " + " ".join(args.expression))
    if dbg.failed:
        return 1
    try:
        dbg.cmdloop()
    finally:
        if readline is not None:
            try:
                readline.set_history_length(1000)
                readline.write_history_file(path)
            except OSError:
                pass
    sys.stdout.flush()
    return 1 if dbg.failed else 0
