"""JSON from peers that may be hostile: bounded in size and depth, no NaN or Infinity.

``json.loads`` accepts ``NaN`` and ``Infinity`` (which pass every comparison check as false),
parses integers of any length, and recurses once per nesting level (100,000 levels raise
RecursionError, which callers do not expect). ``loads_untrusted`` refuses all of those with a
``ValueError``, so "one bad message costs one message" needs one ``except ValueError``.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32  # tuquan's messages nest three or four levels
MAX_INT_DIGITS = 20  # a signed 64-bit integer has 19


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def nesting_depth(data: bytes | str, limit: int) -> int:
    """The deepest bracket nesting, counting only brackets outside strings; stops past
    ``limit`` (so the scan of a hostile payload costs at most one pass)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_untrusted(data: bytes | str, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Parse a peer's JSON, or raise ValueError saying why it is refused."""
    if len(data) > max_bytes:
        raise ValueError(f"{len(data)} bytes, more than {max_bytes}")
    if nesting_depth(data, max_depth) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(
            data,
            parse_constant=_refuse_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except RecursionError as exc:  # not reached after the depth scan; kept as a last wall
        raise ValueError("nested too deeply") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8: {exc}") from exc
