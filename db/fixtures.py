"""Organizations, users and courses to try the system with; creating them twice changes nothing."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from .connection import transaction

FIXTURES = {
    "Acme Learning": {
        "domain": "acme.example",
        "users": [
            ("Ada Admin", "admin", "admin"),
            ("Alice Member", "alice", "member"),
            ("Bob Member", "bob", "member"),
        ],
        "course": "Acme Onboarding",
    },
    "Globex Academy": {
        "domain": "globex.example",
        "users": [
            ("Gus Admin", "admin", "admin"),
            ("Carol Member", "carol", "member"),
            ("Dave Member", "dave", "member"),
        ],
        "course": "Globex Safety Basics",
    },
}


def _upsert(cursor: Any, table: str, conflict: str, values: dict[str, Any]) -> str:
    # DO UPDATE (not DO NOTHING) so that RETURNING gives the id of a row that already existed.
    # Names as identifiers (psycopg2.sql), values as parameters: no query is built by formatting.
    keys = [sql.Identifier(name.strip()) for name in conflict.split(",")]
    statement = sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT ({keys}) DO UPDATE SET {first} = EXCLUDED.{first}"
        " RETURNING id"
    ).format(
        table=sql.Identifier(table),
        columns=sql.SQL(", ").join(map(sql.Identifier, values)),
        values=sql.SQL(", ").join(sql.Placeholder() * len(values)),
        keys=sql.SQL(", ").join(keys),
        first=keys[0],
    )
    cursor.execute(statement, list(values.values()))
    return str(cursor.fetchone()[0])


def seed(admin_url: str) -> dict[str, Any]:
    """Creates what is missing and returns every id, by organization.

    Tenants are not the workers' to create: this connects as the administrator (the role that
    migrates), whom row-level security does not restrict.
    """
    result: dict[str, Any] = {"organizations": []}
    with transaction(admin_url) as cursor:
        for org_name, spec in FIXTURES.items():
            org_id = _upsert(cursor, "organizations", "name", {"name": org_name})
            users = []
            for name, local, role in spec["users"]:
                email = f"{local}@{spec['domain']}"
                user_id = _upsert(
                    cursor,
                    "users",
                    "email",
                    {"email": email, "name": name, "role": role, "organization_id": org_id},
                )
                users.append({"id": user_id, "email": email, "name": name, "role": role})
            admin = next(u for u in users if u["role"] == "admin")
            course_id = _upsert(
                cursor,
                "courses",
                "organization_id, title",
                {"organization_id": org_id, "title": spec["course"], "owner_id": admin["id"]},
            )
            result["organizations"].append(
                {
                    "id": org_id,
                    "name": org_name,
                    "users": users,
                    "courses": [{"id": course_id, "title": spec["course"]}],
                }
            )
    return result
