# odstack "odapi-tf1" image: the TF Object Detection API on TensorFlow 1.15 (GPU), for TF1 zoo configs
# and the TF1-only tools: model_main.py (train + eval), export_inference_graph.py (SavedModel /
# frozen graph) and export_tflite_ssd_graph.py (the TFLite SSD path, e.g. ssd_mobilenet_v2_quantized
# for the Coral Edge TPU). `make train TF=1` and `make export TF=1` run it; the pipeline.config it trains is rendered by
# odstack (odstack.train.pipeline_config works without the OD API, so it needs no Python 3.11 here).
#
# Build from the repository root:
#   docker build --network host -f dockerfiles/odapi-tf1.dockerfile -t odstack/odapi-tf1:dev .
# Ampere/Hopper GPUs (A100, RTX 30xx/40xx, H100): the stock TF 1.15 image is built for CUDA 10.0 and
# predates them. Use NVIDIA's maintained TF1 build (TF 1.15.5, CUDA 12, Python 3.8; its last release):
#   ... --build-arg BASE_IMAGE=nvcr.io/nvidia/tensorflow:23.03-tf1-py3 ...
# Offline: serve a tensorflow/models source archive locally and pass
#   --build-arg ODAPI_URL=http://127.0.0.1:8000/models.tar.gz   (with --network host)
#
# Run (GPU through the NVIDIA container toolkit):
#   docker run --rm --gpus all --user "$(id -u):$(id -g)" -v "$PWD/output:/workspace/output" \
#     odstack/odapi-tf1:dev python -m object_detection.model_main \
#     --pipeline_config_path=output/<run>/pipeline.config --model_dir=output/<run> --alsologtostderr
#   ... python -m object_detection.export_inference_graph --input_type=image_tensor ...
#   ... python -m object_detection.export_tflite_ssd_graph --add_postprocessing_op=true ...
ARG BASE_IMAGE=tensorflow/tensorflow:1.15.5-gpu-py3
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-euo", "pipefail", "-c"]

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    TF_CPP_MIN_LOG_LEVEL=1

# Build tools for the packages without wheels for this Python (pycocotools). The stock image's CUDA apt
# sources are signed with a key NVIDIA has since rotated; they are not needed here, so they are dropped.
# Unpinned on purpose: the two supported bases are different Ubuntu releases (18.04 / 20.04).
# hadolint ignore=DL3008
RUN rm -f /etc/apt/sources.list.d/cuda.list /etc/apt/sources.list.d/nvidia-ml.list; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc g++ python3-dev; \
    rm -rf /var/lib/apt/lists/*

# The OD API's TF1 dependencies, with the base image's TensorFlow/NumPy/protobuf held where they are
# (a newer NumPy or protobuf breaks TF 1.15). pip < 22 still supports Python 3.6 (stock image).
# Optional extra CA certificates: dockerfiles/ca/*.crt (see dockerfiles/README.md).
COPY dockerfiles/ca/ /tmp/odstack-ca/
COPY scripts/odapi/install_odapi.sh /opt/odstack/scripts/odapi/install_odapi.sh
# install_odapi.sh reads these (empty ODAPI_URL: GitHub's archive of ODAPI_COMMIT)
ARG ODAPI_COMMIT=45ecd69155b8279d550e1d51f1cc01e5f0eeaebb
ARG ODAPI_URL=
ARG ODAPI_SHA256=
RUN /tmp/odstack-ca/with-ca.sh python3 -m pip install --no-cache-dir "pip<22"; \
    python3 -m pip freeze | grep -iE '^(numpy|protobuf|h5py|tensorflow[a-z_-]*)==' > /tmp/constraints.txt; \
    /tmp/odstack-ca/with-ca.sh python3 -m pip install --no-cache-dir -c /tmp/constraints.txt \
        "tf-slim==1.1.0" "Cython<3" pycocotools contextlib2 lxml pillow matplotlib pandas scipy six; \
    PYTHON=python3 ODAPI_TF=1 /tmp/odstack-ca/with-ca.sh bash /opt/odstack/scripts/odapi/install_odapi.sh; \
    rm -rf /tmp/odstack-ca /tmp/constraints.txt /tmp/.keras /tmp/matplotlib

# The TF1 container scripts `make train TF=1` / `make export TF=1` run (bash only: no odstack code here)
COPY container_scripts/train_tf1.sh container_scripts/export_tf1.sh /opt/odstack/container_scripts/
RUN chmod a+rx /opt/odstack/container_scripts/*.sh

# Writable by any uid when input/ and output/ are not mounted (containers run as the host user).
RUN mkdir -p /workspace/input /workspace/output && chmod 1777 /workspace /workspace/input /workspace/output
WORKDIR /workspace

ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="odstack-odapi-tf1" \
      org.opencontainers.image.description="odstack TF1 training stage: TF Object Detection API on TensorFlow 1.15 (GPU)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.vendor="odstack" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

CMD ["python3", "-m", "object_detection.model_main", "--helpfull"]
