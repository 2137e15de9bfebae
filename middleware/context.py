"""What an actor may ask about the job it runs."""

from __future__ import annotations

from dataclasses import dataclass

from dramatiq.middleware import CurrentMessage

from .options import ATTEMPT


class NotInAJob(RuntimeError):
    def __init__(self) -> None:
        super().__init__("this can only be called from inside a running job")


@dataclass(frozen=True)
class JobContext:
    job_id: str
    job_type: str
    attempt: int


def current_job() -> JobContext:
    message = CurrentMessage.get_current_message()
    if message is None or ATTEMPT not in message.options:
        raise NotInAJob()
    return JobContext(message.message_id, message.actor_name, message.options[ATTEMPT])
