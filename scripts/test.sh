#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (Python 3.11, pip, root or sudo), then run
# the linters, the type checker and the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# System parts: a real Redis server and Redis Sentinel, Debian's Chromium (never a downloaded browser), and PostgreSQL's server
# binaries (the error-pack tests start a throwaway cluster of their own; the package's default cluster is
# not used).
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Sentinel is a package of its own on Debian (the failover tests start three of them).
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || missing+=(postgresql)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "== installing ${missing[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python parts, in a virtual environment of the project's own.
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'

export PATH="$PWD/.venv/bin:$PATH"
# Every check runs even when an earlier one fails, so one run tells everything; any failure fails the script.
failed=()
echo "== pytest"
python -m pytest "$@" || failed+=(pytest)
echo "== ruff"
ruff check src tests benchmarks scripts || failed+=("ruff check")
ruff format --check src tests benchmarks scripts || failed+=("ruff format")
echo "== mypy --strict"
mypy || failed+=(mypy)
if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all checks passed"
