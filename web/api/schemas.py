"""What the API's requests hold: checked here for their shape and sizes (pydantic, strict: no
string taken for a number), and by the service for what they mean (a job type, arguments the
job can take, a delay within JOBS_MAX_DELAY_MS, a key of 1 to 200 characters)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from db.queries import STATUSES

#: The most jobs of one batch: as many as `jobctl send --count` writes in one round trip.
MAX_BATCH = 1_000
#: Longer than any job type's name, user's email or course id.
MAX_NAME = 320

Status = Literal[STATUSES]  # type: ignore[valid-type]
JobType = Annotated[str, Field(min_length=1, max_length=MAX_NAME, description="a job type, e.g. test_job")]
Arguments = dict[str, Any]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SendOne(_Strict):
    """One job."""

    type: JobType
    args: Arguments | None = Field(None, description="the job's arguments by name")
    delay_ms: int | None = Field(None, description="run it this many milliseconds from now")
    key: str | None = Field(
        None, description="idempotency key (1 to 200 characters): a second send with it returns the first job"
    )


class SendBatch(_Strict):
    """Many jobs of one type, all or none: `jobs` holds each job's arguments."""

    type: JobType
    jobs: list[Arguments | None] = Field(min_length=1, max_length=MAX_BATCH)
    keys: list[str | None] | None = Field(None, description="one idempotency key (or null) per job")
    delay_ms: int | None = None


def _shape(body: Any) -> str:
    return "batch" if isinstance(body, dict) and "jobs" in body else "one"


SendRequest = Annotated[
    Union[Annotated[SendOne, Tag("one")], Annotated[SendBatch, Tag("batch")]],  # noqa: UP007 - pydantic's tagged union
    Discriminator(_shape),
]


class CancelRequest(_Strict):
    reason: str | None = Field(None, description="why: recorded with the cancellation")


class Sent(BaseModel):
    job_ids: list[str]


class Cancelled(BaseModel):
    job_id: str
    outcome: Literal["cancelled", "already_cancelled"]
    previous: str
    interrupting: bool
    abort_error: str | None = None


class Retried(BaseModel):
    job_id: str
    retry_of: str
    outcome: Literal["retried", "already_retried"]
