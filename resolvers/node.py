"""The Node interface: what Query.node / Query.nodes return (resolvers/node_lookup.py)."""

from __future__ import annotations

import strawberry


@strawberry.interface(description="An object that can be fetched by its id alone "
                      "(Query.node, Query.nodes): a Device or an Asset. Ids are the objects' "
                      "own UUIDs, as everywhere else in the API.")
class Node:
    id: strawberry.ID
