"""Static publish (server/cdn/publish.py): the files under SWITCHBOARD_PUBLISH_DIR are the origin's
bytes, are never torn while they change, follow disable/delete/rotate, and run the publish command."""

from __future__ import annotations

import gzip
import sys
import threading
import time
from pathlib import Path

import brotli
import pytest
from starlette.testclient import TestClient

from server.app import create_app
from server.cdn.bundle_directory import Known
from server.cdn.bundles import gzip_best
from server.cdn.publish import MARKER
from server.config import Config
from server.store import bundle_builds, open_store, workspace

PLANES = ["server.health", "server.cdn"]


@pytest.fixture
def published(db_url, tmp_path):
    """A server with static publish on, one source with a device-mode destination."""
    engine = open_store(db_url)
    source = workspace.create_source(engine, "Shop")
    dest = workspace.add_destination(engine, source["id"], slug="google_analytics_4", mode="device", enabled=True,
                                     settings={"measurement_id": "G-FIRST1", "api_secret": "never-in-browser"})
    marker = tmp_path / "hook.log"
    command = f"{sys.executable} -c \"import os,sys; open({str(marker)!r},'a').write(' '.join(sys.argv[1:]) + '|' + os.environ['SWITCHBOARD_PUBLISHED_KEYS'] + chr(10))\""
    config = Config(database_url=db_url, delivery_workers=False, bundle_max_age=120,
                    publish_dir=str(tmp_path / "www"), publish_command=command)
    app = create_app(config, engine=engine, planes=PLANES)
    with TestClient(app) as client:
        yield client, engine, source, dest, tmp_path / "www", marker, app
    engine.dispose()


def wait_for(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def raw(client, url, encoding="identity"):
    with client.stream("GET", url, headers={"Accept-Encoding": encoding}) as response:
        assert response.status_code == 200, url
        return b"".join(response.iter_raw())


def files_of(www: Path, key: str, digest: str) -> dict[str, Path]:
    return {
        f"/analytics.js/v1/{key}/analytics.min.js": www / "analytics.js/v1" / key / "analytics.min.js",
        f"/analytics.js/v1/{key}/analytics.{digest}.min.js": www / "analytics.js/v1" / key / f"analytics.{digest}.min.js",
        f"/v1/projects/{key}/settings": www / "v1/projects" / key / "settings",
        f"/snippet/{key}.js": www / "snippet" / f"{key}.js",
    }


def test_published_files_are_the_origins_bytes(published):
    client, _, source, _, www, marker, app = published
    key = source["write_key"]
    # Once the background polish is done (the next test): then the origin serves those bytes too.
    assert wait_for(lambda: not app.state.publisher.unpolished)
    digest = client.get(f"/analytics.js/v1/{key}/analytics.min.js").headers["etag"].strip('"').split("-")[0]
    for url, path in files_of(www, key, digest).items():
        origin = raw(client, url)
        assert path.read_bytes() == origin, url
        assert gzip.decompress(path.with_name(path.name + ".gz").read_bytes()) == origin, url
        assert brotli.decompress(path.with_name(path.name + ".br").read_bytes()) == origin, url
    # The bundle's compressed files are the very bytes the origin sends for those encodings.
    bundle = files_of(www, key, digest)[f"/analytics.js/v1/{key}/analytics.min.js"]
    assert bundle.with_name("analytics.min.js.gz").read_bytes() == raw(client, f"/analytics.js/v1/{key}/analytics.min.js", "gzip")
    assert b"G-FIRST1" in bundle.read_bytes() and b"never-in-browser" not in bundle.read_bytes()
    assert b"never-in-browser" not in (www / "v1/projects" / key / "settings").read_bytes()
    assert wait_for(lambda: marker.exists() and key in marker.read_text())  # the startup publish ran the hook


def test_a_change_is_published_within_a_second_and_runs_the_command(published):
    client, engine, source, dest, www, marker, _ = published
    key = source["write_key"]
    bundle = www / "analytics.js/v1" / key / "analytics.min.js"
    assert b"G-FIRST1" in bundle.read_bytes()
    before = marker.read_text().count("\n") if marker.exists() else 0
    started = time.monotonic()
    workspace.update_destination(engine, dest["id"], settings={"measurement_id": "G-SECOND", "api_secret": "x"})
    assert wait_for(lambda: b"G-SECOND" in bundle.read_bytes(), 1.0), time.monotonic() - started
    assert raw(client, f"/analytics.js/v1/{key}/analytics.min.js") == bundle.read_bytes()
    assert b"G-SECOND" in (www / "v1/projects" / key / "settings").read_bytes()
    assert wait_for(lambda: marker.read_text().count("\n") > before)
    line = marker.read_text().splitlines()[-1]
    assert line == f"{key}|{key}"  # the changed keys as arguments and in SWITCHBOARD_PUBLISHED_KEYS


def polished_files(folder: Path, name: str) -> bool:
    """Whether ``name``'s .gz and .br are the polished encodings of it (Zopfli, brotli 11)."""
    body = (folder / name).read_bytes()
    return ((folder / f"{name}.gz").read_bytes() == gzip_best(body)
            and (folder / f"{name}.br").read_bytes() == brotli.compress(body, mode=brotli.MODE_TEXT, quality=11))


def test_published_bundles_are_polished_in_the_background_and_changes_do_not_wait(published):
    """A version goes out at once with the fast build's encodings, then its .gz and .br are
    re-written with the polished ones (smaller, the same content), which the cache and the
    store keep too."""
    client, engine, source, dest, www, _, app = published
    key, publisher, cache = source["write_key"], app.state.publisher, app.state.bundle_cache
    folder = www / "analytics.js/v1" / key
    digest = (folder / MARKER).read_text().split()[1]
    names = ("analytics.min.js", f"analytics.{digest}.min.js")
    assert wait_for(lambda: all(polished_files(folder, name) for name in names))
    assert not publisher.unpolished
    row = bundle_builds.find_hash(engine, source["id"], digest, cache.fingerprint)
    assert row["br_quality"] == 11 and row["gzip"] == (folder / "analytics.min.js.gz").read_bytes()
    assert raw(client, f"/analytics.js/v1/{key}/analytics.min.js", "gzip") == row["gzip"]

    # A change is published as fast as before; its version is then polished in turn.
    workspace.update_destination(engine, dest["id"], settings={"measurement_id": "G-POLISH", "api_secret": "x"})
    assert wait_for(lambda: b"G-POLISH" in (folder / "analytics.min.js").read_bytes(), 1.0)
    assert wait_for(lambda: polished_files(folder, "analytics.min.js"))
    assert gzip.decompress((folder / "analytics.min.js.gz").read_bytes()) == (folder / "analytics.min.js").read_bytes()


def test_a_version_that_moved_on_is_not_polished_over_the_newer_one(published):
    _, engine, source, dest, www, _, app = published
    key, publisher = source["write_key"], app.state.publisher
    folder = www / "analytics.js/v1" / key
    assert wait_for(lambda: not publisher.unpolished)
    version = int((folder / MARKER).read_text().split()[0])
    old = publisher.published[key]
    before = {name: (folder / name).read_bytes() for name in ("analytics.min.js.gz", "analytics.min.js.br")}
    # An entry left from an older version (published meanwhile at a newer one) is dropped unwritten.
    publisher.unpolished[key] = Known(source["id"], version - 1, True)
    assert publisher.polish() == 0 and not publisher.unpolished and publisher.published[key] == old
    assert {name: (folder / name).read_bytes() for name in before} == before


def test_disabled_deleted_and_rotated_keys_are_removed(published):
    client, engine, source, _, www, _, _ = published
    key = source["write_key"]
    folder, settings, snippet = www / "analytics.js/v1" / key, www / "v1/projects" / key, www / "snippet" / f"{key}.js"
    assert folder.is_dir() and settings.is_dir() and snippet.exists()

    workspace.update_source(engine, source["id"], enabled=False)
    assert wait_for(lambda: not folder.exists() and not settings.exists() and not snippet.exists())
    assert not (www / "snippet" / f"{key}.js.gz").exists()
    workspace.update_source(engine, source["id"], enabled=True)
    assert wait_for(lambda: (folder / "analytics.min.js").exists())

    rotated = workspace.rotate_write_key(engine, source["id"])
    new_key = rotated["write_key"]
    assert new_key != key
    assert wait_for(lambda: (www / "analytics.js/v1" / new_key / "analytics.min.js").exists() and not folder.exists())

    other = workspace.create_source(engine, "Blog")
    other_folder = www / "analytics.js/v1" / other["write_key"]
    assert wait_for(lambda: (other_folder / "analytics.min.js").exists())
    workspace.delete_source(engine, other["id"])
    assert wait_for(lambda: not other_folder.exists() and not (www / "snippet" / f"{other['write_key']}.js").exists())
    assert (www / "analytics.js/v1" / new_key / "analytics.min.js").exists()  # the others stay
    assert client.get(f"/analytics.js/v1/{other['write_key']}/analytics.min.js").status_code == 404


def test_startup_removes_stale_files_and_rewrites_everything(db_url, tmp_path):
    engine = open_store(db_url)
    source = workspace.create_source(engine, "Shop")
    www = tmp_path / "www"
    stale = www / "analytics.js/v1/gone-key/analytics.min.js"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    (www / "snippet").mkdir()
    (www / "snippet/gone-key.js").write_bytes(b"old")
    config = Config(database_url=db_url, delivery_workers=False, publish_dir=str(www))
    with TestClient(create_app(config, engine=engine, planes=PLANES)):
        assert not stale.parent.exists() and not (www / "snippet/gone-key.js").exists()
        assert (www / "analytics.js/v1" / source["write_key"] / "analytics.min.js").exists()
    engine.dispose()


def test_no_reader_ever_sees_a_torn_file(published):
    """Readers open the published bundle and its .gz/.br in a tight loop while the settings change
    many times: every read is a complete bundle of one version."""
    client, engine, source, dest, www, _, _ = published
    folder = www / "analytics.js/v1" / source["write_key"]
    versions = {f"G-V{i:03d}".encode() for i in range(25)} | {b"G-FIRST1"}
    stop, problems, reads = threading.Event(), [], [0]

    def complete(body: bytes) -> bool:
        return body.rstrip().endswith((b"}", b";", b")")) and sum(v in body for v in versions) == 1

    def reader(name: str, decode) -> None:
        while not stop.is_set():
            try:
                body = decode((folder / name).read_bytes())
            except Exception as exc:  # a torn .gz/.br fails to decode
                problems.append(f"{name}: {exc!r}")
                continue
            reads[0] += 1
            if not complete(body):
                problems.append(f"{name}: incomplete ({len(body)} bytes)")

    threads = [threading.Thread(target=reader, args=args) for args in (
        ("analytics.min.js", lambda b: b), ("analytics.min.js.gz", gzip.decompress),
        ("analytics.min.js.br", brotli.decompress), ("analytics.min.js", lambda b: b))]
    for thread in threads:
        thread.start()
    try:
        for i in range(25):
            workspace.update_destination(engine, dest["id"], settings={"measurement_id": f"G-V{i:03d}", "api_secret": "x"})
            time.sleep(0.05)
        assert wait_for(lambda: b"G-V024" in (folder / "analytics.min.js").read_bytes(), 5.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert problems == []
    assert reads[0] > 100
    # No temporary file is left behind once the publish that is still writing the marker ends.
    assert wait_for(lambda: not [p for p in folder.iterdir() if p.name.startswith(".tmp-")])


def test_one_publisher_per_directory_and_another_takes_over(published):
    """Several processes on one directory (serve --workers N): one writes, the others wait on the
    directory's lock and take over when it is released."""
    from server.cdn.publish import Publisher

    client, engine, source, dest, www, _, app = published
    second = Publisher(app.state.bundle_cache, www, interval=0.05)
    second.start()
    try:
        assert not second.leader()  # the app's publisher holds the lock
        assert second.reconcile() == [] and second.published == {}
        app.state.publisher.close()
        workspace.update_destination(engine, dest["id"], settings={"measurement_id": "G-TAKEN", "api_secret": "x"})
        bundle = www / "analytics.js/v1" / source["write_key"] / "analytics.min.js"
        assert wait_for(lambda: b"G-TAKEN" in bundle.read_bytes(), 2.0)
        assert wait_for(lambda: second.published == {source["write_key"]: source["settings_version"] + 2})
        assert second.leader()
    finally:
        second.close()


def test_the_documented_nginx_config_sends_the_origins_headers():
    """docs/deployment.md's nginx config (what bench/static_publish.py runs) names the same
    Cache-Control and Content-Type values the origin sends with the default settings."""
    from server.cdn.routes import IMMUTABLE, JS, bundle_cache_control

    page = (Path(__file__).resolve().parent.parent / "docs" / "deployment.md").read_text()
    section = page[page.index("### nginx serving the published files"):]
    block = section[section.index("```nginx\n"):]
    block = block[:block.index("\n```\n")]
    config = Config()
    locations = {loc.split(" {\n")[0].strip(): loc for loc in block.split("location ")[1:]}
    by_kind = {kind: next(body for head, body in locations.items() if marker in head) for kind, marker in (
        ("bundle", r"analytics\.min\.js)$"), ("hashed", "{16}"), ("settings", "settings$"), ("snippet", "snippet"))}
    assert f'add_header Cache-Control "{bundle_cache_control(config)}" always;' in by_kind["bundle"]
    assert f'add_header Cache-Control "{IMMUTABLE}" always;' in by_kind["hashed"]
    assert f'add_header Cache-Control "{bundle_cache_control(config)}" always;' in by_kind["settings"]
    assert f'add_header Cache-Control "public, max-age={config.bundle_max_age}" always;' in by_kind["snippet"]
    for kind in ("bundle", "hashed", "snippet"):
        assert f'default_type "{JS}";' in by_kind[kind]
        assert 'add_header Access-Control-Allow-Origin "*" always;' in by_kind[kind]
    assert "default_type application/json;" in by_kind["settings"]


def test_every_server_publishes_a_change_made_elsewhere_within_a_second(live_server_factory, tmp_path):
    """Two `switchboard serve` processes on one database, each with its own publish directory; a
    change made by a third process (this one) is on disk in both within a second."""
    url = f"sqlite:///{tmp_path / 'live.db'}"
    engine = open_store(url)
    source = workspace.create_source(engine, "Shop")
    dest = workspace.add_destination(engine, source["id"], slug="google_analytics_4", mode="device", enabled=True,
                                     settings={"measurement_id": "G-ONE1"})
    dirs = [tmp_path / "a", tmp_path / "b"]
    for folder in dirs:
        live_server_factory(url, SWITCHBOARD_PUBLISH_DIR=str(folder))
    bundles = [folder / "analytics.js/v1" / source["write_key"] / "analytics.min.js" for folder in dirs]
    assert wait_for(lambda: all(b.exists() and b"G-ONE1" in b.read_bytes() for b in bundles), 10)
    changed = time.monotonic()
    workspace.update_destination(engine, dest["id"], settings={"measurement_id": "G-TWO2"})
    delays = []
    for bundle in bundles:
        assert wait_for(lambda: b"G-TWO2" in bundle.read_bytes(), 3)
        delays.append(time.monotonic() - changed)
    assert max(delays) < 1.0, delays
    engine.dispose()
