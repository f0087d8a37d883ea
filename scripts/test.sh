#!/usr/bin/env bash
# Sets everything up, then runs every check and test: lint, types, import contracts, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

# PostgreSQL runs on 127.0.0.1:5432 on development and CI machines; start it if it stopped.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

. .venv/bin/activate
echo "== ruff";         ruff check src tests $(ls -d benchmarks 2>/dev/null || true)
echo "== mypy";         mypy
echo "== import contracts"; lint-imports
echo "== pytest"
# The slowest tests are printed at the end: the suite is kept well under 15 minutes.
python -m pytest -n 2 --dist loadfile -p no:cacheprovider --durations=25 "$@"
