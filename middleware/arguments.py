"""Refuses, at send time, arguments that the actor could not take."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

from dramatiq import Broker, Message
from dramatiq.middleware import Middleware

from db import storable
from db.excerpt import clipped, excerpt

from .errors import InvalidArguments
from .options import RECORDED


class ArgumentValidation(Middleware):
    """Checks a new message's arguments against its actor before anything is written or sent.

    The arguments must be within the limits (db.storable.StorageLimits: nesting depth, then bytes
    of JSON), as must the delay; they must bind to the actor's signature and match its type hints (int, float, bool,
    str, None and unions of them; bool is not an int), and be storable as they are (JSON without
    NaN, no NUL character: db.storable). Then the actor's `validate` option, if set, is called
    with the bound arguments and may raise ValueError to refuse them. A refusal
    raises InvalidArguments out of send(). Enqueues of a message already recorded (a delay
    coming due, a retry) are not checked again.
    """

    @property
    def actor_options(self) -> set[str]:
        return {"validate"}

    def before_enqueue(self, broker: Broker, message: Message, delay: int | None) -> None:
        if message.options.get(RECORDED):
            return
        check_delay(message.actor_name, delay)
        actor = broker.get_actor(message.actor_name)
        check_arguments(actor.actor_name, actor.fn, actor.options.get("validate"), message.args, message.kwargs)


def check_arguments(
    name: str,
    fn: Callable[..., Any],
    validate: Callable[..., None] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    problem = storable.arguments_problem(list(args), kwargs)
    if problem is not None:
        raise InvalidArguments(name, f"the arguments are {problem}")
    signature, hints = _describe(fn)
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as error:  # its message names an unexpected argument: clipped
        raise InvalidArguments(name, clipped(str(error))) from None
    bound.apply_defaults()
    for key, value in bound.arguments.items():
        hint = hints.get(key)
        if hint is not None and not _matches(value, hint):
            raise InvalidArguments(name, f"{key} must be {_describe_hint(hint)}, not {excerpt(value)}")
    if validate is not None:
        try:
            validate(**bound.arguments)
        except ValueError as error:
            raise InvalidArguments(name, clipped(str(error))) from None


def check_delay(name: str, delay: object) -> None:
    """Refuses a delay that is not a whole number of milliseconds from 0 to JOBS_MAX_DELAY_MS."""
    if delay is None:
        return
    if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
        raise InvalidArguments(name, f"delay_ms must be a whole number of milliseconds >= 0, not {excerpt(delay)}")
    limit = storable.limits().max_delay_ms
    if delay > limit:
        raise InvalidArguments(name, f"delay_ms is more than the {limit} allowed (JOBS_MAX_DELAY_MS)")


@cache
def _describe(fn: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, Any]]:
    return inspect.signature(fn), typing.get_type_hints(fn)


def _matches(value: Any, hint: Any) -> bool:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe_hint(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe_hint(option) for option in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))
