"""What ``iotsphere serve`` tells the person who started it, once the port is bound."""

from __future__ import annotations

import ipaddress

from gateway.settings import Settings

# Addresses that mean "every interface": a browser cannot open them, loopback it can.
_ANY = {"", "0.0.0.0", "::"}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(host: str, port: int) -> str:
    """A URL a browser on this machine can open for a server listening on ``host``."""
    if host in _ANY:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def banner(settings: Settings, port: int, dev_key: str | None) -> str:
    url = base_url(settings.host, port)
    where = " (every interface)" if settings.host in _ANY else ""
    lines = [f"  IoTSphere Gateway ({settings.env}) listening on {url}{where}"]
    if settings.production:
        lines.append(f"  GraphQL:   {url}/graphql  (POST or WebSocket, with "
                     "'Authorization: Bearer <API key>'; GraphiQL is off in production)")
    else:
        lines.append(f"  GraphiQL:  {url}/graphql")
    if dev_key:
        lines.append(f"  Admin key (demo tenant, embedded mode only; prefilled in GraphiQL "
                     f"for browsers on this machine): {dev_key}")
    return "\n" + "\n".join(lines) + "\n"


def exposure_warning(settings: Settings) -> str | None:
    """A warning when embedded mode (development stores, a demo admin key) listens beyond
    this machine; None otherwise."""
    if not settings.embedded or _is_loopback(settings.host):
        return None
    return (
        f"warning: embedded mode listens on {settings.host or '0.0.0.0'}, reachable from other "
        "machines. Its stores and demo tenant are for development; the admin key is prefilled "
        "in GraphiQL only for browsers on this machine. Use --host 127.0.0.1 (the default) "
        "unless you mean it."
    )
