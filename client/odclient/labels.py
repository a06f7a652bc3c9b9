"""Class names for a served model version, from the label map exported with it.

TF Serving's GetModelMetadata returns signatures only, never a version's asset files, so the label map
is read from the same directory TF Serving loads: ``SERVING_DIR/<model>/<version>/assets.extra/
label_map.pbtxt`` (the client mounts output/serving read-only). A version's files never change once it
is served, so maps are cached per (model, version); a missing map is looked up again next time.
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

LOG = logging.getLogger("odclient")
LABEL_MAP_PATH = "assets.extra/label_map.pbtxt"
#: The score threshold chosen for the model at evaluation (best F1 on val), when its export recorded one:
#: ``{"score_threshold": 0.42, "source": "best F1 on val, step N"}`` (odstack/export/publish.py writes it)
THRESHOLD_PATH = "assets.extra/thresholds.json"


def _label_map_class() -> type:
    """The OD API's StringIntLabelMap (string_int_label_map.proto), in a private descriptor pool."""
    field = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="odclient/string_int_label_map.proto",
                                               package="object_detection.protos", syntax="proto2")
    item = proto.message_type.add(name="StringIntLabelMapItem")
    item.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    item.field.add(name="id", number=2, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
    item.field.add(name="display_name", number=3, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    proto.message_type.add(name="StringIntLabelMap").field.add(
        name="item", number=1, type=field.TYPE_MESSAGE, label=field.LABEL_REPEATED,
        type_name=".object_detection.protos.StringIntLabelMapItem")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("object_detection.protos.StringIntLabelMap"))


_LABEL_MAP = _label_map_class()


def parse(text: str) -> dict[int, str]:
    """``{id: name}`` (display_name when set) from label map text; unknown fields are ignored."""
    label_map = _LABEL_MAP()
    text_format.Parse(text, label_map, allow_unknown_field=True)
    return {item.id: item.display_name or item.name for item in label_map.item}


class LabelMaps:
    def __init__(self, serving_dir: str | Path) -> None:
        self.serving_dir = Path(serving_dir)
        self._cache: dict[tuple[str, int], dict[int, str]] = {}
        self._lock = threading.Lock()

    def path(self, model: str, version: int) -> Path:
        return self.serving_dir / model / str(version) / LABEL_MAP_PATH

    def get(self, model: str, version: int) -> dict[int, str]:
        """The version's ``{id: name}``, or ``{}`` when it ships no (readable) label map."""
        key = (model, version)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        path = self.path(model, version)
        try:
            labels = parse(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, text_format.ParseError) as error:
            LOG.warning("label map %s unreadable: %s", path, error)
            return {}
        with self._lock:
            self._cache[key] = labels
        return labels


def model_threshold(serving_dir: str | Path, model: str, version: int) -> float | None:
    """The version's recorded score threshold (``THRESHOLD_PATH``), or None when it has none (or a bad one)."""
    path = Path(serving_dir) / model / str(version) / THRESHOLD_PATH
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["score_threshold"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        LOG.warning("threshold %s unreadable: %s", path, error)
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        LOG.warning("threshold %s: %r is not a number in [0, 1]", path, value)
        return None
    return float(value)
