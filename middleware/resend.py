"""A job's message sent again: the same job, with the options it was sent with and its due time."""

from __future__ import annotations

from dramatiq import Broker, Message
from dramatiq.common import q_name

from db import transitions

from .options import OWNER, RECORDED, durable


def again(message: Message) -> Message:
    """A copy of a delivered message to publish again: its id, arguments and the options of the
    job, none of the options of its delivery."""
    return Message(
        queue_name=q_name(message.queue_name),
        actor_name=message.actor_name,
        args=tuple(message.args),
        kwargs=dict(message.kwargs),
        options={**durable(message.options), RECORDED: True, OWNER: message.options.get(OWNER)},
        message_id=message.message_id,
        message_timestamp=message.message_timestamp,
    )


def from_row(job: transitions.Reaped) -> Message:
    """The job's message again, rebuilt from its row: its id, arguments and options."""
    return Message(
        queue_name=job.queue,
        actor_name=job.job_type,
        args=tuple(job.args),
        kwargs=job.kwargs,
        options={**job.options, RECORDED: True, OWNER: {"user_id": job.user_id, "course_id": job.course_id}},
        message_id=job.job_id,
    )


def publish(broker: Broker, job: transitions.Reaped) -> Message:
    """Publishes the job's message again, due when the job is due (a delay, a retry's backoff)."""
    return broker.enqueue(from_row(job), delay=job.due_in_ms or None)
