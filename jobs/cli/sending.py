"""Changing jobs on behalf of a user: send, cancel."""

from __future__ import annotations

import argparse
import json

from middleware.settings import Settings

from ..errors import UnknownJobType
from .common import UsageError, print_json, resolve_user

# Jobs whose pending rows `jobctl send --count N` writes in one round trip (each batch all or none).
SEND_BATCH = 1_000


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("send", help="send a job on behalf of a user")
    command.add_argument("job_type")
    command.add_argument("--as", dest="user", required=True, help="user id or email")
    command.add_argument("--args", default="{}", help="the job's arguments, as a JSON object")
    command.add_argument("--delay-ms", type=int)
    command.add_argument("--count", type=int, default=1)
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_send)

    command = commands.add_parser("cancel", help="cancel a job on behalf of its owner or an org admin")
    command.add_argument("job_id")
    command.add_argument("--as", dest="user", required=True, help="user id or email")
    command.add_argument("--reason")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_cancel)


def _send(args: argparse.Namespace, settings: Settings) -> int:
    from .. import service

    try:
        job_args = json.loads(args.args)
    except json.JSONDecodeError as error:
        raise UsageError(f"--args is not valid JSON: {error}") from None
    if args.count < 1:
        raise UsageError("--count must be 1 or more")
    from actors import JOB_TYPES  # configures the database and the broker

    if args.job_type not in JOB_TYPES:
        raise UnknownJobType(args.job_type, list(JOB_TYPES))
    user = resolve_user(args.user)
    if args.count == 1:
        ids = [service.send_job(args.job_type, user_id=user, args=job_args, delay_ms=args.delay_ms)]
    else:
        ids = []
        for start in range(0, args.count, SEND_BATCH):
            size = min(SEND_BATCH, args.count - start)
            batch = [dict(job_args) for _ in range(size)] if isinstance(job_args, dict) else [job_args] * size
            ids += service.send_jobs(args.job_type, batch, user_id=user, delay_ms=args.delay_ms)
    if args.json:
        print_json(ids)
    else:
        print("\n".join(ids))
    return 0


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    import actors  # noqa: F401 - configures the database, and the broker that carries the abort

    from .. import service

    result = service.cancel_job(args.job_id, resolve_user(args.user), args.reason)
    if args.json:
        print_json(result.__dict__)
    elif result.outcome == "already_cancelled":
        print(f"job {result.job_id} was already cancelled: nothing changed")
    else:
        running = " (it was running: its worker is being interrupted)" if result.interrupting else ""
        print(f"job {result.job_id} cancelled{running}")
    return 0
