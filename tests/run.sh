#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs pytest.
#   bash tests/run.sh            everything (first run also builds llama-server, ~9 min, cached)
#   bash tests/run.sh -k golden  any pytest arguments pass through
# SSE_FIXUP_SKIP_LLAMA=1 skips only the real llama-server tests (quick local runs).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "[tests] installing Node.js and npm from Debian" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
(cd tests/clients/node && npm ci --no-audit --no-fund --loglevel=error)

exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
