"""Initializes a course: creates its starting modules and marks it initialized."""

from __future__ import annotations

from uuid import UUID

import dramatiq

from db import courses
from db.connection import database
from db.models import CourseModule
from middleware import current_job, report_progress

MODULES = ("Introduction", "Foundations", "Guided practice", "Project", "Assessment")


class CourseMissing(Exception):
    """The course was deleted after the job was sent; retrying would not bring it back."""


def validate(course_id: str) -> None:
    try:
        UUID(course_id)
    except ValueError:
        raise ValueError(f"course_id must be a UUID, not {course_id!r}") from None


@dramatiq.actor(validate=validate, throws=(CourseMissing,))
def initialize(course_id: str) -> dict:
    """Creates a course's starting modules and marks it initialized (once, however often it runs)."""
    # One transaction: a retry after a failure half-way starts from a clean course, and a
    # redelivery after success finds it initialized and does nothing.
    # The database writes the course only for this job, running now, of this course.
    job = current_job()
    course = courses.Initialization(job.job_id, job.attempt, course_id)
    with database.atomic():
        status = course.lock()
        if status is None:
            raise CourseMissing(f"course {course_id} does not exist")
        if status == "initialized":
            count = CourseModule.select().where(CourseModule.course == course_id).count()
            return {"course_id": course_id, "modules": count, "already_initialized": True}
        for position, title in enumerate(MODULES, start=1):
            course.add_module(position, title)
            report_progress(position * 100 // (len(MODULES) + 1), f"created module {position}: {title}")
        course.mark_initialized()
    return {"course_id": course_id, "modules": len(MODULES), "already_initialized": False}
