"""Variables of type ``[ReadingInput!]`` coerced in one tight loop.

graphql-core coerces a variable value field by field (``coerce_input_value`` recursing
per reading and per field, after a walk of the whole value for its nesting depth): ~30 us
a reading on this machine, and a request pays it twice, once in the cost check
(``resolvers.execution.cost``) and once when the executor is built. ``ingestTelemetry``
takes up to 10,000 readings, so this was most of the mutation's time.

A reading as clients send it is a JSON object with exactly the four fields, ``deviceId``
and ``metric`` strings, ``time`` a string, ``value`` a finite float or a small int. Such a
list is coerced here into exactly what graphql-core produces (the same dicts, keys in the
type's field order; ``time`` parsed by the DateTime scalar's own input coercion, ``value``
as GraphQLFloat coerces it). Anything else, a missing or extra field, a null, a number as
an ID, a time the scalar refuses, a non-list value, is left to graphql-core for the whole
request, so every error message, path and code stays graphql-core's own.

The fast path is installed per schema (``install``) and only when the schema's
``ReadingInput`` is the four-field type this module knows; the executor's ``build`` and
the cost check both call ``variable_values``. Planned execution switched off
(``IOTSPHERE_PLANNED_EXECUTION=false``) switches this off too: the reference path.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLError,
    GraphQLFloat,
    GraphQLID,
    GraphQLInputObjectType,
    GraphQLNonNull,
    GraphQLSchema,
    GraphQLString,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    VariableDefinitionNode,
)
from graphql.execution.values import VariableValues, VariableValueSource, get_variable_values

READING_TYPE = "ReadingInput"
# Field order of the type: graphql-core builds each coerced dict in this order.
_FIELDS = {"deviceId": GraphQLID, "metric": GraphQLString, "time": "DateTime",
           "value": GraphQLFloat}
# GraphQLFloat refuses an int that a float does not hold exactly; within 2**53 every int
# converts exactly, beyond it graphql-core decides.
_EXACT_INT = 2**53

ParseTime = Callable[[Any], Any]
_INSTALLED: WeakKeyDictionary[GraphQLSchema, ParseTime] = WeakKeyDictionary()


def install(schema: GraphQLSchema) -> bool:
    """Turns the fast path on for ``schema`` when its ReadingInput is the type this
    module reproduces (four non-null fields of these scalars, no defaults, no renames,
    plain dicts); otherwise leaves the schema to graphql-core and says so."""
    reading = schema.type_map.get(READING_TYPE)
    if not isinstance(reading, GraphQLInputObjectType) or reading.is_one_of:
        return False
    if list(reading.fields) != list(_FIELDS):
        return False
    if reading.out_type is not GraphQLInputObjectType.out_type:
        return False
    for name, field in reading.fields.items():
        expected = _FIELDS[name]
        if field.out_name not in (None, name) or not isinstance(field.type, GraphQLNonNull):
            return False
        scalar = field.type.of_type
        if scalar is not expected and getattr(scalar, "name", None) != expected:
            return False
    time_type = reading.fields["time"].type.of_type  # type: ignore[attr-defined]
    _INSTALLED[schema] = time_type.coerce_input_value
    return True


def installed(schema: GraphQLSchema) -> bool:
    return schema in _INSTALLED


# A request's variables are coerced twice, by the cost check and by the executor's build,
# from the same raw list: the second takes the first's readings from here and drops them
# (~4 us a reading each time, measured on 10,000-reading batches). Keyed by the raw
# list's id with the list held, so the id cannot be reused while the entry lives; a
# couple of entries for requests in flight side by side, the oldest dropped first.
_RECENT: dict[int, tuple[Any, ParseTime, list[dict[str, Any]]]] = {}
_RECENT_MAX = 2


def _coerce_once(raw: Any, parse_time: ParseTime) -> list[dict[str, Any]] | None:
    held = _RECENT.pop(id(raw), None)
    if held is not None and held[0] is raw and held[1] is parse_time:
        return held[2]
    coerced = coerce_readings(raw, parse_time)
    if coerced:
        while len(_RECENT) >= _RECENT_MAX:
            del _RECENT[next(iter(_RECENT))]
        _RECENT[id(raw)] = (raw, parse_time, coerced)
    return coerced


def coerce_readings(raw: Any, parse_time: ParseTime) -> list[dict[str, Any]] | None:
    """The readings as graphql-core coerces them, or None for anything unusual (then
    graphql-core coerces the request, and reports what is wrong)."""
    if type(raw) is not list:
        return None
    coerced: list[dict[str, Any]] = []
    append = coerced.append
    times: dict[str, Any] = {}  # a batch shares its times across devices
    for item in raw:
        if type(item) is not dict or len(item) != 4:
            return None
        device = item.get("deviceId")
        metric = item.get("metric")
        text = item.get("time")
        value = item.get("value")
        if type(device) is not str or type(metric) is not str or type(text) is not str:
            return None
        time = times.get(text)
        if time is None:
            try:
                time = times[text] = parse_time(text)
            except Exception:  # noqa: BLE001 - the scalar refuses it: graphql-core reports
                return None
        if type(value) is float:
            if value - value != 0.0:  # inf or nan: GraphQLFloat refuses them
                return None
        elif type(value) is int and -_EXACT_INT <= value <= _EXACT_INT:
            value = float(value)
        else:
            return None
        append({"deviceId": device, "metric": metric, "time": time, "value": value})
    return coerced


def _is_readings(node: Any) -> bool:
    """``[ReadingInput!]`` or ``[ReadingInput!]!``: the variable types taken here."""
    if isinstance(node, NonNullTypeNode):
        node = node.type
    if not isinstance(node, ListTypeNode) or not isinstance(node.type, NonNullTypeNode):
        return False
    named = node.type.type
    return isinstance(named, NamedTypeNode) and named.name.value == READING_TYPE


def fast_readings(schema: GraphQLSchema, definitions: Collection[VariableDefinitionNode],
                  raw: Mapping[str, Any] | None) -> dict[str, list[dict[str, Any]]] | None:
    """The coerced value of every readings variable, or None when any is not taken here
    (then graphql-core coerces every variable)."""
    parse_time = _INSTALLED.get(schema)
    if parse_time is None or not raw:
        return None
    found: dict[str, list[dict[str, Any]]] = {}
    for definition in definitions:
        if _is_readings(definition.type):
            name = definition.variable.name.value
            value = _coerce_once(raw.get(name), parse_time)
            if value is None:
                return None
            found[name] = value
    return found or None


def with_readings(variables: VariableValues | list[GraphQLError],
                  raw: Mapping[str, Any], readings: Mapping[str, list[dict[str, Any]]]
                  ) -> VariableValues | list[GraphQLError]:
    """graphql-core's coercion of the other variables (``raw`` with each readings
    variable given as ``[]``) completed with the readings coerced here."""
    if isinstance(variables, list):
        return variables
    sources = dict(variables.sources)
    coerced = dict(variables.coerced)
    for name, value in readings.items():
        sources[name] = VariableValueSource(sources[name].signature, raw[name])
        coerced[name] = value
    return VariableValues(sources, coerced)


def without_readings(raw: Mapping[str, Any], readings: Mapping[str, Any]) -> dict[str, Any]:
    return {**raw, **dict.fromkeys(readings, [])} if readings else dict(raw)


def variable_values(schema: GraphQLSchema, operation: OperationDefinitionNode,
                    raw: Mapping[str, Any] | None, **options: Any
                    ) -> VariableValues | list[GraphQLError]:
    """``get_variable_values`` for ``operation``, readings variables coerced here."""
    definitions = operation.variable_definitions or ()
    readings = fast_readings(schema, definitions, raw)
    if readings is None:
        return get_variable_values(schema, definitions, dict(raw or {}), **options)
    assert raw is not None
    others = get_variable_values(schema, definitions, without_readings(raw, readings),
                                 **options)
    return with_readings(others, raw, readings)
