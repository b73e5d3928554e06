"""A wheel is what a Dockerfile or a package index installs: built from this checkout and
installed into a fresh virtual environment, it serves the bundle, the snippet, the web app and
its static files (js_templates/ and static/ travel inside it), and a missing template stops the
boot with the file's name instead of a 503 at request time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from pgserver import free_port, wait_for_port
from server.app import create_app
from server.cdn import bundles
from server.config import Config

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding only our wheel; its dependencies come from this venv (no downloads)."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(work / "dist"), str(ROOT)], check=True, cwd=work)
    wheel = next((work / "dist").glob("switchboard-*.whl"))
    env_dir = work / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True).strip())
    # This venv's site-packages comes after the new one's: dependencies, but not our editable copy
    # (its finder sits in a .pth file, which a path added this way does not run).
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, cwd=work)
    return env_dir


def test_the_wheel_carries_templates_and_static_files(installed):
    python = installed / "bin" / "python"
    out = subprocess.check_output([str(python), "-c", (
        "import server.app as a, server.cdn.bundles as b, server.web as w; print(a.__file__); print(b.JS_DIR); print(w.STATIC)")],
        text=True, cwd=installed).split()
    assert all(str(installed) in line for line in out), out  # nothing read from the checkout


def test_an_installed_server_serves_bundle_snippet_web_app_and_static(installed, tmp_path):
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'sb.db'}",
           "SWITCHBOARD_PORT": str(free_port()), "SWITCHBOARD_DELIVERY_WORKERS": "false"}
    switchboard = str(installed / "bin" / "switchboard")
    created = subprocess.check_output([switchboard, "sources", "create", "Shop"], text=True, env=env, cwd=tmp_path)
    write_key = next(line.split()[-1] for line in created.splitlines() if line.startswith("write key:"))
    server = subprocess.Popen([switchboard, "serve"], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = int(env["SWITCHBOARD_PORT"])
        wait_for_port(port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            bundle = client.get(f"/analytics.js/v1/{write_key}/analytics.min.js")
            assert bundle.status_code == 200, bundle.text
            assert write_key in bundle.text and "analytics" in bundle.text
            snippet = client.get(f"/snippet/{write_key}.js")
            assert snippet.status_code == 200 and f'a._cdn="{base}"' in snippet.text and '"/analytics.js/v1/"' in snippet.text
            sign_in = client.get("/sign-in")
            assert sign_in.status_code == 200 and "/static/app.css" in sign_in.text
            css = client.get("/static/app.css")
            assert css.status_code == 200 and css.text == (ROOT / "static" / "app.css").read_text()
    finally:
        server.terminate()
        server.wait(10)
        server.stderr.close()


def test_a_missing_template_stops_the_boot_and_names_the_file(tmp_path, monkeypatch, sqlite_url):
    broken = tmp_path / "js_templates"
    shutil.copytree(bundles.JS_DIR, broken)
    (broken / "snippet.js.j2").unlink()
    monkeypatch.setattr(bundles, "JS_DIR", broken)
    app = create_app(Config(database_url=sqlite_url, delivery_workers=False), planes=["server.cdn"])
    with pytest.raises(bundles.TemplateMissing, match=r"js_templates/snippet\.js\.j2 is missing"):
        with TestClient(app):
            pass
