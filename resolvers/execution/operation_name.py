"""A document with several operations must name the one to run.

The GraphQL spec's GetOperation (section 6.1): without an operation name, a document with
exactly one operation runs it; otherwise "produce a query error requiring
operationName". Strawberry runs the first operation instead, over HTTP and WebSocket
alike, so a client that forgot ``operationName`` silently got another operation's answer.
This refuses such a request before execution, as a request error (no ``data``):
BAD_USER_INPUT, HTTP 400 under application/graphql-response+json, the operation's
``error`` message on a WebSocket.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from gateway.errors import BadUserInput

MESSAGE = ("This document has several operations: name the one to run "
           "(`operationName`)")


class OperationNameRequired(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        # Strawberry keeps the name the request gave apart from the one it falls back to
        # (the first operation's); only the former says what the client asked for.
        named = getattr(context, "_provided_operation_name", None)
        if document is not None and named is None and sum(
            isinstance(d, OperationDefinitionNode) for d in document.definitions
        ) > 1:
            # Runs after ValidationCache (which sets the validation errors): the document
            # names no operation to validate or run, so this is the request's one error.
            context.pre_execution_errors = [BadUserInput(MESSAGE, argument="operationName")]
        yield
