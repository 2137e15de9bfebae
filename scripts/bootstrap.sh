#!/usr/bin/env bash
# Makes a fresh machine ready: PostgreSQL and Redis running, a virtualenv with the project and
# its test tools installed from setup.cfg, and the schema migrated. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

wait_until() {  # wait_until DESCRIPTION COMMAND...: up to 30 s
  local what=$1; shift
  for _ in $(seq 1 150); do "$@" && return 0; sleep 0.2; done
  echo "bootstrap: $what did not come up within 30 s" >&2
  return 1
}

if ! pg_up; then
  command -v pg_ctlcluster >/dev/null || { echo "bootstrap: PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
  echo "bootstrap: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  wait_until "PostgreSQL" pg_up
fi
if ! redis_up; then
  command -v redis-server >/dev/null || { echo "bootstrap: Redis is not installed (apt-get install redis-server)" >&2; exit 1; }
  echo "bootstrap: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_until "Redis" redis_up
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[test]'
"$VENV/bin/jobctl" migrate
