"""eBPF programs from pfilter Programs: XDP, tc and socket filters the kernel's verifier accepts,
with pfilter's verdict on every packet.

    eb = pfilter.compile("tcp port 443").to_ebpf(hook="xdp")        # on_match="pass", on_miss="drop"
    bytes(eb)                 # struct bpf_insn[], host byte order
    eb.object()               # an ELF object: `bpftool prog load f.o /sys/fs/bpf/x`, `tc ... bpf obj f.o sec tc`
    print(eb.dump())          # the listing, in the verifier log's notation
    fd = pfilter.ebpf.load(eb)                      # bpf(BPF_PROG_LOAD); VerifierError carries the log
    r = pfilter.ebpf.test_run(eb, batch)            # BPF_PROG_TEST_RUN per packet: r.retvals, r.ns, r.matched

Route: the eBPF is emitted directly from pfilter.lowering (pfilter.ebpf.emit), the kernel's own
cBPF-to-eBPF mapping as the model, rather than through LLVM's BPF target: the emitter places the
hoisted bounds checks exactly where the verifier must see them (LLVM may merge or move them
into shapes the verifier cannot follow) and needs no optional dependency; its time per expression
is the "emit ms" column of bench/results/latest_ebpf.md (bench/test_bench_ebpf.py).

Hooks and verdicts (named as the kernel names them):
  xdp     packet = the frame from its Ethernet header; on_match/on_miss among XDP_VERDICTS
          (default "pass"/"drop"); `len` is bpf_xdp_get_buff_len() (fragments included)
  tc      the skb from its Ethernet header (sched_cls, direct action); TC_VERDICTS (default
          "ok"/"shot"); a packet whose tail lies outside the skb's linear part is pulled in
          first (bpf_skb_pull_data), so every byte reads as in the capture; `len` is skb->len
  socket  the legacy packet loads (LD_ABS/LD_IND); returns the cBPF program's own value (the
          bytes to keep) when on_match is None, else on_match; on_miss is 0 ("drop")
The program must be compiled for what the hook sees (HOOK_LINKTYPES): EN10MB, or RAW, IPV4 or
IPV6 (raw IP: XDP and tc on a layer-3 device such as tun, a socket filter on a SOCK_DGRAM socket);
a Program compiled for another link type is refused (FilterError). `redirect` (XDP, tc) needs a
target that only a helper call sets, which the program does not make: object() refuses it.
The packet's bytes are the capture's; on a live interface the kernel may have removed a VLAN
tag into metadata (VLAN offload) before tc and socket filters run. A socket filter sees the
frame from its link-layer header on an AF_PACKET socket (where libpcap attaches its filters);
BPF_PROG_TEST_RUN hands it the frame from its network header, and an AF_INET socket's filter
sees the packet from its transport header.

Imports pfilter.errors, pfilter.lowering (and numpy for test_run); the submodules: insn
(encoder, listing), emit (the emitter), elf (object files), syscall (bpf(2) through ctypes).
"""
from __future__ import annotations

import errno as _errno
import os
from typing import TYPE_CHECKING, NamedTuple

from ..errors import FilterError
from . import elf, insn, syscall
from .emit import HELPER_NAMES, emit
from .syscall import VerifierError

if TYPE_CHECKING:
    from typing import Any

    import numpy as np
    from numpy.typing import NDArray

__all__ = ["EbpfProgram", "VerifierError", "TestRunResult", "HOOKS", "XDP_VERDICTS",
           "TC_VERDICTS", "to_ebpf", "load", "test_run", "test_run_fd"]

XDP_VERDICTS = {"aborted": 0, "drop": 1, "pass": 2, "tx": 3, "redirect": 4}
TC_VERDICTS = {"unspec": -1, "ok": 0, "reclassify": 1, "shot": 2, "pipe": 3, "stolen": 4, "queued": 5,
               "repeat": 6, "redirect": 7, "trap": 8}
SOCKET_VERDICTS = {"drop": 0}

#: hook -> (verdict names, default on_match, default on_miss, program type, ELF section)
HOOKS = {
    "xdp": (XDP_VERDICTS, "pass", "drop", syscall.BPF_PROG_TYPE_XDP, "xdp"),
    "tc": (TC_VERDICTS, "ok", "shot", syscall.BPF_PROG_TYPE_SCHED_CLS, "tc"),
    "socket": (SOCKET_VERDICTS, None, "drop", syscall.BPF_PROG_TYPE_SOCKET_FILTER, "socket"),
}

#: the kernel's BPF_PROG_TEST_RUN takes packets of ETH_HLEN bytes up to a page less its headroom
TEST_RUN_MIN = 14
LICENSE = "GPL"


#: how each hook's program is called in messages
HOOK_PROGRAM = {"xdp": "an XDP program", "tc": "a tc program", "socket": "a socket filter"}
#: verdicts that act on a target only a helper call sets (bpf_redirect(), bpf_redirect_map()),
#: which these programs never make: the kernel drops a packet "redirected" nowhere. Loading and
#: test_run accept them (a caller's own program may call the emitted one and redirect); object()
#: and the command, whose programs are attached as they are, refuse them
NEEDS_TARGET = {"xdp": {"redirect": "bpf_redirect() or bpf_redirect_map()"},
                "tc": {"redirect": "bpf_redirect()"}, "socket": {}}
#: the link types (DLT numbers) of the packets each hook's program sees: XDP and tc see the frame
#: from its Ethernet header, or the IP packet on a layer-3 device (tun, wireguard); a socket
#: filter the frame from its link-layer header on an AF_PACKET socket (an Ethernet device's:
#: libpcap's cooked headers, LINUX_SLL/LINUX_SLL2, are made in user space) or the IP packet
#: (SOCK_DGRAM, a layer-3 device; BPF_PROG_TEST_RUN hands it the frame from its network header).
#: RAW is DLT 12 (LINKTYPE_RAW 101), IPV4 228, IPV6 229
HOOK_LINKTYPES = {"xdp": (1, 12, 228, 229), "tc": (1, 12, 228, 229), "socket": (1, 12, 228, 229)}
_SEES = {"xdp": "sees Ethernet frames (raw IP on a layer-3 device such as tun)",
         "tc": "sees Ethernet frames (raw IP on a layer-3 device such as tun)",
         "socket": "sees the frame from its Ethernet header on an AF_PACKET socket (raw IP on a "
                   "SOCK_DGRAM socket or a layer-3 device such as tun)"}


def linktype_problem(hook: str, linktype: int | None) -> str | None:
    """Why a program compiled for `linktype` (a DLT number; None: unknown, not checked) reads
    `hook`'s packets wrongly, or None: "an XDP program sees Ethernet frames (...), not LINUX_SLL
    (Linux cooked v1)"."""
    from .. import linktypes
    if linktype is None or linktypes.LINKTYPE_TO_DLT.get(linktype, linktype) in HOOK_LINKTYPES[hook]:
        return None
    label: str = getattr(linktypes, "linktype_label")(linktype)
    return f"{HOOK_PROGRAM[hook]} {_SEES[hook]}, not {label}"


def target_problem(hook: str, verdict: str | None, what: str = "on_match") -> str | None:
    """Why the verdict named `verdict` cannot be the verdict of a program attached as it is, or None."""
    helper = NEEDS_TARGET[hook].get(verdict or "")
    if helper is None:
        return None
    usable = ", ".join(n for n in HOOKS[hook][0] if n not in NEEDS_TARGET[hook])
    return (f"{what} {verdict}: {HOOK_PROGRAM[hook]} redirects to the target a {helper} call sets, and "
            f"this program makes none (the kernel would drop those packets); the verdicts are {usable}")


def _verdict(hook: str, value: Any, what: str, match: bool) -> tuple[str | None, int | None]:
    """(name, value) of a verdict given by name (any case) or by its number; `what` names the
    argument in messages ("on_match", or the command's "--on-match"), `match` says which it is."""
    names = HOOKS[hook][0]
    article_hook = {"xdp": "an XDP", "tc": "a tc", "socket": "a socket filter"}[hook]
    if hook == "socket" and match:
        if value is None:
            return None, None
        if isinstance(value, bool) or not isinstance(value, int):
            raise FilterError(f"{what} for a socket filter is the number of bytes to keep "
                              f"(1..{0xFFFFFFFF}), not {value!r}")
        if not 0 < value <= 0xFFFFFFFF:
            raise FilterError(f"{what} for a socket filter is the number of bytes to keep (1..{0xFFFFFFFF}), not {value}")
        return str(value), value
    if value is None:
        raise FilterError(f"{what} must be {article_hook} verdict: {', '.join(names)}")
    if isinstance(value, str):
        if value.lower() not in names:
            raise FilterError(f"{what}: {value!r} is not {article_hook} verdict; the verdicts are {', '.join(names)}")
        return value.lower(), names[value.lower()]
    if isinstance(value, bool) or not isinstance(value, int):
        raise FilterError(f"{what} must be a verdict name, not {type(value).__name__}")
    for name, v in names.items():
        if v == value:
            return name, v
    raise FilterError(f"{what}: {value} is not {article_hook} verdict; the verdicts are "
                      + ", ".join(f"{n} ({v})" for n, v in names.items()))


def verdicts(hook: str, on_match: str | int | None = None, on_miss: str | int | None = None,
             what: tuple[str, str] = ("on_match", "on_miss")) -> tuple[str | None, int | None, str, int]:
    """(match name, match value, miss name, miss value) of the verdicts given (None: the hook's
    default), FilterError naming them as `what` says when they are no verdicts of `hook` or equal."""
    if hook not in HOOKS:
        raise FilterError(f"hook must be one of {', '.join(HOOKS)}, not {hook!r}")
    d_match, d_miss = HOOKS[hook][1:3]
    m_name, m_value = _verdict(hook, d_match if on_match is None else on_match, what[0], True)
    x_name, x_value = _verdict(hook, d_miss if on_miss is None else on_miss, what[1], False)
    if m_value is not None and m_value == x_value:
        raise FilterError(f"{what[0]} and {what[1]} are both {m_name!r}")
    assert x_name is not None and x_value is not None
    return m_name, m_value, x_name, x_value


class EbpfProgram:
    """An eBPF program for one hook, emitted from a cBPF Program. `bytes()` is its
    `struct bpf_insn` array; `object()` an ELF object file; `dump()` its listing."""

    __slots__ = ("hook", "on_match", "on_miss", "match_value", "miss_value", "insns", "program")

    def __init__(self, program: Any, hook: str = "xdp", on_match: str | int | None = None,
                 on_miss: str | int | None = None) -> None:
        from ..lowering import lower
        self.on_match, self.match_value, self.on_miss, self.miss_value = verdicts(hook, on_match, on_miss)
        self.hook = hook
        problem = linktype_problem(hook, getattr(program, "linktype", None))
        if problem:
            raise FilterError(f"{problem}: compile for EN10MB, RAW, IPV4 or IPV6")
        self.program = program
        self.insns = emit(lower(program), hook, self.match_value, self.miss_value)

    @property
    def prog_type(self) -> int:
        return HOOKS[self.hook][3]

    @property
    def section(self) -> str:
        """The ELF section name (libbpf's SEC()): "xdp", "tc" or "socket"."""
        return HOOKS[self.hook][4]

    def __bytes__(self) -> bytes:
        return insn.encode(self.insns)

    def __len__(self) -> int:
        return len(self.insns)

    def __repr__(self) -> str:
        return f"<EbpfProgram {self.hook} {len(self)} instructions, match={self.on_match} miss={self.on_miss}>"

    def dump(self) -> str:
        """One numbered line per instruction, in the kernel verifier log's notation."""
        return insn.listing(self.insns, HELPER_NAMES)

    def object(self, name: str = "pfilter") -> bytes:
        """An ELF relocatable object (EM_BPF) with the program in section `self.section` under
        the function symbol `name` and a "GPL" license section. A "redirect" verdict is refused
        here (NEEDS_TARGET: the program sets no target, the kernel would drop those packets)."""
        if not name.isidentifier():
            raise FilterError(f"the program's symbol name must be an identifier, not {name!r}")
        for what, verdict in (("on_match", self.on_match), ("on_miss", self.on_miss)):
            problem = target_problem(self.hook, verdict, what)
            if problem:
                raise FilterError(problem)
        return elf.object_file(bytes(self), self.section, name, LICENSE)

    def matches(self, retvals: NDArray[Any]) -> NDArray[np.bool_]:
        """Which return values mean "the filter matched" (a socket filter: nonzero)."""
        import numpy as np
        r = np.asarray(retvals).astype(np.int64) & 0xFFFFFFFF
        out: NDArray[np.bool_] = r != 0 if self.match_value is None else r == (self.match_value & 0xFFFFFFFF)
        return out


def to_ebpf(program: Any, hook: str = "xdp", on_match: str | int | None = None,
            on_miss: str | int | None = None) -> EbpfProgram:
    """The eBPF program for `hook` ("xdp", "tc", "socket") giving `program`'s verdicts (a
    backward jump loops under the VM's loop budget; see pfilter.ebpf.emit)."""
    return EbpfProgram(program, hook, on_match, on_miss)


def load(prog: EbpfProgram, name: str = "pfilter") -> int:
    """Load the program into the kernel (bpf(2) BPF_PROG_LOAD): its file descriptor, which the
    caller closes (os.close). VerifierError (an OSError, `.log` the verifier's log) when the
    verifier refuses it; PermissionError without the privilege (CAP_BPF and CAP_NET_ADMIN, or root)."""
    if not isinstance(prog, EbpfProgram):
        raise FilterError(f"load() takes an EbpfProgram (Program.to_ebpf()), not {type(prog).__name__}")
    return syscall.prog_load(prog.prog_type, bytes(prog), LICENSE, name)


class TestRunResult(NamedTuple):
    """BPF_PROG_TEST_RUN over a batch: per packet, the program's return value (uint32; tc's
    "unspec" -1 is 0xFFFFFFFF), the kernel's ns per run, and whether that value is the match."""
    retvals: NDArray[np.uint32]
    ns: NDArray[np.uint32]
    matched: NDArray[np.bool_] | None


def _packets(batch: Any) -> tuple[Any, int, Any, Any]:
    """(keep-alive, base address, offsets, sizes) of a PacketBatch or a sequence of bytes."""
    import numpy as np
    from ..batch import PacketBatch
    if not isinstance(batch, PacketBatch):
        if isinstance(batch, (bytes, bytearray, memoryview)):
            raise FilterError("test_run takes a PacketBatch or a list of packets, not one packet")
        batch = PacketBatch.from_packets(list(batch))
    data, offsets, caplen, _ = batch.native_arrays()
    keep = np.ascontiguousarray(data) if len(data) else np.zeros(1, np.uint8)
    return keep, keep.ctypes.data, offsets, caplen


def test_run_fd(fd: int, batch: Any, repeat: int = 1,
                refused: NDArray[np.bool_] | None = None) -> tuple[NDArray[np.uint32], NDArray[np.uint32]]:
    """BPF_PROG_TEST_RUN of the loaded program `fd` on every packet of `batch` (a PacketBatch or
    a list of bytes): (return values, ns per run). Every packet must hold at least 14 bytes
    (the kernel runs no shorter frame: OSError EINVAL otherwise). The kernel refuses some frames
    for skb programs (tc, socket: an IPv4 frame shorter than its 20-byte header, an IPv6 one
    shorter than 40): OSError EINVAL, or, when `refused` (a bool array, one per packet) is given,
    the packet is marked there and the run goes on."""
    keep, base, offsets, sizes = _packets(batch)
    if len(sizes) and int(sizes.min()) < TEST_RUN_MIN:
        i = int((sizes < TEST_RUN_MIN).argmax())
        raise OSError(_errno.EINVAL, f"packet {i} has {int(sizes[i])} bytes; BPF_PROG_TEST_RUN runs frames "
                                     f"of {TEST_RUN_MIN} bytes or more")
    if not 1 <= repeat <= 0xFFFFFFFF:
        raise FilterError(f"repeat must lie in 1..{0xFFFFFFFF}, not {repeat}")
    retvals, ns = syscall.test_run_many(fd, base, offsets, sizes, repeat, refused)
    del keep
    return retvals, ns


test_run_fd.__test__ = False   # type: ignore[attr-defined]


def test_run(prog: EbpfProgram | int, batch: Any, repeat: int = 1) -> TestRunResult:
    """Run `prog` (an EbpfProgram, loaded for the call and closed after; or the file descriptor
    of a loaded program, then `matched` is None) with BPF_PROG_TEST_RUN on every packet of
    `batch` (a PacketBatch or a list of bytes), `repeat` times each (`ns` is then the kernel's
    mean per run). An XDP run with repeat > 1 makes the kernel swap its XDP dispatcher twice (two
    RCU grace periods, tens of milliseconds per packet): repeat few packets many times rather
    than many packets."""
    if not isinstance(prog, EbpfProgram):
        if isinstance(prog, bool) or not isinstance(prog, int):
            raise FilterError(f"test_run takes an EbpfProgram or a file descriptor, not {type(prog).__name__}")
        retvals, ns = test_run_fd(prog, batch, repeat)
        return TestRunResult(retvals, ns, None)
    fd = load(prog)
    try:
        retvals, ns = test_run_fd(fd, batch, repeat)
    finally:
        os.close(fd)
    return TestRunResult(retvals, ns, prog.matches(retvals))


test_run.__test__ = False   # type: ignore[attr-defined]
