# reBEN as a Makefile pipeline: one target per product and stage, calling the single-stage commands
# (rsprep patch, stack, s1, reference), then the dataset-wide steps (metadata, split, noise, convert,
# stats, card, validate) in the order and with the options of `rsprep build` (docs/build.md#steps).
#
#   make -f examples/reben.mk -j8 S2=/data/S2/L1C S1=/data/S1 \
#       CLC=/data/CLC/U2018_CLC2018_V2020_20u1.gpkg COUNTRIES=/data/countries.gpkg OUT=/data/reben
#
# Same layout as `rsprep build`: OUT/work (the work store), OUT/dataset; make's own bookkeeping lives
# in OUT/make (per-product links to the stores, the parameters of the last run). The defaults are the
# parameters of recipes/reben.yaml; PRESET=demo gives those of recipes/demo.yaml (L2A input, the stack
# stage, one noise variant, LMDB + Zarr + GeoTIFF, a full validation). Every parameter is a make
# variable (below). A second `make` does nothing; touching one product's input redoes only that
# product's stages and the dataset-wide steps; changing a parameter redoes the stages it belongs to.
#
# Targets are the files each stage writes (docs/workstore.md), reached through OUT/make/products/NAME,
# a link to the product's store (NAME: the input's file name without .SAFE/.zip; the store is named
# after the product URI, for L1C input after the L2A product sen2cor makes, so it is only known once
# `rsprep patch` ran):
#   patch      NAME/patches.parquet         stack  NAME/stack.zarr/zarr.json
#   s1         NAME/s1.parquet              reference  NAME/labels.parquet
#   metadata   dataset/metadata.parquet     split  dataset/split_report.txt
#   noise      dataset/noise/VARIANT.parquet
#   convert    dataset/lmdb/data.mdb, dataset/zarr/dataset.zarr/zarr.json, dataset/BigEarthNet-S2/
#   stats      dataset/stats.json           card   dataset/README.md
#   validate   dataset/checksums.sha256
# manifest.json is no target: every stage rewrites it. The metadata and split steps write the same
# files, and the GeoTIFF conversion no single file (three layout folders of per-patch files, switched
# into place), so its target is the folder BigEarthNet-S2. Each target is touched after its command
# succeeds: a stage that finds its stored result current (`rsprep patch` of an untouched band file)
# rewrites nothing, and make must still see the target done.

# make -n / make -q: report what would run, write nothing (a changed parameter is only reported)
DRY := $(if $(findstring n,$(firstword -$(MAKEFLAGS)))$(findstring q,$(firstword -$(MAKEFLAGS))),yes)
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:
MAKEFLAGS += --no-builtin-rules

# ---- inputs -------------------------------------------------------------------------------------
S2        ?=#  SAFE folders, .zip files, or folders searched for them (not inside a SAFE folder)
S1        ?=#  S1 scenes, or with S1_SOURCE=v1 a BigEarthNet-S1-v1.0 folder; empty: no s1 stage
#              (then KEEP_UNPAIRED=yes)
CLC       ?=#  CORINE Land Cover 2018 vectors
COUNTRIES ?=#  country polygons; empty: country stays null
V1        ?=#  BigEarthNet v1 tables (s2v1_name); empty: none
OUT       ?=#  output folder: OUT/work, OUT/dataset, OUT/make
RSPREP    ?= rsprep
THREADS   ?= 1#  threads per per-product command (OMP/NUMBA/GDAL/BLOSC); make -jN runs N of them
WORKERS   ?= 0#  worker processes of the dataset-wide steps (0: one per CPU)
SEN2COR   ?=#  L2A_Process for L1C input (default: $RSPREP_SEN2COR or PATH)

# ---- parameters: recipes/reben.yaml, or recipes/demo.yaml with PRESET=demo ----------------------
PRESET ?= reben
ifeq ($(PRESET),demo)
S2_LEVEL           ?= L2A
STACK              ?= yes
COUNTRY_CANDIDATES ?= all
NOISE              ?= mixed_sub0.2_add0.1_seed0
NOISE_mixed_sub0.2_add0.1_seed0 ?= --mode mixed --sub-rate 0.2 --add-rate 0.1 --splits train --seed 0
FORMATS            ?= lmdb zarr tiff
ZARR_STACK         ?= yes
VALIDATE_FULL      ?= yes
V1_ALIGNMENT       ?= no
S1_SOURCE          ?= scenes
else ifneq ($(PRESET),reben)
$(error PRESET=$(PRESET) is neither reben nor demo; leave it out for the reben parameters)
endif
S2_LEVEL           ?= L1C#  L1C (through sen2cor), L2A or any
PATCH_SIZE         ?= 1200
BANDS              ?=#  comma list (empty: all 12)
HARMONIZE          ?= none
VERIFY             ?= yes
STACK              ?= no
RESAMPLING         ?= bilinear
S1_SOURCE          ?= v1#  v1: S1 is a BigEarthNet-S1-v1.0 folder (--s1-v1); scenes: S1 scenes (--s1)
MAX_DAYS           ?= 10
SAME_SEASON        ?= no
S1_LINEAR          ?= no
POL                ?= VV,VH
SKIP_BAD_S1        ?= no
NOMENCLATURE       ?= ben19
MAX_UNLABELED      ?= 0.25
CODE_FIELD         ?=
CLC_LAYER          ?=
CLC_CRS            ?=
COUNTRY_CANDIDATES ?= reben#  reben, all, or a comma list of names
COUNTRY_FIELD      ?=
COUNTRY_LAYER      ?=
SNOW_THRESHOLD     ?= 0.0
CLOUD_THRESHOLD    ?= 0.0
KEEP_UNPAIRED      ?= no
V1_ALIGNMENT       ?= yes#  s2v1_name, s1_name and the flags from BigEarthNet v1.0 (rsprep[reben])
V1_TABLES          ?=#  with V1_ALIGNMENT: a folder of v1 tables instead of the package's
SPLIT_METHOD       ?= tile-border
FRACTIONS          ?= 0.5,0.25,0.25
SPLIT_SEED         ?= 0
BLOCK_KM           ?= 10.0
BUFFER             ?= 0
SPLIT_CRS          ?= auto
NOISE              ?=#  variant names; NOISE_<name> holds that variant's `rsprep noise` options
FORMATS            ?= lmdb tiff#  in the order they run: lmdb, zarr, tiff
ZARR_STACK         ?= no
ZARR_STACK_METHOD  ?=#  empty: RESAMPLING
ZARR_SHARD_PATCHES ?= 1024
ZARR_CLASS_ORDER   ?= alphabetical
ZARR_COMPRESSOR    ?= none
STATS              ?= yes
CARD               ?= yes
VALIDATE           ?= yes
VALIDATE_FULL      ?= no

# ---- checks ---------------------------------------------------------------------------------------
need = $(if $(strip $($1)),,$(error $1 is not set; pass $1=$2 (see the head of examples/reben.mk)))
$(call need,S2,PATH...)
$(call need,CLC,FILE)
$(call need,OUT,DIR)
yes = $(filter yes,$(strip $1))
flag = $(if $(call yes,$($1)),$2)
opt = $(if $(strip $($1)),$2 $(strip $($1)))
ifeq ($(strip $(S1)),)
ifneq ($(KEEP_UNPAIRED),yes)
$(error no S1 folder: the reben parameters keep only patches with a Sentinel-1 partner; pass S1=DIR \
  or KEEP_UNPAIRED=yes)
endif
endif
$(if $(filter v1 scenes,$(S1_SOURCE)),,$(error S1_SOURCE=$(S1_SOURCE) is neither v1 nor scenes))
$(foreach f,$(FORMATS),$(if $(filter $f,lmdb zarr tiff),,$(error FORMATS: $f is not one of lmdb zarr tiff)))
$(foreach v,$(NOISE),$(if $(strip $(NOISE_$v)),,$(error noise variant $v has no options; pass \
  NOISE_$v='--mode ...' (the options of rsprep noise))))

WORK    := $(OUT)/work
DATASET := $(OUT)/dataset
MK      := $(OUT)/make
LINKS   := $(MK)/products

# ---- the products -------------------------------------------------------------------------------
level_filter = $(if $(filter L1C,$(S2_LEVEL)),grep -iv 'MSIL2A[^/]*$$',$(if $(filter L2A,$(S2_LEVEL)),\
  grep -iv 'MSIL1C[^/]*$$',cat))
PRODUCTS := $(shell find $(S2) -name '.?*' -prune -o -type d -iname '*.SAFE' -print -prune \
  -o -type f -iname '*.zip' -print | grep -iE '(\.SAFE|MSIL1C[^/]*|MSIL2A[^/]*)$$' \
  | { $(level_filter) || true; } | LC_ALL=C sort -u)
ifeq ($(strip $(PRODUCTS)),)
$(error no Sentinel-2 products ($(S2_LEVEL); *.SAFE folders or .zip files) under $(S2); pass the folders \
  that hold them with S2=, or S2_LEVEL=any)
endif
name_of = $(patsubst %.SAFE,%,$(patsubst %.zip,%,$(patsubst %.ZIP,%,$(notdir $1))))
NAMES := $(foreach p,$(PRODUCTS),$(call name_of,$p))
ifneq ($(words $(NAMES)),$(words $(sort $(NAMES))))
$(error two inputs are the same product ($(sort $(foreach n,$(NAMES),$(if $(filter-out 1,$(words \
  $(filter $n,$(NAMES)))),$n)))); pass only one of each)
endif
# every file of a product: touching one redoes its patch stage (rsprep decides whether it changed)
files_of = $(shell find $1 -type f)

# ---- parameters remembered: a changed one redoes the stages it belongs to -------------------------
eq = $(and $(findstring x$1x,x$2x),$(findstring x$2x,x$1x))
$(if $(DRY),,$(shell mkdir -p $(MK)/params))
remember = $(if $(and $(wildcard $(MK)/params/$1),$(call eq,$(strip $2),$(strip $(file <$(MK)/params/$1)))),,\
  $(if $(DRY),$(eval $(MK)/params/$1: FORCE ; @echo "examples/reben.mk: $1 changed: $(strip $2)"),\
  $(file >$(MK)/params/$1,$(strip $2))))
P_PATCH := --patch-size $(PATCH_SIZE) $(call opt,BANDS,--bands) --harmonize $(HARMONIZE) \
  $(if $(call yes,$(VERIFY)),,--no-verify)
P_STACK := --resampling $(RESAMPLING)
P_S1 := $(if $(filter scenes,$(S1_SOURCE)),--max-days $(MAX_DAYS) $(call flag,SAME_SEASON,--same-season) \
  $(call flag,S1_LINEAR,--s1-linear)) --pol $(POL) $(call flag,SKIP_BAD_S1,--skip-bad-s1)
S1_OPTION := $(if $(filter v1,$(S1_SOURCE)),--s1-v1,--s1)
P_REFERENCE := --nomenclature $(NOMENCLATURE) --max-unlabeled $(MAX_UNLABELED) \
  $(call opt,CODE_FIELD,--code-field) $(call opt,CLC_LAYER,--layer) $(call opt,CLC_CRS,--clc-crs)
P_METADATA := $(if $(strip $(COUNTRIES)),--countries $(COUNTRIES) $(if $(filter all,$(COUNTRY_CANDIDATES)),,\
  --country-candidates $(COUNTRY_CANDIDATES)) $(call opt,COUNTRY_FIELD,--country-field) \
  $(call opt,COUNTRY_LAYER,--country-layer)) $(call opt,V1,--v1) --snow-threshold $(SNOW_THRESHOLD) \
  --cloud-threshold $(CLOUD_THRESHOLD) $(call flag,KEEP_UNPAIRED,--keep-unpaired) \
  $(call flag,V1_ALIGNMENT,--v1-alignment $(call opt,V1_TABLES,--v1-tables)) --fractions $(FRACTIONS)
P_SPLIT := --method $(SPLIT_METHOD) --fractions $(FRACTIONS) --seed $(SPLIT_SEED) --block-km $(BLOCK_KM) \
  --buffer $(BUFFER) --patch-size $(PATCH_SIZE) --crs $(SPLIT_CRS)
P_ZARR := $(call flag,ZARR_STACK,--stack --stack-method $(or $(ZARR_STACK_METHOD),$(RESAMPLING))) \
  --shard-patches $(ZARR_SHARD_PATCHES) --class-order $(ZARR_CLASS_ORDER) --compressor $(ZARR_COMPRESSOR)
P_CARD := $(call opt,COUNTRIES,--countries)
P_VALIDATE := --write-checksums $(call flag,VALIDATE_FULL,--full)
$(foreach s,PATCH STACK S1 REFERENCE METADATA SPLIT ZARR CARD VALIDATE,$(call remember,$s,$(P_$s)))
$(foreach v,$(NOISE),$(call remember,NOISE_$v,$(NOISE_$v)))
$(foreach i,S1 CLC COUNTRIES V1 V1_TABLES,$(call remember,INPUT_$i,$($i)))
$(call remember,INPUT_S1_SOURCE,$(S1_SOURCE))
PARAMS = $(MK)/params/$1

# the per-product commands (every target under OUT/make/products) run with THREADS threads each
$(foreach v,OMP_NUM_THREADS NUMBA_NUM_THREADS GDAL_NUM_THREADS BLOSC_NTHREADS,\
  $(eval $(LINKS)/%: export $v := $(THREADS)))
RS := $(RSPREP) -q
# the scene files (a v1 folder holds a million patch files: the folder stands for them)
S1_FILES := $(if $(strip $(S1)),$(if $(filter v1,$(S1_SOURCE)),$(S1),$(shell find $(S1) -type f)))

# ---- one product: patch → (stack) → (s1) → reference, in its store ---------------------------------
# $1: the input, $2: its name. `rsprep patch` names the store it wrote (its output is kept in
# OUT/make/logs); the link OUT/make/products/NAME is made to it, unless another input's link names it.
define link_store
store=$$$$(sed -n 's/^\(done\|skipped\) *\([^ ]*\): .*/\2/p' $(MK)/logs/$2.patch.txt); \
	store=$$$${store##*/}; \
	test -n "$$$$store" -a -f "$(WORK)/$$$$store/patches.parquet" || { echo "examples/reben.mk: rsprep patch \
	named no store for $1 (see $(MK)/logs/$2.patch.txt)" >&2; exit 1; }; \
	for l in $(LINKS)/*; do if test "$$$$l" != "$(LINKS)/$2" -a -L "$$$$l" \
	  -a "$$$$(readlink "$$$$l")" = "../../work/$$$$store"; then echo "examples/reben.mk: $1 gives the \
	same store ($$$$store) as $$$${l##*/}; pass only one of them" >&2; exit 1; fi; done; \
	ln -sfn ../../work/$$$$store $(LINKS)/$2
endef

define product_rules
$(LINKS)/$2/patches.parquet: $1 $(call files_of,$1) $(call PARAMS,PATCH)
	@mkdir -p $(LINKS) $(MK)/logs
	$(RS) patch $1 --out $(WORK) -j 1 $(P_PATCH) $(call opt,SEN2COR,--sen2cor) | tee $(MK)/logs/$2.patch.txt
	@$(call link_store,$1,$2)
	@touch $$@

STORE_$2 = $(WORK)/$$$$(basename "$$$$(readlink $(LINKS)/$2)")
LAST_$2 := $(LINKS)/$2/patches.parquet

ifeq ($(call yes,$(STACK)),yes)
$(LINKS)/$2/stack.zarr/zarr.json: $$(LAST_$2) $(call PARAMS,STACK)
	$(RS) stack $$(STORE_$2) -j 1 $(P_STACK)
	@touch $$@
LAST_$2 := $(LINKS)/$2/stack.zarr/zarr.json
endif

ifneq ($(strip $(S1)),)
$(LINKS)/$2/s1.parquet: $$(LAST_$2) $(S1_FILES) $(call PARAMS,S1) $(call PARAMS,INPUT_S1) \
  $(call PARAMS,INPUT_S1_SOURCE)
	$(RS) s1 $(S1_OPTION) $(S1) --work $$(STORE_$2) -j 1 $(P_S1)
	@touch $$@
LAST_$2 := $(LINKS)/$2/s1.parquet
endif

$(LINKS)/$2/labels.parquet: $$(LAST_$2) $(CLC) $(call PARAMS,REFERENCE) $(call PARAMS,INPUT_CLC)
	$(RS) reference --clc $(CLC) --work $$(STORE_$2) -j 1 $(P_REFERENCE)
	@touch $$@
endef
$(foreach p,$(PRODUCTS),$(eval $(call product_rules,$p,$(call name_of,$p))))
LABELS := $(foreach n,$(NAMES),$(LINKS)/$n/labels.parquet)

# ---- the dataset-wide steps, in the order of rsprep build; each needs the one before ------------------
META := $(DATASET)/metadata.parquet
$(META): $(LABELS) $(COUNTRIES) $(V1) $(V1_TABLES) $(call PARAMS,METADATA) $(call PARAMS,INPUT_COUNTRIES) \
  $(call PARAMS,INPUT_V1) $(call PARAMS,INPUT_V1_TABLES)
	$(RS) metadata --work $(WORK) --out $(DATASET) $(P_METADATA) --overwrite
	@touch $@

STEP := $(DATASET)/split_report.txt
$(STEP): $(META) $(call PARAMS,SPLIT)
	$(RS) split $(DATASET) $(P_SPLIT)
	@touch $@

define noise_rule
$(DATASET)/noise/$1.parquet: $(STEP) $(call PARAMS,NOISE_$1)
	$(RS) noise $(DATASET) $(NOISE_$1) --name $1 --overwrite
	@touch $$@
STEP := $(DATASET)/noise/$1.parquet
endef
$(foreach v,$(NOISE),$(eval $(call noise_rule,$v)))

FORMAT_TARGET_lmdb := $(DATASET)/lmdb/data.mdb
FORMAT_TARGET_zarr := $(DATASET)/zarr/dataset.zarr/zarr.json
FORMAT_TARGET_tiff := $(DATASET)/BigEarthNet-S2
define format_rule
$(FORMAT_TARGET_$1): $(STEP) $(if $(filter zarr,$1),$(call PARAMS,ZARR))
	$(RS) convert $1 $(DATASET) --workers $(WORKERS) $(if $(filter zarr,$1),$(P_ZARR)) --overwrite
	@touch $$@
STEP := $(FORMAT_TARGET_$1)
endef
$(foreach f,$(FORMATS),$(eval $(call format_rule,$f)))

ifeq ($(call yes,$(STATS)),yes)
$(DATASET)/stats.json: $(STEP)
	$(RS) stats $(DATASET) --overwrite
	@touch $@
STEP := $(DATASET)/stats.json
endif

ifeq ($(call yes,$(CARD)),yes)
$(DATASET)/README.md: $(STEP) $(call PARAMS,CARD)
	$(RS) card $(DATASET) $(P_CARD) --overwrite
	@touch $@
STEP := $(DATASET)/README.md
endif

ifeq ($(call yes,$(VALIDATE)),yes)
$(DATASET)/checksums.sha256: $(STEP) $(call PARAMS,VALIDATE)
	$(RS) validate $(DATASET) $(P_VALIDATE)
	@touch $@
STEP := $(DATASET)/checksums.sha256
endif

.PHONY: all products FORCE
FORCE:
.DEFAULT_GOAL := all
all: $(STEP)
products: $(LABELS)
