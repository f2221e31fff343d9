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

A flat selection (plain leaves and ``__typename`` only: a telemetry point, a reading, a
series' stats, a shadow) also gets a build function, which makes an object's dict in one
call with no position, or raises. A plain field holding such an object, or a list of
them, is built optimistically: anything the build does not take as it is (a null, an
exception, a value its test refuses) raises, and the field is then done again by the
general path from the start, which reports exactly what it always did. That redo reads
the attribute a second time, which is why only plain fields (dataclass attributes and
memoising descriptors, pure reads) are built this way. A dashboard's points were about a
third of its planned execution, through a fill call and a lazy position per point.

A source can go further for a plain list of flat objects: its class's
``plain_columns(name)`` may answer the list's items as columns (``{attribute: values}``,
item i's attribute being ``values[i]``) without making the items, and the list is then
built from the columns in one loop (a gap-filled series' points: a point object and a
build call less per point). None there, or a refusal, falls back to the list itself.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLID,
    GraphQLInt,
    GraphQLString,
    Undefined,
)

from resolvers.execution.leaf_coercion import NAMESPACE, UNCHANGED_WHEN, unchanged_when
from resolvers.execution.plan import (
    BATCHED,
    LEAF,
    LIST,
    OBJECT,
    PLAIN,
    TYPENAME,
    FieldPlan,
    Selection,
)
from resolvers.execution.positions import Position

Fill = Callable[[Any, Any, dict[str, Any], Any], None]  # (run, source, obj, position)
Build = Callable[[Any], dict[str, Any]]  # a flat selection's object, or raises


# The leaves whose test (UNCHANGED_WHEN) a list of them is built with: graphql-core's own
# types, not another scalar of the same name.
_BUILT_IN = {leaf.name: leaf for leaf in
             (GraphQLString, GraphQLID, GraphQLInt, GraphQLFloat, GraphQLBoolean)}

_ITEM = re.compile(r"\bv\b")


class Slow(Exception):
    """Raised by a build for what it does not take as it is: the general path redoes it."""


def _coerced(coerce: Callable[[Any], Any], value: Any) -> Any:
    """A leaf's coercion where a build's own test did not settle it; Slow for what the
    general path treats as an error (a null, Undefined, an exception, a null answer)."""
    if value is None or value is Undefined or isinstance(value, Exception):
        raise Slow
    coerced = coerce(value)
    if coerced is None or coerced is Undefined:
        raise Slow
    return coerced

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


def build_of(selection: Selection) -> Build | None:
    """The build function of a flat selection, generated on first use; None for any other
    (objects or lists below, a resolved field, a custom ``is_type_of``)."""
    build = selection.build
    if build is None:
        build = selection.build = _compile_build(selection) or False
    return build or None


def _compile(selection: Selection) -> Fill:
    env: dict[str, Any] = {}
    lines = ["def fill(run, source, obj, prev):"]
    for index, plan in enumerate(selection.fields):
        lines += _field(index, plan, selection, env)
    if len(lines) == 1:
        lines.append("    pass")
    return _define(lines, env, f"<fill {selection.type.name}>", "fill")  # type: ignore[no-any-return]


def _compile_build(selection: Selection) -> Build | None:
    if selection.deep:
        return None
    env: dict[str, Any] = {}
    lines = ["def build(source):",
             "    if source is None or source is _Undefined or isinstance(source, Exception):",
             "        raise _Slow"]
    is_type_of = selection.type.is_type_of
    if is_type_of is not None:
        env["ISTYPE"] = is_type_of  # Strawberry's own (plan.py admits no other)
        lines += ["    if not ISTYPE(source, None):", "        raise _Slow"]
    lines.append("    obj = {}")
    for index, plan in enumerate(selection.fields):
        key = repr(plan.key)
        if plan.kind == TYPENAME:
            lines.append(f"    obj[{key}] = {selection.type.name!r}")
            continue
        shape = plan.shape
        if plan.kind != PLAIN or shape is None:
            return None
        if shape.kind == LIST:
            leaves = _leaf_list(index, plan, key, env)
            if not leaves:
                return None  # a list of other leaves: left to the fill
            lines += ["    " + line for line in [*_read(index, plan, env), *leaves]]
            continue
        env[f"C{index}"] = shape.coerce
        fallback = f"obj[{key}] = _coerced(C{index}, v)"
        lines += ["    " + line for line in _read(index, plan, env)]
        if plan.nullable:
            lines += ["    if v is None:", f"        obj[{key}] = None", "    else:"]
            indent = "        "
        else:
            indent = "    "
        lines += [indent + line for line in _leaf(index, plan, key, fallback, env)]
    lines.append("    return obj")
    return _define(lines, env, f"<build {selection.type.name}>", "build")  # type: ignore[no-any-return]


def columns_build_of(selection: Selection) -> Callable[[Any], list[Any]] | None:
    """The columns build of a flat selection (see the module's docstring), generated on
    first use; None where the selection has no build or reads no attribute."""
    made = selection.columns_build
    if made is None:
        made = selection.columns_build = _compile_columns_build(selection) or False
    return made or None


def _compile_columns_build(selection: Selection) -> Callable[[Any], list[Any]] | None:
    if build_of(selection) is None:
        return None
    plains = [(index, plan) for index, plan in enumerate(selection.fields)
              if plan.kind == PLAIN]
    if not plains or any(plan.shape is None or plan.shape.kind != LEAF for _, plan in plains):
        return None
    env: dict[str, Any] = {}
    names = ", ".join(f"c{index}" for index, _ in plains)
    lines = ["def columns_build(columns):"]
    lines += [f"    c{index} = columns[{plan.attribute!r}]" for index, plan in plains]
    lines += ["    out = []", "    append = out.append",
              f"    for {', '.join(f'u{index}' for index, _ in plains)}, in "
              f"zip({names}, strict=True):" if len(plains) > 1 else
              f"    for u{plains[0][0]} in {names}:",
              "        obj = {}"]
    for index, plan in enumerate(selection.fields):
        key = repr(plan.key)
        if plan.kind == TYPENAME:
            lines.append(f"        obj[{key}] = {selection.type.name!r}")
            continue
        assert plan.shape is not None
        env[f"C{index}"] = plan.shape.coerce
        lines.append(f"        v = u{index}")
        body = _leaf(index, plan, key, f"obj[{key}] = _coerced(C{index}, v)", env)
        if plan.nullable:
            lines += ["        if v is None:", f"            obj[{key}] = None", "        else:"]
            lines += ["            " + line for line in body]
        else:
            lines += ["        " + line for line in body]
    lines += ["        append(obj)", "    return out"]
    return _define(lines, env, f"<columns {selection.type.name}>",  # type: ignore[no-any-return]
                   "columns_build")


def plain_columns(source: Any, name: str) -> Any:
    """What ``source``'s class offers as the columns of its plain list ``name``, if
    anything (see the module's docstring)."""
    offer = getattr(source.__class__, "plain_columns", None)
    return None if offer is None else offer(source, name)


def _define(lines: list[str], env: dict[str, Any], filename: str, name: str) -> Any:
    env.update(NAMESPACE)
    env.update(_datetime=datetime, _UTC=UTC, _Undefined=Undefined, _Slow=Slow,
               _coerced=_coerced, _Position=Position, _plain_columns=plain_columns)
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), filename, "exec"), env, namespace)  # noqa: S102
    return namespace[name]


def _read(index: int, plan: FieldPlan, env: dict[str, Any]) -> list[str]:
    """``v = source.<attribute>`` (a build lets what it raises go: the redo reports it)."""
    attribute = plan.attribute
    if attribute.isidentifier() and not keyword.iskeyword(attribute):
        return [f"v = source.{attribute}"]
    env[f"A{index}"] = attribute
    return [f"v = getattr(source, A{index})"]


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
    [read] = _read(index, plan, env)
    general = f"run._complete({name}, {name}.shape, {name}.nullable, v, obj, {key}, prev)"
    lines = ["    try:", f"        {read}", "    except Exception as e:", "        v = e"]
    built = _built(index, plan, key, env)
    if built:
        # Built optimistically; the general path below redoes whatever the build refused.
        attempt = [read, *built]
        columns = _columns(index, plan, env)
        if columns is not None:
            attempt = [f"columns = _plain_columns(source, {plan.attribute!r})",
                       "if columns is not None:", f"    obj[{key}] = {columns}(columns)",
                       "else:", *("    " + line for line in attempt)]
        return ["    try:", *("        " + line for line in attempt),
                "    except Exception:", *("    " + line for line in lines),
                f"        {general}"]
    shape = plan.shape
    if shape is not None and shape.kind == OBJECT and shape.selection is not None \
            and shape.selection.deep:
        # An object with fields to execute below (an edge's node): filled here, with its
        # position, as _complete would; a null, an exception or a foreign value takes it.
        env[f"F{index}"] = fill_of(shape.selection)
        test = "v is not None and v is not _Undefined and not isinstance(v, Exception)"
        if shape.selection.type.is_type_of is not None:
            env[f"I{index}"] = shape.selection.type.is_type_of
            test += f" and I{index}(v, None)"
        position = f"_Position(prev, {key}, obj, {plan.nullable}, {plan.parent_type.name!r})"
        return [*lines, f"    if {test}:", "        o = {}", f"        obj[{key}] = o",
                f"        F{index}(run, v, o, {position})", "    else:", f"        {general}"]
    if plan.nullable:  # a null needs no completion: _complete would store None
        lines += ["    if v is None:", f"        obj[{key}] = None", "    else:"]
        indent = "        "
    else:
        indent = "    "
    return lines + [indent + line for line in _leaf(index, plan, key, general, env)]


def _columns(index: int, plan: FieldPlan, env: dict[str, Any]) -> str | None:
    """The name of the columns build for a plain list of flat objects, if it has one."""
    shape = plan.shape
    item = shape.item if shape is not None and shape.kind == LIST else None
    if item is None or item.kind != OBJECT or item.selection is None \
            or shape is None or shape.item_nullable:
        return None
    columns_build = columns_build_of(item.selection)
    if columns_build is None:
        return None
    env[f"K{index}"] = columns_build
    return f"K{index}"


def _built(index: int, plan: FieldPlan, key: str, env: dict[str, Any]) -> list[str]:
    """Statements storing ``obj[key]`` from ``v``, a plain field's flat object or list of
    flat objects (through the object type's build) or list of built-in leaves; none for
    any other shape."""
    shape = plan.shape
    if shape is None:
        return []
    if shape.kind == LIST and shape.item is not None and shape.item.kind == LEAF:
        return _leaf_list(index, plan, key, env)
    if shape.kind == OBJECT and shape.selection is not None:
        build = build_of(shape.selection)
        if build is None:
            return []
        env[f"B{index}"] = build
        if plan.nullable:
            return [f"obj[{key}] = None if v is None else B{index}(v)"]
        return [f"obj[{key}] = B{index}(v)"]
    item = shape.item
    if shape.kind != LIST or item is None or item.kind != OBJECT or item.selection is None:
        return []
    build = build_of(item.selection)
    if build is None:
        return []
    env[f"B{index}"] = build
    lines = []
    if plan.nullable:
        lines += ["if v is None:", f"    obj[{key}] = None", "else:"]
    indent = "    " if plan.nullable else ""
    lines += [indent + "if v.__class__ is not list:", indent + "    raise _Slow"]
    if shape.item_nullable:
        lines.append(indent + f"obj[{key}] = [None if i is None else B{index}(i) for i in v]")
    else:
        lines.append(indent + f"obj[{key}] = list(map(B{index}, v))")
    return lines


def _leaf_list(index: int, plan: FieldPlan, key: str, env: dict[str, Any]) -> list[str]:
    """Statements storing ``obj[key]`` from ``v``, a list of a built-in leaf (labels),
    each item kept when the leaf's test takes it; or raising Slow. None for other leaves
    (an Int list, a list of lists, a custom scalar): the general path does them."""
    shape = plan.shape
    assert shape is not None
    item = shape.item
    assert item is not None and item.kind == LEAF
    leaf = item.leaf
    if leaf is None or leaf is not _BUILT_IN.get(leaf.name):
        return []
    env[f"C{index}"] = item.coerce
    test = _ITEM.sub("x", UNCHANGED_WHEN[leaf.name])  # the test over ``x``, the item
    each = f"x if {test} else _coerced(C{index}, x)"
    if shape.item_nullable:
        each = f"None if x is None else ({each})"
    lines = []
    if plan.nullable:
        lines += ["if v is None:", f"    obj[{key}] = None", "else:"]
    indent = "    " if plan.nullable else ""
    return lines + [indent + "if v.__class__ is not list:", indent + "    raise _Slow",
                    indent + f"obj[{key}] = [{each} for x in v]"]


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
