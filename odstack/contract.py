"""The contracts between the engines and the export stage (docs/architecture.md "The served contract").

- The served SavedModel: every engine's ``export_saved_model`` gives the TF OD API's ``serving_default``
  signature, checked by :func:`check_signature`; serving, the client and parity rely on nothing else.
- The TFLite graph: every engine's ``tflite_graph`` gives a SavedModel ending in TFLite's
  ``TFLite_Detection_PostProcess`` op and the spec of its input (``model_info.json``), in the terms below.
- :class:`Nms`: the post-processing both exports share.

This module is the vocabulary both sides import (engines never import the export package, which imports
them). No TensorFlow at import time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from odstack.errors import ConfigError, ExportError

#: The OD API export signature: what ``make export`` guarantees and parity/serving rely on.
SIGNATURE_KEY = "serving_default"
INPUT_KEY = "input_tensor"
OUTPUT_KEYS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
#: The second signature (tfvision exports): encoded image bytes, the OD API's encoded_image_string_tensor input
BYTES_SIGNATURE_KEY, BYTES_INPUT_KEY = "image_bytes", "encoded_image_string_tensor"

# ---- the TFLite graph's input spec (model_info.json), as the engines describe it and the runtime reads it
# Model Garden's serving normalization (official.vision.ops.preprocess_ops.MEAN_RGB / STDDEV_RGB)
MEAN_RGB = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STDDEV_RGB = [0.229 * 255, 0.224 * 255, 0.225 * 255]
# the two bilinear resizes the engines' SavedModels do (model_info.json names the one an app must reproduce)
TF2_RESIZE = "bilinear_half_pixel_centers"      # tf.image.resize: Model Garden's resize_and_crop_image
ODAPI_RESIZE = "bilinear_v1"                    # tf.compat.v1.image.resize_images(align_corners=False)
OUTPUTS_ABOUT = ["detection_boxes [1,N,4] ymin,xmin,ymax,xmax normalized to the model input",
                 "detection_classes [1,N] (labels.txt line; + class_offset = label-map id)",
                 "detection_scores [1,N]", "num_detections [1] (rows past it are undefined)",
                 "the outputs are those of the TFLite_Detection_PostProcess op, in this order; signature names "
                 "may differ (output_0..3 for OD API models)"]


@dataclass(frozen=True)
class Nms:
    """Post-processing shared by the SavedModel and TFLite exports."""

    max_detections: int = 100
    score_threshold: float = 0.05
    iou_threshold: float = 0.5

    def check(self) -> "Nms":
        if self.max_detections < 1:
            raise ConfigError(f"max_detections={self.max_detections} must be >= 1")
        if not 0.0 <= self.score_threshold < 1.0:
            raise ConfigError(f"score_threshold={self.score_threshold} must be in [0, 1)")
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ConfigError(f"iou_threshold={self.iou_threshold} must be in (0, 1]")
        return self


@dataclass(frozen=True)
class ExportedSavedModel:
    """What an engine's ``export_saved_model`` tells the export stage about the SavedModel it wrote."""

    image_size: list[int] | None  # the model's fixed input [height, width] (warm-up requests use it); None: any
    exact_outputs: bool           # exactly OUTPUT_KEYS (else they may come with extras, as the OD API's do)


def check_signature(saved_model: Path, strict: bool = True) -> dict[str, Any]:
    """Check ``serving_default`` is the OD API contract, reading saved_model.pb (no graph loading).

    strict: exactly the four outputs (the tfvision adapter's promise); otherwise they must be present (the
    OD API's own exporter adds raw_detection_* outputs). Returns {name: (dtype, shape)} of the outputs.
    """
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(saved_model) / "saved_model.pb").read_bytes())
    signatures = proto.meta_graphs[0].signature_def
    if SIGNATURE_KEY not in signatures:
        raise ExportError(f"no {SIGNATURE_KEY} signature (has: {', '.join(signatures)})", where=str(saved_model))
    sig = signatures[SIGNATURE_KEY]

    def spec(info):
        dims = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
        return types_pb2.DataType.Name(info.dtype), dims

    inputs = {k: spec(v) for k, v in sig.inputs.items()}
    outputs = {k: spec(v) for k, v in sig.outputs.items()}
    problems = []
    if list(inputs) != [INPUT_KEY] or inputs[INPUT_KEY][0] != "DT_UINT8":
        problems.append(f"inputs {inputs} (want {INPUT_KEY}: DT_UINT8 [1,H,W,3])")
    missing = [k for k in OUTPUT_KEYS if k not in outputs]
    if missing:
        problems.append(f"missing outputs {missing}")
    if strict and set(outputs) != set(OUTPUT_KEYS):
        problems.append(f"outputs {sorted(outputs)} (want exactly {list(OUTPUT_KEYS)})")
    wrong = [k for k in OUTPUT_KEYS if k in outputs and outputs[k][0] != "DT_FLOAT"]
    if wrong:
        problems.append(f"outputs not float32: {wrong}")
    if problems:
        raise ExportError("the SavedModel's serving signature is not the OD API's: " + "; ".join(problems),
                          where=str(saved_model))
    return outputs
