#!/usr/bin/env bash
# Sets everything up and runs the platform: initializes a data dir on first run
# (printing the first admin's password once) and serves the API over TLS.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
export FLEETGUARD_DATA_DIR=${FLEETGUARD_DATA_DIR:-$PWD/.demo-data}
if [ ! -f "$FLEETGUARD_DATA_DIR/master.key" ] && [ -z "${FLEETGUARD_MASTER_KEY:-}" ]; then
  fleetguard init
fi
exec fleetguard serve --host 127.0.0.1 --port "${FLEETGUARD_PORT:-8443}"
