# odstack "client" image: the serving client (client/odclient: Flask app under gunicorn, REST uploads in,
# gRPC to TensorFlow Serving). No TensorFlow: the TF Serving / TensorFlow *_pb2 modules are extracted
# from the pinned wheels by scripts/client/extract_protos.py (same script as RUNNER=local's .venv/client).
# Same pinned requirements as RUNNER=local (dockerfiles/requirements/client.txt).
#
# Build from the repository root (see dockerfiles/README.md):
#   docker build --network host -f dockerfiles/client.dockerfile -t odstack/client:dev .
# Without registry access (CI): ... --build-arg BASE_IMAGE=odstack/base:bookworm ...
# Behind an intercepting HTTPS proxy put its CA (or the host bundle) in dockerfiles/ca/*.crt.
#
# Run (docker-compose.yml does this): docker run --rm --network host -e BIND=127.0.0.1:8080 \
#   -e TF_SERVING_ADDR=127.0.0.1:8500 -e MODEL_NAME=detector -v "$PWD/output/serving:/models:ro" odstack/client:dev

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- build stage: venv with the requirements + extracted protos; pip, wheels and CAs stay here ----
FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
ARG PIP_VERSION=26.3

# Optional extra CA certificates (dockerfiles/ca/*.crt, gitignored): trusted by the download steps (with-ca.sh).
COPY dockerfiles/ca/ /tmp/odstack-ca/
RUN python3 -m venv /opt/venv; \
    /tmp/odstack-ca/with-ca.sh /opt/venv/bin/pip install --no-cache-dir "pip==${PIP_VERSION}"

# Protos first and on their own: this layer (two wheel downloads, one of 620 MB) changes only with the script.
COPY scripts/client/extract_protos.py /tmp/extract_protos.py
RUN /tmp/odstack-ca/with-ca.sh /opt/venv/bin/python /tmp/extract_protos.py --target /opt/protos --wheel-dir /tmp/wheels \
    && rm -rf /tmp/wheels

COPY dockerfiles/requirements/client.txt /tmp/client.txt
RUN /tmp/odstack-ca/with-ca.sh /opt/venv/bin/pip install --no-cache-dir -r /tmp/client.txt; \
    site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    cp -a /opt/protos/. "$site/"; \
    /opt/venv/bin/python -c 'import sys; from tensorflow_serving.apis import prediction_service_pb2_grpc; \
import tensorflow, importlib.util as u; assert u.find_spec("tensorflow.python") is None; print("protos ok, no TF runtime")'; \
    /opt/venv/bin/pip uninstall -q -y pip setuptools; \
    rm -rf /tmp/odstack-ca

# ---- runtime stage ----
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# BIND 0.0.0.0 inside the container so a published port (127.0.0.1:8080:8080 in docker-compose.yml) reaches
# it; with host networking (docker-compose.ci.yml) BIND=127.0.0.1:8080 is set instead.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PYTHONPATH=/opt/odstack/client \
    BIND=0.0.0.0:8080 \
    TF_SERVING_ADDR=serving:8500 \
    MODEL_NAME=detector \
    SERVING_DIR=/models

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin odclient

COPY --from=build /opt/venv /opt/venv
COPY client/ /opt/odstack/client/
COPY container_scripts/client.sh /opt/odstack/container_scripts/client.sh
RUN chmod -R a+rX /opt/odstack && chmod a+rx /opt/odstack/container_scripts/client.sh

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "/opt/odstack/client/healthcheck.py", "/healthz"]

# Labels last: version/revision change every build and must not invalidate earlier layers.
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-client" \
      org.opencontainers.image.description="odstack serving client: Flask + gunicorn, REST -> gRPC to TensorFlow Serving (no TensorFlow)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

CMD ["/opt/odstack/container_scripts/client.sh"]
