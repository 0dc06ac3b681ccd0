"""The project's own copy of ../shared/tools/agreement.py's figure: every corpus expression,
compiled by pfilter (optimized and not) and by libpcap 1.10.3 for a savefile of the capture's link
type and snapshot length, gives the same return value on every packet of every corpus capture.

Expressions where pfilter follows the manual instead of libpcap (README, "Differences from
tcpdump") are checked against the manual's meaning in the compiler's own tests instead.
"""
import numpy as np

import pfilter
import reference as ref

def test_every_corpus_expression_selects_what_libpcap_selects_on_every_corpus_capture():
    exprs = ref.corpus_expressions()
    pairs = packets = refused = 0
    diffs = []
    for (dlt, snap), batch in sorted(ref.corpus_batches().items()):
        for expr in exprs.get(ref.dlt_name(dlt), []):
            if expr in ref.DOCUMENTED_DIVERGENCES:
                continue
            try:
                theirs = ref.compile_savefile(expr, dlt, False, snap)
            except ref.RefError:
                theirs = None
            for optimize in (False, True):
                try:
                    ours = pfilter.compile(expr, linktype=dlt, snaplen=snap, optimize=optimize)
                except pfilter.FilterError as err:
                    ours = err
                if theirs is None or isinstance(ours, Exception):
                    if (theirs is None) != isinstance(ours, Exception):
                        diffs.append((dlt, snap, expr, optimize, "only one side refuses", str(ours)))
                    refused += 1
                    continue
                want = ref.bpf_filter_batch(theirs, batch)
                got = ours.run_batch(batch)
                pairs += 1
                packets += len(batch)
                if not np.array_equal(want, got):
                    i = int(np.flatnonzero(want != got)[0])
                    diffs.append((dlt, snap, expr, optimize, f"packet {i}", int(got[i]), int(want[i])))
    print(f"\n{pairs} (expression, capture group, optimize) runs, {packets} packet verdicts, "
          f"{refused} refused by both, {len(diffs)} differ")
    assert pairs > 30000 and packets > 10_000_000
    assert diffs == [], diffs[:20]
