"""Configuration from SWITCHBOARD_* variables: defaults, parsing, and a refusal to start on an
invalid value, with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.config import Config, ConfigError, documented_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_from_an_empty_environment():
    config = Config.from_env({})
    assert config.database_url == "sqlite:///./switchboard.db"
    assert (config.host, config.port, config.log_level) == ("127.0.0.1", 8000, "INFO")
    assert config.public_url == "" and config.admin_token == "" and config.secret_key == ""
    assert config.origin == "http://127.0.0.1:8000"
    assert config.is_sqlite


def test_values_are_parsed():
    config = Config.from_env({
        "SWITCHBOARD_DATABASE_URL": "postgresql+psycopg://u:p@db/switchboard",
        "SWITCHBOARD_HOST": "0.0.0.0",
        "SWITCHBOARD_PORT": "9000",
        "SWITCHBOARD_PUBLIC_URL": "https://analytics.example.com/",
        "SWITCHBOARD_ADMIN_TOKEN": "tok",
        "SWITCHBOARD_SECRET_KEY": "key",
        "SWITCHBOARD_LOG_LEVEL": "debug",
        "SWITCHBOARD_TRUST_PROXY": "yes",
    })
    assert config.port == 9000 and config.host == "0.0.0.0"
    assert config.public_url == config.origin == "https://analytics.example.com"
    assert config.log_level == "DEBUG" and config.trust_proxy is True
    assert (config.admin_token, config.secret_key) == ("tok", "key")
    assert not config.is_sqlite


@pytest.mark.parametrize("name, value", [
    ("SWITCHBOARD_PORT", "abc"),
    ("SWITCHBOARD_PORT", "0"),
    ("SWITCHBOARD_PORT", "70000"),
    ("SWITCHBOARD_DATABASE_URL", "mysql://root@localhost/db"),
    ("SWITCHBOARD_DATABASE_URL", ""),
    ("SWITCHBOARD_PUBLIC_URL", "ftp://x"),
    ("SWITCHBOARD_PUBLIC_URL", "analytics.example.com"),
    ("SWITCHBOARD_LOG_LEVEL", "LOUD"),
    ("SWITCHBOARD_TRUST_PROXY", "maybe"),
    ("SWITCHBOARD_BUNDLE_PATH", "ajs/"),
])
def test_invalid_values_raise_an_error_naming_the_variable(name, value):
    with pytest.raises(ConfigError) as caught:
        Config.from_env({name: value})
    assert str(caught.value).startswith(name + "=")
    assert repr(value) in str(caught.value)


def test_every_setting_is_documented():
    rows = documented_settings()
    names = [name for name, _, _ in rows]
    for required in ("DATABASE_URL", "HOST", "PORT", "PUBLIC_URL", "ADMIN_TOKEN", "SECRET_KEY", "LOG_LEVEL"):
        assert "SWITCHBOARD_" + required in names
    assert all(doc for _, _, doc in rows) and len(set(names)) == len(names)


@pytest.mark.parametrize("name, value", [("SWITCHBOARD_PORT", "abc"), ("SWITCHBOARD_LOG_LEVEL", "LOUD"),
                                         ("SWITCHBOARD_PUBLISH_WEBHOOK", "ftp://cdn.example.com/purge")])
def test_serve_refuses_to_start_on_an_invalid_variable(tmp_path, name, value):
    env = {**os.environ, "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", name: value}
    done = subprocess.run([sys.executable, "-m", "server.cli", "serve"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "x.db").exists()  # it stopped before touching the database
