# odstack "modelserver" image: the development model server (odstack/serving/modelserver.py), which speaks
# TensorFlow Serving's gRPC API. It stands in for tensorflow/serving where that image cannot be pulled
# (CI's compose run). Same pinned requirements as RUNNER=local (dockerfiles/requirements/modelserver.txt).
#
# Build from the repository root (see dockerfiles/README.md):
#   docker build --network host -f dockerfiles/modelserver.dockerfile -t odstack/modelserver:dev .
# Without registry access (CI): ... --build-arg BASE_IMAGE=odstack/base:bookworm ...
# Behind an intercepting HTTPS proxy put its CA (or the host bundle) in dockerfiles/ca/*.crt.
#
# Used like tensorflow/serving: the same environment (MODEL_NAME, MODEL_BASE_PATH), ports (8500 gRPC,
# 8501 REST status) and arguments appended to the entrypoint, e.g.
#   docker run --rm --network host -v "$PWD/output/serving:/models:ro" -e MODEL_NAME=detector \
#     -e MODELSERVER_BIND_ADDRESS=127.0.0.1 odstack/modelserver:dev
#   ... odstack/modelserver:dev --model_config_file=/models/models.config
# It binds 127.0.0.1 unless told otherwise (MODELSERVER_BIND_ADDRESS=0.0.0.0 or --bind_address=0.0.0.0 for
# published ports on a bridge network).
# Unlike the other odstack images it has an ENTRYPOINT, so a compose override can swap the image and keep
# the service's `command:`. The HEALTHCHECK is set in compose.

# Any Debian-based image with python3 >= 3.11 and its venv module (python:3.11-slim-bookworm,
# or odstack/base:bookworm: /usr/bin/python3 3.11, no `python`, no pip).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=1 \
    PYTHONPATH=/opt/odstack \
    MODEL_NAME=model \
    MODEL_BASE_PATH=/models

# pip itself, pinned so both bases install with the same resolver (bookworm's venv ships pip 23.0.1).
ARG PIP_VERSION=26.3

# Optional extra CA certificates (dockerfiles/ca/*.crt, gitignored): trusted by pip in this step (with-ca.sh).
COPY dockerfiles/ca/ /tmp/odstack-ca/
# Requirements before code: editing odstack/ must not reinstall TensorFlow.
COPY dockerfiles/requirements/modelserver.txt /opt/odstack/requirements/modelserver.txt
RUN python3 -m venv /opt/venv; \
    /tmp/odstack-ca/with-ca.sh pip install --no-cache-dir "pip==${PIP_VERSION}"; \
    /tmp/odstack-ca/with-ca.sh pip install --no-cache-dir -r /opt/odstack/requirements/modelserver.txt; \
    python -c "import tensorflow as tf, tensorflow_serving.apis.prediction_service_pb2_grpc; print('tensorflow', tf.__version__)"; \
    rm -rf /tmp/odstack-ca /tmp/.keras

# A fixed non-root uid/gid, so mounted model directories only need to be readable by 8500 (or by all).
RUN groupadd --system --gid 8500 modelserver; \
    useradd --system --uid 8500 --gid 8500 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin modelserver; \
    mkdir -p /models

COPY odstack/ /opt/odstack/odstack/
COPY container_scripts/ /opt/odstack/container_scripts/
RUN chmod -R a+rX /opt/odstack && find /opt/odstack/container_scripts -name '*.sh' -exec chmod a+rx {} +

USER 8500:8500
WORKDIR /tmp
EXPOSE 8500 8501

# Labels last: version/revision change every build and must not invalidate earlier layers.
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-modelserver" \
      org.opencontainers.image.description="odstack development model server: TensorFlow Serving's gRPC API (Predict, GetModelMetadata, GetModelStatus) on TensorFlow 2.20 (CPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# tensorflow/serving's entrypoint, flag for flag; arguments given to `docker run`/`command:` are appended
# (later flags win, and --model_config_file replaces --model_name/--model_base_path).
ENTRYPOINT ["/bin/bash", "-c", "exec /opt/odstack/container_scripts/modelserver.sh --port=8500 --rest_api_port=8501 --model_name=\"${MODEL_NAME}\" --model_base_path=\"${MODEL_BASE_PATH}/${MODEL_NAME}\" \"$@\"", "--"]
