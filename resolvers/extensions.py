"""Schema extensions: error codes and masking, and the store-call trace."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import MaskErrors, SchemaExtension

from gateway.errors import GatewayError

log = logging.getLogger("gateway.errors")


def _client_safe(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, GatewayError):
        return True
    # Raised while coercing variables or literals (before any field ran): bad input.
    return error.path is None


class ErrorCodes(MaskErrors):
    """Keeps client-safe errors (with a code), masks the rest as INTERNAL after logging
    them with their stack trace."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=self._mask, error_message="Internal server error")

    @staticmethod
    def _mask(error: GraphQLError) -> bool:
        if _client_safe(error):
            if not (error.extensions or {}).get("code"):
                # Parse, validation and coercion errors: the request itself is wrong.
                error.extensions = {**(error.extensions or {}), "code": "BAD_USER_INPUT"}
            return False
        log.error("unexpected error at %s", error.path, exc_info=error.original_error)
        return True

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL"}
        return masked


class StoreCallTrace(SchemaExtension):
    """Adds ``extensions.storeCalls`` when the request asked for it (X-IoTSphere-Trace: 1)."""

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        if getattr(context, "trace", False):
            return {"storeCalls": context.calls.as_dict()}
        return {}
