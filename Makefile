# bansos-bot — `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format catalogs compile-catalogs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start the bot. With BOT_TOKEN: long polling against Telegram (or TELEGRAM_API_URL),
## after migrating the database and loading the region list the first time.
## Without BOT_TOKEN: the local sandbox (emulator + real bot + web chat) on
## http://127.0.0.1:8080 with demo data in ./sandbox.db.
## (BOT_TOKEN may also come from .env: the settings decide, not make.)
run: install
	@if $(BIN)/python -c "import sys; from bot.settings import Settings; \
		sys.exit(0 if Settings().bot_token else 1)"; then \
		$(BIN)/bansos-bot db upgrade && \
		$(BIN)/bansos-bot import regions --if-empty && \
		exec $(BIN)/bansos-bot run; \
	else \
		echo "No BOT_TOKEN: starting the local sandbox (see README)."; \
		exec $(BIN)/bansos-bot sandbox; \
	fi

## The whole suite: SQLite + memory by default; PostgreSQL + Redis when
## TEST_DATABASE_URL / TEST_REDIS_URL are set (CI sets both).
test: install
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## Re-extract user-facing strings and merge them into the id/en catalogs, then compile.
catalogs: install
	$(BIN)/pybabel extract -F babel.cfg -k _ -k __ -k lazy_gettext --no-location \
		--sort-output --project=bansos-bot -o locales/messages.pot .
	$(BIN)/pybabel update -i locales/messages.pot -d locales -D messages --width 100 \
		--ignore-obsolete
	$(BIN)/pybabel compile -d locales -D messages --statistics

compile-catalogs: install
	$(BIN)/pybabel compile -d locales -D messages --statistics

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
