"""Idempotent sends: a key names one job per user, whatever became of it."""

from __future__ import annotations

import threading

import psycopg2
import pytest

from jobs import service
from jobs.errors import InvalidArguments
from tests.helpers import count, events, job_row, statuses, wait_for, waiting_on_locks


def queued(broker) -> int:
    return broker.queues["default"].qsize()


def test_a_second_send_with_the_same_key_is_the_first_job(stub_broker, tenants):
    user = tenants.acme.members[0]
    first = service.send_job("test_job", user_id=user, args={"delay_ms": 1}, key="order-17")
    again = service.send_job("test_job", user_id=user, args={"delay_ms": 2}, key="order-17")

    assert again == first
    assert count("job_status") == 1 and queued(stub_broker) == 1, "the second send wrote and published nothing"
    assert job_row(first)["idempotency_key"] == "order-17"
    assert [e[0] for e in events(first)] == ["enqueued"]


def test_keys_are_per_user(stub_broker, tenants):
    alice, bob = tenants.acme.members
    assert service.send_job("test_job", user_id=alice, key="k") != service.send_job("test_job", user_id=bob, key="k")
    assert queued(stub_broker) == 2


def test_the_key_stays_taken_after_the_job_ends(stub_broker, stub_worker, tenants):
    user = tenants.globex.members[0]
    first = service.send_job("test_job", user_id=user, args={"should_fail": True}, key="once")
    stub_broker.join("default", fail_fast=False)
    stub_worker.join()
    assert statuses([first]) == {first: "failed"}

    assert service.send_job("test_job", user_id=user, key="once") == first
    assert count("job_status") == 1


def test_a_concurrent_send_with_the_same_key_waits_for_the_first_and_returns_it(stub_broker, tenants, settings):
    user = tenants.acme.members[1]
    # Another sender's send, held between its insert and its commit.
    other = psycopg2.connect(settings.admin_database_url)
    try:
        with other.cursor() as cursor:
            cursor.execute(
                "SELECT job_id FROM job_send(gen_random_uuid(), 'test_job', 'default', %s, NULL, '[]', '{}', '{}',"
                " 4, NULL, 'race', NULL, NULL)",
                (user,),
            )
            (held,) = cursor.fetchone()
        answer = {}
        sender = threading.Thread(
            target=lambda: answer.update(id=service.send_job("test_job", user_id=user, key="race"))
        )
        sender.start()
        wait_for(waiting_on_locks(1, "job_send"), what="the second send to wait for the first one's commit")
        other.commit()
        sender.join(timeout=30)
    finally:
        other.close()
    assert answer == {"id": str(held)}
    assert count("job_status") == 1 and queued(stub_broker) == 0


def test_a_batch_takes_one_key_per_job(stub_broker, tenants):
    user = tenants.acme.members[0]
    earlier = service.send_job("test_job", user_id=user, key="b")
    ids = service.send_jobs("test_job", [{}, {}, {}], user_id=user, keys=["a", "b", None])

    assert ids[1] == earlier and len({ids[0], ids[1], ids[2]}) == 3
    assert queued(stub_broker) == 3, "the earlier job once, and the two new ones"
    assert {job_row(i)["idempotency_key"] for i in ids} == {"a", "b", None}
    # The whole batch again: nothing new.
    assert service.send_jobs("test_job", [{}, {}], user_id=user, keys=["a", "b"]) == ids[:2]
    assert count("job_status") == 3


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (["x", "x"], "the key 'x' is given to two jobs of the batch"),
        (["x"], "1 keys were given for 2 jobs"),
        (["", None], "a key must be a string of 1 to 200 characters"),
        (["k" * 201, None], "a key must be a string of 1 to 200 characters"),
    ],
)
def test_bad_keys_are_refused_and_nothing_is_sent(stub_broker, tenants, keys, message):
    with pytest.raises(InvalidArguments, match=message):
        service.send_jobs("test_job", [{}, {}], user_id=tenants.acme.admin, keys=keys)
    assert count("job_status") == 0 and queued(stub_broker) == 0


@pytest.mark.parametrize("key", [5, ["a"], "nul\x00"])
def test_keys_that_are_not_text_are_refused(stub_broker, tenants, key):
    with pytest.raises(InvalidArguments, match="key"):
        service.send_job("test_job", user_id=tenants.acme.admin, key=key)
    with pytest.raises(InvalidArguments, match="key"):
        service.send_jobs("test_job", [{}, {}], user_id=tenants.acme.admin, keys=[key, None])
    assert count("job_status") == 0 and queued(stub_broker) == 0


def test_a_key_given_to_a_job_of_another_type_is_refused(stub_broker, tenants):
    from jobs.errors import KeyTaken

    user = tenants.acme.members[0]
    first = service.send_job("test_job", user_id=user, key="k")
    with pytest.raises(KeyTaken, match=f"the key 'k' was given to job {first}, of type test_job"):
        service.send_job("initialize", user_id=user, args={"course_id": tenants.acme.course}, key="k")
    assert count("job_status") == 1 and queued(stub_broker) == 1


def test_a_delayed_job_is_recorded_in_its_actors_queue(stub_broker, tenants):
    job_id = service.send_job("test_job", user_id=tenants.acme.admin, delay_ms=60_000)
    assert job_row(job_id)["queue"] == "default"
