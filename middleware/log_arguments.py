"""How a job's arguments appear in the logs: by name only, unless its actor says otherwise.

Arguments are user data (a document's text, an address); the logs go to more people, and are
kept longer, than the rows. An actor declared with `log_arguments=True` (an option of the
StructuredLogging middleware) has its values logged too.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from functools import cache
from typing import Any

from dramatiq import Actor

#: Actor option: log this actor's argument values, not only their names.
LOG_ARGUMENTS = "log_arguments"


def logged_arguments(actor: Actor | None, args: Sequence[Any], kwargs: dict[str, Any]) -> list[str] | dict[str, Any]:
    """A call's arguments as they may be logged: their names, or names and values."""
    names = _names(actor, args, kwargs)
    if not _values_allowed(actor):
        return names
    return dict(zip(names, [*args, *kwargs.values()], strict=True))


def describe(name: str, actor: Actor | None, args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """`test_job(delay_ms, should_fail)`: a call as Dramatiq's lines name it, with its values
    only where the actor allows."""
    if _values_allowed(actor):
        shown = [repr(arg) for arg in args] + [f"{key}={value!r}" for key, value in kwargs.items()]
    else:
        shown = _names(actor, args, kwargs)
    return f"{name}({', '.join(shown)})"


def _values_allowed(actor: Actor | None) -> bool:
    return actor is not None and bool(actor.options.get(LOG_ARGUMENTS, False))


def _names(actor: Actor | None, args: Sequence[Any], kwargs: dict[str, Any]) -> list[str]:
    """The names of the positional arguments (from the actor's signature; `*N` where it has
    none) followed by the keywords."""
    parameters = _positional_parameters(actor.fn) if actor is not None else []
    positional = [parameters[n] if n < len(parameters) else f"*{n}" for n in range(len(args))]
    return [*positional, *kwargs]


@cache
def _positional_parameters(fn: Any) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in inspect.signature(fn).parameters.values() if p.kind in kinds]
