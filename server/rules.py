"""Segment's per-event routing rules, shared by cloud delivery, the warehouse loader and the
debugger's "routed to".

Two rules decide whether an event may go to a destination (besides its mode and call types):

- ``integrations``: ``All`` (default true) is the default for every destination; a key equal to
  the destination's name or one of its aliases overrides it; only ``false`` turns it off.
- consent (docs/consent.md): a destination with ``consent_categories`` takes the event only when
  ``context.consent.categoryPreferences`` grants each of them exactly ``true``. No preferences at
  all (server-side SDKs, clients that know nothing of consent) means "not gated", as Segment
  documents; preferences that are there but not an object grant nothing (a client that sends
  consent is gated by it, and a malformed answer is not a yes).

The browser core applies the same rules in JavaScript (js_templates/core). Planes import this
module, never each other.
"""

from __future__ import annotations

from typing import Any, Iterable

from server.catalog import CONSENT_KEY


def integrations_allow(event: dict[str, Any], names: Iterable[str]) -> bool:
    options = event.get("integrations")
    if not isinstance(options, dict):
        return True
    for name in names:
        if name in options:
            return options[name] is not False
    return options.get("All", True) is not False


def missing_consent(event: dict[str, Any], settings: dict[str, Any] | None) -> list[str]:
    """The destination's consent categories this event does not grant; [] when it may go."""
    needed = (settings or {}).get(CONSENT_KEY) or []
    if not needed:
        return []
    context = event.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    preferences = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    if preferences is None:
        return []
    if not isinstance(preferences, dict):
        return list(needed)
    return [name for name in needed if preferences.get(name) is not True]


def why_not_routed(event: dict[str, Any], call: str, destination: dict[str, Any], manifest: Any) -> str | None:
    """The routing decision, in one place: why ``destination`` (``enabled``, ``mode``,
    ``settings``) does not get this ``call``, or None when it does. Cloud delivery
    (server/delivery/router.py) and the debugger (server/web/routing.py) both ask this."""
    if not destination["enabled"]:
        return "destination is disabled"
    if call not in manifest.methods.get(destination["mode"], ()):
        return f"{destination['mode']} mode does not take {call} calls"
    if not integrations_allow(event, manifest.integration_names):
        return "turned off by the event's integrations option"
    missing = missing_consent(event, destination.get("settings"))
    if missing:
        return f"the visitor has not consented to {', '.join(missing)}"
    return None
