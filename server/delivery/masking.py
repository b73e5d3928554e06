"""Secret settings masked out of what delivery shows: records of requests and responses.

The sender redacts each request's secrets before it stores an attempt, and the vendor's answer
too, as vendors may echo a header or a key back (server/delivery/sender.py). What is shown (the
admin API's stats and dead letters, the web app's destination page) is masked again with the
destination's *current* secrets: that also covers a translator that does not list every secret,
and records stored before a secret was changed.
"""

from __future__ import annotations

from typing import Any

from server.catalog import Manifest
from server.delivery.sender import redact


def secret_texts(manifest: Manifest | None, destination: dict[str, Any]) -> list[str]:
    """The destination's secret values as they may appear in a record, longest first."""
    texts: list[str] = []
    for setting in manifest.settings if manifest else ():
        value = destination["settings"].get(setting.key)
        if setting.secret and value:
            for v in (value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]):
                texts.append(str(v))
                # "Bearer <token>": a vendor may echo the token alone.
                texts.extend(w for w in str(v).split()[1:] if len(w) >= 8)
    return sorted(texts, key=len, reverse=True)  # longest first: a secret inside another goes second


def _walk(value: Any, secrets: list[str]) -> Any:
    # Only inside strings: a secret of digits must not turn a count or a time into "********".
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _walk(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_walk(v, secrets) for v in value]
    return value


def masked(value: Any, manifest: Manifest | None, destination: dict[str, Any]) -> Any:
    """``value`` (JSON-ready) with every secret setting's text of ``destination`` replaced."""
    secrets = secret_texts(manifest, destination)
    return _walk(value, secrets) if secrets else value
