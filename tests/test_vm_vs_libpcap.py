"""Proof against the real thing: libpcap's own bytecode, run by pfilter's VMs and by libpcap's
bpf_filter() over every packet of every corpus capture, gives identical return values.

For every corpus expression (Ethernet and the other link types) and every (link type, snapshot
length) of the corpus captures, libpcap 1.10.3 compiles the expression (optimized and not) as it
would on that capture's savefile handle; pfilter loads the bytecode (Program.from_tuples) and runs
it over the packets as libpcap read them. Zero differences allowed, on the Cython VM; the
pure-Python VM runs a sample (it is ~1000x slower).
"""
import numpy as np
import pytest

import pfilter
import reference as ref


@pytest.fixture(scope="module")
def batches():
    return ref.corpus_batches()


def test_every_corpus_program_gives_libpcaps_return_values(batches):
    from pfilter import program
    if program._cvm is None:
        pytest.fail("the Cython VM is not built")
    exprs = ref.corpus_expressions()
    programs = packets = 0
    diffs = []
    for (dlt, snap), batch in sorted(batches.items()):
        for expr in exprs.get(ref.dlt_name(dlt), []):
            for optimize in (False, True):
                try:
                    insns = ref.compile(expr, dlt, optimize, snap)
                except ref.RefError:
                    continue
                prog = pfilter.Program.from_tuples(insns)
                ours = prog.run_batch(batch)
                theirs = ref.bpf_filter_batch(insns, batch)
                programs += 1
                packets += len(batch)
                if not np.array_equal(ours, theirs):
                    i = int(np.flatnonzero(ours != theirs)[0])
                    diffs.append((dlt, snap, expr, optimize, i, int(ours[i]), int(theirs[i])))
    print(f"\n{programs} (program, capture group) runs, {packets} packet verdicts compared, {len(diffs)} differ")
    assert programs > 1000 and packets > 1_000_000
    assert diffs == []


def test_python_vm_agrees_with_libpcap_on_a_sample(batches, monkeypatch):
    from pfilter import program
    monkeypatch.setattr(program, "_cvm", None)
    batch = batches[max((k for k in batches if k[0] == 1), key=lambda k: len(batches[k]))]
    idx = np.arange(0, len(batch), max(1, len(batch) // 400))
    sample = batch.select(np.isin(np.arange(len(batch)), idx))
    for expr in ref.corpus_expressions()["EN10MB"][::12]:
        for optimize in (False, True):
            insns = ref.compile(expr, 1, optimize, 262144)
            ours = pfilter.Program.from_tuples(insns).run_batch(sample)
            assert np.array_equal(ours, ref.bpf_filter_batch(insns, sample)), expr
