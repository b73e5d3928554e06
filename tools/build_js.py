"""Development-time minification of the browser core: ``make js`` (this script) writes js_templates/dist/.

    .venv/bin/python tools/build_js.py [--out DIR]

The core (js_templates/core/*.js) is plain ES5 written to be read. The server renders bundles at
request time in Python and a wheel install has no Node, so the identifier-mangling minification
(esbuild, pinned in e2e/package.json, installed by ``make node-deps``) runs here, over static
sources only, and its output is committed and shipped in the wheel (js_templates/dist/*.js).
No server value reaches esbuild: the config object and the loaders are added at request time by
js_templates/bundle.js.j2 (config through ``tojson``; loaders through rjsmin as before).

Each variant is the whole core minified as one function ``function(C, L) {...}``: ``C`` is the
config object, ``L(SB)`` registers the source's loaders (js_templates/bundle.js.j2 calls it). Only
what a source needs is in its variant, chosen by the server (server/cdn/bundles.py ``core_variant``):

- ``core.js``: no device-mode destination (what most visitors download; issue 18: ≤ 6 KB gzip);
- ``core-device.js``: + the loader runtime (core/30-loaders.js, core/32-device.js);
- ``core-device-filters.js``: + the filter interpreter (js_templates/filters.js).

The build-time constant ``DEVICE`` (esbuild ``--define``) removes the core's device-only branches
from ``core.js``. tests/test_js_dist.py rebuilds into a temporary folder and fails when the
committed files are stale.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "js_templates"
ESBUILD = ROOT / "e2e" / "node_modules" / ".bin" / "esbuild"
COMMAND = "make js"  # what regenerates js_templates/dist (named by the staleness test)
DEVICE_ONLY = ("05-routed.js", "30-loaders.js", "32-device.js")
VARIANTS = {  # file name -> (device?, filters?)
    "core.js": (False, False),
    "core-device.js": (True, False),
    "core-device-filters.js": (True, True),
}


def core_files(device: bool) -> list[Path]:
    return [p for p in sorted((JS / "core").glob("*.js")) if device or p.name not in DEVICE_ONLY]


def wrapped(device: bool, filters: bool) -> str:
    """The sources as one function; ``X(...)`` keeps esbuild from dropping an unused expression."""
    parts = [p.read_text() for p in core_files(device)]
    if filters:
        parts.append((JS / "filters.js").read_text())
    tail = "if (DEVICE) L(SB);\nstart();\n"
    return 'X(function (C, L) {\n"use strict";\n' + "\n".join(parts) + tail + "});\n"


def esbuild(source: str, device: bool) -> str:
    if not ESBUILD.exists():
        raise SystemExit(f"{ESBUILD} is missing: run `make node-deps` (esbuild is pinned in e2e/package.json)")
    run = subprocess.run(
        [str(ESBUILD), "--minify", "--target=es5", "--log-level=warning",
         f"--define:DEVICE={'true' if device else 'false'}"],
        input=source, capture_output=True, text=True, check=False,
    )
    if run.returncode != 0:
        raise SystemExit(f"esbuild failed:\n{run.stderr}")
    out = run.stdout.strip()
    if not (out.startswith("X(function(") and out.endswith("});")):
        raise SystemExit(f"unexpected esbuild output: {out[:80]}...{out[-80:]}")
    return out[2:-2]  # the function expression alone


def build(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (device, filters) in VARIANTS.items():
        path = out_dir / name
        path.write_text(esbuild(wrapped(device, filters), device) + "\n")
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=JS / "dist")
    for path in build(parser.parse_args().out):
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    sys.exit(main())
