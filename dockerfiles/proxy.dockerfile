# odstack "proxy" image: nginx from Debian's package in front of the serving client (gunicorn). It reads every
# request whole before gunicorn sees it, so slow or stalled clients cannot hold gunicorn's threads (the
# production shape: TF Serving + client + proxy; dockerfiles/proxy/nginx.conf says why and how).
# Config: container_scripts/proxy.sh (PROXY_LISTEN, PROXY_UPSTREAM, MAX_UPLOAD_MB), the same script as
# RUNNER=local's.
#
# Build from the repository root (see dockerfiles/README.md):
#   docker build --network host -f dockerfiles/proxy.dockerfile -t odstack/proxy:dev .
# Without registry access (CI): ... --build-arg BASE_IMAGE=odstack/base:bookworm ...
# Behind an intercepting HTTPS proxy put its CA (or the host bundle) in dockerfiles/ca/*.crt (used by apt).
#
# Run (docker-compose.yml does this): docker run --rm --network host -e PROXY_LISTEN=127.0.0.1:8080 \
#   -e PROXY_UPSTREAM=127.0.0.1:8081 odstack/proxy:dev

ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

# Debian bookworm's nginx-light (bookworm-security); bump together with the base image.
ARG NGINX_VERSION=1.22.1-9+deb12u9

# Optional extra CA certificates (dockerfiles/ca/*.crt, gitignored) for apt over HTTPS; removed afterwards.
COPY dockerfiles/ca/ /tmp/odstack-ca/
RUN /tmp/odstack-ca/with-ca.sh apt-get update; \
    /tmp/odstack-ca/with-ca.sh apt-get install -y --no-install-recommends "nginx-light=${NGINX_VERSION}"; \
    rm -rf /var/lib/apt/lists/* /tmp/odstack-ca; \
    nginx -v

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin odproxy

COPY dockerfiles/proxy/nginx.conf /opt/odstack/dockerfiles/proxy/nginx.conf
COPY container_scripts/proxy.sh /opt/odstack/container_scripts/proxy.sh
RUN chmod -R a+rX /opt/odstack && chmod a+rx /opt/odstack/container_scripts/proxy.sh

ENV PROXY_LISTEN=0.0.0.0:8080 \
    PROXY_UPSTREAM=client:8080 \
    PROXY_RUN_DIR=/tmp/odstack-proxy
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PROXY_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '\"ok\"' <&3"]

# Labels last: version/revision change every build and must not invalidate earlier layers.
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-proxy" \
      org.opencontainers.image.description="odstack proxy: Debian's nginx buffering requests in front of the serving client" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

CMD ["/opt/odstack/container_scripts/proxy.sh"]
