#!/usr/bin/env python3
"""How many of pfilter's printed lines are identical to `tcpdump -n -r`'s, per link type and per
flag set, over the public capture corpus ($PFILTER_CORPUS, default ../shared/corpus): the first
N packets of every capture tcpdump reads (default 200), tcpdump and pfilter given the same flags.

    python3 scripts/display_agreement.py [--packets N] [--flags '-e' ...] [--worst K]

Prints one table (link type x flag set: identical lines / tcpdump's lines, percent) and, with
--worst, the K captures with the most differing lines for each flag set. Lines are matched in
order (difflib), so one missing or extra line costs one line, not the rest of the capture.
tests/test_display_vs_tcpdump.py asserts thresholds on the same numbers.
"""
import argparse
import difflib
import io
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the flag sets of issue 16, by name
FLAG_SETS = {"-n": [], "-n -e": ["-e"], "-n -tttt": ["-tttt"], "-n -x": ["-x"], "-n -v": ["-v"]}
#: the link types the issue names a threshold for, and what they are called in the table
GROUPS = {1: "Ethernet", 113: "Linux cooked", 276: "Linux cooked", 101: "raw IP", 12: "raw IP",
          14: "raw IP", 228: "raw IP", 229: "raw IP"}


def corpus_dir():
    return (ROOT / os.environ.get("PFILTER_CORPUS", "../shared/corpus")).resolve()


def corpus_rows(corpus=None):
    corpus = corpus or corpus_dir()
    lines = (corpus / "pcaps.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        row = dict(zip(head, line.split("\t")))
        row["file"] = corpus / "pcaps" / row["copied_as"]
        rows.append(row)
    return rows


def tcpdump_lines(path, flags, packets, tcpdump="tcpdump"):
    """tcpdump -n's lines for the first `packets` packets, or None when tcpdump cannot read the file."""
    run = subprocess.run([tcpdump, "-n", "-c", str(packets), "-r", str(path)] + flags,
                         capture_output=True, env=dict(os.environ, TZ=os.environ.get("TZ", "UTC")))
    text = run.stdout.decode("utf-8", "replace")
    if run.returncode != 0 and not text:
        return None
    return text.splitlines()


def printer_options(flags):
    """Printer keyword arguments for tcpdump flags such as ['-e', '-tttt', '-x']."""
    opts = {}
    for f in flags:
        letters = f.lstrip("-")
        for c in set(letters):
            key = {"e": "e", "t": "t", "x": "x", "X": "X", "A": "A", "v": "v", "S": "S", "#": "number",
                   "q": "q"}[c]
            opts[key] = opts.get(key, 0) + letters.count(c)
    return opts


def pfilter_lines(path, flags, packets):
    """pfilter's printed lines for the first `packets` packets (those before damage, if any)."""
    import pfilter
    from pfilter.display import Printer
    out = io.StringIO()
    try:
        with pfilter.open(path) as cap:
            p = Printer(snaplen=getattr(cap, "snaplen", None), **printer_options(flags))
            left = packets
            for batch in cap:
                n = min(left, len(batch))
                p.write_batch(batch, range(n), out)
                left -= n
                if left <= 0:
                    break
    except (pfilter.FilterError, OSError):
        pass
    return out.getvalue().splitlines()


def matching(ours, theirs):
    sm = difflib.SequenceMatcher(None, ours, theirs, autojunk=False)
    return sum(b.size for b in sm.get_matching_blocks())


def measure(rows, flag_sets=None, packets=200, tcpdump="tcpdump", details=False):
    """{flag set: {link type: [identical, tcpdump's lines]}}, and per capture results."""
    flag_sets = flag_sets or FLAG_SETS
    table = {name: defaultdict(lambda: [0, 0]) for name in flag_sets}
    per_file = defaultdict(list)
    env_tz = os.environ.get("TZ")
    os.environ.setdefault("TZ", "UTC")
    import time
    time.tzset()
    try:
        for row in rows:
            for name, flags in flag_sets.items():
                theirs = tcpdump_lines(row["file"], flags, packets, tcpdump)
                if theirs is None:
                    continue
                ours = pfilter_lines(row["file"], flags, packets)
                same = matching(ours, theirs)
                lt = int(row["linktype"])
                table[name][lt][0] += same
                table[name][lt][1] += len(theirs)
                if details:
                    per_file[name].append((len(theirs) - same, row["copied_as"], ours, theirs))
    finally:
        if env_tz is None:
            os.environ.pop("TZ", None)
        time.tzset()
    return table, per_file


def summarize(table):
    """Rows (flag set, group, identical, total) for the groups with thresholds and 'all'."""
    out = []
    for name, by_lt in table.items():
        groups = defaultdict(lambda: [0, 0])
        for lt, (same, total) in by_lt.items():
            for g in (GROUPS.get(lt), "all"):
                if g:
                    groups[g][0] += same
                    groups[g][1] += total
        for g, (same, total) in groups.items():
            out.append((name, g, same, total))
    return out


def format_table(table):
    names = list(table)
    lts = sorted({lt for by in table.values() for lt in by}, key=lambda lt: -table[names[0]].get(lt, [0, 0])[1])
    lines = ["| link type | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]

    def cell(same, total):
        return f"{same}/{total} ({100 * same / total:.1f}%)" if total else "-"
    for lt in lts:
        lines.append(f"| {lt}{' ' + GROUPS[lt] if lt in GROUPS else ''} | "
                     + " | ".join(cell(*table[n].get(lt, [0, 0])) for n in names) + " |")
    summary = defaultdict(dict)
    for name, g, same, total in summarize(table):
        summary[g][name] = (same, total)
    for g in ("Ethernet", "Linux cooked", "raw IP", "all"):
        if g in summary:
            lines.append(f"| **{g}** | " + " | ".join(cell(*summary[g].get(n, (0, 0))) for n in names) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=200)
    ap.add_argument("--flags", action="append", help="one flag set (repeatable), e.g. '-e' or '-tttt'")
    ap.add_argument("--worst", type=int, default=0, help="show the K captures with the most differing lines")
    ap.add_argument("--only", help="only captures whose name contains this")
    args = ap.parse_args(argv)
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        sys.exit("tcpdump not found")
    rows = corpus_rows()
    if args.only:
        rows = [r for r in rows if args.only in r["copied_as"]]
    flag_sets = FLAG_SETS if not args.flags else {("-n " + f).strip(): f.split() for f in args.flags}
    table, per_file = measure(rows, flag_sets, args.packets, tcpdump, details=bool(args.worst))
    print(format_table(table))
    for name, files in per_file.items():
        files.sort(key=lambda f: -f[0])
        for bad, fname, ours, theirs in files[:args.worst]:
            if not bad:
                break
            print(f"\n## {name}: {fname}: {bad} lines differ")
            diff = [line for line in difflib.unified_diff(theirs, ours, "tcpdump", "pfilter", n=0, lineterm="")]
            print("\n".join(diff[:12]))


if __name__ == "__main__":
    main()
