#!/usr/bin/env bash
# Install bounceback with its extras and run the demo: a flaky device fleet on 127.0.0.1, recovered live.
# Extra arguments go to `bounceback demo` (for example --fast or --dashboard).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[all]'
exec .venv/bin/bounceback demo "$@"
