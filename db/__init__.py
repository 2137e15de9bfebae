"""Storage of jobs and tenants in PostgreSQL: schema, migrations, transitions and queries."""

from .connection import Limits, configure, database, reconnecting
from .errors import DatabaseUnavailable
from .schema import migrate

__all__ = ["DatabaseUnavailable", "Limits", "configure", "database", "migrate", "reconnecting"]
