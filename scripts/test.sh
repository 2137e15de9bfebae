#!/usr/bin/env bash
# Quick start 2: set everything up, then run the whole test suite on the servers named by
# TEST_DATABASE_ADMIN_URL and TEST_REDIS_URL (README, "Tests"): every run creates its own
# databases and Redis namespaces there, so runs sharing them don't collide. Extra arguments go
# to pytest; TEST_WORKERS sets how many pytest-xdist workers run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh --tests
# Three pytest workers per core, fewer when the database server has too few free connections
# for them (scripts/test_workers.py).
workers=${TEST_WORKERS:-$("${VENV:-.venv}/bin/python" scripts/test_workers.py)}
exec "${VENV:-.venv}/bin/python" -m pytest -n "$workers" "$@"
