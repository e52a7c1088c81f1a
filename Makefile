# The two commands of the README: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DEMO   ?= demo

.PHONY: all demo test test-fast lint bench clean

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
	$(BIN)/rsprep patch $(DEMO)/archive/s2/*.SAFE --out $(DEMO)/work
	$(BIN)/rsprep stack $(DEMO)/work
	$(BIN)/rsprep s1 --s1 $(DEMO)/archive/s1 --work $(DEMO)/work
	$(BIN)/rsprep reference --clc $(DEMO)/archive/clc/U2018_CLC2018_V2020_20u1.gpkg --work $(DEMO)/work
	$(BIN)/rsprep metadata --work $(DEMO)/work --out $(DEMO)/dataset \
		--countries $(DEMO)/archive/countries/countries.gpkg --overwrite
	$(BIN)/rsprep split $(DEMO)/dataset --method tile-border
	$(BIN)/rsprep noise $(DEMO)/dataset --mode mixed --sub-rate 0.2 --add-rate 0.1 --overwrite

test: $(STAMP)
	$(BIN)/ruff check rsprep tests bench
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -x -q

lint: $(STAMP)
	$(BIN)/ruff check rsprep tests bench
	$(BIN)/ruff format --check rsprep tests bench

# Benchmarks (minutes; full-size synthetic tiles are generated once into bench/.data).
bench: $(STAMP)
	$(BIN)/python bench/bench_kernels.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_patch.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_reference.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_dataset.py --write docs/BENCHMARKS.md

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache .hypothesis
