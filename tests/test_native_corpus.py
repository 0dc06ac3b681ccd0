"""Native code against the VM on the corpus: every corpus expression, compiled by pfilter
(optimized and not) for each link type of the corpus, returns the VM's value on every packet of
every corpus capture of that link type. One program per (link type, expression, optimize), run
over all of that link type's captures at once (a capture's snapshot length changes only the
value `ret #snaplen` returns, and the VM is the reference for the very same program). Needs the
corpus (tests/reference.py: skipped when absent, a failure with CI=true) and llvmlite (skipped
when missing, a failure with CI=true)."""
import os

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter import native

if not native.available():
    if os.environ.get("CI") == "true":
        pytest.fail(f"llvmlite is missing under CI=true: {native.EXTRA_HINT}", pytrace=False)
    pytest.skip(f"llvmlite not installed ({native.EXTRA_HINT})", allow_module_level=True)


def _by_linktype(batches):
    """{dlt: one PacketBatch holding every packet of that link type's captures}."""
    groups = {}
    for (dlt, _snap), batch in sorted(batches.items()):
        groups.setdefault(dlt, []).append(batch)
    out = {}
    for dlt, parts in groups.items():
        datas, offsets, base = [], [], 0
        for b in parts:
            datas.append(np.asarray(b.data))
            offsets.append(b.offsets + base)
            base += len(b.data)
        out[dlt] = pfilter.PacketBatch(np.concatenate(datas), np.concatenate(offsets),
                                       np.concatenate([b.caplen for b in parts]),
                                       np.concatenate([b.wirelen for b in parts]), linktype=dlt)
    return out


def test_native_code_returns_the_vm_value_on_every_corpus_packet():
    exprs = ref.corpus_expressions()
    batches = _by_linktype(ref.corpus_batches())
    runs = packets = compiled = 0
    diffs = []
    for dlt, batch in sorted(batches.items()):
        for expr in exprs.get(ref.dlt_name(dlt), []):
            for optimize in (False, True):
                try:
                    prog = pfilter.compile(expr, linktype=dlt, optimize=optimize)
                except pfilter.FilterError:
                    continue
                nat = prog.jit()
                compiled += 1
                want = prog.run_batch(batch)
                got = nat.run_batch(batch)
                runs += 1
                packets += len(batch)
                if not np.array_equal(want, got):
                    i = int(np.flatnonzero(want != got)[0])
                    diffs.append((dlt, expr, optimize, f"packet {i}", int(got[i]), int(want[i])))
    print(f"\n{runs} (expression, link type, optimize) runs, {packets} packet verdicts, {len(diffs)} differ")
    assert runs > 900 and packets > 10_000_000
    assert diffs == [], diffs[:20]


def test_backend_auto_and_native_give_the_vm_answers_through_filter_file(tmp_path):
    done = 0
    for path, expr in ((row["file"], expr) for row in ref.corpus_pcaps()[:40]
                       for expr in ("tcp", "ip and udp", "ip6 or arp")):
        try:
            want = pfilter.filter_file(path, tmp_path / "vm.pcap", expr, backend="vm")
        except pfilter.FilterError:
            continue        # no meaning on this capture's link type, or a damaged capture
        done += 1
        got = pfilter.filter_file(path, tmp_path / "native.pcap", expr, backend="native")
        assert (got.read, got.matched) == (want.read, want.matched)
        assert (tmp_path / "vm.pcap").read_bytes() == (tmp_path / "native.pcap").read_bytes()
    assert done > 20
