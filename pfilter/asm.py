"""The Linux kernel's `bpf_asm` syntax (tools/bpf/bpf_asm, Documentation/networking/filter.rst),
in and out: `assemble(text)` -> (code, jt, jf, k) tuples, `disassemble(tuples)` -> text that
assembles back to the same tuples.

Imports pfilter.errors and pfilter.opcodes only.

The syntax: one instruction a line, an optional `label:` before it, comments from `;` to the end
of the line or between `/*` and `*/`. Operands: `#k` (immediate; `#len` the packet length;
`proto`, `ifidx`, `vlan_tci`, ... the Linux extensions, with or without `#`), `M[k]`, `[k]`, `[x + k]`, `4*([k]&0xf)`, `x` (or
`%x`), `a` (`ret a`). Conditional jumps name their targets by label: `jeq #k, Ltrue, Lfalse`, or
`jeq #k, Ltrue` (false falls through); `jne`/`jneq`, `jlt` and `jle` are `jeq`, `jge` and `jgt`
with the targets swapped (`jne #k, L` jumps to L when A != k); `ja L`/`jmp L` may also jump back
(libpcap's protochain loop, which pfilter runs under a loop budget). Numbers are decimal, 0x hex,
0 octal or 0b binary, and may be negative.
"""
from __future__ import annotations

import re

from .errors import InvalidProgramError
from .opcodes import SKF_AD_OFF

__all__ = ["assemble", "disassemble"]

_SKF = SKF_AD_OFF & 0xFFFFFFFF
# bpf_asm's extension names (`ld #proto`), by SKF_AD_* offset
_EXT = {"proto": 0, "type": 4, "ifidx": 8, "nla": 12, "nlan": 16, "mark": 20, "queue": 24,
        "hatype": 28, "rxhash": 32, "cpu": 36, "vlan_tci": 44, "vlan_avail": 48, "poff": 52,
        "rand": 56, "vlan_tpid": 60}
_EXT_ALIASES = {"vlan_pr": "vlan_avail", "random": "rand", "ifindex": "ifidx"}
_EXT_NAME = {v: k for k, v in _EXT.items()}

_ALU = {"add": 0x00, "sub": 0x10, "mul": 0x20, "div": 0x30, "or": 0x40, "and": 0x50, "lsh": 0x60,
        "rsh": 0x70, "mod": 0x90, "xor": 0xA0}
_ALU_NAME = {v: k for k, v in _ALU.items()}
# mnemonic -> (jump op, targets swapped)
_JMP = {"jeq": (0x10, False), "jgt": (0x20, False), "jge": (0x30, False), "jset": (0x40, False),
        "jne": (0x10, True), "jneq": (0x10, True), "jlt": (0x30, True), "jle": (0x20, True)}
_JMP_NAME = {0x10: "jeq", 0x20: "jgt", 0x30: "jge", 0x40: "jset"}
_JMP_INVERSE = {0x10: "jne", 0x20: "jle", 0x30: "jlt"}
#: the instructions whose whole opcode names one bpf_asm form ({k}: the operand)
_WHOLE_OPCODE_TEXT = {0x06: "ret #{k}", 0x16: "ret a", 0x02: "st M[{k}]", 0x03: "stx M[{k}]",
                      0x84: "neg", 0x07: "tax", 0x87: "txa"}
_LOAD_SIZE = {"ld": 0x00, "ldh": 0x08, "ldb": 0x10}

_NUM = r"[-+]?(?:0[xX][0-9a-fA-F]+|0[bB][01]+|[0-9]+)"
_LABEL = r"[A-Za-z_.][A-Za-z0-9_.]*"
_LINE = re.compile(rf"\s*(?:({_LABEL})\s*:)?\s*(.*?)\s*$")
_ABS = re.compile(rf"\[\s*({_NUM})\s*\]$")
_IND = re.compile(rf"\[\s*%?[xX]\s*\+\s*({_NUM})\s*\]$")
_MEM = re.compile(rf"[mM]\[\s*({_NUM})\s*\]$")
_IMM = re.compile(rf"#\s*({_NUM})$")
_MSH = re.compile(rf"4\s*\*\s*\(\s*\[\s*({_NUM})\s*\]\s*&\s*0x[fF]\s*\)$")


def _number(text: str, where: str) -> int:
    neg = text.startswith("-")
    body = text.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        v = int(body, 16)
    elif body[:2] in ("0b", "0B"):
        v = int(body[2:], 2)
    elif len(body) > 1 and body.startswith("0"):
        try:
            v = int(body, 8)
        except ValueError:
            raise InvalidProgramError(f"{where}: {text!r} is not an octal number") from None
    else:
        v = int(body, 10)
    v = -v if neg else v
    if not -(1 << 31) <= v <= 0xFFFFFFFF:
        raise InvalidProgramError(f"{where}: {text} does not fit in 32 bits")
    return v & 0xFFFFFFFF


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", lambda m: " " * len(m.group(0).split("\n")[0]) + "\n" * m.group(0).count("\n"),
                  text, flags=re.S)
    return "\n".join(line.split(";", 1)[0] for line in text.splitlines())


def assemble(text: str) -> list[tuple[int, int, int, int]]:
    """bpf_asm source -> (code, jt, jf, k) tuples. InvalidProgramError names the line."""
    if not isinstance(text, str):
        raise InvalidProgramError(f"bpf_asm text must be a str, not {type(text).__name__}")
    items: list[tuple[str, str, str]] = []      # (where, mnemonic, operands)
    labels: dict[str, int] = {}
    for n, raw in enumerate(_strip_comments(text).splitlines(), 1):
        m = _LINE.match(raw)
        assert m is not None
        label, rest = m.group(1), m.group(2)
        where = f"line {n}"
        if label is not None:
            if label in labels:
                raise InvalidProgramError(f"{where}: label {label!r} defined twice")
            labels[label] = len(items)
        if not rest:
            continue
        parts = rest.split(None, 1)
        items.append((where, parts[0].lower(), parts[1].strip() if len(parts) > 1 else ""))
    if not items:
        raise InvalidProgramError("no instructions in the bpf_asm text")
    out = []
    for i, (where, op, arg) in enumerate(items):
        out.append(_one(i, where, op, arg, labels, len(items)))
    return out


def _target(i: int, where: str, name: str, labels: dict[str, int], n: int, wide: bool = False) -> int:
    name = name.strip()
    if name not in labels:
        raise InvalidProgramError(f"{where}: no label {name!r}")
    off = labels[name] - i - 1
    if wide and off < -1:       # a backward `ja` (libpcap's protochain loop), 32-bit offset
        return off & 0xFFFFFFFF
    if off < 0:
        raise InvalidProgramError(f"{where}: label {name!r} is not after the jump (cBPF jumps forward)")
    if labels[name] >= n:
        raise InvalidProgramError(f"{where}: label {name!r} marks no instruction")
    if not wide and off > 255:
        raise InvalidProgramError(f"{where}: label {name!r} is {off} instructions away (a conditional jump reaches 255)")
    return off


def _one(i: int, where: str, op: str, arg: str, labels: dict[str, int], n: int) -> tuple[int, int, int, int]:
    bad = InvalidProgramError(f"{where}: cannot assemble `{op} {arg}`".rstrip("` ") + "`")
    a = arg.replace(" ", "")
    if op in ("ld", "ldh", "ldb", "ldi", "ldx", "ldxi", "ldxb"):
        x = op.startswith("ldx")
        cls = 0x01 if x else 0x00
        size = _LOAD_SIZE.get(op, 0x00)
        m = _IMM.match(a)
        if m and op in ("ld", "ldi", "ldx", "ldxi"):
            return (cls, 0, 0, _number(m.group(1), where))
        if op in ("ldi", "ldxi"):
            raise bad
        if a.lower() in ("#len", "#pktlen", "len") and op in ("ld", "ldx"):
            return (cls | 0x80, 0, 0, 0)
        if op == "ld" and re.fullmatch(r"#?[A-Za-z_]+", a):
            word = a.lstrip("#").lower()
            name = _EXT_ALIASES.get(word, word)
            if name in _EXT:
                return (0x20, 0, 0, _SKF + _EXT[name])
            raise bad
        m = _MEM.match(a)
        if m and op in ("ld", "ldx"):
            return (cls | 0x60, 0, 0, _number(m.group(1), where))
        m = _MSH.match(a)
        if m and op in ("ldx", "ldxb"):
            return (0xB1, 0, 0, _number(m.group(1), where))
        if x:
            raise bad
        m = _ABS.match(a)
        if m:
            return (0x20 | size, 0, 0, _number(m.group(1), where))
        m = _IND.match(a)
        if m:
            return (0x40 | size, 0, 0, _number(m.group(1), where))
        raise bad
    if op in ("st", "stx"):
        m = _MEM.match(a)
        if not m:
            raise bad
        return (0x02 if op == "st" else 0x03, 0, 0, _number(m.group(1), where))
    if op in _ALU:
        if a.lower() in ("x", "%x"):
            return (0x04 | _ALU[op] | 0x08, 0, 0, 0)
        m = _IMM.match(a)
        if not m:
            raise bad
        return (0x04 | _ALU[op], 0, 0, _number(m.group(1), where))
    if op == "neg" and not a:
        return (0x84, 0, 0, 0)
    if op == "tax" and not a:
        return (0x07, 0, 0, 0)
    if op == "txa" and not a:
        return (0x87, 0, 0, 0)
    if op in ("ja", "jmp"):
        return (0x05, 0, 0, _target(i, where, arg, labels, n, wide=True))
    if op in _JMP:
        jop, swapped = _JMP[op]
        fields = [f.strip() for f in arg.split(",")]
        if len(fields) not in (2, 3):
            raise bad
        src = fields[0].replace(" ", "")
        if src.lower() in ("x", "%x"):
            code, k = 0x05 | jop | 0x08, 0
        else:
            m = _IMM.match(src)
            if not m:
                raise bad
            code, k = 0x05 | jop, _number(m.group(1), where)
        first = _target(i, where, fields[1], labels, n)
        second = _target(i, where, fields[2], labels, n) if len(fields) == 3 else 0
        jt, jf = (second, first) if swapped else (first, second)
        return (code, jt, jf, k)
    if op == "ret":
        if a.lower() in ("a", "%a"):
            return (0x16, 0, 0, 0)
        m = _IMM.match(a)
        if not m:
            raise bad
        return (0x06, 0, 0, _number(m.group(1), where))
    raise bad


def disassemble(insns: list[tuple[int, int, int, int]]) -> str:
    """bpf_asm text for a program: labels `lN:` (N the instruction's index) where jumps land."""
    texts = [_text(i, insn) for i, insn in enumerate(insns)]
    targets = {int(m) for t in texts for m in re.findall(r"\bl(\d+)\b", t)}
    lines = []
    for i, text in enumerate(texts):
        lines.append((f"l{i}:" if i in targets else "").ljust(8) + text)
    return "\n".join(lines) + "\n"


def _text(i: int, insn: tuple[int, int, int, int]) -> str:
    code, jt, jf, k = insn
    cls = code & 0x07
    if code in _WHOLE_OPCODE_TEXT:
        return _WHOLE_OPCODE_TEXT[code].format(k=k)
    if cls in (0x00, 0x01):
        x = "x" if cls == 0x01 else ""
        mode = code & 0xE0
        if code == 0xB1:
            return f"ldxb 4*([{k}]&0xf)"
        if mode == 0x00 and code & 0x18 == 0:
            return f"ld{x} #{k}"
        if mode == 0x80 and code & 0x18 == 0:
            return f"ld{x} #len"
        if mode == 0x60 and code & 0x18 == 0:
            return f"ld{x} M[{k}]"
        name = {0x00: "ld", 0x08: "ldh", 0x10: "ldb"}[code & 0x18]
        if mode == 0x20:
            if code == 0x20 and k - _SKF in _EXT_NAME:
                return f"ld #{_EXT_NAME[k - _SKF]}"
            return f"{name} [{k}]"
        if mode == 0x40:
            return f"{name} [x + {k}]"
    if cls == 0x04:
        name = _ALU_NAME[code & 0xF0]
        return f"{name} x" if code & 0x08 else f"{name} #{k}"
    if code == 0x05:
        return f"ja l{i + 1 + (k - (1 << 32) if k & 0x80000000 else k)}"
    if cls == 0x05:
        src = "x" if code & 0x08 else f"#0x{k:x}"
        op = code & 0xF0
        if jt == 0 and jf != 0 and op in _JMP_INVERSE:
            return f"{_JMP_INVERSE[op]} {src}, l{i + 1 + jf}"
        if jf == 0 and jt != 0:
            return f"{_JMP_NAME[op]} {src}, l{i + 1 + jt}"
        return f"{_JMP_NAME[op]} {src}, l{i + 1 + jt}, l{i + 1 + jf}"
    raise InvalidProgramError(f"no bpf_asm form for opcode 0x{code:x}", i)
