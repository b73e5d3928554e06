"""Intercom REST API (Bearer access token, ``Intercom-Version: 2.11``).

identify → search the contact by ``external_id`` (else email), then ``PUT /contacts/{id}``
when found or ``POST /contacts`` when not (a second identify updates, never 409s).
track → ``POST /events`` with flat metadata (revenue → ``price {amount: cents, currency}``).
group → ``POST /companies``, then, for a known user, find the contact and attach the company.
page, screen and alias are not sent. Each follow-up is a pure function of the previous answer.
"""

from __future__ import annotations

from typing import Any

from server.destinations.request import (
    OutgoingRequest, event_time, parse_time, properties, scalars, traits, user_id,
)

HOSTS = {"us": "https://api.intercom.io", "eu": "https://api.eu.intercom.io", "au": "https://api.au.intercom.io"}
VERSION = "2.11"
STANDARD = {"email", "name", "phone", "avatar", "createdAt", "firstName", "lastName", "id", "company"}
COMPANY_FIELDS = {"name": "name", "plan": "plan", "monthly_spend": "monthlySpend", "size": "employees",
                  "website": "website", "industry": "industry"}


class _Api:
    def __init__(self, settings: dict[str, Any], key: str | None):
        self.base = HOSTS.get(settings.get("region") or "us", HOSTS["us"])
        self.token = settings["access_token"]
        self.key = key

    def request(self, method: str, path: str, body: Any, then=None) -> OutgoingRequest:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                   "Accept": "application/json", "Intercom-Version": VERSION}
        return OutgoingRequest(method, self.base + path, headers, json=body, idempotency_key=self.key,
                               secrets=(self.token,), then=then)

    def search(self, event: dict[str, Any], then) -> OutgoingRequest | None:
        uid, email = user_id(event), traits(event).get("email")
        if uid:
            query = {"field": "external_id", "operator": "=", "value": uid}
        elif email:
            query = {"field": "email", "operator": "=", "value": email}
        else:
            return None
        return self.request("POST", "/contacts/search", {"query": query}, then=then)


def _found_id(body: Any) -> str | None:
    data = body.get("data") if isinstance(body, dict) else None
    return str(data[0]["id"]) if data and isinstance(data[0], dict) and data[0].get("id") else None


def contact_body(event: dict[str, Any]) -> dict[str, Any]:
    found = traits(event)
    body: dict[str, Any] = {"role": "user"}
    if user_id(event):
        body["external_id"] = user_id(event)
    name = found.get("name") or " ".join(str(found[k]) for k in ("firstName", "lastName") if found.get(k))
    for key, value in (("email", found.get("email")), ("name", name), ("phone", found.get("phone")),
                       ("avatar", found.get("avatar"))):
        if value:
            body[key] = value
    created = parse_time(found.get("createdAt"))
    if created:
        body["signed_up_at"] = int(created.timestamp())
    custom = scalars({k: v for k, v in found.items() if k not in STANDARD})
    if custom:
        body["custom_attributes"] = custom
    return body


def translate(event: dict[str, Any], settings: dict[str, Any]) -> list[OutgoingRequest]:
    kind = event.get("type")
    api = _Api(settings, event.get("messageId"))
    if kind == "identify":
        body = contact_body(event)

        def upsert(status: int, found: Any) -> list[OutgoingRequest]:
            contact = _found_id(found)
            if contact:
                return [api.request("PUT", f"/contacts/{contact}", body)]
            return [api.request("POST", "/contacts", body)]

        search = api.search(event, upsert)
        return [search] if search else []
    if kind == "track":
        uid, email = user_id(event), traits(event).get("email")
        if not uid and not email:
            return []
        props = properties(event)
        metadata = scalars({k: v for k, v in props.items() if k not in ("revenue", "currency")})
        if isinstance(props.get("revenue"), (int, float)):
            metadata["price"] = {"amount": round(props["revenue"] * 100), "currency": props.get("currency") or "USD"}
        body = {"event_name": event.get("event"), "created_at": int(event_time(event).timestamp()), "metadata": metadata}
        body.update({"user_id": uid} if uid else {"email": email})
        return [api.request("POST", "/events", body)]
    if kind == "group" and event.get("groupId"):
        found = traits(event)
        company = {"company_id": str(event["groupId"])}
        company.update({k: found[v] for k, v in COMPANY_FIELDS.items() if found.get(v) not in (None, "")})

        def attach(status: int, created: Any) -> list[OutgoingRequest]:
            company_id = created.get("id") if isinstance(created, dict) else None
            if not company_id:
                return []

            def to_contact(status: int, result: Any) -> list[OutgoingRequest]:
                contact = _found_id(result)
                return [api.request("POST", f"/contacts/{contact}/companies", {"id": company_id})] if contact else []

            search = api.search(event, to_contact)
            return [search] if search else []

        return [api.request("POST", "/companies", company, then=attach if user_id(event) else None)]
    return []
