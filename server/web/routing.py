"""Which of a source's destinations an event goes to, by Segment's rules, for the debugger.

An enabled destination takes an event when its mode accepts the call type and the event's
``integrations`` option does not turn it off (a destination's own name or alias wins over
``All``, which defaults to true) and the visitor consented to each of its ``consent_categories``
(the rule of docs/consent.md, the same in the browser core and in cloud routing: an event without
``context.consent.categoryPreferences`` is not gated) and its filters (docs/filters.md) keep it:
the reason names the filter that dropped or changed it. Device-mode destinations get it from the
bundle's loader in the visitor's browser (whether the vendor's own script loaded is not known
here), cloud-mode ones from Switchboard's delivery workers. A suppressed userId
(a regulation, docs/privacy) is said on every line: later events of that user are not stored.
"""

from __future__ import annotations

from typing import Any

from server.catalog import Catalog
from server.rules import decide


def routed_to(catalog: Catalog, destinations: list[dict[str, Any]], event: dict[str, Any],
              suppressed: str | None = None) -> list[dict[str, Any]]:
    result = []
    call = event.get("type")
    for dest in destinations:
        manifest = catalog.get(dest["slug"])
        if manifest is None:
            continue
        refused, filtered = decide(event, call, dest, manifest)
        if refused:
            routed, why = False, refused
        elif dest["mode"] == "cloud":
            routed, why = True, "sent by Switchboard's server (cloud mode)"
        else:
            # The server only knows that the bundle hands the event to the vendor's loader in the
            # browser; whether the vendor's script (e.g. gtag.js) loaded there is not reported to it.
            routed, why = True, ("handed to its loader in the visitor's browser (device mode); whether the vendor's "
                                 "script loaded there is not reported to this server")
        if routed and filtered:
            why += "; " + "; ".join(filtered)
        if suppressed:
            why += f"; {suppressed}"
        result.append({"id": dest["id"], "name": manifest.name, "mode": dest["mode"], "routed": routed,
                       "reason": why, "filters": filtered, "url": f"/destinations/{dest['id']}"})
    return result
