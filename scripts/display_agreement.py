#!/usr/bin/env python3
"""How many of pfilter's printed lines are identical to `tcpdump -n -r`'s, per link type and per
flag set, over the public capture corpus ($PFILTER_CORPUS, default ../shared/corpus): the first
N packets of every capture tcpdump reads (default 200), tcpdump and pfilter given the same flags.

    python3 scripts/display_agreement.py [--packets N] [--flags '-e' ...] [--worst K]

Prints two tables (link type x flag set: identical lines / tcpdump's lines, percent): all the
lines, and the lines of the packets in issue 16's scope (SCOPE below) only; with --worst, the K
captures with the most differing lines for each flag set. Lines are matched in order (difflib),
so one missing or extra line costs one line, not the rest of the capture.
tests/test_display_vs_tcpdump.py asserts thresholds on the same numbers.

The scope is decided by libpcap, not by pfilter: a packet is in scope when its link type is one
issue 16 names (SCOPE_LINKTYPES) and libpcap's bpf_filter() matches it with `scope_filter()`
compiled on the capture's own handle: ARP, or IPv4/IPv6 carrying ICMP, ICMPv6, TCP or UDP where
the ports are DNS, NTP, DHCP or HTTP's, or ports tcpdump 4.99 prints generically (neither port
in its print-udp.c/print-tcp.c port dispatch, DECODED_UDP/DECODED_TCP), over Ethernet with or
without one VLAN tag; on 802.11, also the common management and control frames (WLAN_FRAMES). For the in-scope lines, tcpdump writes the
packets it matches with the same filter and `-c k` (k the number of in-scope packets among the
first N, which are exactly the first k it matches) to a copy, which it then prints with each flag
set; the printer is given the indices of those packets.
"""
import argparse
import difflib
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))     # reference.py: libpcap through ctypes

#: the flag sets of issue 16, by name
FLAG_SETS = {"-n": [], "-n -e": ["-e"], "-n -tttt": ["-tttt"], "-n -x": ["-x"], "-n -v": ["-v"]}
#: the link types the issue names a threshold for, and what they are called in the table
GROUPS = {1: "Ethernet", 113: "Linux cooked", 276: "Linux cooked", 101: "raw IP", 12: "raw IP",
          14: "raw IP", 228: "raw IP", 229: "raw IP"}


#: the link types issue 16 names: NULL, Ethernet, PPP (and PPP in HDLC framing, PPPoE), raw IP,
#: 802.11 and 802.11 with radiotap, LOOP, Linux cooked v1/v2
SCOPE_LINKTYPES = {0, 1, 9, 50, 51, 12, 14, 101, 228, 229, 105, 127, 108, 113, 276}
#: the ports tcpdump 4.99 decodes at default verbosity (print-udp.c's and print-tcp.c's port
#: dispatch; ranges inclusive), less the ones the issue asks for (APP_PORTS)
DECODED_UDP = [69, 88, 111, 137, 138, 161, 162, 319, 320, 496, 500, 514, 520, 521, 525, 546, 547, 646,
               654, 698, 701, 750, 921, 1589, 1645, 1646, 1700, 1701, 1812, 1813, 1985, 2049, 2103, 2104,
               3456, 3503, 3784, 3785, 3799, 4342, 4500, 4567, 4784, 4789, 4790, 5060, 5353, 5359, 6081,
               6343, 6635, 6696, 6697, 6784, 7500, 8231, 8472, 8500, 12222, 12223, 17754, 30490, 49152,
               (7000, 7009)]
DECODED_TCP = [21, 22, 23, 25, 43, 111, 139, 179, 323, 445, 554, 639, 646, 1723, 2049, 6379, 6633, 6653,
               8554, 10288]
#: 802.11's common frame types (besides data frames carrying the protocols above)
WLAN_FRAMES = ("(type mgt and (subtype beacon or subtype probe-req or subtype probe-resp or subtype assoc-req"
               " or subtype assoc-resp or subtype reassoc-req or subtype reassoc-resp or subtype disassoc"
               " or subtype auth or subtype deauth)) or (type ctl and (subtype rts or subtype cts or subtype ack))")
#: DNS, NTP, DHCP (BOOTP) and HTTP: the application summaries issue 16 asks for
APP_PORTS = {"udp": [53, 67, 68, 123], "tcp": [53, 80, 8080]}


def _ports(ports):
    return " or ".join(f"portrange {p[0]}-{p[1]}" if isinstance(p, tuple) else f"port {p}" for p in ports)


def scope_filter(linktype):
    """The libpcap expression for the packets issue 16 scopes on a capture of this link type."""
    transport = " or ".join(
        f"({proto} and (({_ports(APP_PORTS[proto])}) or not ({_ports(decoded)})))"
        for proto, decoded in (("udp", DECODED_UDP), ("tcp", DECODED_TCP)))
    base = f"arp or ((ip or ip6) and (icmp or icmp6 or {transport}))"
    if linktype in (105, 127):
        return f"{base} or {WLAN_FRAMES}"
    return f"{base} or (vlan and ({base}))" if linktype == 1 else base


def in_scope(path, linktype, packets, big_endian=False):
    """Indices of the packets among the first `packets` that libpcap matches with scope_filter(),
    or [] for a link type out of scope or a capture libpcap does not read."""
    import reference as ref
    if linktype not in SCOPE_LINKTYPES:
        return []
    import ctypes
    try:
        dlt, snaplen, pkts, _ = ref.read_capture(str(path))
        insns = ref.compile_savefile(scope_filter(linktype), dlt, optimize=True, snaplen=snaplen,
                                     big_endian=big_endian)
    except ref.RefError:
        return []
    prog = (ref._Insn * len(insns))(*[ref._Insn(*t) for t in insns])
    run = ref.libpcap().bpf_filter
    return [i for i, (data, wirelen, _) in enumerate(pkts[:packets])
            if run(ctypes.addressof(prog), data, wirelen, len(data))]


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


def tcpdump_lines(path, flags, packets, tcpdump="tcpdump", expr=None):
    """tcpdump -n's lines for the first `packets` packets (that match expr), or None when tcpdump
    cannot read the file."""
    run = subprocess.run([tcpdump, "-n", "-c", str(packets), "-r", str(path)] + flags + ([expr] if expr else []),
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


def pfilter_lines(path, flags, packets, indices=None):
    """pfilter's printed lines for the first `packets` packets (those before damage, if any), or
    for the packets at `indices` (sorted) only."""
    import pfilter
    from pfilter.display import Printer
    out = io.StringIO()
    try:
        with pfilter.open(path) as cap:
            p = Printer(snaplen=getattr(cap, "snaplen", None), **printer_options(flags))
            left, start = packets, 0
            for batch in cap:
                n = min(left, len(batch))
                sel = range(n) if indices is None else [i - start for i in indices if start <= i < start + n]
                p.write_batch(batch, sel, out)
                left -= n
                start += len(batch)
                if left <= 0:
                    break
    except (pfilter.FilterError, OSError):
        pass
    return out.getvalue().splitlines()


def matching(ours, theirs):
    """How many of tcpdump's lines pfilter printed identically: the common head and tail, and
    difflib's matching blocks between what differs (SequenceMatcher only on the middle: it is
    quadratic in the lines it is given)."""
    if ours == theirs:
        return len(theirs)
    head = 0
    for a, b in zip(ours, theirs):
        if a != b:
            break
        head += 1
    tail = 0
    for a, b in zip(reversed(ours[head:]), reversed(theirs[head:])):
        if a != b:
            break
        tail += 1
    sm = difflib.SequenceMatcher(None, ours[head:len(ours) - tail], theirs[head:len(theirs) - tail], autojunk=False)
    return head + tail + sum(b.size for b in sm.get_matching_blocks())


#: the first four bytes of a pcap file (microseconds, nanoseconds), by the byte order they mean
PCAP_MAGICS = {bytes.fromhex("d4c3b2a1"): "<", bytes.fromhex("4d3cb2a1"): "<",
               bytes.fromhex("a1b2c3d4"): ">", bytes.fromhex("a1b23c4d"): ">"}


def _scoped_copy(path, linktype, indices, tmp):
    """(capture, filter) for tcpdump's in-scope lines: a pcap file of the capture's header and its
    records at `indices` (those libpcap matched with scope_filter(), in_scope()), bytes as they
    are, so that the flag sets read it without a filter instead of each paying libpcap's
    optimizer on the long scope filter (once most of this script's time); or the capture itself
    and the filter when it is not a pcap file, or its records end before the last index."""
    expr = scope_filter(linktype)
    with open(path, "rb") as f:
        data = f.read()
    order = PCAP_MAGICS.get(data[:4])
    if order is None:
        return path, expr
    keep, parts, at = set(indices), [data[:24]], 24
    for i in range(max(indices) + 1):
        if at + 16 > len(data):
            return path, expr
        end = at + 16 + struct.unpack_from(order + "I", data, at + 8)[0]
        if i in keep:
            parts.append(data[at:end])
        at = end
    copy = os.path.join(tmp, "scope.pcap")
    with open(copy, "wb") as f:
        f.write(b"".join(parts))
    return copy, None


def measure(rows, flag_sets=None, packets=200, tcpdump="tcpdump", details=False, scope=False):
    """{flag set: {link type: [identical, tcpdump's lines]}}, and per capture results; with
    scope=True, over the lines of the packets in scope only."""
    flag_sets = flag_sets or FLAG_SETS
    table = {name: defaultdict(lambda: [0, 0]) for name in flag_sets}
    per_file = defaultdict(list)
    env_tz = os.environ.get("TZ")
    os.environ.setdefault("TZ", "UTC")
    import time
    time.tzset()
    tmp = tempfile.TemporaryDirectory(prefix="pfilter-display-") if scope else None
    try:
        for row in rows:
            lt = int(row["linktype"])
            source, expr, indices = row["file"], None, None
            if scope:
                indices = in_scope(row["file"], lt, packets, row.get("byteorder") == "BE")
                if not indices:
                    continue
                source, expr = _scoped_copy(row["file"], lt, indices, tmp.name)
            for name, flags in flag_sets.items():
                theirs = tcpdump_lines(source, flags, len(indices) if scope else packets, tcpdump, expr)
                if theirs is None:
                    continue
                ours = pfilter_lines(row["file"], flags, packets, indices)
                same = matching(ours, theirs)
                table[name][lt][0] += same
                table[name][lt][1] += len(theirs)
                if details:
                    per_file[name].append((len(theirs) - same, row["copied_as"], ours, theirs))
    finally:
        if tmp is not None:
            tmp.cleanup()
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
    ap.add_argument("--scope", choices=["both", "all", "in"], default="both",
                    help="all lines, the in-scope packets' lines, or both tables (default)")
    args = ap.parse_args(argv)
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        sys.exit("tcpdump not found")
    rows = corpus_rows()
    if args.only:
        rows = [r for r in rows if args.only in r["copied_as"]]
    flag_sets = FLAG_SETS if not args.flags else {("-n " + f).strip(): f.split() for f in args.flags}
    for scope in ((False, True) if args.scope == "both" else (args.scope == "in",)):
        table, per_file = measure(rows, flag_sets, args.packets, tcpdump, details=bool(args.worst), scope=scope)
        print(f"\n### {'in-scope lines' if scope else 'all lines'}\n")
        print(format_table(table))
        show_worst(per_file, args.worst)


def show_worst(per_file, worst):
    for name, files in per_file.items():
        files.sort(key=lambda f: -f[0])
        for bad, fname, ours, theirs in files[:worst]:
            if not bad:
                break
            print(f"\n## {name}: {fname}: {bad} lines differ")
            diff = [line for line in difflib.unified_diff(theirs, ours, "tcpdump", "pfilter", n=0, lineterm="")]
            print("\n".join(diff[:12]))


if __name__ == "__main__":
    main()
