"""Names of the message options this system adds; they travel with the message through Redis."""

#: {"user_id": ..., "course_id": ...}: who the job is for, set by the sender.
OWNER = "job_owner"
#: True once the pending row is committed: later enqueues (a delay coming due, a retry) are
#: the same job again, not a new one.
RECORDED = "job_recorded"
#: The attempt number the database gave this delivery when it started it.
ATTEMPT = "job_attempt"
#: Set (and removed again) by a batch send, whose pending rows are already committed: the
#: enqueue that publishes the message has nothing to record.
RECORDED_IN_BATCH = "job_recorded_in_batch"
