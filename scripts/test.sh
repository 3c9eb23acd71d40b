#!/usr/bin/env bash
# Sets everything up (virtualenv, Docker engine, base image) and runs the whole test suite: ruff and
# mypy --strict, unit tests, integration tests on the real engine, the pytest plugin's tests and the
# benchmark smoke run.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/setup.sh
if [ $# -eq 0 ]; then  # the whole suite also holds the code to its lint and strict typing
  .venv/bin/ruff check envkit tests benchmarks scripts
  .venv/bin/mypy
fi
exec .venv/bin/python -m pytest "${@:-tests}" -q -ra --durations=25
