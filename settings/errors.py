"""Turning what pydantic and tomllib refuse into ``(path, message)`` pairs that a person fixes
a file with: the path names the key (``inputs[1].pin``), the message says what is allowed.

* an unknown key gets the closest allowed one ("did you mean 'keepalive_s'?"), or the list;
* a missing table says "table", a missing key "key";
* type and range errors say what was expected, in the file's words (an array, a table);
* an error a validator raises at keys below the value it checks (``errors_at``) is reported
  at each of those keys;
* a TOML syntax error or a file that is not UTF-8 is reported at ``file:line:column``.
"""

from __future__ import annotations

import difflib
import re
import tomllib
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

KeyPath = Sequence[int | str]
"""Where a value is in the file: table keys and array indexes, ``("inputs", 1, "pin")``."""


def format_path(loc: KeyPath) -> str:
    """``("inputs", 1, "pin")`` → ``inputs[1].pin``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def errors_at(
    errors: Sequence[tuple[KeyPath, str]], where: str = "", key: str = ""
) -> PydanticCustomError:
    """Errors at keys below the value being validated, raised as one pydantic error.

    ``pydantic_errors`` reports each at its own key. The error's text is what
    ``str(ValidationError)`` shows when a model is built in code, where pydantic names only the
    model: it says ``where`` (``"zone yard"``) and, for a field validator, the ``key`` it checks
    (``"zone yard: polygon: a polygon needs at least 3 points, got 2"``).
    """
    pieces = [(where, format_path((key, *parts) if key else parts), msg) for parts, msg in errors]
    text = "; ".join(": ".join(piece for piece in error if piece) for error in pieces)
    at = [(tuple(parts), message) for parts, message in errors]
    return PydanticCustomError("errors_at", "{message}", {"message": text, "at": at})


def error_at(parts: KeyPath, message: str, where: str = "", key: str = "") -> PydanticCustomError:
    """One error at ``parts`` below the value being validated (see ``errors_at``)."""
    return errors_at([(parts, message)], where, key)


def pydantic_errors(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """Every error of ``exc`` as ``(path, message)``; ``root`` is the model of the whole file,
    which says what a table may hold."""
    out = []
    for err in exc.errors(include_url=False, include_input=True):
        if err["type"] == "errors_at":
            for parts, message in err.get("ctx", {}).get("at", ()):
                out.append((format_path((*err["loc"], *parts)), str(message)))
        else:
            out.append((format_path(err["loc"]), _message(err, root)))
    return out


def _model_at(root: type[BaseModel], loc: KeyPath) -> type[BaseModel] | None:
    """The model class validating the table at ``loc`` (list indexes skipped)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part) if model is not None else None
        if info is None:
            return None
        model = _model_in(info.annotation)
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _unknown_key_message(root: type[BaseModel], loc: KeyPath) -> str:
    key = str(loc[-1])
    model = _model_at(root, loc[:-1])
    if model is None:
        return f"unknown key {key!r}"
    allowed = [
        info.alias or name for name, info in model.model_fields.items() if name != "password"
    ]
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
    return f"unknown key {key!r}; {hint}"


_BOUNDS = {
    "greater_than": "greater than",
    "greater_than_equal": "at least",
    "less_than": "less than",
    "less_than_equal": "at most",
}

_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "dict_type": "a table",
    "tuple_type": "an array",
    "list_type": "an array",
    "path_type": "a path string",
}


def _message(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    kind, loc = error["type"], error["loc"]
    if kind == "extra_forbidden":
        return _unknown_key_message(root, loc)
    if kind == "missing":
        table = _model_at(root, loc) is not None
        return "required table is missing" if table else "required key is missing"
    if kind in _TYPE_NAMES:
        return f"expected {_TYPE_NAMES[kind]}"
    if kind in _BOUNDS:
        ctx = error.get("ctx", {})
        bound = next(iter(ctx.values()), "?")
        return f"must be {_BOUNDS[kind]} {bound}, not {error['input']!r}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {error.get('ctx', {}).get('max_length')} characters long"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{error['input']!r} is not one of {expected}"
    msg = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg[:1].lower() + msg[1:]


def toml_syntax_error(path: Path, exc: tomllib.TOMLDecodeError) -> tuple[str, str]:
    """``hub.toml:3:7`` and tomllib's message without its position suffix."""
    text = str(exc)
    match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", text)
    if match:
        where = f"{path}:{match.group(1)}:{match.group(2)}"
        return where, f"TOML syntax error: {text[: match.start()]}"
    return str(path), f"TOML syntax error: {text}"


def not_utf8_error(path: Path, exc: UnicodeDecodeError) -> tuple[str, str]:
    """``hub.toml:3:7`` and the byte that is not UTF-8 (a file saved as Latin-1 or UTF-16)."""
    before = bytes(exc.object[: exc.start])
    line = before.count(b"\n") + 1
    column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", "replace")) + 1
    byte = exc.object[exc.start]
    return (
        f"{path}:{line}:{column}",
        f"not UTF-8 text (byte 0x{byte:02x} cannot be read): save the file as UTF-8",
    )
