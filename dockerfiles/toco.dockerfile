# odstack "toco" image: TFLite conversion (`make tflite`) and the parity check (`make parity`).
# Same pinned requirements as RUNNER=local (dockerfiles/requirements/toco.txt): TensorFlow 2.20,
# tf-models-official (the tfvision engine's TFLite export path), ai-edge-litert (TFLite inference), pycocotools.
#
# Build from the repository root:
#   docker build --network host -f dockerfiles/toco.dockerfile -t odstack/toco:dev .
# Without registry access (CI): ... --build-arg BASE_IMAGE=odstack/base:bookworm ...
# Edge TPU: ... --build-arg EDGETPU=1 ... adds edgetpu_compiler from Coral's apt repository (x86_64 hosts
# that reach it; off by default). Without it, `make tflite EDGETPU=1` fails with a clear message.
# Behind an intercepting HTTPS proxy put its CA (or the host bundle) in dockerfiles/ca/*.crt.
#
# Run: docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/output:/workspace/output" -v "$PWD/input:/workspace/input" \
#        odstack/toco:dev python -m odstack tflite run=<run> quant=int8
# No ENTRYPOINT on purpose: the command is the stage's (python -m odstack MODE ...); the default CMD prints help.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------ stage 1: node_modules
# npm (and its ~400 Debian packages) only here; the final image gets node_modules and the nodejs runtime
# (`make parity` runs the TF.js models in Node, beside TFLite and the SavedModel).
FROM ${BASE_IMAGE} AS npm

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# Debian's security updates replace exact versions (18.20.4+dfsg-1~deb12u3 ...): a version pin would stop
# building; the JavaScript side is pinned by package-lock.json instead.
# hadolint ignore=DL3008
RUN apt-get update; \
    apt-get install -y --no-install-recommends nodejs npm ca-certificates; \
    rm -rf /var/lib/apt/lists/*

COPY dockerfiles/ca/ /tmp/odstack-ca/
COPY odstack/export/js/package.json odstack/export/js/package-lock.json /opt/odstack/odstack/export/js/
WORKDIR /opt/odstack/odstack/export/js
# Optional extra CA certificates (dockerfiles/ca/*.crt): trusted by npm in this step (with-ca.sh).
# --ignore-scripts: nothing in the lock needs an install script (core-js' only prints a message).
# Source maps (*.map, ~200 MB of the ~300 MB) are only for debugging in a browser: dropped.
RUN /tmp/odstack-ca/with-ca.sh npm ci --omit=dev --ignore-scripts --no-audit --no-fund --cache /tmp/npm-cache; \
    test -d node_modules/@tensorflow/tfjs; \
    find node_modules -name '*.map' -delete; \
    rm -rf /tmp/odstack-ca /tmp/npm-cache

# ------------------------------------------------------------------------------ stage 2: the image
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# Node.js runtime only (no npm): runs odstack/export/js/run_tfjs.mjs.
# hadolint ignore=DL3008
RUN apt-get update; \
    apt-get install -y --no-install-recommends nodejs; \
    rm -rf /var/lib/apt/lists/*; \
    node --version

# HOME/MPLCONFIGDIR under /tmp: containers run as the host user (--user UID:GID) without a home.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=1 \
    PYTHONPATH=/opt/odstack

ARG PIP_VERSION=26.3

# Optional Edge TPU compiler (Coral's apt repository; needs a host that reaches it). Before the pip
# layer: it changes rarely. Off by default, so CI and offline hosts build without it. Not version-pinned:
# Coral's repository keeps only its current edgetpu-compiler.
ARG EDGETPU=0
ARG CORAL_APT_URL=https://packages.cloud.google.com/apt
COPY dockerfiles/ca/ /tmp/odstack-ca/
# hadolint ignore=DL3008
RUN if [ "${EDGETPU}" = "1" ]; then \
        /tmp/odstack-ca/with-ca.sh apt-get update; \
        /tmp/odstack-ca/with-ca.sh apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
        /tmp/odstack-ca/with-ca.sh curl -fsSL "${CORAL_APT_URL}/doc/apt-key.gpg" \
            | gpg --dearmor -o /usr/share/keyrings/coral-edgetpu.gpg; \
        echo "deb [signed-by=/usr/share/keyrings/coral-edgetpu.gpg] ${CORAL_APT_URL} coral-edgetpu-stable main" \
            > /etc/apt/sources.list.d/coral-edgetpu.list; \
        /tmp/odstack-ca/with-ca.sh apt-get update; \
        /tmp/odstack-ca/with-ca.sh apt-get install -y --no-install-recommends edgetpu-compiler; \
        edgetpu_compiler --version; \
        rm -rf /var/lib/apt/lists/*; \
    fi

# Requirements before code: editing odstack/ must not reinstall TensorFlow.
COPY dockerfiles/requirements/toco.txt /opt/odstack/requirements/toco.txt
RUN python3 -m venv /opt/venv; \
    /tmp/odstack-ca/with-ca.sh pip install --no-cache-dir "pip==${PIP_VERSION}"; \
    /tmp/odstack-ca/with-ca.sh pip install --no-cache-dir -r /opt/odstack/requirements/toco.txt; \
    python -c "import tensorflow as tf, ai_edge_litert.interpreter; print('tensorflow', tf.__version__)"; \
    rm -rf /tmp/odstack-ca /tmp/.keras /tmp/matplotlib

# TF Object Detection API, optional: --build-arg ODAPI=1 (see scripts/odapi/install_odapi.sh): TFLite export of
# an OD API model runs its export_tflite_graph_tf2, so this image needs it as the odapi image does.
# Its sources: dockerfiles/odapi-src/*.tar.gz when present (`make image-odapi ODAPI=1 ODAPI_ARCHIVE=...`
# puts the archive there: no network needed), else downloaded from ODAPI_URL (default: GitHub at
# ODAPI_COMMIT); ODAPI_SHA256 checks it.
ARG ODAPI=0
ARG ODAPI_COMMIT=45ecd69155b8279d550e1d51f1cc01e5f0eeaebb
ARG ODAPI_URL=
ARG ODAPI_SHA256=
COPY dockerfiles/ca/ /tmp/odstack-ca/
COPY dockerfiles/odapi-src/ /tmp/odapi-src/
COPY scripts/odapi/install_odapi.sh /opt/odstack/scripts/odapi/install_odapi.sh
RUN if [ "${ODAPI}" = 1 ]; then \
        for archive in /tmp/odapi-src/*.tar.gz; do if [ -f "$archive" ]; then export ODAPI_ARCHIVE="$archive"; fi; done; \
        PYTHON=/opt/venv/bin/python /tmp/odstack-ca/with-ca.sh bash /opt/odstack/scripts/odapi/install_odapi.sh; \
    else echo "toco: built without the TF Object Detection API (ODAPI=0)"; fi; \
    rm -rf /tmp/odstack-ca /tmp/odapi-src /tmp/.keras /tmp/matplotlib

RUN mkdir -p /workspace/input /workspace/output && chmod 1777 /workspace /workspace/input /workspace/output

COPY odstack/ /opt/odstack/odstack/
COPY container_scripts/ /opt/odstack/container_scripts/
COPY --from=npm /opt/odstack/odstack/export/js/node_modules/ /opt/odstack/odstack/export/js/node_modules/
RUN chmod -R a+rX /opt/odstack && find /opt/odstack/container_scripts -name '*.sh' -exec chmod a+rx {} +

WORKDIR /workspace

ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-toco" \
      org.opencontainers.image.description="odstack TFLite conversion + parity: TensorFlow 2.20 (CPU), Model Garden, ai-edge-litert" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

CMD ["python", "-m", "odstack", "--help"]
