"""The egress rules for the warehouse's PostgreSQL connection, checked when it connects.

The connection URL is checked when it is saved (``"format": "url"`` in the manifest), but a name
can resolve to a public address then and to 127.0.0.1 later (DNS rebinding), and a row saved
before the rule existed was never checked. HTTP destinations are guarded at connection time by
the delivery plane's transport (``server/delivery/egress_guard.py``); the warehouse connects
with psycopg, so it gets the same rule here: resolve each host once, refuse the connection if any
answer is internal, and hand libpq the checked addresses as ``hostaddr`` so that it connects to
those and never resolves the name again (libpq still uses the name for TLS verification).

Refused as well, because each would let libpq reach an address we did not check: a Unix socket
(a host that is a path, or no host at all, which means the local socket), and the ``service``
parameter (a pg_service.conf entry can name any host). With ``SWITCHBOARD_ALLOW_PRIVATE_EGRESS``
nothing is checked.

``resolver`` is an argument so that tests can make a name "resolve" to an internal address
without DNS traffic and without connecting anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Callable

from server.destinations.egress import ALLOW_HINT, host_refusal, refusal

Resolver = Callable[[str, int], list[str]]


class WarehouseEgressRefused(ConnectionError):
    """The warehouse's host is (or resolves to) an address the egress rules refuse."""


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refuse(why: str) -> WarehouseEgressRefused:
    return WarehouseEgressRefused(f"refused by the egress rules: {why}; {ALLOW_HINT}")


def checked_params(params: dict[str, Any], resolver: Resolver = system_resolver) -> dict[str, Any]:
    """``params`` (psycopg's ``conninfo_to_dict`` of the URL) with ``hostaddr`` set to checked
    addresses, one per host; raise WarehouseEgressRefused when any is internal."""
    if params.get("service"):
        raise _refuse("a connection service names hosts that cannot be checked")
    hosts = [h.strip() for h in (params.get("host") or "").split(",")]
    if not any(hosts):
        raise _refuse("no host means the local PostgreSQL socket")
    ports = [p.strip() for p in str(params.get("port") or "5432").split(",")]
    given = [a.strip() for a in (params.get("hostaddr") or "").split(",")] if params.get("hostaddr") else []
    addresses: list[str] = []
    for index, host in enumerate(hosts):
        if not host or host.startswith("/") or host.startswith("@"):
            raise _refuse(f"{host or 'an empty host'} is a local socket")
        why = host_refusal(host)
        if why:
            raise _refuse(f"{host} is an internal address ({why})")
        raw_port = ports[index] if index < len(ports) else ports[-1]
        port = int(raw_port) if raw_port.isdigit() else 5432  # empty: libpq's default; bad: libpq says so
        if given:  # an address the URL gives is what libpq would use: check it instead of the name
            found = [given[index] if index < len(given) else given[-1]]
        else:
            try:
                found = [str(ipaddress.ip_address(host))]
            except ValueError:
                try:
                    found = resolver(host, port)
                except OSError as exc:
                    raise ConnectionError(f"could not resolve {host}: {exc}") from exc
        if not found:
            raise ConnectionError(f"could not resolve {host}: no addresses")
        for address in found:
            try:
                why = refusal(address)
            except ValueError:
                raise _refuse(f"{address} is not an IP address") from None
            if why:
                raise _refuse(f"{host} resolves to {address}, an internal address ({why})")
        addresses.append(found[0])
    return {**params, "hostaddr": ",".join(addresses)}
