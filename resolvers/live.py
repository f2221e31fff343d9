"""Subscriptions through the hub: a Schema whose ``stream`` serves ``shadowChanged`` and
``telemetryChanged`` (``resolvers.live_telemetry``) from a shared cohort instead of
running the subscription per connection.

Strawberry's WebSocket handlers (both protocols) call ``schema.stream`` for every
operation. For a subscription we validate the document, resolve its filter for the
caller's tenant, and join the hub's cohort for (tenant, role, document, operation,
variables); each change is then executed once per cohort, with a fresh context (and
fresh loaders) per event. Queries and mutations sent over a WebSocket run as usual, with
loaders fresh per operation rather than per connection.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.execution import Executor, execute_subscription_event
from graphql.execution.values import get_argument_values
from graphql.validation import ASTValidationRule
from strawberry.types.execution import ExecutionResult, PreExecutionError

from gateway.context import Context
from gateway.errors import GatewayError, NotFound, Unauthenticated
from gateway.live.cohorts import Mailbox, Member, ShadowChange
from gateway.live.frames import FrameSink
from gateway.loaders import Loaders
from gateway.stores.base import StoreCalls
from resolvers.execution.cost import CostLimits, check_cost
from resolvers.execution.extensions import client_errors
from resolvers.execution.fragments import SelectionWalk
from resolvers.execution.limits import aliases_rule, depth_rule
from resolvers.live_telemetry import TELEMETRY_FIELD, checked_devices, join_telemetry
from resolvers.permissions import declared_rule
from resolvers.scalars import parse_id
from resolvers.shadows import Shadow, ShadowEvent, ShadowEventKind
from resolvers.subscriptions import Subscription

if TYPE_CHECKING:
    from resolvers.execution.prepared import PreparedQueries

ROOT_FIELD = "shadowChanged"
_SHADOW_CHANGED_RULE = declared_rule(Subscription, "shadow_changed")


@dataclasses.dataclass(frozen=True)
class SubscriptionLimits:
    """The request limits the extension pipeline applies to queries (tokens, depth,
    aliases, cost), for subscription documents, which the hub parses and validates
    itself: a subscriber's document runs once per change for as long as it stays."""

    max_tokens: int
    max_depth: int
    max_aliases: int
    cost: CostLimits

    @property
    def rules(self) -> tuple[type[ASTValidationRule], ...]:
        return (*specified_rules, depth_rule(self.max_depth), aliases_rule(self.max_aliases))


@lru_cache(maxsize=512)
def _parse(query: str, max_tokens: int | None = None) -> DocumentNode:
    return parse(query, max_tokens=max_tokens)


class GatewaySchema(strawberry.Schema):
    # Set by build_schema; None (no limits beyond graphql-core's own) for a bare schema.
    subscription_limits: SubscriptionLimits | None = None
    # Set by build_schema: the queries run again without the extension pipeline.
    prepared: PreparedQueries | None = None

    async def stream(  # type: ignore[override]
        self, query: str | None, variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None, root_value: Any | None = None,
        operation_name: str | None = None, **kwargs: Any,
    ) -> Any:
        operation = _operation(query, operation_name, self._max_tokens)
        if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
            fresh = _fresh(context_value) if isinstance(context_value, Context) else None
            source = await super().stream(
                query, variable_values=variable_values,
                context_value=context_value if fresh is None else fresh,
                root_value=root_value, operation_name=operation_name, **kwargs,
            )
            return source if fresh is None else _releasing(source, fresh.loaders)
        assert query is not None and isinstance(context_value, Context)
        return self._live(query, variable_values, context_value, operation_name)

    async def _live(
        self, query: str, variables: dict[str, Any] | None, context: Context,
        operation_name: str | None,
    ) -> AsyncGenerator[Any, None]:
        executor, errors = self._prepare(query, variables, context, operation_name)
        if executor is None:
            yield PreExecutionError(data=None, errors=client_errors(errors))
            return
        try:
            member = await self._join(executor, query, variables, context, operation_name)
        except GatewayError as error:
            yield PreExecutionError(data=None, errors=client_errors([error]))
            return
        hub = context.hub
        assert hub is not None and isinstance(member, Member)
        try:
            async for result in member:
                yield result
        finally:
            hub.leave(member)

    async def subscribe_frames(
        self, query: str, variables: dict[str, Any] | None, context: Any,
        operation_name: str | None, sink: FrameSink,
    ) -> Mailbox | list[GraphQLError] | None:
        """For the WebSocket handlers: a ``shadowChanged`` subscription joined with
        ``sink``, whose frames the hub then writes (no task per subscriber); the errors
        that refuse it; or None for any other operation, which the handler runs through
        Strawberry as usual (queries, mutations, telemetryChanged, unparsable documents)."""
        operation = _operation(query, operation_name, self._max_tokens)
        if (operation is None or operation.operation is not OperationType.SUBSCRIPTION
                or not isinstance(context, Context)):
            return None
        executor, errors = self._prepare(query, variables, context, operation_name)
        if executor is None:
            return client_errors(errors)
        node = _root_field(executor.operation, document=_parse(query, self._max_tokens))
        if node.name.value != ROOT_FIELD:
            return None
        try:
            return await self._join(executor, query, variables, context, operation_name,
                                    sink)
        except GatewayError as error:
            return client_errors([error])

    def _prepare(
        self, query: str, variables: dict[str, Any] | None, context: Context,
        operation_name: str | None,
    ) -> tuple[Executor | None, list[GraphQLError]]:
        """The subscription's executor, or the errors that refuse it (validation, the
        query limits, variables)."""
        limits = self.subscription_limits
        document = _parse(query, self._max_tokens)  # stream() parsed it with the same limit
        errors = self._validate(query, document)
        if errors:
            return None, errors
        built = Executor.build(self._schema, document, context_value=context,
                               raw_variable_values=variables, operation_name=operation_name)
        if isinstance(built, list):
            return None, built
        if limits is not None:
            try:
                check_cost(self._schema, document, operation_name, variables, limits.cost)
            except GatewayError as error:
                return None, [error]
        return built, []

    def _validate(self, query: str, document: DocumentNode) -> list[GraphQLError]:
        """Validation once per document: it measured half the CPU of a subscribe, and
        10,000 dashboards reconnecting after a restart send a handful of documents."""
        cache: dict[str, list[GraphQLError]] = self.__dict__.setdefault("_validated", {})
        if query not in cache:
            if len(cache) >= 512:
                cache.clear()
            limits = self.subscription_limits
            rules = limits.rules if limits else None
            cache[query] = list(validate(self._schema, document, rules))
        return cache[query]

    def process_errors(self, errors: list[GraphQLError],
                       execution_context: Any | None = None) -> None:
        """Strawberry logs every error with a traceback: ~40 lines per dashboard request
        while a store is down, and one per NOT_FOUND. Client errors are the request's
        outcome (RequestLog writes their codes on the request's line); unexpected ones are
        logged with their stack trace by ErrorCodes, which masks them."""

    @property
    def _max_tokens(self) -> int | None:
        return self.subscription_limits.max_tokens if self.subscription_limits else None

    async def _join(
        self, executor: Executor, query: str, variables: dict[str, Any] | None,
        context: Context, operation_name: str | None, sink: FrameSink | None = None,
    ) -> Mailbox:
        if context.caller is None:
            raise Unauthenticated("Send Authorization in the connection_init payload")
        if context.hub is None:
            raise GatewayError("Live updates are not available on this server")
        node = _root_field(executor.operation, document=_parse(query, self._max_tokens))
        name = node.name.value
        field = self._schema.subscription_type.fields[name]  # type: ignore[union-attr]
        args = get_argument_values(field, node, executor.variable_values)
        caller = context.caller
        key = (caller.tenant_id, caller.role, caller.device_id, query, operation_name,
               json.dumps(variables or {}, sort_keys=True))

        async def run(payload: object) -> ExecutionResult:
            per_event = executor.build_per_event_executor(payload)
            # graphql-core 3.3 copies the executor shallowly, so the copy shared the
            # subscription's memo of collected sub-fields (keyed by list identity, the lists
            # kept alive): it grew by every event for the subscription's whole life (the
            # soak's live objects: ~700 CollectedFields a minute). A memo per event instead.
            if hasattr(per_event, "_relevant_sub_fields"):
                per_event._relevant_sub_fields = {}
            event_context = _fresh(context)  # loaders per event, not per socket
            per_event.context_value = event_context
            try:
                result = execute_subscription_event(per_event)
                if inspect.isawaitable(result):
                    result = await result
            finally:
                event_context.loaders.release()
            # Serialized once per (cohort, change): every member's frame embeds these bytes
            # as they are (orjson.Fragment; the WebSocket, SSE and multipart writers all
            # encode with orjson), instead of encoding the same dict per subscriber, and
            # the cohort keeps one untracked bytes object per result for its 10 s, not a
            # tree of dicts the garbage collector walks.
            data = None if result.data is None else orjson.Fragment(orjson.dumps(result.data))
            return ExecutionResult(
                data=data,  # type: ignore[arg-type]
                errors=client_errors(result.errors) if result.errors else None,
            )

        if name == TELEMETRY_FIELD:
            return await join_telemetry(context, args, key, run)
        # The hub never calls the field's resolver: its declared rule is checked here.
        _SHADOW_CHANGED_RULE.check(
            caller, {"device_ids": args.get("deviceIds"), "asset_id": args.get("assetId")},
            ROOT_FIELD)
        devices, asset_id = await _filter(context, args)

        async def execute(change: ShadowChange, kind: str) -> ExecutionResult:
            return await run(_payload(change, kind))

        return await context.hub.join(
            key, caller.tenant_id, devices=devices, asset_id=asset_id, execute=execute,
            sink=sink,
        )


async def _filter(context: Context, args: dict[str, Any]) -> tuple[set[UUID] | None, UUID | None]:
    """The devices a subscription watches (None: the whole tenant), checked against the
    caller's tenant: an id of another tenant is NOT_FOUND."""
    stores = context.stores
    if args.get("deviceIds") is not None:
        return await checked_devices(context, args["deviceIds"], "deviceIds"), None
    if args.get("assetId") is not None:
        asset_id = parse_id(args["assetId"], "assetId")
        if (await stores.assets.assets_by_ids(context.tenant_id, [asset_id]))[0] is None:
            raise NotFound(f"No asset {asset_id}", argument="assetId")
        return None, asset_id
    return None, None


def _payload(change: ShadowChange, kind: str) -> ShadowEvent:
    return ShadowEvent(
        kind=ShadowEventKind(kind), device_id=strawberry.ID(str(change.device_id)),
        version=change.version,
        shadow=Shadow.from_doc(change.doc) if change.doc is not None else None,
        at=change.at,
    )


async def _releasing(source: AsyncGenerator[Any, None],
                     loaders: Loaders) -> AsyncGenerator[Any, None]:
    """A query or mutation over a WebSocket drops its loaded rows once answered, as an
    HTTP request does (``gateway.http.graphql``), instead of leaving them to the cyclic
    collector with graphql-core's execution context."""
    try:
        async for result in source:
            loaders.release()  # the result is built: nothing reads the loaders any more
            yield result
    finally:
        loaders.release()
        await source.aclose()


def _fresh(context: Context) -> Context:
    assert context.caller is not None
    return dataclasses.replace(
        context, loaders=Loaders(context.stores, context.caller.tenant_id),
        calls=StoreCalls(), now=datetime.now(UTC),
    )


def _operation(query: str | None, name: str | None,
               max_tokens: int | None) -> OperationDefinitionNode | None:
    if not query:
        return None
    try:
        return get_operation_ast(_parse(query, max_tokens), name)
    except GraphQLError:
        return None  # Strawberry reports syntax errors (and the token limit) itself


def _root_field(operation: OperationDefinitionNode, document: DocumentNode) -> FieldNode:
    """The subscription's single root field (validation guarantees there is one)."""
    walk: SelectionWalk[None, FieldNode | None] = SelectionWalk(
        document, field=lambda node, _: node, empty=None,
        combine=lambda found: next((node for node in found if node is not None), None))
    node = walk.selections(operation.selection_set, None)
    assert node is not None
    return node
