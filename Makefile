# Every target bootstraps .venv itself: a fresh clone needs only `make run` / `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_FOR ?= 15

.PHONY: run test lint bench chaos clean

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# The demo node, bounded: it ends by itself after $(DEMO_FOR)s and writes a summary.
run: $(STAMP)
	$(BIN)/phalanx run --var-dir var/demo --for $(DEMO_FOR) --summary var/demo/summary.json
	@echo "summary: var/demo/summary.json"; cat var/demo/summary.json; echo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check phalanx tests bench bin
	$(BIN)/ruff format --check phalanx tests bench bin
	$(BIN)/mypy

bench: $(STAMP)
	@mkdir -p bench/results
	$(BIN)/python bench/run_all.py --out bench/results/latest.json

chaos: $(STAMP)
	$(BIN)/python -m pytest -m "" tests

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
