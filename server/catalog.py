"""The destination catalog: every ``server/destinations/<slug>/manifest.json``, validated at start-up.

A manifest that does not parse or does not fit the schema below stops the boot with a
``CatalogError`` naming the file and the field, so a typo never ships half a catalog.

The same module owns the one settings validator that the admin API, the CLI and the web app
all call (``validate_settings``), and the public/secret split that keeps secrets server-side
(``public_settings``, ``mask_secrets``).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

DESTINATIONS_DIR = Path(__file__).resolve().parent / "destinations"

CATEGORIES = (
    "Analytics",
    "Email Marketing",
    "Live Chat",
    "Advertising",
    "Heatmaps & Recordings",
    "Tag Managers",
    "Notifications",
    "Raw Data",
    "Warehouses",
)
MODES = ("device", "cloud")
METHODS = ("track", "page", "identify", "group", "alias", "screen")
SETTING_TYPES = ("string", "number", "integer", "boolean", "select", "map", "list")
NUMERIC_TYPES = ("number", "integer")
SECRET_MASK = "********"

_MANIFEST_KEYS = {
    "slug", "name", "category", "description", "website", "modes", "default_mode", "methods",
    "settings", "aliases", "keywords", "logo",
}
_SETTING_KEYS = {
    "key", "label", "description", "type", "required", "secret", "default", "choices", "pattern",
    "modes", "placeholder", "minimum", "maximum", "format", "pattern_description",
}
# What a setting's value means beyond its type, and the extra check it gets when saved:
# "url" (the egress rules: server/destinations/egress.py), "headers" (server/destinations/outgoing_headers.py),
# "template" (a map of Slack message templates, compiled in the sandbox at save time).
FORMATS = ("url", "headers", "template")
_SLUG = re.compile(r"^[a-z][a-z0-9_]*$")

# Consent: one setting every destination has without declaring it (a warehouse stores every
# event, consent included, for its owners to filter). The browser core and cloud routing read it
# (docs/consent.md); a manifest may not declare a setting of its own under this key.
CONSENT_KEY = "consent_categories"
CONSENT_SETTING = {
    "key": CONSENT_KEY,
    "label": "Consent categories",
    "description": "Send to this destination only when the visitor has consented to every one of these "
    "categories (as your consent tool names them, e.g. Analytics, Advertising or C0004). Leave empty to "
    "send regardless of consent.",
    "type": "list",
    "required": False,
    "secret": False,
    "default": [],
    "placeholder": "Advertising",
}
NO_CONSENT_CATEGORIES = ("Warehouses",)
CONSENT_NAME_MAX = 100


class CatalogError(Exception):
    """A manifest is broken; the message names the file and the field."""


class SettingsError(ValueError):
    """Settings do not fit a manifest. ``errors`` is a list of {"field", "message"} (+ "code" when
    the problem has its own error code: private_address, invalid_header, invalid_template)."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        first = errors[0]
        super().__init__(f"{first['field']}: {first['message']}")

    @property
    def field(self) -> str:
        return self.errors[0]["field"]


@dataclass(frozen=True)
class Setting:
    key: str
    label: str
    description: str
    type: str
    required: bool = False
    secret: bool = False
    default: Any = None
    choices: tuple[Any, ...] = ()
    pattern: str | None = None
    pattern_description: str | None = None  # what the pattern asks for, in words (errors never quote a regex)
    modes: tuple[str, ...] = MODES
    placeholder: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    format: str | None = None

    def applies_to(self, mode: str) -> bool:
        return mode in self.modes

    def to_json(self) -> dict[str, Any]:
        data = {
            "key": self.key, "label": self.label, "description": self.description, "type": self.type,
            "required": self.required, "secret": self.secret, "default": self.default,
            "modes": list(self.modes),
        }
        if self.choices:
            data["choices"] = list(self.choices)
        if self.pattern:
            data["pattern"] = self.pattern
            data["pattern_description"] = self.pattern_description
        if self.placeholder:
            data["placeholder"] = self.placeholder
        for bound in ("minimum", "maximum"):
            if getattr(self, bound) is not None:
                data[bound] = getattr(self, bound)
        return data


@dataclass(frozen=True)
class Manifest:
    slug: str
    name: str
    category: str
    description: str
    website: str
    modes: tuple[str, ...]
    default_mode: str
    methods: dict[str, tuple[str, ...]]
    settings: tuple[Setting, ...]
    aliases: tuple[str, ...] = ()
    logo: str | None = None
    # Other words people search the catalog by ("GA4", "Facebook"); unlike aliases, these are
    # not names a call's integrations option may use.
    keywords: tuple[str, ...] = ()
    path: Path | None = field(default=None, compare=False)

    def setting(self, key: str) -> Setting | None:
        return next((s for s in self.settings if s.key == key), None)

    @property
    def integration_names(self) -> tuple[str, ...]:
        """Names a call's ``integrations`` option may use for this destination."""
        return (self.name, *self.aliases)

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug, "name": self.name, "category": self.category, "description": self.description,
            "website": self.website, "modes": list(self.modes), "default_mode": self.default_mode,
            "methods": {m: list(v) for m, v in self.methods.items()},
            "settings": [s.to_json() for s in self.settings],
            "aliases": list(self.aliases), "keywords": list(self.keywords), "logo": self.logo,
        }

    @property
    def search_terms(self) -> tuple[str, ...]:
        """What the catalog search matches: the name, every alias and every keyword."""
        return (self.name, *self.aliases, *self.keywords)


# ---------------------------------------------------------------- parsing manifests


def _fail(path: Path, where: str, message: str) -> CatalogError:
    return CatalogError(f"{path}: {where}: {message}")


def _need(data: dict, key: str, kind: type | tuple[type, ...], path: Path, where: str = "") -> Any:
    name = f"{where}{key}"
    if key not in data:
        raise _fail(path, name, "is missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is str and not str(value).strip()):
        wanted = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise _fail(path, name, f"must be a non-empty {wanted}")
    return value


def _parse_setting(raw: Any, index: int, modes: tuple[str, ...], path: Path) -> Setting:
    where = f"settings[{index}]."
    if not isinstance(raw, dict):
        raise _fail(path, f"settings[{index}]", "must be an object")
    unknown = set(raw) - _SETTING_KEYS
    if unknown:
        raise _fail(path, where + sorted(unknown)[0], "is not a known setting field")
    key = _need(raw, "key", str, path, where)
    where = f"settings[{key}]."
    if not _SLUG.match(key):
        raise _fail(path, where + "key", "must be snake_case")
    kind = _need(raw, "type", str, path, where)
    if kind not in SETTING_TYPES:
        raise _fail(path, where + "type", f"{kind!r} is not one of {', '.join(SETTING_TYPES)}")
    for flag in ("required", "secret"):
        if flag not in raw or not isinstance(raw[flag], bool):
            raise _fail(path, where + flag, "must be true or false (every setting says whether it is secret)")
    choices = raw.get("choices", [])
    if kind == "select" and (not isinstance(choices, list) or not choices):
        raise _fail(path, where + "choices", "a select needs a non-empty list of choices")
    setting_modes = raw.get("modes", list(modes))
    if not isinstance(setting_modes, list) or not setting_modes or any(m not in modes for m in setting_modes):
        raise _fail(path, where + "modes", f"must be a non-empty list drawn from {list(modes)}")
    for bound in ("minimum", "maximum"):
        value = raw.get(bound)
        if value is not None and (kind not in NUMERIC_TYPES or isinstance(value, bool)
                                  or not isinstance(value, (int, float))):
            raise _fail(path, where + bound, "is only for number and integer settings, and must be a number")
        if value is not None and kind == "integer" and not float(value).is_integer():
            raise _fail(path, where + bound, "must be a whole number for an integer setting")
    fmt = raw.get("format")
    if fmt is not None and (fmt not in FORMATS or (fmt == "url") != (kind == "string")
                            or (fmt != "url") != (kind == "map")):
        raise _fail(path, where + "format", f"must be one of {', '.join(FORMATS)} (url for a string, "
                    "headers or template for a map)")
    pattern = raw.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise _fail(path, where + "pattern", f"is not a valid regular expression: {exc}") from None
        if not isinstance(raw.get("pattern_description"), str) or not raw["pattern_description"].strip():
            # Error messages say what is expected in words; a person cannot read a regex.
            raise _fail(path, where + "pattern_description", "is missing: a pattern needs a description in words "
                        "(e.g. \"a Measurement ID like G-XXXXXXX\")")
    elif raw.get("pattern_description") is not None:
        raise _fail(path, where + "pattern_description", "goes with a pattern")
    setting = Setting(
        key=key,
        label=_need(raw, "label", str, path, where),
        description=_need(raw, "description", str, path, where),
        type=kind,
        required=raw["required"],
        secret=raw["secret"],
        default=raw.get("default"),
        choices=tuple(choices),
        pattern=pattern,
        pattern_description=raw.get("pattern_description"),
        modes=tuple(setting_modes),
        placeholder=raw.get("placeholder"),
        minimum=raw.get("minimum"),
        maximum=raw.get("maximum"),
        format=fmt,
    )
    if setting.default is not None:
        try:
            _check_value(setting, setting.default)
        except ValueError as exc:
            raise _fail(path, where + "default", str(exc)) from None
    return setting


def parse_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot be read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{path}: is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(path, "(top level)", "must be an object")
    unknown = set(data) - _MANIFEST_KEYS
    if unknown:
        raise _fail(path, sorted(unknown)[0], "is not a known manifest field")
    slug = _need(data, "slug", str, path)
    if slug != path.parent.name:
        raise _fail(path, "slug", f"{slug!r} must equal its folder name {path.parent.name!r}")
    if not _SLUG.match(slug):
        raise _fail(path, "slug", "must be lowercase snake_case")
    category = _need(data, "category", str, path)
    if category not in CATEGORIES:
        raise _fail(path, "category", f"{category!r} is not one of {', '.join(CATEGORIES)}")
    modes = _need(data, "modes", list, path)
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise _fail(path, "modes", f"must be a non-empty list drawn from {list(MODES)}")
    default_mode = _need(data, "default_mode", str, path)
    if default_mode not in modes:
        raise _fail(path, "default_mode", f"{default_mode!r} is not one of its modes {modes}")
    methods = _need(data, "methods", dict, path)
    if set(methods) != set(modes):
        raise _fail(path, "methods", f"must list the calls accepted in each mode: {modes}")
    for mode, calls in methods.items():
        if not isinstance(calls, list) or any(c not in METHODS for c in calls):
            raise _fail(path, f"methods.{mode}", f"must be a list drawn from {list(METHODS)}")
    raw_settings = _need(data, "settings", list, path)
    settings = tuple(_parse_setting(s, i, tuple(modes), path) for i, s in enumerate(raw_settings))
    keys = [s.key for s in settings]
    if len(set(keys)) != len(keys):
        raise _fail(path, "settings", "two settings share a key")
    if CONSENT_KEY in keys:
        raise _fail(path, f"settings[{keys.index(CONSENT_KEY)}].key",
                    f"{CONSENT_KEY!r} is reserved: every destination has it (docs/consent.md)")
    if category not in NO_CONSENT_CATEGORIES:
        settings += (_parse_setting(CONSENT_SETTING, len(settings), tuple(modes), path),)
    aliases = data.get("aliases", [])
    if not isinstance(aliases, list) or any(not isinstance(a, str) for a in aliases):
        raise _fail(path, "aliases", "must be a list of strings")
    keywords = data.get("keywords", [])
    if not isinstance(keywords, list) or any(not isinstance(k, str) or not k.strip() for k in keywords):
        raise _fail(path, "keywords", "must be a list of non-empty strings")
    return Manifest(
        slug=slug,
        name=_need(data, "name", str, path),
        category=category,
        description=_need(data, "description", str, path),
        website=_need(data, "website", str, path),
        modes=tuple(modes),
        default_mode=default_mode,
        methods={m: tuple(c) for m, c in methods.items()},
        settings=settings,
        aliases=tuple(aliases),
        keywords=tuple(keywords),
        logo=data.get("logo"),
        path=path,
    )


class Catalog:
    """Every destination manifest, by slug, in catalog order (category, then name)."""

    def __init__(self, manifests: Iterable[Manifest]):
        ordered = sorted(manifests, key=lambda m: (CATEGORIES.index(m.category), m.name.lower()))
        self._by_slug = {m.slug: m for m in ordered}

    def __iter__(self):
        return iter(self._by_slug.values())

    def __len__(self) -> int:
        return len(self._by_slug)

    def __contains__(self, slug: object) -> bool:
        return slug in self._by_slug

    def get(self, slug: str) -> Manifest | None:
        return self._by_slug.get(slug)

    def by_integration_name(self) -> dict[str, Manifest]:
        return {name: m for m in self for name in m.integration_names}


def load_catalog(directory: Path = DESTINATIONS_DIR) -> Catalog:
    manifests = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        path = folder / "manifest.json"
        if not path.exists():
            raise CatalogError(f"{folder}: has no manifest.json")
        manifests.append(parse_manifest(path))
    # A call's integrations option names destinations: one name must mean one destination.
    owners: dict[str, Path] = {}
    for manifest in manifests:
        for name in manifest.integration_names:
            if owners.get(name.lower(), manifest.path) != manifest.path:
                raise _fail(manifest.path, "aliases" if name != manifest.name else "name",
                            f"{name!r} is already the name of {owners[name.lower()]}")
            owners[name.lower()] = manifest.path
    return Catalog(manifests)


# ---------------------------------------------------------------- the settings validator


def _check_value(setting: Setting, value: Any) -> Any:
    """Return the value, normalised, or raise ValueError with a message for a person."""
    kind = setting.type
    if kind in ("string", "select") and isinstance(value, str):
        value = value.strip()
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError("must be text")
        if setting.pattern and value and not re.fullmatch(setting.pattern, value):
            raise ValueError(f"{value!r} does not look right: expected {setting.pattern_description}")
    elif kind in NUMERIC_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError("must be a whole number" if kind == "integer" else "must be a number")
        if kind == "integer":
            if not float(value).is_integer():
                raise ValueError("must be a whole number")
            value = int(value)
        if setting.minimum is not None and value < setting.minimum:
            raise ValueError(f"must be at least {setting.minimum:g}")
        if setting.maximum is not None and value > setting.maximum:
            raise ValueError(f"must be at most {setting.maximum:g}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
    elif kind == "select":
        if value not in setting.choices:
            raise ValueError(f"must be one of {', '.join(map(str, setting.choices))}")
    elif kind == "map":
        if not isinstance(value, dict) or any(
            not isinstance(k, str) or not isinstance(v, (str, int, float, bool)) for k, v in value.items()
        ):
            raise ValueError("must be an object of text keys and simple values")
    elif kind == "list":
        if not isinstance(value, list) or any(not isinstance(v, (str, int, float)) for v in value):
            raise ValueError("must be a list of text values")
        if setting.key == CONSENT_KEY:
            value = _consent_categories(value)
    return value


def _consent_categories(value: list) -> list[str]:
    """Category names as routing compares them (exactly): text, trimmed, each once, in order.

    A number or a blank line would be a category no consent tool ever grants, silently
    blocking the destination; refuse it instead.
    """
    names: list[str] = []
    for item in value:
        name = item.strip() if isinstance(item, str) else ""
        if not name:
            raise ValueError("must be a list of category names (text, not empty)")
        if len(name) > CONSENT_NAME_MAX:
            raise ValueError(f"must be category names of at most {CONSENT_NAME_MAX} characters")
        if name not in names:
            names.append(name)
    return names


class _CodedError(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _check_format(setting: Setting, value: Any, allow_private_egress: bool) -> None:
    """The checks a setting's ``format`` adds (see FORMATS); raise _CodedError."""
    if setting.format == "url" and not allow_private_egress and isinstance(value, str):
        from server.destinations.egress import PrivateAddressError, check_url

        try:
            check_url(value)
        except PrivateAddressError as exc:
            raise _CodedError("private_address", str(exc)) from None
    elif setting.format == "headers" and isinstance(value, dict):
        from server.destinations.outgoing_headers import HeaderError, check_headers

        try:
            check_headers(value)
        except HeaderError as exc:
            raise _CodedError("invalid_header", str(exc)) from None
    elif setting.format == "template" and isinstance(value, dict):
        from server.destinations.slack.sandbox import TemplateError, check_template

        for name, template in value.items():
            try:
                check_template(str(template))
            except TemplateError as exc:
                raise _CodedError("invalid_template", f"the template for {name!r} {exc}") from None


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def validate_settings(
    manifest: Manifest, settings: Any, mode: str, *, enabled: bool = True, allow_private_egress: bool = False
) -> dict[str, Any]:
    """Check ``settings`` against ``manifest`` for ``mode``; return the cleaned settings.

    URL settings must not name internal addresses unless ``allow_private_egress``
    (``SWITCHBOARD_ALLOW_PRIVATE_EGRESS``); custom headers and templates get their own checks.
    Required settings are required only of an enabled destination (one may save a draft and
    enable it later) and only when they apply to ``mode``. Raises ``SettingsError`` whose
    errors each name the field.
    """
    errors: list[dict[str, str]] = []
    if mode not in manifest.modes:
        raise SettingsError([{"field": "mode", "message": f"{manifest.name} supports {' and '.join(manifest.modes)} mode"}])
    if not isinstance(settings, dict):
        raise SettingsError([{"field": "settings", "message": "must be an object"}])
    cleaned: dict[str, Any] = {}
    for key, value in settings.items():
        setting = manifest.setting(key)
        if setting is None:
            errors.append({"field": key, "message": f"is not a setting of {manifest.name}"})
            continue
        if value is None:
            continue
        try:
            cleaned[key] = _check_value(setting, value)
            if setting.format:
                _check_format(setting, cleaned[key], allow_private_egress)
        except _CodedError as exc:
            errors.append({"field": key, "message": f"{setting.label}: {exc}", "code": exc.code})
        except ValueError as exc:
            errors.append({"field": key, "message": f"{setting.label} {exc}"})
    if enabled:
        for setting in manifest.settings:
            if setting.required and setting.applies_to(mode) and _is_empty(cleaned.get(key := setting.key)):
                if not any(e["field"] == key for e in errors):
                    errors.append({"field": key, "message": f"{setting.label} is required for {mode} mode"})
    if errors:
        raise SettingsError(errors)
    return cleaned


def effective_settings(manifest: Manifest, settings: dict[str, Any], mode: str) -> dict[str, Any]:
    """Defaults overlaid with the stored values, limited to the settings that apply to ``mode``."""
    result = {}
    for setting in manifest.settings:
        if not setting.applies_to(mode):
            continue
        value = settings.get(setting.key, setting.default)
        if value is not None:
            result[setting.key] = value
    return result


def public_settings(manifest: Manifest, settings: dict[str, Any], mode: str = "device") -> dict[str, Any]:
    """What may reach a browser: the effective settings minus every secret one."""
    return {
        key: value
        for key, value in effective_settings(manifest, settings, mode).items()
        if not manifest.setting(key).secret
    }


def mask_secrets(manifest: Manifest, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as an authenticated admin sees them: secrets that are set shown as the mask."""
    masked = {}
    for key, value in settings.items():
        setting = manifest.setting(key)
        masked[key] = SECRET_MASK if setting is not None and setting.secret and not _is_empty(value) else value
    return masked


def merge_settings(manifest: Manifest, stored: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A PATCH over stored settings: the mask keeps a secret as it is, None removes a key."""
    merged = dict(stored)
    for key, value in patch.items():
        setting = manifest.setting(key)
        if value == SECRET_MASK and setting is not None and setting.secret:
            continue
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
