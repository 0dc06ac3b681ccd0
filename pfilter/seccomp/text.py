"""Seccomp filters as text: disassembly in libseccomp's format (scmp_bpf_disasm) and in a
readable one that `assemble` reads back. Imports pfilter.errors and pfilter.seccomp's arch and
actions modules.

The readable style names what the filter reads and compares (`A = args[1] >> 32`,
`if (A == read) goto 0007`, `return ERRNO(13)`): system call names follow the architecture the
filter has checked on the path to the comparison (a forward data flow over `A = arch` and its
`==` tests, `contexts` below), so both directions resolve names the same way.
"""
from __future__ import annotations

import re

from ..errors import InvalidProgramError
from .actions import Action, parse as parse_action
from .arch import ARCHES, BY_TOKEN, TOKEN_NAMES, X32_SYSCALL_BIT, arch as get_arch, syscall_number, token_syscall_name

# ---------------------------------------------------------------- libseccomp's format

_CLASS_LD, _CLASS_LDX, _CLASS_ST, _CLASS_STX, _CLASS_ALU, _CLASS_JMP, _CLASS_RET, _CLASS_MISC = range(8)
_ALU_NAMES = {0x00: "add", 0x10: "sub", 0x20: "mul", 0x30: "div", 0x40: "or", 0x50: "and", 0x60: "lsh",
              0x70: "rsh", 0x80: "neg", 0x90: "mod", 0xA0: "xor"}
_JMP_NAMES = {0x00: "jmp", 0x10: "jeq", 0x20: "jgt", 0x30: "jge", 0x40: "jset"}


def _libseccomp_op(code: int) -> str:
    """scmp_bpf_disasm's bpf_decode_op(): the mnemonic of a full 16-bit opcode, or ???."""
    cls, low = code & 0x07, code & 0xFF
    if code > 0xFF:
        return "???"
    if cls == _CLASS_LD and code & 0xE0 <= 0xA0 and code & 0x18 != 0x18:
        return {0x00: "ld", 0x08: "ldh", 0x10: "ldb"}[code & 0x18]
    if cls == _CLASS_LDX and code & 0xE0 <= 0xA0 and code & 0x18 != 0x18:
        return "ldx"
    if low == 0x02:
        return "st"
    if low == 0x03:
        return "stx"
    if cls == _CLASS_ALU and code & 0xF0 in _ALU_NAMES:
        return _ALU_NAMES[code & 0xF0]
    if cls == _CLASS_JMP and code & 0xF0 in _JMP_NAMES:
        return _JMP_NAMES[code & 0xF0]
    if low in (0x06, 0x0E, 0x16):
        return "ret"
    if low == 0x07:
        return "tax"
    if low == 0x87:
        return "txa"
    return "???"


def _libseccomp_args(code: int, jt: int, jf: int, k: int, line: int) -> str:
    """scmp_bpf_disasm's bpf_decode_args()."""
    cls = code & 0x07
    if cls in (_CLASS_LD, _CLASS_LDX):
        return {0x20: f"$data[{k}]", 0x60: f"$temp[{k}]", 0x00: f"{k}", 0x40: f"$data[X + {k}]",
                0x80: "len($data)", 0xA0: f"4 * $data[{k}] & 0x0f"}.get(code & 0xE0, "")
    if cls in (_CLASS_ST, _CLASS_STX):
        return f"$temp[{k}]"
    if cls == _CLASS_ALU:
        return f"0x{k:08x}" if code & 0x08 == 0 and code & 0xF0 in (0x40, 0x50) else f"{k}"
    if cls == _CLASS_JMP:
        if code & 0xF0 == 0x00:
            return f"{(line + 1 + k) & 0xFFFFFFFF:04d}"
        return f"{k:<4d} true:{line + 1 + jt:04d} false:{line + 1 + jf:04d}"
    if cls == _CLASS_RET:
        if code & 0x18 == 0x10:
            return "$acc"
        return _libseccomp_action(k) if code & 0x08 == 0 else "???"
    return ""


#: the actions scmp_bpf_disasm's bpf_decode_action() names (libseccomp 2.5.4), data shown for
#: the first two only; any other value (USER_NOTIF among them) is printed as 0x%.8x
_LIBSECCOMP_WITH_DATA = {0x00050000: "ERRNO", 0x7FF00000: "TRACE"}
_LIBSECCOMP_NAMES = {0x80000000: "KILL_PROCESS", 0x00000000: "KILL", 0x00030000: "TRAP", 0x7FFC0000: "LOG",
                     0x7FFF0000: "ALLOW"}


def _libseccomp_action(k: int) -> str:
    """scmp_bpf_disasm's bpf_decode_action()."""
    act, data = k & 0xFFFF0000, k & 0xFFFF
    if act in _LIBSECCOMP_WITH_DATA:
        return f"{_LIBSECCOMP_WITH_DATA[act]}({data})"
    return _LIBSECCOMP_NAMES.get(act, f"0x{k:08x}")


def disasm_libseccomp(insns) -> str:
    """Text identical to libseccomp's `scmp_bpf_disasm` for (code, jt, jf, k) tuples."""
    out = [" line  OP   JT   JF   K\n", "=================================\n"]
    for line, (code, jt, jf, k) in enumerate(insns):
        out.append(f" {line:04d}: 0x{code:02x} 0x{jt:02x} 0x{jf:02x} 0x{k:08x}   "
                   f"{_libseccomp_op(code):<3s} {_libseccomp_args(code, jt, jf, k, line)}\n")
    return "".join(out)


# ---------------------------------------------------------------- the data flow both directions share

def field_name(offset: int) -> str | None:
    """The name of the 32-bit word at `offset` of struct seccomp_data (little-endian halves)."""
    if offset == 0:
        return "nr"
    if offset == 4:
        return "arch"
    if offset in (8, 12):
        return "instruction_pointer" + (" >> 32" if offset == 12 else "")
    if 16 <= offset < 64 and offset % 4 == 0:
        i, hi = divmod(offset - 16, 8)
        return f"args[{i}]" + (" >> 32" if hi else "")
    return None


def contexts(insns, token: int | None = None) -> list[tuple[str | None, int | None]]:
    """Per instruction, what A holds on entry (a field_name, or None: computed or unknown) and the
    audit token the paths to it have checked (or `token`, or None). Jumps go forward only."""
    n = len(insns)
    incoming: list[list[tuple[str | None, int | None]]] = [[] for _ in range(n)]
    incoming[0].append((None, token))
    result = []
    for i, (code, jt, jf, k) in enumerate(insns):
        states = incoming[i]
        if not states:
            state = (None, token)
        else:
            src = states[0][0] if all(s[0] == states[0][0] for s in states) else None
            tok = states[0][1] if all(s[1] == states[0][1] for s in states) else None
            state = (src, tok)
        result.append(state)
        src, tok = state
        cls = code & 0x07
        if cls == _CLASS_JMP:
            if code == 0x05:
                targets = [(i + 1 + k, state)]
            else:
                t_state = state
                if code == 0x15 and src == "arch":
                    t_state = (src, k)
                targets = [(i + 1 + jt, t_state), (i + 1 + jf, state)]
            for t, s in targets:
                if t < n:
                    incoming[t].append(s)
            continue
        if cls == _CLASS_RET:
            continue
        if code == 0x20:
            src = field_name(k)
        elif cls == _CLASS_LD or cls == _CLASS_ALU or code == 0x87:
            src = None
        if i + 1 < n:
            incoming[i + 1].append((src, tok))
    return result


# ---------------------------------------------------------------- the readable style

_ALU_OPS = {0x00: "+=", 0x10: "-=", 0x20: "*=", 0x30: "/=", 0x40: "|=", 0x50: "&=", 0x60: "<<=", 0x70: ">>=",
            0x90: "%=", 0xA0: "^="}
_JMP_OPS = {0x10: ("==", "!="), 0x20: (">", "<="), 0x30: (">=", "<"), 0x40: ("&", "!&")}


def _operand(k: int, src: str | None, tok: int | None) -> str:
    if src == "arch" and k in TOKEN_NAMES:
        return TOKEN_NAMES[k]
    if src == "nr":
        name = token_syscall_name(tok, k) if tok is not None else None
        return name if name is not None else str(k)
    return f"0x{k:x}"


def _cond(op: str, rhs: str) -> str:
    if op == "&":
        return f"(A & {rhs})"
    if op == "!&":
        return f"(!(A & {rhs}))"
    return f"(A {op} {rhs})"


def disasm_readable(insns, arch=None) -> str:
    """The readable style: one `NNNN: statement` line per instruction."""
    tok = get_arch(arch).token if arch is not None else None
    ctx = contexts(insns, tok)
    lines = []
    for i, ((code, jt, jf, k), (src, t)) in enumerate(zip(insns, ctx)):
        extra = " ".join(f"{name}={v:#x}" if name == "k" else f"{name}={v}"
                         for name, v in zip(("jt", "jf", "k"), (jt, jf, k)) if v and name in _ignored(code))
        lines.append(f"{i:04d}: {_statement(i, code, jt, jf, k, src, t)}" + (f" [{extra}]" if extra else ""))
    return "\n".join(lines) + "\n"


def _ignored(code: int) -> tuple[str, ...]:
    """The fields an instruction does not use (shown as `[jt=1 k=0x5]` when not 0, so the text
    keeps every bit of the program)."""
    cls = code & 0x07
    k_unused = (code in (0x80, 0x81, 0x84, 0x07, 0x87, 0x16)
                or (cls in (_CLASS_ALU, _CLASS_JMP) and code & 0x08 and code != 0x05))
    jumps = cls == _CLASS_JMP and code != 0x05
    return (() if jumps else ("jt", "jf")) + (("k",) if k_unused else ())


def _statement(i, code, jt, jf, k, src, tok):
    cls = code & 0x07
    if code == 0x20:
        return f"A = {field_name(k) or f'data[{k}]'}"
    simple = {0x80: "A = len", 0x81: "X = len", 0x00: f"A = 0x{k:x}", 0x01: f"X = 0x{k:x}",
              0x60: f"A = M[{k}]", 0x61: f"X = M[{k}]", 0x02: f"M[{k}] = A", 0x03: f"M[{k}] = X",
              0x07: "X = A", 0x87: "A = X", 0x84: "A = -A", 0x16: "return A",
              0x05: f"goto {(i + 1 + k) & 0xFFFFFFFF:04d}"}
    if code in simple:
        return simple[code]
    if code == 0x06:
        return f"return {Action(k)}"
    if cls == _CLASS_ALU:
        return f"A {_ALU_OPS[code & 0xF0]} " + ("X" if code & 0x08 else f"0x{k:x}")
    if cls == _CLASS_JMP:
        op, neg = _JMP_OPS[code & 0xF0]
        # names for equality tests only (`A >= 0x40000000` is a range, not a system call)
        rhs = "X" if code & 0x08 else _operand(k, src if code == 0x15 else None, tok)
        t, f = i + 1 + jt, i + 1 + jf
        if jf == 0:
            return f"if {_cond(op, rhs)} goto {t:04d}"
        if jt == 0:
            return f"if {_cond(neg, rhs)} goto {f:04d}"
        return f"if {_cond(op, rhs)} goto {t:04d} else goto {f:04d}"
    raise InvalidProgramError(f"opcode 0x{code:x} has no readable form", i)


# ---------------------------------------------------------------- assembling the readable style

_NUM = r"(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z_][A-Za-z0-9_]*)?"
_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\s*:\s*(.*)", re.ASCII)
_FIELDS = {field_name(o): o for o in range(0, 64, 4)}
_A_FROM = re.compile(r"A\s*=\s*(.+)", re.ASCII)
_X_FROM = re.compile(r"X\s*=\s*(.+)", re.ASCII)
_MEM_ST = re.compile(r"M\[\s*(" + _NUM + r")\s*\]\s*=\s*([AX])", re.ASCII)
_MEM = re.compile(r"M\[\s*(" + _NUM + r")\s*\]", re.ASCII)
_ALU = re.compile(r"A\s*(\+=|-=|\*=|/=|\|=|&=|<<=|>>=|%=|\^=)\s*(X|" + _NUM + r")", re.ASCII)
_EXTRA = re.compile(r"\s*\[((?:jt|jf|k)=\w+(?:\s+(?:jt|jf|k)=\w+)*)\]\s*$", re.ASCII)
_GOTO = re.compile(r"goto\s+(\w+)", re.ASCII)
_IF = re.compile(r"if\s*\(\s*(?:(!)\s*\(\s*A\s*&\s*(\S+?)\s*\)|A\s*(==|!=|>=|<=|>|<|&)\s*(\S+?))\s*\)\s*"
                 r"goto\s+(\w+)(?:\s+else\s+goto\s+(\w+))?", re.ASCII)
_RETURN = re.compile(r"return\s+(.+)", re.ASCII)
_JCODE = {"==": (0x15, False), "!=": (0x15, True), ">": (0x25, False), "<=": (0x25, True),
          ">=": (0x35, False), "<": (0x35, True), "&": (0x45, False)}
_ALU_CODE = {v: k for k, v in _ALU_OPS.items()}


def _number(text: str) -> int | None:
    if re.fullmatch(_NUM, text, re.ASCII):
        v = int(text, 0)
        if v > 0xFFFFFFFF:
            return None
        return v
    return None


def assemble_insns(text: str, arch=None) -> list[tuple[int, int, int, int]]:
    """(code, jt, jf, k) tuples from the readable style. Labels are `name:` or the `NNNN:` line
    prefixes; goto targets name them. Names in comparisons: architectures (x86_64, i386,
    aarch64, arm, riscv64) and system calls of the architecture checked on the path (`x32:name`
    for an x32 call; `arch` names the one to assume where no check precedes)."""
    if not isinstance(text, str):
        raise InvalidProgramError(f"program text must be a str, not {type(text).__name__}")
    stmts: list[tuple[int, str]] = []       # (line number, statement)
    labels: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        while line:
            m = _LABEL.match(line)
            if m is None or m.group(1) in ("A", "X"):
                break
            name = m.group(1).lstrip("0") or "0" if m.group(1).isdigit() else m.group(1)
            if name in labels:
                raise InvalidProgramError(f"line {lineno}: label {m.group(1)!r} defined twice")
            labels[name] = len(stmts)
            line = m.group(2).strip()
        if line:
            stmts.append((lineno, line))
    if not stmts:
        raise InvalidProgramError("empty program text")

    def target(name: str, lineno: int, i: int) -> int:
        key = name.lstrip("0") or "0" if name.isdigit() else name
        if key not in labels:
            raise InvalidProgramError(f"line {lineno}: unknown label {name!r}")
        off = labels[key] - i - 1
        if off < 0:
            raise InvalidProgramError(f"line {lineno}: jump to {name!r} goes backward (seccomp filters jump forward only)")
        return off

    insns: list[list] = []      # [code, jt, jf, k] with k possibly a name (str) to resolve
    for i, (lineno, s) in enumerate(stmts):
        m = _EXTRA.search(s)
        ins = _parse_statement(s[:m.start()] if m else s, lineno, i, target)
        if m:
            for item in m.group(1).split():
                name, _, value = item.partition("=")
                v = _number(value)
                if v is None or name not in _ignored(ins[0]) or (name != "k" and v > 255):
                    raise InvalidProgramError(f"line {lineno}: {item!r} is not an unused field of this instruction")
                ins[("jt", "jf", "k").index(name) + 1] = v
        insns.append(ins)
    # architecture names first (no context needed), then system call names in their context
    for ins in insns:
        if isinstance(ins[3], str) and ins[3].lower() in ARCHES and ins[3].lower() != "x32":
            ins[3] = ARCHES[ins[3].lower()].token
    tok = get_arch(arch).token if arch is not None else None
    ctx = contexts([(c, jt, jf, k if isinstance(k, int) else 0) for c, jt, jf, k in insns], tok)
    for i, ins in enumerate(insns):
        if isinstance(ins[3], str):
            ins[3] = _resolve_syscall(ins[3], ctx[i][1], stmts[i][0])
    return [tuple(ins) for ins in insns]


def _resolve_syscall(name: str, tok: int | None, lineno: int) -> int:
    if ":" in name:
        arch_name, sysname = name.split(":", 1)
        return syscall_number(sysname, arch_name)
    if tok is None or tok not in BY_TOKEN:
        raise InvalidProgramError(f"line {lineno}: system call {name!r} needs a known architecture: "
                                  "check `A = arch` before it, or pass arch=")
    return syscall_number(name, BY_TOKEN[tok][0])


def _parse_statement(s: str, lineno: int, i: int, target) -> list:
    def bad(why="not a statement of the readable style"):
        return InvalidProgramError(f"line {lineno}: {s!r}: {why}")

    def num(text):
        v = _number(text)
        if v is None:
            raise bad(f"{text!r} is not a 32-bit number")
        return v

    m = _IF.fullmatch(s)
    if m:
        negset, setrhs, op, rhs, t, f = m.groups()
        if negset:
            op, rhs, inverted, code = "&", setrhs, True, 0x45
        else:
            code, inverted = _JCODE[op]
        if rhs == "X":
            code |= 0x08
            k = 0
        else:
            k = _number(rhs)
            if k is None:
                if not re.fullmatch(_NAME, rhs, re.ASCII):
                    raise bad(f"{rhs!r} is neither a number nor a name")
                k = rhs
        jt = target(t, lineno, i)
        jf = target(f, lineno, i) if f else 0
        if inverted:
            jt, jf = jf, jt
        if jt > 255 or jf > 255:
            raise bad("a conditional jump reaches at most 255 instructions ahead")
        return [code, jt, jf, k]
    m = _GOTO.fullmatch(s)
    if m:
        return [0x05, 0, 0, target(m.group(1), lineno, i)]
    m = _RETURN.fullmatch(s)
    if m:
        if m.group(1).strip() == "A":
            return [0x16, 0, 0, 0]
        try:
            return [0x06, 0, 0, int(parse_action(m.group(1)))]
        except ValueError as e:
            raise bad(str(e)) from None
    m = _MEM_ST.fullmatch(s)
    if m:
        return [0x02 if m.group(2) == "A" else 0x03, 0, 0, num(m.group(1))]
    m = _ALU.fullmatch(s)
    if m:
        code = 0x04 | _ALU_CODE[m.group(1)]
        return [code | 0x08, 0, 0, 0] if m.group(2) == "X" else [code, 0, 0, num(m.group(2))]
    if re.fullmatch(r"A\s*=\s*-\s*A", s):
        return [0x84, 0, 0, 0]
    for pattern, reg in ((_A_FROM, "A"), (_X_FROM, "X")):
        m = pattern.fullmatch(s)
        if not m:
            continue
        rhs = " ".join(m.group(1).split())
        mm = _MEM.fullmatch(rhs)
        if rhs == "len":
            return [0x80 if reg == "A" else 0x81, 0, 0, 0]
        if mm:
            return [0x60 if reg == "A" else 0x61, 0, 0, num(mm.group(1))]
        if rhs == ("A" if reg == "X" else "X"):
            return [0x07 if reg == "X" else 0x87, 0, 0, 0]
        if reg == "A" and rhs in _FIELDS:
            return [0x20, 0, 0, _FIELDS[rhs]]
        dm = re.fullmatch(r"data\[\s*(" + _NUM + r")\s*\]", rhs, re.ASCII)
        if reg == "A" and dm:
            return [0x20, 0, 0, num(dm.group(1))]
        return [0x00 if reg == "A" else 0x01, 0, 0, num(rhs)]
    raise bad()


__all__ = ["disasm_libseccomp", "disasm_readable", "assemble_insns", "contexts", "field_name", "X32_SYSCALL_BIT"]
