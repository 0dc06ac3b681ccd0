"""Program text formats: dump() is byte-identical to tcpdump 4.99.3's -d/-dd/-ddd, and from_text
reads -dd/-ddd back. The reference text comes from running the real tcpdump, never from a file."""
import subprocess

import pytest

import pfilter
import reference as ref


def corpus_programs():
    for kind in ("en10mb", "other_dlt"):
        for row in ref.corpus_expected(kind):
            yield row


@pytest.mark.parametrize("fmt", ["d", "dd", "ddd"])
def test_dump_is_byte_identical_to_tcpdump_for_every_corpus_program(fmt):
    checked = 0
    for row in corpus_programs():
        for optimize in (False, True):
            insns = row["opt" if optimize else "unopt"]
            if insns is None:
                continue
            want = ref.tcpdump_dump(row["expr"], row["dlt"], fmt, optimize)
            prog = pfilter.Program.from_tuples(insns)
            assert prog.dump(fmt) == want, (row["dlt"], row["expr"], optimize)
            checked += 1
    assert checked > 1000


def live_program(expr):
    """tcpdump's program for a live Linux interface (uses SKF_AD metadata loads for vlan)."""
    r = subprocess.run([ref.tcpdump(), "-i", "lo", "-ddd", expr], capture_output=True, text=True)
    if r.returncode != 0:
        if ref.IN_CI:
            pytest.fail(f"tcpdump -i lo failed: {r.stderr.strip()}")
        pytest.skip(f"tcpdump -i lo needs capture rights: {r.stderr.strip()}")
    text = subprocess.run([ref.tcpdump(), "-i", "lo", "-d", expr], capture_output=True, text=True).stdout
    return r.stdout, text


@pytest.mark.parametrize("expr", ["vlan", "vlan 10", "vlan and ip", "ether[0] = 1 and vlan"])
def test_dump_names_linux_metadata_loads_like_tcpdump(expr):
    ddd, d = live_program(expr)
    prog = pfilter.Program.from_text(ddd)
    assert prog.dump("ddd") == ddd
    assert prog.dump("d") == d
    assert "[vlanp]" in d or "[vlan_tci]" in d


def test_dump_prints_negative_offsets_and_backward_jumps_as_signed():
    prog = pfilter.Program.from_tuples([(0x20, 0, 0, 0xFFFFF000 - 4), (0x30, 0, 0, 0xFFF00000),
                                        (0x40, 0, 0, 0xFFFFFFFF), (0x15, 0, 1, 1),
                                        (0x05, 0, 0, 0xFFFFFFFB), (0x06, 0, 0, 0xFFFFFFFF)])
    lines = prog.dump("d").splitlines()
    assert lines[0] == "(000) ld       [-4100]"
    assert lines[1] == "(001) ldb      [-1048576]"
    assert lines[2] == "(002) ld       [x + -1]"
    assert lines[4] == "(004) ja       0"
    assert lines[5] == "(005) ret      #-1"


@pytest.mark.parametrize("fmt", ["dd", "ddd"])
def test_from_text_reads_back_every_dump(fmt):
    for row in list(corpus_programs())[::7]:
        prog = pfilter.Program.from_tuples(row["unopt"])
        assert pfilter.Program.from_text(prog.dump(fmt)) == prog


def test_from_text_reads_tcpdump_output_directly():
    text = ref.tcpdump_dump("tcp port 80", "EN10MB", "dd", optimize=True)
    prog = pfilter.Program.from_text(text)
    assert prog.to_tuples() == [tuple(t) for t in ref.compile("tcp port 80", 1, optimize=True)]


def test_from_text_reads_the_one_line_bpf_asm_form():
    prog = pfilter.Program.from_text("4,40 0 0 12,21 0 1 2048,6 0 0 65535,6 0 0 0")
    assert prog.run(b"\x00" * 12 + b"\x08\x00") == 65535


@pytest.mark.parametrize("text", ["", "3\n6 0 0 1\n", "hello", "1\n6 0 0\n", "2\n6 0 0 1\n6 0 0 x\n"])
def test_from_text_refuses_garbage_with_a_filter_error(text):
    with pytest.raises(pfilter.InvalidProgramError):
        pfilter.Program.from_text(text)


def test_instructions_are_a_read_only_structured_array():
    prog = pfilter.Program.from_tuples([(0x06, 0, 0, 7)])
    assert prog.instructions.dtype.names == ("code", "jt", "jf", "k")
    assert prog.instructions.dtype.itemsize == 8
    with pytest.raises(ValueError):
        prog.instructions["k"][0] = 1
