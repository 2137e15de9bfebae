#!/usr/bin/env bash
# Quick start 1: set everything up (the servers of DATABASE_URL, ADMIN_DATABASE_URL and
# REDIS_URL), then watch real workers run a mix of jobs, in the terminal and, through the HTTP
# server it starts (`jobctl serve` on 127.0.0.1:8000, JOBS_API_SECRET or one of its own kept in
# .demo/), in a browser signed in by the links it prints. Extra arguments go to `jobctl demo`
# (--port 0: any free port).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec "${VENV:-.venv}/bin/jobctl" demo "$@"
