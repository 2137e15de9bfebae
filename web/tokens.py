"""The tokens: JWTs signed with HS256 and JOBS_API_SECRET, as the platform's own sign-in issues
them. A user's names the user by id (`sub`); an operator's carries the `operator` claim and the
operator's name as its `sub`. Every token expires (`exp` is required).

What a token says is only believed after its signature checks out, with HS256 and nothing else:
`alg: none` and every other algorithm are refused, whatever the token's header asks for. The
errors say what is wrong with a token, never what it holds: a token is a credential, so it is
never repeated in a message or a log line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

import jwt

from db import storable
from db.errors import JobError
from db.queries import parse_uuid

ALGORITHM = "HS256"
#: The claim that makes a token an operator's (platform staff, every tenant).
OPERATOR_CLAIM = "operator"
#: Longer than any token minted here: a larger header is not a token of ours, and is not parsed.
MAX_TOKEN_CHARS = 4096
#: The longest life `jobctl token --ttl` gives a token.
MAX_TTL = timedelta(days=30)


_OPERATOR_NAME = f"an operator's token names the operator: 1 to {storable.MAX_OPERATOR_CHARS} characters of text"


class InvalidToken(JobError):
    """A token that is missing, malformed, forged or expired: the request is not authenticated
    (401). The message says which, in one line, and never quotes the token."""


@dataclass(frozen=True)
class Claims:
    """What a checked token says: a user's id, or an operator's name."""

    subject: str
    operator: bool
    expires_at: int

    @property
    def user_id(self) -> str | None:
        return None if self.operator else self.subject


def mint(secret: bytes, subject: str, ttl: timedelta, *, operator: bool = False) -> str:
    """A token for `subject` (a user's id; an operator's name with `operator`), valid for `ttl`."""
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"a token's lifetime must be above 0 and at most {MAX_TTL.days} days")
    # What check() would refuse is not made.
    if operator and storable.operator_problem(subject) is not None:
        raise ValueError(_OPERATOR_NAME)
    if not operator and parse_uuid(subject) is None:
        raise ValueError("a user's token names the user by id")
    now = int(time.time())
    claims: dict[str, object] = {"sub": subject, "iat": now, "exp": now + int(ttl.total_seconds())}
    if operator:
        claims[OPERATOR_CLAIM] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def check(secret: bytes, token: str) -> Claims:
    """The claims of `token` once its signature, algorithm, expiry and subject check out;
    InvalidToken saying what is wrong otherwise."""
    if not token:
        raise InvalidToken("the token is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken(f"the token is longer than {MAX_TOKEN_CHARS} characters: not a token of this server")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"], "verify_signature": True, "verify_exp": True},
        )
    except jwt.ExpiredSignatureError:
        raise InvalidToken("the token has expired: get a new one") from None
    except jwt.InvalidSignatureError:
        raise InvalidToken(
            "the token's signature does not match: it was not issued with this server's secret"
        ) from None
    except jwt.InvalidAlgorithmError:
        raise InvalidToken(f"the token is not signed with {ALGORITHM}, the only algorithm accepted") from None
    except jwt.MissingRequiredClaimError as error:
        raise InvalidToken(
            f"the token has no {error.claim!r} claim: every token names its subject and expires"
        ) from None
    except jwt.PyJWTError:
        # DecodeError and the claims' own checks (an `exp` that is not a number, a `sub` that is
        # not text): their messages can quote the token's parts, so none is passed on.
        raise InvalidToken("the token is malformed: not a signed JWT of this server") from None
    operator = claims.get(OPERATOR_CLAIM, False)
    if not isinstance(operator, bool):
        raise InvalidToken(f"the token's {OPERATOR_CLAIM!r} claim is not true or false")
    subject = claims["sub"]
    if operator:
        if storable.operator_problem(subject) is not None:
            raise InvalidToken(_OPERATOR_NAME)
    elif parse_uuid(subject) is None:
        raise InvalidToken("the token's subject is not a user id")
    return Claims(
        subject=subject if operator else str(parse_uuid(subject)), operator=operator, expires_at=claims["exp"]
    )
