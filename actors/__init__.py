"""The jobs that workers run. `dramatiq actors` imports this package and runs them all."""

from __future__ import annotations

import dramatiq

import db
from db import storable
from middleware.log_format import use_stdlib_logging
from middleware.settings import Settings

from .broker import bind, build_broker

# Our lines go to the standard library's loggers, to be handled (or not) by the application:
# nothing printed to stdout by a service that imports the actors.
use_stdlib_logging()
settings = Settings.from_env()
db.configure(settings.database_url, settings.db_limits())
storable.configure(settings.storage_limits())
broker = build_broker(settings)
# The actors below attach to the global broker as they are defined.
dramatiq.set_broker(broker)

from .initialize import initialize  # noqa: E402
from .test_job import test_job  # noqa: E402

#: Every job type, by the name services send it with.
JOB_TYPES: dict[str, dramatiq.Actor] = {actor.actor_name: actor for actor in (test_job, initialize)}


def use_broker(new_broker: dramatiq.Broker) -> None:
    """Sends and runs every job type through `new_broker` from now on."""
    global broker
    broker = new_broker
    bind(new_broker, JOB_TYPES.values())


__all__ = ["JOB_TYPES", "broker", "initialize", "settings", "test_job", "use_broker"]
