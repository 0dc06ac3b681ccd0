#!/usr/bin/env bash
# The native code under AddressSanitizer and UndefinedBehaviorSanitizer: builds every Cython
# extension with -fsanitize=address,undefined (setup.py's PFILTER_ASAN=1) in a temporary copy of
# the source tree (the in-place .so files are left alone), then runs the VM, batch, reader,
# writer, output and classify tests against that build with the ASan runtime preloaded. Exits
# non-zero when a test fails or when any sanitizer report was written (each is printed).
#
#   bash scripts/asan.sh                       # the default test selection below
#   bash scripts/asan.sh tests/test_vm_load.py -x   # other pytest arguments instead
#
# Needs what scripts/test.sh installs (gcc and its libasan/libubsan, the Python headers, Cython,
# numpy, pytest, libpcap and tcpdump as references): run that first; its Python environment
# is used (the active virtual environment, else ./.venv, else $PYTHON or python3).
# ASAN_KEEP=1 keeps the temporary tree. CPython never frees some memory by design, so leak
# detection is off; Python's own allocator is replaced by malloc (PYTHONMALLOC=malloc) so that
# objects are checked too.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
[ -f "$repo/setup.py" ] && [ -d "$repo/pfilter" ] || { echo "asan.sh: run it from a pfilter checkout" >&2; exit 2; }
# The Python environment scripts/test.sh installs into: the active virtual environment, else
# ./.venv, else $PYTHON (default python3).
if [ -n "${VIRTUAL_ENV:-}" ]; then
  py="$VIRTUAL_ENV/bin/python"
elif [ -x "$repo/.venv/bin/python" ]; then
  py="$repo/.venv/bin/python"
else
  py="${PYTHON:-python3}"
fi
export PATH="$(dirname "$(command -v "$py")"):$PATH"

if ! "$py" -c "import Cython, numpy, pytest" 2>/dev/null; then
  echo "asan.sh: Cython, numpy and pytest are missing: run scripts/test.sh first" >&2
  exit 2
fi
libasan="$(gcc -print-file-name=libasan.so)"
if [ ! -e "$libasan" ]; then
  echo "asan.sh: gcc has no AddressSanitizer runtime ($libasan)" >&2
  exit 2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/pfilter-asan.XXXXXX")"
cleanup() { if [ "${ASAN_KEEP:-0}" = 1 ]; then echo "asan.sh: kept $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT
tree="$work/tree"
logs="$work/reports"
mkdir -p "$tree" "$logs"

# The source tree as it is (uncommitted edits included), without build products.
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar -cf - --null -T -) | tar -xf - -C "$tree"
else
  (cd "$repo" && tar -cf - --exclude-vcs --exclude=./build --exclude=./.venv --exclude='*.so' --exclude=__pycache__ \
     --exclude='*.egg-info' --exclude=.mypy_cache --exclude=.hypothesis --exclude=.benchmarks .) | tar -xf - -C "$tree"
fi
find "$tree/pfilter" -name '*.pyx' | while read -r pyx; do rm -f "${pyx%.pyx}.c"; done

echo "asan.sh: building the extensions with -fsanitize=address,undefined in $tree" >&2
start=$SECONDS
(cd "$tree" && PFILTER_ASAN=1 "$py" setup.py -q build_ext --inplace) >"$work/build.log" 2>&1 || {
  cat "$work/build.log" >&2
  echo "asan.sh: the sanitizer build failed" >&2
  exit 1
}
echo "asan.sh: built in $((SECONDS - start)) s" >&2

# The corpus path is relative to the repository by default: keep it pointing at the original.
corpus="${PFILTER_CORPUS:-../shared/corpus}"
case "$corpus" in /*) ;; *) corpus="$repo/$corpus" ;; esac

export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:log_path=$logs/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export PYTHONMALLOC=malloc
export PYTHONPATH="$tree${PYTHONPATH:+:$PYTHONPATH}"
export PFILTER_CORPUS="$corpus"
unset PFILTER_PUREPYTHON
# tests/conftest.py's `vm` fixture then skips the pure-Python VM's runs: no native code in them
export PFILTER_SANITIZED=1

# The sanitizers are live: a deliberate overflow in a small instrumented library is reported.
cat >"$work/canary.c" <<'EOF'
#include <stdlib.h>
int canary(int i) { volatile char *p = malloc(8); int r = p[8 + i]; free((void *)p); return r; }
EOF
gcc -shared -fPIC -O1 -g -fsanitize=address,undefined -o "$work/canary.so" "$work/canary.c"
if "$py" -c "import ctypes, sys; ctypes.CDLL(sys.argv[1]).canary(0)" "$work/canary.so" 2>/dev/null \
    || [ -z "$(ls -A "$logs")" ]; then
  echo "asan.sh: AddressSanitizer did not report the canary's overflow: the run would prove nothing" >&2
  exit 1
fi
rm -f "$logs"/*

# Every extension the tests import is the instrumented one from the copy.
(cd "$tree" && "$py" - <<'EOF')
import importlib, pathlib, sys
tree = pathlib.Path.cwd()
for src in sorted(tree.joinpath("pfilter").rglob("*.pyx")):
    name = ".".join(src.relative_to(tree).with_suffix("").parts)
    mod = importlib.import_module(name)
    path = pathlib.Path(mod.__file__)
    if tree not in path.parents or b"__asan_init" not in path.read_bytes():
        sys.exit(f"asan.sh: {name} comes from {path}, not the sanitizer build")
EOF

if [ $# -eq 0 ]; then
  # one pytest worker per usable core (PFILTER_TEST_JOBS=N): scripts/test.sh says why not one more
  set -- -n "${PFILTER_TEST_JOBS:-auto}" --dist worksteal \
         tests/test_vm_*.py tests/test_robust_vm.py tests/test_batch.py \
         tests/test_capture_*.py tests/test_fastpath_*.py tests/test_robust_reader.py \
         tests/test_writer_*.py tests/test_robust_writer*.py tests/test_robust_output.py \
         tests/test_classify_*.py
fi
start=$SECONDS
status=0
(cd "$tree" && "$py" -m pytest -q -p no:cacheprovider "$@") || status=$?
echo "asan.sh: tests ran in $((SECONDS - start)) s (pytest status $status)" >&2

if [ -n "$(ls -A "$logs")" ]; then
  for f in "$logs"/*; do
    echo "===== $(basename "$f")" >&2
    head -n 200 "$f" >&2
  done
  echo "asan.sh: FAILED: $(ls "$logs" | wc -l) sanitizer report file(s) above" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "asan.sh: FAILED: tests failed under the sanitizer build (no sanitizer report)" >&2
  exit "$status"
fi
echo "asan.sh: no AddressSanitizer or UndefinedBehaviorSanitizer report" >&2
