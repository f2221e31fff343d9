"""The Strawberry schema: types, field resolvers and the root operations."""
