"""Where `serve` listens: its sockets are bound before anything else starts, so a bad port, a host that does
not resolve or a port in use is one line at once, not a traceback after the whole runtime has started."""

from __future__ import annotations

import errno
import socket


class ListenError(Exception):
    """Why `serve` cannot listen, in one line."""


def listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Bound (not yet listening) sockets for every address `host` resolves to, as asyncio's `create_server`
    would bind them (IPv6 ones IPv6-only); uvicorn serves on them."""
    if not 1 <= port <= 65535:
        raise ListenError(f"port {port} is not a TCP port: use 1-65535 (--port, or [server] port in config.toml)")
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        raise ListenError(f"cannot listen on host '{host}': it does not resolve ({reason}); use an address "
                          "of this machine, e.g. 127.0.0.1 (--host, or [server] host in config.toml)") from None
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):  # each address once, in order
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(_bind_error(exc, host, port)) from None
    return sockets


def _bind_error(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"port {port} is already in use on {host} (another bgagents serve, or another program); "
                "stop it, or pick another port with --port")
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: ports below 1024 need privileges; pick another port with --port"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: no interface of this machine has the address {host} (--host)"
    return f"cannot listen on {where}: {exc.strerror or exc}"
