"""Leaf output coercion with the common cases made cheap: each function returns exactly
what the leaf type's own ``coerce_output_value`` returns (and raises what it raises);
the shortcuts only skip work whose outcome is known (a finite float, an ``int`` within
32 bits, a ``str``, a ``bool``), and a DateTime's text is memoised per plan, since every
device of a dashboard shares its bucket times."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from math import isfinite
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLLeafType,
    GraphQLString,
)

_MAX_INT = 2**31 - 1
_MIN_INT = -(2**31)


def fast_coercion(leaf: GraphQLLeafType) -> Callable[[Any], Any]:
    general = leaf.coerce_output_value
    if leaf is GraphQLFloat:
        def coerce_float(value: Any) -> Any:
            return value if type(value) is float and isfinite(value) else general(value)
        return coerce_float
    if leaf is GraphQLString or leaf is GraphQLID:
        def coerce_text(value: Any) -> Any:
            return value if type(value) is str else general(value)
        return coerce_text
    if leaf is GraphQLInt:
        def coerce_int(value: Any) -> Any:
            if type(value) is int and _MIN_INT <= value <= _MAX_INT:
                return value
            return general(value)
        return coerce_int
    if leaf is GraphQLBoolean:
        def coerce_bool(value: Any) -> Any:
            return value if type(value) is bool else general(value)
        return coerce_bool
    if leaf.name == "DateTime":
        texts: dict[Any, Any] = {}

        def coerce_datetime(value: Any) -> Any:
            # isoformat depends only on the wall time and the offset, which the instant
            # and the tzinfo determine; UTC values (the stores' and the buckets') are keyed
            # by the instant alone, which allocates nothing.
            if type(value) is not datetime:
                return general(value)
            key = value if value.tzinfo is UTC else (value, value.tzinfo)
            text = texts.get(key)
            if text is None:
                if len(texts) > 4096:
                    texts.clear()
                text = texts[key] = general(value)
            return text
        coerce_datetime.texts = texts  # type: ignore[attr-defined]  # read by fill_compiler
        return coerce_datetime
    return general
