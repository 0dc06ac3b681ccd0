"""pfilter.classifier, the engine behind pfilter.classify(): many named filters over every packet, in one pass.

Imports pfilter.errors, pfilter.opcodes, pfilter.batch, pfilter.linktypes, and at call time
pfilter.compile (the compiler) and pfilter.open (the capture reader); rules may also be Program
objects (anything with to_tuples()). Its engine is the Cython module pfilter._classify (which
imports nothing from pfilter); without it (PFILTER_PUREPYTHON=1, or not built), and for a
single rule, each rule's own Program.match_batch runs instead.

    result = pfilter.classify("big.pcap", {"web": "tcp port 80 or tcp port 443",
                                           "dns": "udp port 53", "v6": "ip6"})
    result.counts, result.bytes        # packets and wire bytes per rule
    result.matrix                      # bool, packets x rules
    result.labels(default="other")     # first matching rule per packet

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

import csv
import io
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, overload

import numpy as np

from .batch import PacketBatch
from .errors import CaptureFormatError, FilterError, FilterSyntaxError, InvalidProgramError
from .opcodes import (BPF_ALU, BPF_ABS, BPF_IMM, BPF_IND, BPF_JA, BPF_JMP, BPF_K, BPF_LD, BPF_LDX,
                      BPF_LEN, BPF_MISC, BPF_MSH, BPF_NEG, BPF_RET, BPF_TAX, BPF_X, VALID_OPCODES,
                      BPF_CLASS, BPF_MISCOP, BPF_MODE, BPF_OP, BPF_SRC)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import EllipsisType
    from typing import Any, Literal

    import pandas as pd
    from numpy.typing import NDArray

    from .program import Program

_PURE = os.environ.get("PFILTER_PUREPYTHON", "") not in ("", "0")
if _PURE:
    _engine = None
else:
    try:
        from . import _classify as _engine
    except ImportError:
        _engine = None

__all__ = ["classify", "Classification", "RuleLinkTypeWarning", "parse_rules", "plan", "cli_main"]

#: opcode of the engine's test-node pseudo-instruction (outside cBPF's 8-bit opcode space)
OP_TEST = 0x100
#: test-node targets that stand for `ret #k` with k != 0 (accept) and `ret #0` (reject)
LEAF_ACCEPT = 0xFFFFFFFE
LEAF_REJECT = 0xFFFFFFFF

#: the engine's instruction record: opcode, aux (`ja`: 1 = backward; OP_TEST: the registers its
#: block sets, bit 0 A, bit 1 X), absolute jump targets, k
CL_INSN_DTYPE = np.dtype([("code", "<u2"), ("aux", "<u2"), ("jt", "<u4"), ("jf", "<u4"), ("k", "<u4")])


# ----------------------------------------------------------------------------- rules

def parse_rules(rules):
    """Normalise `rules` into a list of (name, rule) pairs, rule an expression string or a
    Program. Accepts a mapping name -> rule, a list of expressions (names = the expressions), or
    the path of a rules file: `name: expression` per line, `#` starts a comment, blank lines are
    ignored. Names are non-empty, without whitespace or ':', and unique."""
    if isinstance(rules, (str, os.PathLike)):
        return _read_rules_file(Path(rules))
    if isinstance(rules, Mapping):
        pairs = [(k, v) for k, v in rules.items()]
    else:
        try:
            items = list(rules)
        except TypeError:
            raise FilterError(f"rules must be a mapping, a list of expressions or a rules file, "
                              f"not {type(rules).__name__}") from None
        pairs = [(e, e) for e in items]
    seen = set()
    out = []
    for name, rule in pairs:
        if not isinstance(name, str) or not name.strip():
            raise FilterError(f"rule name must be a non-empty string, not {name!r}")
        if not isinstance(rule, str) and not _is_program(rule):
            raise FilterError(f"rule {name!r}: expected an expression or a Program, not {type(rule).__name__}")
        if name in seen:
            raise FilterError(f"duplicate rule name {name!r}")
        seen.add(name)
        out.append((name, rule))
    if not out:
        raise FilterError("no rules given")
    return out


def _read_rules_file(path):
    from ._textfile import read_text_file
    text = read_text_file(path, "rules file")     # OSError when it cannot be read
    out, where = [], {}
    for lineno, line in enumerate(text.split("\n"), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, expr = line.partition(":")
        name, expr = name.strip(), expr.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise FilterError(f"{path}:{lineno}: expected 'name: expression', got {line!r}")
        if not expr:
            raise FilterError(f"{path}:{lineno}: rule {name!r} has no expression")
        if name in where:
            raise FilterError(f"{path}:{lineno}: duplicate rule name {name!r} (first on line {where[name]})")
        where[name] = lineno
        out.append((name, expr))
    if not out:
        raise FilterError(f"{path}: no rules in the file")
    return out


def _is_program(obj):
    return hasattr(obj, "to_tuples") and hasattr(obj, "instructions")


# ----------------------------------------------------------------------------- the planner

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
        self._sites = 0
        self._value(-1, ())          # the root: A = X = 0, as every program starts
        for prog in programs:
            insns = [tuple(int(v) for v in t) for t in prog]
            _check(insns)
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
    return Plan([p.to_tuples() if _is_program(p) else p for p in programs])


def _s32(k):
    return k - (1 << 32) if k & 0x80000000 else k


def _check(insns):
    """What the engine's memory safety rests on (Program has validated this already; foreign
    tuples may not have been): known opcodes, scratch index < 16, jumps inside, `ret` last."""
    n = len(insns)
    if n == 0:
        raise InvalidProgramError("empty program")
    for i, (c, jt, jf, k) in enumerate(insns):
        if c not in VALID_OPCODES:
            raise InvalidProgramError(f"unknown opcode 0x{c:x}", i)
        if c in (0x60, 0x61, 0x02, 0x03) and k >= 16:
            raise InvalidProgramError(f"scratch memory index {k} out of range", i)
        if BPF_CLASS(c) == BPF_JMP:
            targets = [i + 1 + _s32(k)] if BPF_OP(c) == BPF_JA else [i + 1 + jt, i + 1 + jf]
            if any(not 0 <= t < n for t in targets):
                raise InvalidProgramError("jump outside the program", i)
    if BPF_CLASS(insns[-1][0]) != BPF_RET:
        raise InvalidProgramError("the last instruction must be `ret`", n - 1)


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


# ----------------------------------------------------------------------------- results

class Classification:
    """The result of pfilter.classify.

    rules: tuple of rule names; expressions: tuple of the rules' expressions (or Programs);
    matrix: bool array (packets x rules), or with packed=True np.packbits(bool_matrix, axis=1)
    (uint8, packets x ceil(rules/8)), or None with counts_only=True;
    counts / bytes: int64 per rule (packets accepted, their wire bytes);
    packets / total_bytes: totals over all packets; matched / matched_bytes: packets accepted by
    at least one rule; wirelen, timestamps: per packet (None with counts_only=True);
    inapplicable: (rule name, link type name, reason) for each rule that had no meaning on a link
    type of the input and so matched no packet of it (see RuleLinkTypeWarning)."""

    rules: tuple[str, ...]
    expressions: tuple[str | Program, ...]
    matrix: NDArray[np.bool_] | NDArray[np.uint8] | None
    packed: bool
    counts: NDArray[np.int64]
    packets: int
    total_bytes: int
    matched: int
    matched_bytes: int
    wirelen: NDArray[np.uint32] | None
    timestamps: NDArray[np.int64] | None
    order: tuple[str, ...]
    default: str | None
    inapplicable: list[tuple[str, str, str]]
    bytes: NDArray[np.int64]

    def __init__(self, rules: Sequence[str], expressions: Sequence[str | Program],
                 matrix: NDArray[np.bool_] | NDArray[np.uint8] | None, packed: bool,
                 counts: NDArray[np.int64], nbytes: NDArray[np.int64], packets: int, total_bytes: int,
                 matched: int, matched_bytes: int, wirelen: NDArray[np.uint32] | None,
                 timestamps: NDArray[np.int64] | None, order: Sequence[str] | None,
                 default: str | None) -> None:
        self.rules = tuple(rules)
        self.expressions = tuple(expressions)
        self.matrix = matrix
        self.packed = packed
        self.counts = counts
        self.bytes = nbytes
        self.packets = packets
        self.total_bytes = total_bytes
        self.matched = matched
        self.matched_bytes = matched_bytes
        self.wirelen = wirelen
        self.timestamps = timestamps
        self.order = tuple(order) if order is not None else self.rules
        self.default = default
        self.inapplicable = []
        #: split files written: {rule name (None: unmatched): [file names]}
        self.files: dict[str | None, list[str]] = {}
        #: the capture paths classified (what write() reads again), None for other sources
        self.source: list[str] | None = None

    def __len__(self) -> int:
        return self.packets

    def __repr__(self) -> str:
        return f"<Classification {self.packets} packets x {len(self.rules)} rules>"

    def write(self, split: str | None = None, *, source: Any = None, first_match: bool = False,
              unmatched: str | None = None, format: str | None = None, truncate: int | None = None,
              dedup: int | bool | None = None, rotate: Any = None) -> dict[str | None, list[str]]:
        """Write every rule's packets into its own file (`split`, a template with {rule}) and
        the packets no rule accepts into `unmatched`, as classify(split=...) does, from this
        result's matrix: the capture (`source`, default the paths classified) is read again but
        no rule runs again. Returns {rule name (None: unmatched): [file names]}."""
        if self.matrix is None:
            raise FilterError("write needs the matrix: classify(..., counts_only=True) keeps none")
        if split is None and unmatched is None:
            raise FilterError("write needs split= (a template with {rule}) or unmatched=")
        src = self.source if source is None else source
        if src is None:
            raise FilterError("write needs source= (the capture this result classified)")
        items, _size = _sources(src)
        sink = _SplitSink(items, self.rules, self.order, split, first_match, unmatched, format,
                          truncate, dedup, rotate)
        row = 0
        try:
            for batch, _done in _iter_batches(items, sink.opened):
                n = len(batch)
                if row + n > self.packets:
                    raise FilterError(f"write: the source has more packets than the {self.packets} classified")
                sink.write(batch, self.matrix[row:row + n].view(np.uint8), self.packed)
                row += n
            if row != self.packets:
                raise FilterError(f"write: the source has {row} packets, {self.packets} were classified")
            sink.commit()
        finally:
            sink.abort()
        return sink.files()

    def column(self, name: str) -> NDArray[np.bool_]:
        """The bool column of one rule."""
        r = self._index(name)
        if self.matrix is None:
            raise FilterError("counts_only=True keeps no matrix")
        if not self.packed:
            return self.matrix[:, r]
        return (self.matrix[:, r >> 3] & (0x80 >> (r & 7))) != 0

    def bool_matrix(self) -> NDArray[np.bool_]:
        """The matrix as bool (packets x rules), unpacking it if it was packed."""
        if self.matrix is None:
            raise FilterError("counts_only=True keeps no matrix")
        if not self.packed:
            return self.matrix
        return np.unpackbits(self.matrix, axis=1, count=len(self.rules)).astype(bool)

    def _index(self, name):
        try:
            return self.rules.index(name)
        except ValueError:
            raise FilterError(f"no rule named {name!r}") from None

    def label_codes(self, order: Sequence[str] | None = None) -> tuple[NDArray[np.int32], tuple[str, ...]]:
        """(codes, names): codes[i] is the index in names of the first rule of `order` (default:
        classify's order, else the rules' order) that accepts packet i, -1 if none does."""
        if self.matrix is None:
            raise FilterError("labels need the matrix: classify(..., counts_only=True) keeps none")
        names = tuple(self.order if order is None else order)
        idx = [self._index(nm) for nm in names]
        codes = np.full(self.packets, -1, dtype=np.int32)
        chunk = 1 << 16
        for s in range(0, self.packets, chunk):
            block = self.matrix[s:s + chunk]
            if self.packed:
                block = np.unpackbits(block, axis=1, count=len(self.rules))
            sub = block[:, idx].astype(bool, copy=False) if idx else np.zeros((len(block), 0), bool)
            if sub.shape[1]:
                hit = sub.any(axis=1)
                codes[s:s + len(block)] = np.where(hit, sub.argmax(axis=1), -1)
        return codes, names

    @overload
    def labels(self, order: Sequence[str] | None = None, default: str | None | EllipsisType = Ellipsis,
               codes: Literal[False] = False) -> NDArray[Any]: ...
    @overload
    def labels(self, order: Sequence[str] | None = None, default: str | None | EllipsisType = Ellipsis, *,
               codes: Literal[True]) -> tuple[NDArray[np.int32], tuple[str, ...]]: ...
    def labels(self, order: Sequence[str] | None = None, default: str | None | EllipsisType = Ellipsis,
               codes: bool = False) -> NDArray[Any] | tuple[NDArray[np.int32], tuple[str, ...]]:
        """First-match label per packet: the name of the first rule of `order` that accepts it,
        else `default` (default: classify's default). A numpy str array, or an object array when
        the default is None; with codes=True the pair (codes, names) of label_codes()."""
        c, names = self.label_codes(order)
        if codes:
            return c, names
        default = self.default if default is Ellipsis else default
        if default is None:
            table = np.array(list(names) + [None], dtype=object)
        else:
            table = np.array(list(names) + [str(default)], dtype=str)
        return table[c]       # -1 picks the default, the last entry

    def to_pandas(self) -> pd.DataFrame:
        """A pandas DataFrame: one bool column per rule (index: packet number), plus `label`
        (labels() with classify's order and default), `wirelen` and `timestamp`
        (datetime64[ns]) columns unless a rule already has that name."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("Classification.to_pandas() needs pandas: pip install 'pfilter[pandas]'") from None
        m = self.bool_matrix()
        cols = {name: m[:, r] for r, name in enumerate(self.rules)}
        if "label" not in cols:
            cols["label"] = self.labels()
        if "wirelen" not in cols and self.wirelen is not None:
            cols["wirelen"] = self.wirelen
        if "timestamp" not in cols and self.timestamps is not None:
            cols["timestamp"] = pd.to_datetime(self.timestamps, unit="ns")
        df = pd.DataFrame(cols)
        df.index.name = "packet"
        return df

    def table(self) -> str:
        """The per-rule table the CLI prints: rule, packets, bytes, share of all packets."""
        width = max([len("rule"), len("(no rule)")] + [len(r) for r in self.rules])
        lines = [f"{'rule':<{width}}  {'packets':>12}  {'bytes':>15}  {'share':>7}"]

        def row(name, p, b):
            share = 100.0 * p / self.packets if self.packets else 0.0
            return f"{name:<{width}}  {p:>12}  {b:>15}  {share:>6.2f}%"

        for r, name in enumerate(self.rules):
            lines.append(row(name, int(self.counts[r]), int(self.bytes[r])))
        lines.append(row("(no rule)", self.packets - self.matched, self.total_bytes - self.matched_bytes))
        lines.append(row("total", self.packets, self.total_bytes))
        return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- classify

def _sources(source):
    """source as an iterable of paths and batches, and the bytes of its files when they are
    known beforehand (a path or a list/tuple of paths; 0 otherwise)."""
    if isinstance(source, PacketBatch):
        return [source], 0
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    elif not hasattr(source, "__iter__"):
        raise FilterError(f"source must be a path, a PacketBatch or an iterable of them, not {type(source).__name__}")
    total = 0
    if isinstance(source, (list, tuple)):
        for item in source:
            if isinstance(item, (str, os.PathLike)):
                try:
                    total += os.path.getsize(item)
                except OSError:
                    pass        # reported when the file is opened
    return source, total


def _iter_batches(source, on_open=None):
    """(batch, bytes read so far) from the paths and batches of _sources(); the byte count is
    the files' offsets (a batch given directly counts its data bytes). on_open(capture) is
    called as each file is opened (then its batches are read for writing split files)."""
    from . import open as open_capture
    done = 0
    for item in source:
        if isinstance(item, PacketBatch):
            done += int(item.data.nbytes)
            yield item, done
        elif isinstance(item, (str, os.PathLike)):
            if on_open is not None:
                # mapped, not read into a buffer: records are written straight from the page
                # cache (one copy, not two); large batches: fewer calls per output file
                # (a pipe is read in filter_file's windows and batches: a window waits until it
                # is full, and an interruption writes the packets of the full ones)
                regular = item not in ("-", b"-") and os.path.isfile(item)
                if regular:
                    opened = open_capture(item, batch_bytes=SPLIT_BATCH_BYTES)
                else:
                    from .capture.filterfile import CACHE_BATCH_BYTES, REUSE_WINDOW_BYTES
                    opened = open_capture(item, batch_bytes=CACHE_BATCH_BYTES, window_bytes=REUSE_WINDOW_BYTES)
            else:
                opened = open_capture(item)
            with opened as cap:
                if on_open is not None:
                    on_open(cap)
                for batch in cap:
                    offsets = getattr(batch, "file_offsets", None)
                    yield batch, done + (int(offsets[-1]) if offsets is not None and len(offsets) else 0)
            try:
                done += os.path.getsize(item)
            except OSError:
                pass
        else:
            raise FilterError(f"source items must be paths or PacketBatch objects, not {type(item).__name__}")


class RuleLinkTypeWarning(UserWarning):
    """A rule has no meaning on a link type of the input (`ether host ...` on a NULL capture,
    `vlan` on raw IP): it matches no packet of that link type. Classification.inapplicable
    lists every such (rule, link type, reason)."""


class _RuleSet:
    """The rules compiled (lazily, once per link type) and planned for the engine."""

    def __init__(self, pairs, optimize, snaplen, forced_linktype=False):
        self.pairs = pairs
        self.optimize = optimize
        self.snaplen = snaplen
        self.forced_linktype = forced_linktype
        #: (rule name, link type name, reason) of each rule that cannot apply to a link type
        self.inapplicable = []
        self._by_linktype = {}

    def _compile(self, rule, linktype):
        from .compiler.driver import SHAREABLE, compile_expression
        # IPv4 and IPv6 copies of a test kept apart: each is then shared across rules.
        return compile_expression(rule, linktype=linktype, snaplen=self.snaplen,
                                  optimize=SHAREABLE if self.optimize else False)

    def _applies_elsewhere(self, rule, linktype):
        """True when the rule compiles for some other common link type: its error on
        `linktype` is then about that link type, not about the rule."""
        from .linktypes import DESCRIPTIONS
        for other in [1] + sorted(DESCRIPTIONS):
            if other == linktype:
                continue
            try:
                self._compile(rule, other)
            except FilterError:
                continue
            return True
        return False

    def programs(self, linktype):
        entry = self._by_linktype.get(linktype)
        if entry is None:
            progs = []
            for name, rule in self.pairs:
                if _is_program(rule):
                    progs.append(rule)
                    continue
                try:
                    progs.append(self._compile(rule, linktype))
                except FilterSyntaxError as e:
                    raise FilterSyntaxError(f"rule {name!r}: {e.message}", e.expression, e.position,
                                            e.length) from e
                except FilterError as e:
                    from .linktypes import linktype_name
                    lt_name = linktype_name(linktype)
                    # A rule the input's link type gives no meaning to (`ether host` on NULL)
                    # matches nothing there; one that compiles nowhere, or for the link type
                    # the caller named, is an error.
                    if self.forced_linktype or not self._applies_elsewhere(rule, linktype):
                        raise FilterError(f"rule {name!r} (link type {lt_name}): {e}") from e
                    reason = str(e).split("\n")[0]
                    self.inapplicable.append((name, lt_name, reason))
                    warnings.warn(RuleLinkTypeWarning(
                        f"rule {name!r} cannot apply to link type {lt_name} ({reason}): it matches "
                        f"no packet of that link type"), stacklevel=4)
                    from .program import Program
                    progs.append(Program.from_tuples([(BPF_RET | BPF_K, 0, 0, 0)], linktype=linktype,
                                                     snaplen=self.snaplen))
            # one rule gains nothing from the engine: the VM runs it alone
            eng = plan(progs).engine() if _engine is not None and len(progs) > 1 else None
            if eng is None and getattr(self, "backend", "vm") != "vm":   # pfilter.backend
                progs = [p.with_backend(self.backend) for p in progs]
            entry = self._by_linktype[linktype] = (progs, eng)
        return entry


#: fewest packets per thread worth a thread of its own
MIN_PACKETS_PER_THREAD = 16384


def _run_batch(ruleset, batch, linktype, out, packed, counts, nbytes, pool=None, threads=1):
    """Evaluate every rule on one batch into out, counts and nbytes (see RuleEngine.run); with a
    thread pool, disjoint slices of the rows run in parallel (the engine releases the GIL)."""
    batch.check()   # the engine trusts offsets/caplen: a batch changed since it was built stops here
    if linktype is not None or batch.linktypes is None:
        groups = [(batch.linktype if linktype is None else linktype, None)]
    else:
        groups = [(int(lt), np.flatnonzero(batch.linktypes == lt).astype(np.int64))
                  for lt in np.unique(batch.linktypes)]
    for lt, rows in groups:
        progs, eng = ruleset.programs(lt)
        if eng is not None:
            nrows = len(batch) if rows is None else len(rows)
            parts = min(threads, nrows // MIN_PACKETS_PER_THREAD) if pool is not None else 1
            if parts <= 1:
                eng.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, rows, out, packed, counts, nbytes)
                continue
            every = np.arange(nrows, dtype=np.int64) if rows is None else rows
            tallies = [(np.zeros_like(counts), np.zeros_like(nbytes)) for _ in range(parts)]
            jobs = [pool.submit(eng.run, batch.data, batch.offsets, batch.caplen, batch.wirelen, part,
                                out, packed, c, b)
                    for part, (c, b) in zip(np.array_split(every, parts), tallies)]
            for job in jobs:
                job.result()
            for c, b in tallies:
                counts += c
                nbytes += b
            continue
        # a single rule, or no engine: each rule's own Program over the batch
        for r, prog in enumerate(progs):
            if rows is None:
                hit = prog.match_batch(batch)
            else:
                verdicts = np.zeros(len(batch), dtype=np.uint32)
                hit = prog.run_indexed(batch, rows, verdicts) != 0
            counts[r] += np.count_nonzero(hit)
            nbytes[r] += int(batch.wirelen.sum(dtype=np.int64, where=hit))
            if out is not None:
                if packed:
                    out[:, r >> 3] |= hit.view(np.uint8) << np.uint8(7 - (r & 7))
                else:
                    out[:, r] |= hit.view(np.uint8)


def _row_any(out):
    """out.any(axis=1) for a C-contiguous uint8 matrix, reading whole words where it can
    (numpy's reduction over a short row axis costs more than the classification itself)."""
    n, w = out.shape
    for size, dtype in ((8, np.uint64), (4, np.uint32), (2, np.uint16), (1, np.uint8)):
        if w % size == 0 and w:
            words = out.view(dtype)
            return words[:, 0] != 0 if w == size else words.any(axis=1)
    return np.zeros(n, dtype=bool)


def classify(source, rules, *, linktype=None, order=None, default=None, packed=False,
             counts_only=False, optimize=True, snaplen=262144, threads=1, progress=None,
             split=None, first_match=False, unmatched=None, format=None, truncate=None,
             dedup=None, rotate=None, backend="vm"):
    """Evaluate many named filters over every packet of `source` in one pass.

    source: a capture path (or list of paths, read with pfilter.open), a PacketBatch, or an
    iterable of batches. rules: mapping name -> expression (or Program), list of expressions
    (each its own name), or a rules-file path (`name: expression` lines, `#` comments).
    Expressions are compiled with optimize="shareable" (IPv4 and IPv6 copies of a test kept
    apart, so rules share them); compile Programs meant for classify that way too: 256 rules
    ran 393 ns/packet so against 693 with default-optimized Programs.
    linktype: compile for this link type instead of each batch's own. order / default: the
    first-match order (rule names; rules left out never label a packet) and the label of packets
    no rule in the order accepts, used by .labels() and the CLI. packed: keep the matrix as
    np.packbits(matrix, axis=1). counts_only: keep no per-packet data (streams any file size).
    optimize / snaplen: for compiling expressions (optimize False: unoptimized). threads: split each large batch over this
    many threads (None: one per CPU), each running the engine without the GIL on its own rows.
    progress: True shows a progress bar on standard error (tqdm's when installed); a callable
    is called as progress(bytes_done, bytes_total, packets_done) after each batch (bytes_total
    is 0 when the source's size is not known beforehand).

    split: a path template containing {rule} ("out/{rule}.pcap", or .pcapng, optionally .gz,
    .zst, .xz, .bz2): every rule's matching packets go into its own file in the same pass, each
    file as `tcpdump -r IN -w FILE RULE` writes it; a packet goes into every rule it matches, or
    with first_match=True only into the first of `order`. unmatched: a file for the packets no
    rule (of `order`, with first_match) accepts. format: "pcap" or "pcapng" for those files
    (default: by name). truncate / dedup / rotate: as filter_file's (editcap -s, editcap -D,
    tcpdump -C/-G/-W), for each file. The files appear together when the pass ends; on an
    error none of them does (a damaged input or an interruption keeps the packets before it,
    as filter_file does). Classification.write() writes them later from a finished result.

    Returns a Classification. A rule that has no meaning on a link type of the input (`ether
    host ...` on a NULL capture) matches no packet of that link type: a RuleLinkTypeWarning says
    so and the result's `inapplicable` lists it (with `linktype` given, it is an error instead).
    A damaged capture raises CaptureFormatError after the packets before the damage were
    classified; the exception's `partial` attribute is the Classification of those packets.
    Reading errors (a missing file) raise the matching OSError."""
    pairs = parse_rules(rules)
    names = [n for n, _ in pairs]
    if order is not None:
        order = list(order)
        unknown = [o for o in order if o not in names]
        if unknown:
            raise FilterError(f"order names unknown rule(s): {', '.join(map(repr, unknown))}")
    if linktype is not None:
        from .linktypes import linktype_number
        linktype = linktype_number(linktype)
    ruleset = _RuleSet(pairs, optimize, snaplen, forced_linktype=linktype is not None)
    from .backend import check, require_native
    ruleset.backend = check(backend)   # native code runs a single rule; rule sets use the engine
    if backend == "native":
        require_native()
    nr = len(pairs)
    width = (nr + 7) // 8 if packed else nr
    counts = np.zeros(nr, dtype=np.int64)
    nbytes = np.zeros(nr, dtype=np.int64)
    blocks, wirelens, stamps = [], [], []
    packets = total_bytes = matched = matched_bytes = 0
    keep_packed = packed or counts_only   # counts_only: a packed block, just for `matched`
    bwidth = (nr + 7) // 8 if keep_packed else nr
    threads = (os.cpu_count() or 1) if threads is None else threads
    if not isinstance(threads, int) or threads < 1:
        raise FilterError(f"threads must be a positive integer or None, not {threads!r}")
    items, size = _sources(source)
    writing = split is not None or unmatched is not None
    if first_match and not writing:
        raise FilterError("first_match applies to split files: give split= or unmatched=")
    sink = _SplitSink(items, names, order, split, first_match, unmatched, format, truncate, dedup,
                      rotate) if writing else None
    from ._progress import progress_callback
    report, close_progress = progress_callback(progress, size, "classify")

    def result():
        matrix = wirelen = timestamps = None
        if not counts_only:
            matrix = blocks[0] if len(blocks) == 1 else (np.concatenate(blocks) if blocks
                                                         else np.zeros((0, width), np.uint8))
            if not packed:
                matrix = matrix.view(bool)
            wirelen = np.concatenate(wirelens) if wirelens else np.zeros(0, np.uint32)
            timestamps = np.concatenate(stamps) if stamps else np.zeros(0, np.int64)
        res = Classification(names, [r for _, r in pairs], matrix, packed, counts.copy(), nbytes.copy(),
                             packets, total_bytes, matched, matched_bytes, wirelen, timestamps, order,
                             default)
        res.inapplicable = list(ruleset.inapplicable)
        return res

    pool = None
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor
        pool = ThreadPoolExecutor(threads, thread_name_prefix="pfilter-classify")
    done = 0
    try:
        for batch, done in _iter_batches(items, sink.opened if sink is not None else None):
            n = len(batch)
            out = np.zeros((n, bwidth), dtype=np.uint8)
            _run_batch(ruleset, batch, linktype, out, keep_packed, counts, nbytes, pool, threads)
            hit = _row_any(out)
            packets += n
            total_bytes += int(batch.wirelen.sum(dtype=np.int64))
            matched += np.count_nonzero(hit)
            matched_bytes += int(batch.wirelen.sum(dtype=np.int64, where=hit))
            if sink is not None:
                sink.write(batch, out, keep_packed)
            if not counts_only:
                blocks.append(out)
                # copies: a batch read for splitting lives only until the next one is read
                wirelens.append(batch.wirelen.copy() if sink is not None else batch.wirelen)
                stamps.append(batch.timestamps.copy() if sink is not None else batch.timestamps)
            if report is not None:
                report(done, size, packets)
        if report is not None:      # the batches' offsets are where their last packets start
            report(size or done, size, packets)
        if sink is not None:
            sink.commit()
    except (CaptureFormatError, KeyboardInterrupt) as err:
        # the packets before the damage are classified (and written, whole records, as
        # filter_file keeps them): the caller gets them with the error
        if sink is not None:
            sink.commit()
        if isinstance(err, CaptureFormatError):
            err.partial = result()
        raise
    finally:
        if sink is not None:
            sink.abort()
        if pool is not None:
            pool.shutdown()
        close_progress()
    if not packets and ruleset.pairs and not ruleset._by_linktype:
        # nothing to read: still compile for the requested (or Ethernet) link type, so that a bad
        # rule is reported whatever the source
        ruleset.programs(1 if linktype is None else linktype)
    res = result()
    if sink is not None:
        res.files = sink.files()
    if isinstance(items, (list, tuple)) and all(isinstance(i, (str, os.PathLike)) for i in items):
        res.source = [os.fsdecode(i) for i in items]
    return res


#: batches of split runs: 16 rule files over 1 GB spent 0.77 s of user CPU in 4 MB batches,
#: 0.52 s in 16 MB ones (the writes go from the mapped file; the cache matters less)
SPLIT_BATCH_BYTES = 16 << 20


class _SplitSink:
    """classify's split outputs: one pfilter.capture.split.Output per rule (and one for the
    unmatched packets), created when the first input is opened (its header decides theirs, as
    tcpdump -w takes the input's), written from each batch's verdict matrix, named together
    at the end (OutputSet)."""

    def __init__(self, items, names, order, split, first_match, unmatched, format, truncate, dedup,
                 rotate):
        from .capture.rotate import Rotation
        from .capture.split import check_dedup, check_snaplen, split_paths
        self.sources = [i for i in items if isinstance(i, (str, os.PathLike))] if isinstance(
            items, (list, tuple)) else []
        self.names = list(names)
        self.order = [self.names.index(o) for o in (order if order is not None else names)]
        self.paths = split_paths(split, self.names) if split is not None else {}
        self.first_match = bool(first_match)
        self.unmatched = os.fsdecode(unmatched) if unmatched is not None else None
        if format is not None and format not in ("pcap", "pcapng"):
            raise FilterError(f"unknown capture format {format!r} (pcap or pcapng)")
        self.format = format
        self.options = dict(truncate=check_snaplen(truncate), dedup=check_dedup(dedup),
                            rotate=Rotation.make(rotate))
        targets = list(self.paths.values()) + ([self.unmatched] if self.unmatched else [])
        if len(set(targets)) != len(targets):
            raise FilterError("split: two outputs would have the same file name")
        self.set = None
        self.raw = None

    def opened(self, cap):
        from .capture.filterfile import _writer_args
        from .capture.split import Output, OutputSet
        if self.set is None:
            sources = self.sources or [cap]
            outputs = OutputSet()
            try:
                for r, name in enumerate(self.names):
                    if name in self.paths:
                        path = self.paths[name]
                        outputs.add(r, Output(path, _writer_args(path, cap, self.format, None, sources),
                                              **self.options))
                if self.unmatched:
                    outputs.add(-1, Output(self.unmatched, _writer_args(self.unmatched, cap, self.format,
                                                                        None, sources), **self.options))
            except BaseException:
                outputs.abort()
                raise
            self.set = outputs
            self.nsec = cap.ts_resolution == "ns"
        self.raw = cap.pcap_layout if cap.format == "pcap" and (cap.ts_resolution == "ns") == self.nsec else None
        self.source = (self.source + 1) if hasattr(self, "source") else 0
        for out in self.set:
            out.interfaces, out.source = cap.interfaces, self.source

    def _from_batch(self, batch):
        """Outputs for batches given directly (no file header): the batch's link type, the
        link type's largest snapshot length, microseconds."""
        from .capture.files import max_snaplen_for_linktype
        from .capture.split import Output, OutputSet
        outputs = OutputSet()
        args = dict(format=None, linktype=batch.linktype, snaplen=max_snaplen_for_linktype(batch.linktype),
                    ts_resolution="us")
        try:
            for r, name in enumerate(self.names):
                if name in self.paths:
                    outputs.add(r, Output(self.paths[name], dict(args, format=self.format), **self.options))
            if self.unmatched:
                outputs.add(-1, Output(self.unmatched, dict(args, format=self.format), **self.options))
        except BaseException:
            outputs.abort()
            raise
        self.set = outputs
        self.nsec = False

    def write(self, batch, out, packed):
        """Write the batch's packets by the verdicts `out` (packets x rules, packed or not)."""
        if self.set is None:
            self._from_batch(batch)
        nr = len(self.names)
        if packed:
            verdicts = np.unpackbits(out, axis=1, count=nr).view(bool)
        else:
            verdicts = out.view(bool)
        taken = np.zeros(len(batch), dtype=bool)
        # (Writing the files of a batch from two threads was measured: no faster on the loaded
        # 2-core machine, and the writers' signal deferral is per process, not per thread.)
        in_order = set(self.order)
        jobs = []
        for r in (self.order if self.first_match else range(nr)):
            col = verdicts[:, r]
            if self.first_match:
                col = col & ~taken
                taken |= col
            elif self.unmatched and r in in_order:
                taken |= col
            if r in self.set.outputs:
                idx = np.flatnonzero(col)
                if len(idx):
                    jobs.append((self.set[r], idx))
        if self.unmatched:
            idx = np.flatnonzero(~taken)
            if len(idx):
                jobs.append((self.set[-1], idx))
        for out, idx in jobs:
            out.write(batch, idx, self.raw)

    def commit(self):
        if self.set is not None:
            self.set.commit()

    def abort(self):
        if self.set is not None:
            self.set.abort()

    def files(self):
        """{rule name (None: unmatched): [file names]}"""
        if self.set is None:
            return {}
        return {(self.names[k] if k >= 0 else None): list(o.files) for k, o in self.set.outputs.items()}


# ----------------------------------------------------------------------------- CLI

def _usable_cores():
    from .capture.fastpath import default_workers
    return default_workers()


class _UsageError(Exception):
    pass


def _parser():
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise _UsageError(message)

    ap = Parser(prog="pfilter classify", description="Classify every packet by many named filters in one pass.")
    ap.add_argument("-r", dest="files", action="append", required=True, metavar="FILE",
                    help="capture to read (pcap or pcapng); repeatable")
    ap.add_argument("-R", dest="rules", required=True, metavar="RULES",
                    help="rules file: 'name: expression' per line, '#' comments")
    ap.add_argument("--labels", metavar="OUT", help="write the first-match label of every packet to OUT.csv or OUT.npy")
    ap.add_argument("--default", default="", metavar="LABEL", help="label of packets no rule accepts (default: empty)")
    ap.add_argument("-y", dest="linktype", metavar="LINKTYPE", help="compile the rules for this link type")
    ap.add_argument("-O", dest="optimize", action="store_false", help="do not optimize the rule programs")
    ap.add_argument("-j", "--workers", "--threads", dest="threads", type=int, default=None, metavar="N",
                    help="threads sharing each batch (default: the usable cores)")
    ap.add_argument("--split", metavar="TEMPLATE",
                    help="write every rule's packets into its own file, the name TEMPLATE with "
                         "{rule} replaced by the rule's name ('out/{rule}.pcap'; .pcapng, .gz, .zst, "
                         ".xz, .bz2 by extension), in the same pass")
    ap.add_argument("--first-match", action="store_true",
                    help="with --split/--unmatched: a packet goes only into the first rule that "
                         "matches it (default: into every one)")
    ap.add_argument("--unmatched", metavar="FILE", help="write the packets no rule matches to FILE")
    ap.add_argument("--format", choices=("pcap", "pcapng"),
                    help="format of the split files (default: pcapng for a .pcapng name, else pcap)")
    from .cli import add_output_options
    add_output_options(ap)
    ap.add_argument("--progress", dest="progress", action="store_true", default=None,
                    help="show a progress bar on standard error (default: on a terminal, for large inputs)")
    ap.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no progress bar")
    return ap


def cli_main(argv):
    """`pfilter classify -r FILE [-r FILE...] -R RULES [--labels OUT.csv|OUT.npy] [--default LABEL]
    [-y LINKTYPE] [-O] [-j N] [--split 'DIR/{rule}.pcap'] [--first-match] [--unmatched FILE]
    [--format F] [--snaplen N] [--dedup[=W]] [-C MB] [-G S] [-W N] [--progress | --no-progress]`:
    prints a per-rule table (rule, packets, bytes, share); errors are one line on stderr. A rule
    that cannot apply to a link type of the input is one warning line and matches nothing
    there. A damaged capture: the table (and labels) of the packets before the damage, then the
    error line. Returns the exit status: 0 ok, 1 bad input, 2 bad usage. (Ctrl-C and a closed
    standard output are handled by pfilter.cli.main, as for every command.)"""
    argv = list(argv)
    if argv and argv[0] == "classify":
        argv = argv[1:]
    from .cli import bare_dedup, output_edits
    try:
        args = _parser().parse_args(bare_dedup(argv))
    except _UsageError as e:
        print(f"pfilter classify: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:           # --help
        return e.code if isinstance(e.code, int) else 0
    if args.labels and Path(args.labels).suffix.lower() not in (".csv", ".npy"):
        print(f"pfilter classify: --labels needs a .csv or .npy file name, not {args.labels!r}", file=sys.stderr)
        return 2
    truncate, dedup, rotate = output_edits(args)
    writing = args.split is not None or args.unmatched is not None
    if not writing and (args.first_match or truncate or dedup or rotate or args.format):
        print("pfilter classify: --first-match, --format, --snaplen, --dedup, -C and -G apply to "
              "--split / --unmatched files", file=sys.stderr)
        return 2
    status = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuleLinkTypeWarning)
        try:
            try:
                result = classify(args.files, args.rules, linktype=args.linktype, default=args.default,
                                  packed=True, counts_only=not args.labels, optimize=args.optimize,
                                  threads=args.threads if args.threads is not None else _usable_cores(),
                                  progress=_cli_progress(args),
                                  split=args.split, first_match=args.first_match,
                                  unmatched=args.unmatched, format=args.format, truncate=truncate,
                                  dedup=dedup, rotate=rotate)
            except CaptureFormatError as e:
                result = getattr(e, "partial", None)
                if result is None or not result.packets:
                    raise
                _warn_lines(caught)
                failure = e
            else:
                _warn_lines(caught)
                failure = None
            sys.stdout.write(result.table())
            sys.stdout.flush()
            if args.labels:
                _write_labels(args.labels, result.labels(), protect=list(args.files) + [args.rules])
            if failure is not None:
                raise failure
        except BrokenPipeError:
            raise                         # pfilter.cli.main: a closed standard output ends quietly
        except (FilterError, OSError) as e:
            _warn_lines(caught)
            print(f"pfilter classify: {_error_line(e, args.rules)}", file=sys.stderr)
            status = 1
    return status


def _warn_lines(caught):
    """The recorded RuleLinkTypeWarnings as one stderr line each (once each)."""
    for w in caught:
        if issubclass(w.category, RuleLinkTypeWarning):
            print(f"pfilter classify: warning: {w.message}", file=sys.stderr)
    caught.clear()


def _cli_progress(args):
    """--progress: a bar; --no-progress: none; neither: a bar on a terminal for large inputs
    (the same threshold as the other commands)."""
    if args.progress is not None:
        return args.progress
    if not sys.stderr.isatty():
        return None
    from .cli import PROGRESS_MIN_BYTES
    total = 0
    for f in args.files:
        try:
            total += os.path.getsize(f)
        except OSError:
            pass
    return True if total >= PROGRESS_MIN_BYTES else None


def _error_line(err, rules_path):
    """An error as one line; a file-system failure names its file (and the rules file as such)."""
    if isinstance(err, FilterSyntaxError):
        return err.message
    if isinstance(err, OSError) and err.strerror:
        name = err.filename if err.filename is not None else ""
        what = "cannot read rules file: " if name and os.fsdecode(name) == rules_path else ""
        return f"{os.fsdecode(name)}: {what}{err.strerror}" if name else err.strerror
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _write_labels(path, labels, protect=()):
    """labels to OUT.npy (numpy str array) or OUT.csv (header `packet,label`, one row a packet),
    atomically (the file appears whole or not at all) and never over a file of `protect`."""
    if Path(path).suffix.lower() == ".npy":
        buf = io.BytesIO()
        np.save(buf, labels)
        data = buf.getbuffer()
    else:
        text = io.StringIO()
        w = csv.writer(text, lineterminator="\n")
        w.writerow(["packet", "label"])
        w.writerows(zip(range(len(labels)), labels.tolist()))
        data = text.getvalue().encode("utf-8")
    from .capture.files import AtomicFile
    out = AtomicFile(path, protect=protect)
    try:
        out.write(data)
    except BaseException:
        out.abort()
        raise
    out.commit()
