"""Pass: regroup chains of tests that share an exit, so each value is loaded once.

Imports pfilter.optimizer.{cfg,values} only.

A chain is a run of conditional blocks b1 -> b2 -> ... -> bn where each block either leaves
to one common exit E or falls to the next (bi, i >= 2, has no other predecessor), and each
block only computes the value it tests into A (a packet load, then K-operand ALU operations;
or nothing, testing the value already in A). The chain means "go to E if any test holds, else
to F", so the tests may run in any order and a value tested twice need only be loaded once:

    ldh [54]; jeq #22 -> E; ldh [56]; jeq #22 -> E; ldh [54]; jeq #53 -> E; ldh [56]; jeq #53 -> E
    becomes  ldh [54]; jeq #22 -> E; jeq #53 -> E; ldh [56]; jeq #22 -> E; jeq #53 -> E

except for what a load past the captured length does (the program returns 0):
  - when E is `ret #0`, an abort and the exit give the same result: any order is fine;
  - otherwise a test may only run after every load that preceded it in the original chain and
    before any load that followed it (which could abort first), so tests are regrouped only
    inside the windows between loads that could abort.
Divergence: libpcap's or/and pull-up (optimize.c: or_pullup(), and_pullup()) moves such tests
across loads (`[54] == 443` before the load of [56] in `port 80 or 443`), which changes its
verdict on truncated packets; pfilter keeps the loads and is sometimes a few instructions longer.
Applied only when it shortens the chain. Terminates: each rewrite removes statements.
"""

from .cfg import COND, RET
from .values import A, evaluate, liveness

__all__ = ["group_tests", "exit_early"]


def _value_stmts(stmts):
    """Is this a block that only computes A from the packet (a load, then K-operand ALU)?"""
    if not stmts:
        return True
    code, k = stmts[0]
    if code & 7 != 0 or code & 0xE0 not in (0x20, 0x40, 0x80):
        return False
    for code, k in stmts[1:]:
        if code & 0x0F != 0x04 or code & 0xF0 in (0x30, 0x90):
            return False
    return True


def _chain(b, exit_slot, used):
    e = b.succ[exit_slot]
    chain = [(b, exit_slot)]
    cur = b
    while True:
        nxt = cur.succ[1 - chain[-1][1]]
        if nxt.id in used or nxt is e or len(nxt.preds) != 1 or nxt.kind != COND or nxt.jcode & 0x08 \
                or not _value_stmts(nxt.stmts) or e not in nxt.succ or nxt.succ[0] is nxt.succ[1]:
            break
        chain.append((nxt, 0 if nxt.succ[0] is e else 1))
        cur = nxt
    return chain


def _chains(order):
    used = set()
    for b in order:
        if b.id in used or b.kind != COND or b.jcode & 0x08 or not b.stmts or not _value_stmts(b.stmts) \
                or b.succ[0] is b.succ[1]:
            continue
        best = None
        for slot in (0, 1):
            ch = _chain(b, slot, used)
            if len(ch) >= 2 and (best is None or len(ch) > len(best)):
                best = ch
        if best is None:
            continue
        if sum(1 for blk, _ in best if blk.stmts) < 2:
            continue
        for blk, _ in best:
            used.add(blk.id)
        yield best


def group_tests(graph, ctx):
    return _regroup_chains(graph, ctx, early_exits=False)


EARLY_MIN = 3       # deferred tests of one value worth an early-exit block (exit_early)


def _regroup(vals, an, chain, e, f, graph=None, entry_ok=None):
    """Rewrite one chain; with `graph`, also move deferred tests early (see exit_early).
    Returns False (unchanged), True, or ENTRY when the rewritten chain tests the value already
    in A at its entry first (allowed only when `entry_ok(head)` says that value still arrives
    there)."""
    st = an.ins[chain[0][0].id].copy()
    tests = []          # (key, op code, k, exit on true)
    recipe = {}
    aborting = []       # keys whose first load could abort, in order
    window = []         # per test: how many aborting loads precede it
    key = None
    old_size = 0
    for blk, slot in chain:
        old_size += len(blk.stmts) + 1
        if blk.stmts:
            may_abort = False
            for code, k in blk.stmts:
                dest, v, check = evaluate(vals, st, code, k)
                if not st.satisfied(check):
                    may_abort = True
                st.advance(dest, v, check)
            key = st.regs[A]
            if key not in recipe:
                recipe[key] = list(blk.stmts)
                if may_abort:
                    aborting.append(key)
            elif may_abort:
                return False
        elif key is None:
            return False
        tests.append((key, blk.jcode, blk.jk, slot == 0))
        window.append(len(aborting))
    zero_exit = e.kind == RET and not e.stmts and e.rcode == 0x06 and e.rk == 0
    if zero_exit:
        window = [0] * len(tests)
    exits = [None] * len(tests)     # None: E; (s, w): the loads of windows s+1..w, then E
    if graph is not None and not zero_exit:
        for s in range(1, len(aborting) + 1):
            deferred = [j for j, t in enumerate(tests) if t[0] == aborting[s - 1] and window[j] > s]
            if len(deferred) >= EARLY_MIN:
                for j in deferred:
                    exits[j] = (s, window[j])
                    window[j] = s
        if not any(exits):
            return False
    tests = [t + (x,) for t, x in zip(tests, exits)]
    schedule = []       # (stmts, test, key)
    entry_key = an.ins[chain[0][0].id].regs[A]
    if entry_key not in recipe or (entry_ok is not None and not entry_ok(chain[0][0])):
        entry_key = None
    for w in sorted(set(window)):
        group = [t for t, tw in zip(tests, window) if tw == w]
        keys = []
        if w and not zero_exit:
            keys.append(aborting[w - 1])
        if not keys and entry_key is not None and any(t[0] == entry_key for t in group) and not schedule:
            keys.append(entry_key)
        for t in group:
            if t[0] not in keys:
                keys.append(t[0])
        current = entry_key if not schedule else schedule[-1][2]
        for kk in keys:
            mine = [t for t in group if t[0] == kk]
            if not mine:
                schedule.append((recipe[kk], None, kk))
                current = kk
                continue
            for i, t in enumerate(mine):
                stmts = recipe[kk] if (i == 0 and current != kk) else []
                schedule.append((stmts, t, kk))
                current = kk
    # fold a bare load (no test) into the next scheduled test's statements
    merged = []
    pending = []
    for stmts, t, kk in schedule:
        if t is None:
            pending = list(stmts)
            continue
        if pending and stmts:
            return False
        merged.append((pending or list(stmts), t))
        pending = []
    if pending:
        return False
    new_size = sum(len(s) + 1 for s, _ in merged)
    if len(merged) != len(chain) or (graph is None and new_size >= old_size):
        return False
    blocks = [blk for blk, _ in chain]
    origins = frozenset().union(*(blk.origins for blk in blocks))   # tests move among them
    landing = {}
    for i, (stmts, (kk, code, k, on_true, x)) in enumerate(merged):
        blk = blocks[i]
        nxt = blocks[i + 1] if i + 1 < len(blocks) else f
        out = e
        if x is not None:
            out = landing.get(x)
            if out is None:
                # the loads the test originally came after (their aborts), then E
                out = landing[x] = graph.new_block((blocks[-1].order + e.order) / 2)
                out.origins = origins
                out.stmts = [recipe[aborting[j]][0] for j in range(x[0], x[1])]
                out.set_goto(e)
        blk.stmts = stmts
        blk.origins = origins
        if on_true:
            blk.set_cond(code, k, out, nxt)
        else:
            blk.set_cond(code, k, nxt, out)
    return ENTRY if not merged[0][0] else True


ENTRY = "entry"     # _regroup's result for a chain that now reads A at its entry
SOURCES_MAX = 256   # blocks _a_sources visits before it gives up (the chain then reloads)


def _a_sources(head):
    """The blocks whose value of A at their exit can reach `head`'s entry unchanged (each
    predecessor, and further back through blocks that leave A as it came), or None when there
    are more than SOURCES_MAX."""
    seen = set()
    todo = [head]
    while todo:
        for p in todo.pop().preds:
            if p.id in seen:
                continue
            seen.add(p.id)
            if len(seen) > SOURCES_MAX:
                return None
            if not any(code & 7 == 0 or code == 0x87 for code, _k in p.stmts):
                todo.append(p)     # no `ld`/`txa` in p: A at p's exit depends on A at its entry
    return seen


def exit_early(graph, ctx):
    """Final, one-shot variant of group_tests for exits that are not `ret #0`: a value's tests
    that had to wait for later loads (they may abort first) run while the value is still in A,
    exiting through a block that performs those loads and then goes to E, instead of reloading
    the value after them. Trades one instruction for a shorter path: `host a or host b or ...`
    then tests every source address, loads the destination once and tests every one of them,
    as libpcap -O does, but without skipping the destination load on a match."""
    return _regroup_chains(graph, ctx, early_exits=True)


def _regroup_chains(graph, ctx, early_exits):
    """Regroup every chain of tests whose exits do not read A (shared by group_tests and
    exit_early; `early_exits` also moves deferred tests early)."""
    chains = list(_chains(graph.link_preds()))
    if not chains:
        return False
    vals = ctx.vals
    an = ctx.analysis(graph)
    live_in = liveness(an.order)
    # The analysis and liveness describe the graph before this call's rewrites, and a rewrite
    # changes the value of A leaving each block of its chain (the last value loaded before each
    # exit). So a chain may test the value in A at its entry without reloading it only when no
    # block rewritten in this call can pass A to that entry, and once one does, no later rewrite
    # may touch a block that can.
    rewritten = set()       # ids of the blocks of chains rewritten so far
    feeding = set()         # ids of blocks whose A reaches a rewritten chain that reads it

    def entry_ok(head):
        src = _a_sources(head)
        if src is None or src & rewritten:
            return False
        entry_ok.src = src
        return True

    changed = False
    for best in chains:
        e = best[0][0].succ[best[0][1]]
        last, last_slot = best[-1]
        f = last.succ[1 - last_slot]
        if live_in[e.id] & 1 or live_in[f.id] & 1:
            continue
        ids = {blk.id for blk, _ in best}
        if ids & feeding:
            continue
        r = _regroup(vals, an, best, e, f, graph if early_exits else None, entry_ok)
        if r:
            changed = True
            rewritten |= ids
            if r is ENTRY:
                feeding |= entry_ok.src
    return changed
