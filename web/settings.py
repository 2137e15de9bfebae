"""The server's configuration, from the environment: the tokens' secret and the server's own
bounds. Everything else (the database, Redis, the limits on what is stored) is the system's
(middleware.settings.Settings), which it carries."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from middleware.settings import ConfigurationError, Settings

#: HS256 keys shorter than the hash (RFC 7518, 3.2) can be guessed offline from one token.
MIN_SECRET_BYTES = 32
#: Bytes a request's body may hold beyond one job's largest arguments (JOBS_MAX_ARGS_BYTES): the
#: rest of the JSON that carries them.
BODY_ENVELOPE_BYTES = 64 * 1024


class SecretMissing(ConfigurationError):
    """The server can't start: no JOBS_API_SECRET, or one too short to sign with."""


@dataclass(frozen=True)
class WebSettings:
    """Parameters:
    secret(bytes): JOBS_API_SECRET, which signs and checks every token (HS256), at least
      MIN_SECRET_BYTES bytes. Never shown: not in its repr, not in a log line.
    max_body_bytes(int): JOBS_API_MAX_BODY_BYTES, the largest request body; a larger one is
      refused (413) before it is read. Default: JOBS_MAX_ARGS_BYTES plus BODY_ENVELOPE_BYTES.
    database_threads(int): JOBS_API_DB_THREADS, the threads that run the server's database
      work, each with its own connection: the most connections the server opens.
    keepalive_s(int): JOBS_API_KEEPALIVE_S, the longest a stream stays silent: a comment line
      then keeps proxies from closing it, and the stream reads again (web.api.streams).
    system(Settings): the system's settings (the database, Redis, the storage limits).
    metrics_token(bytes | None): JOBS_METRICS_TOKEN, a secret of MIN_SECRET_BYTES or more that a
      scraper presents as its bearer token to read /metrics, and nothing else (web.metrics); None:
      only operators' tokens read it. Never shown.
    """

    secret: bytes = field(repr=False)
    max_body_bytes: int
    database_threads: int
    keepalive_s: int
    system: Settings
    metrics_token: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> WebSettings:
        env = os.environ if env is None else env
        system = Settings.from_env(env)
        return cls(
            secret=secret_from_env(env),
            max_body_bytes=_whole(env, "JOBS_API_MAX_BODY_BYTES", system.max_args_bytes + BODY_ENVELOPE_BYTES),
            database_threads=_whole(env, "JOBS_API_DB_THREADS", 8),
            keepalive_s=_whole(env, "JOBS_API_KEEPALIVE_S", 15),
            system=system,
            metrics_token=_metrics_token(env),
        )


def secret_from_env(env: Mapping[str, str] | None = None) -> bytes:
    """JOBS_API_SECRET, as bytes; SecretMissing when it is unset, blank or too short."""
    env = os.environ if env is None else env
    raw = env.get("JOBS_API_SECRET", "")
    if not raw.strip():
        raise SecretMissing(
            "JOBS_API_SECRET is not set: it signs and checks every token; set it to a random string of "
            f"{MIN_SECRET_BYTES} bytes or more (e.g. `openssl rand -hex 32`)"
        )
    secret = raw.encode("utf-8", "surrogateescape")
    if len(secret) < MIN_SECRET_BYTES:
        raise SecretMissing(
            f"JOBS_API_SECRET is {len(secret)} bytes long: it must be {MIN_SECRET_BYTES} bytes or more "
            "(e.g. `openssl rand -hex 32`)"
        )
    return secret


def _metrics_token(env: Mapping[str, str]) -> bytes | None:
    raw = env.get("JOBS_METRICS_TOKEN", "")
    if not raw:
        return None
    token = raw.encode("utf-8", "surrogateescape")
    if len(token) < MIN_SECRET_BYTES or raw != raw.strip():
        raise ConfigurationError(
            f"JOBS_METRICS_TOKEN must be {MIN_SECRET_BYTES} bytes or more, without spaces around it"
            " (e.g. `openssl rand -hex 32`), or unset"
        )
    return token


def _whole(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw[:40]!r} is not a whole number") from None
    if value < 1:
        raise ConfigurationError(f"{name} must be 1 or more")
    return value
