"""telemetryChanged through the hub: the field's declared rule, its devices checked
against the caller's tenant, its metric names checked as ingest checks them, then a
member of the telemetry feed's cohort (``gateway.live.telemetry_feed``), rate-bounded by
TELEMETRY_EVENTS_PER_SECOND. ``resolvers.live.GatewaySchema`` parses, validates and
limits the document and executes each change, as for shadowChanged."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

import strawberry

from gateway.context import Context
from gateway.errors import BadUserInput, LimitExceeded, NotFound
from gateway.live.cohorts import Member
from gateway.live.telemetry_feed import TelemetryChange
from gateway.writes import validate
from resolvers.permissions import declared_rule
from resolvers.scalars import parse_id
from resolvers.subscriptions import Subscription
from resolvers.telemetry import Reading
from resolvers.telemetry_events import TelemetryEvent, TelemetryEventKind

TELEMETRY_FIELD = "telemetryChanged"
MAX_DEVICES = 500  # per subscription: each is a snapshot row and an index entry
_RULE = declared_rule(Subscription, "telemetry_changed")

Run = Callable[[object], Awaitable[Any]]


async def checked_devices(context: Context, raw: Iterable[Any], argument: str) -> set[UUID]:
    """The ids, each a device of the caller's tenant: another tenant's id is NOT_FOUND,
    the same answer as an id that does not exist."""
    ids = {parse_id(d, argument) for d in raw}
    rows = await context.stores.registry.devices_by_ids(context.tenant_id, list(ids))
    missing = [str(i) for i, row in zip(ids, rows, strict=True) if row is None]
    if missing:
        raise NotFound(f"No device {', '.join(sorted(missing))}", argument=argument)
    return ids


async def join_telemetry(context: Context, args: dict[str, Any], key: tuple[Any, ...],
                         run: Run) -> Member:
    caller = context.caller
    assert caller is not None and context.hub is not None
    _RULE.check(caller, {"device_ids": args.get("deviceIds")}, TELEMETRY_FIELD)
    raw_ids = args.get("deviceIds") or []
    if not raw_ids:
        raise BadUserInput("deviceIds must name at least one device", argument="deviceIds")
    if len(raw_ids) > MAX_DEVICES:
        raise LimitExceeded(f"telemetryChanged watches at most {MAX_DEVICES} devices",
                            limit="maxDevices", maximum=MAX_DEVICES)
    metrics = args.get("metrics")
    chosen = (frozenset(validate.metric(m, "metrics") for m in metrics)
              if metrics is not None else None)
    devices = await checked_devices(context, raw_ids, "deviceIds")
    rate = context.settings.telemetry_events_per_second

    async def execute(change: TelemetryChange, kind: str) -> Any:
        return await run(_event(change, kind, chosen))

    return await context.hub.telemetry.join(
        key, caller.tenant_id, devices=devices, metrics=chosen, execute=execute,
        min_interval=1.0 / rate if rate > 0 else 0.0)


def _event(change: TelemetryChange, kind: str,
           metrics: frozenset[str] | None) -> TelemetryEvent:
    return TelemetryEvent(
        kind=TelemetryEventKind(kind), device_id=strawberry.ID(str(change.device_id)),
        readings=[Reading(metric=m, time=t, value=v) for m, t, v in change.readings(metrics)],
        at=change.at)
