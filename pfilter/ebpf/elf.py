"""A relocatable ELF object file (EM_BPF) holding one eBPF program, as clang -target bpf writes
one: the program in a section named for its hook (`xdp`, `tc`, `socket`: libbpf's SEC() names,
which `bpftool prog load` and iproute2's `tc ... bpf obj FILE sec tc` read), a global function
symbol over it, and a `license` section.

Imports nothing from pfilter.
"""
from __future__ import annotations

import struct
import sys

EM_BPF = 247
ET_REL = 1
SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB = 1, 2, 3
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 1, 2, 4
STB_GLOBAL = 1
STT_OBJECT, STT_FUNC = 1, 2


def _align(buf: bytearray, n: int) -> None:
    buf.extend(b"\0" * (-len(buf) % n))


def object_file(code: bytes, section: str, symbol: str, license: str = "GPL") -> bytes:
    """The ELF object bytes: `code` (struct bpf_insn[], host byte order) in section `section`
    under the function symbol `symbol`, `license` (NUL-terminated) in section "license"."""
    order = "<" if sys.byteorder == "little" else ">"
    lic = license.encode() + b"\0"
    names = bytearray(b"\0")

    def name(text: str) -> int:
        at = len(names)
        names.extend(text.encode() + b"\0")
        return at

    # sections: 0 null, 1 .strtab, 2 program, 3 license, 4 .symtab
    sh_names = [0, name(".strtab"), name(section), name("license"), name(".symtab")]
    sym_prog, sym_lic = name(symbol), name("_license")
    symtab = bytes(24)   # the null symbol
    symtab = symtab + struct.pack(order + "IBBHQQ", sym_prog, STB_GLOBAL << 4 | STT_FUNC, 0, 2, 0, len(code))
    symtab = symtab + struct.pack(order + "IBBHQQ", sym_lic, STB_GLOBAL << 4 | STT_OBJECT, 0, 3, 0, len(lic))

    body = bytearray(64)
    offsets = {}
    for idx, data, align in ((2, code, 8), (3, lic, 1), (1, bytes(names), 1), (4, symtab, 8)):
        _align(body, align)
        offsets[idx] = len(body)
        body.extend(data)
    _align(body, 8)
    shoff = len(body)
    headers = [bytes(64)]
    for idx, kind, flags, data, link, info, align, entsize in (
            (1, SHT_STRTAB, 0, bytes(names), 0, 0, 1, 0),
            (2, SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, code, 0, 0, 8, 0),
            (3, SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, lic, 0, 0, 1, 0),
            (4, SHT_SYMTAB, 0, symtab, 1, 1, 8, 24)):
        headers.append(struct.pack(order + "IIQQQQIIQQ", sh_names[idx], kind, flags, 0, offsets[idx],
                                   len(data), link, info, align, entsize))
    body.extend(b"".join(headers))
    ident = b"\x7fELF" + bytes([2, 1 if order == "<" else 2, 1, 0]) + bytes(8)
    body[0:64] = ident + struct.pack(order + "HHIQQQIHHHHHH", ET_REL, EM_BPF, 1, 0, 0, shoff, 0, 64, 0, 0,
                                     64, len(headers), 1)
    return bytes(body)
