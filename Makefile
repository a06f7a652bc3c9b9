# odstack: the front door. `make` (or `make help`) lists every target and variable.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

##@ Variables (VAR=value on the command line; unset data settings take odstack/cfg/default.yaml's values)
RUNNER ?= auto           ## docker (each stage in its image) | local (same script in .venv/<image>) | auto: docker if an engine answers
PYTHON ?= python3        ## interpreter used to create the local venvs (3.11)
IMAGE_PREFIX ?= odstack  ## image names are $(IMAGE_PREFIX)/<image>:$(TAG)
TAG ?= dev               ## image tag
BASE_IMAGE ?=            ## base image for docker builds (empty: each Dockerfile's public default; CI: odstack/base:bookworm)
CA_BUNDLE ?=             ## extra CA bundle (PEM) for pip inside docker builds, e.g. behind a TLS-intercepting proxy
SRC ?=                   ## data: dataset to convert (default input/raccoon)
OUT ?=                   ## data: output directory (default input/tf_records)
FORMAT ?=                ## data: auto | supervisely | tf_csv | pascal_voc | coco | cloud_annotations | yolo
VAL_FRACTION ?=          ## data: share of images for val (default 0.2)
SEED ?=                  ## data: split seed (default 42)
SPLIT ?=                 ## data: random | source (use the dataset's own train/val split)
SHARDS ?=                ## data: shards per split (default auto)
STRICT ?=                ## data: 1 = any skipped image/box fails the run
LABEL_MAP ?=             ## data: an existing label_map.pbtxt to use
VERIFY ?=                ## data: fast | decode | none (image integrity check)
WORKERS ?=               ## data: parallel processes (default: CPU cores)
ENGINE ?=                ## train: tfvision (PyPI-only, CPU-friendly) | odapi (TF OD API + model zoo)
MODEL ?=                 ## train: model name (`make models` lists them; default: the engine's default)
RUN ?=                   ## train/eval: run name under output/ (default: the model name); an existing run resumes
DATA ?=                  ## train/eval: directory made by `make data` (default input/tf_records)
STEPS ?=                 ## train: total training steps (default 1000)
BATCH ?=                 ## train: batch size (default: the model's)
IMAGE_SIZE ?=            ## train: input size in pixels, tfvision (default 320)
GPUS ?=                  ## train: auto | none | all | device ids like 0,1 (default auto)
CHECKPOINT ?=            ## eval: latest | best | a checkpoint path (default latest)
TF ?= 2                  ## train: 1 = the TF1.15 OD API image (odapi-tf1) for TF1 zoo configs
TB_PORT ?= 6006          ## tensorboard: port on 127.0.0.1
PYTEST_ARGS ?=           ## extra pytest arguments for `make test`, e.g. -k coco

# (`VAR ?= value  ## doc` keeps the spaces before `##`: strip every documented variable once)
$(foreach v,$(shell sed -n 's/^\([A-Z_]*\) ?=.*/\1/p' $(firstword $(MAKEFILE_LIST))),$(eval override $(v) := $(strip $($(v)))))
ifeq ($(RUNNER),auto)
override RUNNER := $(shell timeout 10 docker info >/dev/null 2>&1 && echo docker || echo local)
endif

VENV := .venv
REQ := dockerfiles/requirements
DEMO_SRC := input/raccoon-sample
DEMO_OUT := output/demo

# key=value arguments for `python -m odstack data`, only for the variables that are set
data_args = $(strip $(if $(SRC),src=$(SRC)) $(if $(OUT),out=$(OUT)) $(if $(FORMAT),format=$(FORMAT)) \
	$(if $(VAL_FRACTION),val_fraction=$(VAL_FRACTION)) $(if $(SEED),seed=$(SEED)) $(if $(SPLIT),split=$(SPLIT)) \
	$(if $(SHARDS),shards=$(SHARDS)) $(if $(STRICT),strict=$(STRICT)) $(if $(LABEL_MAP),label_map=$(LABEL_MAP)) \
	$(if $(VERIFY),verify=$(VERIFY)) $(if $(WORKERS),workers=$(WORKERS)))

train_args = $(strip $(if $(ENGINE),engine=$(ENGINE)) $(if $(MODEL),model=$(MODEL)) $(if $(RUN),run=$(RUN)) \
	$(if $(DATA),data=$(DATA)) $(if $(STEPS),steps=$(STEPS)) $(if $(BATCH),batch=$(BATCH)) \
	$(if $(IMAGE_SIZE),image_size=$(IMAGE_SIZE)) $(if $(GPUS),gpus=$(GPUS)))
eval_args = $(strip $(if $(RUN),run=$(RUN)) $(if $(DATA),data=$(DATA)) $(if $(CHECKPOINT),checkpoint=$(CHECKPOINT)))
TRAIN_IMAGE := $(if $(filter 1,$(TF)),odapi-tf1,odapi)
# GPUs in containers need the NVIDIA runtime; ask for them only when the engine has it and GPUS allows.
docker_gpus = $(if $(filter none,$(GPUS)),,$(if $(shell docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia && echo y),--gpus $(if $(filter-out auto all,$(GPUS)),'"device=$(GPUS)"',all)))

# $(call run_stage,<image>,<script>,<args>): the same container script, in the image or in the local venv.
# docker: the repo is mounted read-only at /workspace with input/ and output/ writable on top, so every
# repo-relative path means the same thing in both runners; files are written as the calling user.
ifeq ($(RUNNER),docker)
run_stage = mkdir -p "$(HOME)/.cache/odstack" && docker run --rm --network host --user $$(id -u):$$(id -g) $(4) \
	-v "$(CURDIR)":/workspace:ro -v "$(CURDIR)/input":/workspace/input -v "$(CURDIR)/output":/workspace/output \
	-v "$(HOME)/.cache/odstack":/tmp/.cache/odstack -w /workspace $(IMAGE_PREFIX)/$(1):$(TAG) \
	/opt/odstack/container_scripts/$(2) $(3)
else
run_stage = PATH="$(CURDIR)/$(VENV)/$(1)/bin:$$PATH" PYTHONPATH="$(CURDIR)" container_scripts/$(2) $(3)
endif

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} \
	  /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5); next} \
	  /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2; next} \
	  /^[A-Z_]+ \?=.*## / {split($$0, a, "## "); split(a[1], b, " \\?="); v=b[2]; gsub(/^ +| +$$/, "", v); \
	    printf "  \033[33m%-14s\033[0m %s%s\n", b[1], a[2], (v == "" ? "" : " [" v "]")}' $(MAKEFILE_LIST)
	@echo; echo "  RUNNER is now: $(RUNNER)"

##@ Setup
.PHONY: setup images venvs
setup: $(if $(filter docker,$(RUNNER)),images,venvs) ## RUNNER=local: create .venv/<image>; RUNNER=docker: build the images

venvs: $(VENV)/odapi/.installed ## create/refresh the local venvs from dockerfiles/requirements/*.txt

$(VENV)/%/.installed: $(REQ)/%.txt
	@echo "setup: $(VENV)/$* from $<"
	@test -x $(VENV)/$*/bin/python || $(PYTHON) -m venv $(VENV)/$*
	@$(VENV)/$*/bin/python -m pip install -q --disable-pip-version-check -r $<
	@touch $@

$(VENV)/odapi/.dev-installed: $(VENV)/odapi/.installed $(REQ)/dev.txt
	@$(VENV)/odapi/bin/python -m pip install -q --disable-pip-version-check -r $(REQ)/dev.txt
	@touch $@

images: image-odapi ## build every image (docker); one image: make image-<name>, e.g. image-odapi

.PHONY: image-%
image-%:
	@mkdir -p dockerfiles/ca && rm -f dockerfiles/ca/extra.crt
	@$(if $(CA_BUNDLE),cp "$(CA_BUNDLE)" dockerfiles/ca/extra.crt,true)
	docker build --network host $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  -f dockerfiles/$*.dockerfile -t $(IMAGE_PREFIX)/$*:$(TAG) .
	@rm -f dockerfiles/ca/extra.crt

##@ Pipeline
.PHONY: data demo train eval models tensorboard synth
data: $(if $(filter local,$(RUNNER)),$(VENV)/odapi/.installed) ## convert SRC (any supported format) into TFRecords + label map + report
	@mkdir -p input output
	$(call run_stage,odapi,data.sh,$(data_args))

demo: $(if $(filter local,$(RUNNER)),$(VENV)/odapi/.installed) ## the newcomer's tour: convert the bundled raccoon sample (more stages arrive with later issues)
	@mkdir -p input output
	@test -d $(DEMO_SRC) || { mkdir -p $(DEMO_SRC) && cp -r tests/fixtures/raccoon/images tests/fixtures/raccoon/annotations \
	  tests/fixtures/raccoon/LICENSE $(DEMO_SRC)/ && echo "demo: copied the bundled raccoon sample to $(DEMO_SRC)"; }
	$(call run_stage,odapi,data.sh,src=$(DEMO_SRC) out=$(DEMO_OUT)/tf_records $(filter-out src=% out=%,$(data_args)))
	@echo "demo: done. Records, label map and report (report.html, report.json) are in $(DEMO_OUT)/tf_records/"

train: $(if $(filter local,$(RUNNER)),$(VENV)/odapi/.installed) ## train a detector on DATA (ENGINE, MODEL, STEPS, BATCH, RUN, GPUS; TF=1 for TF1 configs)
	$(call run_stage,$(TRAIN_IMAGE),train.sh,$(train_args),$(docker_gpus))

eval: $(if $(filter local,$(RUNNER)),$(VENV)/odapi/.installed) ## COCO metrics of a run's checkpoint -> output/<run>/metrics.json
	$(call run_stage,odapi,eval.sh,$(eval_args))

models: $(if $(filter local,$(RUNNER)),$(VENV)/odapi/.installed) ## list the trainable models (model zoo with speed/mAP)
	@$(call run_stage,odapi,models.sh,)

tensorboard: $(if $(filter local,$(RUNNER)),$(VENV)/odapi/.installed) ## serve TensorBoard for output/<RUN> (every run if RUN is empty) on 127.0.0.1:TB_PORT
	$(call run_stage,odapi,tensorboard.sh,--logdir output/$(RUN) --host 127.0.0.1 --port $(TB_PORT))

synth: $(if $(filter local,$(RUNNER)),$(VENV)/odapi/.installed) ## make the synthetic shapes dataset (COCO JSON) in input/shapes
	$(call run_stage,odapi,synth.sh,)

##@ Quality
.PHONY: test test-docker bench lint
test: $(VENV)/odapi/.dev-installed ## run the test suite locally (what it covers: README "Tests")
	PYTHONPATH="$(CURDIR)" $(VENV)/odapi/bin/python -m pytest tests $(PYTEST_ARGS)

test-docker: $(VENV)/odapi/.dev-installed ## tests that need a Docker engine and the built images (RUNNER=docker vs local)
	PYTHONPATH="$(CURDIR)" ODSTACK_DOCKER_TESTS=1 $(VENV)/odapi/bin/python -m pytest tests/docker -q $(PYTEST_ARGS)

bench: $(VENV)/odapi/.dev-installed ## benchmarks (results: bench/results/*.json, docs/benchmarks.md)
	PYTHONPATH="$(CURDIR)" $(VENV)/odapi/bin/python -m bench.data_bench

lint: $(VENV)/odapi/.dev-installed ## hadolint over every Dockerfile
	$(VENV)/odapi/bin/hadolint dockerfiles/*.dockerfile

##@ Cleaning
.PHONY: clean
clean: ## remove the demo's artifacts (never your own datasets in input/)
	rm -rf $(DEMO_SRC) $(DEMO_OUT)
