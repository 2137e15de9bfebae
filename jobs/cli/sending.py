"""Changing jobs: send, cancel, retry."""

from __future__ import annotations

import argparse
import getpass
import inspect
import json
import types
from collections.abc import Iterator
from contextlib import contextmanager

from db.excerpt import clipped, excerpt
from middleware.settings import Settings

from ..errors import JobNotPublished, PermissionDenied, UnknownCourse, UnknownJobType
from .common import EXIT_ERROR, Failure, UsageError, find_user, print_json, resolve_job_id, resolve_user

# Jobs whose pending rows `jobctl send --count N` writes in one round trip (each batch all or none).
SEND_BATCH = 1_000


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "send",
        help="send a job on behalf of a user",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("job_type", help="one of the job types listed below")
    command.add_argument("--as", dest="user", required=True, help="user id or email")
    command.add_argument("--args", default="{}", help="the job's arguments, as a JSON object")
    command.add_argument("--delay-ms", type=_whole_number)
    command.add_argument("--count", type=int, default=1, help="send N jobs (in batches of 1,000, each all or none)")
    command.add_argument(
        "--key",
        help="idempotency key: a second send with the same key (for the same user) sends nothing and prints the "
        "first job's id; with --count N, the jobs get KEY/1 ... KEY/N",
    )
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_send)
    # The job types are listed from the actors themselves, which only `send --help` needs to import.
    command.format_help = types.MethodType(_send_help, command)

    command = commands.add_parser(
        "cancel", help="cancel a job on behalf of its owner or an org admin, or as an operator"
    )
    command.add_argument("job_id", help="the full id, or its first 8+ hex digits")
    who = command.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="user", help="user id or email: the job's owner or an admin of its organization")
    who.add_argument(
        "--operator",
        nargs="?",
        const="",
        metavar="NAME",
        help="cancel as platform staff (default name: your login); runs as ADMIN_DATABASE_URL's administrator",
    )
    command.add_argument("--reason")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_cancel)

    command = commands.add_parser("retry", help="send a failed or cancelled job again, as a new job linked to it")
    command.add_argument("job_id", help="the full id, or its first 8+ hex digits")
    command.add_argument("--as", dest="user", required=True, help="user id or email: its owner or an org admin")
    command.add_argument("--json", action="store_true")
    command.set_defaults(run=_retry)


def _whole_number(value: str) -> int:
    """An int, refused with an excerpt of what was typed (argparse's own message repeats it whole)."""
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {excerpt(value)}") from None


def _send_help(parser: argparse.ArgumentParser) -> str:
    from actors import JOB_TYPES

    lines = ["job types and their arguments (--args '{\"name\": value}'):"]
    for name, actor in sorted(JOB_TYPES.items()):
        doc = (inspect.getdoc(actor.fn) or "").splitlines()
        lines.append(f"  {name}" + (f"  {doc[0]}" if doc else ""))
        for parameter in inspect.signature(actor.fn).parameters.values():
            kind = getattr(parameter.annotation, "__name__", parameter.annotation)
            default = "required" if parameter.default is inspect.Parameter.empty else f"default {parameter.default!r}"
            lines.append(f"      {parameter.name}: {kind} ({default})")
    parser.epilog = "\n".join(lines)
    return argparse.ArgumentParser.format_help(parser)


def _send(args: argparse.Namespace, settings: Settings) -> int:
    from .. import service

    try:
        job_args = json.loads(args.args)
    except RecursionError:
        raise UsageError(
            f"--args: the arguments are nested more than {settings.max_args_depth} deep (JOBS_MAX_ARGS_DEPTH)"
        ) from None
    except ValueError as error:  # JSONDecodeError, or a number too long to read
        raise UsageError(f"--args is not valid JSON: {clipped(str(error))}") from None
    if args.count < 1:
        raise UsageError("--count must be 1 or more")
    from actors import JOB_TYPES  # configures the database and the broker
    from middleware.sends import MAX_KEY_LENGTH

    if args.job_type not in JOB_TYPES:
        raise UnknownJobType(args.job_type, list(JOB_TYPES))
    if args.key is not None and args.count > 1 and len(f"{args.key}/{args.count}") > MAX_KEY_LENGTH:
        raise UsageError(
            f"--key is too long for --count {args.count}: the jobs' keys are KEY/1 ... KEY/{args.count}, "
            f"{MAX_KEY_LENGTH} characters at most"
        )
    user = resolve_user(args.user)
    ids: list[str] = []
    try:
        with _named_as_typed(args.user, None, "send"):
            if args.count == 1:
                ids = [
                    service.send_job(args.job_type, user_id=user, args=job_args, delay_ms=args.delay_ms, key=args.key)
                ]
            else:
                for start in range(0, args.count, SEND_BATCH):
                    size = min(SEND_BATCH, args.count - start)
                    batch = [dict(job_args) for _ in range(size)] if isinstance(job_args, dict) else [job_args] * size
                    keys = None if args.key is None else [f"{args.key}/{start + n + 1}" for n in range(size)]
                    ids += service.send_jobs(args.job_type, batch, user_id=user, delay_ms=args.delay_ms, keys=keys)
    except JobNotPublished as error:
        # Recorded, so not to be sent again by hand (that would be second jobs): every recorded
        # id is printed, and the error said once. Later batches were not sent.
        _print_ids(ids + error.job_ids, args.json)
        raise Failure(str(error), EXIT_ERROR) from None
    _print_ids(ids, args.json)
    return 0


def _print_ids(ids: list[str], as_json: bool) -> None:
    if as_json:
        print_json(ids)
    elif ids:
        print("\n".join(ids), flush=True)


def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    import actors  # noqa: F401 - configures the database, and the broker that carries the abort

    from .. import service

    if args.operator is not None:
        operator = args.operator or _login_name()
        job_id = resolve_job_id(args.job_id, None)
        result = service.cancel_job_as_operator(
            job_id, operator, args.reason, admin_url=settings.admin_database_url, limits=settings.db_limits()
        )
    else:
        user, organization = _requester(args.user)
        job_id = resolve_job_id(args.job_id, user, acting_in=organization)
        with _named_as_typed(args.user, job_id, "cancel"):
            result = service.cancel_job(job_id, user, args.reason)
    if args.json:
        print_json(result.__dict__)
    elif result.outcome == "already_cancelled":
        print(f"job {result.job_id} was already cancelled: nothing changed")
    elif result.abort_error:
        print(
            f"job {result.job_id} cancelled; it is running, and its worker could not be told to stop"
            f" ({result.abort_error}): it runs to its end, which will not be recorded as its outcome"
        )
    else:
        running = " (it was running: its worker is being interrupted)" if result.interrupting else ""
        print(f"job {result.job_id} cancelled{running}")
    return 0


def _retry(args: argparse.Namespace, settings: Settings) -> int:
    import actors  # noqa: F401 - configures the database and the broker

    from .. import service

    user, organization = _requester(args.user)
    job_id = resolve_job_id(args.job_id, user, acting_in=organization)
    try:
        with _named_as_typed(args.user, job_id, "retry"):
            result = service.retry_job(job_id, user)
    except JobNotPublished as error:
        raise Failure(f"the retry of job {job_id}: {error}", EXIT_ERROR) from None
    if args.json:
        print_json(result.__dict__)
    elif result.outcome == "already_retried":
        print(f"job {result.retry_of} was already retried as {result.job_id}: nothing sent")
    else:
        print(result.job_id)
    return 0


def _requester(typed: str) -> tuple[str, object]:
    """The id of the user who asks, and their organization: one lookup for both."""
    user = find_user(typed)
    return str(user["id"]), user["organization"]


@contextmanager
def _named_as_typed(user: str, job_id: str | None, action: str) -> Iterator[None]:
    """A refusal names the user as the operator typed them (an email stays an email)."""
    try:
        yield
    except PermissionDenied:
        raise PermissionDenied(user, job_id, action) from None
    except UnknownCourse as error:
        raise UsageError(f"course {error.course_id} does not exist in the organization of user {user}") from None


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER variable and no passwd entry (some containers)
        raise UsageError("--operator: your login name is unknown here; give it: --operator NAME") from None
