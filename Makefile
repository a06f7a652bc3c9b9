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
FORMAT ?=                ## data: auto (detected) or an annotation format, any case, or an alias of one (`make help` ends with them all)
VAL_FRACTION ?=          ## data: share of images for val (default 0.2)
SEED ?=                  ## data: split seed (default 42)
SPLIT ?=                 ## data: auto (the dataset's own train/val/test split if it has one, else random) | source | random
SHARDS ?=                ## data: shards per split (default auto)
STRICT ?=                ## data: 1 = any skipped image/box fails the run
LABEL_MAP ?=             ## data: an existing label_map.pbtxt to use
VERIFY ?=                ## data: fast | decode | none (image integrity check)
WORKERS ?=               ## data: parallel processes (default: CPU cores)
NEGATIVES ?=             ## data: keep = images without any annotation (unsaved LabelImg XML, unlabelled task) become negatives (default skip, reported)
ALLOW_OUTSIDE ?=         ## data: 1 = read images whose paths resolve outside SRC (each is listed in the report)
MIN_EXAMPLES ?=          ## data: classes with fewer boxes are warned about; STRICT=1 fails (default 10)
ENGINE ?=                ## train: the training engine (`make help` ends with them all; `make models` lists their models)
MODEL ?=                 ## train: model name (`make models` lists them; default: the engine's pretrained default; with INIT=none tfvision's CPU-sized one)
RUN ?=                   ## train/eval: run name under output/ (default: the model name); an existing run resumes
DATA ?=                  ## train/eval/tflite/parity: directory made by `make data` (default: the one in the run's run.json; a new run: input/tf_records)
STEPS ?=                 ## train: total training steps (default 1000)
BATCH ?=                 ## train: batch size (default: the model's)
IMAGE_SIZE ?=            ## train: input size in pixels, tfvision (default 320)
GPUS ?=                  ## train: auto | none | all | device ids like 0,1 (default auto: every GPU TF sees, else the CPU, said loudly)
PRECISION ?=             ## train: float32 | mixed_float16 (tfvision on an NVIDIA GPU) | mixed_bfloat16 (default float32)
INIT ?=                  ## train: coco | imagenet | none (from scratch) | auto: the model's published weights (`make models` lists them; default auto)
REPLAN ?=                ## train: 1 = resuming a run to more STEPS than planned re-plans its learning-rate schedule (a warm restart)
ARGS ?=                  ## any other setting of the stage as key=value pairs, e.g. ARGS="zoo_url=file:///mnt/zoo learning_rate=0.01" (python -m odstack MODE --help lists them)
CHECKPOINT ?=            ## eval: latest | best | a path (default latest); export: the same (default best)
TF ?= 2                  ## train/export: 1 = the TF1.15 OD API image (odapi-tf1) for TF1 zoo configs
TB_PORT ?= 6006          ## tensorboard: port on 127.0.0.1
QUANT ?=                 ## tflite: float | fp16 | dynamic | int8 | all, or a comma list (default float); tfjs: none | float16 | uint8
EDGETPU ?=               ## tflite: 1 = compile int8 for Coral (toco image built with EDGETPU=1)
CALIBRATION ?=           ## tflite: val images for int8 calibration (default 100)
CONFIG ?=                ## train TF=1: a TF1 pipeline.config to train with model_main.py
GPU ?= 0                 ## 1 = the GPU variant of the training environment (tensorflow[and-cuda], dockerfiles/requirements/odapi-gpu.txt): make venvs GPU=1, make image-odapi GPU=1 (tag <TAG>-gpu), and make train/eval/doctor use it
ODAPI ?= 0               ## 1 = install the TF Object Detection API into the odapi and toco venvs/images (make venvs|images ODAPI=1); from GitHub unless ODAPI_ARCHIVE
ODAPI_ARCHIVE ?=         ## a local .tar.gz of tensorflow/models (or its research/) at the pinned commit: the OD API without GitHub
CLIENT_PORT ?= 8080      ## serve/predict: the stack's port on 127.0.0.1 (the proxy; gunicorn itself without nginx)
CLIENT_UPSTREAM_PORT ?= 8081 ## serve: gunicorn's port on 127.0.0.1 behind the proxy
SERVING_GRPC_PORT ?= 8500 ## serve: model server gRPC port on 127.0.0.1
SERVING_REST_PORT ?= 8501 ## serve: model server REST (status, predict, metrics) port on 127.0.0.1
MODEL_NAME ?= detector   ## export/serve: output/serving/<MODEL_NAME>/<version>/ (= dockerfiles/serving/models.config)
COMPOSE_FILES ?=         ## serve: e.g. -f docker-compose.yml -f docker-compose.ci.yml (no registry)
IMAGE ?=                 ## predict: image file(s)
VIDEO ?=                 ## predict: a video file, a folder of images or an rtsp/http stream URL (annotated video + JSON Lines)
FPS ?=                   ## predict VIDEO: frames sampled per second (default 2; 0: every frame)
MAX_SECONDS ?=           ## predict VIDEO: stop after this much video (default 300 s)
THRESHOLD ?=             ## predict: min score (default: the served model's best-F1 threshold, assets.extra/thresholds.json)
ANNOTATED ?=             ## predict: save the drawn JPEG here
SYNTH_OUT ?=             ## synth: where the synthetic dataset goes (default input/shapes)
PYTEST_ARGS ?=           ## extra pytest arguments for `make test`, e.g. -k coco
LS_PORT ?= 8090          ## label: Label Studio's port on 127.0.0.1
ML_PORT ?= 9090          ## label: the ML backend + training manager's port on 127.0.0.1 (jobs: http://127.0.0.1:ML_PORT/jobs)
LS_DATA ?= output/labelstudio  ## label: Label Studio's data dir (SQLite DB, its media); local files are served from input/

# Unknown command-line variables (`make train BACH=4`) stop make before anything runs, with a suggestion.
# Known: every variable documented above, and make's own (special and implicit-rule variables).
documented_vars := $(shell sed -n 's/^\([A-Z_]*\) ?=.*/\1/p' $(firstword $(MAKEFILE_LIST)))
make_own_vars := MAKEFLAGS MAKEFILES MAKEOVERRIDES MAKELEVEL MAKECMDGOALS MAKE SHELL .SHELLFLAGS GNUMAKEFLAGS \
	VPATH CURDIR SUFFIXES .DEFAULT_GOAL .RECIPEPREFIX .LIBPATTERNS MAKE_TERMOUT MAKE_TERMERR MAKE_RESTARTS \
	CC CXX CPP CFLAGS CXXFLAGS CPPFLAGS LDFLAGS LDLIBS AR ARFLAGS AS LD RM
unknown_vars := $(filter-out $(documented_vars) $(make_own_vars), \
	$(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $(v))),$(v))))
ifneq ($(unknown_vars),)
did_you_mean := $(shell python3 -c 'import difflib, sys; m = difflib.get_close_matches(sys.argv[1].upper(), sys.argv[2:], 1); \
	print(f"; did you mean {m[0]}?" if m else "")' $(firstword $(unknown_vars)) $(documented_vars))
$(error unknown variable $(firstword $(unknown_vars))$(did_you_mean) [make help lists every variable; any other setting: ARGS="key=value ..."])
endif

# (`VAR ?= value  ## doc` keeps the spaces before `##`: strip every documented variable once)
$(foreach v,$(shell sed -n 's/^\([A-Z_]*\) ?=.*/\1/p' $(firstword $(MAKEFILE_LIST))),$(eval override $(v) := $(strip $($(v)))))
ifeq ($(RUNNER),auto)
override RUNNER := $(shell timeout 10 docker info >/dev/null 2>&1 && echo docker || echo local)
endif

VENV := .venv
TFJS_JS := odstack/export/js
REQ := dockerfiles/requirements

# $(call on_local,<prerequisites>): what a target needs when it runs in the local venvs (nothing for docker)
on_local = $(if $(filter local,$(RUNNER)),$(1))

# $(call kv,VAR=key ...): "key=value" for every VAR that is set (value: $(VAR)), then ARGS
kv = $(strip $(foreach pair,$(1),$(if $($(firstword $(subst =, ,$(pair)))),$(lastword $(subst =, ,$(pair)))=$($(firstword $(subst =, ,$(pair)))))) $(ARGS))
data_args = $(call kv,SRC=src OUT=out FORMAT=format VAL_FRACTION=val_fraction SEED=seed SPLIT=split SHARDS=shards \
	STRICT=strict LABEL_MAP=label_map VERIFY=verify WORKERS=workers NEGATIVES=negatives ALLOW_OUTSIDE=allow_outside \
	MIN_EXAMPLES=min_examples)
train_args = $(call kv,ENGINE=engine MODEL=model RUN=run DATA=data STEPS=steps BATCH=batch IMAGE_SIZE=image_size \
	GPUS=gpus PRECISION=precision INIT=init REPLAN=replan)
export_args = $(call kv,RUN=run CHECKPOINT=checkpoint MODEL_NAME=model_name)
tflite_args = $(call kv,RUN=run QUANT=quant EDGETPU=edgetpu CALIBRATION=calibration_images DATA=data)
tfjs_args = $(call kv,RUN=run QUANT=quant)
parity_args = $(call kv,RUN=run DATA=data)
eval_args = $(call kv,RUN=run DATA=data CHECKPOINT=checkpoint)
# GPUs in containers need the NVIDIA runtime; ask for them only when the engine has it and GPUS allows.
docker_gpus = $(if $(filter none,$(GPUS)),,$(if $(shell docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q nvidia && echo y),--gpus $(if $(filter-out auto all,$(GPUS)),'"device=$(GPUS)"',all)))

# $(call image_tag,<image>): TAG, or TAG-gpu for the odapi image's GPU variant (GPU=1)
image_tag = $(TAG)$(if $(and $(filter 1,$(GPU)),$(filter odapi,$(1))),-gpu)

# $(call run_stage,<image>,<command>,<args>[,<docker options>]): the same command, in the image or in the
# local venv. docker: the repo is mounted read-only at /workspace with input/ and output/ writable on top, so
# every repo-relative path means the same thing in both runners; files are written as the calling user.
# $(call run_mode,<image>,<mode>,<args>[,<docker options>]): `python -m odstack <mode> <args>` that way.
# Scripts that do more than that live in container_scripts/ ($(scripts)/<name>.sh in either runner).
ifeq ($(RUNNER),docker)
scripts := /opt/odstack/container_scripts
run_stage = mkdir -p "$(HOME)/.cache/odstack" && docker run --rm --network host --user $$(id -u):$$(id -g) $(4) \
	-v "$(CURDIR)":/workspace:ro -v "$(CURDIR)/input":/workspace/input -v "$(CURDIR)/output":/workspace/output \
	-v "$(HOME)/.cache/odstack":/tmp/.cache/odstack -w /workspace $(IMAGE_PREFIX)/$(1):$(call image_tag,$(1)) \
	$(2) $(3)
else
scripts := container_scripts
run_stage = PATH="$(CURDIR)/$(VENV)/$(1)/bin:$$PATH" PYTHONPATH="$(CURDIR)" $(2) $(3)
endif
run_mode = $(call run_stage,$(1),python -m odstack $(2),$(3),$(4))

# the registries `make help` ends with come from the code (python -m odstack list): any venv's Python, else python3
help_python := $(firstword $(wildcard $(VENV)/odapi/bin/python $(VENV)/toco/bin/python) python3)

.PHONY: help
help: ## show this help: targets, then variables, then the formats, engines and export formats there are
	@awk 'BEGIN {FS = ":.*## "} /^##@ Variables/ {next} \
	  /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5); next} \
	  /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@awk '/^##@ Variables/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5); next} \
	  /^[A-Z_]+ \?=.*## / {split($$0, a, "## "); split(a[1], b, " \\?="); v=b[2]; gsub(/^ +| +$$/, "", v); \
	    printf "  \033[33m%-14s\033[0m %s%s\n", b[1], a[2], (v == "" ? "" : " [" v "]")}' $(MAKEFILE_LIST)
	@echo; PYTHONPATH="$(CURDIR)" $(help_python) -m odstack list 2>/dev/null | sed 's/^/  /' || \
	  echo "  (formats, engines and export formats: \`python -m odstack list\` once a venv exists: make venvs)"
	@echo; echo "  RUNNER is now: $(RUNNER)"

##@ Setup
.PHONY: setup images images-labelling venvs
setup: $(if $(filter docker,$(RUNNER)),images,venvs) ## RUNNER=local: create .venv/<image>; RUNNER=docker: build the images

# ODAPI=1: the TF OD API on top of a venv's requirements, wherever it is used (odapi: train/eval/export;
# toco: TFLite export of an OD API model runs its export_tflite_graph_tf2)
odapi_venvs = $(if $(filter 1,$(ODAPI)),$(VENV)/odapi/.odapi-installed $(VENV)/toco/.odapi-installed)
# GPU=1: odapi-gpu.txt (odapi.txt + tensorflow[and-cuda]) on top of the odapi venv
gpu_venvs = $(if $(filter 1,$(GPU)),$(VENV)/odapi/.gpu-installed)

venvs: $(VENV)/odapi/.installed $(VENV)/toco/.installed $(VENV)/tfjs/.installed $(TFJS_JS)/node_modules/.package-lock.json $(VENV)/modelserver/.installed $(VENV)/client/.installed $(odapi_venvs) $(gpu_venvs) ## create/refresh the local venvs from dockerfiles/requirements/*.txt (ODAPI=1: with the TF OD API; GPU=1: the CUDA wheels too)

$(VENV)/%/.installed: $(REQ)/%.txt
	@echo "setup: $(VENV)/$* from $<"
	@test -x $(VENV)/$*/bin/python || $(PYTHON) -m venv $(VENV)/$*
	@$(VENV)/$*/bin/python -m pip install -q --disable-pip-version-check -r $<
	@touch $@

$(VENV)/%/.odapi-installed: $(VENV)/%/.installed scripts/odapi/install_odapi.sh
	@echo "setup: the TF Object Detection API into $(VENV)/$* from $(or $(ODAPI_ARCHIVE),GitHub)"
	@PYTHON=$(VENV)/$*/bin/python ODAPI_ARCHIVE="$(ODAPI_ARCHIVE)" bash scripts/odapi/install_odapi.sh
	@touch $@

$(VENV)/odapi/.gpu-installed: $(VENV)/odapi/.installed $(REQ)/odapi-gpu.txt
	@echo "setup: $(VENV)/odapi GPU variant from $(REQ)/odapi-gpu.txt (NVIDIA CUDA/cuDNN wheels, ~3 GB)"
	@$(VENV)/odapi/bin/python -m pip install -q --disable-pip-version-check -r $(REQ)/odapi-gpu.txt
	@touch $@

$(TFJS_JS)/node_modules/.package-lock.json: $(TFJS_JS)/package.json $(TFJS_JS)/package-lock.json
	@cd $(TFJS_JS) && npm ci --ignore-scripts --no-audit --no-fund
	@touch $@

$(VENV)/%/.dev-installed: $(VENV)/%/.installed $(REQ)/dev.txt
	@$(VENV)/$*/bin/python -m pip install -q --disable-pip-version-check -r $(REQ)/dev.txt
	@touch $@

images: image-odapi image-toco image-tfjs image-modelserver image-client image-proxy ## build every image (docker); one image: make image-<name>, e.g. image-odapi
images-labelling: image-labelstudio image-labelling ## the labelling profile's images: Label Studio (from PyPI) and odstack's labelling service (on the odapi image)

.PHONY: image-%
image-%:
	@mkdir -p dockerfiles/ca && rm -f dockerfiles/ca/extra.crt dockerfiles/odapi-src/*.tar.gz
	@$(if $(CA_BUNDLE),cp "$(CA_BUNDLE)" dockerfiles/ca/extra.crt,true)
	@$(if $(and $(filter odapi toco,$*),$(ODAPI_ARCHIVE)),cp "$(ODAPI_ARCHIVE)" dockerfiles/odapi-src/models.tar.gz,true)
	docker build --network host $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE)) \
	  $(if $(filter odapi toco,$*),--build-arg ODAPI=$(ODAPI)) $(if $(filter 1,$(EDGETPU)),--build-arg EDGETPU=1) \
	  $(if $(filter labelling,$*),--build-arg ODAPI_IMAGE=$(IMAGE_PREFIX)/odapi:$(TAG)) \
	  $(if $(and $(filter 1,$(GPU)),$(filter odapi,$*)),--build-arg REQUIREMENTS=odapi-gpu.txt) \
	  -f dockerfiles/$*.dockerfile -t $(IMAGE_PREFIX)/$*:$(call image_tag,$*) .
	@rm -f dockerfiles/ca/extra.crt dockerfiles/odapi-src/*.tar.gz

##@ Pipeline
.PHONY: data stats demo train eval models tensorboard synth export tflite tfjs parity doctor
data: $(call on_local,$(VENV)/odapi/.installed) ## convert SRC (any supported format) into TFRecords + label map + report
	@mkdir -p input output
	$(call run_mode,odapi,data,$(data_args))

stats: $(call on_local,$(VENV)/odapi/.installed) ## the data report of SRC (counts, warnings, report.html) without writing records; OUT default output/stats
	@mkdir -p input output
	$(call run_mode,odapi,stats,$(data_args))

demo: setup ## the newcomer's tour: synthetic data -> train -> export -> TFLite/TF.js -> serve -> detections (~10 min)
	@mkdir -p input output
	RUNNER=$(RUNNER) MODEL_NAME=$(MODEL_NAME) CLIENT_PORT=$(CLIENT_PORT) \
	  COMPOSE_FILES="$(COMPOSE_FILES)" bash scripts/demo.sh

train: $(call on_local,$(VENV)/odapi/.installed $(odapi_venvs) $(gpu_venvs)) ## train a detector on DATA (ENGINE, MODEL, STEPS, BATCH, RUN, GPUS; TF=1 CONFIG=… for TF1 configs)
ifeq ($(TF),1)
	@test -n "$(CONFIG)" -a -n "$(RUN)" || { echo "train TF=1: set CONFIG=<TF1 pipeline.config> and RUN=<name> (docker only)"; exit 2; }
	@mkdir -p output/$(RUN) && { [ "$(CONFIG)" -ef output/$(RUN)/pipeline.config ] || cp "$(CONFIG)" output/$(RUN)/pipeline.config; }
	$(call run_stage,odapi-tf1,$(scripts)/train_tf1.sh,output/$(RUN)/pipeline.config output/$(RUN) $(or $(STEPS),1000),$(docker_gpus))
else
	$(call run_mode,odapi,train,$(train_args),$(docker_gpus))
endif

eval: $(call on_local,$(VENV)/odapi/.installed $(odapi_venvs) $(gpu_venvs)) ## COCO metrics of a run's checkpoint -> output/<run>/metrics.json
	$(call run_mode,odapi,eval,$(eval_args))

models: $(call on_local,$(VENV)/odapi/.installed) ## list the trainable models (model zoo with speed/mAP)
	@$(call run_mode,odapi,models,)

tensorboard: $(call on_local,$(VENV)/odapi/.installed) ## serve TensorBoard for output/<RUN> (every run if RUN is empty) on 127.0.0.1:TB_PORT
	$(call run_stage,odapi,$(scripts)/tensorboard.sh,--logdir output/$(RUN) --host 127.0.0.1 --port $(TB_PORT))

export: $(call on_local,$(VENV)/odapi/.installed $(odapi_venvs)) ## SavedModel with the OD API signature + the next TF Serving version in output/serving/MODEL_NAME (TF=1 RUN=…: a TF1 run)
ifeq ($(TF),1)
	@test -n "$(RUN)" -a "$(RUNNER)" = docker || { echo "export TF=1: set RUN=<name> (the run make train TF=1 wrote); docker only"; exit 2; }
	$(call run_stage,odapi-tf1,$(scripts)/export_tf1.sh,output/$(RUN))
	$(call run_mode,odapi,export,$(export_args) tf1=true)
else
	$(call run_mode,odapi,export,$(export_args))
endif

tflite: $(call on_local,$(VENV)/toco/.installed $(odapi_venvs)) ## TFLite (QUANT, EDGETPU) in the toco image, then parity
	$(call run_mode,toco,tflite,$(tflite_args))

tfjs: $(call on_local,$(VENV)/tfjs/.installed $(TFJS_JS)/node_modules/.package-lock.json) ## TF.js graph model (QUANT=none|float16|uint8) in the tfjs image
	$(call run_mode,tfjs,tfjs,$(tfjs_args))

parity: $(call on_local,$(VENV)/toco/.installed $(TFJS_JS)/node_modules/.package-lock.json) ## every exported format vs the SavedModel -> output/<run>/parity.json
	$(call run_mode,toco,parity,$(parity_args))

doctor: $(call on_local,$(VENV)/odapi/.installed $(gpu_venvs)) ## one screen (+ output/doctor.json): TF and its CUDA/cuDNN, GPUs TF sees and why not, nvidia-smi, Docker runtimes, compose, engines, caches, free disk
ifeq ($(RUNNER),docker)
	@echo "== host"; PYTHONPATH="$(CURDIR)" python3 -m odstack.doctor
	@echo "== in the odapi image (where training runs)"
	@$(call run_mode,odapi,doctor,$(ARGS),$(docker_gpus))
else
	@$(call run_mode,odapi,doctor,$(ARGS))
endif

synth: $(call on_local,$(VENV)/odapi/.installed) ## make the synthetic shapes dataset (COCO JSON) in SYNTH_OUT
	$(call run_mode,odapi,synth,$(if $(SYNTH_OUT),out=$(SYNTH_OUT)))

##@ Serving (docker-compose.yml; without Docker: the development model server + gunicorn)

# $(call venv_with_protos,<venv>): the venv from its requirements ($<), then TF Serving's gRPC protos without
# TensorFlow (scripts/client/extract_protos.py): the client's, and the labelling service's, which reaches TF
# Serving with the client's gRPC module
define venv_with_protos
	@echo "setup: $(VENV)/$(1) from $< + TF Serving protos (scripts/client/extract_protos.py)"
	@test -x $(VENV)/$(1)/bin/python || $(PYTHON) -m venv $(VENV)/$(1)
	@$(VENV)/$(1)/bin/python -m pip install -q --disable-pip-version-check -r $<
	@$(VENV)/$(1)/bin/python scripts/client/extract_protos.py --wheel-dir .build/wheels --check \
	  --target "$$($(VENV)/$(1)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
	@touch $@
endef
$(VENV)/client/.installed: $(REQ)/client.txt scripts/client/extract_protos.py
	$(call venv_with_protos,client)
$(VENV)/labelling/.installed: $(REQ)/labelling.txt $(REQ)/client.txt scripts/client/extract_protos.py
	$(call venv_with_protos,labelling)

.PHONY: serve serve-bg serve-down predict test-client bench-serving
# RUNNER=local: the proxy (container_scripts/proxy.sh) runs when Debian's nginx is installed; without it
# gunicorn faces clients itself, without the slow-client protection (a warning says so).
# docker: the model server's config for MODEL_NAME, from dockerfiles/serving/models.config (written for "detector")
models_config = mkdir -p output/.serve && sed -e 's|"detector"|"$(MODEL_NAME)"|' -e 's|/models/detector"|/models/$(MODEL_NAME)"|' \
  dockerfiles/serving/models.config > output/.serve/models.config
serve_ports = ODSTACK_MODELS_CONFIG="$(CURDIR)/output/.serve/models.config" CLIENT_PORT=$(CLIENT_PORT) CLIENT_UPSTREAM_PORT=$(CLIENT_UPSTREAM_PORT) \
  SERVING_GRPC_PORT=$(SERVING_GRPC_PORT) SERVING_REST_PORT=$(SERVING_REST_PORT) MODEL_NAME=$(MODEL_NAME)
local_modelserver = env PYTHONPATH="$(CURDIR)" $(VENV)/modelserver/bin/python -m odstack.serving.modelserver \
  --port $(SERVING_GRPC_PORT) --rest_api_port $(SERVING_REST_PORT) --bind_address 127.0.0.1 --model_name $(MODEL_NAME) \
  --model_base_path output/serving/$(MODEL_NAME) --monitoring_config_file dockerfiles/serving/monitoring.config
have_nginx = { command -v nginx || test -x /usr/sbin/nginx; } >/dev/null 2>&1
no_nginx_warning = echo "serve: nginx not installed (apt-get install nginx-light): gunicorn faces clients itself, without the proxy's slow-client protection"
local_proxy = env PATH="$$PATH:/usr/sbin" PROXY_LISTEN=127.0.0.1:$(CLIENT_PORT) PROXY_UPSTREAM=127.0.0.1:$(CLIENT_UPSTREAM_PORT) \
  PROXY_RUN_DIR="$(CURDIR)/output/.serve/proxy" container_scripts/proxy.sh
local_client_env = TF_SERVING_ADDR=127.0.0.1:$(SERVING_GRPC_PORT) MODEL_NAME=$(MODEL_NAME) SERVING_DIR=output/serving

serve: $(if $(filter local,$(RUNNER)),$(VENV)/client/.installed $(VENV)/modelserver/.installed,image-client image-proxy) ## run the serving stack (docker: docker-compose; local: dev model server + gunicorn + nginx if installed) on 127.0.0.1:CLIENT_PORT
ifeq ($(RUNNER),docker)
	@$(models_config)
	$(serve_ports) docker-compose $(COMPOSE_FILES) up -d --no-build
	@echo "serve: http://127.0.0.1:$(CLIENT_PORT)/  (logs: docker-compose $(COMPOSE_FILES) logs -f; stop: make serve-down)"
else
	@test -d output/serving/$(MODEL_NAME) || { echo "serve: output/serving/$(MODEL_NAME)/<version>/ missing (make export)"; exit 1; }
	@mkdir -p output/.serve
	@echo "serve: development model server (127.0.0.1:$(SERVING_GRPC_PORT)) + client on http://127.0.0.1:$(CLIENT_PORT)/ (Ctrl-C stops all)"
	@$(local_modelserver) & pids=$$!; \
	  if $(have_nginx); then $(local_proxy) & pids="$$pids $$!"; bind=$(CLIENT_UPSTREAM_PORT); \
	  else $(no_nginx_warning); bind=$(CLIENT_PORT); fi; \
	  trap 'kill $$pids' EXIT INT TERM; \
	  BIND=127.0.0.1:$$bind $(local_client_env) $(call run_stage,client,$(scripts)/client.sh,)
endif

serve-bg: $(if $(filter local,$(RUNNER)),$(VENV)/client/.installed $(VENV)/modelserver/.installed,image-client image-proxy) ## start the serving stack in the background and wait until the model is ready
ifeq ($(RUNNER),docker)
	@$(models_config)
	$(serve_ports) docker-compose $(COMPOSE_FILES) up -d --no-build
else
	@$(MAKE) --no-print-directory serve-down RUNNER=local >/dev/null 2>&1 || true
	@mkdir -p output/.serve
	@nohup $(local_modelserver) > output/.serve/modelserver.log 2>&1 & echo $$! > output/.serve/modelserver.pid
	@if $(have_nginx); then nohup $(local_proxy) > output/.serve/proxy.log 2>&1 & echo $$! > output/.serve/proxy.pid; \
	  bind=$(CLIENT_UPSTREAM_PORT); else $(no_nginx_warning); bind=$(CLIENT_PORT); fi; \
	  BIND=127.0.0.1:$$bind $(local_client_env) PATH="$(CURDIR)/$(VENV)/client/bin:$$PATH" PYTHONPATH="$(CURDIR)/client" \
	  nohup container_scripts/client.sh > output/.serve/client.log 2>&1 & echo $$! > output/.serve/client.pid
endif
	@for i in $$(seq 1 120); do \
	  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$(CLIENT_PORT)/readyz', timeout=2)" 2>/dev/null \
	    && { echo "serve: ready on http://127.0.0.1:$(CLIENT_PORT)/"; exit 0; }; sleep 1; done; \
	  echo "serve: not ready after 120 s (logs: output/.serve/ or docker-compose logs)"; exit 1

serve-down: ## stop the serving stack (docker-compose down, or the local background processes)
ifeq ($(RUNNER),docker)
	docker-compose $(COMPOSE_FILES) down
else
	@for p in output/.serve/*.pid; do [ -f "$$p" ] && kill "$$(cat $$p)" 2>/dev/null; rm -f "$$p"; done; true
endif

predict: $(if $(VIDEO),$(VENV)/client/.installed) ## send IMAGE=photo.jpg (or VIDEO=clip.mp4|folder|stream URL) to the running client, print detections (ANNOTATED=out.jpg|out.mp4 saves the drawing)
ifneq ($(VIDEO),)
	@threshold="$(or $(THRESHOLD),$$(python3 scripts/served_threshold.py output/serving/$(MODEL_NAME)))"; \
	  $(VENV)/client/bin/python client/predict_video.py "$(VIDEO)" --url http://127.0.0.1:$(CLIENT_PORT) \
	  $(if $(FPS),--fps $(FPS)) $(if $(MAX_SECONDS),--max-seconds $(MAX_SECONDS)) \
	  $${threshold:+--threshold $$threshold} $(if $(ANNOTATED),--out $(ANNOTATED))
else
	@test -n "$(IMAGE)" || { echo "predict: set IMAGE=path/to/image.jpg or VIDEO=clip.mp4"; exit 1; }
	@threshold="$(or $(THRESHOLD),$$(python3 scripts/served_threshold.py output/serving/$(MODEL_NAME)))"; \
	  $(PYTHON) client/predict.py $(IMAGE) --url http://127.0.0.1:$(CLIENT_PORT) \
	  $${threshold:+--threshold $$threshold} $(if $(ANNOTATED),--jpeg $(ANNOTATED))
endif

test-client: $(VENV)/client/.dev-installed $(VENV)/modelserver/.installed ## client tests: .venv/client runs pytest, the model server runs from .venv/modelserver
	PYTHONPATH="$(CURDIR):$(CURDIR)/client" $(VENV)/client/bin/python -m pytest tests/client $(PYTEST_ARGS)

bench-serving: $(VENV)/client/.dev-installed $(VENV)/modelserver/.installed ## serving benchmark: REST via gunicorn vs direct gRPC (soak: bench.serving_bench --soak 600 --concurrency 16)
	PYTHONPATH="$(CURDIR)" $(VENV)/client/bin/python -m bench.serving_bench

##@ Labelling (Label Studio + odstack's ML backend and training manager; README "Label with your team")
.PHONY: label labelling-service test-labelling test-labelling-api
label: $(VENV)/labelstudio/.installed $(VENV)/labelling/.installed ## RUNNER=local: Label Studio on 127.0.0.1:LS_PORT + the ML backend/manager on 127.0.0.1:ML_PORT (Ctrl-C stops both; docker: README)
	@mkdir -p $(LS_DATA) input
	@echo "label: Label Studio http://127.0.0.1:$(LS_PORT)/ (images: input/ as local files), ML backend http://127.0.0.1:$(ML_PORT) (jobs: /jobs)"
	@LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$(CURDIR)/input" \
	  ML_BLOCK_LOCAL_IP=false USE_DEFAULT_BANNED_SUBNETS=false LATEST_VERSION_CHECK=false \
	  $(VENV)/labelstudio/bin/label-studio start --data-dir $(LS_DATA) --internal-host 127.0.0.1 -p $(LS_PORT) \
	  --no-browser --enable-legacy-api-token & trap 'kill $$!' EXIT INT TERM; \
	  LABEL_STUDIO_URL=http://127.0.0.1:$(LS_PORT) MODEL_NAME=$(MODEL_NAME) PYTHONPATH="$(CURDIR):$(CURDIR)/client" \
	  $(VENV)/labelling/bin/python -m odstack.labelling port=$(ML_PORT) $(ARGS)

labelling-service: $(VENV)/labelling/.installed ## only the ML backend + training manager on 127.0.0.1:ML_PORT (for a Label Studio you already run)
	LABEL_STUDIO_URL=$${LABEL_STUDIO_URL:-http://127.0.0.1:$(LS_PORT)} MODEL_NAME=$(MODEL_NAME) \
	  PYTHONPATH="$(CURDIR):$(CURDIR)/client" $(VENV)/labelling/bin/python -m odstack.labelling port=$(ML_PORT) $(ARGS)

test-labelling-api: $(VENV)/labelling/.installed $(VENV)/modelserver/.installed $(VENV)/odapi/.installed ## ML backend contract + training manager tests (SQLite and PostgreSQL), part of `make test`
	PYTHONPATH="$(CURDIR):$(CURDIR)/client" $(VENV)/labelling/bin/python -m pytest tests/labelling $(PYTEST_ARGS)

test-labelling: $(VENV)/labelstudio/.installed $(VENV)/labelling/.installed $(VENV)/modelserver/.installed $(VENV)/odapi/.installed ## the whole loop against a real Label Studio (pre-label, annotate, train from its UI, publish, next pre-labels), ~4 min
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } \
	    || echo "test-labelling: PostgreSQL not installed (apt-get install postgresql): its tests are skipped"; }
	PYTHONPATH="$(CURDIR):$(CURDIR)/client" ODSTACK_LABELLING_LOOP=1 $(VENV)/labelling/bin/python -m pytest tests/labelling -s $(PYTEST_ARGS)

##@ Quality
.PHONY: test test-core test-serving test-odapi test-docker bench lint check-gpu-requirements
test: test-core test-serving test-client test-labelling-api ## the whole test suite, locally (what it covers: README "Tests")

test-core: $(VENV)/odapi/.dev-installed $(VENV)/modelserver/.installed $(VENV)/toco/.installed $(VENV)/tfjs/.installed $(TFJS_JS)/node_modules/.package-lock.json $(odapi_venvs) ## data, formats, training, export tests (.venv/odapi)
	PYTHONPATH="$(CURDIR)" $(VENV)/odapi/bin/python -m pytest tests --ignore=tests/serving --ignore=tests/client --ignore=tests/labelling $(PYTEST_ARGS)

test-serving: $(VENV)/modelserver/.dev-installed ## development model server tests (.venv/modelserver)
	PYTHONPATH="$(CURDIR)" $(VENV)/modelserver/bin/python -m pytest tests/serving $(PYTEST_ARGS)

test-odapi: $(VENV)/odapi/.dev-installed $(VENV)/toco/.installed $(VENV)/tfjs/.installed $(TFJS_JS)/node_modules/.package-lock.json $(VENV)/modelserver/.installed $(VENV)/client/.installed $(odapi_venvs) ## the OD API chain through make (data, train, resume, eval, export, tflite, tfjs, parity, serve) and a tiny SSD trained from scratch, ~11 min; needs ODAPI=1 venvs
	PYTHONPATH="$(CURDIR)" ODSTACK_ODAPI_CHAIN=1 $(VENV)/odapi/bin/python -m pytest tests/odapi/test_chain.py \
	  tests/odapi/test_odapi_engine.py::test_real_training_from_scratch_resume_and_evaluate $(PYTEST_ARGS)

test-docker: $(VENV)/odapi/.dev-installed $(VENV)/client/.dev-installed ## tests that need a Docker engine and the built images (RUNNER=docker vs local, compose stack)
	PYTHONPATH="$(CURDIR)" ODSTACK_DOCKER_TESTS=1 $(VENV)/odapi/bin/python -m pytest tests/docker $(PYTEST_ARGS)
	PYTHONPATH="$(CURDIR):$(CURDIR)/client" ODSTACK_DOCKER_TESTS=1 $(VENV)/client/bin/python -m pytest tests/client/test_compose.py $(PYTEST_ARGS)

bench: $(VENV)/odapi/.dev-installed $(VENV)/toco/.installed bench-serving ## benchmarks (results: bench/results/*.json, docs/benchmarks.md)
	PYTHONPATH="$(CURDIR)" $(VENV)/odapi/bin/python -m bench.data_bench --images 20000
	PYTHONPATH="$(CURDIR)" $(VENV)/toco/bin/python -m bench.convert_bench
	PYTHONPATH="$(CURDIR)" $(VENV)/odapi/bin/python -m bench.train_bench

check-gpu-requirements: ## does the GPU variant (odapi-gpu.txt: tensorflow[and-cuda]) resolve from PyPI? pip --dry-run --report in a scratch venv (~1 min, no GPU needed) -> output/gpu-requirements.json
	PYTHON=$(PYTHON) bash scripts/gpu/check_requirements.sh

lint: $(VENV)/odapi/.dev-installed ## hadolint over every Dockerfile, `docker-compose config` over every compose file
	$(VENV)/odapi/bin/hadolint dockerfiles/*.dockerfile
	@for extra in "" docker-compose.override.yml docker-compose.gpu.yml docker-compose.ci.yml; do \
	  docker-compose -f docker-compose.yml $${extra:+-f $$extra} config -q && echo "compose: docker-compose.yml $$extra ok"; done
	@POSTGRES_PASSWORD=lint docker-compose -f docker-compose.yml -f docker-compose.labelling.yml --profile labelling config -q \
	  && echo "compose: docker-compose.yml docker-compose.labelling.yml (profile labelling) ok"

##@ Cleaning
.PHONY: clean
clean: ## remove the demo's artifacts (never your own datasets in input/)
	@$(MAKE) --no-print-directory serve-down >/dev/null 2>&1 || true
	rm -rf input/demo-shapes output/demo-data output/demo output/.serve
