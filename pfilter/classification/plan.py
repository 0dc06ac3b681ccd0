"""pfilter.classification.plan, the shared-test planner: every rule program rewritten into
test nodes, packet classes and equality groups for the engine (pfilter._classify.RuleEngine, or
the native code of pfilter.native.classifier_for).

Imports numpy, pfilter.opcodes and pfilter.validate. Plan's arrays are the engine's whole input.

Design: shared test nodes, packet classes, equality groups
----------------------------------------------------------
Rules written by people repeat each other: nearly every rule starts with the EtherType test
(`ldh [12]; jeq #0x800`), IP rules then test the protocol (`ldb [23]; jeq #6`), the fragment
offset (`ldh [20]; jset #0x1fff`) and compute the header length (`ldxb 4*([14]&0xf)`) before
comparing a port or an address with a constant. Run one after another, N rules repeat that work
N times, and N separate passes over a batch also stream the packet bytes through the cache N
times.

Three designs were weighed. (1) Merging every program into one decision graph (a BDD over the
tests) shares the most but can blow up exponentially in the number of rules and needs a
semantics-preserving merge of cBPF control flow, registers and scratch memory: the riskiest
route to "each column equals the rule's own verdicts". (2) Shared-prefix evaluation (a trie of
the programs' leading instructions) stops sharing at the first difference, e.g. right after the
EtherType test for `ip6 ...` against `ip ...`. (3) Hash-consing pure tests into memoised nodes
shares a test wherever it sits and leaves each program's control flow untouched. pfilter builds
on (3) and then gets most of (1)'s benefit without merging programs, in four layers:

1. **Test nodes** (`Plan._rewrite`). Each validated program is cut into basic blocks. A block
   that runs straight-line code without scratch memory and ends in a conditional jump is a
   *value node* (its straight-line part; result A, X, or "a load fell off the packet") plus a
   jump: a *test node* (result true, false or abort). Nodes are hash-consed across all rules by
   their instructions: `ldh [12]` is one value node and `ldh [12]; jeq #0x800` one test node
   however many rules contain them. The block's first instruction becomes OP_TEST (node id,
   absolute targets; a target that is `ret #k` is folded into accept/reject); everything else
   runs unchanged in a cBPF interpreter with pfilter._vm's semantics.
2. **Register sources.** A block that reads A or X set by an earlier block is still pure when,
   on every path into it, that register holds the output of one known value node: a forward
   dataflow pass finds that node and makes it the new value node's *parent*. So `ldh [x + 16]`
   after `ldxb 4*([14]&0xf); ldh [x + 14]`, and `jeq #0x800` after `ldh [12]; jeq #0x86dd`,
   become shared nodes too; typical optimized rules become chains of test nodes only.
3. **Packet classes** (`_signature`). The test nodes that at least two rules meet near their
   start (EtherType, protocol, fragment, VLAN tests; at most 24) are evaluated first on every
   packet; their outcomes (2 bits each) are the packet's class key. The first packet of a class
   walks every rule through the signature tests on its path: a rule that reaches `ret` is
   decided for the whole class (its verdict is copied from the class row and counted once per
   class at the end); the others resume, for every packet of the class, where the walk stopped.
   A class table holds up to 1024 classes per batch (real traffic has tens); past that, packets
   run every rule from its start.
4. **Equality groups** (`Plan._groups`). A value node compared (`jeq #k`) with many constants
   outside the signature, such as a port or an address field, is a group: at most one of its
   tests is true for a packet, and one binary search over the sorted constants finds it. The
   class walk goes on through group tests taking them as false; a rule that then reaches `ret`
   is decided "by default". Per packet, each group that matters to the class is looked up once,
   and only the rules that meet the matching test (or all of the group's rules, when the field
   lies past the captured bytes) run again from where the signature left them.

The engine (pfilter._classify.RuleEngine.run, nogil) loops over packets outermost and rules
inside, so a packet stays in L1 for every rule; node results are memoised per packet (stamped
with the packet's sequence number, nothing cleared between packets); on a memo hit the block's
A and X are restored for the blocks after it.

Correctness argument: a test node reads nothing but the packet and its parent's outputs, which
equal the registers on every path into it, and writes no scratch memory; an abort returns 0
from whichever rule reaches it, as the interpreter would; no jump enters a block except at its
first instruction. A class decision is a replay of the rule's own path under outcomes that are
part of the class key; a default decision assumes group tests false and is redone whenever one
is not. So every column equals the rule's own Program verdicts; the tests check this against
Program.match_batch and libpcap's bpf_filter on corpus captures, with classes on and off, a
full class table, packed output and row subsets.

Measured (CPU time per packet for all rules, counts only, 126k packets of the generated
benchmark capture, 2-core VM; `separate` = one Program.match_batch pass per rule):

    rules   separate   1. nodes+2. sources   +3. classes   +4. groups
        1       8 ns             19 ns           15 ns         15 ns
       16     261 ns            181 ns          115 ns         81 ns
       64    1037 ns            653 ns          404 ns        327 ns
      256    4597 ns           2589 ns         1504 ns        356 ns

A single rule is run by the plain VM (Program.run_batch) instead. bench/test_bench_classify.py
measures the 1M-packet figures and the comparison with 64 `tcpdump --count` runs
(bench/results/latest_classify.md).
"""
from __future__ import annotations

import numpy as np

from ..opcodes import (BPF_ALU, BPF_ABS, BPF_IMM, BPF_IND, BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
                       BPF_LEN, BPF_MISC, BPF_MSH, BPF_NEG, BPF_RET, BPF_TAX, BPF_X,
                       BPF_CLASS, BPF_MISCOP, BPF_MODE, BPF_OP, BPF_SRC)
from ..validate import COMPILED_MAX_INSNS, validate
from .rules import is_program

__all__ = ["Plan", "plan", "OP_TEST", "LEAF_ACCEPT", "LEAF_REJECT", "CL_INSN_DTYPE"]

#: opcode of the engine's test-node pseudo-instruction (outside cBPF's 8-bit opcode space)
OP_TEST = 0x100
#: test-node targets that stand for `ret #k` with k != 0 (accept) and `ret #0` (reject)
LEAF_ACCEPT = 0xFFFFFFFE
LEAF_REJECT = 0xFFFFFFFF

#: the engine's instruction record: opcode, aux (`ja`: 1 = backward; OP_TEST: the registers its
#: block sets, bit 0 A, bit 1 X), absolute jump targets, k
CL_INSN_DTYPE = np.dtype([("code", "<u2"), ("aux", "<u2"), ("jt", "<u4"), ("jf", "<u4"), ("k", "<u4")])


def _reads_writes(code):
    """(reads A, reads X, writes A, writes X, pure) for a straight-line instruction; pure is False
    for scratch-memory access and for anything that is not straight-line."""
    cls = BPF_CLASS(code)
    if cls == BPF_LD:
        mode = BPF_MODE(code)
        if mode in (BPF_ABS, BPF_IMM, BPF_LEN):
            return False, False, True, False, True
        if mode == BPF_IND:
            return False, True, True, False, True
        return False, False, True, False, False            # ld M[k]
    if cls == BPF_LDX:
        if BPF_MODE(code) in (BPF_IMM, BPF_LEN, BPF_MSH):
            return False, False, False, True, True
        return False, False, False, True, False            # ldx M[k]
    if cls == BPF_ALU:
        usesx = BPF_OP(code) != BPF_NEG and BPF_SRC(code) == BPF_X
        return True, usesx, True, False, True
    if cls == BPF_MISC:
        if BPF_MISCOP(code) == BPF_TAX:
            return True, False, False, True, True
        return False, True, True, False, True              # txa
    return False, False, False, False, False               # st, stx, ret, jumps


class Plan:
    """All rule programs rewritten for the engine (see the module docstring), as numpy arrays:
    code (CL_INSN_DTYPE; an OP_TEST's aux says which registers it sets: bit 0 A, bit 1 X),
    starts (u4 per rule), usesmem (u1 per rule); value nodes: vparent (i4, -1 = none), vcode,
    vstart, vlen; test nodes: tvalue, tcode, tk. `stats` counts the test-node sites and how many
    distinct nodes they share."""

    def __init__(self, programs):
        self._values, self._tests = {}, {}
        self.vparent, self.vcode, self.vstart, self.vlen = [], [], [], []
        self.tvalue, self.tcode, self.tk = [], [], []
        code, starts, usesmem = [], [], []
        self.programs = []
        self._sites = 0
        self._value(-1, ())          # the root: A = X = 0, as every program starts
        for prog in programs:
            insns = [tuple(int(v) for v in t) for t in prog]
            # what the engine's memory safety rests on (a Program was validated already;
            # foreign tuples may not have been)
            validate(insns, max_insns=COMPILED_MAX_INSNS)
            self.programs.append(tuple(insns))      # as given: what native code compiles
            starts.append(len(code))
            usesmem.append(any(c in (0x60, 0x61) for c, _, _, _ in insns))
            code.extend(self._rewrite(insns, len(code)))
        self.code = np.array(code, dtype=CL_INSN_DTYPE)
        self.starts = np.array(starts, dtype=np.uint32)
        self.usesmem = np.array(usesmem, dtype=np.uint8)
        self.vparent = np.array(self.vparent, dtype=np.int32)
        self.vcode = np.array(self.vcode, dtype=CL_INSN_DTYPE)
        self.vstart = np.array(self.vstart, dtype=np.uint32)
        self.vlen = np.array(self.vlen, dtype=np.uint32)
        self.tvalue = np.array(self.tvalue, dtype=np.uint32)
        self.tcode = np.array(self.tcode, dtype=np.uint16)
        self.tk = np.array(self.tk, dtype=np.uint32)
        self.signature = np.array(_signature(code, starts), dtype=np.uint32)
        self._groups(code, starts)
        self.stats = {"rules": len(starts), "instructions": len(code), "test_sites": self._sites,
                      "test_nodes": len(self.tvalue), "value_nodes": len(self.vstart),
                      "signature_tests": len(self.signature), "groups": len(self.gvalue),
                      "group_tests": len(self.gtest)}
        del self._values, self._tests

    def _value(self, parent, run):
        """The value node computing `run` ((code, k) pairs) from parent's A and X (or from 0, 0)."""
        key = (parent, run)
        v = self._values.get(key)
        if v is None:
            v = self._values[key] = len(self.vstart)
            self.vparent.append(parent)
            self.vstart.append(len(self.vcode))
            self.vlen.append(len(run))
            self.vcode.extend((c, 0, 0, 0, k) for c, k in run)
        return v

    def _test(self, v, c, k):
        key = (v, c, k)
        t = self._tests.get(key)
        if t is None:
            t = self._tests[key] = len(self.tvalue)
            self.tvalue.append(v)
            self.tcode.append(c)
            self.tk.append(k)
        return t

    def _rewrite(self, insns, base):
        """The program's rows for the engine: jump targets made absolute, every pure block
        replaced by OP_TEST at its first instruction.

        A block may read A or X set by an earlier block when, on every path into it, that
        register holds the output of one known value node (its *source*): the block then becomes
        a value node whose parent is that source (`ldh [x + 16]` after `ldxb 4*([14]&0xf);
        ldh [x + 14]`, `jeq #0x800` after `ldh [12]; jeq #0x86dd`). Sources flow forward through
        the blocks in order (jumps go forward); a program with a backward `ja` gets none."""
        n = len(insns)
        leaders = {0}
        backward = False
        for i, (c, jt, jf, k) in enumerate(insns):
            if BPF_CLASS(c) == BPF_JMP:
                if BPF_OP(c) == BPF_JA:
                    leaders.add(i + 1 + _s32(k))
                    backward |= bool(k & 0x80000000)
                else:
                    leaders.update((i + 1 + jt, i + 1 + jf))
                leaders.add(i + 1)
            elif BPF_CLASS(c) == BPF_RET:
                leaders.add(i + 1)

        def target(at):
            # a test's target that is `ret #k` is folded into a leaf: accept (k != 0) or reject
            c, _, _, k = insns[at]
            if c == BPF_RET | BPF_K:
                return LEAF_ACCEPT if k else LEAF_REJECT
            return base + at

        rows = []
        for i, (c, jt, jf, k) in enumerate(insns):
            if BPF_CLASS(c) == BPF_JMP:
                if BPF_OP(c) == BPF_JA:
                    rows.append((c, 1 if k & 0x80000000 else 0, base + i + 1 + _s32(k), 0, k))
                else:
                    rows.append((c, 0, base + i + 1 + jt, base + i + 1 + jf, k))
            else:
                rows.append((c, 0, 0, 0, k))

        unknown = None
        sources = {0: (0, 0)}        # leader -> (source of A, source of X); 0 is the root node

        def flow(to, a, x):
            if backward:
                return
            if to in sources:
                pa, px = sources[to]
                sources[to] = (pa if pa == a else unknown, px if px == x else unknown)
            else:
                sources[to] = (a, x)

        for i in sorted(leaders):
            if i >= n:
                continue
            a_src, x_src = sources.get(i, (unknown, unknown))
            node = _pure_block(insns, i, leaders, a_src is not unknown, x_src is not unknown)
            if node is not None:
                j, writes, reads_a, reads_x = node
                if reads_a and reads_x and a_src != x_src:
                    node = None
            if node is not None:
                parent = a_src if reads_a else x_src if reads_x else -1
                run = tuple((c, k) for c, _, _, k in insns[i:j])
                v = parent if not run else self._value(parent, run)
                c, jt, jf, k = insns[j]
                t = self._test(v, c, k)
                rows[i] = (OP_TEST, writes, target(j + 1 + jt), target(j + 1 + jf), t)
                self._sites += 1
                a_out = v if writes & 1 else a_src
                x_out = v if writes & 2 else x_src
                flow(j + 1 + jt, a_out, x_out)
                flow(j + 1 + jf, a_out, x_out)
                continue
            # an ordinary block: what it writes is no longer known
            j = i
            while True:
                c, jt, jf, k = insns[j]
                ra, rx, wa, wx, _ = _reads_writes(c)
                if wa:
                    a_src = unknown
                if wx:
                    x_src = unknown
                if BPF_CLASS(c) == BPF_JMP:
                    if BPF_OP(c) == BPF_JA:
                        flow(j + 1 + _s32(k), a_src, x_src)
                    else:
                        flow(j + 1 + jt, a_src, x_src)
                        flow(j + 1 + jf, a_src, x_src)
                    break
                if BPF_CLASS(c) == BPF_RET:
                    break
                j += 1
                if j in leaders:
                    flow(j, a_src, x_src)
                    break
        return rows

    def _groups(self, code, starts):
        """Equality groups: a value node that tests `jeq #k` against at least GROUP_TESTS
        constants outside the signature (ports, addresses). At most one of those tests is true
        for a packet, and one lookup finds it. Arrays: gvalue, gstart/gconst/gtest (constants
        ascending), tgroup (per test node), trig_start/trig (rules meeting each test node),
        grule_start/grule (rules meeting any test of each group)."""
        ntests = len(self.tvalue)
        sig = set(int(t) for t in self.signature)
        by_value = {}
        for t in range(ntests):
            if self.tcode[t] == BPF_JMP | 0x10 and t not in sig:     # jeq #k
                by_value.setdefault(int(self.tvalue[t]), []).append(t)
        groups = sorted((v, sorted(ts, key=lambda t: int(self.tk[t]))) for v, ts in by_value.items()
                        if len(ts) >= GROUP_TESTS)
        users = [set() for _ in range(ntests)]
        ends = list(starts[1:]) + [len(code)]
        for r, (a, b) in enumerate(zip(starts, ends)):
            for row in code[a:b]:
                if row[0] == OP_TEST:
                    users[row[4]].add(r)
        self.gvalue = np.array([v for v, _ in groups], dtype=np.uint32)
        self.gstart = np.cumsum([0] + [len(ts) for _, ts in groups]).astype(np.uint32)
        self.gtest = np.array([t for _, ts in groups for t in ts], dtype=np.uint32)
        self.gconst = self.tk[self.gtest] if len(self.gtest) else np.zeros(0, np.uint32)
        self.tgroup = np.full(ntests, -1, dtype=np.int32)
        grule = []
        for g, (_, ts) in enumerate(groups):
            self.tgroup[ts] = g
            grule.append(sorted(set().union(*(users[t] for t in ts))))
        self.grule_start = np.cumsum([0] + [len(x) for x in grule]).astype(np.uint32)
        self.grule = np.array([r for x in grule for r in x], dtype=np.uint32)
        trig = [sorted(users[t]) if self.tgroup[t] >= 0 else [] for t in range(ntests)]
        self.trig_start = np.cumsum([0] + [len(x) for x in trig]).astype(np.uint32)
        self.trig = np.array([r for x in trig for r in x], dtype=np.uint32)

    def engine(self, maxclasses=1024):
        """The Cython RuleEngine for this plan; past `maxclasses` packet classes in one batch,
        packets of new classes run every rule from its start."""
        from .run import _engine
        return _engine.RuleEngine(self.code.view(np.uint8), self.starts, self.usesmem,
                                  self.vparent, self.vcode.view(np.uint8), self.vstart, self.vlen,
                                  self.tvalue, self.tcode, self.tk, self.signature, self.gvalue,
                                  self.gstart, self.gconst, self.gtest, self.tgroup, self.trig_start,
                                  self.trig, self.grule_start, self.grule, maxclasses)


#: how many test sites deep into each rule the signature looks, and its size (2 bits a test)
SIGNATURE_DEPTH = 5
SIGNATURE_TESTS = 24
#: constants a value node must be compared with (`jeq #k`) to become an equality group
GROUP_TESTS = 2


def _signature(code, starts):
    """The signature tests: test nodes that at least two rules meet within their first
    SIGNATURE_DEPTH tests, the most shared first, at most SIGNATURE_TESTS. The engine evaluates
    them first on every packet; their outcomes name the packet's class, and for each class
    every rule resumes after the signature tests it would have passed through."""
    users = {}
    for r, start in enumerate(starts):
        seen, frontier = set(), [start]
        for _ in range(SIGNATURE_DEPTH):
            nxt = []
            for at in frontier:
                row = code[at]
                if row[0] != OP_TEST or row[4] in seen:
                    continue
                seen.add(row[4])
                nxt += [x for x in (row[2], row[3]) if x < LEAF_ACCEPT]
            frontier = nxt
        for t in seen:
            users[t] = users.get(t, 0) + 1
    shared = sorted((t for t, n in users.items() if n >= 2), key=lambda t: (-users[t], t))
    return sorted(shared[:SIGNATURE_TESTS])


def plan(programs):
    """A Plan for a list of programs (Program objects or lists of (code, jt, jf, k) tuples)."""
    return Plan([p.to_tuples() if is_program(p) else p for p in programs])


def _s32(k):
    return k - (1 << 32) if k & 0x80000000 else k

def _pure_block(insns, i, leaders, a_known, x_known):
    """(j, writes, reads_a, reads_x) when insns[i:j] is a straight-line run without scratch
    memory ending in the conditional jump insns[j], with no leader inside, reading an incoming
    register only if it is known (a_known, x_known). writes: bit 0 A, bit 1 X; reads_a/reads_x:
    it reads the incoming A/X. Else None."""
    has_a = has_x = False
    reads_a = reads_x = False
    j = i
    n = len(insns)
    while j < n:
        if j != i and j in leaders:
            return None
        c = insns[j][0]
        if BPF_CLASS(c) == BPF_JMP:
            if BPF_OP(c) == BPF_JA:
                return None
            ra, rx = True, BPF_SRC(c) == BPF_X
            wa = wx = False
        else:
            ra, rx, wa, wx, pure = _reads_writes(c)
            if not pure:
                return None
        if ra and not has_a:
            if not a_known:
                return None
            reads_a = True
        if rx and not has_x:
            if not x_known:
                return None
            reads_x = True
        if BPF_CLASS(c) == BPF_JMP:
            return j, (1 if has_a else 0) | (2 if has_x else 0), reads_a, reads_x
        has_a |= wa
        has_x |= wx
        j += 1
    return None
