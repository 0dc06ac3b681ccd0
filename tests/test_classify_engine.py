"""The multi-rule engine (pfilter._classify via pfilter.classify): every column of the matrix must
equal that rule's own verdicts, packet for packet, on real captures. Most rules here are compiled
by libpcap (reference.compile), so these tests check the engine independently of pfilter's
compiler; test_rules_compiled_by_pfilter_each_give_their_programs_verdicts repeats the check
through pfilter.compile (optimized and not)."""
import importlib

import numpy as np
import pytest

import pfilter
import reference as ref

clmod = importlib.import_module("pfilter.classification.run")   # the driver (plan, _engine, threads)
from pfilter.classification.plan import OP_TEST  # noqa: E402

# >= 20 rules mixing ip / ip6 / vlan / ports / arithmetic / scratch memory / indirect loads
RULES = [
    "ip", "ip6", "arp", "tcp", "udp", "icmp", "icmp6", "ip or ip6", "not ip",
    "tcp port 80", "tcp port 443", "udp port 53", "port 53", "tcp portrange 8000-8999",
    "tcp dst port 80", "src port 1024", "port 80 or port 443", "not port 22 and not port 53",
    "vlan", "vlan 100", "vlan and ip", "vlan and tcp port 80", "tcp port 80 or (vlan and tcp port 80)",
    "ip6 and tcp port 443", "ip6 and udp port 53", "ip6 protochain 6",
    "host 192.168.1.1", "net 10.0.0.0/8", "net 192.168.0.0/16", "ether broadcast",
    "ip multicast", "ip6 multicast", "len > 1000", "less 64", "len - 14 > 1000", "len * 2 > 3000",
    "len % 2 = 0", "ip[2:2] / 4 > 100", "ip[2:2] - 20 > 1400", "(ip[0] & 0xf) * 4 > 20",
    "ip[6:2] & 0x1fff != 0", "tcp[tcpflags] & tcp-syn != 0", "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420", "udp port 53 and udp[10] & 0x80 = 0",
    "ip[ip[0] & 0xf] = 0", "tcp port 80 and (((ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2)) != 0)",
    "icmp[icmptype] = icmp-echo", "mpls", "pppoes and ip6",
]

CAPTURES = [
    "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap",
    "pcapplusplus__Pcap++Test__PcapExamples__example.pcap",
    "tcpdump__afs.pcap",
    "pcapplusplus__Pcap++Test__PcapExamples__DnsPackets.pcap",
    "pcapplusplus__Packet++Test__PacketExamples__ArpRequestWithVlan.pcap",
    "pcapplusplus__Packet++Test__PacketExamples__llc_vlan.pcap",
    "pcapplusplus__Packet++Test__PacketExamples__MplsPackets.pcap",
    "pcapplusplus__Packet++Test__PacketExamples__PPPoESession.pcap",
    "pcapplusplus__Packet++Test__PacketExamples__IcmpV6_EchoMessages.pcap",
    "libpcap__AH-IPcomp-IPv6.pcap",
    "dpkt__dns_icmp.pcap",
    "dpkt__truncated_dns.pcap",
]


def _batch(names, truncate=None):
    """One batch of every packet of the named EN10MB captures, as libpcap reads them; truncate
    cuts every packet to that many captured bytes (wire length unchanged)."""
    pkts, wires = [], []
    for name in names:
        path = ref.PCAPS / name
        if not path.exists():
            ref._missing(f"corpus capture {path}")
        dlt, _, recs, _ = ref.read_capture(path)
        assert dlt == 1, name
        pkts += [p if truncate is None else p[:truncate] for p, _, _ in recs]
        wires += [w for _, w, _ in recs]
    return pfilter.PacketBatch.from_packets(pkts, wirelens=wires, linktype=1)


def _programs(exprs, optimize):
    ref.libpcap()
    return {e: pfilter.Program.from_tuples(ref.compile(e, 1, optimize)) for e in exprs}


@pytest.fixture(scope="module")
def corpus_batch():
    return _batch(CAPTURES)


def _assert_columns_equal_own_verdicts(batch, progs, result):
    assert result.matrix.shape == (len(batch), len(progs))
    for r, (name, prog) in enumerate(progs.items()):
        own = prog.match_batch(batch)
        diff = np.flatnonzero(own != result.matrix[:, r])
        assert diff.size == 0, f"rule {name!r}: {diff.size} packets differ, first #{diff[0]}"
        assert result.counts[r] == own.sum()
        assert result.bytes[r] == batch.wirelen[own].sum(dtype=np.int64)


@pytest.mark.parametrize("optimize", [True, False], ids=["optimized", "unoptimized"])
def test_every_column_equals_the_rules_own_verdicts_on_corpus_captures(corpus_batch, optimize):
    progs = _programs(RULES, optimize)
    result = pfilter.classify(corpus_batch, progs)
    assert len(corpus_batch) > 10000
    _assert_columns_equal_own_verdicts(corpus_batch, progs, result)
    # the rule set is not trivial on this traffic: most rules match something, none matches all
    assert (result.counts > 0).sum() >= 30
    assert (result.counts < len(corpus_batch)).all() or "ip or ip6" in RULES


def test_rules_compiled_by_pfilter_each_give_their_programs_verdicts(corpus_batch):
    result = pfilter.classify(corpus_batch, RULES)          # expressions: pfilter.compile
    for r, expr in enumerate(RULES):
        own = pfilter.compile(expr, linktype="EN10MB").match_batch(corpus_batch)
        assert np.array_equal(result.column(expr), own), expr
        assert result.counts[r] == own.sum()
    unoptimized = pfilter.classify(corpus_batch, RULES, optimize=False, packed=True)
    assert np.array_equal(unoptimized.bool_matrix(), result.matrix)


def test_columns_equal_libpcaps_own_verdicts(corpus_batch):
    progs = _programs(RULES[:24], True)
    result = pfilter.classify(corpus_batch, progs)
    sample = range(0, len(corpus_batch), 7)
    for r, (name, prog) in enumerate(progs.items()):
        tuples = prog.to_tuples()
        for i in sample:
            want = ref.bpf_filter(tuples, corpus_batch.packet(i), int(corpus_batch.wirelen[i])) != 0
            assert result.matrix[i, r] == want, (name, i)


def test_every_corpus_expression_classified_together_matches_its_own_program():
    batch = _batch(CAPTURES[:2] + CAPTURES[4:])
    exprs = []
    for e in ref.corpus_expressions()["EN10MB"]:
        try:
            ref.compile(e, 1, True)
        except ref.RefError:
            continue
        exprs.append(e)
    assert len(exprs) > 400
    progs = _programs(exprs, True)
    _assert_columns_equal_own_verdicts(batch, progs, pfilter.classify(batch, progs))


def test_truncated_packets_abort_a_shared_test_for_every_rule_that_reaches_it(corpus_batch):
    batch = _batch(CAPTURES[:3], truncate=30)          # port and header loads fall off the packet
    progs = _programs(RULES, True)
    _assert_columns_equal_own_verdicts(batch, progs, pfilter.classify(batch, progs))


def test_rules_share_test_nodes():
    progs = _programs(["tcp port 80", "tcp port 443", "udp port 53", "ip", "ip and tcp"], True)
    stats = clmod.plan(list(progs.values())).stats
    assert stats["test_nodes"] < stats["test_sites"]
    # the EtherType test `ldh [12]; jeq #0x800` is one node for all five rules
    p = clmod.plan(list(progs.values()))
    ethertype = [t for t in range(len(p.tvalue)) if p.tcode[t] == 0x15 and p.tk[t] == 0x800
                 and p.vlen[p.tvalue[t]] == 1 and p.vcode[p.vstart[p.tvalue[t]]]["k"] == 12]
    assert len(ethertype) == 1
    assert (p.code["code"] == OP_TEST).sum() == stats["test_sites"]


def test_scratch_memory_and_backward_jumps_run_unchanged():
    # st/ld M[] (unoptimized arithmetic), a backward ja (protochain) and a register read across
    # blocks, next to rules sharing their first test
    progs = _programs(["ip6 protochain 6", "ip[2:2] - 20 > 1400", "ip[2:2] * 2 > 3000", "ip6", "ip"], False)
    batch = _batch(CAPTURES[:2] + ["libpcap__AH-IPcomp-IPv6.pcap"])
    _assert_columns_equal_own_verdicts(batch, progs, pfilter.classify(batch, progs))


def test_foreign_programs_with_x_compares_and_division_by_x_zero():
    # jgt x / div x / ret a: not libpcap's output, written by hand
    tuples = {
        "a_gt_x": [(0x80, 0, 0, 0), (0x07, 0, 0, 0), (0x30, 0, 0, 14), (0x2d, 0, 1, 0),
                   (0x06, 0, 0, 1), (0x06, 0, 0, 0)],
        "len_div_byte": [(0xb1, 0, 0, 14), (0x00, 0, 0, 0), (0x3c, 0, 0, 0), (0x81, 0, 0, 0),
                         (0x87, 0, 0, 0), (0x3c, 0, 0, 0), (0x16, 0, 0, 0)],
        "ret_a": [(0x30, 0, 0, 23), (0x16, 0, 0, 0)],
        "same_ldh12": [(0x28, 0, 0, 12), (0x15, 0, 1, 0x800), (0x06, 0, 0, 1), (0x06, 0, 0, 0)],
    }
    progs = {k: pfilter.Program.from_tuples(v) for k, v in tuples.items()}
    batch = _batch(CAPTURES[:1], truncate=20)
    _assert_columns_equal_own_verdicts(batch, progs, pfilter.classify(batch, progs))


def test_pure_python_fallback_gives_the_same_matrix(corpus_batch, monkeypatch):
    progs = _programs(RULES[:25], True)
    fast = pfilter.classify(corpus_batch, progs)
    monkeypatch.setattr(clmod, "_engine", None)
    slow = pfilter.classify(corpus_batch, progs, packed=True)
    assert np.array_equal(np.unpackbits(slow.matrix, axis=1, count=25).astype(bool), fast.matrix)
    assert np.array_equal(fast.counts, slow.counts) and np.array_equal(fast.bytes, slow.bytes)


def test_engine_refuses_a_program_whose_jump_leaves_it():
    with pytest.raises(pfilter.InvalidProgramError):
        clmod.plan([[(0x15, 5, 0, 1), (0x06, 0, 0, 0)]])
    with pytest.raises(pfilter.InvalidProgramError):
        clmod.plan([[(0x28, 0, 0, 12)]])


def _require_engine():
    """The Cython engine: skipped under PFILTER_PUREPYTHON=1, a failure in CI if not built."""
    if clmod._engine is None:
        from pfilter._impl import PURE
        if ref.IN_CI and not PURE:
            pytest.fail("pfilter._classify is not built")
        pytest.skip("pfilter._classify not in use (PFILTER_PUREPYTHON=1 or not built)")


def _engine_matrix(batch, progs, packed=False, rows=None, **options):
    _require_engine()
    p = clmod.plan(list(progs))
    eng = p.engine(**{k: v for k, v in options.items() if k == "maxclasses"})
    nr = len(progs)
    out = np.zeros((len(batch), (nr + 7) // 8 if packed else nr), np.uint8)
    counts, nbytes = np.zeros(nr, np.int64), np.zeros(nr, np.int64)
    eng.run(batch.data, batch.offsets, batch.caplen, batch.wirelen, rows, out, packed, counts, nbytes,
            options.get("classes", True))
    return out, counts, nbytes


@pytest.mark.parametrize("options", [{"classes": False}, {"maxclasses": 1}, {"maxclasses": 3}],
                         ids=["no-classes", "one-class", "three-classes"])
def test_packet_classes_change_nothing_even_when_the_table_fills(corpus_batch, options):
    progs = _programs(RULES, True)
    assert clmod.plan(list(progs.values())).stats["signature_tests"] >= 8
    want = _engine_matrix(corpus_batch, progs.values())
    got = _engine_matrix(corpus_batch, progs.values(), **options)
    for a, b in zip(want, got):
        assert np.array_equal(a, b)


def test_packed_output_and_row_subsets_agree_with_the_bool_matrix(corpus_batch):
    progs = _programs(RULES, True)
    full, counts, nbytes = _engine_matrix(corpus_batch, progs.values())
    packed, pc, pb = _engine_matrix(corpus_batch, progs.values(), packed=True)
    assert np.array_equal(packed, np.packbits(full, axis=1))
    assert np.array_equal(pc, counts) and np.array_equal(pb, nbytes)
    rows = np.arange(1, len(corpus_batch), 3, dtype=np.int64)
    sub, sc, sb = _engine_matrix(corpus_batch, progs.values(), rows=rows)
    assert np.array_equal(sub[rows], full[rows])
    assert not sub[np.setdiff1d(np.arange(len(corpus_batch)), rows)].any()
    assert np.array_equal(sc, full[rows].sum(axis=0, dtype=np.int64))


def _frequent_fields(batch, top):
    """The most frequent TCP/UDP ports, IPv4 and IPv6 addresses in an Ethernet batch (dpkt)."""
    import collections
    import ipaddress

    import dpkt
    ports, v4, v6 = collections.Counter(), collections.Counter(), collections.Counter()
    for i in range(len(batch)):
        try:
            eth = dpkt.ethernet.Ethernet(batch.packet(i))
        except dpkt.UnpackError:
            continue
        ip = eth.data
        if isinstance(ip, dpkt.ip.IP):
            v4.update([ipaddress.IPv4Address(ip.src), ipaddress.IPv4Address(ip.dst)])
        elif isinstance(ip, dpkt.ip6.IP6):
            v6.update([ipaddress.IPv6Address(ip.src), ipaddress.IPv6Address(ip.dst)])
        else:
            continue
        if isinstance(ip.data, (dpkt.tcp.TCP, dpkt.udp.UDP)):
            ports.update([ip.data.sport, ip.data.dport])
    return ([p for p, _ in ports.most_common(top)], [str(a) for a, _ in v4.most_common(top)],
            [str(a) for a, _ in v6.most_common(top // 2)])


def _udp_53_to_53():
    eth = bytes.fromhex("ffffffffffff020000000001080045000024000100004011000000a000010a000002")
    return eth + bytes.fromhex("00350035001000000000000000000000")


def test_equality_groups_of_many_ports_and_hosts_decide_like_each_rules_program(corpus_batch):
    ports, hosts, hosts6 = _frequent_fields(corpus_batch, 40)
    assert len(ports) == 40 and len(hosts) == 40 and 53 in ports
    exprs = ([f"tcp port {p}" for p in ports[:20]] + [f"udp dst port {p}" for p in ports[10:30]]
             + [f"src port {p}" for p in ports[25:40]] + [f"host {h}" for h in hosts]
             + [f"ip6 host {h}" for h in hosts6] + [f"net {h.rsplit('.', 1)[0]}.0/24" for h in hosts[:10]]
             + [f"vlan and tcp port {p}" for p in ports[:5]] + ["udp port 53", "ip", "ip6", "tcp"])
    progs = _programs(list(dict.fromkeys(exprs)), True)
    plan = clmod.plan(list(progs.values()))
    assert plan.stats["groups"] >= 8 and plan.stats["group_tests"] >= 100
    extra = pfilter.PacketBatch.from_packets([_udp_53_to_53()] * 3)     # both ports in one group
    for batch in (corpus_batch, _batch(CAPTURES[:3], truncate=36), extra):
        _assert_columns_equal_own_verdicts(batch, progs, pfilter.classify(batch, progs))
        packed = pfilter.classify(batch, progs, packed=True)
        assert np.array_equal(packed.bool_matrix(), pfilter.classify(batch, progs).matrix)


def test_random_rule_sets_on_random_captures_match_each_rules_program():
    import random
    rnd = random.Random(11)
    exprs = ref.corpus_expressions()["EN10MB"]
    rows = [r for r in ref.corpus_pcaps()
            if r["dlt"] == "DLT_EN10MB" and r["category"] == "clean" and int(r["packets"]) < 700]
    for trial in range(8):
        names = [r["copied_as"] for r in rnd.sample(rows, 6)]
        batch = _batch(names, truncate=rnd.choice([None, 20, 34, 40, 60]))
        progs = {}
        for e in rnd.sample(exprs, rnd.choice([3, 20, 80])):
            optimize = rnd.random() < 0.5
            try:
                progs[(e, optimize)] = pfilter.Program.from_tuples(ref.compile(e, 1, optimize))
            except ref.RefError:
                continue
        result = pfilter.classify(batch, {f"r{i}": p for i, p in enumerate(progs.values())},
                                  packed=trial % 2 == 1)
        m = result.bool_matrix()
        for r, (key, prog) in enumerate(progs.items()):
            assert np.array_equal(prog.match_batch(batch), m[:, r]), (trial, key)


def test_threads_split_a_batch_and_give_the_same_result(corpus_batch, monkeypatch):
    _require_engine()
    progs = _programs(RULES, True)
    one = pfilter.classify(corpus_batch, progs)
    monkeypatch.setattr(clmod, "MIN_PACKETS_PER_THREAD", 1000)      # the corpus batch is small
    for packed in (False, True):
        many = pfilter.classify(corpus_batch, progs, threads=3, packed=packed)
        assert np.array_equal(many.bool_matrix(), one.matrix)
        assert np.array_equal(many.counts, one.counts) and np.array_equal(many.bytes, one.bytes)
        assert many.matched == one.matched
    with pytest.raises(pfilter.FilterError, match="threads"):
        pfilter.classify(corpus_batch, progs, threads=0)
