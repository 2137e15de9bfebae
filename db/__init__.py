"""Storage of jobs and tenants in PostgreSQL: schema, migrations, transitions and queries."""

from .connection import DatabaseUnavailable, configure, database, reconnecting
from .schema import migrate

__all__ = ["DatabaseUnavailable", "configure", "database", "migrate", "reconnecting"]
