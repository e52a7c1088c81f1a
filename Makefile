# The two commands of the README: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
DEMO   ?= demo
# pytest-xdist processes of `make test` (files stay whole on one worker: module fixtures are built once)
TEST_WORKERS ?= 2
# TorchGeo and ConfigILM live in their own environment (they need torch 2.14.1 + torchvision 0.29.1,
# which lie on disk here; pinning them avoids gigabytes of downloads; ConfigILM needs NumPy 1.x).
INTEROP       := .venv-interop
INTEROP_STAMP := $(INTEROP)/.installed
INTEROP_PKGS  := torch==2.14.1 torchvision==0.29.1 torchgeo==0.8.1 configilm==0.7.1 lmdb safetensors "pyarrow<20"

.PHONY: all demo demo-stages test test-fast lint bench clean interop-venv

all: test

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "rsprep needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,train,dist,reben]'
	@touch $@

# Demo: a small synthetic archive (2 overlapping tiles x 2 dates, CLC, S1, countries), then the demo
# recipe built from it: every stage, statistics, the dataset card and a full validation (docs/build.md).
demo: $(STAMP)
	$(BIN)/rsprep synth $(DEMO)/archive --overwrite
	$(BIN)/rsprep build demo --s2 $(DEMO)/archive/s2 --s1 $(DEMO)/archive/s1 \
		--clc $(DEMO)/archive/clc/U2018_CLC2018_V2020_20u1.gpkg \
		--countries $(DEMO)/archive/countries/countries.gpkg --out $(DEMO)/build
	@echo "the dataset is in $(DEMO)/build/dataset (build record: $(DEMO)/build/build.json)"

# The same dataset through the chained single-stage commands (what `rsprep build demo` replaces; a test
# checks that both give the same files), into $(DEMO)/work and $(DEMO)/dataset.
demo-stages: $(STAMP)
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
	$(BIN)/rsprep convert lmdb $(DEMO)/dataset --overwrite
	$(BIN)/rsprep convert zarr $(DEMO)/dataset --stack --overwrite
	$(BIN)/rsprep convert tiff $(DEMO)/dataset --overwrite
	$(BIN)/rsprep stats $(DEMO)/dataset --overwrite
	$(BIN)/rsprep card $(DEMO)/dataset --countries $(DEMO)/archive/countries/countries.gpkg --overwrite
	$(BIN)/rsprep validate $(DEMO)/dataset --write-checksums --full

$(INTEROP_STAMP):
	$(PYTHON) -m venv $(INTEROP)
	$(INTEROP)/bin/python -m pip install --quiet $(INTEROP_PKGS)
	@touch $@

interop-venv: $(INTEROP_STAMP)

test: $(STAMP) $(INTEROP_STAMP)
	$(BIN)/ruff check rsprep tests bench
	$(BIN)/lint-imports --no-cache
	RSPREP_INTEROP_PYTHON=$(CURDIR)/$(INTEROP)/bin/python RSPREP_REQUIRE_INTEROP=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -x -q

lint: $(STAMP)
	$(BIN)/ruff check rsprep tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff format --check rsprep tests bench

# Benchmarks (minutes; full-size synthetic tiles are generated once into bench/.data).
bench: $(STAMP)
	$(BIN)/python bench/bench_kernels.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_patch.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_reference.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_dataset.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_convert.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_stats.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_validate.py --write docs/BENCHMARKS.md
	$(BIN)/python bench/bench_card.py --write docs/BENCHMARKS.md

clean:
	rm -rf $(VENV) $(INTEROP) $(DEMO) .pytest_cache .ruff_cache .hypothesis
