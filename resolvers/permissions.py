"""Who may call a field, declared beside it: ``extensions=[allow(...)]``.

    allow("admin")                                   API key management
    allow(*TENANT_WRITERS)                           writes: admin, operator
    allow(*TENANT_READERS)                           whole-tenant reads: not a device
    allow(..., device=OwnDevice("device_id"))        ... and a device, naming only itself

A device caller stands for one device: where a field takes a device id, ``OwnDevice``
lets it through only when every id it names is its own. Any other id is FORBIDDEN,
decided before any lookup, so the answer says nothing about whether that id exists (and an
id of another tenant stays indistinguishable from an unknown one). Fields that would show
more than one device (connections, assets, the asset tree) do not admit devices at all.

The check runs before the resolver. Paths that bypass Strawberry's field execution run the
same declared rule through ``declared_rule``: the ingestTelemetry fast path and the
subscription hub (``Rule.check``), and ``POST /ingest``, which takes the rule declared on
``ingestTelemetry`` from ``create_app`` and checks the caller's role up front
(``Rule.admit``) and each line's device as it streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from strawberry.permission import BasePermission, PermissionExtension

from gateway.auth.callers import Caller
from gateway.auth.roles import TENANT_READERS, TENANT_WRITERS
from gateway.errors import Forbidden, Unauthenticated

__all__ = ["TENANT_READERS", "TENANT_WRITERS", "OwnDevice", "Rule", "allow", "declared_rule"]


class OwnDevice:
    """A device caller may use the field only for itself: ``argument`` (a Python argument
    name holding an ID, a list of IDs, or input objects with a device id) must name its own
    device and nothing else; ``refused`` arguments must be left out (or null)."""

    def __init__(self, argument: str, *, refused: tuple[str, ...] = ()) -> None:
        self.argument = argument
        self.refused = refused

    def check(self, caller: Caller, args: Mapping[str, Any], field: str) -> None:
        for name in self.refused:
            if args.get(name) is not None:
                raise Forbidden(f"A device may not set {_camel(name)} in {field}",
                                role=caller.role)
        ids = list(_device_ids(args.get(self.argument)))
        if caller.device_id is None or not ids or any(
            _uuid(i) != caller.device_id for i in ids
        ):
            raise Forbidden(
                f"A device may use {field} only for itself: {_camel(self.argument)} must "
                "name its own device id", role=caller.role)


class Rule(BasePermission):
    """The roles that may call a field, and how a device may (``device``; None: not at
    all). Raises FORBIDDEN naming the role and the field."""

    def __init__(self, *roles: str, device: OwnDevice | None = None) -> None:
        self.roles = frozenset(roles)
        self.device = device

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        self.check(info.context.caller, kwargs, info.field_name)
        return True

    def admit(self, caller: Caller | None, field: str) -> UUID | None:
        """The role part of the rule alone, for a route that checks the device of each item
        as it comes (``POST /ingest``, line by line): None when the caller may name any
        device of its tenant, else the one device it may name. Raises like ``check``."""
        if caller is None:
            raise Unauthenticated("Not authenticated")
        if caller.role in self.roles:
            return None
        if caller.role == "device" and self.device is not None and caller.device_id is not None:
            return caller.device_id
        raise Forbidden(f"The {caller.role} role may not use {field}", role=caller.role)

    def check(self, caller: Caller | None, args: Mapping[str, Any], field: str) -> None:
        if caller is None:
            raise Unauthenticated("Not authenticated")
        if caller.role in self.roles:
            return
        if caller.role == "device" and self.device is not None:
            self.device.check(caller, args, field)
            return
        raise Forbidden(f"The {caller.role} role may not use {field}", role=caller.role)


def allow(*roles: str, device: OwnDevice | None = None) -> PermissionExtension:
    """The field extension that enforces ``Rule(*roles, device=device)``."""
    return PermissionExtension(permissions=[Rule(*roles, device=device)], use_directives=False)


def declared_rule(type_: type, python_name: str) -> Rule:
    """The Rule declared on a field, for resolvers that run outside Strawberry's field
    extensions."""
    field = type_.__strawberry_definition__.get_field(python_name)  # type: ignore[attr-defined]
    assert field is not None, python_name
    for extension in field.extensions:
        if isinstance(extension, PermissionExtension):
            for permission in extension.permissions:
                if isinstance(permission, Rule):
                    return permission
    raise LookupError(f"{type_.__name__}.{python_name} declares no Rule")


def _device_ids(value: Any) -> Iterable[Any]:
    if value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        yield value.get("deviceId")
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _device_ids(item)
    else:
        yield getattr(value, "device_id", None)


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
