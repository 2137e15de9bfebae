"""Migrations apply once each, in order; an applied one that changed is refused."""

from __future__ import annotations

import psycopg2
import pytest

import db
from db import schema as migrations
from tests.conftest import ADMIN_URL


@pytest.fixture
def scratch_url(settings):
    url = settings.admin_database_url + "_scratch"
    yield url
    admin = psycopg2.connect(ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    admin.close()


def test_migrate_creates_the_database_and_is_harmless_twice(scratch_url):
    names = sorted(p.name for p in migrations.MIGRATIONS.glob("*.sql"))
    assert db.migrate(scratch_url) == names
    assert db.migrate(scratch_url) == []


def test_changed_migration_is_refused(scratch_url, tmp_path, monkeypatch):
    for path in migrations.MIGRATIONS.glob("*.sql"):
        (tmp_path / path.name).write_text(path.read_text())
    monkeypatch.setattr(migrations, "MIGRATIONS", tmp_path)
    db.migrate(scratch_url)
    first = sorted(tmp_path.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(migrations.MigrationChanged, match=f"migration {first.name} changed after it was applied"):
        db.migrate(scratch_url)
