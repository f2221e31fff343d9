"""Client-safe errors and their ``extensions.code``.

    GatewayError                    safe to show a client; carries extensions.code
     +-- BadUserInput               BAD_USER_INPUT: malformed or out-of-range arguments
     +-- NotFound                   NOT_FOUND: unknown id, or an id of another tenant
     |    +-- PersistedQueryNotFound   PERSISTED_QUERY_NOT_FOUND: send the document with its hash
     +-- PersistedQueryNotSupported PERSISTED_QUERY_NOT_SUPPORTED: persisted operations are off
     +-- VersionConflict            VERSION_CONFLICT: expectedVersion differs from the current one
     +-- Unauthenticated            UNAUTHENTICATED: no credential, or a bad one
     +-- Forbidden                  FORBIDDEN: the caller's role may not do this
     +-- LimitExceeded              LIMIT_EXCEEDED: a size or cost limit, named in the message
     +-- StoreUnavailable           STORE_UNAVAILABLE: a store failed or timed out; names the store
     +-- ShuttingDown               STORE_UNAVAILABLE: the process is stopping; nothing was stored
     +-- StoreConflict              STORE_UNAVAILABLE: a deadlock or serialization failure; retry

    SettingsError (ValueError)      a setting is missing or malformed; stops the process at start

Anything else raised while executing is masked as INTERNAL
(``resolvers.execution.extensions``);
driver errors are translated at the store boundary (``gateway.stores.base``).
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError


class GatewayError(GraphQLError):
    """Base of every error whose message and code may reach a client."""

    code = "INTERNAL"

    def __init__(self, message: str, **extensions: Any) -> None:
        super().__init__(message, extensions={"code": self.code, **extensions})


class BadUserInput(GatewayError):
    """An argument is malformed or out of range."""

    code = "BAD_USER_INPUT"


class NotFound(GatewayError):
    """No such object in the caller's tenant."""

    code = "NOT_FOUND"


class PersistedQueryNotFound(NotFound):
    """A hash-only request whose document this gateway does not know (Apollo's code)."""

    code = "PERSISTED_QUERY_NOT_FOUND"


class PersistedQueryNotSupported(GatewayError):
    """A hash-only request while persisted operations are off (Apollo's code)."""

    code = "PERSISTED_QUERY_NOT_SUPPORTED"


class VersionConflict(GatewayError):
    """The caller's expected version is not the current one."""

    code = "VERSION_CONFLICT"


class Unauthenticated(GatewayError):
    """No credential, or one that does not verify."""

    code = "UNAUTHENTICATED"


class Forbidden(GatewayError):
    """The caller is authenticated but its role may not do this."""

    code = "FORBIDDEN"


class LimitExceeded(GatewayError):
    """A request exceeds a configured limit; the message names it."""

    code = "LIMIT_EXCEEDED"


class StoreUnavailable(GatewayError):
    """A backing store failed or timed out."""

    code = "STORE_UNAVAILABLE"

    def __init__(self, store: str, detail: str = "") -> None:
        message = f"The {store} store is unavailable"
        super().__init__(f"{message}: {detail}" if detail else message, store=store)
        self.store = store


class StoreConflict(GatewayError):
    """The store rolled this request's transaction back to resolve a conflict with a
    concurrent one (a deadlock, a serialization failure): nothing of it was written, and
    the same request can simply be sent again. Not an outage: breakers ignore it."""

    code = "STORE_UNAVAILABLE"

    def __init__(self, store: str) -> None:
        super().__init__(
            f"The {store} store rolled this request back to resolve a conflict with a "
            "concurrent one; nothing was written: retry it", store=store, retryable=True)
        self.store = store


class ShuttingDown(GatewayError):
    """The process is stopping (SIGTERM) and refuses work it could not finish in time."""

    code = "STORE_UNAVAILABLE"

    def __init__(self, message: str = "The gateway is shutting down; nothing from this "
                 "request was stored. Retry the whole request.") -> None:
        super().__init__(message, shuttingDown=True)


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the key."""
