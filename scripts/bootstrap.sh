#!/usr/bin/env bash
# Makes a machine ready: a virtualenv with the project and its test tools, the PostgreSQL and
# Redis servers the configuration names, and the schema migrated. Safe to run again: it installs
# only when setup.cfg or pyproject.toml changed, and starts a server only when its address is on
# this machine and nothing answers there.
#
#   scripts/bootstrap.sh          the servers of ADMIN_DATABASE_URL, DATABASE_URL and REDIS_URL
#                                 (defaults in middleware/settings.py), then `jobctl migrate`
#   scripts/bootstrap.sh --tests  the servers of TEST_DATABASE_ADMIN_URL and TEST_REDIS_URL
#                                 (defaults in tests/conftest.py), and Debian's Chromium for the
#                                 browser tests (apt-get, if it is missing); nothing to migrate:
#                                 every test run creates its own databases
#
# The virtualenv is made by ${PYTHON:-python3} in ${VENV:-.venv}. Upper-case names in this
# script are the environment's (tests/unit/test_scripts.py holds the README to naming them).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=${VENV:-.venv}
case ${1:-} in
  "") for_tests=0 ;;
  --tests) for_tests=1 ;;
  *) echo "usage: scripts/bootstrap.sh [--tests]" >&2; exit 2 ;;
esac

die() { echo "bootstrap: $*" >&2; exit 1; }

# The virtualenv. A stamp holds the hash of the files that say what to install, so that a run
# with nothing new installs nothing (and never upgrades pip: the venv's own is recent enough).
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
stamp=$(cat setup.cfg pyproject.toml | sha256sum | cut -d ' ' -f 1)
if [ "$(cat "$venv/.bootstrap-stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "bootstrap: installing the project and its test tools into $venv"
  "$venv/bin/python" -m pip install --quiet -e '.[test]'
  echo "$stamp" >"$venv/.bootstrap-stamp"
fi
# The project's bytecode, written now: an editable install leaves it to the first import, which
# writes nothing where PYTHONDONTWRITEBYTECODE is set, and then every `jobctl`, worker and
# server process compiles the project again (0.12 s of CPU a command). Only what changed is
# compiled again.
"$venv/bin/python" -m compileall -q -j 0 actors db jobs middleware web scripts tests >/dev/null

# The servers, one a line: KIND VARIABLE HOST PORT PLACE ADDRESS URL, where PLACE is `local`
# when HOST is this machine (then ADDRESS is where a server started here listens), read with
# the project's own defaults. Nothing but HOST:PORT is ever printed: a URL may hold a password.
servers() {
  "$venv/bin/python" - "$for_tests" <<'EOF'
import ipaddress
import socket
import sys
from urllib.parse import parse_qs, urlsplit

if sys.argv[1] == "1":
    from tests.conftest import ADMIN_URL, REDIS_URL

    named = [("postgresql", "TEST_DATABASE_ADMIN_URL", ADMIN_URL), ("redis", "TEST_REDIS_URL", REDIS_URL)]
else:
    from middleware.settings import Settings

    try:
        settings = Settings.from_env()
    except Exception as error:  # a setting that can't be read: one line, as jobctl says it
        sys.exit(f"bootstrap: {error}")
    named = [
        ("postgresql", "ADMIN_DATABASE_URL", settings.admin_database_url),
        ("postgresql", "DATABASE_URL", settings.database_url),
        ("redis", "REDIS_URL", settings.redis_url),
    ]


def addresses(host):
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return set()


own = addresses(socket.gethostname())
for kind, variable, url in named:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    # No host: the default socket (PostgreSQL) or localhost (Redis); a path: a socket directory.
    host = parts.hostname or query.get("host", [""])[0]
    try:
        port = parts.port or int(query.get("port", ["5432" if kind == "postgresql" else "6379"])[0])
    except ValueError:
        sys.exit(f"bootstrap: {variable} has no valid port")
    found = addresses(host) if host and not host.startswith("/") else {"127.0.0.1"}
    local = bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback or a in own for a in found)
    place = "local" if local else "remote"
    address = min(found, key=lambda a: (":" in a, a)) if found else "-"  # IPv4 first
    print(kind, variable, host or "localhost", port, place, address, url)
EOF
}

answers() {  # answers KIND URL
  case $1 in
    postgresql) pg_isready -q -t 3 -d "$2" ;;
    # Any reply will do (an error asking for a password too); a refusal is printed on stderr.
    redis) [ -n "$(timeout 3 redis-cli -u "$2" ping 2>/dev/null)" ] ;;
  esac
}

start_postgresql() {  # start_postgresql WHERE PORT: the cluster of this machine set to that port
  command -v pg_lsclusters >/dev/null || die "nothing answers at $1, and PostgreSQL is not installed here (apt-get install postgresql)"
  local cluster
  cluster=$(pg_lsclusters --no-header | awk -v port="$2" '$3 == port { print $1, $2; exit }')
  [ -n "$cluster" ] || die "nothing answers at $1, and no PostgreSQL cluster of this machine is set to port $2 (pg_lsclusters)"
  echo "bootstrap: starting PostgreSQL $cluster for $1"
  # shellcheck disable=SC2086 - the cluster's version and name
  pg_ctlcluster --skip-systemctl-redirect $cluster start </dev/null
}

start_redis() {  # start_redis WHERE ADDRESS PORT
  command -v redis-server >/dev/null || die "nothing answers at $1, and Redis is not installed here (apt-get install redis-server)"
  echo "bootstrap: starting Redis for $1"
  redis-server --daemonize yes --bind "$2" --port "$3" --save "" --appendonly no </dev/null
}

wait_until() {  # wait_until DESCRIPTION COMMAND...: up to 30 s
  local what=$1
  shift
  for _ in $(seq 1 150); do "$@" && return 0; sleep 0.2; done
  die "$what did not come up within 30 s"
}

# The browser tests drive Debian's Chromium through Playwright (tests/browser): the package, never
# a browser that Playwright would download (its own browser installer is never run). setup.cfg pins the
# Playwright release that targets its version.
if [ "$for_tests" = 1 ] && [ ! -x /usr/bin/chromium ]; then
  command -v apt-get >/dev/null || die "the browser tests need Debian's chromium package (/usr/bin/chromium), and apt-get is missing"
  echo "bootstrap: installing Debian's chromium for the browser tests"
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  "${as_root[@]}" apt-get update -qq </dev/null || die "apt-get update failed: install the chromium package as root"
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null \
    || die "apt-get install chromium failed: install it as root"
fi

command -v pg_isready >/dev/null || die "pg_isready is missing (apt-get install postgresql-client)"
command -v redis-cli >/dev/null || die "redis-cli is missing (apt-get install redis-tools)"
list=$(servers)
while read -r kind variable host port place address url <&3; do
  answers "$kind" "$url" && continue
  where="$host:$port ($variable)"
  [ "$place" = local ] || die "nothing answers at $where, which is not this machine: start the server there, or set $variable"
  case $kind in
    postgresql) start_postgresql "$where" "$port" ;;
    redis) start_redis "$where" "$address" "$port" ;;
  esac
  wait_until "$kind at $where" answers "$kind" "$url"
done 3<<<"$list"

# promtool, for the tests of the example alerting rules (tests/unit/test_alerts.py): taken from
# Debian's prometheus package and unpacked alone, into /usr/local/bin when that can be written
# (where every later run finds it on the PATH), else into the virtualenv. The package is not
# installed: that would start a Prometheus server.
if [ "$for_tests" = 1 ] && ! command -v promtool >/dev/null && [ ! -x "$venv/bin/promtool" ]; then
  where=$venv/bin
  [ -w /usr/local/bin ] && where=/usr/local/bin
  echo "bootstrap: fetching promtool (Debian's prometheus package) into $where"
  work=$(mktemp -d)
  (cd "$work" && { apt-get download prometheus || { apt-get update && apt-get download prometheus; }; } >/dev/null 2>&1) ||
    die "could not download Debian's prometheus package, which has promtool (apt-get download prometheus)"
  dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$work/promtool"
  install -m 0755 "$work/promtool" "$where/promtool"
  rm -rf "$work"
fi

[ "$for_tests" = 1 ] || "$venv/bin/jobctl" migrate
