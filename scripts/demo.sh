#!/usr/bin/env bash
# Sets everything up, then brings up blueprints/shop as a private run, shows its outputs, places an
# order through the API and checks it in the database and the payment stub, and tears everything down.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/setup.sh
exec .venv/bin/envkit run blueprints/shop -- .venv/bin/python scripts/demo_check.py
