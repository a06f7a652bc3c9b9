# odstack "odapi" image: the data stage (input/<dataset> -> input/tf_records) and, later, training,
# evaluation and export. Same pinned requirements as RUNNER=local (dockerfiles/requirements/odapi.txt).
#
# Build from the repository root (the context must be the repo root; see dockerfiles/README.md):
#   docker build --network host -f dockerfiles/odapi.dockerfile -t odstack/odapi:dev .
# Without registry access (CI) build on the local base made by scripts/docker/bootstrap_base.sh:
#   ... --build-arg BASE_IMAGE=odstack/base:bookworm ...
# Behind an intercepting HTTPS proxy put its CA (or the host bundle) in dockerfiles/ca/*.crt.
#
# Run: docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/input:/workspace/input" \
#        -v "$PWD/output:/workspace/output" odstack/odapi:dev python -m odstack data ...
# No ENTRYPOINT on purpose: the command is the stage's (python -m odstack MODE ...); the default CMD prints help.

# Any Debian-based image with python3 >= 3.11 and its venv module (python:3.11-slim-bookworm,
# or odstack/base:bookworm: /usr/bin/python3 3.11, no `python`, no pip).
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# HOME/MPLCONFIGDIR under /tmp: the Makefile runs containers as the host user (--user UID:GID), a uid
# without a passwd entry or a home directory. Build steps must leave nothing in /tmp (a root-owned
# /tmp/.keras or /tmp/matplotlib would not be writable for that uid).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=1 \
    PYTHONPATH=/opt/odstack

# pip itself, pinned so both bases install with the same resolver (bookworm's venv ships pip 23.0.1).
ARG PIP_VERSION=26.3

# Optional extra CA certificates (dockerfiles/ca/*.crt, gitignored): trusted by pip in the build steps that run
# through dockerfiles/ca/with-ca.sh; the image's trust store is left unchanged. Builds without any.
COPY dockerfiles/ca/ /tmp/odstack-ca/
# Requirements before code: editing odstack/ must not reinstall TensorFlow.
# REQUIREMENTS=odapi-gpu.txt: the GPU variant (tensorflow[and-cuda]; `make image-odapi GPU=1`, tag <TAG>-gpu).
ARG REQUIREMENTS=odapi.txt
COPY dockerfiles/requirements/odapi.txt dockerfiles/requirements/odapi-gpu.txt /opt/odstack/requirements/
RUN python3 -m venv /opt/venv; \
    /tmp/odstack-ca/with-ca.sh pip install --no-cache-dir "pip==${PIP_VERSION}"; \
    /tmp/odstack-ca/with-ca.sh pip install --no-cache-dir -r "/opt/odstack/requirements/${REQUIREMENTS}"; \
    python -c "import tensorflow as tf; print('tensorflow', tf.__version__)"; \
    rm -rf /tmp/odstack-ca /tmp/.keras /tmp/matplotlib

# TF Object Detection API, optional: --build-arg ODAPI=1 (see scripts/odapi/install_odapi.sh).
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
    else echo "odapi: built without the TF Object Detection API (ODAPI=0)"; fi; \
    rm -rf /tmp/odstack-ca /tmp/odapi-src /tmp/.keras /tmp/matplotlib

# Writable by any uid when input/ and output/ are not mounted; mounted directories keep the host's
# ownership (hence --user UID:GID).
RUN mkdir -p /workspace/input /workspace/output && chmod 1777 /workspace /workspace/input /workspace/output

COPY odstack/ /opt/odstack/odstack/
COPY container_scripts/ /opt/odstack/container_scripts/
RUN chmod -R a+rX /opt/odstack && find /opt/odstack/container_scripts -name '*.sh' -exec chmod a+rx {} +

WORKDIR /workspace

# Labels last: version/revision change every build and must not invalidate earlier layers.
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-odapi" \
      org.opencontainers.image.description="odstack data/training stage: TensorFlow 2.20 (CPU), TFRecord tools" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

CMD ["python", "-m", "odstack", "--help"]
