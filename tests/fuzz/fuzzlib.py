"""The fuzzing harness of tests/fuzz (issue 18, "a standing defence").

Each fuzz target is a hypothesis strategy and a check. The check runs one input and raises
(AssertionError, or an exception the target does not allow) when pfilter misbehaves. A target runs
in worker processes, never inside pytest: a segfault, an abort or a hang kills only the worker, and
the test reports it as a failure with the input saved as an artifact.

Volume (environment):
  PFILTER_FUZZ_SECONDS   time budget per target, in seconds, per worker (scripts/fuzz.sh sets it);
                         unset or 0: each target runs its own short count (the normal test suite)
  PFILTER_FUZZ_EXAMPLES  inputs of a typical target when there is no time budget (default 150);
                         a costly target runs its share (its own short count / 150 of it)
  PFILTER_FUZZ_JOBS      worker processes per target, in parallel (default 1)
  PFILTER_FUZZ_SEED      base seed (default 0: the normal suite is deterministic)
  PFILTER_FUZZ_INPUT_SECONDS  longest time one input may take before it counts as a hang
  PFILTER_FUZZ_REPORT    a file to which each target appends one JSON line {target, inputs, ...}
  PFILTER_FUZZ_ARTIFACTS directory for the inputs that crashed, hung or failed (default: a
                         temporary directory, named in the failure message)

A worker writes each input to WORKDIR/current.pkl before running it, and its running count to
WORKDIR/stats.json. The parent watches the file's age (the per-input time bound) and the worker's
exit status. Replay an artifact in this process (it crashes again if it crashed):

    python3 tests/fuzz/fuzzlib.py replay ARTIFACT.pkl      # or: show ARTIFACT.pkl
"""
import importlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent

#: one input taking longer than this (seconds) is a hang
DEFAULT_INPUT_SECONDS = 20.0
#: inputs a worker runs per hypothesis run (each run gets a new seed); small, so that a time
#: budget stops within a chunk's worth of cheap no-op examples
CHUNK = 200
#: address-space limit of a worker: a runaway allocation fails there, not on the machine
WORKER_MEMORY = 4 << 30

TARGETS = {}


class Target:
    def __init__(self, name, strategy, check, module, examples, input_seconds, cases):
        self.name, self.strategy, self.check, self.module = name, strategy, check, module
        self.examples, self.input_seconds, self.cases = examples, input_seconds, list(cases)


def target(name, strategy, examples=150, input_seconds=None, cases=()):
    """Decorator: register `check(input)` as fuzz target `name` over inputs drawn from `strategy`
    (short run: `examples` inputs); `cases`: inputs every worker runs first (failures found
    before, kept as regression cases)."""
    def deco(check):
        TARGETS[name] = Target(name, strategy, check, check.__module__, examples, input_seconds, cases)
        return check
    return deco


def outcome(fn, *args, allowed=(), **kwargs):
    """fn(*args, **kwargs), or the exception it raised when that is one of `allowed`; any other
    exception propagates (the target fails)."""
    try:
        return fn(*args, **kwargs)
    except allowed as e:
        return e


def mutate(draw, text, times, *token_sets, insert_max=3, delete_max=4):
    """`text` after `times` edits (inside a hypothesis composite strategy; `draw` its draw), each
    at a random place: a random string of 1 to insert_max characters inserted, 1 to delete_max
    characters deleted, or a token inserted from one of `token_sets`, each a (separator, tokens)
    pair (the token stands between two separators)."""
    from hypothesis import strategies as st
    actions = ["insert", "delete", *range(len(token_sets))]
    for _ in range(times):
        i = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(actions))
        cut = 0
        if action == "insert":
            piece = draw(st.text(min_size=1, max_size=insert_max))
        elif action == "delete":
            piece, cut = "", draw(st.integers(1, delete_max))
        else:
            separator, tokens = token_sets[action]
            piece = separator + draw(st.sampled_from(tokens)) + separator
        text = text[:i] + piece + text[i + cut:]
    return text


def _env(name, default, kind=float):
    value = os.environ.get(name, "").strip()
    return kind(value) if value else default


# ----------------------------------------------------------------------------- worker

def _load(module, name):
    for p in (str(TESTS), str(HERE)):
        if p not in sys.path:
            sys.path.insert(0, p)
    importlib.import_module(module)
    return TARGETS[name]


def _work(module, name, seed, examples, seconds, workdir):
    import faulthandler
    import resource
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as with_seed

    faulthandler.enable()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard == resource.RLIM_INFINITY or hard > WORKER_MEMORY:
        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, hard))
    tgt = _load(module, name)
    workdir = Path(workdir)
    current, stats_path = workdir / "current.pkl", workdir / "stats.json"
    started = time.monotonic()
    deadline = started + seconds if seconds else None
    state = {"inputs": 0, "failing": False, "saved": 0.0}

    def save_stats(done=False):
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"inputs": state["inputs"], "seconds": time.monotonic() - started,
                                   "done": done}))
        os.replace(tmp, stats_path)
        state["saved"] = time.monotonic()

    def failed():
        import traceback
        save_stats(done=True)
        err = sys.exc_info()[1]
        trace = "".join(traceback.format_tb(err.__traceback__)[-6:])
        (workdir / "failure.txt").write_text(f"{type(err).__name__}: {str(err)[:1500]}\n{trace[-3000:]}")
        return 3

    def body(x):
        if deadline is not None and not state["failing"] and time.monotonic() > deadline:
            return
        attempt(x)

    def attempt(x):
        with open(current, "wb") as f:
            pickle.dump({"module": module, "target": name, "input": x}, f, protocol=4)
        state["inputs"] += 1
        if time.monotonic() - state["saved"] > 1.0:
            save_stats()
        try:
            tgt.check(x)
        except BaseException:
            state["failing"] = True      # shrinking after the deadline must still run the check
            raise

    run_seed = seed
    while True:
        if deadline is not None and time.monotonic() > deadline:
            break
        left = CHUNK if not examples else min(CHUNK, examples - state["inputs"])
        if left <= 0:
            break
        before = state["inputs"]
        test = settings(max_examples=left, database=None, deadline=None, derandomize=False,
                        suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
                        print_blob=False)(given(tgt.strategy)(body))
        try:
            with_seed(run_seed)(test)()
        except BaseException:
            return failed()
        run_seed += 1_000_003
        if state["inputs"] == before:
            break                        # the strategy has nothing left to give
    try:                                 # then the regression cases, whatever the time
        for case in tgt.cases:
            attempt(case)
    except BaseException:
        return failed()
    save_stats(done=True)
    return 0


# ----------------------------------------------------------------------------- parent (pytest)

def _tail(path, n=4000):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return text[-n:]


def _artifact(workdir, name, why, seed):
    src = Path(workdir) / "current.pkl"
    if not src.exists():
        return None
    where = os.environ.get("PFILTER_FUZZ_ARTIFACTS") or tempfile.mkdtemp(prefix="pfilter-fuzz-")
    Path(where).mkdir(parents=True, exist_ok=True)
    dst = Path(where) / f"{name}-{why}-seed{seed}.pkl"
    shutil.copyfile(src, dst)
    return dst


def run(name):
    """Run fuzz target `name` in worker processes; fail (pytest) on any crash, hang or failure.
    Returns the number of inputs tried."""
    import pytest

    tgt = TARGETS[name]
    seconds = _env("PFILTER_FUZZ_SECONDS", 0.0)
    # PFILTER_FUZZ_EXAMPLES is the count of a default target; costly targets run a share of it
    examples = 0 if seconds else max(1, round(_env("PFILTER_FUZZ_EXAMPLES", 150, int) * tgt.examples / 150))
    jobs = max(1, _env("PFILTER_FUZZ_JOBS", 1, int))
    base_seed = _env("PFILTER_FUZZ_SEED", 0, int)
    bound = tgt.input_seconds or _env("PFILTER_FUZZ_INPUT_SECONDS", DEFAULT_INPUT_SECONDS)
    top = Path(tempfile.mkdtemp(prefix=f"pfilter-fuzz-{name}-"))
    workers = []
    try:
        for j in range(jobs):
            workdir = top / str(j)
            workdir.mkdir()
            seed = base_seed * 7919 + j
            cmd = [sys.executable, str(Path(__file__).resolve()), "worker", tgt.module, name, str(seed),
                   str(examples), str(seconds), str(workdir)]
            with open(workdir / "out.txt", "wb") as out:
                proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=str(TESTS.parent))
            workers.append({"proc": proc, "dir": workdir, "seed": seed, "start": time.time(), "why": None})
        alive = list(workers)
        while alive:
            time.sleep(0.2)
            for w in list(alive):
                if w["proc"].poll() is not None:
                    alive.remove(w)
                    continue
                cur = w["dir"] / "current.pkl"
                try:
                    last = max(cur.stat().st_mtime, w["start"])
                except FileNotFoundError:
                    last = w["start"]
                # a worker starts with imports and seed files: give it the bound twice over
                limit = bound if cur.exists() else 2 * bound + 30
                if time.time() - last > limit:
                    w["why"] = f"hang (one input ran more than {limit:.0f} s)"
                    w["proc"].kill()
                    w["proc"].wait()
                    alive.remove(w)
        inputs, spent, failures = 0, 0.0, []
        for w in workers:
            try:
                st = json.loads((w["dir"] / "stats.json").read_text())
            except (OSError, ValueError):
                st = {"inputs": 0, "seconds": 0.0}
            inputs += st["inputs"]
            spent = max(spent, st["seconds"])
            rc = w["proc"].returncode
            why = w["why"]
            if why is None and rc is not None and rc < 0:
                why = f"crash (killed by {signal.Signals(-rc).name})"
            elif why is None and rc == 3:
                why = "failure"
            elif why is None and rc != 0:
                why = f"worker exited with status {rc}"
            if why is None:
                continue
            art = _artifact(w["dir"], name, why.split()[0], w["seed"])
            detail = _tail(w["dir"] / "failure.txt", 5000) or _tail(w["dir"] / "out.txt", 3000)
            failures.append(f"{name}: {why} after {st['inputs']} inputs (seed {w['seed']})\n"
                            + (f"input saved as {art}; reproduce: python3 tests/fuzz/fuzzlib.py replay {art}\n"
                               if art else "")
                            + detail)
        line = {"target": name, "inputs": inputs, "seconds": round(spent, 1), "workers": jobs,
                "failed": len(failures)}
        print(f"\nfuzz {name}: {inputs} inputs, {spent:.1f} s, {jobs} worker(s)")
        report = os.environ.get("PFILTER_FUZZ_REPORT")
        if report:
            with open(report, "a") as f:
                f.write(json.dumps(line) + "\n")
        if failures:
            pytest.fail("\n\n".join(failures), pytrace=False)
        assert inputs > 0, f"fuzz target {name} ran no input"
        return inputs
    finally:
        for w in workers:
            if w["proc"].poll() is None:
                w["proc"].kill()
                w["proc"].wait()
        shutil.rmtree(top, ignore_errors=True)


# ----------------------------------------------------------------------------- command line

def _all_targets():
    for p in sorted(HERE.glob("test_fuzz_*.py")):
        for q in (str(TESTS), str(HERE)):
            if q not in sys.path:
                sys.path.insert(0, q)
        importlib.import_module(p.stem)
    return TARGETS


def _summary(report):
    rows = [json.loads(l) for l in Path(report).read_text().splitlines() if l.strip()] if Path(report).exists() else []
    total = sum(r["inputs"] for r in rows)
    print("fuzzing volume (inputs tried per target):")
    rows = [r for r in rows if not r["target"].startswith("selftest")]
    total = sum(r["inputs"] for r in rows)
    for r in rows:
        status = "FAILED" if r["failed"] else "ok"
        print(f"  {r['target']:<18} {r['inputs']:>9}  in {r['seconds']:>6.1f} s x {r['workers']} worker(s)  {status}")
    print(f"  {'total':<18} {total:>9}")


def main(argv):
    cmd = argv[0] if argv else ""
    if cmd == "worker":
        module, name, seed, examples, seconds, workdir = argv[1:7]
        return _work(module, name, int(seed), int(examples), float(seconds), workdir)
    if cmd in ("replay", "show"):
        case = pickle.loads(Path(argv[1]).read_bytes())
        tgt = _load(case["module"], case["target"])
        print(f"target {case['target']}; input:\n{case['input']!r}"[:20000])
        if cmd == "replay":
            tgt.check(case["input"])
            print("no failure")
        return 0
    if cmd == "count":
        print(sum(1 for name in _all_targets() if not name.startswith("selftest")))
        return 0
    if cmd == "summary":
        _summary(argv[1])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    # run as the module `fuzzlib`, the one the target modules register with
    sys.path.insert(0, str(HERE))
    import fuzzlib
    sys.exit(fuzzlib.main(sys.argv[1:]))
