#!/usr/bin/env bash
# Prints how many pytest-xdist workers the test scripts start (scripts/test.sh, scripts/asan.sh,
# .ci/run): $PFILTER_TEST_JOBS when set (0: everything in one process), else one more than the
# usable cores. The extra worker runs while another waits: many tests wait on a subprocess, a
# signal's timer or a starting Dask cluster, and with one worker per core that core idled (on
# 2 cores, 3 workers ran the whole suite in 521 s and kept both cores busy: 1,026 CPU-s).
set -euo pipefail
echo "${PFILTER_TEST_JOBS:-$(( $(nproc) + 1 ))}"
