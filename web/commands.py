"""`jobctl serve` (the HTTP server) and `jobctl token` (a token for the API, or a link that signs
a browser in). Registered by jobs.cli: the command line is the one place above every layer."""

from __future__ import annotations

import argparse
import getpass
import re
from datetime import timedelta
from urllib.parse import urlencode

from db.excerpt import excerpt
from middleware.settings import Settings

from .settings import secret_from_env


class UsageError(ValueError):
    """Bad input on the command line: one line, exit code 2 (jobs.cli maps ValueError so)."""


def register(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("serve", help="run the HTTP server: the JSON API (docs at /docs)")
    command.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    command.add_argument("--port", type=int, default=8000, help="the port (default 8000; 0: any free one)")
    command.set_defaults(run=_serve)

    command = commands.add_parser("token", help="print a token for the HTTP API (or a link that signs a browser in)")
    who = command.add_mutually_exclusive_group(required=True)
    who.add_argument("--as", dest="user", help="user id or email: a token of that user")
    who.add_argument(
        "--operator",
        nargs="?",
        const="",
        metavar="NAME",
        help="an operator's token (platform staff: every tenant; default name: your login)",
    )
    command.add_argument("--ttl", default="1h", help="how long it is valid: 30m, 1h, 7d (default 1h; 30d at most)")
    command.add_argument("--login-url", action="store_true", help="print a link that signs a browser in instead")
    command.add_argument(
        "--base-url",
        default="http://127.0.0.1:8000",
        help="the server's address, for --login-url (default %(default)s)",
    )
    command.set_defaults(run=_token)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from .settings import WebSettings

    if not 0 <= args.port <= 65_535:
        raise UsageError(f"--port must be from 0 to 65535, not {args.port}")
    web_settings = WebSettings.from_env()  # refuses to start without a good JOBS_API_SECRET
    from .server import serve

    serve(web_settings, host=args.host, port=args.port)
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    from . import tokens

    secret = secret_from_env()
    ttl = _duration(args.ttl, tokens.MAX_TTL)
    if args.operator is not None:
        token = tokens.mint(secret, args.operator or _login_name(), ttl, operator=True)
    else:
        from jobs.cli.common import connect, resolve_user

        connect(settings)
        token = tokens.mint(secret, resolve_user(args.user), ttl)
    if args.login_url:
        print(f"{args.base_url.rstrip('/')}/login?{urlencode({'token': token})}")
    else:
        print(token)
    return 0


def _duration(value: str, longest: timedelta) -> timedelta:
    found = re.fullmatch(r"(\d{1,9})([smhd])", value.strip())
    if not found:
        raise UsageError(f"--ttl takes a duration (30m, 1h, 7d), not {excerpt(value)}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[found[2]]
    ttl = timedelta(**{unit: int(found[1])})
    if not timedelta(0) < ttl <= longest:
        raise UsageError(f"--ttl must be above 0 and at most {longest.days} days, not {excerpt(value)}")
    return ttl


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER variable and no passwd entry (some containers)
        raise UsageError("--operator: your login name is unknown here; give it: --operator NAME") from None
