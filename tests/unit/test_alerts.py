"""The example alerting rules (ops/alerts.yml): valid for Prometheus (promtool, which
scripts/bootstrap.sh --tests installs from Debian's prometheus package), firing as their test says,
and naming only series that /metrics serves; and what /metrics serves passes promtool's lint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from jobs import service
from middleware.report import send_report
from tests.support.scrape import scrape

OPS = Path(__file__).resolve().parents[2] / "ops"


def promtool() -> str:
    found = shutil.which("promtool") or str(Path(sys.executable).with_name("promtool"))
    assert Path(found).exists(), "promtool is missing: scripts/bootstrap.sh --tests installs it"
    return found


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, input=stdin, timeout=60, cwd=OPS)


def test_promtool_checks_the_rules_and_their_tests():
    checked = run("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def served(stub_broker, stub_worker, tenants, settings) -> set[str]:
    """Every sample name a scrape serves once jobs ran and a worker reported."""
    service.send_job("test_job", user_id=tenants.acme.members[0])
    stub_broker.join("default")
    stub_worker.join()
    assert send_report(stub_broker)
    return {name for name, _ in scrape(settings).samples}


def test_every_rule_names_only_series_that_metrics_serves(stub_broker, stub_worker, tenants, settings):
    names = served(stub_broker, stub_worker, tenants, settings)
    rules = [rule for group in yaml.safe_load((OPS / "alerts.yml").read_text())["groups"] for rule in group["rules"]]
    assert len(rules) >= 5
    for rule in rules:
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        used = set(re.findall(r"\bjobs_[a-z_]+\b", rule["expr"]))
        assert used, rule["alert"]
        assert used <= names, (rule["alert"], used - names)
    # Each alert the issue asks for is there.
    assert {
        "JobsQueueBackingUp",
        "JobsOldestWaitingTooOld",
        "JobsNoLiveWorker",
        "JobsFailuring",
        "JobsWorkerLost",
    } <= {rule["alert"] for rule in rules}


def test_promtool_finds_nothing_to_say_of_what_metrics_serves(stub_broker, stub_worker, tenants, settings):
    served(stub_broker, stub_worker, tenants, settings)
    linted = run("check", "metrics", stdin=scrape(settings).text)
    assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout + linted.stderr
