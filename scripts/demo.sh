#!/usr/bin/env bash
# Quick start 1: set everything up (the servers of DATABASE_URL, ADMIN_DATABASE_URL and
# REDIS_URL), then watch real workers run a mix of jobs. Extra arguments go to `jobctl demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec "${VENV:-.venv}/bin/jobctl" demo "$@"
