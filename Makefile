# Two commands: `make serve` runs kefu on SQLite; `make test` runs the whole suite.
# Both create the virtualenv and install what they need on first use.

PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& echo $$p && break; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test lint clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "kefu needs Python 3.11 or newer"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

serve: $(STAMP)  ## serve on KEFU_BIND (127.0.0.1:8000), migrating the database first
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

test: $(STAMP)  ## lint, then every test (end-to-end against a live gunicorn)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m tests.passes

# Browser tests drive Debian's Chromium through Playwright (never `playwright install`).
.PHONY: chromium
test: chromium
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
