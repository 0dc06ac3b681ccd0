"""pfilter.ebpf's API and its outputs in the real tools: bytes() is the struct bpf_insn array,
verdicts are named as each hook names them, refusals are clear (backward jumps, the verifier's
log), test_run returns the kernel's values and ns/run, the ELF object loads with Debian's
`bpftool prog load` (the same instructions the bpf(2) loader loads: equal program tags) and
with iproute2, and the programs filter live traffic: a tc and an XDP program on the loopback
device of a private network namespace, a socket filter on a UDP socket.
"""
import os
import shutil
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ebpf_harness import require_kernel
from reference import IN_CI

import pfilter
from pfilter.ebpf import (TC_VERDICTS, XDP_VERDICTS, EbpfProgram, VerifierError, insn as I,
                          load, test_run, to_ebpf)

ETH_IP = bytes(6) + bytes(6) + b"\x08\x00"


def udp_frame(dport, payload=b"hello"):
    """An Ethernet + IPv4 + UDP frame to 127.0.0.1:dport."""
    udp = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([127, 0, 0, 1]),
                     bytes([127, 0, 0, 1]))
    return ETH_IP + ip + udp


def _tool(name):
    path = shutil.which(name)
    if path is None:
        (pytest.fail if IN_CI else pytest.skip)(f"{name} is not installed (apt-get install {name})")
    return path


def _prog_tag(fd):
    for line in open(f"/proc/self/fdinfo/{fd}"):
        if line.startswith("prog_tag:"):
            return line.split()[1]
    raise AssertionError("no prog_tag in fdinfo")


# ----------------------------------------------------------------------------- the object

def test_bytes_are_the_struct_bpf_insn_array():
    eb = pfilter.compile("ip and tcp port 80").to_ebpf("xdp")
    raw = bytes(eb)
    assert len(raw) == 8 * len(eb) and I.decode(raw) == eb.insns
    first = eb.insns[0]
    code, regs, off, imm = struct.unpack("=BBhi", raw[:8])
    assert code == first.code and off == first.off and imm == first.imm
    assert {regs & 15, regs >> 4} == {first.dst, first.src}
    assert eb.dump().count("\n") == len(eb) and "exit" in eb.dump()


def test_program_to_ebpf_is_pfilter_ebpf_to_ebpf():
    prog = pfilter.compile("udp port 53")
    assert bytes(prog.to_ebpf(hook="tc")) == bytes(to_ebpf(prog, "tc"))
    assert isinstance(prog.to_ebpf(), EbpfProgram) and prog.to_ebpf().hook == "xdp"


@pytest.mark.parametrize("hook,match,miss", [("xdp", "pass", "drop"), ("tc", "ok", "shot"), ("socket", None, "drop")])
def test_default_verdicts_are_named_as_the_hook_names_them(hook, match, miss):
    eb = pfilter.compile("tcp").to_ebpf(hook)
    assert (eb.on_match, eb.on_miss) == (match, miss)


def test_verdicts_by_name_reach_the_kernel():
    require_kernel()
    frames = [udp_frame(53), udp_frame(54)]
    for hook, names in (("xdp", XDP_VERDICTS), ("tc", TC_VERDICTS)):
        for match, miss in (("tx", "aborted"), ("redirect", "pass"), ("drop", "pass")) if hook == "xdp" else \
                (("shot", "ok"), ("redirect", "unspec"), ("stolen", "pipe")):
            r = test_run(pfilter.compile("udp port 53").to_ebpf(hook, on_match=match, on_miss=miss), frames)
            assert list(r.retvals.astype(np.int32)) == [names[match], names[miss]]
            assert list(r.matched) == [True, False]


def test_unknown_or_equal_verdicts_are_filter_errors():
    prog = pfilter.compile("tcp")
    with pytest.raises(pfilter.FilterError, match="verdicts are aborted, drop, pass"):
        prog.to_ebpf("xdp", on_match="accept")
    with pytest.raises(pfilter.FilterError, match="both"):
        prog.to_ebpf("tc", on_match="shot")
    with pytest.raises(pfilter.FilterError, match="hook must be one of"):
        prog.to_ebpf("kprobe")
    with pytest.raises(pfilter.FilterError):
        prog.to_ebpf("socket", on_miss="pass")
    assert prog.to_ebpf("xdp", on_match=3).on_match == "tx"     # a verdict's number is its name


def test_socket_filter_returns_the_cbpf_value_or_on_match():
    require_kernel()
    # a socket filter sees the frame from its network header in BPF_PROG_TEST_RUN
    prog = pfilter.compile("udp port 53", linktype="RAW", snaplen=96)
    r = test_run(prog.to_ebpf("socket"), [udp_frame(53), udp_frame(54)])
    assert list(r.retvals) == [96, 0] == [prog.run(udp_frame(53)[14:]), prog.run(udp_frame(54)[14:])]
    r = test_run(prog.to_ebpf("socket", on_match=1000), [udp_frame(53), udp_frame(54)])
    assert list(r.retvals) == [1000, 0]


def ipv6_frame(chain, last=6, hdrlen=0):
    """Ethernet + IPv6 whose next headers are `chain` (extension headers of (hdrlen + 1) * 8
    bytes each), then `last`."""
    nxt = (chain + [last])
    body = b"".join(bytes([nxt[i + 1], hdrlen]) + bytes(6 + 8 * hdrlen) for i in range(len(chain)))
    ip6 = b"\x60" + bytes(3) + len(body).to_bytes(2, "big") + bytes([nxt[0], 64]) + bytes(32)
    return bytes(12) + b"\x86\xdd" + ip6 + body + bytes(20)


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_protochain_loops_as_the_vm_loops(hook):
    """`protochain` walks the extension headers in a loop (a backward jump): the eBPF loops too,
    under the VM's loop budget, and finds the protocol after any number of headers."""
    require_kernel()
    prog = pfilter.compile("ip6 protochain 6")
    assert any(c == 0x05 and k & 0x80000000 for c, _, _, k in prog.to_tuples())
    frames = [ipv6_frame([]), ipv6_frame([0]), ipv6_frame([0, 60, 43] * 20), ipv6_frame([0, 60, 43] * 20, last=17),
              ipv6_frame([60] * 100, hdrlen=1), ipv6_frame([60] * 100, hdrlen=1)[:-40], ipv6_frame([0], last=17)]
    want = [prog.run(f) != 0 for f in frames]
    assert want == [True, True, True, False, True, False, False]
    assert list(test_run(prog.to_ebpf(hook), frames).matched) == want


def test_a_loop_that_never_ends_misses_when_the_budget_is_spent():
    """`ja -1` forever: the VM returns 0 once loop_budget(caplen) is spent; so does the eBPF
    (and a loop that ends within the budget matches)."""
    require_kernel()
    spin = pfilter.Program.from_tuples([(0x20, 0, 0, 0), (0x15, 1, 0, 7), (0x05, 0, 0, 0xFFFFFFFF),
                                        (0x06, 0, 0, 1)])            # ld [0]; jeq #7 -> ret; ja -1
    count = pfilter.Program.from_tuples([(0x00, 0, 0, 0), (0x04, 0, 0, 1), (0x25, 1, 0, 999),
                                         (0x05, 0, 0, 0xFFFFFFFD), (0x06, 0, 0, 1)])   # 1000 laps, then ret 1
    frames = [bytes(20), (7).to_bytes(4, "big") + bytes(16)]
    for prog, want in ((spin, [False, True]), (count, [True, True])):
        assert [prog.run(f) != 0 for f in frames] == want
        for hook in ("xdp", "tc"):
            assert list(test_run(prog.to_ebpf(hook), frames).matched) == want


def test_a_loop_the_verifier_must_count_past_8192_laps_is_a_verifier_refusal():
    """A loop whose state the verifier tracks as constants (a counter compared with a constant)
    is walked lap by lap; past 8192 jumps the verifier gives up (E2BIG). A genuine limit of the
    kernel, reported with its log; loops over packet data (protochain) converge."""
    require_kernel()
    too_far = pfilter.Program.from_tuples([(0x00, 0, 0, 0), (0x04, 0, 0, 1), (0x25, 1, 0, 99999),
                                           (0x05, 0, 0, 0xFFFFFFFD), (0x06, 0, 0, 1)])
    with pytest.raises(VerifierError, match="too complex") as e:
        load(too_far.to_ebpf("xdp"))
    assert "may_goto" in e.value.log


def test_verifier_refusal_carries_the_verifier_log():
    require_kernel()
    eb = pfilter.compile("tcp").to_ebpf("xdp")
    eb.insns = [I.exit_()]                  # R0 never written: the verifier refuses
    with pytest.raises(VerifierError) as e:
        load(eb)
    assert isinstance(e.value, OSError) and "R0 !read_ok" in e.value.log and "R0 !read_ok" in str(e.value)


def test_test_run_gives_verdicts_and_the_kernels_ns_per_run():
    require_kernel()
    eb = pfilter.compile("udp").to_ebpf("xdp")
    batch = pfilter.PacketBatch.from_packets([udp_frame(1)] * 3 + [ETH_IP + bytes(40)])
    r = test_run(eb, batch, repeat=50)
    assert list(r.matched) == [True, True, True, False]
    assert list(r.retvals) == [2, 2, 2, 1]
    assert r.ns.dtype == np.uint32 and (r.ns > 0).all()
    with pytest.raises(OSError, match="14 bytes or more"):
        test_run(eb, [bytes(13)])
    fd = load(eb)                                   # a loaded program, by its file descriptor
    try:
        r = test_run(fd, batch)
        assert list(r.retvals) == [2, 2, 2, 1] and r.matched is None
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- the tools

@pytest.fixture
def bpffs():
    """/sys/fs/bpf, mounted for the test when it is not (and unmounted after)."""
    require_kernel()
    path = "/sys/fs/bpf"
    mounted = False
    if not os.path.ismount(path):
        os.makedirs(path, exist_ok=True)
        r = subprocess.run(["mount", "-t", "bpf", "bpf", path], capture_output=True, text=True)
        if r.returncode != 0:
            (pytest.fail if IN_CI else pytest.skip)(f"cannot mount bpffs: {r.stderr.strip()}")
        mounted = True
    yield path
    if mounted:
        subprocess.run(["umount", path], check=False)


@pytest.mark.parametrize("hook,kind", [("xdp", "xdp"), ("tc", "sched_cls"), ("socket", "socket_filter")])
def test_object_loads_with_bpftool_as_the_same_instructions(hook, kind, bpffs, tmp_path):
    import json
    bpftool = _tool("bpftool")
    eb = pfilter.compile("vlan and tcp port 443 or icmp6").to_ebpf(hook)
    obj = tmp_path / f"filter_{hook}.o"
    obj.write_bytes(eb.object())
    pin = os.path.join(bpffs, f"pfilter_test_{os.getpid()}_{hook}")
    try:
        r = subprocess.run([bpftool, "prog", "load", str(obj), pin], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        info = json.loads(subprocess.run([bpftool, "--json", "prog", "show", "pinned", pin],
                                         capture_output=True, text=True, check=True).stdout)
    finally:
        if os.path.exists(pin):
            os.unlink(pin)
    fd = load(eb)
    try:
        assert (info["type"], info["name"], info["tag"]) == (kind, "pfilter", _prog_tag(fd))
    finally:
        os.close(fd)


def _in_netns(script):
    """Run a shell script in a new network namespace (its loopback up) and a private mount
    namespace (iproute2 mounts bpffs for its objects: that stays there), as root."""
    require_kernel()
    _tool("unshare")
    _tool("tc")
    r = subprocess.run(["unshare", "--net", "--mount", "sh", "-ec", "ip link set lo up\n" + script],
                       capture_output=True, text=True, timeout=60)
    return r


UDP_PROBE = textwrap.dedent("""\
    import socket, sys
    got = []
    for port in (5555, 5556):
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", port)); r.settimeout(0.5)
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", port))
        try:
            r.recv(10); got.append(port)
        except OSError:
            pass
    print(got)
""")


@pytest.mark.parametrize("hook", ["tc", "xdp"])
def test_iproute2_attaches_the_object_and_it_filters_live_traffic(hook, tmp_path):
    """In a private network namespace, iproute2 attaches the object to lo (tc: clsact ingress,
    direct action; XDP: generic mode); UDP to port 5555 is dropped, to 5556 delivered."""
    obj = tmp_path / "f.o"
    on_match = "shot" if hook == "tc" else "drop"
    on_miss = "ok" if hook == "tc" else "pass"
    obj.write_bytes(pfilter.compile("udp dst port 5555").to_ebpf(hook, on_match=on_match, on_miss=on_miss).object())
    probe = tmp_path / "probe.py"
    probe.write_text(UDP_PROBE)
    attach = (f"tc qdisc add dev lo clsact\ntc filter add dev lo ingress bpf direct-action obj {obj} sec tc\n"
              if hook == "tc" else f"ip link set dev lo xdpgeneric obj {obj} sec xdp\n")
    r = _in_netns(f"{sys.executable} {probe}\n{attach}{sys.executable} {probe}\n")
    assert r.returncode == 0, r.stderr
    before, after = r.stdout.splitlines()[-2:]
    assert (before, after) == ("[5555, 5556]", "[5556]"), r.stdout


PACKET_PROBE = textwrap.dedent("""\
    import os, socket
    from pfilter.ebpf import load
    import pfilter
    fd = load(pfilter.compile("udp dst port 5555").to_ebpf("socket"))
    p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))    # ETH_P_ALL
    p.bind(("lo", 0))
    p.setsockopt(socket.SOL_SOCKET, 50, fd)                                   # SO_ATTACH_BPF
    p.settimeout(0.5)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for port in (5556, 5555, 5557):
        s.sendto(b"x", ("127.0.0.1", port))
    ports = []
    try:
        while True:
            frame = p.recv(2048)
            ports.append(int.from_bytes(frame[36:38], "big"))
    except OSError:
        pass
    print(sorted(set(ports)), len(ports))
""")


def test_socket_filter_on_a_packet_socket_keeps_only_matches(tmp_path):
    """SO_ATTACH_BPF on an AF_PACKET socket (where libpcap attaches its filters: the program sees
    the frame from its Ethernet header) in a private network namespace: of UDP to ports 5555,
    5556 and 5557 over lo, only 5555's frames arrive."""
    probe = tmp_path / "probe.py"
    probe.write_text(PACKET_PROBE)
    r = _in_netns(f"{sys.executable} {probe}\n")
    assert r.returncode == 0, r.stderr
    ports, count = r.stdout.rsplit("]", 1)
    assert ports + "]" == "[5555]" and int(count) >= 1, r.stdout


# ----------------------------------------------------------------------------- the command

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pfilter", *args], capture_output=True, text=True)


def test_cli_writes_the_object_and_dumps_the_listing(tmp_path):
    out = tmp_path / "filter.o"
    r = _cli("--ebpf", "tc", "-o", str(out), "tcp", "port", "443")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    assert out.read_bytes() == pfilter.compile("tcp port 443").to_ebpf("tc").object()
    r = _cli("--ebpf", "xdp", "--ebpf-dump", "--on-match", "tx", "udp")
    assert r.returncode == 0
    assert r.stdout.splitlines()[1:] == pfilter.compile("udp").to_ebpf("xdp", on_match="tx").dump().splitlines()


@pytest.mark.parametrize("args,message", [
    (["--ebpf", "xdp", "tcp"], "give -o FILE"),
    (["-o", "x.o", "tcp"], "--ebpf HOOK"),
    (["--ebpf", "socket", "--ebpf-dump", "--on-match", "0", "tcp"], "bytes to keep"),
    (["--ebpf", "tc", "--ebpf-dump", "--on-miss", "drop", "tcp"], "not a tc verdict"),
])
def test_cli_errors_are_one_line(args, message, tmp_path):
    r = subprocess.run([sys.executable, "-m", "pfilter", *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == ""
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.o").exists()


def test_jumps_beyond_16_bit_offsets_become_gotol():
    """A program whose eBPF is longer than a 16-bit jump reaches: far jumps are `gotol` (and a
    far conditional jump hops over one), and the kernel still gives the VM's verdicts."""
    require_kernel()
    n = 4000
    insns = [(0x20, 0, 0, 0), (0x15, 0, 1, 0x01020304), (0x05, 0, 0, 2 * n + 1)]   # ld [0]; jeq; ja far
    for i in range(n):
        insns += [(0x01, 0, 0, i % 40), (0x50, 0, 0, 2)]                          # ldx #i; ldb [x + 2]
    insns += [(0x16, 0, 0, 0), (0x06, 0, 0, 1)]                                    # ret a; ret #1
    prog = pfilter.Program(insns, max_insns=len(insns))
    eb = prog.to_ebpf("xdp")
    assert len(eb) > 0x8000
    assert any(i.code == I.BPF_JMP32 | I.BPF_JA for i in eb.insns) and "gotol" in eb.dump()
    rng = np.random.default_rng(5)
    frames = [bytes([1, 2, 3, 4]) + bytes(40), bytes(60), bytes(20), bytes(41), bytes(42)] + \
             [rng.integers(0, 3, 44, dtype=np.uint8).tobytes() for _ in range(20)]
    r = test_run(eb, frames)
    assert list(r.matched) == [prog.run(f) != 0 for f in frames]
    assert 0 < r.matched.sum() < len(frames)


# ----------------------------------------------------------------------------- link types and targets

def ipv4_packet(proto, dport):
    l4 = struct.pack("!HHHH", 1234, dport, 8, 0) + bytes(12)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0x1234, bytes([10, 0, 0, 1]),
                       bytes([10, 0, 0, 2])) + l4


def ipv6_packet(nh, dport):
    l4 = struct.pack("!HHHH", 1234, dport, 8, 0) + bytes(12)
    return (b"\x60" + bytes(3) + len(l4).to_bytes(2, "big") + bytes([nh, 64]) + bytes(15) + b"\x01"
            + bytes(15) + b"\x02" + l4)


RAW_PACKETS = [ipv4_packet(17, 53), ipv4_packet(17, 54), ipv4_packet(6, 53), ipv6_packet(17, 53),
               ipv6_packet(6, 53), ipv6_packet(17, 99)]
RAW_EXPRESSIONS = ["udp port 53", "ip and udp", "ip6 and dst port 53", "ip", "ip6", "host 10.0.0.1",
                   "ip6 dst host ::2", "len > 40", "ip[9] = 6"]


@pytest.mark.parametrize("linktype", ["RAW", 101, "IPV4", "IPV6"])
def test_raw_ip_link_types_read_raw_ip_packets_at_every_hook(linktype):
    """XDP and tc on a layer-3 device (tun) see the IP packet from its first byte; a socket filter
    sees it so in BPF_PROG_TEST_RUN (the frame from its network header) and on SOCK_DGRAM. A
    program compiled for RAW, IPV4 or IPV6 gives the VM's verdicts there."""
    require_kernel()
    eth = [bytes(12) + (b"\x86\xdd" if p[0] >> 4 == 6 else b"\x08\x00") + p for p in RAW_PACKETS]
    for expr in RAW_EXPRESSIONS:
        prog = pfilter.compile(expr, linktype=linktype)
        want = [prog.run(p) != 0 for p in RAW_PACKETS]
        for hook, frames in (("xdp", RAW_PACKETS), ("tc", RAW_PACKETS), ("socket", eth)):
            assert list(test_run(prog.to_ebpf(hook), frames).matched) == want, (expr, hook)


@pytest.mark.parametrize("hook", ["xdp", "tc", "socket"])
@pytest.mark.parametrize("linktype", ["LINUX_SLL", "LINUX_SLL2", "IEEE802_11_RADIO", "NULL", "LOOP", "IEEE802_11"])
def test_a_program_for_a_link_type_the_hook_does_not_see_is_refused(hook, linktype):
    prog = pfilter.compile("tcp", linktype=linktype)
    with pytest.raises(pfilter.FilterError, match=r"sees the frame from its Ethernet header|sees Ethernet frames"):
        prog.to_ebpf(hook)
    # a program of unknown link type (from_tuples) is taken as it is
    assert len(pfilter.Program.from_tuples(prog.to_tuples()).to_ebpf(hook)) > 0


@pytest.mark.parametrize("hook", ["xdp", "tc"])
def test_an_object_never_redirects_nowhere(hook):
    """`redirect` needs a target a helper call sets (bpf_redirect()); the program makes none, so
    the kernel would drop every such packet: object() refuses it; the instructions (load,
    test_run, a caller's own program) keep it."""
    prog = pfilter.compile("tcp")
    other = "pass" if hook == "xdp" else "ok"
    for kw in ({"on_match": "redirect"}, {"on_miss": "redirect", "on_match": other}):
        eb = prog.to_ebpf(hook, **kw)
        with pytest.raises(pfilter.FilterError, match=r"redirect.*bpf_redirect\(\).*makes none"):
            eb.object()
        assert len(bytes(eb)) > 0


def test_verdict_messages_name_the_hook_as_the_kernel_does():
    prog = pfilter.compile("tcp")
    with pytest.raises(pfilter.FilterError, match="'accept' is not an XDP verdict"):
        prog.to_ebpf("xdp", on_match="accept")
    with pytest.raises(pfilter.FilterError, match="9 is not a tc verdict"):
        prog.to_ebpf("tc", on_match=9)
    with pytest.raises(pfilter.FilterError, match="number of bytes to keep"):
        prog.to_ebpf("socket", on_match="pass")
