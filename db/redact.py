"""Passwords out of what is shown: URLs in log lines and error messages (and a worker token, should
an error ever quote a connection's options: db/worker_token.py).

libpq and psycopg2 quote a connection string they can't use (`invalid dsn: missing "=" after
"postgres//jobs:pw@db/jobs"`; a URL that is not one is taken for a database name, and the server
answers `database "..." does not exist`), so an error's text is masked as well as the URLs that
are logged on purpose.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# `//user:password@` in a URL, with or without its scheme (a malformed URL is quoted as it was
# typed). The password stops where JSON or a quoted message would end it, so that masking a
# rendered line can't swallow its structure.
_URL_PASSWORD = re.compile(r"(//[^\s/:@\"']*:)[^@\s\"'\\]+(@)")
# `password=...` in a key/value connection string (libpq's other form), and the worker token's
# `-c jobs.worker_token=...` in its options.
_KEYWORD_PASSWORD = re.compile(
    r"(\b(?:password|jobs\.worker_token)\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s\"']+)", re.IGNORECASE
)


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ***; the rest stays, so that an operator
    sees which server, user and database it names."""
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:  # an unparseable port: fall back to the text rules
        return mask_secrets(url)
    if not has_password:
        return mask_secrets(url)
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{host}"))


def mask_secrets(text: str) -> str:
    """`text` with the password of every connection string in it replaced by ***."""
    if "@" in text:
        text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<2>", text)
    if "=" in text:
        text = _KEYWORD_PASSWORD.sub(rf"\g<1>{MASK}", text)
    return text
