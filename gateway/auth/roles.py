"""The roles a caller can have. What each may do is declared beside every field and
mutation (``resolvers.permissions``); docs/auth-and-roles.md has the table.

    admin     everything in its tenant, API keys included
    operator  reads; writes devices, assets, shadows (desired and reported), telemetry
    viewer    reads only
    device    one device: reads itself and its shadow, writes its reported state and its
              own telemetry
"""

from __future__ import annotations

ROLES = ("admin", "operator", "viewer", "device")
# Roles that see the whole tenant; a device sees only itself.
TENANT_READERS = ("admin", "operator", "viewer")
# Roles that write anything in the tenant (devices, assets, shadows, telemetry).
TENANT_WRITERS = ("admin", "operator")
