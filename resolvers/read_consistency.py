"""A mutation, and everything after it in the same request, reads from the primary.

Queries over HTTP may read lag-tolerant data from a store's read replica
(``gateway.stores.read_routing``). A mutation must see its own writes (a device it has
just registered, in the payload it returns), so it pins the request to the primary before
it runs; later operations of a batch then see its writes too. Queries served from their
prepared entry (``resolvers.execution.prepared``) never pass here: that path runs queries
only.
"""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from gateway.stores.read_routing import pin_to_primary


class PrimaryForMutations(SchemaExtension):
    def on_execute(self) -> Iterator[None]:
        # Runs after parsing and validation, just before execution: the type is known.
        if self.execution_context.operation_type is OperationType.MUTATION:
            pin_to_primary()
        yield
