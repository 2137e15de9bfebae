"""A job sent again (by reconcile or the reaper) is the same job: the options it was sent with,
its retries so far, and its due time."""

from __future__ import annotations

from dramatiq import Message

from middleware.reaper import recover_lost_jobs
from middleware.reconcile import reconcile
from tests.conftest import running
from tests.helpers import alive, expire_lease, job_row, wait_for

OPTIONS = {"max_retries": 7, "time_limit": 12_345, "min_backoff": 60_000, "max_backoff": 60_000}


def messages_in(broker, queue: str) -> list[Message]:
    return [Message.decode(data) for _, data in broker.client.hscan_iter(f"{broker.namespace}:{queue}.msgs")]


def test_a_delayed_job_lost_with_redis_is_sent_again_due_when_it_was_due(redis_broker, tenants):
    from actors import test_job

    job_id = test_job.send_with_options(delay=3_600_000, job_owner={"user_id": tenants.acme.members[0]}, **OPTIONS)
    job_id = job_id.message_id
    assert job_row(job_id)["options"] == OPTIONS
    due = job_row(job_id)["scheduled_for"]
    redis_broker.flush_all()  # Redis restarted without persistence

    assert [job.job_id for job in reconcile(redis_broker, grace_s=0)] == [job_id]
    (again,) = messages_in(redis_broker, "default.DQ")
    assert again.message_id == job_id
    assert {key: again.options[key] for key in OPTIONS} == OPTIONS
    assert abs(again.options["eta"] / 1000 - due.timestamp()) < 2, "due in an hour, as sent, not at once"
    assert job_row(job_id)["status"] == "pending"


def test_a_retrying_job_keeps_its_backoff_and_its_count_of_retries(redis_broker, tenants):
    from actors import test_job

    message = test_job.send_with_options(
        kwargs={"fail_attempts": 1}, job_owner={"user_id": tenants.acme.members[0]}, **OPTIONS
    )
    with running(redis_broker, threads=1):
        row = wait_for(
            lambda: (row := job_row(message.message_id))["status"] == "retrying" and row["scheduled_for"] and row,
            what="the first attempt to fail and its retry to be scheduled",
        )
    assert row["options"]["retries"] == 1
    redis_broker.flush_all()

    assert [job.job_id for job in reconcile(redis_broker, grace_s=0)] == [message.message_id]
    (again,) = messages_in(redis_broker, "default.DQ")
    assert again.options["retries"] == 1 and again.options["max_retries"] == 7
    assert abs(again.options["eta"] / 1000 - row["scheduled_for"].timestamp()) < 2, "its backoff is kept"


def test_a_job_taken_back_from_a_lost_worker_is_sent_again_with_its_options(redis_broker, tenants):
    from actors import test_job

    message = test_job.send_with_options(job_owner={"user_id": tenants.acme.members[0]}, **OPTIONS)
    redis_broker.flush_all()  # the lost worker had taken the message; Redis lost its copy too
    alive("ghost:1:x")
    from db import transitions

    assert transitions.mark_active(message.message_id, "ghost:1:x/Thread-1").applied
    expire_lease("ghost:1:x")

    assert [job.job_id for job in recover_lost_jobs(redis_broker, window_s=0)] == [message.message_id]
    (again,) = messages_in(redis_broker, "default")
    assert {key: again.options[key] for key in OPTIONS} == OPTIONS
