"""Names of the message options this system adds, and which options belong to the job itself."""

#: {"user_id": ..., "course_id": ...}: who the job is for, set by the sender.
OWNER = "job_owner"
#: True once the pending row is committed: later enqueues (a delay coming due, a retry) are
#: the same job again, not a new one.
RECORDED = "job_recorded"
#: The attempt number the database gave this delivery when it started it.
ATTEMPT = "job_attempt"
#: When this delivery's start was recorded, on the worker's monotonic clock (a job's duration).
STARTED = "job_started_clock"
#: When the job's code returned, on the lease's clock: the first after-hook (the lease keeper's)
#: reads it, before the others run, so that a refused end records when the execution really ended.
ENDED = "job_ended_clock"
#: Set (and removed again, before the message is encoded) by a sender that committed the
#: pending row itself (a batch, a retry): the enqueue that publishes the message records nothing.
PUBLISH_ONLY = "job_publish_only"

#: Options that belong to one enqueue or one delivery, not to the job: the broker's own id and
#: due time of this copy, Retries' traceback (large, and user data), and ours above.
_PER_COPY = {"redis_message_id", "eta", "traceback", RECORDED, PUBLISH_ONLY, ATTEMPT, STARTED, ENDED, OWNER}


def durable(options: dict) -> dict:
    """The options of a message that make the job what it is (retries so far, max_retries,
    time_limit, callbacks, ...): kept in its row, and given to every copy sent again."""
    return {key: value for key, value in options.items() if key not in _PER_COPY}
