"""Leaf output coercion with the common cases made cheap: each function returns exactly
what the leaf type's own ``coerce_output_value`` returns (and raises what it raises);
the shortcuts only skip work whose outcome is known (a finite float, an ``int`` within
32 bits, a ``str``, a ``bool``), and a DateTime's text is memoised per plan, since every
device of a dashboard shares its bucket times. A scalar declared with ``unchanged`` as its
output coercion (JSON) is known to return every value as it is."""

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

# The test under which a built-in leaf's coercion returns the value itself, as Python
# source over ``v``: the coercions below are made from it, and the generated fills
# and builds (resolvers.execution.leaf_code) inline it, so the two cannot disagree.
UNCHANGED_WHEN = {
    GraphQLString.name: "v.__class__ is str",
    GraphQLID.name: "v.__class__ is str",
    GraphQLInt.name: "v.__class__ is int and -2147483648 <= v <= 2147483647",
    GraphQLFloat.name: "v.__class__ is float and _isfinite(v)",
    GraphQLBoolean.name: "v.__class__ is bool",
}
NAMESPACE = {"_isfinite": isfinite}  # what those tests refer to


def unchanged(value: Any) -> Any:
    """The output coercion of a scalar sent as itself (resolvers.scalars' JSON)."""
    return value


# ... and for a scalar whose coercion is ``unchanged``: a dict or list read off an object
# (never an exception, None or Undefined, which the general path handles).
UNCHANGED_SCALAR_WHEN = "v.__class__ is dict or v.__class__ is list"


def unchanged_when(leaf: GraphQLLeafType) -> str | None:
    """The test (over ``v``) under which ``leaf``'s output coercion returns ``v``."""
    if leaf.coerce_output_value is unchanged:  # type: ignore[union-attr]
        return UNCHANGED_SCALAR_WHEN
    return UNCHANGED_WHEN.get(leaf.name)


def _unchanged_or(test: str, general: Callable[[Any], Any]) -> Callable[[Any], Any]:
    namespace = {**NAMESPACE, "general": general}
    exec(f"def coerce(v):\n    return v if {test} else general(v)", namespace)  # noqa: S102
    return namespace["coerce"]  # type: ignore[no-any-return]


def fast_coercion(leaf: GraphQLLeafType) -> Callable[[Any], Any]:
    general = leaf.coerce_output_value
    if general is unchanged:
        return unchanged
    if leaf in (GraphQLString, GraphQLID, GraphQLInt, GraphQLFloat, GraphQLBoolean):
        return _unchanged_or(UNCHANGED_WHEN[leaf.name], general)
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
        coerce_datetime.texts = texts  # type: ignore[attr-defined]  # read by leaf_code
        return coerce_datetime
    return general
