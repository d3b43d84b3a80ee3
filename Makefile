# make run   — serve on the embedded defaults (SQLite + memory:// Redis) at http://localhost:5000/api/
#              (SERVER_ARGS="--port 8000" passes options to tornado_server.py; to make dev too)
# make venv  — make .venv with the runtime and development requirements, nothing else (test and lint do it too)
# make test  — the test suite with coverage (set TEST_DATABASE_URL / REDIS_URL for real services)
# make lint  — ruff and mypy
# make dev   — serve and restart on every saved .py file (hot_deploy.py)
# make bench — tornado_server.py against gunicorn on the same app (bench/run.py; needs PostgreSQL and Redis)
# make messages     — extract the marked messages and update each language's .po (docs/i18n.md)
# make translations — compile the .po files into the .mo files the app reads (both are committed)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
SERVER_ARGS ?=
LOCALES ?= zh_Hans_CN
CATALOGUES := app/translations

.PHONY: run dev venv test lint bench clean messages translations

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt bench/requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.runtime $@

run: $(VENV)/.runtime
	$(BIN)/python tornado_server.py $(SERVER_ARGS)

dev: $(VENV)/.runtime
	$(BIN)/python hot_deploy.py $(SERVER_ARGS)

venv: $(VENV)/.dev

test: $(VENV)/.dev
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

bench: $(VENV)/.runtime
	$(BIN)/pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy

messages: $(VENV)/.runtime
	$(BIN)/pybabel extract -F babel.cfg -k lazy_gettext --add-location=file --sort-output \
		--project=flask-restx-starter -o $(CATALOGUES)/messages.pot .
	for locale in $(LOCALES); do \
		$(BIN)/pybabel update -i $(CATALOGUES)/messages.pot -d $(CATALOGUES) -l $$locale --init-missing \
			--ignore-obsolete --no-fuzzy-matching || exit 1; \
	done

translations: $(VENV)/.runtime
	$(BIN)/pybabel compile -d $(CATALOGUES) --statistics

clean:
	rm -rf $(VENV) .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache .hypothesis .schemathesis dist
