"""Building per-write-key bundles: render (Jinja), minify (rjsmin), compress (gzip, brotli).

A bundle is the browser core, the device-mode loaders of the source's enabled destinations
(``js_templates/destinations/<slug>.js.j2``) and one config object. ``bundle.js.j2`` is the only
place where server values meet JavaScript, and they do so only through ``tojson`` over
``public_settings(...)`` — secrets cannot reach the template.

The core is served already minified: ``js_templates/dist/*.js``, made from the readable sources
(``js_templates/core/*.js``, ``filters.js``) by esbuild at development time (``make js``,
``tools/build_js.py``; the version is pinned in e2e/package.json) and committed, so it ships in the
wheel and a server never needs Node. Identifier mangling is what brings the core of a source
without destinations under 6 KB gzip (issue 18); rjsmin, which only strips whitespace and
comments, left it at 8.2 KB. Why not a renaming minifier in Python at request time: it would
parse the whole core (~50 KB of source) on every cold build, which must stay a few ms
(``tests/test_bundle_cache_scale.py``, ``bench/cost.py``), and the core is the same for every
source, so that work would only repeat itself. Each source gets one of three variants, so it pays only for what it uses:
without device-mode destinations (no loader runtime), with them, with them and the filter
interpreter. rjsmin still minifies the rest (loaders, the config literal) per build, and leaves
the committed core unchanged (tests/test_js_dist.py checks both that and that the committed files
are what ``make js`` makes of today's sources).

Everything here is synchronous and pure (no store, no cache): ``server/cdn/bundle_cache.py`` decides
when to build, ``server/cdn/routes.py`` serves the result.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import brotli
import jinja2
import rjsmin
import zopfli.gzip

from server.api import library_name
from server.api.early_send import CORE_VERSION  # the browser core's version; the collector needs it too
from server.catalog import Catalog, Manifest, public_settings
from server.config import Config
from server.rules import compiled_filters

# The installed package's templates (js_templates/ of the repository, shipped as
# server.js_templates: see setup.py), never a path relative to a source checkout.
JS_DIR = Path(str(resources.files("server.js_templates")))
REQUIRED = (
    "bundle.js.j2", "plugin.js.j2", "snippet.js.j2", "filters.js", "extras.js.j2", "server_cookies.js",
    "dist/core.js", "dist/core-device.js", "dist/core-device-filters.js",
)


class TemplateMissing(RuntimeError):
    """A template the bundle plane needs is not installed: the server must not start."""


def check_templates(catalog: Catalog) -> None:
    """Raise ``TemplateMissing`` naming the first missing file (called at start-up, so a broken
    install fails loudly instead of answering 503 at request time)."""
    wanted = [*REQUIRED, *(f"destinations/{m.slug}.js.j2" for m in catalog if "device" in m.modes)]
    for name in wanted:
        if not (JS_DIR / name).is_file():
            raise TemplateMissing(f"js_templates/{name} is missing (looked in {JS_DIR})")
    if not any((JS_DIR / "core").glob("*.js")):
        raise TemplateMissing(f"js_templates/core/*.js is missing (looked in {JS_DIR})")


# A cold build must take a few ms: brotli quality 5 and zlib level 9. Polishing (``polish``) makes
# the same content smaller, off the request path: brotli quality 11 (~100 ms on 30 KB, ~7% smaller)
# and Zopfli's gzip (~2% smaller than zlib -9, ~25 ms on 15 KB; it releases the GIL). Zopfli is
# Google's exhaustive deflate encoder, as a maintained binding (the ``zopfli`` package, fontTools'
# authors): any gzip decoder reads its output. ``br_quality`` says which a build holds: BR_BEST
# means polished (both encodings), anything else the fast build.
BR_FAST, BR_BEST = 5, 11
ZOPFLI_ITERATIONS = 15  # Zopfli's default; 5 gives all but ~1 byte in 15 KB at half the time


@lru_cache(maxsize=1)
def js_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(JS_DIR), autoescape=False, undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, auto_reload=False,
    )
    # tojson escapes < > & ' for HTML; ensure_ascii also turns U+2028/U+2029 into \\u escapes so the
    # literal is valid JavaScript in every engine, not only those that implement ES2019.
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": True}
    return env


# The core as served, one variant per kind of source (tools/build_js.py explains them).
CORE_VARIANTS = {(False, False): "core.js", (True, False): "core-device.js", (True, True): "core-device-filters.js"}


@lru_cache(maxsize=None)
def core_source(device: bool = False, filters: bool = False) -> str:
    """The browser core as a bundle serves it: ``js_templates/dist/<variant>``, the function
    ``function(C, L) {...}`` that esbuild made of js_templates/core/*.js at development time
    (``make js``). ``device``: with the device-mode loader runtime; ``filters``: with the filter
    interpreter too (only with ``device``)."""
    return (JS_DIR / "dist" / CORE_VARIANTS[device or filters, filters]).read_text().strip()


@lru_cache(maxsize=1)
def known_loaders() -> frozenset[str]:
    """The slugs that have a loader template, listed once: the templates ship with the package
    and do not change while a server runs. A slug from a URL is looked up here before anything
    else, so one that names no loader never reaches the filesystem (a 250-character name is an
    OSError there) or a cache (each distinct unknown slug would be kept for ever)."""
    return frozenset(p.name[: -len(".js.j2")] for p in (JS_DIR / "destinations").glob("*.js.j2"))


def loader_slugs() -> list[str]:
    return sorted(known_loaders())


# Ceilings of the per-slug caches below. Only slugs in known_loaders() (a dozen) are ever keys,
# so nothing is evicted in practice; the bound says so in code.
_SLUGS_CACHED = 128


def loader_source(slug: str) -> str | None:
    """A destination's loader, rendered (loaders take no template variables), or None."""
    return _rendered_loader(slug) if slug in known_loaders() else None


@lru_cache(maxsize=_SLUGS_CACHED)
def _rendered_loader(slug: str) -> str:
    return js_env().get_template(f"destinations/{slug}.js.j2").render()


def minify(js: str) -> str:
    return rjsmin.jsmin(js, keep_bang_comments=True)


@dataclass(frozen=True)
class Built:
    """One version of a file in every encoding we serve, with its validators.

    Kept compact: gzip and brotli only. Identity is derived from gzip on demand (browsers always
    offer gzip or br; ~0.1 ms for a 25 KB bundle), so a cached bundle costs ~2x its compressed
    size instead of ~5x."""

    gzip: bytes
    br: bytes
    hash: str  # content hash of the minified JS: the immutable URL and the ETag
    size: int = 0  # identity length
    version: int = 0
    loaders: tuple[str, ...] = ()
    br_quality: int = BR_FAST
    built_at: datetime | None = None

    @property
    def body(self) -> bytes:
        return zlib.decompress(self.gzip, 31)

    @property
    def polished(self) -> bool:
        """Whether both encodings are the best we make (``polish``), not the fast build's."""
        return self.br_quality >= BR_BEST

    def etag(self, encoding: str) -> str:
        # A strong ETag names one representation (exact bytes): each encoding, and each brotli
        # quality or gzip encoder, gets its own.
        if encoding == "identity":
            return f'"{self.hash}"'
        if encoding == "br":
            return f'"{self.hash}-br{self.br_quality}"'
        return f'"{self.hash}-gzip-zopfli"' if self.polished else f'"{self.hash}-gzip"'

    @cached_property
    def etags(self) -> tuple[str, ...]:
        """Every ETag a client may hold for this content, fast build or polished (``"h"``,
        ``"h-gzip"``, ``"h-gzip-zopfli"``, ``"h-br5"``, ``"h-br11"``)."""
        h = self.hash
        return (f'"{h}"', f'"{h}-gzip"', f'"{h}-gzip-zopfli"', f'"{h}-br{BR_FAST}"', f'"{h}-br{BR_BEST}"')

    def variant(self, encoding: str) -> bytes:
        if encoding == "br":
            return self.br
        return self.gzip if encoding == "gzip" else self.body

    @property
    def nbytes(self) -> int:
        return len(self.gzip) + len(self.br)


def compress(js: str, *, version: int = 0, loaders: tuple[str, ...] = (), br_quality: int = BR_FAST) -> Built:
    body = js.encode()
    return Built(
        gzip=gzip.compress(body, 9, mtime=0),
        br=brotli.compress(body, mode=brotli.MODE_TEXT, quality=br_quality),
        hash=hashlib.sha256(body).hexdigest()[:16],
        size=len(body),
        version=version,
        loaders=loaders,
        br_quality=br_quality,
        built_at=datetime.now(timezone.utc),
    )


def gzip_best(body: bytes) -> bytes:
    """Zopfli's gzip of ``body`` (no file name, mtime 0, like ``gzip.compress(..., mtime=0)``)."""
    return zopfli.gzip.compress(body, numiterations=ZOPFLI_ITERATIONS)


def polish(built: Built) -> Built:
    """The same content with the best encodings we make: brotli quality 11 and Zopfli's gzip
    (~130 ms for 30 KB in all: done after the fast build, by the cache and the static publish)."""
    if built.polished:
        return built
    body = built.body
    return dataclasses.replace(
        built, gzip=gzip_best(body), br=brotli.compress(body, mode=brotli.MODE_TEXT, quality=BR_BEST),
        br_quality=BR_BEST,
    )


def build_fingerprint(config: Config, catalog: Catalog) -> str:
    """What a persisted build depends on besides the source's settings: every JS template, the
    Python that renders the bundle and the settings document, the catalog (which settings are
    public) and the URLs a bundle embeds. A build with another fingerprint is never served."""
    from server.cdn import settings_document  # imports this module

    digest = hashlib.sha256(CORE_VERSION.encode())
    # Only what renders (*.js, *.j2): a checkout's CONTRACT.md or the __pycache__ an install
    # writes (its .pyc carries the install's time) would give each install of one release its
    # own fingerprint, and servers sharing a store would keep replacing each other's builds.
    for path in sorted(JS_DIR.rglob("*")):
        if path.is_file() and path.suffix in (".js", ".j2"):
            digest.update(path.relative_to(JS_DIR).as_posix().encode() + b"\0" + path.read_bytes())
    for module_file in (__file__, settings_document.__file__):
        digest.update(Path(module_file).read_bytes())
    manifests = [m.to_json() for m in catalog]
    digest.update(json.dumps(manifests, sort_keys=True, default=str).encode())
    digest.update(f"{config.origin}|{config.bundle_path}|{config.collector_prefix}".encode())
    return digest.hexdigest()[:32]


# ---------------------------------------------------------------- the config object


def collector_url(config: Config) -> str:
    return config.origin + config.collector_prefix


def device_destinations(catalog: Catalog, destinations: list[dict[str, Any]]) -> list[tuple[Manifest, dict]]:
    """Enabled device-mode rows whose slug is in the catalog and has a loader template."""
    out = []
    for row in destinations:
        manifest = catalog.get(row["slug"])
        if (
            row.get("enabled") and row.get("mode") == "device" and manifest is not None
            and "device" in manifest.modes and loader_source(row["slug"]) is not None
        ):
            out.append((manifest, row))
    return out


def destination_config(manifest: Manifest, row: dict[str, Any]) -> dict[str, Any]:
    """What one destination's loader gets: identity, the names it answers to, public settings,
    and its filters (conditions as ASTs, for js_templates/filters.js) when it has some."""
    data = {
        "id": row["id"],
        "slug": manifest.slug,
        "name": manifest.name,
        "names": list(manifest.integration_names),
        "settings": public_settings(manifest, row.get("settings") or {}, "device"),
    }
    if row.get("filters"):
        data["filters"] = compiled_filters(row["filters"])
    return data


def filters_source() -> str:
    """The filter interpreter as a source file (in the core variant with filters, and in plugins)."""
    return (JS_DIR / "filters.js").read_text()


def bundle_config(config: Config, catalog: Catalog, source: dict[str, Any]) -> dict[str, Any]:
    """The config object (``C`` in the core). ``destinations`` is left out when there are none: the
    core without device-mode destinations never reads it, and every visitor pays for its bytes."""
    data: dict[str, Any] = {
        "writeKey": source["write_key"],
        "version": source["settings_version"],
        "api": collector_url(config),
        "libraryName": library_name.effective(source.get("library_name")),  # context.library.name
        "extras": extras_url(config),
    }
    destinations = [destination_config(m, r) for m, r in device_destinations(catalog, source["destinations"])]
    if destinations:
        data["destinations"] = destinations
    return data


def render_bundle(config: Config, catalog: Catalog, source: dict[str, Any]) -> str:
    """The bundle for ``source`` (a ``workspace.public_config`` dict), before rjsmin: the core variant
    the source needs, called with the config object (its only server values, through ``tojson``)
    and, when it has device-mode destinations, with a function registering their loaders."""
    data = bundle_config(config, catalog, source)
    slugs = sorted({d["slug"] for d in data.get("destinations", ())})
    filtered = any("filters" in d for d in data.get("destinations", ()))
    keep = source.get("server_cookies")  # server-set cookies: only these bundles pay for them
    return js_env().get_template("bundle.js.j2").render(
        version=CORE_VERSION, config=data, core=core_source(bool(slugs), filtered),
        loaders=[loader_source(s) for s in slugs],
        keep=server_cookies_source() if keep else None, keep_url=collector_url(config) + "/keep",
    )


@lru_cache(maxsize=1)
def server_cookies_source() -> str:
    """js_templates/server_cookies.js: the function a bundle with server-set cookies calls."""
    return (JS_DIR / "server_cookies.js").read_text().strip()


def build_bundle(config: Config, catalog: Catalog, source: dict[str, Any]) -> Built:
    data_slugs = tuple(m.slug for m, _ in device_destinations(catalog, source["destinations"]))
    # rjsmin minifies the loaders and the config literal; it leaves the core (already minified) as it is.
    return compress(
        minify(render_bundle(config, catalog, source)), version=source["settings_version"], loaders=data_slugs,
    )


# ---------------------------------------------------------------- analytics-next remote plugins


def plugin_library(slug: str) -> str:
    """The global analytics-next looks up (``remotePlugins[].libraryName``)."""
    return f"switchboard_{slug}"


# The core's lazily fetched chunk (plugins, middleware, query string) is served by the plugin route
# under this name (no loader may take it), at an immutable hashed URL.
EXTRAS = "core_extras"


def core_part(*names: str) -> str:
    """Source files of js_templates/core/ that the extras chunk and the plugins share with the core."""
    return "\n".join((JS_DIR / "core" / name).read_text() for name in names)


def extras_source(name: str) -> str:
    return "\n".join(p.read_text() for p in sorted((JS_DIR / "extras").glob(name)))


@lru_cache(maxsize=1)
def build_extras() -> Built:
    js = js_env().get_template("extras.js.j2").render(
        version=CORE_VERSION, util=core_part("00-util.js", "05-routed.js"), extras=extras_source("*.js"),
    )
    return polish(compress(minify(js)))


def extras_url(config: Config) -> str:
    return f"{config.origin}{config.bundle_path}/plugins/{EXTRAS}.{build_extras().hash}.js"


def build_plugin(slug: str) -> Built | None:
    """A loader wrapped in analytics-next's plugin interface; settings arrive at run time, so one
    file per slug serves every source. ``EXTRAS`` is the core's extras chunk instead. None for a
    slug that names no loader (decided before any cache: see known_loaders)."""
    if slug == EXTRAS:
        return build_extras()
    return _built_plugin(slug) if slug in known_loaders() else None


@lru_cache(maxsize=_SLUGS_CACHED)
def _built_plugin(slug: str) -> Built:
    js = js_env().get_template("plugin.js.j2").render(
        version=CORE_VERSION, slug=slug, library=plugin_library(slug), loader=_rendered_loader(slug),
        util=core_part("00-util.js"), runtime=core_part("05-routed.js", "30-loaders.js"), facade=extras_source("10-facade.js"),
        filters=filters_source(),  # for filters the settings document cannot give analytics-next as routing rules
    )
    return polish(compress(minify(js)))
