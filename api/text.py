"""Text every store can hold: valid Unicode, without NUL characters, checked before a route sees a request.

JSON's `"\\ud800"` escape decodes to a lone surrogate, a Python str that UTF-8 (and so PostgreSQL, a log
line or a response body) cannot encode; `"\\u0000"` decodes to a NUL, which PostgreSQL's text columns
refuse. Either would surface as a 500 wherever the string first reached one of those, so request models
refuse both up front with a 422 at the exact field, or the dict key, that holds one; an app-wide
dependency does the same for path and query parameters (a URL can carry `%00`, never a lone surrogate).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

LONE_SURROGATE = "Text must be valid Unicode; a lone surrogate (an unpaired \\ud800-\\udfff escape) is not"
NUL = "Text must not contain NUL characters (\\u0000)"


def unstorable_text_at(value: Any) -> tuple[tuple[Any, ...], str, str] | None:
    """A string in `value` no store can hold: its path (keys, indexes), itself and why; or None.

    When a dict key is the bad string, the path ends with that key. Walked with a stack, not recursion, so
    a deeply nested body cannot exhaust Python's stack here.
    """
    stack: list[tuple[tuple[Any, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if (why := _unstorable(item)) is not None:
                return path, item, why
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (why := _unstorable(key)) is not None:
                    return (*path, key), key, why
                stack.append(((*path, key), child))
        elif isinstance(item, list | tuple):
            stack.extend(((*path, index), child) for index, child in enumerate(item))
    return None


def refuse_unstorable_text(title: str, data: Any) -> Any:
    """`data` unchanged, or a ValidationError located at its first unstorable string."""
    found = unstorable_text_at(data)
    if found is None:
        return data
    path, text, why = found
    # pydantic would mangle an invalid key in `loc` into U+FFFDs; the escape's text names it instead
    loc = tuple(escaped(step) if isinstance(step, str) else step for step in path)
    kind = "lone_surrogate" if why == LONE_SURROGATE else "nul_character"
    error = InitErrorDetails(type=PydanticCustomError(kind, why), loc=loc, input=escaped(text))
    raise ValidationError.from_exception_data(title, [error])


async def refuse_unstorable_params(request: Request) -> None:
    """422 for a path or query parameter (one the operation takes) holding text no store can hold."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    declared = _query_names(dependant) if isinstance(dependant, Dependant) else set()
    params = [("path", name, value) for name, value in request.path_params.items()]
    params += [
        ("query", name, value) for name, value in request.query_params.multi_items() if name in declared
    ]
    for where, name, value in params:
        if isinstance(value, str) and (why := _unstorable(value)) is not None:
            error = {"type": "nul_character", "loc": (where, name), "msg": why, "input": escaped(value)}
            raise RequestValidationError([error])


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def escaped(text: str) -> str:
    """`text` with lone surrogates written as their escapes (`\\ud800`), so UTF-8 can encode it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _unstorable(text: str) -> str | None:
    if "\x00" in text:
        return NUL
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return LONE_SURROGATE
    return None
