"""A stream's position goes out signed, and comes back only as the server gave it."""

from __future__ import annotations

import pytest

from db.feed import Cursor
from web.positions import BadPosition, decode, encode

SECRET = b"s" * 32


@pytest.mark.parametrize("cursor", [Cursor("10:12:10,11"), Cursor("1:1:", "40:41:", 17)])
def test_a_position_comes_back_as_it_went_out(cursor):
    assert decode(encode(cursor, SECRET, "user-1"), SECRET, "user-1") == cursor


def test_a_position_is_refused_when_forged_or_anothers():
    position = encode(Cursor("10:12:"), SECRET, "user-1")
    body, _, signature = position.partition(".")
    forged = encode(Cursor("3:3:"), b"x" * 32, "user-1")
    for bad in (
        forged,  # signed with another secret
        f"{forged.partition('.')[0]}.{signature}",  # another body under this signature
        position + "A",
        "",
        "x" * 20_000,
    ):
        with pytest.raises(BadPosition):
            decode(bad, SECRET, "user-1")
    with pytest.raises(BadPosition):
        decode(position, SECRET, "user-2")
