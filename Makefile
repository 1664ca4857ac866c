# The two quick-start commands are `make run` and `make test` (see README).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: install run test lint typecheck pytest pytest-sqlite pytest-postgres schema clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# Serve the community on the embedded defaults: SQLite files in ./var,
# in-memory broadcast, mail written to ./var/mail. GraphiQL at /graphql.
run: install
	$(BIN)/community migrate
	$(BIN)/community publish-rules --if-none
	$(BIN)/community serve --no-migrate

# The whole test suite: format, lint, types, then pytest on SQLite and on
# PostgreSQL + Redis (which must be running on 127.0.0.1).
test: install lint typecheck pytest

lint:
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

typecheck:
	$(BIN)/mypy .

pytest: pytest-sqlite pytest-postgres

pytest-sqlite:
	COMMUNITY_TEST_DB=sqlite $(BIN)/pytest

pytest-postgres:
	COMMUNITY_TEST_DB=postgres $(BIN)/pytest

# Re-export the SDL after a schema change (a test fails while it drifts).
schema: install
	$(BIN)/community export-schema schema.graphql

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
