# notifyhub — `make run` starts everything on the embedded default; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
NOTIFYHUB_PORT ?= 8000
export NOTIFYHUB_PORT

# Services the test suite talks to (started by scripts/services.sh when they are down).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/notifyhub
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: run test test-embedded bench lint schema clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

.env:
	$(BIN)/python scripts/make_env.py .env

## run: set up (venv, .env, database, demo data) and run web + worker + scheduler in the foreground.
run: $(VENV)/.installed .env
	$(BIN)/python manage.py migrate --no-input -v0
	$(BIN)/python manage.py collectstatic --no-input -v0
	$(BIN)/python manage.py demo_setup --port $(NOTIFYHUB_PORT)
	PATH="$(abspath $(BIN)):$$PATH" exec $(BIN)/honcho start -f Procfile

## test: the whole suite against real PostgreSQL, Redis and Celery workers.
test: $(VENV)/.installed-dev
	bash scripts/services.sh
	DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" NOTIFYHUB_REQUIRE_SERVICES=1 \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

## test-embedded: the suite on SQLite without servers (service-backed tests skip, saying why).
test-embedded: $(VENV)/.installed-dev
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python -m pytest $(PYTEST_ARGS)

## bench: the throughput benchmark on PostgreSQL and Redis (see docs/benchmarks.md).
bench: $(VENV)/.installed-dev
	bash scripts/services.sh
	DATABASE_URL="$(TEST_DATABASE_URL)" REDIS_URL="$(TEST_REDIS_URL)" NOTIFYHUB_REQUIRE_SERVICES=1 \
		$(BIN)/python -m pytest tests/benchmarks -p no:cacheprovider -s --benchmarks $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

schema: $(VENV)/.installed-dev
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

clean:
	rm -rf var staticfiles
