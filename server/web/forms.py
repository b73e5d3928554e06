"""Settings forms generated from a manifest, and the posted form turned back into settings.

Validation is not done here: the parsed settings go to ``server.api.service`` (the same
``validate_settings`` the API uses) and its per-field errors are shown next to the fields.
Secret values are write-only: a stored secret is never rendered back (the field is empty, with a
note that a value is saved, and leaving it empty keeps the saved value). The one exception is a
form re-shown after an error: what the user typed in that very request is echoed back to them in
the response, so that fixing another field's error does not silently drop their secrets.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from server.catalog import SECRET_MASK, Manifest, Setting

MAP_ROWS_EXTRA = 2  # empty key/value rows offered below the saved ones


def _number(raw: str) -> Any:
    try:
        number = float(raw)
    except ValueError:
        return raw  # the validator answers "must be a number" in the field's own words
    return int(number) if number.is_integer() and "." not in raw and "e" not in raw.lower() else number


def _shown_value(setting: Setting, value: Any, echo: bool) -> Any:
    if setting.secret and not echo:
        return None  # a stored secret is never rendered back
    if value is None:
        return setting.default
    return value


def fields_for(
    manifest: Manifest,
    mode: str,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    saved_secrets: set[str] | None = None,
    *,
    every_mode: bool = False,
    typed_secrets: set[str] | None = None,
) -> list[dict[str, Any]]:
    """One dict per setting, ready for templates/_settings_form.html.

    The add flow shows the settings of the chosen mode; a connected destination's page shows
    every setting (``every_mode``) so that what another mode needs can be filled in before
    switching to it.

    ``typed_secrets`` names the secret settings whose values in ``values`` were typed in the
    request being answered (an error re-render): only those are put back into the form.
    """
    values, errors, saved_secrets = values or {}, errors or {}, saved_secrets or set()
    typed_secrets = typed_secrets or set()
    fields = []
    for s in manifest.settings:
        if not (every_mode or s.applies_to(mode)):
            continue
        echo = s.secret and s.key in typed_secrets and values.get(s.key) not in (None, SECRET_MASK)
        value = _shown_value(s, values.get(s.key), echo)
        only = [m for m in s.modes] if len(s.modes) < len(manifest.modes) else []
        field: dict[str, Any] = {
            "key": s.key, "label": s.label, "description": s.description, "type": s.type,
            "required": s.required and s.applies_to(mode), "only_modes": only,
            "required_in": [m for m in s.modes] if s.required and not s.applies_to(mode) else [],
            "secret": s.secret, "placeholder": s.placeholder or "",
            "choices": list(s.choices), "error": errors.get(s.key), "saved": s.key in saved_secrets,
            "value": value, "echoed": echo,
        }
        hidden = s.secret and not echo
        if s.type == "map":
            rows = [] if hidden else [[k, str(v)] for k, v in (value or {}).items()]
            field["rows"] = rows + [["", ""]] * MAP_ROWS_EXTRA
        elif s.type == "list":
            field["text"] = "" if hidden else "\n".join(str(v) for v in (value or []))
        elif s.type == "boolean":
            field["checked"] = bool(value)
        elif s.type in ("string", "number", "integer"):
            field["text"] = "" if value is None or hidden else str(value)
        fields.append(field)
    return fields


def parse_settings(
    manifest: Manifest, mode: str, form: FormData, *, updating: bool, every_mode: bool = False
) -> dict[str, Any]:
    """The posted fields as settings. For an update, an empty secret means "keep the saved one"."""
    settings: dict[str, Any] = {}
    for s in manifest.settings:
        if not (every_mode or s.applies_to(mode)):
            continue
        key = s.key
        if s.type == "boolean":
            settings[key] = form.get(key) == "true"
            continue
        if s.type == "map":
            keys, vals = form.getlist(f"{key}.k"), form.getlist(f"{key}.v")
            pairs = {str(k).strip(): str(v) for k, v in zip(keys, vals) if str(k).strip()}
            if pairs:
                settings[key] = pairs
            elif s.secret and updating:
                settings[key] = SECRET_MASK
            else:
                settings[key] = None
            continue
        raw = form.get(key)
        text = raw.strip() if isinstance(raw, str) else ""
        if s.type == "list":
            items = [line.strip() for line in text.splitlines() if line.strip()]
            settings[key] = items or (SECRET_MASK if s.secret and updating else None)
        elif not text:
            settings[key] = SECRET_MASK if s.secret and updating else None
        elif s.type in ("number", "integer"):  # 2.5 for an integer stays 2.5: the validator refuses it
            settings[key] = _number(text)
        else:
            settings[key] = text
    return settings


def typed_secrets(manifest: Manifest, settings: dict[str, Any]) -> set[str]:
    """The secret settings the user filled in on this post (not left empty to keep the saved one)."""
    return {s.key for s in manifest.settings
            if s.secret and settings.get(s.key) not in (None, SECRET_MASK, "", [], {})}


def field_errors(exc_extra: dict[str, Any]) -> dict[str, str]:
    """{"settings.measurement_id": …} from service errors → {"measurement_id": message}."""
    result: dict[str, str] = {}
    for err in exc_extra.get("errors", []):
        field = err["field"].removeprefix("settings.")
        result.setdefault(field, err["message"])
    return result
