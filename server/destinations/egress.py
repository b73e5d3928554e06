"""Egress rules: which addresses a destination may reach (``SWITCHBOARD_ALLOW_PRIVATE_EGRESS``).

Destinations are configured by admins, but the addresses they name are reached *from inside*
the server's network: a webhook URL of ``http://169.254.169.254/`` would read the cloud's
metadata service, ``http://127.0.0.1:5432`` probes the database, and the Event Tester and dead
letters would show the answers. So by default a destination may not reach loopback, private,
link-local, carrier-grade NAT, unique-local, unspecified, multicast or otherwise reserved
addresses, however they are spelled.

Two checks use this module (docs/security.md):

- at save time, ``check_url`` looks at the host of every URL-typed setting: IP literals in
  every spelling ``inet_aton`` and browsers accept (``2130706433``, ``0177.0.0.1``, ``0x7f.1``,
  ``127.1``, ``[::ffff:127.0.0.1]``), and the names that always mean this machine
  (``localhost``, ``*.localhost``). Names are not resolved here: a DNS query at save time
  would prove nothing (the answer may change) and would send packets the admin didn't ask for.
- at connection time the delivery transport resolves the name, checks *every* address with
  ``refusal`` and connects only to an address it checked, so DNS rebinding can't get around it.

A kernel module (no plane imports): the catalog and the delivery transport both use it, and
server/config.py checks ``SWITCHBOARD_PUBLISH_WEBHOOK`` with ``host_refusal`` at start-up.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import unquote, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_HINT = "set SWITCHBOARD_ALLOW_PRIVATE_EGRESS=true to allow internal addresses"

# (network, what people call it), checked in order; anything else that Python does not
# consider globally reachable is "reserved for special use".
_NAMED = [
    (ipaddress.ip_network(net), label) for net, label in (
        ("0.0.0.0/8", "unspecified"),
        ("127.0.0.0/8", "loopback"),
        ("10.0.0.0/8", "private"),
        ("172.16.0.0/12", "private"),
        ("192.168.0.0/16", "private"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("100.64.0.0/10", "carrier-grade NAT"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("fc00::/7", "unique-local"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    )
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


class PrivateAddressError(ValueError):
    """A destination would reach an address the egress rules refuse; the message says which."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, IPv4-compatible)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):  # 64:ff9b::a.b.c.d, ::a.b.c.d
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal(ip: IPAddress | str) -> str | None:
    """Why ``ip`` may not be reached ("loopback", "private" …), or None when it may."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            return refusal(inner)
    for network, label in _NAMED:
        if ip.version == network.version and ip in network:
            return label
    if not ip.is_global or ip.is_reserved:
        return "reserved for special use"
    return None


def _ipv4_part(text: str) -> int:
    """One dotted part as inet_aton reads it: 0x.. hex, 0.. octal, else decimal."""
    if not text:
        raise ValueError("empty part")
    if text[:2].lower() == "0x":
        return int(text[2:] or "0", 16)
    if len(text) > 1 and text[0] == "0":
        return int(text[1:], 8)
    if not text.isdigit():
        raise ValueError("not a number")
    return int(text)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells, in any form the C library or a browser accepts, or None for a name.

    IPv4 as ``inet_aton`` reads it: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x),
    the last part filling the remaining bytes (``127.1``, ``2130706433``, ``0x7f.0.0.1``).
    IPv6 with or without brackets, with or without a zone id.
    """
    host = host.strip().rstrip(".") if host.strip() not in (".", "") else host
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return None
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    try:
        numbers = [_ipv4_part(p) for p in parts]
    except ValueError:
        return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)


def host_refusal(host: str) -> str | None:
    """Why a URL's host is refused before any lookup (an internal literal or a local name)."""
    name = host.strip().lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return "loopback (a name for this machine)"
    ip = parse_ip_literal(name)
    return refusal(ip) if ip is not None else None


def url_host(url: str) -> str | None:
    """The host part of an absolute URL (brackets kept off), or None when there is none."""
    try:
        parts = urlsplit(url.strip())
        netloc = parts.netloc.rsplit("@", 1)[-1]
    except ValueError:
        return None
    if not netloc:
        return None
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")] if "]" in netloc else netloc[1:]
    return netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc


def check_url(url: str) -> None:
    """Raise ``PrivateAddressError`` when ``url``'s host is an internal address or a local name."""
    host = url_host(url)
    if host is None:
        return
    why = host_refusal(unquote(host))
    if why:
        raise PrivateAddressError(f"{host} is an internal address ({why}); destinations may only reach "
                                  f"public addresses ({ALLOW_HINT})")
