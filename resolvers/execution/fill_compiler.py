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

A flat selection's objects, below a plain field, are made by its build instead
(``resolvers.execution.build_compiler``), or from the columns its source offers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resolvers.execution.build_compiler import built_lines, columns_name, plain_columns
from resolvers.execution.leaf_code import define, leaf_lines, read_lines
from resolvers.execution.plan import BATCHED, OBJECT, PLAIN, TYPENAME, FieldPlan, Selection
from resolvers.execution.positions import Position

Fill = Callable[[Any, Any, dict[str, Any], Any], None]  # (run, source, obj, position)


def fill_of(selection: Selection) -> Fill:
    """The selection's fill function, generated on first use."""
    fill = selection.fill
    if fill is None:
        fill = selection.fill = _compile(selection)
    return fill  # type: ignore[no-any-return]


def _compile(selection: Selection) -> Fill:
    env: dict[str, Any] = {}
    lines = ["def fill(run, source, obj, prev):"]
    for index, plan in enumerate(selection.fields):
        lines += _field(index, plan, selection, env)
    if len(lines) == 1:
        lines.append("    pass")
    env.update(_Position=Position, _plain_columns=plain_columns)
    return define(lines, env, f"<fill {selection.type.name}>", "fill")  # type: ignore[no-any-return]


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
    [read] = read_lines(index, plan, env)
    general = f"run._complete({name}, {name}.shape, {name}.nullable, v, obj, {key}, prev)"
    lines = ["    try:", f"        {read}", "    except Exception as e:", "        v = e"]
    built = built_lines(index, plan, key, env)
    if built:
        # Built optimistically; the general path below redoes whatever the build refused.
        attempt = [read, *built]
        columns = columns_name(index, plan, env)
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
    return lines + [indent + line for line in leaf_lines(index, plan, key, general, env)]
