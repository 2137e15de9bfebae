"""Applies the versioned SQL files in db/migrations once each, in order, and records them."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlparse, urlunparse

import psycopg2.errors
import structlog
from psycopg2 import sql

from .connection import connect, transaction
from .errors import MigrationChanged

log = structlog.get_logger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Serialises concurrent migrators (several workers starting at once).
LOCK_KEY = 7_140_001


def create_database_if_missing(url: str) -> bool:
    """Creates the database named in `url`, connecting to the server's `postgres` database."""
    parts = urlparse(url)
    name = parts.path.lstrip("/")
    admin = connect(urlunparse(parts._replace(path="/postgres")))
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return False
            try:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg2.errors.DuplicateDatabase:
                return False
    finally:
        admin.close()
    log.info("database_created", database=name)
    return True


def migrate(url: str) -> list[str]:
    """Applies the migrations not applied yet; returns their names.

    `url` names an administrator: migrations create the roles of the system and hand the
    schema to jobs_owner (0006_tenant_isolation.sql).
    """
    create_database_if_missing(url)
    applied_now = []
    with transaction(url) as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        cursor.execute("SELECT name, checksum FROM schema_migrations")
        done = dict(cursor.fetchall())
        for path in sorted(MIGRATIONS.glob("*.sql")):
            sql = path.read_text()
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if path.name in done:
                if done[path.name] != checksum:
                    raise MigrationChanged(path.name)
                continue
            cursor.execute(sql)
            cursor.execute("INSERT INTO schema_migrations (name, checksum) VALUES (%s, %s)", (path.name, checksum))
            applied_now.append(path.name)
            log.info("migration_applied", migration=path.name)
        if applied_now:
            cursor.execute("CALL jobs_assign_owner()")
    return applied_now
