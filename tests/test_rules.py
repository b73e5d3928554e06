"""Segment's per-event routing rules (server/rules.py), as cloud delivery and the debugger apply them."""

from __future__ import annotations

import pytest

from server.rules import integrations_allow, missing_consent

NAMES = ("Mixpanel", "Mixpanel (Actions)")


@pytest.mark.parametrize("integrations, allowed", [
    (None, True), ("junk", True), ({}, True),
    ({"All": False}, False), ({"All": False, "Mixpanel": True}, True), ({"All": False, "Mixpanel (Actions)": {}}, True),
    ({"Mixpanel": False}, False), ({"Mixpanel (Actions)": False}, False), ({"All": True, "Mixpanel": False}, False),
    ({"mixpanel": False}, True),  # names compare exactly, as in Segment
    ({"All": 0}, True),  # only false turns a destination off
])
def test_integrations_option(integrations, allowed):
    assert integrations_allow({"integrations": integrations}, NAMES) is allowed


def _event(preferences=..., consent=...):
    if consent is not ...:
        return {"context": {"consent": consent}}
    return {"context": {"consent": {"categoryPreferences": preferences}}}


@pytest.mark.parametrize("event, needed, missing", [
    ({}, ["Ads"], []),  # no consent object: not gated (server SDKs)
    ({"context": "junk"}, ["Ads"], []),
    (_event(consent={}), ["Ads"], []),
    (_event(None), ["Ads"], []),
    (_event({}), ["Ads"], ["Ads"]),  # preferences sent, nothing granted
    (_event({"Ads": True}), ["Ads"], []),
    (_event({"Ads": "true"}), ["Ads"], ["Ads"]),  # exactly true
    (_event({"ads": True}), ["Ads"], ["Ads"]),  # names compare exactly
    (_event({"Ads": True}), ["Ads", "Analytics"], ["Analytics"]),  # every category
    (_event(["Ads"]), ["Ads", "Analytics"], ["Ads", "Analytics"]),  # malformed preferences grant nothing
    (_event({}), [], []),  # a destination without categories takes everything
])
def test_consent(event, needed, missing):
    assert missing_consent(event, {"consent_categories": needed}) == missing
