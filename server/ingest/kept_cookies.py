"""Server-set cookies: ``POST {collector}/keep`` sets the visitor's id cookies again from the
collector's own response (docs/bundle.md, "Server-set cookies").

Safari caps cookies written by a page's scripts (``document.cookie``) at 7 days, so a visitor who
comes back after a week is counted as a new one; cookies set by a server's ``Set-Cookie`` keep
their max-age. A source with ``server_cookies`` on gets a bundle that, once a day, posts here
with ``credentials: "include"``: the browser sends this site's cookies along (the collector's
host shares the site's domain, so the core's cookies, written on that domain, reach it), and the
answer sets the named ones again with the attributes the core writes them with.

The request, a JSON object (text/plain, so no preflight)::

    {"writeKey", "domain", "names": [...], "path", "sameSite", "secure", "maxage" (days)}

- ``domain``: the domain the core writes its cookies to (its load option, or the widest one the
  browser accepts; "" for a host-only cookie). Both the page's ``Origin`` and this request's
  ``Host`` must be on it, or the browser would drop the cookie anyway: answered 400.
- ``names``: the cookies to set again (the core's id cookies; load options may rename them).
  Only values the browser sent are echoed, unchanged: this endpoint cannot set a value a script
  of the site could not already set, and never sees one from another site.
- The answer: ``200 {"kept": [names set]}``, ``Cache-Control: no-store``, CORS with the page's
  origin and credentials (server/ingest/cors.py).

Refused: a source without the setting (403 ``server_cookies_off``), no ``Origin`` header (400
``origin_required``), anything malformed (400 ``invalid_keep_request``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from server.errors import ApiError
from server.ingest.keys import SettingsKeyed
from server.store import workspace

BODY_LIMIT = 4096
MAX_NAMES = 3
MAX_AGE_DAYS = 400  # what browsers keep at most (Chromium caps a cookie's lifetime there)
_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")  # an RFC 6265 cookie name
_VALUE = re.compile(r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{1,4096}$")  # cookie-octets
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,=:@%/-]{0,200}$")
_SAME_SITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


class KeepSources(SettingsKeyed[bool]):
    """Write key → whether its source has server-set cookies on, read once per change."""

    def __init__(self, engine: Engine, *, ttl: float = 2.0, max_entries: int = 10_000):
        super().__init__(engine, ttl=ttl, max_entries=max_entries)

    async def enabled(self, write_key: str) -> bool:
        hit, on = self.cached(write_key)
        if hit:
            return bool(on)
        return await run_in_threadpool(self._load, write_key)

    def _load(self, write_key: str) -> bool:
        generation = self._generation
        source = workspace.public_config(self.engine, write_key)
        return self._keep(write_key, generation, bool(source and source.get("server_cookies")))


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_keep_request", message)


def _on(host: str, domain: str) -> bool:
    return host == domain or host.endswith("." + domain)


def host_of(authority: str) -> str:
    """A Host header's host name, lower case, without the port (IPv6 in brackets kept)."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority.split("]")[0] + "]"
    return authority.rsplit(":", 1)[0] if authority.count(":") == 1 else authority


def request_cookies(header: str) -> dict[str, str]:
    """A Cookie header's pairs; the first of a name wins, as the core's reader does."""
    found: dict[str, str] = {}
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name and name not in found:
            found[name] = value.strip()
    return found


def set_cookies(body: Any, origin: str, host: str, cookie_header: str) -> tuple[list[str], list[tuple[bytes, bytes]]]:
    """The names kept and their ``Set-Cookie`` headers for a valid request (else a 400)."""
    if type(body) is not dict:
        raise _bad("Send a JSON object: {writeKey, domain, names, path, sameSite, secure, maxage}")
    try:
        origin_host = (urlsplit(origin).hostname or "") if origin else ""
    except ValueError:  # e.g. "http://[::1": not a URL a browser sends
        raise _bad("The Origin header is not an origin") from None
    if not origin_host:
        raise ApiError(400, "origin_required", "Only a page may ask for its cookies: send the Origin header")
    domain, names = body.get("domain", ""), body.get("names")
    if type(domain) is not str or (domain and not _DOMAIN.match(domain.lower())):
        raise _bad("domain must be the cookies' domain (e.g. example.com), or \"\" for a host-only cookie")
    domain = domain.lower().lstrip(".")
    if domain:
        if not (_on(origin_host, domain) and _on(host, domain)):
            raise _bad(f"The page ({origin_host}) and the collector ({host}) must both be on {domain}: "
                       "serve the collector from a host of the site's domain")
    elif origin_host != host:
        raise _bad(f"A host-only cookie needs the page and the collector on one host ({origin_host}, {host})")
    if type(names) is not list or not 0 < len(names) <= MAX_NAMES or not all(
            type(n) is str and _TOKEN.match(n) for n in names):
        raise _bad(f"names must be 1 to {MAX_NAMES} cookie names")
    path, same_site = body.get("path", "/"), body.get("sameSite", "Lax")
    if type(path) is not str or not _PATH.match(path):
        raise _bad("path must be a URL path")
    if type(same_site) is not str or same_site.lower() not in _SAME_SITE:
        raise _bad("sameSite must be Lax, Strict or None")
    secure, days = body.get("secure", False), body.get("maxage", 365)
    if type(secure) is not bool:
        raise _bad("secure must be true or false")
    if type(days) not in (int, float) or not 0 < days <= 10_000:
        raise _bad("maxage must be a number of days")
    attributes = (f"; Path={path}; Max-Age={int(min(days, MAX_AGE_DAYS) * 86400)}; SameSite={_SAME_SITE[same_site.lower()]}"
                  + (f"; Domain={domain}" if domain else "") + ("; Secure" if secure else ""))
    sent, kept, headers = request_cookies(cookie_header), [], []
    for name in dict.fromkeys(names):
        value = sent.get(name, "")
        if _VALUE.match(value):
            kept.append(name)
            headers.append((b"set-cookie", f"{name}={value}{attributes}".encode("latin-1")))
    return kept, headers
