# The two commands of the README: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DEMO   ?= demo

.PHONY: all demo test test-fast lint clean

all: test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rsprep needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# Demo: a small synthetic archive (2 overlapping tiles x 2 dates, CLC, S1, countries), then its description.
demo: $(STAMP)
	$(BIN)/rsprep synth $(DEMO)/archive --overwrite
	$(BIN)/rsprep inspect $(DEMO)/archive/s2/*.SAFE

test: $(STAMP)
	$(BIN)/ruff check rsprep tests
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -x -q

lint: $(STAMP)
	$(BIN)/ruff check rsprep tests
	$(BIN)/ruff format --check rsprep tests

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache .hypothesis
