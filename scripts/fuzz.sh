#!/usr/bin/env bash
# The standing fuzzing step (issue 18): every fuzz target of tests/fuzz for a set duration, in
# worker processes (a crash or a hang fails the step with the input saved), then the number of
# inputs tried per target. Needs pfilter built in place and the test packages (scripts/test.sh
# installs both); seeds from ../shared/corpus when present, else from generated captures.
#
#   bash scripts/fuzz.sh [SECONDS]        # default 180: the whole run, split evenly over targets
#
# Environment: PFILTER_FUZZ_JOBS (workers per target, default: the CPU count),
# PFILTER_FUZZ_SEED (default: the time; printed, so a failing run can be repeated),
# PFILTER_FUZZ_ARTIFACTS (where failing inputs go; default a temporary directory).
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-${PFILTER_FUZZ_DURATION:-180}}
targets=$(python3 tests/fuzz/fuzzlib.py count)
# pytest and the harness self-test take ~15 s of the duration, each target's workers ~1 s to start
budget=$(( (duration - 15) / targets - 1 ))
(( budget >= 2 )) || budget=2
export PFILTER_FUZZ_SECONDS=$budget
export PFILTER_FUZZ_JOBS=${PFILTER_FUZZ_JOBS:-$(nproc)}
export PFILTER_FUZZ_SEED=${PFILTER_FUZZ_SEED:-$(date +%s)}
report=$(mktemp -t pfilter-fuzz-report.XXXXXX)
trap 'rm -f "$report"' EXIT
export PFILTER_FUZZ_REPORT=$report
echo "fuzzing $targets targets, ${budget} s each x $PFILTER_FUZZ_JOBS worker(s), seed $PFILTER_FUZZ_SEED"
started=$(date +%s)
status=0
python3 -m pytest -q -p no:cacheprovider tests/fuzz || status=$?
python3 tests/fuzz/fuzzlib.py summary "$report"
echo "fuzzing took $(( $(date +%s) - started )) s (seed $PFILTER_FUZZ_SEED)"
exit $status
