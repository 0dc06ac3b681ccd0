#!/usr/bin/env bash
# The README's second command (CI's .ci/run calls it): install what the tests need, build pfilter
# in place and run the test suite. Extra arguments go to pytest.
#
# - As root on Debian/Ubuntu it installs the Debian packages first (noninteractive): libpcap0.8,
#   tcpdump, netbase and wireshark-common (editcap) are the references the tests compare with (python3-seccomp, for
#   Debian's /usr/bin/python3, the seccomp tests' reference; bpftool and iproute2, which load the
#   eBPF tests' objects); gcc, python3-dev, python3-venv
#   and libpcap0.8-dev build pfilter and the tests' libpcap helper. As another user it installs
#   nothing system-wide, and the tests that need a missing reference skip, naming it.
# - Python packages go into a virtual environment (Debian's python3 refuses system-wide pip,
#   PEP 668): the active one if any, else ./.venv, created on first use and reused after.
# - Tests that need the third-party capture corpus read it from $PFILTER_CORPUS (default
#   ../shared/corpus beside the clone) and skip, naming it, when it is absent.
# With CI=true a test whose reference or corpus is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  want="libpcap0.8 libpcap0.8-dev tcpdump netbase gcc python3-seccomp wireshark-common bpftool iproute2"
  # python3-venv / python3-dev only when this python lacks them (a python built from source has both)
  "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || want="$want python3-venv"
  "$PYTHON" -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
    >/dev/null 2>&1 || want="$want python3-dev"
  need=""
  for pkg in $want; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    echo "test.sh: apt-get install$need" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
  fi
  # bpftool and tc are in /usr/sbin, which a root shell started with a plain PATH may lack
  case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH="$PATH:/usr/sbin:/sbin" ;; esac
fi

if [ -n "${VIRTUAL_ENV:-}" ]; then
  VENV="$VIRTUAL_ENV"
else
  VENV="$PWD/.venv"
  if ! "$VENV/bin/python" -c "" >/dev/null 2>&1; then
    echo "test.sh: creating the virtual environment $VENV" >&2
    "$PYTHON" -m venv --clear "$VENV"
  fi
fi
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"

# compat: a plain path entry instead of an import hook, so the `pfilter` command starts as fast
# as from a regular install (the hook costs ~12 ms at every interpreter start).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]" --config-settings editable_mode=compat
# pytest workers (pytest-xdist): one more than the usable cores, or PFILTER_TEST_JOBS=N (0 runs
# everything in this one process). The extra worker runs while another waits: many tests wait
# on a subprocess, a signal's timer or a starting Dask cluster, and with one worker per core
# that core idled (on 2 cores, 3 workers ran the suite in 521 s, both cores busy: 1,026 CPU-s).
# scripts/asan.sh and .ci/run's pure-Python step keep one per core: instrumented code, or the
# release check's build beside them, leaves no core waiting. A worker that runs out of tests
# takes half of another's (worksteal), so the run does not end on one busy worker.
n_jobs="${PFILTER_TEST_JOBS:-$(( $(nproc) + 1 ))}"
jobs=(-n "$n_jobs" --dist worksteal)
[ "$n_jobs" != 0 ] || jobs=()
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "${jobs[@]}" tests "$@"
