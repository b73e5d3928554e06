"""The HTTP edge: how ``switchboard serve`` runs uvicorn (protocol, limits, file descriptors).

``uvicorn_options(config)`` is the one place the server's uvicorn settings come from; the
benchmarks use it for both our app and their bare Starlette baseline, so ratios compare apps,
not servers. See docs/security.md for every limit and its setting.
"""

from __future__ import annotations

import logging
from typing import Any

from server.config import Config
from server.api.edge.protocol import EdgeLimits, EdgeProtocol

log = logging.getLogger("switchboard.edge")

# File descriptors kept free of client connections: the database pool, SQLite files, outgoing
# delivery connections, the log, the listening socket.
RESERVED_FDS = 256


def raise_fd_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit; return the soft limit."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 1 << 20
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20) if soft != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    except (ValueError, OSError):
        return soft


def edge_limits(config: Config) -> EdgeLimits:
    """The limits from the settings, the connection cap lowered to what the fd limit allows."""
    fds = raise_fd_limit()
    cap = config.max_connections
    room = max(fds - RESERVED_FDS, 16)
    if cap > room:
        log.warning("SWITCHBOARD_MAX_CONNECTIONS=%d is more than the file descriptor limit allows (%d); "
                    "using %d", cap, fds, room)
        cap = room
    return EdgeLimits(max_header_bytes=config.max_header_bytes, header_timeout=config.header_timeout,
                      body_timeout=config.body_timeout, max_connections=cap)


def protocol_class(limits: EdgeLimits) -> type[EdgeProtocol]:
    return type("EdgeProtocol", (EdgeProtocol,), {"limits": limits})


class EnvEdgeProtocol(EdgeProtocol):
    """For ``serve --workers N``: uvicorn imports the protocol by name in each process, which
    reads its limits from the same SWITCHBOARD_* environment as the app."""

    from_env = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if not EnvEdgeProtocol.from_env:
            EnvEdgeProtocol.limits = edge_limits(Config.from_env())
            EnvEdgeProtocol.from_env = True
        super().__init__(*args, **kwargs)


def uvicorn_options(config: Config, *, workers: bool = False) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``: our protocol and timeouts."""
    http: Any = "server.api.edge:EnvEdgeProtocol" if workers else protocol_class(edge_limits(config))
    if workers:
        raise_fd_limit()  # inherited by the worker processes
    return {"http": http, "timeout_keep_alive": config.keep_alive_timeout}
