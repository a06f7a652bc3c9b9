#!/usr/bin/env bash
# Rebuild odstack/odapi_protos/descriptor_set.binpb: the TF OD API's object_detection/protos/*.proto at the
# pinned commit, compiled by protoc into one FileDescriptorSet (with every import). odstack loads it into a
# private protobuf pool (odstack/protos.py), so pipeline configs and label maps use the OD API's own schema
# on every machine, with or without the OD API installed. Run it when ODAPI_COMMIT changes.
#
#   ODAPI_ARCHIVE=models.tar.gz scripts/odapi/build_descriptor_set.sh     # a local archive (no network)
#   scripts/odapi/build_descriptor_set.sh                                 # downloads the pinned commit
set -euo pipefail
cd "$(dirname "$0")/../.."
COMMIT="${ODAPI_COMMIT:-45ecd69155b8279d550e1d51f1cc01e5f0eeaebb}"
URL="${ODAPI_URL:-https://github.com/tensorflow/models/archive/${COMMIT}.tar.gz}"
PYTHON="${PYTHON:-python3}"
OUT=odstack/odapi_protos/descriptor_set.binpb

WORK=$(mktemp -d "${TMPDIR:-/tmp}/odapi-protos.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
ARCHIVE="${ODAPI_ARCHIVE:-$WORK/models.tar.gz}"
[ -n "${ODAPI_ARCHIVE:-}" ] || "$PYTHON" -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$URL" "$ARCHIVE"
member=$(tar -tzf "$ARCHIVE" | grep -m1 -E '^(\./)?([^/]+/)?research/object_detection/protos/pipeline\.proto$')
research="${member%object_detection/protos/pipeline.proto}"
tar -xzf "$ARCHIVE" -C "$WORK" "${research}object_detection/protos"
"$PYTHON" -m pip install --quiet --disable-pip-version-check --target "$WORK/protoc" grpcio-tools
(cd "$WORK/$research" && PYTHONPATH="$WORK/protoc" "$PYTHON" -m grpc_tools.protoc -I. --include_imports \
    --descriptor_set_out="$WORK/set.binpb" object_detection/protos/*.proto)
cp "$WORK/set.binpb" "$OUT"
echo "build_descriptor_set: $OUT ($(wc -c < "$OUT") bytes) from ${research}object_detection/protos at $COMMIT"
