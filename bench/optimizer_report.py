#!/usr/bin/env python3
"""Optimizer report: pfilter's optimizer against libpcap 1.10.3's -O on the corpus expressions.

For every EN10MB corpus expression (../shared/corpus/expected: libpcap's unoptimized and
optimized bytecode), optimize libpcap's unoptimized program with pfilter.optimizer and compare:
  - size: instructions, pfilter vs libpcap -O;
  - path length: instructions executed per packet, averaged over every EN10MB corpus packet
    (also for the five standard benchmark expressions of bench/conftest.py, whose path must be
    no longer than libpcap -O's: issue 4);
  - whether libpcap's -O program is even equivalent to its unoptimized one (same return value on
    every corpus packet, on truncated copies of 300 of them, and on probe packets steered into
    every branch and cut where loads stop fitting: tests/test_optimizer_probes.py): where it is
    not, libpcap dropped or reordered a load, and pfilter, which must not, may be larger.
Prints one line per expression (--all) or the worst cases, then totals. Run from the repository:

    python3 bench/optimizer_report.py [--all] [--worst 25]

Imports pfilter, tests/reference.py (libpcap through ctypes, corpus helpers) and the standard
expressions of bench/conftest.py.
"""
import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import pfilter  # noqa: E402
import reference  # noqa: E402
from pfilter.optimizer import optimize_program  # noqa: E402
from test_optimizer_probes import base_packets, probe_batch  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from conftest import STANDARD_EXPRESSIONS, expression_id  # noqa: E402


def en10mb_batches():
    pkts = []
    for (dlt, _snap), batch in reference.corpus_batches().items():
        if dlt == 1:
            pkts.extend((batch.packet(i), int(batch.wirelen[i])) for i in range(len(batch)))
    full = pfilter.PacketBatch.from_packets([p for p, _ in pkts], wirelens=[w for _, w in pkts], linktype=1)
    rng = random.Random(4)
    sample = rng.sample(pkts, min(300, len(pkts)))
    cut = [(p[:n], w) for p, w in sample for n in range(0, min(len(p), 96))]
    trunc = pfilter.PacketBatch.from_packets([p for p, _ in cut], wirelens=[w for _, w in cut], linktype=1)
    return full, trunc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--all", action="store_true", help="one line per expression")
    ap.add_argument("--worst", type=int, default=25, help="worst cases to list")
    args = ap.parse_args()

    rows = reference.corpus_expected("en10mb")
    full, trunc = en10mb_batches()
    bases = base_packets()
    npk = len(full)
    t_opt = 0.0
    recs = []
    for r in rows:
        t0 = time.perf_counter()
        ours = optimize_program(r["unopt"])
        t_opt += time.perf_counter() - t0
        p_ours = pfilter.Program.from_tuples(ours)
        p_lib = pfilter.Program.from_tuples(r["opt"])
        p_un = pfilter.Program.from_tuples(r["unopt"])
        probes = probe_batch(r["unopt"], bases)
        lib_ok = all(np.array_equal(p_un.run_batch(b), p_lib.run_batch(b)) for b in (full, trunc, probes))
        ours_ok = all(np.array_equal(p_un.run_batch(b), p_ours.run_batch(b)) for b in (full, trunc, probes))
        recs.append(dict(expr=r["expr"], unopt=len(r["unopt"]), lib=len(r["opt"]), ours=len(ours),
                         lib_steps=float(p_lib.count_steps(full).sum()) / npk,
                         ours_steps=float(p_ours.count_steps(full).sum()) / npk,
                         lib_ok=lib_ok, ours_ok=ours_ok))
    if args.all:
        for x in recs:
            print(f"{x['ours']:5d} {x['lib']:5d} {x['ours_steps']:7.2f} {x['lib_steps']:7.2f} "
                  f"{'' if x['lib_ok'] else 'libpcap-O-inequivalent '}{x['expr']}")
    n = len(recs)
    le = sum(x["ours"] <= x["lib"] for x in recs)
    over10 = [x for x in recs if x["ours"] > 1.10 * x["lib"]]
    worse = sorted((x for x in recs if x["ours"] > x["lib"]), key=lambda x: x["ours"] / x["lib"], reverse=True)
    print(f"\nworst {min(args.worst, len(worse))} by size ratio (pfilter/libpcap -O):")
    for x in worse[:args.worst]:
        flag = "" if x["lib_ok"] else "  [libpcap -O changes verdicts]"
        print(f"  {x['ours']:4d} vs {x['lib']:4d} ({x['ours'] / x['lib']:.2f}x)  {x['expr']}{flag}")
    steps_worse = sorted((x for x in recs if x["ours_steps"] > x["lib_steps"] + 1e-9),
                         key=lambda x: x["ours_steps"] - x["lib_steps"], reverse=True)
    print(f"\nworst {min(args.worst, len(steps_worse))} by executed instructions per packet:")
    for x in steps_worse[:args.worst]:
        flag = "" if x["lib_ok"] else "  [libpcap -O changes verdicts]"
        print(f"  {x['ours_steps']:6.2f} vs {x['lib_steps']:6.2f}  {x['expr']}{flag}")
    eq = [x for x in recs if x["lib_ok"]]
    print("\ntotals:")
    print(f"  expressions: {n}; optimizer time {t_opt:.2f}s ({1000 * t_opt / n:.1f} ms each)")
    print(f"  pfilter never changed a verdict: {all(x['ours_ok'] for x in recs)} "
          f"({sum(not x['ours_ok'] for x in recs)} expressions differ)")
    print(f"  libpcap -O changes verdicts (vs its own unoptimized program) for {n - len(eq)} expressions")
    print(f"  size: pfilter <= libpcap -O for {le}/{n} ({100 * le / n:.1f}%); > 10% larger: {len(over10)} "
          f"({sum(not x['lib_ok'] for x in over10)} of them where libpcap -O changes verdicts)")
    print(f"  size totals: unoptimized {sum(x['unopt'] for x in recs)}, libpcap -O {sum(x['lib'] for x in recs)}, "
          f"pfilter {sum(x['ours'] for x in recs)}")
    le_eq = sum(x["ours"] <= x["lib"] for x in eq)
    print(f"  where libpcap -O is equivalent ({len(eq)}): pfilter <= libpcap for {le_eq}; totals "
          f"libpcap {sum(x['lib'] for x in eq)}, pfilter {sum(x['ours'] for x in eq)}")
    print(f"  executed instructions per packet ({npk} packets), summed over expressions: "
          f"libpcap -O {sum(x['lib_steps'] for x in recs):.1f}, pfilter {sum(x['ours_steps'] for x in recs):.1f}; "
          f"pfilter <= libpcap for {sum(x['ours_steps'] <= x['lib_steps'] + 1e-9 for x in recs)}/{n}")
    print("\nstandard benchmark expressions (pfilter.compile vs libpcap -O), executed instructions per packet:")
    for expr in STANDARD_EXPRESSIONS:
        ours = pfilter.compile(expr)
        lib = pfilter.Program.from_tuples(reference.compile(expr, 1, optimize=True))
        s_ours = float(ours.count_steps(full).sum()) / npk
        s_lib = float(lib.count_steps(full).sum()) / npk
        flag = "" if s_ours <= s_lib else "  [LONGER than libpcap -O]"
        print(f"  {s_ours:8.3f} vs {s_lib:8.3f}  (size {len(ours.to_tuples())} vs {len(lib.to_tuples())})  "
              f"{expression_id(expr)}{flag}")


if __name__ == "__main__":
    main()
