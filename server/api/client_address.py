"""The client address of a request: one rule for every part that keys on it.

Without ``SWITCHBOARD_TRUST_PROXY`` it is the TCP peer: nothing the client writes can change it.

With it, the server sits behind a proxy of ours that *appends* the address it saw to
``X-Forwarded-For``. Everything to the left of that entry was written by the client and proves
nothing, so the rule is the **rightmost** entry: the one untrusted address our proxy vouches for.
Taking the first entry (as sign-in throttling once did) lets a client pick any address it likes:
a fresh one per request to dodge a throttle, or the admin's to lock the admin out. Several
headers count as one list (RFC 9110 folding), so a second ``X-Forwarded-For`` can't win either.

The collector stores this address in ``context.ip``; sign-in throttling counts failures by it.
"""

from __future__ import annotations


def client_address(peer: str | None, forwarded_for: str, trust_proxy: bool) -> str | None:
    """``peer``: the socket's remote host; ``forwarded_for``: every X-Forwarded-For value, joined by ','."""
    if trust_proxy and forwarded_for:
        last = forwarded_for.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return peer


def forwarded_for(headers: list[tuple[bytes, bytes]]) -> str:
    """All ``X-Forwarded-For`` values of raw ASGI headers, joined in order (repeated headers fold)."""
    values = [value for name, value in headers if name == b"x-forwarded-for"]
    return b",".join(values).decode("latin-1")
