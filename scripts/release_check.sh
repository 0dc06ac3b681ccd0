#!/usr/bin/env bash
# Checks that the committed tree makes a releasable package: builds the sdist, then a wheel FROM
# that sdist (as PyPI users' pip and cibuildwheel do), runs `twine check` on both, installs the
# wheel into a fresh virtual environment and runs the command there (--version and a filter over
# data/sample.pcap, whose count must equal the Python API's in the same environment).
# Everything happens in a temporary directory, removed at the end; the tree is not touched.
# Usage: bash scripts/release_check.sh [git revision, default HEAD]   (outside git: the tree as is)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PYTHON="${PYTHON:-python3}"
REV="${1:-HEAD}"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/pfilter-release.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
step() { printf 'release_check: %s\n' "$*" >&2; }

# 1. the source: what is committed (an uncommitted file must not make the check pass)
mkdir "$TMP/src"
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  step "exporting $REV ($(git -C "$ROOT" rev-parse --short "$REV"))"
  git -C "$ROOT" archive "$REV" | tar -x -C "$TMP/src"
else
  step "not a git clone: using the tree as is"
  tar -C "$ROOT" --exclude=./.venv --exclude=./build --exclude='*.so' -cf - . | tar -x -C "$TMP/src"
fi

# 2. the tools, in a throwaway environment
step "installing build and twine"
"$PYTHON" -m venv "$TMP/tools"
"$TMP/tools/bin/python" -m pip install -q --disable-pip-version-check build twine >"$TMP/pip-tools.log" 2>&1 \
  || { cat "$TMP/pip-tools.log" >&2; exit 1; }

# 3. sdist, then the wheel built from the unpacked sdist
step "building the sdist"
"$TMP/tools/bin/python" -m build --sdist --outdir "$TMP/dist" "$TMP/src" >"$TMP/build-sdist.log" 2>&1 \
  || { cat "$TMP/build-sdist.log" >&2; exit 1; }
SDIST="$(ls "$TMP"/dist/*.tar.gz)"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' >"$TMP/sdist.txt"
for src in pfilter/_vm.pyx pfilter/_vm_core.pxi pfilter/capture/writev.pxi pfilter/py.typed LICENSE CHANGELOG.md data/sample.pcap; do
  grep -qxF "$src" "$TMP/sdist.txt" || { echo "release_check: $src missing from $(basename "$SDIST")" >&2; exit 1; }
done
if grep -E '^pfilter/.*\.(c|so|html)$' "$TMP/sdist.txt"; then
  echo "release_check: build products in the sdist (above)" >&2; exit 1
fi
step "building the wheel from $(basename "$SDIST")"
mkdir "$TMP/unpacked"
tar -xzf "$SDIST" -C "$TMP/unpacked"
"$TMP/tools/bin/python" -m build --wheel --outdir "$TMP/dist" "$TMP"/unpacked/* >"$TMP/build-wheel.log" 2>&1 \
  || { cat "$TMP/build-wheel.log" >&2; exit 1; }
WHEEL="$(ls "$TMP"/dist/*.whl)"
"$TMP/tools/bin/python" -c "import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist(), sep='\n')" "$WHEEL" >"$TMP/wheel.txt"
if grep -E '\.(c|html|pyx|pxi)$' "$TMP/wheel.txt"; then
  echo "release_check: sources or build products in the wheel (above)" >&2; exit 1
fi
for f in pfilter/py.typed pfilter/cli.py; do
  grep -qxF "$f" "$TMP/wheel.txt" || { echo "release_check: $f missing from the wheel" >&2; exit 1; }
done
grep -qE '^pfilter/_vm\..*\.so$' "$TMP/wheel.txt" || { echo "release_check: no compiled VM in the wheel" >&2; exit 1; }

step "twine check"
"$TMP/tools/bin/python" -m twine check --strict "$TMP"/dist/*

# 4. the wheel in a fresh environment, run from a directory that is not the source tree
step "installing $(basename "$WHEEL") into a fresh environment"
"$PYTHON" -m venv "$TMP/user"
"$TMP/user/bin/python" -m pip install -q --disable-pip-version-check "$WHEEL" >"$TMP/pip-user.log" 2>&1 \
  || { cat "$TMP/pip-user.log" >&2; exit 1; }
mkdir "$TMP/run"
cd "$TMP/run"
expected="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$TMP/src/pfilter/__init__.py")"
got="$("$TMP/user/bin/pfilter" --version | head -n1)"
case "$got" in
  *"$expected"*) ;;
  *) echo "release_check: pfilter --version says '$got', pfilter/__init__.py says $expected" >&2; exit 1 ;;
esac
"$TMP/user/bin/pfilter" -r "$TMP/src/data/sample.pcap" -w web.pcap 'ip and tcp port 80'
n_cli="$("$TMP/user/bin/pfilter" -r web.pcap --count 'ip and tcp port 80' 2>/dev/null | grep -Eo '[0-9]+' | head -n1)"
n_api="$("$TMP/user/bin/python" -c "
import sys, pfilter
prog = pfilter.compile('ip and tcp port 80')
with pfilter.open(sys.argv[1]) as cap:
    print(sum(int(prog.match_batch(b).sum()) for b in cap))
from pfilter import program
assert program._cvm is not None, 'the compiled VM is not in the wheel'" "$TMP/src/data/sample.pcap")"
if [ -z "$n_cli" ] || [ "$n_cli" != "$n_api" ] || [ "$n_api" = 0 ]; then
  echo "release_check: the installed command wrote $n_cli packets, the API counts $n_api" >&2; exit 1
fi
step "ok: $(basename "$SDIST"), $(basename "$WHEEL"); $got; $n_cli packets of data/sample.pcap match"
