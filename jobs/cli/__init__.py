"""The `jobctl` command: migrate, seed, send, cancel, retry, show, list, workers, stats, metrics, prune, reap,
reconcile, worker, demo, serve, token.

Each group of subcommands lives in its own module and adds itself to the parser (`register`);
this module maps every error to one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

# structlog draws tracebacks with `rich` whenever rich is installed (a test tool brings it):
# importing it costs most of a command's start (0.17 s of 0.37 s of CPU here), for output that
# `jobctl` never shows, since its errors are one line. Without rich, structlog's own plain
# traceback is used.
sys.modules.setdefault("rich", None)  # type: ignore[assignment]

import peewee  # noqa: E402
import psycopg2  # noqa: E402

from db.connection import pgcode  # noqa: E402
from db.excerpt import clipped  # noqa: E402
from db.redact import mask_secrets  # noqa: E402
from middleware.log_format import configure_logging  # noqa: E402
from middleware.settings import Settings  # noqa: E402
from web import commands as web_commands  # noqa: E402

from ..errors import DatabaseUnavailable, JobError  # noqa: E402
from . import admin, fleet, ops, reading, sending  # noqa: E402
from .common import EXIT_ERROR, EXIT_USAGE, Failure  # noqa: E402

__all__ = ["main"]

UNDEFINED_TABLE = "42P01"
UNDEFINED_FUNCTION = "42883"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        # Everything after `worker` belongs to dramatiq, flags included.
        admin.exec_worker(argv[1:])
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        # The demo and the server log as the workers do (JSON unless on a terminal, INFO); the
        # other commands print their own output, and log only errors.
        own_process = args.command in ("demo", "serve")
        level = args.log_level or os.environ.get("JOBS_LOG_LEVEL") or ("INFO" if args.command == "serve" else "ERROR")
        configure_logging(settings.log_format if own_process else "console", level)
        return args.run(args, settings) or 0
    except BrokenPipeError:
        return _closed_stdout()
    except Failure as failure:
        print(f"error: {failure}", file=sys.stderr)
        return failure.exit_code
    except (peewee.DatabaseError, psycopg2.Error, DatabaseUnavailable) as error:
        print(f"error: {_database_error(error)}", file=sys.stderr)
        return EXIT_ERROR
    except (JobError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _database_error(error: BaseException) -> str:
    """One line for what the database answered; libpq quotes a URL it can't use (taken for a
    database name), password and all, so the text is masked."""
    text = mask_secrets(" ".join(str(error).split()))
    code = pgcode(error)
    if isinstance(error, DatabaseUnavailable) or code is None or code.startswith("08"):
        return f"database unreachable: {text}"
    if code in (UNDEFINED_TABLE, UNDEFINED_FUNCTION):
        return f"the database's schema is not this release's (run `jobctl migrate`): {text}"
    return f"the database refused: {text}"


def _closed_stdout() -> int:
    """`jobctl list | head`: the reader went away. Point stdout at /dev/null, so that the
    interpreter's own flush at exit doesn't raise again, and end quietly, as `cat` does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141  # 128 + SIGPIPE, the shell's code for a writer whose reader left


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line too, as every other error (`--help` shows the usage)."""

    def error(self, message: str) -> NoReturn:
        # argparse quotes what was typed (an invalid choice): a long value only as an excerpt.
        self.exit(EXIT_USAGE, f"error: {self.prog}: {clipped(message)} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jobctl", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", help="DEBUG, INFO, ...: JOBS_LOG_LEVEL (default ERROR; INFO for serve)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    for module in (admin, sending, reading, fleet, ops, web_commands):
        module.register(commands)
    return parser
