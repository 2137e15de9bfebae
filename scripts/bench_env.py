"""The servers a benchmark runs against: the configured ones, with a database and a Redis
namespace of the benchmark's own, so that it never writes the system's data."""

from __future__ import annotations

from urllib.parse import urlparse, urlunparse

from middleware.settings import Settings


def with_database(url: str, name: str) -> str:
    """`url`, naming the database `name` instead."""
    return urlunparse(urlparse(url)._replace(path="/" + name))


def own_servers(suffix: str, namespace: str) -> dict[str, str]:
    """DATABASE_URL, WORKER_DATABASE_URL and ADMIN_DATABASE_URL naming the configured database
    with `suffix` added to its name, REDIS_URL, and JOBS_NAMESPACE `namespace`."""
    settings = Settings.from_env()

    def renamed(url: str) -> str:
        return with_database(url, urlparse(url).path.strip("/") + suffix)

    return {
        "DATABASE_URL": renamed(settings.database_url),
        "WORKER_DATABASE_URL": renamed(settings.worker_database_url),
        "ADMIN_DATABASE_URL": renamed(settings.admin_database_url),
        "REDIS_URL": settings.redis_url,
        "JOBS_NAMESPACE": namespace,
    }
