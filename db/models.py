"""Peewee models of the tables, for reads and for the fixtures; transitions live in db.transitions."""

from __future__ import annotations

import peewee

from .connection import database


class Base(peewee.Model):
    class Meta:
        database = database


class Organization(Base):
    id = peewee.UUIDField(primary_key=True)
    name = peewee.TextField(unique=True)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "organizations"


class User(Base):
    id = peewee.UUIDField(primary_key=True)
    organization = peewee.ForeignKeyField(Organization, column_name="organization_id")
    email = peewee.TextField(unique=True)
    name = peewee.TextField()
    role = peewee.TextField()
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "users"


class Course(Base):
    id = peewee.UUIDField(primary_key=True)
    organization = peewee.ForeignKeyField(Organization, column_name="organization_id")
    owner = peewee.ForeignKeyField(User, column_name="owner_id")
    title = peewee.TextField()
    status = peewee.TextField()
    initialized_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "courses"


class CourseModule(Base):
    id = peewee.BigAutoField()
    course = peewee.ForeignKeyField(Course, column_name="course_id")
    position = peewee.IntegerField()
    title = peewee.TextField()
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "course_modules"


class JobStatus(Base):
    job_id = peewee.UUIDField(primary_key=True)
    job_type = peewee.TextField()
    queue = peewee.TextField()
    organization_id = peewee.UUIDField()
    user_id = peewee.UUIDField()
    course_id = peewee.UUIDField(null=True)
    status = peewee.TextField()
    attempts = peewee.IntegerField()
    max_attempts = peewee.IntegerField()
    progress = peewee.SmallIntegerField()
    progress_message = peewee.TextField(null=True)
    args = peewee.JSONField()
    kwargs = peewee.JSONField()
    options = peewee.JSONField()
    result = peewee.JSONField(null=True)
    error_type = peewee.TextField(null=True)
    error_message = peewee.TextField(null=True)
    error_stack = peewee.TextField(null=True)
    scheduled_for = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField()
    started_at = peewee.DateTimeField(null=True)
    completed_at = peewee.DateTimeField(null=True)
    failed_at = peewee.DateTimeField(null=True)
    cancelled_at = peewee.DateTimeField(null=True)
    cancelled_by = peewee.UUIDField(null=True)
    cancel_reason = peewee.TextField(null=True)
    updated_at = peewee.DateTimeField()
    worker_id = peewee.TextField(null=True)
    lost_deliveries = peewee.IntegerField()
    worker_process = peewee.TextField(null=True)
    idempotency_key = peewee.TextField(null=True)
    retry_of = peewee.UUIDField(null=True)

    class Meta:
        table_name = "job_status"


class JobEvent(Base):
    id = peewee.BigAutoField()
    job_id = peewee.UUIDField()
    event = peewee.TextField()
    from_status = peewee.TextField(null=True)
    to_status = peewee.TextField(null=True)
    attempt = peewee.IntegerField()
    actor_user_id = peewee.UUIDField(null=True)
    worker_id = peewee.TextField(null=True)
    details = peewee.JSONField()
    created_at = peewee.DateTimeField()

    class Meta:
        table_name = "job_events"
