"""Native code for cBPF programs: machine code generated through llvmlite (LLVM's MCJIT) from
pfilter.lowering, the lowering every compiled target shares. `Program.jit()` returns a
NativeProgram with the Program's run / run_batch / run_indexed / match_batch and the VM's results
on every input (tests/test_native_*.py hold it to that).

Imports pfilter.lowering, .validate, .batch, .errors, and llvmlite only when code is generated:
pfilter imports and runs without it; asking for native code then raises NativeUnavailableError
naming the extra to install (`pip install 'pfilter-bpf[native]'`).

The generated module holds, per program:
  * `flt(p, caplen, wirelen, total) -> u32`, internal and always inlined, in one of two shapes:
    - straight-line (loop-free programs of at most STRAIGHT_MAX_BLOCKS blocks): every block
      evaluated in program order under its reach predicate, registers as SSA values merged by
      selects, loads reading the packet or a zero word, the lowering's guards and a zero X
      divisor folded into one `fail` flag; no branch depends on the packet's bytes, so mixed
      traffic costs no mispredictions (the x86 passes that turn selects back into branches are
      off). It is built twice: a fast path for packets of at least _fast_length(low) bytes (the
      absolute loads read the packet directly, no length guard: almost every packet), the
      general code for the rest; `ret #0` blocks add nothing (the result starts at 0);
    - branching (the rest): the lowering's blocks as LLVM blocks, A/X/M[] as stack slots that
      mem2reg turns into SSA values, one length guard per block where the lowering puts one (no
      check per load), the indirect-load guards redone when X changes, and the loop budget (a
      taken backward `ja` adds its span to `*total`; past validate.loop_budget(caplen) for this
      packet the program returns 0); tests of A that ask "is A one of these constants" (`host
      a or host b or ...`: a chain of `jeq #k`, or a search tree of them) are one vector compare
      and one branch (_jeq_sets); other `jeq #k` chains stay chains (a switch's binary search
      would mispredict on every packet);
    both with big-endian loads and libpcap's division-by-zero and shift rules;
  * `run(data, size, offsets, caplen, wirelen, out, start, stop, status) -> i64`: the batch loop.
    Each packet's offset and caplen are checked against the data buffer before it is read (a bad
    one stops the run: status = 1 and its index returned, out filled up to it); the loop stops
    early, returning the next index, once loop charges pass CHUNK_WORK, so that Python regains
    control (Ctrl-C) between calls;
  * `run_idx(..., index, ...)`: the same over the packets index[start:stop] (indexes outside the
    batch skipped, as in the VM).
The batch loop prefetches the packet PREFETCH_AHEAD places ahead into every cache level
(locality 3: a non-temporal prefetch keeps the lines out of L2 and costs more than it saves when
the packets fit in the cache), only the lines of the bytes the program is likely to read
(_prefetch_span: one line for most packets of `vlan and ip`, where a fixed two cost memory
bandwidth). Rule sets (classify) are compiled by pfilter.native_classify from the same filter
builders: `classifier_for(plan)`.
One ctypes call per chunk of packets: ctypes releases the GIL around a call of a CFUNCTYPE
foreign function, so the filtering runs without it. Compiled code is kept in memory by the
program's hash (Lowering.digest); NativeProgram.compile_seconds says what generating it cost.
"""
from __future__ import annotations

import ctypes
import heapq
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .batch import PacketBatch, packet_bytes
from .errors import FilterError
from .lowering import LOAD_SIZE, Lowering, lower
from .validate import LOOP_BUDGET_BASE, LOOP_BUDGET_MAX, LOOP_BUDGET_PER_BYTE

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .program import Program

__all__ = ["NativeProgram", "NativeUnavailableError", "available", "jit", "jit_many", "classifier_for", "cache_info",
           "EXTRA_HINT"]

EXTRA_HINT = "pip install 'pfilter-bpf[native]' (llvmlite)"

#: loop charges one call may spend before it returns to Python (as the VM's CHUNK_WORK); straight
#: instructions too: packets per call = CHUNK_WORK // program length
CHUNK_WORK = 1 << 26
#: the batch loop prefetches the headers (at most PREFETCH_LINES cache lines) of the packet this many ahead
PREFETCH_AHEAD = 32
PREFETCH_LINES = 2
PREFETCH_LOCALITY = 3


class NativeUnavailableError(FilterError, ImportError):
    """Native code was asked for but llvmlite is not installed (or cannot generate code here).
    A FilterError (the CLI prints it as one line) and an ImportError (a missing extra)."""


_lock = threading.RLock()
_engine: Any = None
_tm: Any = None
_cache: dict[str, tuple[Any, float]] = {}
_llvm_error: str | None = None


def available() -> bool:
    """True when native code can be generated (llvmlite importable and LLVM initialised)."""
    try:
        _init()
    except NativeUnavailableError:
        return False
    return True


def _init() -> Any:
    global _engine, _tm, _llvm_error
    if _engine is not None:
        return _engine
    if _llvm_error is not None:
        raise NativeUnavailableError(_llvm_error)
    with _lock:
        if _engine is not None:
            return _engine
        try:
            import llvmlite.binding as llvm
        except ImportError:
            _llvm_error = f"native code needs llvmlite, which is not installed: {EXTRA_HINT}"
            raise NativeUnavailableError(_llvm_error) from None
        try:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            # keep the straight-line code's selects as cmov: by default x86 codegen turns some of
            # them back into branches, data-dependent ones here
            llvm.set_option("", "-x86-cmov-converter=false")
            llvm.set_option("", "-disable-cgp-select2branch")
            target = llvm.Target.from_default_triple()
            _tm = target.create_target_machine(cpu=llvm.get_host_cpu_name(),
                                               features=llvm.get_host_cpu_features().flatten(), opt=3)
            _engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _tm)
        except Exception as exc:  # pragma: no cover - a broken LLVM build
            _llvm_error = f"llvmlite cannot generate native code here ({exc}); {EXTRA_HINT}"
            raise NativeUnavailableError(_llvm_error) from None
    return _engine


def cache_info() -> dict[str, int]:
    """How many programs have native code in memory."""
    return {"programs": len(_cache)}


# ---------------------------------------------------------------------------------------------
# IR generation

#: programs of up to this many blocks, without backward jumps, are compiled
#: straight-line (every block evaluated under its reach predicate, no data-dependent branch):
#: packets of a mixed stream take the program's paths in no predictable order, and a mispredicted
#: branch costs more than the few instructions of the paths not taken
STRAIGHT_MAX_BLOCKS = 24
#: the largest caplen the straight-line code's fast path may ask for (see _fast_length)
FAST_MAX = 128
#: tests of A against a set of at least this many constants become one vector compare (see _jeq_sets)
JEQ_SET_MIN = 4
#: the most blocks one such region takes (a longer chain is several regions, one after another)
REGION_MAX = 256


class _Ir:
    """The llvmlite types, constants and intrinsics one module's code is built from."""

    def __init__(self, m: Any) -> None:
        import llvmlite.ir as ir
        self.ir, self.m = ir, m
        self.i1, self.i8, self.i16, self.i32, self.i64 = (ir.IntType(w) for w in (1, 8, 16, 32, 64))
        self.ptr = self.i8.as_pointer()
        self.i64p = self.i64.as_pointer()
        self.bswap32 = m.declare_intrinsic("llvm.bswap", [self.i32])
        self.bswap16 = m.declare_intrinsic("llvm.bswap", [self.i16])

    def c32(self, v: int) -> Any:
        return self.ir.Constant(self.i32, v & 0xFFFFFFFF)

    def c64(self, v: int) -> Any:
        return self.ir.Constant(self.i64, v)

    def load_be(self, b: Any, addr: Any, size: int) -> Any:
        """The big-endian 1-, 2- or 4-byte value at i8* addr, as i32."""
        if size == 1:
            return b.zext(b.load(addr), self.i32)
        ty = self.ir.IntType(8 * size)
        v = b.call(self.bswap32 if size == 4 else self.bswap16, [b.load(b.bitcast(addr, ty.as_pointer()), align=1)])
        return v if size == 4 else b.zext(v, self.i32)

    def function(self, name: str, ret: Any, args: list[Any], noalias: tuple[int, ...]) -> Any:
        fn = self.ir.Function(self.m, self.ir.FunctionType(ret, args), name=name)
        fn.attributes.add("nounwind")
        for i in noalias:
            fn.args[i].add_attribute("noalias")
        return fn

    def jcond(self, b: Any, code: int, a: Any, src: Any) -> Any:
        """The i1 condition of a jeq/jgt/jge/jset on A and src."""
        op = code & 0xF0
        if op == 0x40:
            return b.icmp_unsigned("!=", b.and_(a, src), self.c32(0))
        return b.icmp_unsigned({0x10: "==", 0x20: ">", 0x30: ">="}[op], a, src)


def _insn(t: _Ir, b: Any, code: int, k: int, regs: Any, load: Any, divisor: Any, wirelen: Any) -> Any:
    """Emit one non-terminator instruction: regs maps "A", "X", "M<k>" to values (get/put),
    load(b, off64, size) reads the packet, divisor(b, x) -> (builder, safe divisor) handles a zero
    X; returns the builder to continue with."""
    if code in (0x20, 0x28, 0x30, 0x40, 0x48, 0x50):
        off = t.c64(k) if code < 0x40 else b.add(b.zext(regs.get("X"), t.i64), t.c64(k))
        regs.put("A", load(b, off, LOAD_SIZE[code]))
    elif code == 0xB1:
        regs.put("X", b.shl(b.and_(load(b, t.c64(k), 1), t.c32(0xF)), t.c32(2)))
    elif code in (0x00, 0x01):
        regs.put("AX"[code], t.c32(k))
    elif code in (0x80, 0x81):
        regs.put("AX"[code & 1], wirelen)
    elif code in (0x60, 0x61):
        regs.put("AX"[code & 1], regs.get(f"M{k}"))
    elif code in (0x02, 0x03):
        regs.put(f"M{k}", regs.get("AX"[code & 1]))
    elif code == 0x07:
        regs.put("X", regs.get("A"))
    elif code == 0x87:
        regs.put("A", regs.get("X"))
    elif code == 0x84:
        regs.put("A", b.sub(t.c32(0), regs.get("A")))
    else:  # ALU with #k or X
        a = regs.get("A")
        src = regs.get("X") if code & 0x08 else t.c32(k)
        op = code & 0xF0
        if op in (0x30, 0x90):
            if code & 0x08:
                b, src = divisor(b, src)
            v = b.udiv(a, src) if op == 0x30 else b.urem(a, src)
        elif op in (0x60, 0x70):
            amount = b.and_(src, t.c32(31))
            v = b.shl(a, amount) if op == 0x60 else b.lshr(a, amount)
            if code & 0x08:
                v = b.select(b.icmp_unsigned("<", src, t.c32(32)), v, t.c32(0))
        else:
            v = {0x00: b.add, 0x10: b.sub, 0x20: b.mul, 0x40: b.or_, 0x50: b.and_, 0xA0: b.xor}[op](a, src)
        regs.put("A", v)
    return b


class _Slots:
    """Registers in stack slots (mem2reg makes SSA values of them): for the branching code."""

    def __init__(self, b: Any, names: list[str], zero: Any) -> None:
        self.slots = {r: b.alloca(zero.type, name=r) for r in names}
        for s in self.slots.values():
            b.store(zero, s)
        self.b = b

    def get(self, r: str) -> Any:
        return self.b.load(self.slots[r])

    def put(self, r: str, v: Any) -> None:
        self.b.store(v, self.slots[r])


class _Values(dict):  # type: ignore[type-arg]
    """Registers as SSA values: for the straight-line code."""

    def get(self, r: str) -> Any:  # type: ignore[override]
        return self[r]

    def put(self, r: str, v: Any) -> None:
        self[r] = v


def _straight_line(low: Lowering) -> bool:
    return not low.has_loops and len(low.blocks) <= STRAIGHT_MAX_BLOCKS


def _module_ir(low: Lowering, name: str, indexed: bool = False) -> str:
    import llvmlite.binding as llvm
    import llvmlite.ir as ir

    m = ir.Module(name=name)
    m.triple = llvm.get_process_triple()
    t = _Ir(m)
    if _straight_line(low):
        _straight_flt(t, low, name)
    else:
        _branching_flt(t, low, name)
    return _batch_loops(t, low, name, indexed)


def _filter_function(t: _Ir, name: str) -> Any:
    """`<name>_flt(p, caplen, wirelen, total) -> u32`, internal and always inlined."""
    flt = t.function(f"{name}_flt", t.i32, [t.ptr, t.i32, t.i32, t.i64p], noalias=(0, 3))
    flt.linkage = "internal"
    flt.attributes.add("alwaysinline")
    return flt


def _straight_flt(t: _Ir, low: Lowering, name: str, false_at: frozenset[int] = frozenset()) -> None:
    """The filter of a loop-free program as one basic block. Blocks are evaluated in program order
    (forward jumps only: a topological order), each under `reach`, the i1 "the packet's path runs
    through here" (the or of the incoming edges' conditions). A register entering a block with
    several predecessors takes the value of the edge that was taken (a select per edge). Every
    packet load reads a real address: the packet's bytes when they are inside caplen, else a
    zero word (the packet's path never uses such a value: its guard below fails first). `fail`
    collects the VM's early returns of 0 on the path taken (a failed length guard, a division by
    a zero X); the result is the reached return's value, or 0 when `fail`."""
    ir = t.ir
    flt = _filter_function(t, name)
    p, caplen, wirelen, _total = flt.args
    b = ir.IRBuilder(flt.append_basic_block("entry"))
    zero = b.bitcast(_zero_word(t, name), t.ptr)
    len64 = b.zext(caplen, t.i64, name="len64")
    fast = _fast_length(low)
    if fast:
        bbs = flt.append_basic_block("fast"), flt.append_basic_block("slow")
        b.cbranch(b.icmp_unsigned(">=", len64, t.c64(fast)), *bbs)
        for bb, known in zip(bbs, (fast, 0)):
            _straight_body(t, low, ir.IRBuilder(bb), flt, zero, len64, known, false_at)
    else:
        _straight_body(t, low, b, flt, zero, len64, 0, false_at)


def _fast_length(low: Lowering) -> int:
    """The caplen of the straight-line code's fast path (0: none): the largest end of an absolute
    load of at most FAST_MAX bytes, when some block's length guard asks for it. A packet at least
    that long needs none of those guards and reads those bytes without a select."""
    ends = [blk.needs for blk in low.blocks if 0 < blk.needs <= FAST_MAX]
    return max(ends) if ends and any(blk.length_check for blk in low.blocks) else 0


def _straight_body(t: _Ir, low: Lowering, b: Any, flt: Any, zero: Any, len64: Any, known: int,
                   false_at: frozenset[int]) -> None:
    """The straight-line filter from builder b on, for a packet whose caplen is at least `known`
    (the length guards and absolute loads it covers are left out / read directly)."""
    ir = t.ir
    p, caplen, wirelen, _total = flt.args
    true, false = ir.Constant(t.i1, 1), ir.Constant(t.i1, 0)
    fail, result = false, t.c32(0)
    state = {"reach": true}

    def load(b: Any, off: Any, size: int) -> Any:
        if isinstance(off, ir.Constant) and off.constant + size <= known:
            return t.load_be(b, b.gep(p, [off]), size)
        inside = b.icmp_unsigned(">=", len64, b.add(off, t.c64(size)) if not isinstance(off, ir.Constant)
                                 else t.c64(off.constant + size))
        return t.load_be(b, b.select(inside, b.gep(p, [off]), zero), size)

    def divisor(b: Any, x: Any) -> tuple[Any, Any]:
        nonlocal fail
        is0 = b.icmp_unsigned("==", x, t.c32(0))
        fail = b.or_(fail, b.and_(state["reach"], is0))
        return b, b.select(is0, t.c32(1), x)

    incoming: list[list[tuple[Any, dict[str, Any]]]] = [[] for _ in low.blocks]
    names = ["A", "X"] + [f"M{w}" for w in sorted(low.mem_used)]
    regs = _Values((r, t.c32(0)) for r in names)
    for blk in low.blocks:
        if blk.index:
            edges = incoming[blk.index]
            if not edges:
                continue
            reach = edges[0][0]
            for cond, _ in edges[1:]:
                reach = b.or_(reach, cond)
            regs = _Values()
            for r in names:
                vals = [st[r] for _, st in edges]
                v = vals[-1]
                if r in blk.live_in:
                    for (cond, _), w in zip(edges[-2::-1], vals[-2::-1]):
                        v = v if w is v else b.select(cond, w, v)
                regs[r] = v
            state["reach"] = reach
        reach = state["reach"]
        if blk.length_check > known:
            fail = b.or_(fail, b.and_(reach, b.icmp_unsigned("<", len64, t.c64(blk.length_check))))
        guards = {g.at: g.size for g in blk.indirect}
        for pc, (code, _jt, _jf, k) in blk.body:
            if pc in guards:
                need = b.add(b.zext(regs["X"], t.i64), t.c64(guards[pc]))
                fail = b.or_(fail, b.and_(reach, b.icmp_unsigned("<", len64, need)))
            b = _insn(t, b, code, k, regs, load, divisor, wirelen)
        if blk.term in ("ret_k", "ret_a"):
            # a packet reaches exactly one return and result starts at 0: a `ret #0` adds nothing
            if blk.term == "ret_a" or blk.term_insn[1][3]:  # type: ignore[index]
                v = regs["A"] if blk.term == "ret_a" else t.c32(blk.term_insn[1][3])  # type: ignore[index]
                result = b.select(reach, v, result)
        elif blk.term == "jcond":
            code, _jt, _jf, k = blk.term_insn[1]  # type: ignore[index]
            cond = (false if blk.term_insn[0] in false_at  # type: ignore[index]
                    else t.jcond(b, code, regs["A"], regs["X"] if code & 0x08 else t.c32(k)))
            if blk.succs[0] == blk.succs[1]:
                incoming[blk.succs[0]].append((reach, regs))
            else:
                incoming[blk.succs[0]].append((b.and_(reach, cond), regs))
                incoming[blk.succs[1]].append((b.and_(reach, b.not_(cond)), regs))
        else:
            incoming[blk.succs[0]].append((reach, regs))
    b.ret(b.select(fail, t.c32(0), result))


def _zero_word(t: _Ir, name: str) -> Any:
    """A constant zero word (8 bytes) the straight-line code reads instead of bytes past caplen."""
    ir = t.ir
    word = ir.GlobalVariable(t.m, ir.ArrayType(t.i8, 8), name=f"{name}_zero")
    word.initializer = ir.Constant(ir.ArrayType(t.i8, 8), None)
    word.global_constant = True
    word.linkage = "internal"
    return word


def _branching_flt(t: _Ir, low: Lowering, name: str, false_at: frozenset[int] = frozenset(),
                   opaque_jeq: bool = True) -> None:
    """The filter as the lowering's blocks: a length guard per block where the lowering puts one,
    the loop budget on backward jumps. (Both filter builders take the conditional jumps to treat
    as false, `false_at`, by instruction index: pfilter.native_classify's default verdicts;
    `opaque_jeq=False` leaves the `jeq`s open to LLVM, for code inlined many times over.)"""
    ir = t.ir
    flt = _filter_function(t, name)
    p, buflen, wirelen, total = flt.args
    b = ir.IRBuilder(flt.append_basic_block("entry"))
    regs = _Slots(b, ["A", "X"] + [f"M{w}" for w in sorted(low.mem_used)], t.c32(0))
    len64 = b.zext(buflen, t.i64, name="len64")
    start_total = budget = None
    if low.has_loops:
        start_total = b.load(total, name="start_total")
        bud = b.add(t.c64(LOOP_BUDGET_BASE), b.mul(len64, t.c64(LOOP_BUDGET_PER_BYTE)))
        budget = b.select(b.icmp_unsigned("<", bud, t.c64(LOOP_BUDGET_MAX)), bud, t.c64(LOOP_BUDGET_MAX))
    bbs = [flt.append_basic_block(f"b{blk.start}") for blk in low.blocks]
    reject = flt.append_basic_block("reject")
    ir.IRBuilder(reject).ret(t.c32(0))
    b.branch(bbs[0])

    def guard(b: Any, ok: Any) -> Any:
        """Branch to reject unless ok; a builder in the continuation."""
        cont = flt.append_basic_block()
        b.cbranch(ok, cont, reject)
        regs.b = ir.IRBuilder(cont)
        return regs.b

    def divisor(b: Any, x: Any) -> tuple[Any, Any]:
        return guard(b, b.icmp_unsigned("!=", x, t.c32(0))), x

    def load(b: Any, off: Any, size: int) -> Any:
        return t.load_be(b, b.gep(p, [off]), size)

    sets = _jeq_sets(low, false_at) if opaque_jeq else {}
    for blk, bb in zip(low.blocks, bbs):
        b = regs.b = ir.IRBuilder(bb)
        if blk.length_check:
            b = guard(b, b.icmp_unsigned(">=", len64, t.c64(blk.length_check)))
        guards = {g.at: g.size for g in blk.indirect}
        for pc, (code, _jt, _jf, k) in blk.body:
            if pc in guards:
                b = guard(b, b.icmp_unsigned(">=", len64, b.add(b.zext(regs.get("X"), t.i64), t.c64(guards[pc]))))
            b = _insn(t, b, code, k, regs, load, divisor, wirelen)
        if blk.term == "ret_k":
            b.ret(t.c32(blk.term_insn[1][3]))  # type: ignore[index]
        elif blk.term == "ret_a":
            b.ret(regs.get("A"))
        elif blk.term in ("fall", "ja"):
            if blk.charge:
                spent = b.add(b.load(total), t.c64(blk.charge))
                b.store(spent, total)
                over = b.icmp_unsigned(">", b.sub(spent, start_total), budget)
                b.cbranch(over, reject, bbs[blk.succs[0]])
            else:
                b.branch(bbs[blk.succs[0]])
        else:
            pc, (code, _jt, _jf, k) = blk.term_insn  # type: ignore[misc]
            if pc in false_at:
                b.branch(bbs[blk.succs[1]])
                continue
            a = regs.get("A")
            if blk.index in sets:
                ks, yes, no = sets[blk.index]
                b.cbranch(_in_set(t, b, a, ks), bbs[yes], bbs[no])
                continue
            if code == 0x15 and opaque_jeq:
                # each `jeq #k` sees A through an empty asm: LLVM would otherwise merge a chain of
                # them into a switch and lower it as a binary search, whose branches depend on
                # the value and mispredict on mixed traffic; a chain of rarely taken branches
                # predicts well
                a = b.asm(ir.FunctionType(t.i32, [t.i32]), "", "=r,0", [a], side_effect=True)
            cond = t.jcond(b, code, a, regs.get("X") if code & 0x08 else t.c32(k))
            b.cbranch(cond, bbs[blk.succs[0]], bbs[blk.succs[1]])


def _jeq_sets(low: Lowering, false_at: frozenset[int]) -> dict[int, tuple[list[int], int, int]]:
    """Regions of tests on one value of A that amount to "is A one of these constants" (`host a
    or host b or ...`, as a chain of `jeq #k` or, from pfilter's optimizer, a search tree of
    `jgt #k` over such chains): block index of the region's first test -> (the constants, the
    block reached when A is one of them, the block reached otherwise).

    A region grows from a test through tests of A against constants that have no instruction
    before the jump and no predecessor outside it, until it leaves to exactly two blocks, one of
    them (the `yes` block) entered only by `jeq` edges taken. A does not change inside, so the
    region reaches `yes` for a value of A only if it equals the constant of such a `jeq`, and
    whether it does is found by running the region's tests on that constant. Regions with fewer
    than JEQ_SET_MIN constants are left to the branches; a region stops growing at REGION_MAX
    blocks (the chain goes on in another one)."""
    def test(blk: Any) -> bool:
        return (blk.term == "jcond" and blk.term_insn[1][0] in (0x15, 0x25, 0x35, 0x45)
                and blk.term_insn[0] not in false_at)
    sets: dict[int, tuple[list[int], int, int]] = {}
    absorbed: set[int] = set()
    for head in low.blocks:
        if head.index in absorbed or not test(head):
            continue
        region, ahead = {head.index}, sorted(head.succs)
        while ahead and len(region) < REGION_MAX:     # the successors, in program order
            blk = low.blocks[heapq.heappop(ahead)]
            if blk.index not in region and test(blk) and not blk.body and set(blk.preds) <= region:
                region.add(blk.index)
                for s in blk.succs:
                    heapq.heappush(ahead, s)
        edges = [(r, i, s) for r in sorted(region) for i, s in enumerate(low.blocks[r].succs) if s not in region]
        exits = {s for _r, _i, s in edges}
        jeq_taken = {(r, 0) for r in region if low.blocks[r].term_insn[1][0] == 0x15}  # type: ignore[index]
        yes = [x for x in exits if all(s != x or (r, i) in jeq_taken for r, i, s in edges)]
        if len(exits) != 2 or len(yes) != 1:
            continue
        no = (exits - set(yes)).pop()
        ks = [low.blocks[r].term_insn[1][3] for r, i, s in edges if s == yes[0]]  # type: ignore[index]
        members = [k for k in dict.fromkeys(ks) if _region_exit(low, head.index, region, k) == yes[0]]
        if len(members) >= JEQ_SET_MIN:
            sets[head.index] = (members, yes[0], no)
            absorbed |= region
    return sets


def _region_exit(low: Lowering, at: int, region: set[int], a: int) -> int:
    """The block a region of tests on A (see _jeq_sets) leaves to when A is `a`."""
    while at in region:
        blk = low.blocks[at]
        code, _jt, _jf, k = blk.term_insn[1]  # type: ignore[index]
        op = code & 0xF0
        taken = {0x10: a == k, 0x20: a > k, 0x30: a >= k, 0x40: a & k != 0}[op]
        at = blk.succs[0 if taken else 1]
    return at


def _in_set(t: _Ir, b: Any, a: Any, ks: list[int]) -> Any:
    """The i1 "A is one of ks": one vector compare of A against all of them (no branch per
    constant: a chain of 20 host tests cost 40 instructions a packet)."""
    ir = t.ir
    n = 1 << max(2, (len(ks) - 1).bit_length())
    vt = ir.VectorType(t.i32, n)
    one = b.insert_element(ir.Constant(vt, None), a, t.c32(0))
    all_a = b.shuffle_vector(one, one, ir.Constant(ir.VectorType(t.i32, n), [0] * n))
    hits = b.icmp_unsigned("==", all_a, ir.Constant(vt, [k & 0xFFFFFFFF for k in ks + ks[:1] * (n - len(ks))]))
    return b.icmp_unsigned("!=", b.bitcast(hits, ir.IntType(n)), ir.Constant(ir.IntType(n), 0))


def _batch_loops(t: _Ir, low: Lowering, name: str, indexed: bool) -> str:
    """Add the batch loop (`run`, or `run_idx` when indexed) calling `<name>_flt`; the module's IR text."""
    ir, m = t.ir, t.m
    i32, i64, ptr, i64p, c64 = t.i32, t.i64, t.ptr, t.i64p, t.c64
    flt = m.get_global(f"{name}_flt")
    args = [ptr, i64, i64p, i32.as_pointer(), i32.as_pointer(), i32.as_pointer(), i64, i64, i64p]
    if indexed:
        args[6:6] = [i64p, i64]
    fn = ir.Function(m, ir.FunctionType(i64, args), name=f"{name}_{'run_idx' if indexed else 'run'}")
    if indexed:
        data, size, offsets, caplen, wl, out, index, npk, start, stop, status = fn.args
    else:
        data, size, offsets, caplen, wl, out, start, stop, status = fn.args
        index = None
    for a in (data, offsets, caplen, wl, out, status) + ((index,) if indexed else ()):
        a.add_attribute("noalias")
    eb = ir.IRBuilder(fn.append_basic_block("entry"))
    tot = eb.alloca(i64, name="total")
    eb.store(c64(0), tot)
    j, bb_, done = _rows_loop(t, fn, eb, start, stop)
    nxt = bb_.add(j, c64(1))
    latch = fn.append_basic_block("latch")
    if indexed:
        i = bb_.load(bb_.gep(index, [j]))
        # an index outside the batch (npk packets) is skipped: the caller refuses them
        inb = bb_.and_(bb_.icmp_signed(">=", i, c64(0)), bb_.icmp_signed("<", i, npk))
        check = fn.append_basic_block("inb")
        bb_.cbranch(inb, check, latch)
        bb_ = ir.IRBuilder(check)
    else:
        i = j
        bb_ = _prefetch(t, fn, bb_, j, stop, data, size, lambda pb, ahead: pb.load(pb.gep(offsets, [ahead])),
                        _prefetch_span(low))
    rb, o, c = _packet(t, fn, bb_, i, data, size, offsets, caplen, status)
    r = rb.call(flt, [rb.gep(data, [o]), c, rb.load(rb.gep(wl, [i])), tot])
    rb.store(r, rb.gep(out, [i]))
    if low.has_loops:
        early = fn.append_basic_block("early")
        rb.cbranch(rb.icmp_unsigned(">=", rb.load(tot), c64(CHUNK_WORK)), early, latch)
        ebb = ir.IRBuilder(early)
        ebb.store(c64(0), status)
        ebb.ret(nxt)
    else:
        rb.branch(latch)
    lb = ir.IRBuilder(latch)
    lb.branch(j.parent)
    j.add_incoming(nxt, latch)
    db = ir.IRBuilder(done)
    db.store(c64(0), status)
    db.ret(stop)
    return str(m)


def _rows_loop(t: _Ir, fn: Any, eb: Any, start: Any, stop: Any) -> tuple[Any, Any, Any]:
    """(j, builder of the loop body, exit block) of a loop over rows j = start .. stop-1 entered
    from builder eb; the caller adds j's incoming value from its latch and fills the exit."""
    ir = t.ir
    head = fn.append_basic_block("head")
    body = fn.append_basic_block("body")
    done = fn.append_basic_block("done")
    eb.branch(head)
    hb = ir.IRBuilder(head)
    j = hb.phi(t.i64, name="j")
    j.add_incoming(start, eb.block)
    hb.cbranch(hb.icmp_signed("<", j, stop), body, done)
    return j, ir.IRBuilder(body), done


def _prefetch_span(low: Lowering) -> int:
    """Bytes from a packet's start the program is likely to read (at most PREFETCH_LINES lines):
    the largest absolute load's end, an indirect load's end counted from a 20-byte IP header
    after a 14-byte Ethernet one. Fewer lines fetched per packet is what pays when streaming
    from memory: `vlan and ip` reads 18 bytes, one line for most packets (bench/results/latest_native.md)."""
    ends = [blk.needs for blk in low.blocks]
    ends += [g.size + 14 + 20 for blk in low.blocks for g in blk.indirect]
    return min(64 * PREFETCH_LINES, max(ends, default=0))


def _prefetch(t: _Ir, fn: Any, b: Any, j: Any, stop: Any, data: Any, size: Any, offset_at: Any,
              span: int | None = None) -> Any:
    """Prefetch the headers of the packet PREFETCH_AHEAD rows after row j (when there is one;
    offset_at(builder, row) loads its offset): the lines holding its first `span` bytes, or
    PREFETCH_LINES lines when span is None; a builder to continue with."""
    ir, c64, c32 = t.ir, t.c64, t.c32
    ahead = b.add(j, c64(PREFETCH_AHEAD))
    pf = fn.append_basic_block("prefetch")
    cont = fn.append_basic_block("check")
    b.cbranch(b.icmp_signed("<", ahead, stop), pf, cont)
    pb = ir.IRBuilder(pf)
    prefetch = t.m.globals.get("llvm.prefetch.p0") or ir.Function(
        t.m, ir.FunctionType(ir.VoidType(), [t.ptr, t.i32, t.i32, t.i32]), name="llvm.prefetch.p0")
    po = offset_at(pb, ahead)
    po = pb.select(pb.icmp_unsigned("<", po, size), po, c64(0))
    if span is None:
        at = [64 * line for line in range(PREFETCH_LINES)]
    else:
        at = sorted(set(range(0, span, 64)) | {span - 1}) if span else []
    for a in at:
        pb.call(prefetch, [pb.gep(data, [pb.add(po, c64(a))]), c32(0), c32(PREFETCH_LOCALITY), c32(1)])
    pb.branch(cont)
    return ir.IRBuilder(cont)


def _packet(t: _Ir, fn: Any, b: Any, i: Any, data: Any, size: Any, offsets: Any, caplen: Any,
            status: Any) -> tuple[Any, Any, Any]:
    """(builder, offset, caplen) of packet i once its bytes are known to lie inside the data
    buffer; a packet outside it ends the call: *status = 1, the packet's index returned."""
    ir, c64 = t.ir, t.c64
    o = b.load(b.gep(offsets, [i]))
    c = b.load(b.gep(caplen, [i]))
    ok = b.and_(b.and_(b.icmp_signed(">=", o, c64(0)), b.icmp_signed("<=", o, size)),
                b.icmp_signed("<=", b.zext(c, t.i64), b.sub(size, o)))
    run = fn.append_basic_block("run")
    bad = fn.append_basic_block("bad")
    b.cbranch(ok, run, bad)
    badb = ir.IRBuilder(bad)
    badb.store(c64(1), status)
    badb.ret(i)
    return ir.IRBuilder(run), o, c


_RUN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_RUN_IDX = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                            ctypes.c_int64, ctypes.c_void_p)


def _compile(low: Lowering, indexed: bool = False) -> tuple[Any, float]:
    """(function, seconds) for a lowering's batch loop (`run`, or `run_idx` when indexed): from
    the cache, or generated now."""
    key = low.digest + ("/idx" if indexed else "")
    name = f"pf{low.digest[:24]}{'i' if indexed else ''}"
    return machine_code(key, lambda: _module_ir(low, name, indexed), f"{name}_{'run_idx' if indexed else 'run'}",
                        _RUN_IDX if indexed else _RUN)


def machine_code(key: str, make_ir: Any, function: str, prototype: Any) -> tuple[Any, float]:
    """(callable, seconds): the ctypes `prototype` of `function` in the module make_ir() returns
    (LLVM IR text), optimised and compiled to machine code now, or taken from the cache by `key`."""
    hit = _cache.get(key)
    if hit is not None:
        return hit
    engine = _init()
    import llvmlite.binding as llvm
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        _add_module(engine, _parsed(make_ir()))
        _cache[key] = (prototype(engine.get_function_address(function)), time.perf_counter() - t0)
        return _cache[key]


def _parsed(ir: str) -> Any:
    """The LLVM module of IR text, verified."""
    import llvmlite.binding as llvm
    mod = llvm.parse_assembly(ir)
    mod.verify()
    return mod


def _add_module(engine: Any, mod: Any) -> None:
    """Optimise a module (the O2 pipeline for this host's CPU) and compile it into the engine."""
    import llvmlite.binding as llvm
    pto = llvm.create_pipeline_tuning_options(speed_level=2)
    pb = llvm.create_pass_builder(_tm, pto)
    pb.getModulePassManager().run(mod, pb)
    engine.add_module(mod)
    engine.finalize_object()


def _compile_many(lows: list[Lowering]) -> None:
    """Machine code for the lowerings not yet in the cache, made at once: their modules linked
    into one, optimised and compiled together (the per-module work of LLVM and the JIT paid once)."""
    engine = _init()
    with _lock:
        todo = {low.digest: low for low in lows if low.digest not in _cache}
        if not todo:
            return
        t0 = time.perf_counter()
        names = {d: f"pf{d[:24]}" for d in todo}
        mod = None
        for d, low in todo.items():
            one = _parsed(_module_ir(low, names[d], False))
            if mod is None:
                mod = one
            else:
                mod.link_in(one)
        _add_module(engine, mod)
        seconds = (time.perf_counter() - t0) / len(todo)
        for d in todo:
            _cache[d] = (_RUN(engine.get_function_address(f"{names[d]}_run")), seconds)


def jit_many(programs: Any) -> list[NativeProgram]:
    """Native code for many Programs, as [jit(p) for p in programs] gives, in less time: the
    programs not in the cache are compiled together, in one LLVM module (each one's
    compile_seconds is then its share of that module's time)."""
    programs = list(programs)
    lows = [lower(p) for p in programs]
    new = {low.digest for low in lows if low.digest not in _cache}
    if len(new) > 1:
        _compile_many(lows)
    out = []
    for p, low in zip(programs, lows):
        nat = NativeProgram(p, low)
        if low.digest in new:
            nat.compile_seconds = _cache[low.digest][1]
            new.discard(low.digest)         # (a program given twice was compiled once)
        out.append(nat)
    return out


def classifier_for(plan: Any) -> Any:
    """Native code for a classification plan: pfilter.native_classify.classifier_for."""
    from .native_classify import classifier_for as build
    return build(plan)


def jit(program: Program) -> NativeProgram:
    """Native code for a Program (from the in-memory cache when it was compiled before)."""
    return NativeProgram(program)


class NativeProgram:
    """Machine code for one Program: the same run / run_batch / run_indexed / match_batch, the
    same results. `compile_seconds` is what generating the code took (0.0 when it came from the
    cache); `program` is the Program it runs."""

    __slots__ = ("program", "lowering", "compile_seconds", "_run", "_run_idx", "_per_call")

    def __init__(self, program: Program, lowering: Lowering | None = None) -> None:
        self.program = program
        self.lowering = lower(program) if lowering is None else lowering
        cached = self.lowering.digest in _cache
        self._run, seconds = _compile(self.lowering)
        self._run_idx: Any = None     # compiled on first use of run_indexed
        self.compile_seconds = 0.0 if cached else seconds
        self._per_call = max(1, CHUNK_WORK // max(1, len(program)))

    def __reduce__(self) -> tuple[Any, ...]:
        # machine code does not travel: a pickled NativeProgram is compiled again where it lands
        return (jit, (self.program,))

    def __len__(self) -> int:
        return len(self.program)

    def __repr__(self) -> str:
        return f"<NativeProgram {len(self.program)} instructions>"

    @property
    def linktype(self) -> int | None:
        return self.program.linktype

    @property
    def snaplen(self) -> int | None:
        return self.program.snaplen

    @property
    def source(self) -> str | None:
        return self.program.source

    def run(self, packet: bytes | bytearray | memoryview, wirelen: int | None = None) -> int:
        """The program's return value (0 = reject) on one packet; wirelen defaults to len(packet)."""
        from .program import _wirelen
        data = packet_bytes(packet)
        wl = len(data) if wirelen is None else _wirelen(wirelen)
        arr = np.frombuffer(data, np.uint8) if data else np.zeros(1, np.uint8)
        offsets = np.zeros(1, np.int64)
        caplen = np.array([len(data)], np.uint32)
        wlen = np.array([wl], np.uint32)
        out = np.zeros(1, np.uint32)
        self._call(arr, offsets, caplen, wlen, out, None)
        return int(out[0])

    def run_batch(self, batch: PacketBatch, out: NDArray[np.uint32] | None = None) -> NDArray[np.uint32]:
        """One uint32 return value per packet of a PacketBatch."""
        from .program import _arrays, _out
        data, offsets, caplen, wirelen = _arrays(batch, "run_batch")
        n = len(offsets)
        out = np.empty(n, dtype=np.uint32) if out is None else _out(out, n)
        bad = self._call(data, offsets, caplen, wirelen, out, None)
        if bad >= 0:
            raise batch.bounds_error(bad)
        return out

    def run_indexed(self, batch: PacketBatch, index: Any, out: NDArray[np.uint32]) -> NDArray[np.uint32]:
        """Run only packets `index` of the batch, writing out[index] (as Program.run_indexed)."""
        from .program import _arrays, _indices, _out
        data, offsets, caplen, wirelen = _arrays(batch, "run_indexed")
        n = len(offsets)
        index = _indices(index, n)
        out = _out(out, n)
        bad = self._call(data, offsets, caplen, wirelen, out, index)
        if bad >= 0:
            raise batch.bounds_error(bad)
        return out

    def match_batch(self, batch: PacketBatch) -> NDArray[np.bool_]:
        """One bool per packet: did the program accept it (nonzero return)?"""
        return self.run_batch(batch) != 0

    def _call(self, data: Any, offsets: Any, caplen: Any, wirelen: Any, out: Any, index: Any) -> int:
        """Run the native loop over all packets (or index), a chunk per call; -1 or a bad index."""
        npk = len(offsets)
        if not (len(caplen) == len(wirelen) == len(out) == npk):
            raise FilterError("batch arrays and out differ in length")
        size = len(data)
        dp = data.ctypes.data if size else out.ctypes.data  # never read when size is 0
        op, cp, wp, outp = offsets.ctypes.data, caplen.ctypes.data, wirelen.ctypes.data, out.ctypes.data
        status = np.zeros(1, np.int64)
        sp = status.ctypes.data
        n = npk if index is None else len(index)
        i, per = 0, self._per_call
        while i < n:
            stop = min(n, i + per)
            if index is None:
                i = self._run(dp, size, op, cp, wp, outp, i, stop, sp)
            else:
                if self._run_idx is None:
                    self._run_idx = _compile(self.lowering, indexed=True)[0]
                i = self._run_idx(dp, size, op, cp, wp, outp, index.ctypes.data, npk, i, stop, sp)
            if status[0]:
                return int(i)   # the packet (its index in the batch) that lies outside the data
        return -1
