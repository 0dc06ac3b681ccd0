"""Probe packets steered into every branch of a program, cut at every length a load cares
about: where a wrongly dropped or reordered load turns "return 0" into an accept (the class of
libpcap -O bugs), optimized and unoptimized programs part ways on these packets.

`probe_packets(insns, bases)` runs the program on each base packet with a tracing interpreter
that remembers which packet bytes A came from; at each test of such a value against a constant,
it writes a value taking the other branch into a copy of the packet, and explores the copies
the same way (breadth first, bounded). Every probe is then cut at each length where a load of
the program starts or stops fitting. Also used by bench/optimizer_report.py.
"""
import random

import numpy as np

import pfilter
import reference
from pfilter.optimizer import optimize_program

M32 = 0xFFFFFFFF
SIZES = {0x00: 4, 0x08: 2, 0x10: 1}


def _trace(insns, pkt):
    """[(offset, size, mask, [values to try])] for the tests on packet bytes along pkt's path,
    the set of (offset + size) of loads executed, and the path (instructions executed)."""
    A = X = 0
    mem = [0] * 16
    src = None                  # (offset, size, mask) A was loaded from
    flips, ends, path = [], set(), []
    pc, n = 0, len(insns)
    steps = 0
    while pc < n and steps < 10000:
        steps += 1
        code, jt, jf, k = insns[pc]
        cls = code & 7
        pc += 1
        if cls in (0, 1):
            mode, size = code & 0xE0, code & 0x18
            if mode == 0x00:
                v, s = k, None
            elif mode == 0x80:
                v, s = len(pkt), None
            elif mode == 0x60:
                v, s = mem[k], None
            elif mode == 0xA0:
                ends.add(k + 1)
                if k >= len(pkt):
                    return flips, ends, path
                v, s = 4 * (pkt[k] & 0xF), None
            else:
                off = k if mode == 0x20 else X + k
                nb = SIZES[size]
                ends.add(off + nb)
                if off + nb > len(pkt):
                    return flips, ends, path
                v, s = int.from_bytes(pkt[off:off + nb], "big"), (off, nb, (1 << (8 * nb)) - 1)
            if cls == 0:
                A, src = v, s
            else:
                X = v
        elif cls == 2:
            mem[k] = A
        elif cls == 3:
            mem[k] = X
        elif cls == 4:
            op = code & 0xF0
            b = X if code & 8 else k
            if op == 0x50 and src is not None:
                src = (src[0], src[1], src[2] & b)
            elif op != 0x50:
                src = None
            if op in (0x30, 0x90) and b == 0:
                return flips, ends, path
            A = {0x00: lambda: A + b, 0x10: lambda: A - b, 0x20: lambda: A * b, 0x30: lambda: A // b,
                 0x40: lambda: A | b, 0x50: lambda: A & b, 0x60: lambda: A << b if b < 32 else 0,
                 0x70: lambda: A >> b if b < 32 else 0, 0x80: lambda: -A, 0x90: lambda: A % b,
                 0xA0: lambda: A ^ b}[op]() & M32
        elif cls == 5:
            op = code & 0xF0
            if op == 0x00:
                pc += k
                continue
            b = X if code & 8 else k
            if src is not None and not code & 8:
                flips.append((src, [b, b ^ 1, (b + 1) & M32, (b - 1) & M32, 0, M32]))
            taken = {0x10: A == b, 0x20: A > b, 0x30: A >= b, 0x40: bool(A & b)}[op]
            path.append(pc if taken else -pc)
            pc += jt if taken else jf
        elif cls == 6:
            return flips, ends, path
        else:
            if code & 0xF8 == 0x80:
                A, src = X, None
            else:
                X = A
    return flips, ends, path


def _write(pkt, off, nb, mask, value):
    old = int.from_bytes(pkt[off:off + nb], "big") if off + nb <= len(pkt) else 0
    new = ((old & ~mask) | (value & mask)) & ((1 << (8 * nb)) - 1)
    if off + nb > len(pkt):
        pkt = pkt + bytes(off + nb - len(pkt))
    return pkt[:off] + new.to_bytes(nb, "big") + pkt[off + nb:]


def probe_packets(insns, bases, per_base=64, tries=4000):
    """Probe packets for program insns, grown from the base packets (bytes): one per distinct
    path through the program (at most per_base per base packet)."""
    out = []
    for base in bases:
        seen, paths, keep, queue, ends = set(), set(), [], [bytes(base)], set()
        while queue and len(keep) < per_base and len(seen) < tries:
            p = queue.pop(0)
            if p in seen:
                continue
            seen.add(p)
            flips, e, path = _trace(insns, p)
            path = tuple(path)
            if path in paths:
                continue
            paths.add(path)
            keep.append(p)
            ends |= e
            for (off, nb, mask), values in flips:
                for v in values:
                    q = _write(p, off, nb, mask, v)
                    if q not in seen:
                        queue.append(q)
        cuts = sorted({c for e in ends for c in (e - 1, e)} | {0})
        for p in keep:
            out.append(p)
            out.extend(p[:c] for c in cuts if 0 <= c < len(p))
    return out


def base_packets(count=12, seed=1):
    """A few EN10MB corpus packets of different kinds (by ethertype and IP protocol)."""
    kinds = {}
    for (dlt, _snap), batch in reference.corpus_batches().items():
        if dlt != 1:
            continue
        for i in range(len(batch)):
            p = batch.packet(i)
            if len(p) < 14:
                continue
            kind = (p[12:14], p[23] if p[12:14] == b"\x08\x00" and len(p) > 23 else
                    p[20] if p[12:14] == b"\x86\xdd" and len(p) > 20 else None)
            kinds.setdefault(kind, p)
    rng = random.Random(seed)
    keys = sorted(kinds, key=lambda k: (k[0], -1 if k[1] is None else k[1]))
    preferred = [k for k in keys if k[0] in (b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00")]
    rest = [k for k in keys if k not in preferred]
    rng.shuffle(rest)
    return [kinds[k] for k in (preferred + rest)[:count]]


def probe_batch(insns, bases):
    pkts = probe_packets(insns, bases)
    return pfilter.PacketBatch.from_packets(pkts, wirelens=[max(len(p), 1514) for p in pkts], linktype=1)


def disagreements(a, b, batch):
    ra = pfilter.Program.from_tuples(a).run_batch(batch)
    rb = pfilter.Program.from_tuples(b).run_batch(batch)
    return np.nonzero(ra != rb)[0]


def test_probes_expose_libpcap_dropping_a_load_for_host_or_host():
    # libpcap -O tests [26] == 192.168.1.2 before loading [30]: a 30-byte packet differs.
    row = next(r for r in reference.corpus_expected("en10mb") if r["expr"] == "host 192.168.1.1 or 192.168.1.2")
    batch = probe_batch(row["unopt"], base_packets())
    assert len(disagreements(row["unopt"], row["opt"], batch)) > 0


def test_optimized_corpus_programs_agree_with_unoptimized_ones_on_probe_packets():
    bases = base_packets()
    bad = []
    for row in reference.corpus_expected("en10mb"):
        batch = probe_batch(row["unopt"], bases)
        d = disagreements(row["unopt"], optimize_program(row["unopt"]), batch)
        if len(d):
            bad.append(f"{row['expr']!r}: {len(d)} probe packets differ, e.g. {batch.packet(int(d[0])).hex()}")
    assert not bad, "\n".join(bad[:20])
