#!/usr/bin/env bash
# Quick start 1: set everything up, then watch real workers run a mix of jobs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/jobctl demo "$@"
