"""The engine behind pfilter.classify and `pfilter classify --backend`: chosen in one place
(pfilter.classification.run.engine_for), checked by pfilter.backend, and never changing an answer."""
import importlib

import numpy as np
import pytest

import pfilter
import reference as ref
from pfilter import backend as bk
from pfilter import cli, native

run = importlib.import_module("pfilter.classification.run")

PCAP = ref.PCAPS / "pcapplusplus__ExamplesTest__pcap_examples__many-protocols.pcap"
RULES = {"web": "tcp port 80 or tcp port 443", "dns": "udp port 53", "v6": "ip6", "arp": "arp"}


@pytest.fixture
def rules_file(tmp_path):
    f = tmp_path / "r.rules"
    f.write_text("".join(f"{k}: {v}\n" for k, v in RULES.items()))
    return f


def _own_counts():
    """Each rule's own verdicts (one Program per rule on the VM), the reference for every engine."""
    counts = []
    for expr in RULES.values():
        prog = pfilter.compile(expr, linktype=1)
        with pfilter.open(PCAP) as cap:
            counts.append(sum(int(np.count_nonzero(prog.match_batch(b))) for b in cap))
    return counts


def _table_counts(text):
    rows = {line.split()[0]: int(line.split()[1]) for line in text.splitlines()[1:] if line.split()[0] in RULES}
    return [rows[name] for name in RULES]


def test_cli_backend_vm_and_auto_print_the_rules_own_counts(rules_file, capsys):
    want = _own_counts()
    assert sum(want) > 0
    for choice in ("vm", "auto"):
        assert cli.classify_main(["-r", str(PCAP), "-R", str(rules_file), "--backend", choice]) == 0
        assert _table_counts(capsys.readouterr().out) == want


def test_cli_refuses_an_unknown_backend(rules_file, capsys):
    assert cli.classify_main(["-r", str(PCAP), "-R", str(rules_file), "--backend", "gpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--backend" in err and "'gpu'" in err


def test_cli_backend_native_runs_native_code_or_says_why_not(rules_file, capsys):
    status = cli.classify_main(["-r", str(PCAP), "-R", str(rules_file), "--backend", "native"])
    out, err = capsys.readouterr()
    if bk.native_available() and hasattr(native, "classifier_for"):
        assert status == 0 and _table_counts(out) == _own_counts()
    else:
        assert status == 1 and out == "" and len(err.splitlines()) == 1
        assert err.startswith("pfilter classify: ") and ("llvmlite" in err or "classifier_for" in err)


def test_api_refuses_an_unknown_backend_before_reading():
    with pytest.raises(pfilter.FilterError, match="backend must be one of"):
        pfilter.classify("/nonexistent.pcap", RULES, backend="fast")


def test_engine_for_picks_one_engine_per_backend(monkeypatch):
    progs = [pfilter.compile(e, linktype=1, optimize="shareable") for e in RULES.values()]
    if run._engine is None:
        pytest.skip("pfilter._classify not in use (PFILTER_PUREPYTHON=1 or not built)")
    # vm: the Cython RuleEngine; auto with a small (or unknown) input: the same
    for backend, nbytes in (("vm", None), ("auto", None), ("auto", bk.AUTO_MIN_BYTES - 1)):
        _, eng = run.engine_for(progs, backend, nbytes)
        assert type(eng).__name__ == "RuleEngine"
    # a single rule: its own Program, with the backend asked for
    one, eng = run.engine_for(progs[:1], "vm")
    assert eng is None and one[0].backend == "vm"
    # native (and auto on a large input where native code exists): the hook pfilter.native
    # provides, handed the plan
    seen = []

    def classifier_for(plan):
        seen.append(plan)
        return plan.engine()
    monkeypatch.setattr(bk, "native_available", lambda: True)
    monkeypatch.setattr(bk, "require_native", lambda: None)
    monkeypatch.setattr(native, "classifier_for", classifier_for, raising=False)
    for backend, nbytes in (("native", None), ("auto", bk.AUTO_MIN_BYTES)):
        got, eng = run.engine_for(progs, backend, nbytes)
        assert seen and seen[-1].stats["rules"] == len(progs) and got == progs
    seen.clear()
    run.engine_for(progs, "auto", bk.AUTO_MIN_BYTES - 1)
    assert seen == []
    # without the hook, native is refused and auto falls back to the VM engine
    monkeypatch.delattr(native, "classifier_for")
    with pytest.raises(pfilter.FilterError, match="classifier_for"):
        run.engine_for(progs, "native")
    assert type(run.engine_for(progs, "auto", bk.AUTO_MIN_BYTES)[1]).__name__ == "RuleEngine"


def test_classify_through_the_native_hook_equals_the_vm(monkeypatch):
    """The driver hands the hook's engine every batch: counts and matrix as the VM engine's."""
    if run._engine is None:
        pytest.skip("pfilter._classify not in use")
    vm = pfilter.classify(PCAP, RULES)
    if not hasattr(native, "classifier_for"):
        monkeypatch.setattr(native, "classifier_for", lambda plan: plan.engine(), raising=False)
    monkeypatch.setattr(bk, "native_available", lambda: True)
    monkeypatch.setattr(bk, "require_native", lambda: None)
    nat = pfilter.classify(PCAP, RULES, backend="native")
    assert np.array_equal(vm.matrix, nat.matrix) and np.array_equal(vm.counts, nat.counts)
    assert list(vm.counts) == _own_counts()
