#!/usr/bin/env bash
# Install the TensorFlow Object Detection API (tensorflow/models research/object_detection at a pinned
# commit) into a Python environment, with the fixes it needs on TF >= 2.16.
#
# Used by dockerfiles/odapi.dockerfile (--build-arg ODAPI=1) and dockerfiles/odapi-tf1.dockerfile
# (ODAPI_TF=1). By hand, into a venv that already holds dockerfiles/requirements/odapi.txt:
#   PYTHON=.venv/odapi/bin/python scripts/odapi/install_odapi.sh
# Offline (no GitHub), from a source archive made elsewhere, e.g. from a clone or fork at the commit:
#   git -C models archive --prefix=models/ 45ecd69155b8279d550e1d51f1cc01e5f0eeaebb research | gzip > models.tar.gz
#   ODAPI_ARCHIVE=models.tar.gz PYTHON=... scripts/odapi/install_odapi.sh
#
# Environment (all optional):
#   PYTHON          interpreter of the target environment (default: python, else python3)
#   ODAPI_COMMIT    tensorflow/models commit (default: 45ecd69155b8279d550e1d51f1cc01e5f0eeaebb, 2024-12-20,
#                   known to work with TF 2.20 + tf-models-official 2.20 after the fixes below)
#   ODAPI_ARCHIVE   local .tar.gz of the repository (or of its research/ tree): no download
#   ODAPI_URL       download URL (default: GitHub's archive of ODAPI_COMMIT)
#   ODAPI_SHA256    expected sha256 of the archive (checked when set)
#   ODAPI_TF        2 (default): the TF2 package, object_detection only, fixes applied
#                   1: the TF1 package (object_detection + slim's nets/...), for TF 1.15; no fixes needed
#   LVIS_VERSION    lvis, imported by the OD API's eval code (default 0.5.3; installed without its
#                   dependencies: its opencv-python would clash with tf-models-official's headless one)
#
# What it does, and the fixes (each edit is small, idempotent, marked "odstack-fix", and fails the
# build if the text it expects is not there, so a new commit or tf-slim cannot be half-patched):
#  1. fetch (or take) the archive, check it, extract research/object_detection (+ research/slim for TF1)
#  2. compile object_detection/protos/*.proto with grpcio-tools whose protobuf is the target's runtime
#     version (installed into a scratch --target dir, then removed); `-I.` is required
#  3. TF2 only, OD API sources: `from tensorflow.compat.v1 import estimator` in inputs.py and
#     model_lib.py becomes optional (tf.estimator is gone since TF 2.16; only the TF1 Estimator
#     paths use it, not model_main_tf2)
#     and `import tensorflow_io` in meta_architectures/deepmac_meta_arch.py likewise: setup.py lists
#     tensorflow-io, whose last release (0.37.1) targets TF 2.17; only DeepMAC's colour-consistency
#     loss calls it (tfio.experimental.color.rgb_to_lab), so it is not installed
#  4. pip install the package without dependencies (the environment already pins them), and copy its
#     sample configs (configs/tf2 or tf1) beside it: pip leaves them out, odstack's tests render them
#  5. TF2 only, installed tf-slim (1.1.0): control_flow_ops.case/cond no longer exist in TF >= 2.13
#     (tensorflow/models#11113, #13494); tf_slim calls them when decoding images
#     (data/tfexample_decoder.py) and in layers/utils.py and metrics/metric_ops.py. They become
#     tf.compat.v1.case/cond, the same functions under their public names (imported as
#     _odstack_tf: metric_ops.py already binds `tf` to tensorflow.compat.v1).
#  6. smoke test: import the protos and, with TF_USE_LEGACY_KERAS=1, model_lib_v2 and the exporters
set -euo pipefail

COMMIT="${ODAPI_COMMIT:-45ecd69155b8279d550e1d51f1cc01e5f0eeaebb}"
URL="${ODAPI_URL:-https://github.com/tensorflow/models/archive/${COMMIT}.tar.gz}"
TF_MAJOR="${ODAPI_TF:-2}"
LVIS_VERSION="${LVIS_VERSION:-0.5.3}"
if [ -z "${PYTHON:-}" ]; then
    PYTHON=$(command -v python || command -v python3)
fi
# Relative paths become absolute now, since the script changes directory later (a bare command name
# such as python3 stays a PATH lookup). Symlinks are not resolved: a venv's bin/python is one, and the
# path it is called by is what selects the venv.
case "$PYTHON" in /*) ;; */*) PYTHON="$PWD/$PYTHON" ;; esac
case "${ODAPI_ARCHIVE:-/}" in /*) ;; *) ODAPI_ARCHIVE="$PWD/$ODAPI_ARCHIVE" ;; esac

log() { echo "install_odapi: $*" >&2; }
die() { echo "install_odapi: ERROR: $*" >&2; exit 1; }

case "$TF_MAJOR" in 1|2) ;; *) die "ODAPI_TF=$TF_MAJOR: use 1 or 2" ;; esac
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 6)' || die "PYTHON=$PYTHON is not a Python 3 interpreter"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/odapi-install.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------- 1. sources
if [ -n "${ODAPI_ARCHIVE:-}" ]; then
    [ -f "$ODAPI_ARCHIVE" ] || die "ODAPI_ARCHIVE=$ODAPI_ARCHIVE: no such file"
    ARCHIVE="$ODAPI_ARCHIVE"
    log "using local archive $ARCHIVE"
else
    ARCHIVE="$WORK/models.tar.gz"
    log "downloading $URL"
    "$PYTHON" - "$URL" "$ARCHIVE" <<'PY' || die "download failed: $URL (offline? set ODAPI_ARCHIVE to a local copy)"
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as response, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(response, out, 1 << 20)
PY
fi
if [ -n "${ODAPI_SHA256:-}" ]; then
    echo "${ODAPI_SHA256}  ${ARCHIVE}" | sha256sum -c - >/dev/null || die "sha256 of $ARCHIVE is not $ODAPI_SHA256"
fi
gzip -t "$ARCHIVE" 2>/dev/null || die "$ARCHIVE is not a readable .tar.gz (truncated download?)"

# research/object_detection may sit under models-<commit>/ (GitHub), models/, or at the top (git archive)
OD_MEMBER=$(tar -tzf "$ARCHIVE" | grep -m1 -E '^(\./)?([^/]+/)?research/object_detection/protos/pipeline\.proto$' || true)
[ -n "$OD_MEMBER" ] || die "$ARCHIVE has no research/object_detection/protos/pipeline.proto"
RESEARCH_MEMBER="${OD_MEMBER%object_detection/protos/pipeline.proto}"      # "<top>/research/" or "research/"
MEMBERS=("${RESEARCH_MEMBER}object_detection")
[ "$TF_MAJOR" = 1 ] && MEMBERS+=("${RESEARCH_MEMBER}slim")
tar -xzf "$ARCHIVE" -C "$WORK" --no-same-owner "${MEMBERS[@]}"
SRC="$WORK/${RESEARCH_MEMBER%/}"
log "extracted ${MEMBERS[*]}"

# ------------------------------------------------------------------------------------ 2. protos
PB_VERSION=$("$PYTHON" -c 'import google.protobuf as p; print(p.__version__)') \
    || die "protobuf is not installed in $PYTHON's environment: install the requirements first"
log "compiling protos with grpcio-tools for protobuf $PB_VERSION"
"$PYTHON" -m pip install --quiet --no-cache-dir --disable-pip-version-check --target "$WORK/protoc" \
    grpcio-tools "protobuf==$PB_VERSION" \
    || die "no grpcio-tools release accepts protobuf==$PB_VERSION (pin protobuf to a version grpcio-tools supports)"
(cd "$SRC" && PYTHONPATH="$WORK/protoc" "$PYTHON" -m grpc_tools.protoc -I. --python_out=. object_detection/protos/*.proto)
ls "$SRC"/object_detection/protos/pipeline_pb2.py >/dev/null

# ------------------------------------------------------------------------ 3./5. patching helper
# patch FILE MARKER OLD NEW [OLD NEW ...]: replace every OLD with NEW unless MARKER is already in FILE;
# each OLD must occur at least once, or the script stops.
patch_file() {
    "$PYTHON" - "$@" <<'PY'
import sys
path, marker, pairs = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(path, encoding="utf-8") as f:
    text = f.read()
if marker in text:
    print("install_odapi:   already patched: %s" % path, file=sys.stderr)
    sys.exit(0)
for old, new in zip(pairs[::2], pairs[1::2]):
    count = text.count(old)
    if count == 0:
        sys.exit("install_odapi: ERROR: expected text not found in %s:\n  %r\n"
                 "(another commit or package version? check the fix still applies)" % (path, old))
    text = text.replace(old, new)
if marker not in text:
    sys.exit("install_odapi: ERROR: %s: the patch did not add its marker %r" % (path, marker))
with open(path, "w", encoding="utf-8") as f:
    f.write(text)
print("install_odapi:   patched %s (%d edit(s))" % (path, len(pairs) // 2), file=sys.stderr)
PY
}

ESTIMATOR_OLD='from tensorflow.compat.v1 import estimator as tf_estimator
'
ESTIMATOR_NEW='try:  # odstack-fix(estimator): tf.estimator is gone since TF 2.16; only the TF1 Estimator path uses it
  from tensorflow.compat.v1 import estimator as tf_estimator
except ImportError:
  tf_estimator = None
'
TFIO_OLD='  import tensorflow_io as tfio  # pylint:disable=g-import-not-at-top
'
TFIO_NEW='  try:  # odstack-fix(tensorflow-io): only DeepMAC color consistency (rgb_to_lab) uses it; not installed
    import tensorflow_io as tfio  # pylint:disable=g-import-not-at-top
  except ImportError:
    tfio = None
'
if [ "$TF_MAJOR" = 2 ]; then
    log "fix: optional tf.estimator import (inputs.py, model_lib.py)"
    for file in inputs.py model_lib.py; do
        patch_file "$SRC/object_detection/$file" "odstack-fix(estimator)" "$ESTIMATOR_OLD" "$ESTIMATOR_NEW"
    done
    log "fix: optional tensorflow_io import (meta_architectures/deepmac_meta_arch.py)"
    patch_file "$SRC/object_detection/meta_architectures/deepmac_meta_arch.py" "odstack-fix(tensorflow-io)" \
        "$TFIO_OLD" "$TFIO_NEW"
fi

# --------------------------------------------------------------------------------- 4. install
"$PYTHON" -c 'import setuptools' 2>/dev/null \
    || "$PYTHON" -m pip install --quiet --no-cache-dir --disable-pip-version-check setuptools
cp "$SRC/object_detection/packages/tf${TF_MAJOR}/setup.py" "$SRC/setup.py"
log "pip install object_detection (no dependencies) + lvis==$LVIS_VERSION"
"$PYTHON" -m pip install --quiet --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation "$SRC"
"$PYTHON" -m pip install --quiet --no-cache-dir --disable-pip-version-check --no-deps "lvis==$LVIS_VERSION"
# The sample configs are not Python packages, so pip leaves them out; odstack renders them (any
# configs/tf<N>/*.config works as MODEL=path), so they go beside the installed package.
if [ -d "$SRC/object_detection/configs/tf${TF_MAJOR}" ]; then
    INSTALLED=$("$PYTHON" -c 'import os, object_detection; print(os.path.dirname(object_detection.__file__))')
    mkdir -p "$INSTALLED/configs"
    rm -rf "$INSTALLED/configs/tf${TF_MAJOR}"
    cp -r "$SRC/object_detection/configs/tf${TF_MAJOR}" "$INSTALLED/configs/"
    log "sample configs: $INSTALLED/configs/tf${TF_MAJOR} ($(ls "$INSTALLED/configs/tf${TF_MAJOR}" | wc -l) files)"
fi

# ------------------------------------------------------------------------------------ 5. tf-slim
if [ "$TF_MAJOR" = 2 ]; then
    SLIM=$("$PYTHON" -c 'import importlib.util, os; s = importlib.util.find_spec("tf_slim"); print(os.path.dirname(s.origin) if s else "")')
    [ -n "$SLIM" ] || die "tf-slim is not installed (it comes with tf-models-official): install the requirements first"
    log "fix: tf-slim control_flow_ops.case/cond -> tf.compat.v1.case/cond ($SLIM)"
    SLIM_IMPORT='from tensorflow.python.ops import control_flow_ops
'
    SLIM_IMPORT_NEW='from tensorflow.python.ops import control_flow_ops
import tensorflow as _odstack_tf  # odstack-fix(tf-slim-case-cond): control_flow_ops.case/cond are gone (TF >= 2.13)
'
    patch_file "$SLIM/data/tfexample_decoder.py" "odstack-fix(tf-slim-case-cond)" \
        "$SLIM_IMPORT" "$SLIM_IMPORT_NEW" \
        "control_flow_ops.case(" "_odstack_tf.compat.v1.case(" \
        "control_flow_ops.cond(" "_odstack_tf.compat.v1.cond("
    for file in layers/utils.py metrics/metric_ops.py; do
        patch_file "$SLIM/$file" "odstack-fix(tf-slim-case-cond)" \
            "$SLIM_IMPORT" "$SLIM_IMPORT_NEW" \
            "control_flow_ops.cond(" "_odstack_tf.compat.v1.cond("
    done
fi

# ------------------------------------------------------------------------------- 6. smoke test
log "smoke test"
if [ "$TF_MAJOR" = 2 ]; then
    TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 "$PYTHON" - <<'PY'
import object_detection, tensorflow as tf
from object_detection.protos import pipeline_pb2
from object_detection import model_lib_v2, exporter_lib_v2, export_tflite_graph_lib_tf2  # noqa: F401
from tf_slim.data import tfexample_decoder  # noqa: F401
print("install_odapi: OK: object_detection from %s on TensorFlow %s" % (object_detection.__path__[0], tf.__version__))
PY
else
    TF_CPP_MIN_LOG_LEVEL=3 "$PYTHON" - <<'PY'
import object_detection, tensorflow as tf
from object_detection.protos import pipeline_pb2
from object_detection import model_lib, exporter  # noqa: F401
print("install_odapi: OK: object_detection (TF1) from %s on TensorFlow %s" % (object_detection.__path__[0], tf.__version__))
PY
fi
