"""Each selection set of a plan filled by one generated Python function, as graphql-jit
compiles a query to JavaScript: the field loop, the per-field kind dispatch and the call
completing each plain leaf are unrolled into straight-line code, built once per plan.

For every plain leaf field the code reads the attribute and, when the value has the exact
type whose output coercion is known to return it unchanged (a ``str`` for String and ID,
an ``int`` within 32 bits, a finite ``float``, a ``bool``, a ``dict`` or ``list`` for a
scalar whose coercion is ``leaf_coercion.unchanged``), is a member of the field's
enum, is a UTC DateTime whose text the coercion already memoised, or is None for a
nullable field, stores the result at once. Anything else (a null where none may be, an
exception, another type, every object, list and custom scalar) goes to
``PlanRun._complete``, the general path, so errors, nulls and coercion stay exactly what
they were. Resolved and batched fields keep their place in the response (``None`` until
their level completes) and are called or gathered as ``PlanRun`` does.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLEnumType

from resolvers.execution.leaf_coercion import NAMESPACE, unchanged_when
from resolvers.execution.plan import BATCHED, LEAF, PLAIN, TYPENAME, FieldPlan, Selection

Fill = Callable[[Any, Any, dict[str, Any], Any], None]  # (run, source, obj, position)

def fill_of(selection: Selection) -> Fill:
    """The selection's fill function, generated on first use."""
    fill = selection.fill
    if fill is None:
        fill = selection.fill = _compile(selection)
    return fill  # type: ignore[no-any-return]


def enum_names(leaf: GraphQLEnumType) -> tuple[type, dict[str, str]] | None:
    """A Strawberry enum's class and, by each member's Python name, the name its coercion
    gives the member (computed by that coercion, so the two agree); None for an enum
    without a Python class. Keyed by the member's name, not the member: an Enum's
    ``__hash__`` is a Python function, a call per value where a str's hash is cached."""
    wrapped = getattr(leaf, "wrapped_cls", None)
    if wrapped is None:
        return None
    names: dict[str, str] = {}
    for member in wrapped:
        try:
            names[member._name_] = leaf.coerce_output_value(member)
        except Exception:  # noqa: BLE001, S112 - left to the general path, which raises it
            continue
    return wrapped, names


def _compile(selection: Selection) -> Fill:
    env: dict[str, Any] = {}
    lines = ["def fill(run, source, obj, prev):"]
    for index, plan in enumerate(selection.fields):
        lines += _field(index, plan, selection, env)
    if len(lines) == 1:
        lines.append("    pass")
    namespace: dict[str, Any] = {}
    env.update(NAMESPACE)
    env["_datetime"] = datetime
    env["_UTC"] = UTC
    exec(compile("\n".join(lines), f"<fill {selection.type.name}>", "exec"),  # noqa: S102
         env, namespace)
    fill: Fill = namespace["fill"]
    return fill


def _field(index: int, plan: FieldPlan, selection: Selection, env: dict[str, Any]
           ) -> list[str]:
    key = repr(plan.key)
    name = f"P{index}"
    env[name] = plan
    if plan.kind == TYPENAME:
        return [f"    obj[{key}] = {selection.type.name!r}"]
    if plan.kind == PLAIN:
        return _plain(index, plan, key, env)
    lines = [f"    obj[{key}] = None"]  # keeps the response order; completed with its level
    if plan.kind == BATCHED:
        return lines + ["    if not (run.any_nulled and run._nulled(prev)):",
                        f"        run._groups.setdefault({name}, []).append((source, obj, prev))"]
    return lines + [f"    run._call({name}, source, obj, prev)"]


def _plain(index: int, plan: FieldPlan, key: str, env: dict[str, Any]) -> list[str]:
    name = f"P{index}"
    attribute = plan.attribute
    if attribute.isidentifier() and not keyword.iskeyword(attribute):
        read = f"source.{attribute}"
    else:
        env[f"A{index}"] = attribute
        read = f"getattr(source, A{index})"
    general = f"run._complete({name}, {name}.shape, {name}.nullable, v, obj, {key}, prev)"
    lines = ["    try:", f"        v = {read}", "    except Exception as e:", "        v = e"]
    if plan.nullable:  # a null needs no completion: _complete would store None
        lines += ["    if v is None:", f"        obj[{key}] = None", "    else:"]
        indent = "        "
    else:
        indent = "    "
    return lines + [indent + line for line in _leaf(index, plan, key, general, env)]


def _leaf(index: int, plan: FieldPlan, key: str, general: str, env: dict[str, Any]
          ) -> list[str]:
    shape = plan.shape
    leaf = shape.leaf if shape is not None and shape.kind == LEAF else None
    exact = unchanged_when(leaf) if leaf is not None else None
    if exact is not None:
        return [f"if {exact}:", f"    obj[{key}] = v", "else:", f"    {general}"]
    if isinstance(leaf, GraphQLEnumType) and (members := enum_names(leaf)) is not None:
        env[f"W{index}"], env[f"E{index}"] = members
        return [f"n = E{index}.get(v._name_) if v.__class__ is W{index} else None",
                "if n is not None:", f"    obj[{key}] = n", "else:", f"    {general}"]
    texts = getattr(shape.coerce, "texts", None) if shape is not None else None
    if texts is not None:
        # A DateTime in UTC whose text the leaf's coercion already made (bucket times repeat
        # across every device of a dashboard): the memo is the coercion's own.
        env[f"T{index}"] = texts
        utc = "v.__class__ is _datetime and v.tzinfo is _UTC"
        return [f"t = T{index}.get(v) if {utc} else None", "if t is not None:",
                f"    obj[{key}] = t", "else:", f"    {general}"]
    return [general]
