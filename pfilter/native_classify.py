"""Native code for rule sets: one machine-code function per classification plan that runs every
rule on a packet while the packet is in the registers and the L1 cache, and writes the rule bits,
counts and byte totals the Cython engine (pfilter._classify.RuleEngine) writes.

Imports pfilter.native (and through it llvmlite, lazily), pfilter.lowering and numpy.
`classifier_for(plan)` (re-exported as pfilter.native.classifier_for) returns a NativeClassifier
whose `run` has RuleEngine.run's signature and results; pfilter.classification.run calls it for
backend "native" (or "auto" on large inputs).

Code shape, per packet (one loop over the rows; ctypes releases the GIL around each call, so
threads classify disjoint rows in parallel; a call handles at most CHUNK_ROWS rows, so Python
regains control, Ctrl-C, between calls):
  1. the plan's equality groups (a value node such as the IPv4 source address or the TCP
     destination port, compared `jeq #k` with many constants): each group's value computed once
     through its chain of value nodes, then compared with all its constants at once (vector
     compares, 64 lanes at a time); a match ORs in the rules that meet that test (Plan.trig).
     A group that no rule reaches unless the EtherType is one of a few (_ethertypes: the IPv4
     address and port groups, the IPv6 and ARP ones) is looked up only under a branch on those;
  2. each rule's *default* verdict: its own program (pfilter.native's branching filter) with
     every group test taken as false, inlined; a rule that cannot accept that way (`host X`,
     `tcp port N`: found on the lowering's graph) has none, and LLVM threads the tests the
     remaining rules share (`ldh [12]; jeq #0x800` once per packet);
  3. the rules marked in 1. replace their default by their exact verdict (the unchanged program,
     a call through a table);
  4. the set bits of each 64-rule word (usually few) update counts[r] and nbytes[r], one by
     one, and OR into the output row.
Why the result is exact: a rule's default differs from its program only on a path through one
of its group tests that is true. Such a test compares the group's value node, which equals A on
every path into it (the plan's guarantee), with its constant; so the packet's group value equals
that constant and step 1 marked the rule, which step 3 then evaluates exactly (a group skipped
for the packet's EtherType has no test any rule reaches). Where computing a
group value reads past caplen, the value is garbage but harmless: a rule reaching that test
returns 0 at the same load in its default as in its program (the same guards run before the
test), and a spurious mark only costs an exact evaluation.
"""
from __future__ import annotations

import ctypes
import hashlib
import struct
from typing import Any

import numpy as np

from . import native
from .lowering import lower

__all__ = ["NativeClassifier", "classifier_for"]

#: rows one native call classifies before returning to Python
CHUNK_ROWS = 1 << 16

_RUN = ctypes.CFUNCTYPE(ctypes.c_int64, *([ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 4
                                          + [ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64]
                                          + [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2
                                          + [ctypes.c_void_p]))


def classifier_for(plan: Any) -> NativeClassifier:
    """Native code for a classification plan (pfilter.classification.plan.Plan): every rule of
    plan.programs in one function (from the in-memory cache when it was compiled before)."""
    return NativeClassifier(plan)


def _group_jumps(plan: Any) -> list[dict[int, int]]:
    """Per rule, {instruction index: plan test node} of its conditional jumps that are
    equality-group tests (the `jeq #k` ending a plan test node whose tgroup is set)."""
    from .classification.plan import OP_TEST
    ends = list(plan.starts[1:]) + [len(plan.code)]
    out = []
    for r, insns in enumerate(plan.programs):
        rows = plan.code[int(plan.starts[r]):int(ends[r])]
        at = {}
        for i in np.flatnonzero(rows["code"] == OP_TEST):
            if plan.tgroup[int(rows[i]["k"])] >= 0:
                j = int(i)
                while (insns[j][0] & 0x07) != 0x05:      # the block's jump (BPF_JMP)
                    j += 1
                at[j] = int(rows[i]["k"])
        out.append(at)
    return out


def _may_accept(low: Any, false_at: frozenset[int]) -> bool:
    """Whether the program can return nonzero with the jumps at `false_at` taken as false: some
    `ret a` or `ret #k` (k != 0) is reachable from the entry. When not, its default verdict is 0."""
    seen, stack = {0}, [0]
    while stack:
        blk = low.blocks[stack.pop()]
        if blk.term == "ret_a" or (blk.term == "ret_k" and blk.term_insn[1][3]):
            return True
        succs = blk.succs[1:] if blk.term == "jcond" and blk.term_insn[0] in false_at else blk.succs
        for s in succs:
            if s not in seen:
                seen.add(s)
                stack.append(s)
    return False


def _ethertypes(plan: Any, lows: list[Any], jumps: list[dict[int, int]]) -> list[frozenset[int] | None]:
    """Per group: the EtherTypes outside which no rule reaches any of its tests, or None when
    there is no such set. A rule's EtherType tests are its `jeq #k` on A holding `ldh [12]` (on
    every path into the block); its test is reached under EtherType e when a path from the entry
    leads to it, each EtherType test taking the edge e decides. When some rule reaches a test of
    the group under an EtherType it never compares with (or has loops), there is no set. (A
    packet too short for `ldh [12]` reaches none: every EtherType test loads it first.)"""
    out: list[set[int] | None] = [set() for _ in plan.gvalue]
    for low, gj in zip(lows, jumps):
        if not gj:
            continue
        reached = _reached_by_ethertype(low, gj) if not low.has_loops else None
        for pc, node in gj.items():
            g = int(plan.tgroup[node])
            if reached is None or None in reached[pc]:
                out[g] = None
            elif out[g] is not None:
                out[g] |= reached[pc]     # type: ignore[operator]
    return [None if st is None else frozenset(st) for st in out]


def _reached_by_ethertype(low: Any, jumps: dict[int, int]) -> dict[int, set[int | None]]:
    """{jump pc: the EtherTypes under which the loop-free program reaches it}; None stands for
    every EtherType the program never compares with."""
    from .lowering import _uses_defs
    holds = [False] * len(low.blocks)     # A holds `ldh [12]` on entry, on every path
    seen = [False] * len(low.blocks)
    tests: dict[int, int] = {}            # block -> k of its `jeq #k` on `ldh [12]`
    for blk in low.blocks:                # forward jumps only: program order is topological
        h = holds[blk.index] if blk.index else False
        for _pc, (code, _jt, _jf, k) in blk.body:
            if "A" in _uses_defs(code, k)[1]:
                h = (code, k) == (0x28, 12)
        if h and blk.term == "jcond" and blk.term_insn[1][0] == 0x15:
            tests[blk.index] = blk.term_insn[1][3]
        for s in blk.succs:
            holds[s] = h if not seen[s] else holds[s] and h
            seen[s] = True
    out: dict[int, set[int | None]] = {pc: set() for pc in jumps}
    for e in [*set(tests.values()), None]:
        stack, visited = [0], {0}
        while stack:
            blk = low.blocks[stack.pop()]
            succs = blk.succs
            if blk.index in tests:
                succs = blk.succs[:1] if e == tests[blk.index] else blk.succs[1:]
            if blk.term == "jcond" and blk.term_insn[0] in out:
                out[blk.term_insn[0]].add(e)
            for s in succs:
                if s not in visited:
                    visited.add(s)
                    stack.append(s)
    return out


def _words(rules: Any, nw: int) -> list[int]:
    """nw 64-bit words with the bits of `rules` set."""
    words = [0] * nw
    for r in rules:
        words[int(r) >> 6] |= 1 << (int(r) & 63)
    return words


def _module_ir(plan: Any, lows: list[Any], name: str) -> str:
    import llvmlite.binding as llvm
    import llvmlite.ir as ir

    m = ir.Module(name=name)
    m.triple = llvm.get_process_triple()
    t = native._Ir(m)
    nr = len(lows)
    nw = (nr + 63) // 64
    i1, i8, i32, i64, ptr, i64p, c32, c64 = t.i1, t.i8, t.i32, t.i64, t.ptr, t.i64p, t.c32, t.c64
    i32p = i32.as_pointer()
    # per rule: its default verdict (group tests false, inlined) and its exact verdict (a call)
    defaults, exact = [], []
    jumps = _group_jumps(plan)
    for r, (low, gj) in enumerate(zip(lows, jumps)):
        false_at = frozenset(gj)
        native._branching_flt(t, low, f"{name}_r{r}")
        exact.append(m.get_global(f"{name}_r{r}_flt"))
        if _may_accept(low, false_at):
            # plain `jeq`s here: LLVM then shares the loads and tests the inlined defaults repeat
            # (`ldh [12]; jeq #0x800`) across the rules, which outweighs the mispredicted switch
            # branches the opaque form avoids in a single filter (bench/results/latest_native_compile.md)
            native._branching_flt(t, low, f"{name}_d{r}", false_at, opaque_jeq=False)
            defaults.append(m.get_global(f"{name}_d{r}_flt"))
        else:
            defaults.append(None)
    fty = exact[0].type
    table = ir.GlobalVariable(m, ir.ArrayType(fty, nr), name=f"{name}_exact")
    table.initializer = ir.Constant(ir.ArrayType(fty, nr), exact)
    table.global_constant = True
    table.linkage = "internal"
    for f in exact:    # called through the table: keep them out of line
        f.attributes.discard("alwaysinline")
        f.attributes.add("noinline")
    # the groups' trigger masks: row gstart[g] + i = the rules meeting the group's i-th test,
    # then a zero row
    ngt = len(plan.gtest)
    trig = []
    for gt in plan.gtest:
        s, e = int(plan.trig_start[gt]), int(plan.trig_start[gt + 1])
        trig.extend(_words(plan.trig[s:e], nw))
    trig.extend([0] * nw)       # row ngt: no test matched
    trig_tab = ir.GlobalVariable(m, ir.ArrayType(i64, len(trig)), name=f"{name}_trig")
    trig_tab.initializer = ir.Constant(ir.ArrayType(i64, len(trig)), [c64(w) for w in trig])
    trig_tab.global_constant = True
    trig_tab.linkage = "internal"

    fn = t.function(f"{name}_run", i64, [ptr, i64, i64p, i32p, i32p, i64p, i64, ptr, i64, i64p, i64p, i64, i64, i64p],
                    noalias=(0, 2, 3, 4, 5, 7, 9, 10, 13))
    data, size, offsets, caplen, wirelen, rows, packed, out, width, counts, nbytes, start, stop, status = fn.args
    cttz = ir.Function(m, ir.FunctionType(i64, [i64, i1]), name="llvm.cttz.i64")
    bswap64 = m.declare_intrinsic("llvm.bswap", [i64])
    bitrev64 = ir.Function(m, ir.FunctionType(i64, [i64]), name="llvm.bitreverse.i64")
    eb = ir.IRBuilder(fn.append_basic_block("entry"))
    total = eb.alloca(i64, name="total")
    eb.store(c64(0), total)
    has_rows = eb.icmp_unsigned("!=", eb.ptrtoint(rows, i64), c64(0))
    has_out = eb.icmp_unsigned("!=", eb.ptrtoint(out, i64), c64(0))
    is_packed = eb.icmp_unsigned("!=", packed, c64(0))
    zero_word = eb.bitcast(native._zero_word(t, name), ptr)
    dummy = ir.GlobalVariable(m, i64, name=f"{name}_norow")
    dummy.initializer = c64(0)
    dummy.linkage = "internal"

    def row(b: Any, at: Any) -> Any:
        """rows[at], or at when there are no rows (the load then reads a dummy word)"""
        return b.select(has_rows, b.load(b.select(has_rows, b.gep(rows, [at]), dummy)), at)

    j, b, done = native._rows_loop(t, fn, eb, start, stop)

    nxt = b.add(j, c64(1))
    i = row(b, j)
    b = native._prefetch(t, fn, b, j, stop, data, size, lambda pb, ahead: pb.load(pb.gep(offsets, [row(pb, ahead)])))
    b, o, c = native._packet(t, fn, b, i, data, size, offsets, caplen, status)
    p = b.gep(data, [o])
    wl = b.load(b.gep(wirelen, [i]))
    wl64 = b.zext(wl, i64)
    len64 = b.zext(c, i64)
    outrow = b.gep(out, [b.mul(i, width)])

    # 1. the groups: each group's value node computed once from the root through its parents
    # (bytes past caplen read as zero, a zero divisor as one: any value is safe here, see
    # below); its constants compared all at once (a vector compare); a match marks the rules
    # meeting that test, to be evaluated exactly

    def load(b: Any, off: Any, size: int) -> Any:
        inside = b.icmp_unsigned(">=", len64, b.add(off, c64(size)))
        return t.load_be(b, b.select(inside, b.gep(p, [off]), zero_word), size)

    def divisor(b: Any, x: Any) -> tuple[Any, Any]:
        return b, b.select(b.icmp_unsigned("==", x, c32(0)), c32(1), x)

    def value(b: Any, v: int, memo: dict[int, tuple[Any, Any]]) -> tuple[Any, Any]:
        """(A, X) of value node v (memo: the values computed before in this basic block)"""
        if v not in memo:
            parent = int(plan.vparent[v])
            a, x = (c32(0), c32(0)) if parent < 0 else value(b, parent, memo)
            regs = native._Values(A=a, X=x)
            s = int(plan.vstart[v])
            for rec in plan.vcode[s:s + int(plan.vlen[v])]:
                b = native._insn(t, b, int(rec["code"]), int(rec["k"]), regs, load, divisor, wl)
            memo[v] = (regs["A"], regs["X"])
        return memo[v]

    vw = ir.VectorType(i64, nw)     # a row of trigger words, OR-ed as one vector

    def group(b: Any, g: int, memo: dict[int, tuple[Any, Any]], trigv: Any) -> Any:
        """trigv OR-ed with the trigger row of group g's matching test (its zero row if none)"""
        a, _x = value(b, int(plan.gvalue[g]), memo)
        gs, ge = int(plan.gstart[g]), int(plan.gstart[g + 1])
        for s in range(gs, ge, 64):
            # up to 64 constants per vector compare (padded with copies of the first one)
            consts = [int(k) for k in plan.gconst[s:min(s + 64, ge)]]
            lanes = -(-len(consts) // 16) * 16
            consts += [consts[0]] * (lanes - len(consts))
            vt = ir.VectorType(i32, lanes)
            splat = _splat(b, a, lanes)
            hits = b.zext(b.bitcast(b.icmp_unsigned("==", splat, ir.Constant(vt, [c32(k) for k in consts])),
                                    ir.IntType(lanes)), i64)
            # no branch on a match (a third of the packets match some group in a mixed stream):
            # the matching test's row of the trigger table, or its zero row
            row0 = b.mul(b.select(b.icmp_unsigned("!=", hits, c64(0)),
                                  b.add(b.call(cttz, [hits, ir.Constant(i1, 0)]), c64(s)), c64(ngt)), c64(nw))
            slot = b.bitcast(b.gep(trig_tab, [c64(0), row0]), vw.as_pointer())
            trigv = b.or_(trigv, b.load(slot, align=8))
        return trigv

    # the groups no rule meets unless the EtherType is one of a few (_ethertypes): looked up
    # under a branch on it, one per such set of EtherTypes; the others on every packet
    sets = _ethertypes(plan, lows, jumps)
    trigv = ir.Constant(vw, None)
    memo: dict[int, tuple[Any, Any]] = {}
    for g in range(len(plan.gvalue)):
        if sets[g] is None:
            trigv = group(b, g, memo, trigv)
    etype = load(b, c64(12), 2)
    for types in sorted({st for st in sets if st is not None}, key=sorted):
        on = ir.Constant(i1, 0)
        for k in sorted(types):
            on = b.or_(on, b.icmp_unsigned("==", etype, c32(k)))
        inside = fn.append_basic_block()
        joined = fn.append_basic_block()
        before = b.block
        b.cbranch(on, inside, joined)
        ib = ir.IRBuilder(inside)
        inner = trigv
        local: dict[int, tuple[Any, Any]] = dict(memo)
        for g in range(len(plan.gvalue)):
            if sets[g] == types:
                inner = group(ib, g, local, inner)
        ib.branch(joined)
        b = ir.IRBuilder(joined)
        phi = b.phi(vw)
        phi.add_incoming(trigv, before)
        phi.add_incoming(inner, ib.block)
        trigv = phi

    trigw = [b.extract_element(trigv, ir.Constant(i32, w)) for w in range(nw)]

    # 2. default verdicts (inlined: LLVM folds most to a constant), replaced for the marked rules
    # by their exact verdicts, then 3. the packet's hits
    for q in range(nw):
        word = c64(0)
        for r in range(q * 64, min(q * 64 + 64, nr)):
            if defaults[r] is None:
                continue
            v = b.call(defaults[r], [p, c, wl, total])
            word = b.or_(word, b.shl(b.zext(b.icmp_unsigned("!=", v, c32(0)), i64), c64(r - q * 64)))
        word = b.and_(word, b.xor(trigw[q], c64(-1)))
        again = fn.append_basic_block(f"again{q}")
        settled = fn.append_basic_block(f"settled{q}")
        before = b.block
        b.cbranch(b.icmp_unsigned("!=", trigw[q], c64(0)), again, settled)
        ab_ = ir.IRBuilder(again)
        tw = ab_.phi(i64)
        acc = ab_.phi(i64)
        tw.add_incoming(trigw[q], before)
        acc.add_incoming(word, before)
        bitno = ab_.call(cttz, [tw, ir.Constant(i1, 1)])
        f = ab_.load(ab_.gep(table, [c64(0), ab_.add(bitno, c64(q * 64))]))
        v = ab_.call(f, [p, c, wl, total])
        acc2 = ab_.or_(acc, ab_.shl(ab_.zext(ab_.icmp_unsigned("!=", v, c32(0)), i64), bitno))
        tw2 = ab_.and_(tw, ab_.sub(tw, c64(1)))
        tw.add_incoming(tw2, again)
        acc.add_incoming(acc2, again)
        ab_.cbranch(ab_.icmp_unsigned("!=", tw2, c64(0)), again, settled)
        b = ir.IRBuilder(settled)
        fin = b.phi(i64)
        fin.add_incoming(word, before)
        fin.add_incoming(acc2, again)
        word = fin
        # the packet's hits in this word, without a branch on them: counts and byte totals as
        # vector adds over the word's rules, the output row bytes OR-ed in
        lanes = min(64, nr - q * 64)
        mask = b.bitcast(b.trunc(word, ir.IntType(lanes)) if lanes < 64 else word, ir.VectorType(i1, lanes))
        # counts and byte totals: one add each per set bit (a packet meets few rules; vector adds
        # over all the word's rules cost more)
        counting = fn.append_basic_block(f"counting{q}")
        counted = fn.append_basic_block(f"counted{q}")
        before = b.block
        b.cbranch(b.icmp_unsigned("!=", word, c64(0)), counting, counted)
        cb = ir.IRBuilder(counting)
        left = cb.phi(i64)
        left.add_incoming(word, before)
        at = cb.add(cb.call(cttz, [left, ir.Constant(i1, 1)]), c64(q * 64))
        for arr, add in ((counts, c64(1)), (nbytes, wl64)):
            slot = cb.gep(arr, [at])
            cb.store(cb.add(cb.load(slot), add), slot)
        rest = cb.and_(left, cb.sub(left, c64(1)))
        left.add_incoming(rest, counting)
        cb.cbranch(cb.icmp_unsigned("!=", rest, c64(0)), counting, counted)
        b = ir.IRBuilder(counted)
        writing = fn.append_basic_block(f"writing{q}")
        packed_b = fn.append_basic_block(f"packed{q}")
        bytes_b = fn.append_basic_block(f"bytes{q}")
        after = fn.append_basic_block(f"after{q}")
        b.cbranch(has_out, writing, after)
        ir.IRBuilder(writing).cbranch(is_packed, packed_b, bytes_b)
        pb = ir.IRBuilder(packed_b)     # np.packbits order: rule 8k+0 is bit 0x80 of byte k
        nbyte = (lanes + 7) // 8
        ty = ir.IntType(8 * nbyte)
        v = pb.call(bswap64, [pb.call(bitrev64, [word])])
        slot = pb.bitcast(pb.gep(outrow, [c64(q * 8)]), ty.as_pointer())
        pb.store(pb.or_(pb.load(slot, align=1), pb.trunc(v, ty) if nbyte < 8 else v), slot, align=1)
        pb.branch(after)
        ub = ir.IRBuilder(bytes_b)
        vt8 = ir.VectorType(i8, lanes)
        slot = ub.bitcast(ub.gep(outrow, [c64(q * 64)]), vt8.as_pointer())
        ub.store(ub.or_(ub.load(slot, align=1), ub.zext(mask, vt8)), slot, align=1)
        ub.branch(after)
        b = ir.IRBuilder(after)
    b.branch(j.parent)
    j.add_incoming(nxt, b.block)
    db = ir.IRBuilder(done)
    db.store(c64(0), status)
    db.ret(stop)
    return str(m)


def _splat(b: Any, v: Any, lanes: int) -> Any:
    """A vector of `lanes` copies of scalar v."""
    import llvmlite.ir as ir
    vt = ir.VectorType(v.type, lanes)
    i32 = ir.IntType(32)
    return b.shuffle_vector(b.insert_element(ir.Constant(vt, None), v, ir.Constant(i32, 0)), ir.Constant(vt, None),
                            ir.Constant(ir.VectorType(i32, lanes), [ir.Constant(i32, 0)] * lanes))


class NativeClassifier:
    """Machine code for a rule set: `run` as pfilter._classify.RuleEngine.run. `compile_seconds`
    is what generating it took (0.0 when it came from the cache)."""

    __slots__ = ("nrules", "compile_seconds", "_run")

    def __init__(self, plan: Any) -> None:
        self.nrules = len(plan.programs)
        self._run: Any = None
        self.compile_seconds = 0.0
        if not self.nrules:
            return
        h = hashlib.sha256()
        for insns in plan.programs:      # the rule set's identity: every program, in order
            h.update(struct.pack("<I", len(insns)))
            h.update(b"".join(struct.pack("<HBBI", *t) for t in insns))
        digest = h.hexdigest()
        key = "classify/" + digest
        cached = key in native._cache
        name = f"pc{digest[:24]}"
        self._run, seconds = native.machine_code(
            key, lambda: _module_ir(plan, [lower(p) for p in plan.programs], name), f"{name}_run", _RUN)
        self.compile_seconds = 0.0 if cached else seconds

    def __repr__(self) -> str:
        return f"<NativeClassifier {self.nrules} rules>"

    def run(self, data: Any, offsets: Any, caplen: Any, wirelen: Any, rows: Any, out: Any, packed: bool,
            counts: Any, nbytes: Any, classes: bool = True) -> int:
        """Evaluate every rule on packets `rows` (int64 indices; None = all) of a batch, as
        RuleEngine.run does: out is None, or a zeroed C-contiguous uint8 array of shape
        (n, nrules) (or (n, ceil(nrules/8)) with packed, np.packbits order) receiving the rule
        bits; counts[r] and nbytes[r] grow for every accepting packet. `classes` is accepted for
        the engine's signature (native code has no class table); returns 0 (classes made)."""
        del classes
        data, offsets, caplen, wirelen = (np.ascontiguousarray(a) for a in (data, offsets, caplen, wirelen))
        if not (data.dtype == np.uint8 and offsets.dtype == np.int64 and caplen.dtype == np.uint32
                and wirelen.dtype == np.uint32):
            raise TypeError("data, offsets, caplen, wirelen must be uint8, int64, uint32, uint32 arrays")
        n = len(offsets)
        if len(caplen) != n or len(wirelen) != n:
            raise ValueError("batch arrays differ in length")
        nr = self.nrules
        for a in (counts, nbytes):
            if not (isinstance(a, np.ndarray) and a.dtype == np.int64 and a.shape == (nr,) and a.flags.c_contiguous
                    and a.flags.writeable):
                raise ValueError("counts and nbytes need one entry per rule (writable int64 arrays)")
        if rows is not None:
            rows = np.ascontiguousarray(rows, dtype=np.int64)
            if rows.ndim != 1:
                raise ValueError("rows must be a 1-D array of packet indices")
            if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= n):
                bad = rows[(rows < 0) | (rows >= n)][0]
                raise IndexError(f"row {bad} outside the batch (0..{n - 1})")
        width = 0
        if out is not None:
            width = (nr + 7) // 8 if packed else nr
            if not (isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (n, width)
                    and out.flags.c_contiguous and out.flags.writeable):
                raise ValueError(f"out must be a writable C-contiguous uint8 array of shape ({n}, {width})")
        nrows = n if rows is None else len(rows)
        if nr == 0 or nrows == 0:
            return 0
        size = len(data)
        dp = data.ctypes.data if size else counts.ctypes.data     # never read when size is 0
        status = np.zeros(1, np.int64)
        args = (dp, size, offsets.ctypes.data, caplen.ctypes.data, wirelen.ctypes.data,
                None if rows is None else rows.ctypes.data, int(bool(packed)),
                None if out is None or not width else out.ctypes.data, width, counts.ctypes.data,
                nbytes.ctypes.data)
        j = 0
        while j < nrows:
            j = self._run(*args, j, min(nrows, j + CHUNK_ROWS), status.ctypes.data)
            if status[0]:
                raise ValueError(f"packet {j} lies outside the data buffer")
        return 0
