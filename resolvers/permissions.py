"""Who may call a field, declared beside it with ``permission_classes``.

For now one rule: only writer roles (admin, operator) may call mutations; every role
reads its own tenant. The security issue refines roles per field (devices, API keys).
"""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission

from gateway.auth import require_writer


class Writer(BasePermission):
    """admin and operator; anyone else gets FORBIDDEN naming their role."""

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        require_writer(info.context.caller)
        return True
