"""The lease as the worker process sees it: its watchdog stops every running job before the
lease can run out, and ends the process when a job will not stop; the heartbeat and the
maintenance passes outlive any failure."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from middleware.lease import EXIT_LEASE_LOST, Lease, LeaseExpired
from tests.helpers import wait_for


@pytest.fixture
def guarded():
    """A lease of 0.6 s with a 0.2 s margin, and its watchdog running."""
    lease = Lease(window_s=0.6, margin_s=0.2)
    stop = threading.Event()
    watchdog = threading.Thread(target=lease.guard, args=(stop,), daemon=True)
    watchdog.start()
    yield lease
    stop.set()
    lease.wake()
    watchdog.join(timeout=5)


def run_watched(lease: Lease, outcome: dict) -> threading.Thread:
    """A job's thread: watched under the lease, it runs in small steps until interrupted."""

    def job() -> None:
        try:
            lease.watch("job-1")
            outcome["watched"] = True
            while True:
                time.sleep(0.005)
        except LeaseExpired:
            outcome["stopped_at"] = time.monotonic()
        finally:
            lease.unwatch(stopped="stopped_at" in outcome)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    return thread


def test_a_running_job_is_stopped_once_the_lease_is_not_live_and_not_before(guarded):
    guarded.renewed(time.monotonic())
    outcome: dict = {}
    thread = run_watched(guarded, outcome)
    wait_for(lambda: outcome.get("watched"), what="the job to run under the lease")
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert outcome["stopped_at"] >= guarded.stop_at(), "stopped only once the lease was no longer live"
    assert guarded.running() == 0


def test_renewals_keep_a_running_job_alive():
    lease = Lease(window_s=1.2, margin_s=0.3)
    stop = threading.Event()
    threading.Thread(target=lease.guard, args=(stop,), daemon=True).start()
    outcome: dict = {}
    lease.renewed(time.monotonic())
    thread = run_watched(lease, outcome)
    wait_for(lambda: outcome.get("watched"), what="the job to run under the lease")
    # Renewed every 0.1 s for longer than a whole lease: the job is never stopped.
    until = time.monotonic() + 1.5
    while time.monotonic() < until:
        last = time.monotonic()
        lease.renewed(last)
        assert "stopped_at" not in outcome
        threading.Event().wait(0.1)  # the heartbeat's own period, not a wait for an outcome
    lease.renewed(-1.0)  # an older heartbeat never shortens the lease
    # No more renewals: stopped once the last one's lease is no longer live.
    thread.join(timeout=10)
    assert outcome["stopped_at"] >= last + lease.window_s - lease.margin_s
    stop.set()
    lease.wake()


def test_no_job_starts_under_a_lease_that_is_not_live():
    lease = Lease(window_s=0.6, margin_s=0.2)
    with pytest.raises(LeaseExpired, match="is not live"):
        lease.watch("job-1")
    lease.renewed(time.monotonic())
    lease.watch("job-1")
    lease.unwatch(stopped=False)
    assert lease.running() == 0


def test_a_job_waiting_for_a_lease_gives_up_when_the_worker_stops():
    lease = Lease(window_s=0.6, margin_s=0.2)
    answer: list[bool] = []
    waiting = threading.Thread(target=lambda: answer.append(lease.wait_live(poll_s=0.05)))
    waiting.start()
    lease.close()
    waiting.join(timeout=5)
    assert answer == [False]
    lease.renewed(time.monotonic())
    assert lease.wait_live() is True, "with a live lease, a stopping worker still starts what it took"


def test_a_job_that_will_not_stop_ends_its_process_before_the_lease_runs_out():
    # A job blocked in one system call can't be interrupted: the watchdog must end the process
    # after it tried to stop the job and before the lease runs out.
    script = textwrap.dedent(
        """
        import threading, time
        from middleware.lease import Lease
        lease = Lease(window_s=2.0, margin_s=0.8)
        lease.renewed(time.monotonic())
        threading.Thread(target=lease.guard, args=(threading.Event(),), daemon=True).start()
        lease.watch("job-1")
        time.sleep(30)
        print("the job outlived its lease", flush=True)
        """
    )
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    output = ended.stdout + ended.stderr
    assert ended.returncode == EXIT_LEASE_LOST, output
    assert "outlived" not in output
    assert "job_stopping" in output, "it tried to stop the job first"
    (exiting,) = [line for line in output.splitlines() if "worker_exiting" in line]
    lease_left = float(re.search(r"lease_left_s=([-0-9.]+)", exiting).group(1))
    assert 0 < lease_left <= 0.4, f"ended with {lease_left} s of its lease left (margin 0.8: at most half)"
