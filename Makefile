# docvl — the commands a newcomer needs. `make help` lists them.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast lint format proto bench console-screenshots clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## make .venv with everything (torch 2.13.0 first, never torchvision)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	@if $(BIN)/pip show torchvision >/dev/null 2>&1; then echo "torchvision is installed: remove it"; exit 1; fi
	touch $(STAMP)

run: install ## the whole platform on loopback (docvl up): samples submitted, serves until Ctrl-C
	$(BIN)/docvl up

test: install ## run the whole test suite
	$(BIN)/pytest

test-fast: install ## the tests that start no server process
	$(BIN)/pytest -m "not slow"

lint: install ## ruff, mypy and the import rules (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: install ## apply ruff's formatting and fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

proto: install ## regenerate the gRPC stubs in docvl/v1 from proto/
	$(BIN)/python scripts/gen_proto.py

bench: install ## the model worker benchmark (bench/model_worker.py); the other bench/*.py: docs/benchmarks.md
	@echo "make bench runs bench/model_worker.py. The other benchmarks, each run as $(BIN)/python bench/NAME.py"
	@echo "(what each measures and writes: docs/benchmarks.md): pipeline, small_jobs, soak, orchestration,"
	@echo "telemetry, office, page_images, verification, chaos, continuous, two_stacks, sweep, reuse, bursts,"
	@echo "quote."
	$(BIN)/python bench/model_worker.py

console-screenshots: install ## redo docs/console/*.png (the web console's tests, in headless Chromium)
	DOCVL_CONSOLE_SCREENSHOTS=docs/console $(BIN)/pytest tests/front_doors/test_console.py -q

clean: ## remove the virtualenv, caches and local models
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache *.egg-info
