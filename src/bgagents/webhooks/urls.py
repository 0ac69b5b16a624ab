"""Which URLs may receive webhooks: http(s) only, and not private or loopback addresses unless allowed.

Checked when a subscription is made and again before each try (a name may resolve elsewhere later)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from ..errors import InvalidInput


def check_form(url: str) -> str:
    """The URL's host, or a clear error when it is not an absolute http(s) URL."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook URL '{url}' must be an absolute http:// or https:// URL", code="bad_webhook_url")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InvalidInput(f"webhook URL '{url}' has a bad port", code="bad_webhook_url") from None
    return parts.hostname


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return not ip.is_global or ip.is_multicast


async def check(url: str, allow_private: bool) -> None:
    """Refuses a URL that is not http(s), or whose host is (or resolves to) a private or loopback address."""
    host = check_form(url)
    if allow_private:
        return
    try:
        addresses = [host] if _is_ip(host) else [
            info[4][0] for info in await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)]
    except OSError:
        raise InvalidInput(f"webhook host '{host}' does not resolve", code="bad_webhook_url") from None
    if any(_private(str(a)) for a in addresses):
        raise InvalidInput(f"webhook URL '{url}' points at a private or loopback address; set [webhooks] "
                           "allow_private = true to allow it", code="private_webhook_url")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
