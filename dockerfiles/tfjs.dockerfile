# odstack "tfjs" image: the TF.js conversion stage (python -m odstack tfjs: SavedModel -> TF.js graph model +
# signature.json) and the Node runner that executes converted models for the parity checks
# (odstack/export/js/run_tfjs.mjs, pure-JS @tensorflow/tfjs: no tfjs-node, nothing downloaded at run time).
# Same pinned requirements as RUNNER=local: dockerfiles/requirements/tfjs.txt (.venv/tfjs) and
# odstack/export/js/package-lock.json (npm ci).
#
# Its own image because tensorflowjs 4.22 needs TF 2.19 and cannot share an environment with TF 2.20.
#
# Build from the repository root (see dockerfiles/README.md):
#   docker build --network host -f dockerfiles/tfjs.dockerfile -t odstack/tfjs:dev .
# Without registry access (CI): ... --build-arg BASE_IMAGE=odstack/base:bookworm ...
# Behind an intercepting HTTPS proxy put its CA (or the host bundle) in dockerfiles/ca/*.crt: pip and npm
# use it during the build only.
#
# Run: docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/output:/workspace/output" odstack/tfjs:dev \
#        python -m odstack tfjs run=<run> quant=none
# No ENTRYPOINT on purpose: the command is the stage's (python -m odstack tfjs ...); the default CMD prints help.

# Any Debian-based image with python3 >= 3.11 and its venv module (python:3.11-slim-bookworm,
# or odstack/base:bookworm: /usr/bin/python3 3.11, no `python`, no pip). Node.js comes from Debian.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------------------ stage 1: node_modules
# npm (and its ~400 Debian packages) only here; the final image gets node_modules and the nodejs runtime.
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

# HOME under /tmp: the Makefile runs containers as the host user (--user UID:GID), a uid without a passwd
# entry or a home directory. Build steps must leave nothing in /tmp.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TF_CPP_MIN_LOG_LEVEL=2 \
    CUDA_VISIBLE_DEVICES=-1 \
    PYTHONPATH=/opt/odstack

# Node.js runtime only (no npm): runs odstack/export/js/run_tfjs.mjs.
# hadolint ignore=DL3008
RUN apt-get update; \
    apt-get install -y --no-install-recommends nodejs; \
    rm -rf /var/lib/apt/lists/*; \
    node --version

# pip itself, pinned so both bases install with the same resolver (bookworm's venv ships pip 23.0.1).
ARG PIP_VERSION=26.3

# Optional extra CA certificates (dockerfiles/ca/*.crt, gitignored): trusted by pip in this step (with-ca.sh).
COPY dockerfiles/ca/ /tmp/odstack-ca/
# Requirements before code: editing odstack/ must not reinstall TensorFlow.
COPY dockerfiles/requirements/tfjs.txt /opt/odstack/requirements/tfjs.txt
RUN python3 -m venv /opt/venv; \
    /tmp/odstack-ca/with-ca.sh pip install --no-cache-dir "pip==${PIP_VERSION}"; \
    /tmp/odstack-ca/with-ca.sh pip install --no-cache-dir -r /opt/odstack/requirements/tfjs.txt; \
    python -c "import tensorflowjs, tensorflow as tf; print('tensorflowjs', tensorflowjs.__version__, 'tensorflow', tf.__version__)"; \
    rm -rf /tmp/odstack-ca /tmp/.keras /tmp/.cache

# Writable by any uid when output/ is not mounted; mounted directories keep the host's ownership.
RUN mkdir -p /workspace/input /workspace/output && chmod 1777 /workspace /workspace/input /workspace/output

COPY --from=npm /opt/odstack/odstack/export/js/node_modules/ /opt/odstack/odstack/export/js/node_modules/
COPY odstack/ /opt/odstack/odstack/
COPY container_scripts/ /opt/odstack/container_scripts/
# (node_modules is already world-readable: chmod there would copy all of it into another layer)
RUN find /opt/odstack -path /opt/odstack/odstack/export/js/node_modules -prune -o -exec chmod a+rX {} +; \
    find /opt/odstack/container_scripts -name '*.sh' -exec chmod a+rx {} +; \
    node -e "console.error('tfjs', require('/opt/odstack/odstack/export/js/node_modules/@tensorflow/tfjs').version.tfjs)"

WORKDIR /workspace

# Labels last: version/revision change every build and must not invalidate earlier layers.
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-tfjs" \
      org.opencontainers.image.description="odstack TF.js stage: tensorflowjs 4.22 converter (TensorFlow 2.19, CPU) + Node.js with @tensorflow/tfjs 4.22 (CPU/WASM backends)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

CMD ["python", "-m", "odstack", "--help"]
