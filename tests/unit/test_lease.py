"""The lease as the worker process sees it: its watchdog stops every running job before the
lease can run out, and ends the process when a job will not stop, even one that holds the GIL."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading

import pytest

from middleware.lease import EXIT_LEASE_LOST, Lease, LeaseExpired, clock
from tests.helpers import wait_for


@pytest.fixture
def guard():
    """Runs the watchdog of a lease; stops it after the test."""
    stops = []

    def start(lease: Lease) -> Lease:
        stop = threading.Event()
        threading.Thread(target=lease.guard, args=(stop,), daemon=True).start()
        stops.append((stop, lease))
        return lease

    yield start
    for stop, lease in stops:
        stop.set()
        lease.wake()
        lease.disarm()


def run_watched(lease: Lease, outcome: dict) -> threading.Thread:
    """A job's thread: watched under the lease, it runs in small steps until interrupted."""

    def job() -> None:
        try:
            lease.watch("job-1")
            outcome["watched"] = True
            while True:
                threading.Event().wait(0.005)
        except LeaseExpired:
            outcome["stopped_at"] = clock()
        finally:
            lease.unwatch(stopped="stopped_at" in outcome)

    thread = threading.Thread(target=job, daemon=True)
    thread.start()
    return thread


def test_a_running_job_is_stopped_once_the_lease_is_not_live_and_not_before(guard):
    lease = guard(Lease(window_s=2.0, margin_s=0.8))
    lease.renewed(clock())
    outcome: dict = {}
    thread = run_watched(lease, outcome)
    wait_for(lambda: outcome.get("watched"), what="the job to run under the lease")
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert outcome["stopped_at"] >= lease.stop_at(), "stopped only once the lease was no longer live"
    assert lease.running() == 0


def test_a_renewal_moves_the_moment_a_job_is_stopped(guard):
    lease = guard(Lease(window_s=2.0, margin_s=0.8))
    first = clock()
    lease.renewed(first)
    outcome: dict = {}
    thread = run_watched(lease, outcome)
    wait_for(lambda: outcome.get("watched"), what="the job to run under the lease")
    wait_for(lambda: clock() > first + 0.6, what="half of the first lease to pass")
    renewed = clock()
    lease.renewed(renewed)
    lease.renewed(first)  # an older heartbeat confirmed late never shortens the lease
    thread.join(timeout=10)
    # The first heartbeat's lease stopped being live at first + 1.2, at least 0.6 s earlier.
    assert outcome["stopped_at"] >= renewed + 1.2, "stopped once the renewed lease was no longer live"


def test_no_job_starts_under_a_lease_that_is_not_live():
    lease = Lease(window_s=2.0, margin_s=0.8)
    with pytest.raises(LeaseExpired, match="is not live"):
        lease.watch("job-1")
    lease.renewed(clock())
    lease.watch("job-1")
    lease.unwatch(stopped=False)
    assert lease.running() == 0
    lease.disarm()


def test_a_job_waiting_for_a_lease_gives_up_when_the_worker_stops():
    lease = Lease(window_s=2.0, margin_s=0.8)
    answer: list[bool] = []
    waiting = threading.Thread(target=lambda: answer.append(lease.wait_live(poll_s=0.05)))
    waiting.start()
    lease.close()
    waiting.join(timeout=5)
    assert answer == [False]
    lease.renewed(clock())
    assert lease.wait_live() is True, "with a live lease, a stopping worker still starts what it took"
    lease.open()
    assert not lease.live(), "a new boot holds no lease until its own first heartbeat"


def run_lease_script(body: str) -> tuple[subprocess.CompletedProcess, str]:
    script = textwrap.dedent(
        """
        import threading
        from middleware.lease import Lease, clock
        lease = Lease(window_s=2.0, margin_s=0.8)
        lease.renewed(clock())
        threading.Thread(target=lease.guard, args=(threading.Event(),), daemon=True).start()
        lease.watch("job-1")
        """
    ) + textwrap.dedent(body)
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    return ended, ended.stdout + ended.stderr


def test_a_job_that_will_not_stop_ends_its_process_before_the_lease_runs_out():
    # Blocked in one system call, the job can't be interrupted: the watchdog ends the process
    # after it tried to stop the job, and before the lease runs out.
    ended, output = run_lease_script(
        """
        from tests.support.witness import blocked_in_a_system_call
        blocked_in_a_system_call(30)
        print("the job outlived its lease", flush=True)
        """
    )
    assert ended.returncode == EXIT_LEASE_LOST, output
    assert "outlived" not in output
    assert "job_interrupted_for_lease" in output, "it tried to stop the job first"
    (exiting,) = [line for line in output.splitlines() if "worker_exited" in line]
    lease_left = float(re.search(r"lease_left_s=([-0-9.]+)", exiting).group(1))
    assert 0 < lease_left <= 0.4, f"ended with {lease_left} s of its lease left (margin 0.8: at most half)"


def test_a_job_holding_the_gil_is_ended_by_the_backstop_before_the_lease_runs_out():
    # sum() over a range runs in C without ever giving up the GIL: the watchdog (a Python
    # thread) never runs, and faulthandler's C thread ends the process instead, at
    # window - margin/4 = 1.8 s after the heartbeat: its "Timeout (0:00:01.x)" says so, within
    # the lease of 2 s.
    ended, output = run_lease_script(
        """
        started = clock()
        sum(range(10**13))
        print("the job outlived its lease", flush=True)
        """
    )
    assert ended.returncode == 1, output
    assert "outlived" not in output
    assert "Timeout (0:00:01" in output, "faulthandler's timer fired, 1.8 s after the heartbeat"
    assert "worker_exited" not in output, "the Python watchdog never got to run"


def test_a_worker_idle_when_its_lease_lapses_lives_on():
    # A job ran and ended under the lease (the backstop armed for it stays armed until the next
    # renewal); then the heartbeats stop: with nothing running, nothing may end the process.
    ended, output = run_lease_script(
        """
        lease.unwatch(stopped=False)
        # Until past the backstop's deadline (window - margin/4 = 1.8 s) and the end of the lease.
        end = lease.stop_at() + lease.margin_s
        while clock() < end:
            threading.Event().wait(end - clock())
        print("alive after the lease", flush=True)
        """
    )
    assert ended.returncode == 0, output
    assert "alive after the lease" in output


def test_the_lease_counted_is_the_one_given_and_its_end_never_moves_earlier():
    lease = Lease(window_s=30.0, margin_s=10.0)
    lease.renewed(100.0, given_s=20.0)  # the database gave less than was asked
    assert (lease.ends_at(), lease.stop_at(), lease.kill_at()) == (120.0, 110.0, 115.0)
    lease.renewed(101.0, given_s=5.0)  # nor does the database move a lease's end earlier
    assert lease.ends_at() == 120.0
    lease.renewed(120.0)  # what was asked, when the heartbeat does not say
    assert lease.ends_at() == 150.0
