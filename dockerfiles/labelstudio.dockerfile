# odstack "labelstudio" image: Label Studio from PyPI (dockerfiles/requirements/labelstudio.txt), for
# machines without a registry (CI); elsewhere docker-compose.labelling.yml can use Label Studio's
# official image instead (LABEL_STUDIO_IMAGE). Same pinned requirement as RUNNER=local's .venv/labelstudio.
#
# Build from the repository root:
#   docker build --network host -f dockerfiles/labelstudio.dockerfile -t odstack/labelstudio:dev .
# Without registry access (CI): ... --build-arg BASE_IMAGE=odstack/base:bookworm ...
# Behind an intercepting HTTPS proxy put its CA (or the host bundle) in dockerfiles/ca/*.crt.

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
ARG PIP_VERSION=26.3
COPY dockerfiles/ca/ /tmp/odstack-ca/
COPY dockerfiles/requirements/labelstudio.txt /tmp/labelstudio.txt
RUN python3 -m venv /opt/venv; \
    /tmp/odstack-ca/with-ca.sh /opt/venv/bin/pip install --no-cache-dir "pip==${PIP_VERSION}"; \
    /tmp/odstack-ca/with-ca.sh /opt/venv/bin/pip install --no-cache-dir -r /tmp/labelstudio.txt; \
    /opt/venv/bin/pip uninstall -q -y pip; \
    rm -rf /tmp/odstack-ca

FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# Local files (the team's images, mounted at /label-studio/files) are served as /data/local-files/?d=...;
# no version check against PyPI at start.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HOME=/label-studio/data \
    LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true \
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=/label-studio/files \
    LATEST_VERSION_CHECK=false
RUN useradd --system --uid 1001 --user-group --home-dir /label-studio/data --shell /usr/sbin/nologin labelstudio \
    && mkdir -p /label-studio/data /label-studio/files && chown -R 1001:1001 /label-studio
COPY --from=build /opt/venv /opt/venv
USER 1001:1001
WORKDIR /label-studio
EXPOSE 8080

ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-labelstudio" \
      org.opencontainers.image.description="Label Studio from PyPI, for odstack's labelling profile" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

CMD ["label-studio", "start", "--data-dir", "/label-studio/data", "--internal-host", "0.0.0.0", "-p", "8080", \
     "--no-browser", "--enable-legacy-api-token"]
