"""Native classification (pfilter.native.classifier_for, pfilter/native_classify.py) against the
VM: the rule matrix, counts and byte totals equal each rule's own Program verdicts
(Program.run_batch, the VM) and the Cython engine's, on the corpus expressions x the corpus
captures, and on random rule sets (host, net, port and header-field rules whose constants the
packets hit, mixed with random valid programs) over generated packets cut at every length. Rows
subsets, packed output and counts-only runs are held to the same answers, and pfilter.classify's
backend="native" gives the VM's Classification. Needs llvmlite (skipped when missing, a failure
with CI=true); the corpus part needs ../shared/corpus (tests/reference.py)."""
import os
import random
import struct

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter import native
from pfilter.classification.plan import plan
from test_lowering import random_program

if not native.available():
    if os.environ.get("CI") == "true":
        pytest.fail(f"llvmlite is missing under CI=true: {native.EXTRA_HINT}", pytrace=False)
    pytest.skip(f"llvmlite not installed ({native.EXTRA_HINT})", allow_module_level=True)


def _vm_matrix(programs, batch):
    return np.stack([p.run_batch(batch) != 0 for p in programs], axis=1) if programs else \
        np.zeros((len(batch), 0), bool)


def _run(eng, batch, nrules, rows=None, out="matrix"):
    counts, nbytes = np.zeros(nrules, np.int64), np.zeros(nrules, np.int64)
    mat = None
    if out == "matrix":
        mat = np.zeros((len(batch), nrules), np.uint8)
    elif out == "packed":
        mat = np.zeros((len(batch), (nrules + 7) // 8), np.uint8)
    eng.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, rows, mat, out == "packed", counts, nbytes)
    return mat, counts, nbytes


def _check(programs, batch, what):
    """The native classifier of `programs` gives the VM's verdicts on `batch`, in every output mode."""
    pl = plan(programs)
    nat = native.classifier_for(pl)
    want = _vm_matrix(programs, batch)
    n = len(programs)
    mat, counts, nbytes = _run(nat, batch, n)
    if not np.array_equal(mat.view(bool), want):
        i, r = (int(v[0]) for v in np.nonzero(mat.view(bool) != want))
        pytest.fail(f"{what}: rule {r} {programs[r].source or programs[r].to_tuples()} on packet {i} "
                    f"({batch.packet(i).hex()}): native {bool(mat[i, r])}, VM {bool(want[i, r])}")
    assert np.array_equal(counts, want.sum(axis=0))
    assert np.array_equal(nbytes, (want * batch.wirelen[:, None].astype(np.int64)).sum(axis=0))
    # the Cython engine agrees too (the same plan)
    emat, ecounts, enbytes = _run(pl.engine(), batch, n)
    assert np.array_equal(emat, mat) and np.array_equal(ecounts, counts) and np.array_equal(enbytes, nbytes)
    # packed output and counts only
    pmat, pcounts, _ = _run(nat, batch, n, out="packed")
    assert np.array_equal(pmat, np.packbits(want, axis=1))
    assert np.array_equal(pcounts, counts)
    _, ccounts, cbytes = _run(nat, batch, n, out=None)
    assert np.array_equal(ccounts, counts) and np.array_equal(cbytes, nbytes)
    # a subset of rows: only those rows written and counted
    rows = np.arange(0, len(batch), 3, dtype=np.int64)
    smat, scounts, _ = _run(nat, batch, n, rows=rows)
    assert np.array_equal(smat[rows].view(bool), want[rows])
    assert not smat[np.setdiff1d(np.arange(len(batch)), rows)].any()
    assert np.array_equal(scounts, want[rows].sum(axis=0))
    return int(want.sum())


# ----------------------------------------------------------------------------- random rule sets

HOSTS = ["10.0.0.1", "10.0.0.2", "192.168.1.7", "172.16.0.9", "10.0.0.3"]
PORTS = [53, 80, 443, 8080, 22, 1000]


def _ip4(rng):
    return bytes(int(x) for x in rng.choice(HOSTS).split("."))


def _packet(rng):
    """An Ethernet frame with headers the rules test: IPv4 (options sometimes) or IPv6 carrying
    TCP/UDP/ICMP with ports and addresses from small pools, ARP, or a VLAN tag; random tail."""
    eth = bytes(rng.getrandbits(8) for _ in range(12))
    kind = rng.choice(["ip", "ip", "ip", "ip6", "arp", "vlan", "junk"])
    if kind == "junk":
        return eth + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 60)))
    vlan = b""
    if kind == "vlan":
        vlan = b"\x81\x00" + struct.pack(">H", rng.choice([100, 200, 7]))
        kind = "ip"
    proto = rng.choice([6, 6, 17, 17, 1, 58, 47])
    ports = struct.pack(">HH", rng.choice(PORTS), rng.choice(PORTS)) + bytes(rng.getrandbits(8) for _ in range(20))
    if kind == "arp":
        return eth + b"\x08\x06" + bytes(14) + _ip4(rng) + bytes(6) + _ip4(rng)
    if kind == "ip6":
        return (eth + vlan + b"\x86\xdd" + b"\x60" + bytes(5) + bytes([proto, 64]) + bytes(15) + bytes([1])
                + bytes(15) + bytes([2]) + ports)
    ihl = rng.choice([5, 5, 6])
    frag = rng.choice([0, 0, 0, 0x2000, 5])
    hdr = (bytes([0x40 | ihl, 0]) + struct.pack(">HHH", rng.randint(20, 1500), 1, frag) + bytes([64, proto, 0, 0])
           + _ip4(rng) + _ip4(rng) + bytes(4 * (ihl - 5)))
    return eth + vlan + b"\x08\x00" + hdr + ports


TEMPLATES = [
    "host {h}", "src host {h}", "dst host {h}", "not host {h}", "net {n24}/24", "net {n30}/30",
    "tcp port {p}", "udp port {p}", "tcp dst port {p}", "udp src port {p}", "port {p}", "not port {p}",
    "ip6 and tcp port {p}", "vlan and host {h}", "vlan {v}", "tcp[13] & {b} != 0", "ip[8] < {b}",
    "ip and not tcp", "ip6", "arp", "icmp", "tcp", "less 60", "len > {b}", "ip[2:2] > {b}",
    "host {h} and port {p}", "host {h} or host {h2}", "tcp portrange {p}-{p2}",
]


def _expr(rng):
    p, p2 = sorted(rng.sample(PORTS, 2))
    h, h2 = rng.sample(HOSTS, 2)
    a = [int(x) for x in h.split(".")]
    n24, n30 = ".".join(map(str, a[:3] + [0])), ".".join(map(str, a[:3] + [a[3] & 0xFC]))
    return rng.choice(TEMPLATES).format(h=h, h2=h2, p=p, p2=p2, v=rng.choice([100, 200]), b=rng.randint(0, 255),
                                        n24=n24, n30=n30)


def _truncated_batch(rng, count):
    pkts = []
    for _ in range(count):
        pkt = _packet(rng)
        cut = rng.choice([len(pkt), len(pkt), rng.randint(0, len(pkt))])
        pkts.append(pkt[:cut])
    # one packet at every captured length
    base = _packet(rng)
    pkts += [base[:n] for n in range(len(base) + 1)]
    wl = [rng.choice([len(p), len(p) + rng.randint(0, 1500)]) for p in pkts]
    return pfilter.PacketBatch.from_packets(pkts, wirelens=wl)


@pytest.mark.parametrize("seed", range(8))
def test_random_rule_sets_match_the_vm(seed):
    rng = random.Random(7000 + seed)
    batch = _truncated_batch(rng, 600)
    programs = []
    nrules = rng.choice([2, 9, 40, 70, 130])
    while len(programs) < nrules:
        if rng.random() < 0.15:
            programs.append(pfilter.Program.from_tuples(random_program(rng, max_len=rng.choice([8, 30]))))
        else:
            programs.append(pfilter.compile(_expr(rng), optimize=rng.choice(["shareable", True, False])))
    hits = _check(programs, batch, f"seed {seed}")
    assert hits > 0


def test_groups_are_exercised():
    # the random rule sets above do build equality groups (many constants compared with one
    # value), so the default-verdict path and the exact re-evaluation both run
    rng = random.Random(1)
    programs = [pfilter.compile(e, optimize="shareable") for e in
                [f"host {h}" for h in HOSTS] + [f"tcp port {p}" for p in PORTS]]
    assert len(plan(programs).gvalue) >= 2
    _check(programs, _truncated_batch(rng, 400), "hosts and ports")


def test_groups_behind_an_ethertype_test_are_skipped_only_when_no_rule_reaches_them():
    # `host X` meets the IPv4 address groups only after `ldh [12]; jeq #0x800` (and the ARP ones
    # after ARP/RARP): those groups are looked up only for such packets. `ether[26:4] = X` meets
    # the same IPv4 source value with no EtherType test: that group has no set, so it is looked up
    # on every packet (on ARP, IPv6 and junk frames too), and the verdicts stay the VM's
    from pfilter.lowering import lower
    from pfilter.native_classify import _ethertypes, _group_jumps
    rng = random.Random(5)
    hosts = [f"host {h}" for h in HOSTS]
    programs = [pfilter.compile(e, optimize="shareable") for e in hosts]
    pl = plan(programs)
    sets = _ethertypes(pl, [lower(p) for p in pl.programs], _group_jumps(pl))
    assert frozenset({0x800}) in sets and frozenset({0x806, 0x8035}) in sets and None not in sets
    # past the packet-class signature (24 tests), the raw loads become group tests too
    many = [f"10.0.0.{i}" for i in range(1, 41)] + HOSTS
    mixed = [pfilter.compile(e, optimize="shareable") for e in
             [f"host {h}" for h in many] + [f"ether[26:4] = 0x{int.from_bytes(bytes(map(int, h.split('.'))), 'big'):08x}"
                                            for h in many]]
    pl = plan(mixed)
    sets = _ethertypes(pl, [lower(p) for p in pl.programs], _group_jumps(pl))
    assert None in sets and frozenset({0x800}) in sets
    # frames of every EtherType carrying one of the addresses at offset 26, cut at every length
    frames = [bytes(12) + struct.pack(">H", etype) + bytes(12) + bytes(map(int, h.split("."))) + bytes(8)
              for etype in (0x0800, 0x0806, 0x8035, 0x86DD, 0x1234) for h in many[::9]]
    pkts = [f[:n] for f in frames for n in (len(f), 30, 29, 14, 13)]
    batch = pfilter.PacketBatch.from_packets(pkts, wirelens=[len(p) + 4 for p in pkts])
    _check(mixed, batch, "hosts and raw loads on every EtherType")
    # the raw loads do accept frames that are not IPv4 (a skipped group would miss them)
    not_ip = np.array([len(p) >= 14 and p[12:14] != b"\x08\x00" for p in pkts])
    assert _vm_matrix(mixed[len(many):], batch)[not_ip].any()
    _check(programs, _truncated_batch(rng, 600), "hosts")
    _check(mixed, _truncated_batch(rng, 600), "hosts and raw loads")


def test_errors_and_empty_inputs():
    programs = [pfilter.compile("tcp"), pfilter.compile("udp")]
    nat = native.classifier_for(plan(programs))
    batch = pfilter.PacketBatch.from_packets([b"\x00" * 60, b""])
    counts, nbytes = np.zeros(2, np.int64), np.zeros(2, np.int64)
    with pytest.raises(IndexError):
        nat.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, np.array([0, 5]), None, False, counts, nbytes)
    with pytest.raises(ValueError):
        nat.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, None, np.zeros((2, 3), np.uint8), False,
                counts, nbytes)
    with pytest.raises(ValueError):
        nat.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, None, None, False, np.zeros(1, np.int64),
                nbytes)
    # a packet outside the data buffer stops the run with ValueError, as the engine does
    bad = batch.offsets.copy()
    bad[1] = 10**9
    with pytest.raises(ValueError):
        nat.run(batch.data, bad, batch.caplen, batch.wirelen, None, None, False, counts, nbytes)
    empty = pfilter.PacketBatch.from_packets([])
    assert nat.run(empty.data, empty.offsets, empty.caplen, empty.wirelen, None, None, False, counts, nbytes) == 0
    none = native.classifier_for(plan([]))
    assert none.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, None, None, False,
                    np.zeros(0, np.int64), np.zeros(0, np.int64)) == 0
    # compiled once per rule set: the second one comes from the cache
    assert native.classifier_for(plan(programs)).compile_seconds == 0.0


def test_classify_backend_native_gives_the_vm_classification():
    rng = random.Random(3)
    batch = _truncated_batch(rng, 300)
    rules = {f"r{i}": _expr(rng) for i in range(30)}
    want = pfilter.classify(batch, rules, backend="vm")
    got = pfilter.classify(batch, rules, backend="native")
    assert np.array_equal(got.matrix, want.matrix)
    assert np.array_equal(got.counts, want.counts)


def test_a_second_classify_reuses_the_plan_and_the_native_code():
    from pfilter.classification import run
    rng = random.Random(4)
    batch = _truncated_batch(rng, 200)
    rules = {f"r{i}": _expr(rng) for i in range(20)}
    first = pfilter.classify(batch, rules, backend="native")
    before, cached = run._plan.cache_info(), len(native._cache)
    again = pfilter.classify(batch, rules, backend="native")
    vm = pfilter.classify(batch, rules, backend="vm")
    after = run._plan.cache_info()
    assert after.misses == before.misses and after.hits >= before.hits + 2    # neither backend planned again
    assert len(native._cache) == cached                                       # nor compiled again
    assert np.array_equal(again.matrix, first.matrix) and np.array_equal(vm.matrix, first.matrix)
    assert np.array_equal(again.counts, vm.counts)


# ----------------------------------------------------------------------------- the corpus

def test_corpus_rules_on_corpus_captures():
    from test_native_corpus import _by_linktype
    exprs = ref.corpus_expressions()
    batches = _by_linktype(ref.corpus_batches())
    sets = verdicts = hits = 0
    for dlt, batch in sorted(batches.items()):
        programs = []
        for expr in exprs.get(ref.dlt_name(dlt), []):
            try:
                programs.append(pfilter.compile(expr, linktype=dlt, optimize="shareable"))
            except pfilter.FilterError:
                continue
        for start in range(0, len(programs), 128):
            chunk = programs[start:start + 128]
            if len(chunk) < 2:
                continue
            hits += _check(chunk, batch, f"{ref.dlt_name(dlt)} rules {start}..")
            sets += 1
            verdicts += len(chunk) * len(batch)
    print(f"\n{sets} rule sets, {verdicts} verdicts, {hits} accepted")
    assert sets >= 4 and hits > 0
