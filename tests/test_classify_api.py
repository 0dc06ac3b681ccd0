"""pfilter.classify's Python API: rules (mapping, list, rules file) and their errors, sources
(paths, batches, iterables), the Classification (matrix, packed, counts, bytes, labels, pandas),
counts-only streaming, per-link-type compilation."""
import importlib
import sys

import numpy as np
import pytest

import pfilter
import reference as ref

clmod = importlib.import_module("pfilter.classification")

PCAP = ref.PCAPS / "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap"
PCAP2 = ref.PCAPS / "tcpdump__afs.pcap"

RULES = {
    "web": "tcp port 80 or tcp port 443",
    "dns": "udp port 53",
    "tcp": "tcp",
    "v6": "ip6",
    "arp": "arp",
    "big": "len > 1000",
    "vlan": "vlan",
}


def _read(path):
    with pfilter.open(path) as cap:
        return list(cap)


@pytest.fixture(scope="module")
def batches():
    if not PCAP.exists():
        ref._missing(f"corpus capture {PCAP}")
    return _read(PCAP)


@pytest.fixture(scope="module")
def full(batches):
    return pfilter.classify(batches, RULES)


# ----------------------------------------------------------------------------- rules

def test_a_list_of_expressions_names_each_rule_by_its_expression(batches):
    result = pfilter.classify(batches, ["tcp", "udp"])
    assert result.rules == ("tcp", "udp")
    assert result.expressions == ("tcp", "udp")


def test_rules_file_skips_comments_and_blank_lines_and_keeps_colons_in_expressions(tmp_path):
    f = tmp_path / "rules.txt"
    f.write_text("# traffic classes\n\nweb: tcp port 80   # plain http\n"
                 "  v6host : ip6 host 2001:db8::1\nmac: ether src 00:11:22:33:44:55\n")
    assert clmod.parse_rules(f) == [("web", "tcp port 80"), ("v6host", "ip6 host 2001:db8::1"),
                                    ("mac", "ether src 00:11:22:33:44:55")]
    assert clmod.parse_rules(str(f)) == clmod.parse_rules(f)


@pytest.mark.parametrize("text, message", [
    ("web: tcp\ntcp port 80\n", "rules.txt:2: expected 'name: expression'"),
    ("web: tcp\nweb traffic: tcp\n", "rules.txt:2: expected 'name: expression'"),
    ("web:\n", "rules.txt:1: rule 'web' has no expression"),
    ("a: tcp\nb: udp\na: icmp\n", "rules.txt:3: duplicate rule name 'a' (first on line 1)"),
    ("# only a comment\n\n", "no rules in the file"),
])
def test_rules_file_errors_name_the_line(tmp_path, text, message):
    f = tmp_path / "rules.txt"
    f.write_text(text)
    with pytest.raises(pfilter.FilterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        clmod.parse_rules(f)


def test_a_missing_rules_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        pfilter.classify([], tmp_path / "nope.rules")
    assert e.value.filename == str(tmp_path / "nope.rules")


@pytest.mark.parametrize("rules, message", [
    (["tcp", "tcp"], "duplicate rule name 'tcp'"),
    ({}, "no rules given"),
    ({"": "tcp"}, "rule name must be a non-empty string"),
    ({"x": 5}, "rule 'x': expected an expression or a Program"),
    (5, "rules must be a mapping"),
])
def test_bad_rules_are_refused(rules, message):
    with pytest.raises(pfilter.FilterError, match=message):
        clmod.parse_rules(rules)


def test_a_rule_that_does_not_compile_is_reported_with_its_name(batches):
    with pytest.raises(pfilter.FilterSyntaxError, match="rule 'broken'") as info:
        pfilter.classify(batches, {"ok": "tcp", "broken": "tcp port"})
    assert info.value.expression == "tcp port"


def test_a_rule_meaningless_for_a_named_link_type_names_the_rule_and_the_link_type():
    raw = pfilter.PacketBatch.from_packets([bytes(20)], linktype=101)
    with pytest.raises(pfilter.FilterError, match=r"rule 'mac' \(link type RAW\): "):
        pfilter.classify(raw, {"ip": "ip", "mac": "ether host 00:11:22:33:44:55"}, linktype="RAW")
    # on the input's own link type it matches nothing there, with a warning (tests/test_classify_robust.py)
    with pytest.warns(clmod.RuleLinkTypeWarning, match=r"rule 'mac' cannot apply to link type RAW"):
        result = pfilter.classify(raw, {"ip": "ip", "mac": "ether host 00:11:22:33:44:55"})
    assert result.counts[1] == 0 and result.inapplicable[0][:2] == ("mac", "RAW")


def test_a_rule_that_does_not_compile_is_reported_even_without_packets():
    with pytest.raises(pfilter.FilterError, match="rule 'broken'"):
        pfilter.classify([], {"broken": "tcp port"})


def test_order_naming_an_unknown_rule_is_refused(batches):
    with pytest.raises(pfilter.FilterError, match="unknown rule"):
        pfilter.classify(batches, RULES, order=["web", "mail"])


# ----------------------------------------------------------------------------- sources

def test_a_path_a_batch_and_an_iterable_of_batches_give_the_same_matrix(batches, full):
    from_path = pfilter.classify(PCAP, RULES)
    one = pfilter.classify(pfilter.PacketBatch.from_packets(
        [b.packet(i) for b in batches for i in range(len(b))],
        wirelens=np.concatenate([b.wirelen for b in batches])), RULES)
    gen = pfilter.classify((b for b in batches), RULES)
    for other in (from_path, one, gen):
        assert np.array_equal(other.matrix, full.matrix)
        assert np.array_equal(other.counts, full.counts)
        assert np.array_equal(other.bytes, full.bytes)


def test_several_paths_are_read_one_after_another(full):
    both = pfilter.classify([PCAP, str(PCAP2)], RULES)
    second = pfilter.classify(PCAP2, RULES)
    assert both.packets == full.packets + second.packets
    assert np.array_equal(both.counts, full.counts + second.counts)
    assert np.array_equal(both.matrix, np.concatenate([full.matrix, second.matrix]))


def test_a_source_of_the_wrong_type_is_refused():
    with pytest.raises(pfilter.FilterError, match="source"):
        pfilter.classify(42, RULES)
    with pytest.raises(pfilter.FilterError, match="source items"):
        pfilter.classify([42], RULES)


def test_rules_are_compiled_for_each_packets_own_link_type():
    eth = bytes.fromhex("ffffffffffff02000000000108004500001c0001000040117cce0a0000010a000002")
    eth += bytes.fromhex("0035003500080000")
    raw = eth[14:]
    batch = pfilter.PacketBatch.from_packets([eth, raw, eth, raw], linktype=1)
    batch.linktypes = np.array([1, 101, 1, 101], dtype=np.uint16)
    result = pfilter.classify(batch, {"dns": "udp port 53", "ip": "ip", "arp": "arp"})
    assert result.matrix.tolist() == [[True, True, False]] * 4
    alone = pfilter.classify(batch, ["udp port 53"])       # one rule: the VM runs it alone
    assert alone.matrix.tolist() == [[True]] * 4 and alone.bytes.tolist() == [2 * len(eth) + 2 * len(raw)]
    forced = pfilter.classify(pfilter.PacketBatch.from_packets([raw], linktype=1), ["ip"], linktype="RAW")
    assert forced.matrix.tolist() == [[True]]


# ----------------------------------------------------------------------------- results

def test_counts_and_bytes_agree_with_the_matrix(batches, full):
    wirelen = np.concatenate([b.wirelen for b in batches])
    assert full.matrix.dtype == bool and full.matrix.shape == (full.packets, len(RULES))
    assert full.packets == len(wirelen) == 4709
    assert full.total_bytes == wirelen.sum()
    assert list(full.counts) == list(full.matrix.sum(axis=0))
    assert list(full.bytes) == [wirelen[full.matrix[:, r]].sum() for r in range(len(RULES))]
    assert full.matched == full.matrix.any(axis=1).sum()
    assert full.counts[full.rules.index("tcp")] >= full.counts[full.rules.index("web")] > 0
    assert 0 < full.matched < full.packets
    assert np.array_equal(full.wirelen, wirelen)


def test_each_column_is_the_rules_own_program(batches, full):
    for r, (name, expr) in enumerate(RULES.items()):
        prog = pfilter.compile(expr)
        own = np.concatenate([prog.match_batch(b) for b in batches])
        assert np.array_equal(full.column(name), own), name


def test_packed_matrix_is_packbits_of_the_bool_matrix(batches, full):
    packed = pfilter.classify(batches, RULES, packed=True)
    assert packed.matrix.dtype == np.uint8 and packed.matrix.shape == (full.packets, 1)
    assert np.array_equal(packed.matrix, np.packbits(full.matrix, axis=1))
    assert np.array_equal(packed.bool_matrix(), full.matrix)
    assert np.array_equal(packed.column("dns"), full.column("dns"))
    assert np.array_equal(packed.labels(), full.labels())


def test_counts_only_streaming_equals_full_mode(full):
    lean = pfilter.classify(PCAP, RULES, counts_only=True)
    assert lean.matrix is None and lean.wirelen is None
    assert np.array_equal(lean.counts, full.counts) and np.array_equal(lean.bytes, full.bytes)
    assert (lean.packets, lean.total_bytes, lean.matched, lean.matched_bytes) == \
           (full.packets, full.total_bytes, full.matched, full.matched_bytes)
    with pytest.raises(pfilter.FilterError, match="counts_only"):
        lean.labels()
    with pfilter.open(PCAP, batch_packets=500) as cap:      # ten batches, streamed
        streamed = pfilter.classify(cap, RULES, counts_only=True)
    assert np.array_equal(streamed.counts, full.counts) and streamed.matched == full.matched
    with pfilter.open(PCAP, batch_packets=500) as cap:
        assert np.array_equal(pfilter.classify(cap, RULES).matrix, full.matrix)


def test_labels_name_the_first_matching_rule_in_order(full):
    m = full.matrix
    labels = full.labels(default="other")
    for i in range(0, full.packets, 13):
        hits = [full.rules[r] for r in range(len(RULES)) if m[i, r]]
        assert labels[i] == (hits[0] if hits else "other")
    reordered = full.labels(order=["tcp", "web"], default="-")
    tcp, web = full.column("tcp"), full.column("web")
    assert set(reordered[tcp]) == {"tcp"}
    assert set(reordered[~tcp & web]) <= {"web"}
    assert set(reordered[~tcp & ~web]) == {"-"}


def test_label_codes_index_the_order_and_minus_one_means_no_rule(full):
    codes, names = full.labels(order=["dns", "v6"], codes=True)
    assert names == ("dns", "v6")
    assert codes.dtype == np.int32
    assert np.array_equal(codes == 0, full.column("dns"))
    assert np.array_equal(codes == -1, ~full.column("dns") & ~full.column("v6"))


def test_classify_order_and_default_are_the_labels_defaults(batches, full):
    result = pfilter.classify(batches, RULES, order=["v6", "tcp"], default="rest")
    assert np.array_equal(result.labels(), full.labels(order=["v6", "tcp"], default="rest"))


def test_labels_without_a_default_leave_none(full):
    labels = full.labels()
    assert labels.dtype == object
    assert sum(x is None for x in labels) == full.packets - full.matched


def test_table_has_a_row_per_rule_with_packets_bytes_and_share(full):
    lines = full.table().splitlines()
    assert lines[0].split() == ["rule", "packets", "bytes", "share"]
    web = next(l for l in lines if l.startswith("web ")).split()
    r = full.rules.index("web")
    assert web[1:] == [str(full.counts[r]), str(full.bytes[r]), f"{100 * full.counts[r] / full.packets:.2f}%"]
    assert lines[-1].split()[:3] == ["total", str(full.packets), str(full.total_bytes)]


def test_to_pandas_without_pandas_says_what_to_install(full, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pandas"):
        full.to_pandas()


def test_to_pandas_has_a_bool_column_per_rule(full):
    pytest.importorskip("pandas")
    df = full.to_pandas()
    assert list(df.columns) == list(RULES) + ["label", "wirelen", "timestamp"]
    assert len(df) == full.packets and df["web"].sum() == full.counts[0]
    assert list(df["label"].fillna("-")) == list(full.labels(default="-"))
    assert df["wirelen"].sum() == full.total_bytes and str(df["timestamp"].dtype) == "datetime64[ns]"


def test_pfilter_classify_stays_a_function_after_the_engine_module_is_imported(batches):
    import pfilter.classification  # noqa: F401
    import pfilter.classification.run  # noqa: F401
    assert pfilter.classify(batches, ["tcp"]).rules == ("tcp",)
    assert callable(pfilter.classify) and not hasattr(pfilter.classify, "__path__")


def test_a_rule_link_type_warning_points_at_the_callers_line(tmp_path):
    """RuleLinkTypeWarning names the line that called pfilter.classify (it named a line inside
    pfilter)."""
    import warnings
    raw = tmp_path / "raw.pcap"
    pfilter.write(raw, pfilter.PacketBatch.from_packets([bytes([0x45]) + bytes(39)], linktype=101))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pfilter.classify(raw, {"e": "ether host 1:2:3:4:5:6", "t": "tcp"})
    assert [(w.category, w.filename) for w in caught] == [(pfilter.RuleLinkTypeWarning, __file__)]


@pytest.mark.parametrize("nrules", [1, 7, 8, 9, 200])
def test_label_codes_of_packed_and_plain_matrices_are_the_first_match(nrules):
    """label_codes() without an order reads a packed matrix's first set bit per row without
    unpacking it: the same codes as the first True of the plain matrix, and as with an order."""
    from pfilter.classification.result import Classification
    rng = np.random.default_rng(nrules)
    m = rng.random((70_000, nrules)) < 2.0 / nrules / 3
    rules = [f"r{i}" for i in range(nrules)]
    want = np.where(m.any(axis=1), m.argmax(axis=1), -1)
    back = list(reversed(range(nrules)))
    want_back = np.where(m[:, back].any(axis=1), m[:, back].argmax(axis=1), -1)
    for packed, matrix in ((False, m), (True, np.packbits(m, axis=1))):
        c = Classification(rules, rules, matrix, packed, m.sum(0), m.sum(0), len(m), len(m), 0, 0, None, None,
                           None, "")
        assert (c.label_codes()[0] == want).all()
        assert (c.label_codes([rules[i] for i in back])[0] == want_back).all()


def test_arguments_a_user_might_mistake(tmp_path):
    """An expression given where a rules file's name goes, a single name as `order`, and a bytes
    path: each said for what it is, or taken."""
    sample = str(ref.ROOT / "data" / "sample.pcap")
    with pytest.raises(FileNotFoundError, match=r"no such rules file .*give \['tcp port 80'\] or"):
        pfilter.classify(sample, "tcp port 80")
    with pytest.raises(FileNotFoundError) as e:          # a file name: the plain error
        pfilter.classify(sample, str(tmp_path / "rules.txt"))
    assert e.value.strerror == "No such file or directory"
    with pytest.raises(pfilter.FilterError, match=r"order: a list of rule names, not a string \(\['web'\]"):
        pfilter.classify(sample, {"web": "tcp port 80"}, order="web")
    assert (pfilter.classify(sample.encode(), {"web": "tcp port 80"}).counts
            == pfilter.classify(sample, {"web": "tcp port 80"}).counts).all()


def test_write_of_a_result_made_with_on_damage_and_split_options_without_a_split(tmp_path):
    """A result classified with on_damage= over a damaged capture is written again with it (the
    split files equal the one-pass ones); split options without a split are refused."""
    sample = ref.ROOT / "data" / "sample.pcap"
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(sample.read_bytes()[:800_000])
    inputs = [str(sample), str(cut), str(sample)]
    rules = {"web": "tcp port 80", "dns": "udp port 53"}
    seen = []
    one = pfilter.classify(inputs, rules, on_damage=seen.append, split=str(tmp_path / "one-{rule}.pcap"))
    again = []
    pfilter.classify(inputs, rules, on_damage=seen.append).write(str(tmp_path / "two-{rule}.pcap"),
                                                                 on_damage=again.append)
    assert len(seen) == 2 and len(again) == 1 and one.packets > 0
    for name in rules:
        assert (tmp_path / f"one-{name}.pcap").read_bytes() == (tmp_path / f"two-{name}.pcap").read_bytes()
    for option in ({"rotate": {"size": 1000}}, {"truncate": 64}, {"dedup": True}, {"format": "pcapng"}):
        with pytest.raises(pfilter.FilterError, match="apply to split files"):
            pfilter.classify(str(sample), rules, **option)
