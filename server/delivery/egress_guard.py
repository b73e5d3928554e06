"""The egress rules at connection time: resolve, check every address, connect only to those.

Checking a URL when it is saved is not enough: a name can resolve to a public address when the
admin saves it and to 127.0.0.1 a minute later (DNS rebinding), and rows saved before the rule
existed were never checked. So the transport asks this guard for the addresses to connect to:
the guard refuses local names and internal literals at once, otherwise resolves the name,
refuses the whole request if *any* answer is internal (an attacker's DNS may mix answers), and
hands back the checked addresses. The transport then connects to one of those addresses, never
to the name, so nothing resolves the name a second time. (server/destinations/egress.py has the rules.)

``EgressRefused`` is an ``httpx.ConnectError`` so that code which knows nothing about it sees a
failed connection; the sender recognises it and makes the job a dead letter with the reason
rather than retrying it for hours (the same settings would be refused again).

``resolver`` is a constructor argument so that tests can make a name "resolve" to an internal
address without any DNS traffic and without connecting anywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Awaitable, Callable

import httpx

from server.destinations.egress import ALLOW_HINT, host_refusal, refusal

Resolver = Callable[[str, int], Awaitable[list[str]]]


class EgressRefused(httpx.ConnectError):
    """The target is (or resolves to) an address the egress rules refuse."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves ``host`` to (getaddrinfo, in its thread pool)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressGuard:
    def __init__(self, resolver: Resolver | None = None):
        self.resolver = resolver or system_resolver

    def check_host(self, host: str) -> None:
        """Refuse a local name or an internal literal in any spelling, without resolving anything
        (what can be checked for a target reached through a proxy, which resolves it itself)."""
        why = host_refusal(host)
        if why:
            raise EgressRefused(f"refused by the egress rules: {host} is an internal address ({why}); {ALLOW_HINT}")

    async def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for ``host``, in the resolver's order."""
        self.check_host(host)
        try:
            return [str(ipaddress.ip_address(host))]  # a plain literal (checked above): nothing to resolve
        except ValueError:
            pass
        try:
            found = await self.resolver(host, port)
        except OSError as exc:
            raise httpx.ConnectError(f"could not resolve {host}: {exc}") from exc
        if not found:
            raise httpx.ConnectError(f"could not resolve {host}: no addresses")
        for address in found:
            why = refusal(address)
            if why:
                raise EgressRefused(f"refused by the egress rules: {host} resolves to {address}, an internal "
                                    f"address ({why}); {ALLOW_HINT}")
        return found
