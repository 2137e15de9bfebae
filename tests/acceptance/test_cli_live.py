"""The operator's live views against a real worker process: `jobctl show --follow` while the job
runs, and `jobctl workers` and `jobctl stats` while it is held at a known point."""

from __future__ import annotations

import json

from actors.broker import bind
from tests.acceptance.conftest import WITNESS
from tests.helpers import job_row, wait_for
from tests.support.cli import jobctl
from tests.support.live import Live
from tests.support.witness import release, witnessed_job


def test_an_operator_follows_a_job_a_real_worker_runs(workers, redis_broker, tenants):
    bind(redis_broker, [witnessed_job])
    worker = workers(modules=(WITNESS,))
    job_id = witnessed_job.send_with_options(job_owner={"user_id": tenants.acme.members[0]}).message_id
    # The database only: the follower needs no broker.
    live = Live(
        "show", "--operator", "--follow", job_id[:8], "--interval", "0.1", env={"REDIS_URL": "redis://127.0.0.1:1/0"}
    )
    try:
        live.wait_for_text(" started ", timeout=30)
        holder = wait_for(lambda: job_row(job_id)["worker_process"], what="the job's worker")

        # The job runs until released: these see it running, whatever the machine's speed.
        listed = jobctl("workers", "--json")
        assert listed.returncode == 0, listed.stderr
        row = next(w for w in json.loads(listed.stdout) if w["worker_id"] == holder)
        assert (row["state"], row["jobs"], row["stopped_at"]) == ("live", [job_id], None)
        assert str(row["pid"]) == holder.split(":")[1]
        table = jobctl("workers").stdout
        assert f"running {job_id[:8]}" in table
        stats = json.loads(jobctl("stats", "--json").stdout)
        queue = next(q for q in stats["queues"] if q["queue"] == "default")
        assert (queue["active"], queue["broker"]["unacked"]) == (1, 1)

        release(job_id)
        live.wait_for_text(" completed ", timeout=30)
        code, stderr = live.finish()
    finally:
        live.close()
    assert (code, stderr) == (0, "")
    assert worker.poll() is None
