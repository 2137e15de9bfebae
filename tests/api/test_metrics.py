"""GET /metrics on the real server: for operators and the metrics token only, in Prometheus'
text format, moving as jobs are sent."""

from __future__ import annotations

from jobs import service
from tests.api.conftest import bearer, operator_token, problem, user_token
from tests.support.scrape import Scrape
from tests.support.server import METRICS_TOKEN


def test_a_scraper_reads_metrics_with_the_metrics_token(api, tenants):
    before = api.get("/metrics", headers=bearer(METRICS_TOKEN))
    assert before.status_code == 200, before.text
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    service.send_job("test_job", user_id=tenants.acme.members[0])
    after = Scrape(api.get("/metrics", headers=bearer(METRICS_TOKEN)).text)
    assert (
        after("jobs_sent_total", job_type="test_job") == Scrape(before.text)("jobs_sent_total", job_type="test_job") + 1
    )
    assert after("jobs_waiting", job_type="test_job", queue="default", status="pending") >= 1


def test_an_operator_reads_metrics_with_an_operators_token(api):
    response = api.get("/metrics", headers=bearer(operator_token()))
    assert response.status_code == 200, response.text
    assert "# TYPE jobs_finished_total counter" in response.text


def test_anyone_else_is_refused(api, tenants):
    assert "Bearer" in problem(api.get("/metrics"), 401)
    assert "only operators" in problem(api.get("/metrics", headers=bearer(user_token(tenants.acme.admin))), 403)
    # Another secret of the same length is no token at all.
    forged = "x" * len(METRICS_TOKEN)
    problem(api.get("/metrics", headers=bearer(forged)), 401)
    problem(api.get("/metrics", headers={"Authorization": f"Basic {METRICS_TOKEN}"}), 401)
