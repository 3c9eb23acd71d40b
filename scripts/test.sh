#!/usr/bin/env bash
# Sets everything up (virtualenv, Docker engine, base image) and runs the whole test suite: ruff and
# mypy --strict, unit tests, integration tests on the real engine, the pytest plugin's tests and the
# benchmark smoke run.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
#
# The whole suite runs in two pytest sessions: first the unit tests (pure, on a fake engine: they never
# touch the real one) in four processes (pytest-xdist; they mostly wait on pseudo-terminals, probes and
# timeouts, so four beat two even on two CPUs) while mypy checks the code beside them; then every test that
# drives the real engine, one at a time, as before (several of them survey the whole engine).
# Both always run (unless ruff or mypy fails); the exit code is the first failure's.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
bash scripts/setup.sh
if [ $# -gt 0 ]; then
  exec .venv/bin/python -m pytest "$@" -q -ra --durations=25
fi
.venv/bin/ruff check envkit tests benchmarks scripts
typing=$(mktemp)
trap 'rm -f "$typing"' EXIT
.venv/bin/mypy >"$typing" 2>&1 &
mypy_pid=$!
unit=0
.venv/bin/python -m pytest tests/unit -q -ra -n 4 --durations=5 || unit=$?
typed=0
wait "$mypy_pid" || typed=$?
cat "$typing"
if [ "$typed" -ne 0 ]; then
  echo "mypy --strict failed (exit $typed): the real-engine tests are not run" >&2
  exit "$typed"
fi
engine=0
.venv/bin/python -m pytest tests --ignore=tests/unit -q -ra --durations=25 || engine=$?
if [ "$unit" -ne 0 ]; then exit "$unit"; fi
exit "$engine"
