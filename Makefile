# Two commands matter: `make run` starts a server with embedded defaults,
# `make test` installs what the tests need and runs the whole suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= ./var

.PHONY: run test test-backends test-tools deps system-deps lint bench clean

# The Python packages go in through uv (same PyPI, resolved and installed in parallel:
# a fresh venv in well under half pip's time); pip only brings uv into the venv, and
# installs the packages itself where uv cannot (uv reads no pip.conf: a private index).
# Nothing is reinstalled while the venv is newer than pyproject.toml.
$(BIN)/townhall: pyproject.toml
	$(PY) -m venv $(VENV)
	( $(BIN)/pip install -q uv && $(BIN)/uv pip install -q --python $(BIN)/python -e '.[test]' ) \
		|| $(BIN)/pip install -q -e '.[test]'
	@touch $@

deps: $(BIN)/townhall

# Debian packages the tests drive for real: Chromium for the browser tests,
# ffmpeg as an independent HLS client, Redis and nginx for the scale-out tests.
system-deps:
	@scripts/install-system-deps

run: deps
	$(BIN)/townhall serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

# axe-core (accessibility checks the browser tests inject into pages), from npm.
tests/js/node_modules/axe-core/axe.min.js: tests/js/package.json tests/js/package-lock.json
	npm ci --prefix tests/js --no-audit --no-fund
	@touch $@

test-tools: tests/js/node_modules/axe-core/axe.min.js

# The API and end-to-end modules and the two-node scenario, run once more on the
# scale-out backends, both started by the tests themselves: Redis as the state
# (TOWNHALL_TEST_STATE=redis) and PostgreSQL as the store (a fresh database per test).
BACKEND_SUITE ?= tests/test_api_*.py tests/test_e2e_*.py tests/test_recording.py \
	tests/test_state_two_nodes.py

test: deps system-deps test-tools
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	scripts/isolated $(BIN)/pytest $(PYTEST_ARGS)
	$(MAKE) test-backends

test-backends: deps
	TOWNHALL_TEST_STATE=redis scripts/isolated $(BIN)/pytest -q --store postgresql:// \
		$(BACKEND_SUITE) $(PYTEST_ARGS)

lint: deps
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: deps system-deps
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache
