"""`python -m jobs.worker [dramatiq's options]`: `dramatiq actors`, with this system's log format in
every process, Dramatiq's main process included.

Under `dramatiq actors`, the CLI's main process runs none of our code: it logs its few lines (its
start, the signals it passes on, a worker process that died) in Dramatiq's own text format, in
the middle of a JSON log. Here its logging is configured before Dramatiq's CLI runs, which is
told `--skip-logging` (Dramatiq's way of leaving logging to the application). Its worker
processes, forked from it, log the same way until they configure their own (StructuredLogging).
`auto` is decided here, for the stream the lines are written to, and handed down: a worker
process's own stderr is only a pipe to this one.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace

import structlog
from dramatiq import cli

from middleware.log_format import configure_logging, resolved_format
from middleware.settings import Settings

from .errors import JobError

log = structlog.get_logger("jobs.worker")  # not __main__, under `python -m`


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = cli.make_argument_parser().parse_args(["actors", *argv])
    args.skip_logging = True
    # On SIGHUP Dramatiq's CLI restarts by exec'ing sys.argv: this module again, not a bare script.
    sys.argv = [sys.executable, "-m", "jobs.worker", *argv]
    try:
        # The worker processes log in as workers (a worker never acts as a user).
        settings = Settings.from_env()
        settings = replace(settings, database_url=settings.worker_database_url)
    except JobError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stream = open(args.log_file, "a", encoding="utf-8") if args.log_file else sys.stderr  # open for the process's life
    fmt = resolved_format(settings.log_format, stream)
    # Read by the worker processes when they import the actors: their log format, and their
    # login, the workers' role (0014_service_role.sql).
    os.environ["JOBS_LOG_FORMAT"] = fmt
    os.environ["DATABASE_URL"] = settings.database_url
    configure_logging(fmt, settings.log_level, stream)
    log.info("workers_starting", processes=args.processes, threads=args.threads, **settings.describe())
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
