# rackplan — every target installs what it needs into .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench lint clean postgresql libreoffice chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/rackplan solve examples/frontier-2027 --out out/frontier-2027

# The API tests run on SQLite and on a throw-away PostgreSQL cluster (tests/postgres.py):
# install the server binaries from the Debian packages when they are missing.
postgresql:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
	  { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq postgresql; } || \
	  echo "PostgreSQL could not be installed: the PostgreSQL test variants will be skipped"

# The spreadsheet tests open exports in LibreOffice headless (formula injection, round trips).
libreoffice:
	@command -v soffice >/dev/null 2>&1 || \
	  { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq --no-install-recommends \
	      libreoffice-calc-nogui; } || \
	  echo "LibreOffice could not be installed: the LibreOffice tests will be skipped"


# The browser tests (tests/test_web_browser.py) drive Debian's chromium with Playwright (no
# browser download): install it when it is missing.
chromium:
	@command -v chromium >/dev/null 2>&1 || \
	  { SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; } || \
	  echo "chromium could not be installed: the browser tests will be skipped"

test: $(STAMP) postgresql libreoffice chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/rates.py
	$(BIN)/python bench/plan.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/web.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) out .pytest_cache .ruff_cache .hypothesis
