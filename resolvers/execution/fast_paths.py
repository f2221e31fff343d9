"""Resolvers set straight on graphql-core fields, where Strawberry's per-object argument
conversion would dominate the field's cost.

``ingestTelemetry`` takes up to 10,000 input objects. Converting each into a
``ReadingInput`` (Strawberry's ``convert_argument``) measured ~60% of the mutation's time
on 10,000-reading batches. graphql-core has already validated and coerced the argument
(every scalar parsed, non-null checked) into plain dicts keyed by GraphQL field names, so
this resolver hands those to ``gateway.writes.telemetry`` directly. Whatever a field
resolver must check (the caller's tenant, its role) is checked here too.
"""

from __future__ import annotations

from typing import Any

import strawberry

from resolvers.mutations import IngestResult, Mutation, ingest_readings
from resolvers.permissions import declared_rule

# Who may ingest, as declared on Mutation.ingest_telemetry (a device: its own readings).
_INGEST_RULE = declared_rule(Mutation, "ingest_telemetry")


async def _ingest_telemetry(_root: Any, info: Any, readings: list[dict[str, Any]]
                            ) -> IngestResult:
    _INGEST_RULE.check(info.context.caller, {"readings": readings}, "ingestTelemetry")
    # Plain tuples, the shape of telemetry.RawReading (a NamedTuple costs ~3x as much
    # to make); a coerced ID is already a str.
    return await ingest_readings(info.context, [
        (r["deviceId"], r["metric"], r["time"], r["value"]) for r in readings])


def install(schema: strawberry.Schema) -> None:
    mutation = schema._schema.mutation_type
    assert mutation is not None
    mutation.fields["ingestTelemetry"].resolve = _ingest_telemetry
