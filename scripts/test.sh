#!/usr/bin/env bash
# The README's second command: install what the tests need (Debian's libpcap0.8, tcpdump and the
# name databases as references; Python test packages), build pfilter, and run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  need=""
  for pkg in libpcap0.8 libpcap0.8-dev tcpdump netbase gcc; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
  done
  if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
  fi
fi
# compat: a plain path entry instead of an import hook, so the `pfilter` command starts as fast
# as from a regular install (the hook costs ~12 ms at every interpreter start).
python3 -m pip install -q --disable-pip-version-check -e ".[test]" --config-settings editable_mode=compat
python3 -m pytest -q -p no:cacheprovider tests "$@"
