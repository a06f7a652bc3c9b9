# odstack "labelling" image: the Label Studio ML backend + training manager (odstack/labelling).
# Built on the odapi image, because a training job runs the pipeline stages (`python -m odstack data|train|
# eval|export`, TensorFlow) with its interpreter (/opt/venv); the service itself runs in its own small venv
# (/opt/labelling: dockerfiles/requirements/labelling.txt + the TF Serving protos, the serving client's
# gRPC module) so its pins never meet TensorFlow's.
#
# Build from the repository root, after the odapi image (make image-odapi):
#   docker build --network host -f dockerfiles/labelling.dockerfile -t odstack/labelling:dev .
# ODAPI_IMAGE names the image to build on (default odstack/odapi:dev).

ARG ODAPI_IMAGE=odstack/odapi:dev
FROM ${ODAPI_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
USER 0:0
ARG PIP_VERSION=26.3

COPY dockerfiles/ca/ /tmp/odstack-ca/
COPY scripts/client/extract_protos.py /tmp/extract_protos.py
COPY dockerfiles/requirements/client.txt dockerfiles/requirements/labelling.txt /tmp/req/
RUN python3 -m venv /opt/labelling; \
    /tmp/odstack-ca/with-ca.sh /opt/labelling/bin/pip install --no-cache-dir "pip==${PIP_VERSION}"; \
    /tmp/odstack-ca/with-ca.sh /opt/labelling/bin/pip install --no-cache-dir -r /tmp/req/labelling.txt; \
    site=$(/opt/labelling/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
    /tmp/odstack-ca/with-ca.sh /opt/labelling/bin/python /tmp/extract_protos.py --target "$site" --wheel-dir /tmp/wheels --check; \
    rm -rf /tmp/wheels /tmp/req /tmp/odstack-ca /tmp/extract_protos.py

COPY client/odclient/ /opt/odstack/client/odclient/
COPY odstack/ /opt/odstack/odstack/
RUN chmod -R a+rX /opt/odstack /opt/labelling

# The service listens on 0.0.0.0 inside its container (compose publishes it on 127.0.0.1 only); the
# stages use the odapi venv; input/ and output/ are the mounted /workspace/input and /workspace/output.
ENV PYTHONPATH=/opt/odstack:/opt/odstack/client \
    ODSTACK_STAGE_PYTHON=/opt/venv/bin/python \
    LABELLING_HOST=0.0.0.0
WORKDIR /workspace
USER 10001:10001
EXPOSE 9090

ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-labelling" \
      org.opencontainers.image.description="odstack's Label Studio ML backend and training manager" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack"

CMD ["/opt/labelling/bin/python", "-m", "odstack.labelling"]
