"""backend= "vm" | "native" | "auto": chosen in pfilter/backend.py, accepted by compile,
Program.with_backend, filter_file, classify and the CLI; without llvmlite, "native" names the
extra to install and "auto" falls back to the VM."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import pfilter
from pfilter import backend, native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data", "sample.pcap")
HAVE = native.available()
needs_llvmlite = pytest.mark.skipif(not HAVE and os.environ.get("CI") != "true",
                                    reason=f"llvmlite not installed ({native.EXTRA_HINT})")

NO_LLVMLITE = "import sys; sys.modules['llvmlite'] = None; sys.modules['llvmlite.binding'] = None\n"


def test_unknown_backend_is_a_filter_error():
    with pytest.raises(pfilter.FilterError, match="backend must be one of"):
        pfilter.compile("tcp", backend="gpu")
    with pytest.raises(pfilter.FilterError):
        backend.check("VM")


def test_vm_backend_returns_the_cached_program_itself():
    assert pfilter.compile("tcp", backend="vm") is pfilter.compile("tcp")


@needs_llvmlite
def test_native_backend_program_runs_native_code_and_keeps_the_shared_program_untouched():
    shared = pfilter.compile("udp port 53")
    before = shared._native     # another test may have jit()-ed the shared program already
    prog = pfilter.compile("udp port 53", backend="native")
    assert prog.backend == "native" and shared.backend == "vm" and prog == shared
    batch = pfilter.PacketBatch.from_packets([bytes(80)] * 5)
    assert np.array_equal(prog.run_batch(batch), shared.run_batch(batch))
    assert prog._native is not None and shared._native is before
    again = pickle.loads(pickle.dumps(prog))
    assert again.backend == "native" and np.array_equal(again.run_batch(batch), shared.run_batch(batch))


@needs_llvmlite
def test_auto_uses_native_code_only_for_large_batches(monkeypatch):
    prog = pfilter.compile("tcp port 80").with_backend("auto")
    small = pfilter.PacketBatch.from_packets([bytes(60)] * 10)
    prog.run_batch(small)
    assert prog._native is None
    monkeypatch.setattr(backend, "AUTO_MIN_PACKETS", 10)
    prog.run_batch(small)
    assert prog._native is not None
    assert backend.use_native("auto", nbytes=backend.AUTO_MIN_BYTES)
    assert not backend.use_native("auto", nbytes=backend.AUTO_MIN_BYTES - 1)
    # a rule set compiles into one larger function: it needs more work to repay it
    assert not backend.use_native("auto", nbytes=backend.AUTO_MIN_BYTES, rules=64)
    assert backend.use_native("auto", nbytes=backend.AUTO_MIN_RULE_SET_BYTES, rules=64)
    assert not backend.use_native("auto", packets=backend.AUTO_MIN_RULE_SET_PACKETS - 1, rules=2)
    assert backend.use_native("native", packets=1, rules=64) and not backend.use_native("vm", rules=64)


@needs_llvmlite
def test_classify_auto_picks_the_native_classifier_only_for_large_inputs(monkeypatch):
    from pfilter.classification import run
    from pfilter.native_classify import NativeClassifier
    progs = [pfilter.compile(e, optimize="shareable") for e in ("tcp port 80", "udp port 53", "host 10.0.0.1")]
    assert not isinstance(run.engine_for(progs, "auto", nbytes=1 << 20)[1], NativeClassifier)
    assert isinstance(run.engine_for(progs, "auto", nbytes=backend.AUTO_MIN_RULE_SET_BYTES)[1], NativeClassifier)
    assert isinstance(run.engine_for(progs, "native")[1], NativeClassifier)


@needs_llvmlite
def test_filter_file_and_classify_accept_every_backend(tmp_path):
    outs = {}
    for b in backend.BACKENDS:
        stats = pfilter.filter_file(SAMPLE, tmp_path / f"{b}.pcap", "ip and tcp port 80", backend=b)
        outs[b] = ((tmp_path / f"{b}.pcap").read_bytes(), stats.matched)
        one = pfilter.classify(SAMPLE, {"web": "ip and tcp port 80"}, backend=b)
        two = pfilter.classify(SAMPLE, {"web": "ip and tcp port 80", "dns": "port 53"}, backend=b)
        assert one.counts[0] == two.counts[0] == stats.matched
    assert outs["vm"] == outs["native"] == outs["auto"]


def _run(code):
    return subprocess.run([sys.executable, "-c", NO_LLVMLITE + code], capture_output=True, text=True, cwd=ROOT)


def test_without_llvmlite_native_names_the_extra_and_auto_uses_the_vm():
    done = _run("import pfilter\n"
                "try:\n    pfilter.compile('tcp', backend='native')\n"
                "except pfilter.FilterError as e:\n    print('ERR', e)\n"
                "try:\n    pfilter.compile('tcp').jit()\n"
                "except ImportError as e:\n    print('IMPORT', e)\n"
                "p = pfilter.compile('tcp', backend='auto')\n"
                "b = pfilter.PacketBatch.from_packets([bytes(60)] * 3)\n"
                "print('AUTO', p.run_batch(b).tolist(), p._native)\n")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("ERR ") and "pfilter-bpf[native]" in lines[0]
    assert lines[1].startswith("IMPORT ") and "llvmlite" in lines[1]
    assert lines[2] == "AUTO [0, 0, 0] None"


def test_cli_backend_native_without_llvmlite_is_one_line_and_nonzero():
    done = _run("from pfilter.cli import main\n"
                f"sys.exit(main(['-r', {SAMPLE!r}, '--count', '--backend', 'native', 'tcp']))\n")
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0 and "pfilter-bpf[native]" in done.stderr
    assert "Traceback" not in done.stderr


@needs_llvmlite
def test_cli_backends_count_the_same():
    counts = set()
    for b in backend.BACKENDS:
        done = subprocess.run([sys.executable, "-m", "pfilter", "-r", SAMPLE, "--count", "--backend", b,
                               "udp or icmp"], capture_output=True, text=True, cwd=ROOT)
        assert done.returncode == 0, done.stderr
        counts.add(done.stdout)
    assert len(counts) == 1
