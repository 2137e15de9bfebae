#!/usr/bin/env bash
# Quick start 2: set everything up, then run the whole test suite (one database and one Redis
# namespace per pytest-xdist worker). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Two pytest workers per core: most tests wait on worker processes, leases and the database,
# not on the CPU.
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-$(($(nproc) * 2))}" "$@"
