"""Load instructions: big-endian values, overflow-safe bounds, metadata offsets. Both VMs."""
import pytest
from vmcase import *  # noqa: F403

PKT = bytes(range(1, 21))  # 01 02 ... 14


def test_load_word_absolute_is_big_endian(vm):
    assert load_then_ret_a(BPF_LD | BPF_W | BPF_ABS, 2, PKT) == 0x03040506


def test_load_half_absolute_is_big_endian(vm):
    assert load_then_ret_a(BPF_LD | BPF_H | BPF_ABS, 18, PKT) == 0x1314


def test_load_byte_absolute_reads_one_byte(vm):
    assert load_then_ret_a(BPF_LD | BPF_B | BPF_ABS, 19, PKT) == 0x14


@pytest.mark.parametrize("code,k", [(BPF_LD | BPF_W | BPF_ABS, 17), (BPF_LD | BPF_H | BPF_ABS, 19),
                                    (BPF_LD | BPF_B | BPF_ABS, 20)])
def test_load_past_caplen_rejects_packet(vm, code, k):
    assert run([(code, 0, 0, k), ACCEPT], PKT) == 0


@pytest.mark.parametrize("k", [0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0x80000000])
def test_load_with_huge_offset_does_not_wrap_around(vm, k):
    for code in (BPF_LD | BPF_W | BPF_ABS, BPF_LD | BPF_H | BPF_ABS, BPF_LD | BPF_B | BPF_ABS):
        assert run([(code, 0, 0, k), ACCEPT], PKT) == 0


def test_load_exactly_at_the_end_is_allowed(vm):
    assert load_then_ret_a(BPF_LD | BPF_W | BPF_ABS, 16, PKT) == 0x11121314


def test_load_indirect_adds_x_to_the_offset(vm):
    assert load_then_ret_a(BPF_LD | BPF_W | BPF_IND, 2, PKT, x=3) == 0x06070809
    assert load_then_ret_a(BPF_LD | BPF_H | BPF_IND, 2, PKT, x=3) == 0x0607
    assert load_then_ret_a(BPF_LD | BPF_B | BPF_IND, 2, PKT, x=3) == 0x06


@pytest.mark.parametrize("x,k", [(0xFFFFFFFF, 1), (1, 0xFFFFFFFF), (0x80000000, 0x80000000), (17, 0), (0, 17)])
def test_load_indirect_overflowing_offset_rejects_packet(vm, x, k):
    for code in (BPF_LD | BPF_W | BPF_IND, BPF_LD | BPF_H | BPF_IND, BPF_LD | BPF_B | BPF_IND):
        want_ok = code == BPF_LD | BPF_B | BPF_IND and x + k < len(PKT) or (
            code == BPF_LD | BPF_H | BPF_IND and x + k + 2 <= len(PKT))
        got = run([(BPF_LDX | BPF_IMM, 0, 0, x), (code, 0, 0, k), ACCEPT], PKT)
        assert got == (0xFFFF if want_ok else 0)


def test_load_length_is_the_wire_length_not_caplen(vm):
    assert run([(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0), RET_A], PKT, wirelen=1500) == 1500
    assert run([(BPF_LDX | BPF_W | BPF_LEN, 0, 0, 0), (BPF_MISC | BPF_TXA, 0, 0, 0), RET_A], PKT, wirelen=70) == 70


def test_load_immediate_sets_a_and_x(vm):
    assert run([(BPF_LD | BPF_IMM, 0, 0, 0xDEADBEEF), RET_A]) == 0xDEADBEEF
    assert run([(BPF_LDX | BPF_IMM, 0, 0, 7), (BPF_MISC | BPF_TXA, 0, 0, 0), RET_A]) == 7


def test_ldxb_msh_loads_ip_header_length(vm):
    pkt = b"\x00" * 14 + b"\x46"
    assert run([(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 14), (BPF_MISC | BPF_TXA, 0, 0, 0), RET_A], pkt) == 24


def test_ldxb_msh_past_caplen_rejects_packet(vm):
    assert run([(BPF_LDX | BPF_B | BPF_MSH, 0, 0, 15), ACCEPT], b"\x00" * 15) == 0


@pytest.mark.parametrize("ad", [SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX, SKF_AD_VLAN_TAG,
                                SKF_AD_VLAN_TAG_PRESENT, SKF_AD_RANDOM])
def test_linux_metadata_load_returns_zero_as_in_libpcap_userland(vm, ad):
    k = (SKF_AD_OFF + ad) & 0xFFFFFFFF
    for code in (BPF_LD | BPF_W | BPF_ABS, BPF_LD | BPF_H | BPF_ABS, BPF_LD | BPF_B | BPF_ABS):
        assert run([(code, 0, 0, k), ACCEPT], PKT * 10) == 0


def test_scratch_memory_starts_at_zero_and_keeps_stores(vm):
    assert run([(BPF_LD | BPF_MEM, 0, 0, 5), RET_A]) == 0
    prog = [(BPF_LD | BPF_IMM, 0, 0, 42), (BPF_ST, 0, 0, 15), (BPF_LD | BPF_IMM, 0, 0, 0),
            (BPF_LDX | BPF_MEM, 0, 0, 15), (BPF_MISC | BPF_TXA, 0, 0, 0), RET_A]
    assert run(prog) == 42
    prog = [(BPF_LDX | BPF_IMM, 0, 0, 9), (BPF_STX, 0, 0, 3), (BPF_LD | BPF_MEM, 0, 0, 3), RET_A]
    assert run(prog) == 9


def test_empty_packet_rejects_any_packet_load(vm):
    assert run([(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0), ACCEPT], b"") == 0
    assert run([ACCEPT], b"") == 0xFFFF
