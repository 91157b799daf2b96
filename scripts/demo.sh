#!/usr/bin/env bash
# Install bounceback with its extras and run the demo: a flaky device fleet on 127.0.0.1, recovered live.
# Extra arguments go to `bounceback demo` (for example --fast or --dashboard).
# The install says what it does (pip lists every package as it goes); later runs skip it until
# pyproject.toml changes.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'demo.sh: %s\n' "$*" >&2; }
started=$SECONDS
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv"
  python3 -m venv .venv
fi
stamp=.venv/.bounceback-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing bounceback[all] into .venv (the first time takes about a minute; pip lists each step)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --disable-pip-version-check --progress-bar on -e '.[all]'
  .venv/bin/bounceback --version >/dev/null  # fail here, not in the demo, if the install did not work
  echo "$want" > "$stamp"
  say "installed in $((SECONDS - started)) s"
else
  say "bounceback is already installed in .venv"
fi
say "starting the demo"
exec .venv/bin/bounceback demo "$@"
