"""The committed core (js_templates/dist/*.js) is what tools/build_js.py makes of today's sources.

The server serves those files and never runs Node (a wheel install has none), so a change to
js_templates/core/*.js or js_templates/filters.js that is not rebuilt would silently not ship.
This rebuilds into a temporary folder with the pinned esbuild (e2e/package.json) and compares.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.cdn.bundles import CORE_VARIANTS, JS_DIR, core_source, minify

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import build_js  # noqa: E402


def test_committed_core_is_what_make_js_builds(tmp_path):
    assert build_js.ESBUILD.exists(), f"{build_js.ESBUILD} is missing: run `make node-deps`"
    built = {p.name: p.read_text() for p in build_js.build(tmp_path)}
    assert set(built) == set(CORE_VARIANTS.values()) == set(build_js.VARIANTS)
    for name, text in built.items():
        committed = (JS_DIR / "dist" / name).read_text()
        assert committed == text, f"js_templates/dist/{name} is stale: run `{build_js.COMMAND}` and commit the result"


@pytest.mark.parametrize("device, filters", list(CORE_VARIANTS))
def test_each_variant_is_one_function_that_rjsmin_leaves_alone(device, filters):
    core = core_source(device, filters)
    # The bundle is rjsmin'd as a whole (loaders, config): the core must come through unchanged.
    assert minify(core) == core
    assert core.startswith("function(") and core.endswith("}")
    # The loader runtime is only in the device variants, the filter interpreter only with filters.
    assert ("no loader" in core) == device and ("drop_properties" in core) == filters


def test_each_variant_parses_as_es5_script_in_node(tmp_path):
    # ES5 syntax (esbuild --target=es5) that Node parses; strict mode kept from the sources.
    for name in CORE_VARIANTS.values():
        path = tmp_path / name
        path.write_text("(" + (JS_DIR / "dist" / name).read_text().strip() + ");\n")
        run = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
        assert run.returncode == 0, f"{name}: {run.stderr}"
        assert '"use strict"' in path.read_text()
