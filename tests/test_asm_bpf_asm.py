"""The kernel's bpf_asm syntax in and out: Program.from_asm, Program.dump("asm").

Facts: the bytes of the ARP example are those Documentation/networking/filter.rst (Linux kernel,
"Examples for low-level BPF") prints for `bpf_asm foo` and `bpf_asm -c foo`; the other expected
tuples follow from the opcode encoding in include/uapi/linux/filter.h and bpf_common.h.
"""
import re

import pytest

import pfilter
import pfilter.seccomp as seccomp
from pfilter import Program
from pfilter.errors import InvalidProgramError

import reference as ref

ARP = """
  ldh [12]
  jne #0x806, drop
  ret #-1
  drop: ret #0
"""


def test_kernel_documentation_arp_example_assembles_to_the_documented_bytes():
    prog = Program.from_asm(ARP)
    # filter.rst: `$ ./bpf_asm foo` prints 4,40 0 0 12,21 0 1 2054,6 0 0 4294967295,6 0 0 0,
    assert prog == Program.from_text("4,40 0 0 12,21 0 1 2054,6 0 0 4294967295,6 0 0 0,")
    # filter.rst: `$ ./bpf_asm -c foo`
    assert prog.to_tuples() == [(0x28, 0, 0, 0x0000000C), (0x15, 0, 1, 0x00000806),
                                (0x06, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 0x00000000)]


def test_kernel_documentation_extension_examples_load_linux_metadata():
    # `ld ifidx` / `ld vlan_tci`: BPF_LD|BPF_W|BPF_ABS at SKF_AD_OFF (-0x1000) + SKF_AD_IFINDEX (8)
    # / SKF_AD_VLAN_TAG (44); `jneq #13, drop` is jeq with the false branch to drop
    for name, off, k in (("ifidx", 8, 13), ("vlan_tci", 44, 10)):
        prog = Program.from_asm(f"ld {name}\njneq #{k}, drop\nret #-1\ndrop: ret #0\n")
        assert prog.to_tuples() == [(0x20, 0, 0, 0xFFFFF000 + off), (0x15, 0, 1, k), (6, 0, 0, 0xFFFFFFFF), (6, 0, 0, 0)]


def test_every_addressing_mode_and_mnemonic_assembles_and_disassembles_back():
    text = """
        ld #42
        ldx #42
        ldi #7
        ld M[3]
        ldx M[3]
        ldb [42]
        ldh [42]
        ld [42]
        ldb [x + 42]
        ldh [x + 42]
        ld [x + 42]
        ldx 4*([14]&0xf)
        ld #len
        ldx #len
        ld #proto
        st M[3]
        stx M[3]
        add #1
        sub #1
        mul #3
        div #2
        mod #5
        and #0xff
        or #1
        xor #3
        lsh #2
        rsh #1
        add x
        sub x
        mul x
        div x
        mod x
        and x
        or x
        xor x
        lsh x
        rsh x
        neg
        tax
        txa
        jeq #42, prev, end
        jne #42, end
        jlt #42, end
        jle #42, end
        jgt #42, prev, end
        jge x, prev, end
        jset #42, prev, end
        ja end
  prev: ret a
  end:  ret #42
    """
    prog = Program.from_asm(text)
    assert len(prog) == 50
    assert Program.from_asm(prog.dump("asm")) == prog
    t = prog.to_tuples()
    assert t[2] == (0x00, 0, 0, 7)
    assert t[11] == (0xB1, 0, 0, 14)
    assert t[41] == (0x15, 0, 7, 42)            # jne: jeq, true falls through, false to `end`
    assert t[42] == (0x35, 0, 6, 42)            # jlt: jge reversed
    assert t[43] == (0x25, 0, 5, 42)            # jle: jgt reversed
    assert t[45] == (0x3D, 2, 3, 0)


# Bad texts for both assemblers: bpf_asm (Program.from_asm) and the seccomp readable style
# (pfilter.seccomp.assemble). Columns: assembler | the line the error names (- for none) | the
# text (\n: a new line) | what the message says.
BAD_ASSEMBLY = r"""
bpf_asm | 2 | ldh [12]\njeq #1, nowhere\nret #0 | no label 'nowhere'
bpf_asm | 2 | a: ret #0\na: ret #0 | defined twice
bpf_asm | 1 | ldq [12]\nret #0 | cannot assemble
bpf_asm | 1 | ld #0x1ffffffff\nret #0 | 32 bits
bpf_asm | - |  | no instructions
bpf_asm | 2 | x: ldh [12]\njeq #1, x\nret #0 | not after the jump
bpf_asm | 2 | ret #0\nret | cannot assemble `ret`
bpf_asm | 2 | ldh [12]\njeq #1, a, b, c\na: ret #0 | cannot assemble `jeq
bpf_asm | 1 | ldh [x + 70000000000]\nret #0 | 32 bits
seccomp | 2 | A = nr\nif (A == read) goto x\nx: return ALLOW | needs a known architecture
seccomp | 1 | goto nowhere\nreturn ALLOW | unknown label
seccomp | 2 | x: return ALLOW\ngoto x | backward
seccomp | 2 | A = nr\nfrobnicate\nreturn ALLOW | not a statement
seccomp | - |  | empty
seccomp | 1 | return ERRNO(99999) | 16 bits
seccomp | 1 | return FROBNICATE | unknown seccomp action
seccomp | 1 | A = args[6]\nreturn ALLOW | not a 32-bit number
seccomp | 3 | return ALLOW\nx: return ALLOW\nx: return KILL | defined twice
"""
ASSEMBLERS = {"bpf_asm": Program.from_asm, "seccomp": seccomp.assemble}


@pytest.mark.parametrize("row", BAD_ASSEMBLY.strip().splitlines())
def test_bad_assembly_raises_invalid_program_naming_the_line(row):
    kind, line, text, what = (field.strip() for field in row.split(" | "))
    with pytest.raises(InvalidProgramError, match=re.escape(what)) as caught:
        ASSEMBLERS[kind](text.replace("\\n", "\n"))
    named = re.match(r"line (\d+): ", str(caught.value))
    assert (named.group(1) if named else "-") == line


def test_comments_of_both_kinds_are_ignored():
    prog = Program.from_asm("ldh [12] ; the EtherType\n/* a\n comment */ jeq #0x800, yes\nret #0\nyes: ret #1\n")
    assert prog.to_tuples() == [(0x28, 0, 0, 12), (0x15, 1, 0, 0x800), (6, 0, 0, 0), (6, 0, 0, 1)]


def test_asm_round_trips_every_corpus_program_and_the_other_formats():
    exprs = ref.corpus_expressions()
    done = 0
    for dlt, lst in exprs.items():
        for e in lst:
            for opt in (True, False):
                try:
                    prog = pfilter.compile(e, linktype=dlt, optimize=opt)
                except pfilter.FilterError:
                    continue
                text = prog.dump("asm")
                back = Program.from_asm(text)
                assert back == prog, (dlt, e, opt)
                assert Program.from_text(back.dump("ddd")) == prog
                done += 1
    assert done > 900
