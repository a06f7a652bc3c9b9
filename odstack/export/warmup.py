"""TF Serving's warm-up file in a published version: ``assets.extra/tf_serving_warmup_requests``.

TF Serving (and odstack's development model server) replays its records before a version serves, so the
first real requests after a load or a version switch do not pay for tracing and graph optimization
(10-14 s on the real detectors). The format is TF Serving's: a TFRecord file of ``PredictionLog``
messages, here one Predict call per signature with a mid-grey image of the model's input size
(as a JPEG for the encoded-image signature).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from odstack import protos
from odstack.contract import INPUT_KEY, SIGNATURE_KEY

WARMUP_ASSET = Path("assets.extra") / "tf_serving_warmup_requests"
DEFAULT_IMAGE_SIZE = (320, 320)  # engines that do not record an input size (the OD API's resize anyway)


def predict_record(model_name: str, signature: str, inputs: dict[str, bytes]) -> bytes:
    """One serialized PredictionLog of a Predict call; ``inputs`` maps input keys to serialized TensorProtos."""
    log = protos.PredictionLog()
    request = log.predict_log.request
    request.model_spec.name, request.model_spec.signature_name = model_name, signature
    for key, tensor in inputs.items():
        request.inputs[key] = tensor
    return log.SerializeToString()


def write_warmup_requests(version_dir: Path, model_name: str, image_size: Sequence[int] | None, tf: Any,
                          bytes_signature: tuple[str, str] | None = None) -> Path:
    """Write the warm-up file into ``version_dir`` (a SavedModel dir with the OD API signature), with a JPEG
    for ``bytes_signature`` = (signature key, input key) when the model has one."""
    height, width = image_size or DEFAULT_IMAGE_SIZE
    image = np.full((1, int(height), int(width), 3), 128, np.uint8)
    path = Path(version_dir) / WARMUP_ASSET
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(predict_record(model_name, SIGNATURE_KEY,
                                    {INPUT_KEY: tf.make_tensor_proto(image).SerializeToString()}))
        if bytes_signature:  # the JPEG path: decode + the same detector
            jpeg = tf.io.encode_jpeg(image[0]).numpy()
            writer.write(predict_record(model_name, bytes_signature[0], {
                bytes_signature[1]: tf.make_tensor_proto([jpeg], dtype=tf.string).SerializeToString()}))
    return path
