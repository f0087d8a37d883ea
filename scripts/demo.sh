#!/usr/bin/env bash
# Sets everything up and runs the main job: the whole platform on this machine (server,
# MQTT broker when Mosquitto is installed, a simulated fleet of 50 devices, a few of them
# compromised). Prints the addresses and the one-time admin credentials; Ctrl-C stops it all.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
exec fleetguard demo --data-dir "${FLEETGUARD_DEMO_DIR:-$PWD/.demo-data}" "$@"
