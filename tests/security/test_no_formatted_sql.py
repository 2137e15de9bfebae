"""No query of the system is built by string formatting (issue 12).

Row-level security holds a user's transaction to the user's rows, but a session of the services'
role can always leave the user's role (`RESET ROLE`): what keeps an injected string from doing so
is that every value reaches PostgreSQL as a parameter. This check reads the code and fails on a
query whose text is an f-string, a `%` or `+` expression, or a `.format()` call.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("db", "middleware", "jobs", "actors", "web")
QUERY_CALLS = {"execute_sql", "execute", "executemany", "mogrify"}


def formatted_queries(source: str) -> list[int]:
    """The lines of calls that run SQL built by formatting."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if node.func.attr not in QUERY_CALLS:
            continue
        query = node.args[0]
        formatted = (
            isinstance(query, ast.JoinedStr)
            or (isinstance(query, ast.BinOp) and isinstance(query.op, (ast.Mod, ast.Add)))
            # str.format, not psycopg2.sql.SQL(...).format, which quotes what it composes.
            or (
                isinstance(query, ast.Call)
                and isinstance(query.func, ast.Attribute)
                and query.func.attr == "format"
                and isinstance(query.func.value, ast.Constant)
            )
        )
        if formatted:
            found.append(node.lineno)
    return found


def test_the_check_finds_what_it_looks_for():
    source = (
        'db.execute_sql(f"SELECT {x}")\n'
        'cursor.execute("SELECT %s" % x)\n'
        'cursor.execute("SELECT " + x)\n'
        'cursor.execute("SELECT {}".format(x))\n'
        'cursor.execute("SELECT %s", (x,))\n'
        'cursor.execute(sql.SQL("DROP {}").format(sql.Identifier(x)))\n'
    )
    assert formatted_queries(source) == [1, 2, 3, 4]


def test_no_query_of_the_system_is_built_by_formatting():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in formatted_queries(path.read_text())
    ]
    assert offenders == [], "queries built by formatting (pass values as parameters, names as psycopg2.sql)"
