"""Organizations, users and courses to try the system with; creating them twice changes nothing."""

from __future__ import annotations

from typing import Any

from peewee import EXCLUDED

from .connection import database
from .models import Course, Organization, User

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


def _upsert(model: Any, conflict: list[Any], **values: Any) -> Any:
    # DO UPDATE (not DO NOTHING) so that RETURNING gives the id of a row that already existed.
    first = conflict[0]
    return (
        model.insert(**values)
        .on_conflict(conflict_target=conflict, update={first: getattr(EXCLUDED, first.column_name)})
        .returning(model.id)
        .tuples()
        .execute()
    )[0][0]


def seed() -> dict[str, Any]:
    """Creates what is missing and returns every id, by organization."""
    result: dict[str, Any] = {"organizations": []}
    with database.atomic():
        for org_name, spec in FIXTURES.items():
            org_id = _upsert(Organization, [Organization.name], name=org_name)
            users = []
            for name, local, role in spec["users"]:
                email = f"{local}@{spec['domain']}"
                user_id = _upsert(User, [User.email], email=email, name=name, role=role, organization=org_id)
                users.append({"id": str(user_id), "email": email, "name": name, "role": role})
            admin = next(u for u in users if u["role"] == "admin")
            course_id = _upsert(
                Course,
                [Course.organization, Course.title],
                organization=org_id,
                title=spec["course"],
                owner=admin["id"],
            )
            result["organizations"].append(
                {
                    "id": str(org_id),
                    "name": org_name,
                    "users": users,
                    "courses": [{"id": str(course_id), "title": spec["course"]}],
                }
            )
    return result
