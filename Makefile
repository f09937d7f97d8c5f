# bansos-bot — `make run` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint format catalogs compile-catalogs clean

LOCK := requirements.lock

## Install the exact, hash-checked versions in requirements.lock (runtime, test and dev
## extras), then the project itself without resolving anything again. After changing
## dependencies in pyproject.toml, re-lock with the command at the top of the lock file.
$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# A dependency added to pyproject.toml but not re-locked shows up here, by name.
	$(BIN)/python -m pip check
	touch $(STAMP)

install: $(STAMP)

## Re-lock after changing dependencies in pyproject.toml: requirements.lock (everything,
## for make install) and requirements-runtime.lock (what the Docker image installs).
.PHONY: lock
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra test --extra dev --universal \
		--python-version 3.11 --generate-hashes -o $(LOCK)
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
		--generate-hashes -o requirements-runtime.lock

## Check every pinned version in requirements.lock against known vulnerabilities
## (pip-audit; needs PyPI's JSON API). --strict: a package that could not be checked
## fails the audit instead of being skipped.
.PHONY: audit
audit: install
	$(BIN)/pip-audit --strict --require-hashes --disable-pip --progress-spinner off -r $(LOCK)

## Start the bot. With BOT_TOKEN: long polling against Telegram (or TELEGRAM_API_URL),
## after migrating the database and loading the region list the first time.
## Without BOT_TOKEN: the local sandbox (emulator + real bot + web chat) on
## http://127.0.0.1:8080 with demo data in ./sandbox.db.
## (BOT_TOKEN may also come from .env: the settings decide, not make.)
## The probe exits 0 with a token, 3 without; a setting that cannot be read prints one
## line naming it and exits 2, and then nothing starts.
run: install
	@$(BIN)/python -c "import sys; from infra.settings import load_settings; \
		sys.exit(0 if load_settings().bot_token else 3)"; probe=$$?; \
	if [ $$probe -eq 0 ]; then \
		$(BIN)/bansos-bot db upgrade && \
		$(BIN)/bansos-bot import regions --if-empty && \
		exec $(BIN)/bansos-bot run; \
	elif [ $$probe -eq 3 ]; then \
		echo "No BOT_TOKEN: starting the local sandbox (see README)."; \
		exec $(BIN)/bansos-bot sandbox; \
	else \
		exit $$probe; \
	fi

## The whole suite: SQLite + memory by default; PostgreSQL + Redis when
## TEST_DATABASE_URL / TEST_REDIS_URL are set (CI sets both).
PACKAGES := bot tg services infra models sandbox migrations

test: install
	$(BIN)/python -m compileall -q $(PACKAGES)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

## Hostile input through the real dispatcher (tests/test_fuzz.py), with a longer budget
## and a new random seed each run; CI runs the same tests with a fixed seed and a small
## budget. Override with FUZZ_EXAMPLES, FUZZ_STEPS, or FUZZ_RANDOM=0 for the fixed seed.
.PHONY: fuzz
fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} FUZZ_STEPS=$${FUZZ_STEPS:-40} \
		FUZZ_RANDOM=$${FUZZ_RANDOM:-1} $(BIN)/pytest -q -s tests/test_fuzz.py

lint: install
	$(BIN)/python -m compileall -q $(PACKAGES)
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
