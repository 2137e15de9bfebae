"""How many pytest workers scripts/test.sh starts: three per core (most tests wait on worker
processes, leases and the database, not on the CPU: measured on 2 cores, 37 s against 55 s with
two per core), fewer when the PostgreSQL server of the tests has fewer free connections than
they need. A pytest worker, with its server and worker processes, holds up to about 10 at once
(measured: 59 for 6); another run on the same server would otherwise make both fail for want of
connections."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import ADMIN_URL  # noqa: E402

PER_WORKER = 12


def main() -> int:
    wanted = 3 * (os.cpu_count() or 1)
    conn = psycopg2.connect(ADMIN_URL)
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('max_connections')::int"
                " - current_setting('superuser_reserved_connections')::int"
                " - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')"
            )
            free = cursor.fetchone()[0]
    finally:
        conn.close()
    workers = max(1, min(wanted, free // PER_WORKER))
    if workers < wanted:
        print(f"test.sh: {free} free PostgreSQL connections: {workers} pytest workers, not {wanted}", file=sys.stderr)
    print(workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
