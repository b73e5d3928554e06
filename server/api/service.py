"""What the admin API, the CLI and the web app do to the workspace, in one place.

Each function validates with the catalog's one validator, writes through the store, and
returns JSON-ready dicts with secrets masked. Errors are ``ApiError``s that the API and the
web app show as they are (status, code, message, field).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from server.api import library_name
from server.catalog import Catalog, Manifest, SettingsError, mask_secrets, merge_settings, validate_settings
from server.errors import ApiError
from server.store import workspace
from server.store.workspace import NotFound

# Tries of a read-merge-write that another edit overtook (update_destination); each lost try
# means another edit was saved, so running out takes a burst of edits to one destination.
MERGE_ATTEMPTS = 20


def _not_found(exc: NotFound) -> ApiError:
    return ApiError(404, "not_found", f"No {exc.args[0]}")


def _manifest(catalog: Catalog, slug: Any) -> Manifest:
    manifest = catalog.get(slug) if isinstance(slug, str) else None
    if manifest is None:
        raise ApiError(422, "unknown_destination", f"{slug!r} is not in the catalog", field="slug")
    return manifest


def _hide_secret(manifest: Manifest, settings: Any, error: dict[str, str]) -> str:
    # The validator quotes bad values; a secret is write-only even when it is malformed.
    setting = manifest.setting(error["field"])
    value = settings.get(error["field"]) if isinstance(settings, dict) else None
    if setting is not None and setting.secret and isinstance(value, str) and value.strip():
        return error["message"].replace(repr(value.strip()), "(hidden)").replace(value.strip(), "(hidden)")
    return error["message"]


def _settings_error(exc: SettingsError, manifest: Manifest, settings: Any, prefix: str = "settings.") -> ApiError:
    # "mode" and "settings" (not an object) are body fields; the rest are keys inside settings.
    errors = [{"field": e["field"] if e["field"] in ("mode", "settings") else prefix + e["field"],
               "message": _hide_secret(manifest, settings, e)} for e in exc.errors]
    # A problem with its own code (private_address, invalid_header, invalid_template) names it.
    code = exc.errors[0].get("code", "validation_error")
    for error, original in zip(errors, exc.errors):
        if "code" in original:
            error["code"] = original["code"]
    return ApiError(422, code, errors[0]["message"], field=errors[0]["field"], extra={"errors": errors})


def source_json(source: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": source["id"],
        "name": source["name"],
        "slug": source["slug"],
        "write_key": source["write_key"],
        "enabled": source["enabled"],
        "settings_version": source["settings_version"],
        "library_name": library_name.effective(source.get("library_name")),
        "server_cookies": bool(source.get("server_cookies")),
        "created_at": source["created_at"].isoformat(),
        "updated_at": source["updated_at"].isoformat(),
    }


def destination_json(catalog: Catalog, dest: dict[str, Any]) -> dict[str, Any]:
    manifest = catalog.get(dest["slug"])
    settings = mask_secrets(manifest, dest["settings"]) if manifest else {}
    return {
        "id": dest["id"],
        "source_id": dest["source_id"],
        "slug": dest["slug"],
        "name": manifest.name if manifest else dest["slug"],
        "mode": dest["mode"],
        "enabled": dest["enabled"],
        "settings": settings,
        "created_at": dest["created_at"].isoformat(),
        "updated_at": dest["updated_at"].isoformat(),
    }


def _text(value: Any, field: str, *, max_length: int = 200) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError(422, "validation_error", f"{field} must be non-empty text", field=field)
    if len(value) > max_length:
        raise ApiError(422, "validation_error", f"{field} must be at most {max_length} characters", field=field)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        # PostgreSQL cannot store NUL in text, and no name needs control characters.
        raise ApiError(422, "validation_error", f"{field} must not contain control characters", field=field)
    return value.strip()


def token_name(body: dict[str, Any]) -> str:
    return _text(body.get("name", "api"), "name")


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ApiError(422, "validation_error", f"{field} must be true or false", field=field)
    return value


# ---------------------------------------------------------------- sources


def create_source(engine: Engine, body: dict[str, Any], actor: str) -> dict[str, Any]:
    name = _text(body.get("name"), "name")
    return source_json(workspace.create_source(engine, name, actor=actor))


def get_source(engine: Engine, source_id: int) -> dict[str, Any]:
    try:
        return source_json(workspace.get_source(engine, source_id))
    except NotFound as exc:
        raise _not_found(exc) from None


def update_source(engine: Engine, source_id: int, body: dict[str, Any], actor: str) -> dict[str, Any]:
    unknown = set(body) - {"name", "enabled", "library_name", "server_cookies"}
    if unknown:
        field = sorted(unknown)[0]
        raise ApiError(422, "validation_error", f"{field} cannot be changed here", field=field)
    name = _text(body["name"], "name") if "name" in body else None
    enabled = _bool(body["enabled"], "enabled") if "enabled" in body else None
    extra: dict[str, Any] = {}
    if "server_cookies" in body:
        extra["server_cookies"] = _bool(body["server_cookies"], "server_cookies")
    if "library_name" in body:
        try:
            extra["library_name"] = library_name.clean(body["library_name"])
        except library_name.LibraryNameError as exc:
            raise ApiError(422, "validation_error", str(exc), field="library_name") from None
    try:
        return source_json(workspace.update_source(engine, source_id, name=name, enabled=enabled, actor=actor, **extra))
    except NotFound as exc:
        raise _not_found(exc) from None


# ---------------------------------------------------------------- destinations


def add_destination(
    engine: Engine, catalog: Catalog, source_id: int, body: dict[str, Any], actor: str, *,
    allow_private_egress: bool = False,
) -> dict[str, Any]:
    manifest = _manifest(catalog, body.get("slug"))
    mode = body.get("mode", manifest.default_mode)
    if mode not in manifest.modes:
        raise ApiError(422, "validation_error", f"{manifest.name} supports {' and '.join(manifest.modes)} mode",
                       field="mode")
    enabled = _bool(body.get("enabled", False), "enabled")
    try:
        settings = validate_settings(manifest, body.get("settings", {}), mode, enabled=enabled,
                                     allow_private_egress=allow_private_egress)
    except SettingsError as exc:
        raise _settings_error(exc, manifest, body.get("settings")) from None
    try:
        dest = workspace.add_destination(
            engine, source_id, slug=manifest.slug, mode=mode, enabled=enabled, settings=settings, actor=actor,
            label=manifest.name,
        )
    except NotFound as exc:
        raise _not_found(exc) from None
    return destination_json(catalog, dest)


def get_destination(engine: Engine, catalog: Catalog, destination_id: int) -> dict[str, Any]:
    try:
        return destination_json(catalog, workspace.get_destination(engine, destination_id))
    except NotFound as exc:
        raise _not_found(exc) from None


def update_destination(
    engine: Engine, catalog: Catalog, destination_id: int, body: dict[str, Any], actor: str, *,
    allow_private_egress: bool = False,
) -> dict[str, Any]:
    unknown = set(body) - {"settings", "enabled", "mode"}
    if unknown:
        field = sorted(unknown)[0]
        raise ApiError(422, "validation_error", f"{field} cannot be changed here", field=field)
    patch = body.get("settings", {})
    if not isinstance(patch, dict):
        raise ApiError(422, "validation_error", "settings must be an object", field="settings")
    # Read, merge, write only if nothing changed in between; else merge again into what is there
    # now, so that two edits of different settings at once both stay (workspace.Changed).
    for _ in range(MERGE_ATTEMPTS):
        try:
            current = workspace.get_destination(engine, destination_id)
            manifest = _manifest(catalog, current["slug"])
            mode = body.get("mode", current["mode"])
            enabled = _bool(body["enabled"], "enabled") if "enabled" in body else current["enabled"]
            merged = merge_settings(manifest, current["settings"], patch)
            try:
                settings = validate_settings(manifest, merged, mode, enabled=enabled,
                                             allow_private_egress=allow_private_egress)
            except SettingsError as exc:
                raise _settings_error(exc, manifest, merged) from None
            dest = workspace.update_destination(
                engine, destination_id, settings=settings, enabled=enabled, mode=mode, actor=actor,
                label=manifest.name, expected=current,
            )
            return destination_json(catalog, dest)
        except NotFound as exc:
            raise _not_found(exc) from None
        except workspace.Changed:
            continue
    raise busy_conflict(destination_id)


def busy_conflict(destination_id: int) -> ApiError:
    return ApiError(409, "conflict", f"Destination {destination_id} kept changing while this change was being "
                                     "saved; nothing was saved: try again")


def delete_destination(engine: Engine, catalog: Catalog, destination_id: int, actor: str) -> None:
    try:
        current = workspace.get_destination(engine, destination_id)
        manifest = catalog.get(current["slug"])
        workspace.delete_destination(engine, destination_id, actor=actor, label=manifest.name if manifest else None)
    except NotFound as exc:
        raise _not_found(exc) from None


# ---------------------------------------------------------------- history


def version_json(catalog: Catalog, source_id: int, row: dict[str, Any]) -> dict[str, Any]:
    data = {
        "source_id": source_id,
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "actor": row["actor"],
        "summary": row["summary"],
    }
    if "content" in row:
        content = row["content"]
        data["content"] = {
            "source": content["source"],
            "destinations": [
                {**d, "settings": mask_secrets(catalog.get(d["slug"]), d["settings"]) if catalog.get(d["slug"]) else {}}
                for d in content["destinations"]
            ],
        }
    return data
