# Two commands from a fresh clone (only Python 3.11, pip and make needed):
#   make demo   - set up .venv and run the sample pipelines end to end on the embedded local stack
#   make test   - set up .venv and run the checks and the whole test suite
#   make fast   - the checks and the tests that need no local stack and no subprocess (seconds)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install check demo test fast dev bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[local-stack,test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/bedrock-assets demo

check: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: check
	$(BIN)/python -m pytest -q -n auto

fast: check
	$(BIN)/python -m pytest -q -m "not local_stack and not subprocess"

dev: install
	$(BIN)/bedrock-assets dev

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .bedrock_assets_demo *.egg-info
