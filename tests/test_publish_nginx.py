"""docs/deployment.md's nginx config under real nginx, in front of a real `switchboard serve`
publishing into a directory: the published files come back with the origin's headers and bytes
for every Accept-Encoding (q=0 included), anything without a file goes to the origin, and the
files keep being served with the origin down."""

from __future__ import annotations

import httpx
import pytest
from nginx_support import decode, differences, documented_config, fetch, published_hash, published_paths, start_nginx
from pgserver import free_port, wait_for_port
from test_publish import wait_for

from conftest import LiveServer  # tests/conftest's, or e2e/conftest's re-export in a combined run

from server.store import open_store, workspace

# What browsers, CDNs and unusual clients send; the origin picks br, else gzip, else identity.
ENCODINGS = ["identity", "gzip", "br", "gzip, deflate, br, zstd", "gzip, deflate", "gzip,deflate", "BR, GZIP",
             "br;q=0, gzip", "br;q=0.0, gzip;q=0", "gzip;q=0.5, deflate", "br; q=1.0, gzip; q=0.8", "br;q=0.001",
             "x-gzip, compress", "deflate", "gzip;q=0, br ;q=0.2"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A server publishing one source with GA4 into www/, nginx in front with the documented config."""
    directory = tmp_path_factory.mktemp("nginx")
    url = f"sqlite:///{directory / 'live.db'}"
    engine = open_store(url)
    source = workspace.create_source(engine, "Published")
    workspace.add_destination(engine, source["id"], slug="google_analytics_4", mode="device", enabled=True,
                              settings={"measurement_id": "G-NGINX1", "api_secret": "never-in-browser"})
    www = directory / "www"
    origin = LiveServer(url, SWITCHBOARD_PUBLISH_DIR=str(www), SWITCHBOARD_DELIVERY_WORKERS="false").start()
    nginx = None
    try:
        key = source["write_key"]
        assert wait_for(lambda: published_hash(www, key) is not None)
        port = free_port()
        nginx = start_nginx(directory, documented_config(www, port, origin.port))
        wait_for_port(port, 10)
        yield {"engine": engine, "origin": origin, "nginx": f"http://127.0.0.1:{port}", "key": key, "www": www}
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        origin.stop()
        engine.dispose()


def test_nginx_answers_as_the_origin_for_every_published_file_and_encoding(stack):
    origin, key = stack["origin"].url, stack["key"]
    paths = published_paths(key, published_hash(stack["www"], key))
    assert (stack["www"] / paths[1].lstrip("/")).exists()  # the hashed bundle is a published file too
    assert differences(origin, stack["nginx"], paths, ENCODINGS) == []
    with httpx.Client() as client:
        body = decode(fetch(client, stack["nginx"] + paths[0], "br"))
    assert b"G-NGINX1" in body and b"never-in-browser" not in body


def test_what_has_no_file_goes_to_the_origin(stack):
    origin, key = stack["origin"].url, stack["key"]
    old_version = f"/analytics.js/v1/{key}/analytics.0123456789abcdef.min.js"
    unknown = "/analytics.js/v1/no-such-key/analytics.min.js"
    assert differences(origin, stack["nginx"], [unknown, old_version, "/v1/projects/no-such-key/settings"],
                       ["identity", "br"]) == []
    answer = httpx.get(stack["nginx"] + unknown)
    assert answer.status_code == 404 and "no source has this write key" in answer.text  # the origin's answer
    # Neither temporary files nor markers are served.
    assert httpx.get(stack["nginx"] + f"/analytics.js/v1/{key}/.published").status_code == 404


def test_a_source_created_later_is_served_through_nginx(stack):
    """Within a second (from the origin or its files, whichever comes first), then from its files:
    the same answers as the origin's."""
    source = workspace.create_source(stack["engine"], "Later")
    path = f"/analytics.js/v1/{source['write_key']}/analytics.min.js"
    assert wait_for(lambda: httpx.get(stack["nginx"] + path).status_code == 200, 1.0)
    assert wait_for(lambda: (stack["www"] / path.lstrip("/")).exists())
    assert differences(stack["origin"].url, stack["nginx"], [path], ["gzip", "br", "identity"]) == []


def test_published_files_are_served_with_the_origin_down(stack):
    """Last: it stops the origin. nginx serves every file of the source in every encoding."""
    key = stack["key"]
    paths = published_paths(key, published_hash(stack["www"], key))
    with httpx.Client() as client:
        before = {(p, e): fetch(client, stack["nginx"] + p, e) for p in paths for e in ("identity", "gzip", "br")}
    stack["origin"].stop()
    with httpx.Client() as client:
        for (path, encoding), answer in before.items():
            now = fetch(client, stack["nginx"] + path, encoding)
            assert now.status_code == 200, (path, encoding)
            assert now.headers.get("content-encoding") == answer.headers.get("content-encoding"), (path, encoding)
            assert decode(now) == decode(answer), (path, encoding)
        assert fetch(client, stack["nginx"] + paths[0], "br").headers["content-encoding"] == "br"
        assert fetch(client, stack["nginx"] + paths[0], "gzip;q=1, br;q=0").headers["content-encoding"] == "gzip"
        assert "content-encoding" not in fetch(client, stack["nginx"] + paths[0], "identity").headers
        # Without the origin, what has no file fails at nginx (502), not with another source's file.
        assert client.get(stack["nginx"] + "/analytics.js/v1/no-such-key/analytics.min.js").status_code == 502
