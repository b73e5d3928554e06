# Two commands: `make run` (install + start with a demo) and `make test` (install + every test).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
APT := $(shell command -v apt-get 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-fast bench bench-quick install install-test system-deps node-deps js clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml setup.py | $(PY)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test system-deps node-deps

run: install
	$(VENV)/bin/switchboard serve --demo

# Chromium, PostgreSQL and nginx (tests/test_publish_nginx.py runs the documented config) from
# Debian when apt is there; elsewhere Playwright's own Chromium (PostgreSQL and nginx then have to
# be installed by hand: initdb/pg_ctl and nginx on PATH or in /usr/sbin).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	if [ -n "$$missing" ] && [ -n "$(APT)" ]; then \
	  echo "Installing$$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	elif echo "$$missing" | grep -q chromium; then \
	  $(PY) -m playwright install chromium; \
	fi

# npm packages the browser tests load (Segment's analytics-next, built for a test page).
node-deps:
	@if [ -f e2e/package.json ] && [ ! -d e2e/node_modules ]; then cd e2e && npm install --no-audit --no-fund --silent; fi

# The browser core as served (js_templates/dist/*.js): minified with the esbuild pinned in
# e2e/package.json from js_templates/core/*.js and filters.js. Run after changing those and commit
# the result; tests/test_js_dist.py fails while the committed files are stale (tools/build_js.py).
js: node-deps
	$(PY) tools/build_js.py

# Test files run in parallel (pytest-xdist), one process per core and at most 4 (TEST_JOBS=1 runs
# them one after another). Whole files go to a process (their module fixtures start servers once),
# in collection order: e2e/conftest.py puts the browser tests last, because Playwright's session
# leaves an event loop running that a later asyncio.run() in the same process would trip over.
TEST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
PARALLEL := -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder

# Every test (type check and import rules included), with a coverage floor: 91% was the figure on
# 2026-12-06 (tests/ + e2e/, rounded down); raise it as coverage grows.
test: install-test
	$(PY) -m pytest -q -p no:cacheprovider $(PARALLEL) --cov=server --cov-report=term:skip-covered --cov-fail-under=88

test-fast: install-test
	$(PY) -m pytest -q -p no:cacheprovider $(PARALLEL) tests

# Every command bench/README.md lists, i.e. every table the docs quote (about an hour: run it on a
# quiet machine). bench-quick: the same commands, one short round each (a smoke run, not figures).
# BENCH_ARGS="--only collect" runs a subset.
bench: install-test
	$(PY) bench/suite.py $(BENCH_ARGS)

bench-quick: install-test
	$(PY) bench/suite.py --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) switchboard.db switchboard.db-wal switchboard.db-shm
