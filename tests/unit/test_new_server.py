"""The first migration on a PostgreSQL server of its own: the roles are the server's, and a
server that has never seen them must end with each role's memberships, as one that has."""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import db
from db.connection import transaction


def _server_programs() -> Path:
    """Where initdb and pg_ctl are: on PATH, or else (Debian) the newest installed under
    /usr/lib/postgresql/<version>/bin (pg_config may name a newer client with no server)."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    installed = sorted(
        (Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda bindir: int(bindir.parent.name) if bindir.parent.name.isdigit() else 0,
    )
    if not installed:
        raise AssertionError("this test starts a PostgreSQL server of its own: install PostgreSQL's server programs")
    return installed[-1]


def _run(what: str, command: list) -> None:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{what} failed: {done.stderr.strip()}")


@pytest.fixture
def new_server() -> Iterator[str]:
    """A PostgreSQL server that has never been migrated, listening on a socket in a directory of
    its own only (no port of this machine is taken); its admin URL. PostgreSQL refuses to run as
    root: as root, it runs as the `postgres` user, in a directory that user can reach (pytest's
    are root's alone)."""
    bindir = _server_programs()
    as_postgres = []
    if os.geteuid() == 0:
        # /usr/sbin may be off a non-login shell's search path.
        runuser = shutil.which("runuser") or next(
            (path for path in ("/usr/sbin/runuser", "/sbin/runuser") if os.access(path, os.X_OK)), None
        )
        if runuser is None:
            raise AssertionError("as root, this test runs PostgreSQL as `postgres` with runuser (util-linux)")
        as_postgres = [runuser, "-u", "postgres", "--"]
    home = Path(tempfile.mkdtemp(prefix="jobs-new-server-"))
    data, sockets = home / "data", home / "sockets"
    try:
        sockets.mkdir()
        if as_postgres:
            shutil.chown(home, "postgres")
            shutil.chown(sockets, "postgres")
        initdb = [bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8"]
        _run("initdb", [*as_postgres, *initdb])
        options = f"-c listen_addresses='' -k {shlex.quote(str(sockets))} -c fsync=off"
        try:
            # -w: returns once the server accepts connections.
            start = [bindir / "pg_ctl", "-D", data, "-w", "-o", options, "-l", home / "server.log", "start"]
            _run("pg_ctl start", [*as_postgres, *start])
            yield f"postgresql://postgres@/jobs_new?host={sockets}"
        finally:
            # Also after a start that failed late: a server may be running all the same.
            subprocess.run(
                [str(part) for part in (*as_postgres, bindir / "pg_ctl", "-D", data, "-m", "immediate", "stop")],
                capture_output=True,
                check=False,
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_the_first_migration_of_a_new_server_gives_each_role_its_memberships(new_server):
    db.migrate(new_server)

    with transaction(new_server) as cursor:
        cursor.execute(
            "SELECT u.rolname, r.rolname FROM pg_auth_members m"
            " JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member"
            " WHERE u.rolname LIKE 'jobs\\_%'"
        )
        memberships = set(cursor.fetchall())
    # Services act as the users they authenticated (db/scope.py); workers never may.
    assert memberships == {("jobs_service", "jobs_worker"), ("jobs_service", "jobs_user")}

    with transaction(new_server.replace("postgres@", "jobs_service@")) as cursor:
        cursor.execute("SET ROLE jobs_user")
        cursor.execute("SELECT current_user")
        assert cursor.fetchone() == ("jobs_user",)
