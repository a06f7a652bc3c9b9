"""Render output/<run>/pipeline.config (the OD API's TrainEvalPipelineConfig) from a template.

The template is a zoo archive's own pipeline.config, a sample config, or the run's earlier
pipeline.config when it resumes. Rendering sets, and leaves everything else as it was:

- ``model.{ssd|faster_rcnn|center_net}.num_classes``: from the label map; the image resizer's size when
  ``image_size`` is given
- ``train_config``: ``fine_tune_checkpoint`` (+ ``_type: "detection"``, ``_version: V2``) or none
  (from scratch), ``batch_size``, ``num_steps``, ``use_bfloat16: false`` (no TPU here)
- the learning-rate schedule scaled to the new step count: cosine ``total_steps`` = steps and
  ``warmup_steps``/``hold_base_rate_steps`` in proportion; exponential ``decay_steps``/``burnin_steps``
  and manual-step boundaries in proportion to the template's ``num_steps``; the TF1 quantization
  ``graph_rewriter`` delay likewise. Learning rates: ``learning_rate`` sets the peak (the others keep
  their ratio to it); otherwise a batch size other than the template's scales them (linear scaling
  rule; square root for Adam).
- ``train_input_reader``/every ``eval_input_reader``: ``label_map_path`` and ``input_path`` (shard globs)
- ``eval_config.metrics_set: "coco_detection_metrics"``

One schema on every machine: the OD API's own protos (object_detection/protos/*.proto at the pinned
commit), compiled into the descriptor set in odstack/odapi_protos/ (with the licence of its source)
and loaded into odstack.protos' private pool. So a config parses, renders and prints the same whether the
OD API is installed or not, misspelled fields are errors as in training, and the text is what the OD API's
own config_util writes (protobuf ``text_format``). Edits go through a small path API over the message
(``get``/``get_all``/``has``/``set``/``delete``/``paths``; paths are dotted, a segment may be ``{a|b|c}``
(whichever is present, e.g. a oneof), ``*`` or ``name[i]``).
"""
from __future__ import annotations

import functools
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from google.protobuf import text_format

from odstack import protos
from odstack.errors import ConfigError
from odstack.fsio import write_text_atomic

MODEL_TYPES = ("ssd", "faster_rcnn", "center_net")
OPTIMIZERS = ("momentum_optimizer", "adam_optimizer", "rms_prop_optimizer")
SCHEDULES = ("cosine_decay_learning_rate", "exponential_decay_learning_rate", "manual_step_learning_rate",
             "constant_learning_rate")
SCHEDULE_PATH = (f"train_config.optimizer.{{{'|'.join(OPTIMIZERS)}}}.learning_rate."
                 f"{{{'|'.join(SCHEDULES)}}}")
COCO_METRICS = "coco_detection_metrics"
# proto defaults (object_detection/protos/optimizer.proto) of the schedule fields rendering reads:
# an absent field means this value to the OD API, and the schema-less tree must know it too.
SCHEDULE_DEFAULTS = {
    "cosine_decay_learning_rate": {"learning_rate_base": 0.002, "total_steps": 4000000,
                                   "warmup_learning_rate": 0.0002, "warmup_steps": 10000,
                                   "hold_base_rate_steps": 0},
    "exponential_decay_learning_rate": {"initial_learning_rate": 0.002, "decay_steps": 4000000,
                                        "burnin_learning_rate": 0.0, "burnin_steps": 0,
                                        "min_learning_rate": 0.0},
    "manual_step_learning_rate": {"initial_learning_rate": 0.002},
    "constant_learning_rate": {"learning_rate": 0.002},
}
# proto defaults of keep_aspect_ratio_resizer (object_detection/protos/image_resizer.proto)
KEEP_ASPECT_DEFAULTS = {"min_dimension": 600, "max_dimension": 1024}
# the fields holding learning rates, peak first
LR_FIELDS = {
    "cosine_decay_learning_rate": ("learning_rate_base", "warmup_learning_rate"),
    "exponential_decay_learning_rate": ("initial_learning_rate", "burnin_learning_rate", "min_learning_rate"),
    "manual_step_learning_rate": ("initial_learning_rate",),
    "constant_learning_rate": ("learning_rate",),
}


class Ident(str):
    """An enum value by name (such as ``V2`` or ``RELU_6``): what ``get()`` returns for enum fields."""


# ===================================================================================== path API
@dataclass(frozen=True)
class _Segment:
    names: tuple[str, ...] | None      # None: any field ('*')
    index: int | None = None

    @property
    def single(self) -> str | None:
        return self.names[0] if self.names and len(self.names) == 1 else None


@functools.lru_cache(maxsize=256)
def _segments(path: str) -> tuple[_Segment, ...]:
    segments = []
    for part in path.split("."):
        index = None
        if part.endswith("]") and "[" in part:
            part, _, number = part[:-1].partition("[")
            index = int(number)
        if part == "*":
            names = None
        elif part.startswith("{") and part.endswith("}"):
            names = tuple(n.strip() for n in part[1:-1].split("|"))
        else:
            names = (part,)
        if names is not None and not all(names):
            raise ValueError(f"bad path {path!r}")
        segments.append(_Segment(names, index))
    return tuple(segments)


def _concrete(prefix: str, name: str, index: int, count: int) -> str:
    step = f"{name}[{index}]" if count > 1 else name
    return f"{prefix}.{step}" if prefix else step


class PipelineConfig:
    """A TrainEvalPipelineConfig message and the path API over it."""

    def __init__(self, message):
        self.message = message

    @classmethod
    def parse(cls, text: str, where: str | None = None) -> "PipelineConfig":
        message = protos.TrainEvalPipelineConfig()
        try:
            text_format.Parse(text, message)
        except text_format.ParseError as error:
            line = error.GetLine() if hasattr(error, "GetLine") else None
            raise ConfigError(f"not a valid OD API pipeline config: {error}",
                              where=f"{where}:{line}" if where and line else where,
                              hint="the OD API's protos reject it (a misspelled or unknown field?)") from None
        return cls(message)

    def to_text(self) -> str:
        return text_format.MessageToString(self.message, as_utf8=True)

    def _walk(self, segments, create: bool = False) -> Iterator[tuple[str, Any]]:
        level = [("", self._root())]
        for segment in segments:
            following = []
            for prefix, node in level:
                if not self._is_node(node):
                    continue
                matches = self._children(node, segment.names)
                if segment.index is not None:
                    matches = [m for m in matches if m[2] == segment.index]
                if not matches and create:
                    name = segment.single
                    if name is None or segment.index not in (None, 0):
                        raise KeyError(f"cannot create {'|'.join(segment.names or ('*',))!r} under "
                                       f"{prefix or 'the top level'}: none of them is present")
                    matches = [(name, self._create_child(node, name), 0, 1)]
                following.extend((_concrete(prefix, name, index, count), value)
                                 for name, value, index, count in matches)
            level = following
        yield from level

    def paths(self, path: str) -> list[str]:
        """The concrete paths a pattern matches (``{a|b}`` resolved to what is present)."""
        return [p for p, _ in self._walk(_segments(path))]

    def get_all(self, path: str) -> list[Any]:
        return [v for _, v in self._walk(_segments(path)) if not self._is_node(v)]

    def get(self, path: str, default: Any = None) -> Any:
        values = self.get_all(path)
        return values[0] if values else default

    def has(self, path: str) -> bool:
        return any(True for _ in self._walk(_segments(path)))

    def set(self, path: str, value: Any) -> list[str]:
        """Set a scalar field (a list: the whole repeated field) under every match of the parent path,
        creating missing parent messages; returns the concrete paths set."""
        segments = _segments(path)
        leaf = segments[-1]
        if leaf.single is None or leaf.index is not None:
            raise ValueError(f"set() needs a plain field name at the end of {path!r}")
        repeated = isinstance(value, (list, tuple))
        values = list(value) if repeated else [value]
        done = []
        for prefix, node in self._walk(segments[:-1], create=True):
            if self._is_node(node):
                self._set_field(node, leaf.single, values, repeated)
                done.append(f"{prefix}.{leaf.single}" if prefix else leaf.single)
        if not done:
            raise KeyError(f"nothing matches the parent of {path!r}")
        return done

    def delete(self, path: str) -> int:
        segments = _segments(path)
        leaf = segments[-1]
        if leaf.single is None or leaf.index is not None:
            raise ValueError(f"delete() needs a plain field name at the end of {path!r}")
        return sum(self._delete_field(node, leaf.single)
                   for _, node in self._walk(segments[:-1]) if self._is_node(node))

    def _root(self):
        return self.message

    def _is_node(self, value) -> bool:
        return hasattr(value, "DESCRIPTOR") and hasattr(value, "ListFields")

    def _field(self, node, name: str):
        descriptor = node.DESCRIPTOR.fields_by_name.get(name)
        if descriptor is None:
            raise KeyError(f"{node.DESCRIPTOR.full_name} has no field {name!r}")
        return descriptor

    @staticmethod
    def _python(descriptor, value):
        if descriptor.type == descriptor.TYPE_ENUM:
            return Ident(descriptor.enum_type.values_by_number[value].name)
        if descriptor.type == descriptor.TYPE_FLOAT:
            # a float field holds float32: 0.013333 reads back as 0.013333000242710114. The shortest decimal
            # that is the same float32 is what the config says, what text_format prints, and what rendering
            # scales (else scaled learning rates would differ from the config's own in the 6th digit)
            return _shortest_float32(value)
        return value

    def _children(self, node, names):
        descriptors = ([self._field(node, n) for n in names] if names is not None
                       else [d for d, _ in node.ListFields()])
        found = []
        for descriptor in descriptors:
            value = getattr(node, descriptor.name)
            if _is_repeated(descriptor):
                items = list(value)
                found.extend((descriptor.name, self._python(descriptor, v), i, len(items))
                             for i, v in enumerate(items))
            elif node.HasField(descriptor.name):
                found.append((descriptor.name, self._python(descriptor, value), 0, 1))
        return found

    def _create_child(self, node, name: str):
        descriptor = self._field(node, name)
        if descriptor.type != descriptor.TYPE_MESSAGE:
            raise KeyError(f"{name!r} is not a message field")
        if _is_repeated(descriptor):
            return getattr(node, name).add()
        child = getattr(node, name)
        child.SetInParent()
        return child

    def _convert(self, descriptor, value):
        if descriptor.type == descriptor.TYPE_ENUM and isinstance(value, str):
            enum_value = descriptor.enum_type.values_by_name.get(str(value))
            if enum_value is None:
                raise ValueError(f"{value!r} is not a value of {descriptor.enum_type.full_name}")
            return enum_value.number
        if isinstance(value, os.PathLike):
            return str(value)
        return value

    def _set_field(self, node, name: str, values: list, repeated: bool) -> None:
        descriptor = self._field(node, name)
        if descriptor.type == descriptor.TYPE_MESSAGE:
            raise ValueError(f"{name!r} is a message, not a scalar")
        converted = [self._convert(descriptor, v) for v in values]
        if _is_repeated(descriptor):
            target = getattr(node, name)
            del target[:]
            target.extend(converted)
        else:
            if len(converted) != 1:
                raise ValueError(f"{name!r} is not repeated: give one value")
            setattr(node, name, converted[0])

    def _delete_field(self, node, name: str) -> int:
        descriptor = self._field(node, name)
        count = (len(getattr(node, name)) if _is_repeated(descriptor) else int(node.HasField(name)))
        node.ClearField(name)
        return count


def _shortest_float32(value: float) -> float:
    """The shortest decimal (up to 9 digits, always enough) that rounds to the same float32 as ``value``."""
    if not math.isfinite(value):
        return value
    exact = struct.pack("<f", value)
    for digits in range(1, 10):
        shorter = float(f"{value:.{digits}g}")
        if struct.pack("<f", shorter) == exact:
            return shorter
    return value


def _is_repeated(descriptor) -> bool:
    repeated = getattr(descriptor, "is_repeated", None)     # protobuf >= 5.29; .label is deprecated
    if repeated is not None:
        return bool(repeated)
    return descriptor.label == descriptor.LABEL_REPEATED




def load(text: str, where: str | None = None) -> PipelineConfig:
    """A pipeline config text parsed with the OD API's schema, with the path API."""
    return PipelineConfig.parse(text, where)


# ==================================================================================== rendering
@dataclass
class Rendered:
    text: str
    changes: dict[str, Any]       # concrete path -> value set (a list for repeated fields)
    template_steps: int | None
    template_batch: int | None
    model_type: str
    schedule: str | None
    input_size: int | None        # what image_size= would set (fixed height, or the keep-aspect max side)


def render(template: str, *, num_classes: int, label_map: str | Path, train_input: str | list[str],
           val_input: str | list[str], steps: int, batch_size: int | None = None,
           learning_rate: float | None = None, fine_tune_checkpoint: str | Path | None = None,
           fine_tune_checkpoint_type: str = "detection", checkpoint_version: str | None = "V2",
           val_images: int | None = None, image_size: int | None = None,
           where: str | None = None) -> Rendered:
    """Render a pipeline config text from a template text (see the module docstring).

    ``fine_tune_checkpoint`` None trains from scratch (the template's fine-tune fields are removed);
    ``fine_tune_checkpoint_type`` "detection" restores a whole detector's backbone + heads' base.
    ``checkpoint_version`` V2 for TF2 object-based checkpoints; None leaves it (TF1 configs).
    ``image_size`` sets the model's input size: a fixed_shape_resizer's height and width, or a
    keep_aspect_ratio_resizer's max_dimension (min_dimension in proportion).
    """
    if steps < 1:
        raise ConfigError(f"steps={steps}: must be at least 1")
    if num_classes < 1:
        raise ConfigError(f"num_classes={num_classes}: the label map has no classes")
    config = load(template, where)
    changes: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        for concrete in config.set(path, value):
            changes[concrete] = value

    model_paths = config.paths(f"model.{{{'|'.join(MODEL_TYPES)}}}")
    if len(model_paths) != 1:
        raise ConfigError(f"the template's model is not one of {', '.join(MODEL_TYPES)}", where=where,
                          hint="use a zoo config of an SSD/EfficientDet, Faster R-CNN or CenterNet model")
    model_type = model_paths[0].rpartition(".")[2]
    put(f"model.{model_type}.num_classes", int(num_classes))
    if image_size is not None:
        _render_image_size(config, put, model_type, int(image_size), where)

    template_steps = config.get("train_config.num_steps")
    template_batch = config.get("train_config.batch_size")
    put("train_config.num_steps", int(steps))
    if batch_size is not None:
        put("train_config.batch_size", int(batch_size))
    put("train_config.use_bfloat16", False)

    if fine_tune_checkpoint is not None:
        put("train_config.fine_tune_checkpoint", str(fine_tune_checkpoint))
        put("train_config.fine_tune_checkpoint_type", fine_tune_checkpoint_type)
        if checkpoint_version:
            put("train_config.fine_tune_checkpoint_version", Ident(checkpoint_version))
    else:
        for name in ("fine_tune_checkpoint", "fine_tune_checkpoint_type", "fine_tune_checkpoint_version",
                     "from_detection_checkpoint"):
            if config.delete(f"train_config.{name}"):
                changes[f"train_config.{name}"] = None

    schedule = _render_schedule(config, put, steps=steps, template_steps=template_steps,
                                batch_size=batch_size, template_batch=template_batch,
                                learning_rate=learning_rate, where=where)
    ratio = steps / template_steps if template_steps else None
    delay = config.get("graph_rewriter.quantization.delay")
    if delay is not None and ratio:
        put("graph_rewriter.quantization.delay", int(round(delay * ratio)))

    train_paths = [str(train_input)] if isinstance(train_input, (str, Path)) else [str(p) for p in train_input]
    val_paths = [str(val_input)] if isinstance(val_input, (str, Path)) else [str(p) for p in val_input]
    put("train_input_reader.label_map_path", str(label_map))
    put("train_input_reader.tf_record_input_reader.input_path", train_paths)
    put("eval_input_reader.label_map_path", str(label_map))
    put("eval_input_reader.tf_record_input_reader.input_path", val_paths)
    put("eval_config.metrics_set", [COCO_METRICS])
    if val_images and config.has("eval_config.num_examples"):
        put("eval_config.num_examples", int(val_images))

    return Rendered(text=config.to_text(), changes=changes,
                    template_steps=template_steps, template_batch=template_batch, model_type=model_type,
                    schedule=schedule, input_size=input_size(config))


def _render_image_size(config: PipelineConfig, put, model_type: str, size: int, where: str | None) -> None:
    if size < 32:
        raise ConfigError(f"image_size={size}: must be at least 32 pixels")
    resizer = f"model.{model_type}.image_resizer"
    if config.has(f"{resizer}.fixed_shape_resizer"):
        put(f"{resizer}.fixed_shape_resizer.height", size)
        put(f"{resizer}.fixed_shape_resizer.width", size)
    elif config.has(f"{resizer}.keep_aspect_ratio_resizer"):
        keep = f"{resizer}.keep_aspect_ratio_resizer"
        low = config.get(f"{keep}.min_dimension", KEEP_ASPECT_DEFAULTS["min_dimension"])
        high = config.get(f"{keep}.max_dimension", KEEP_ASPECT_DEFAULTS["max_dimension"])
        put(f"{keep}.max_dimension", size)
        put(f"{keep}.min_dimension", max(1, int(round(low * size / high))))
    else:
        raise ConfigError("image_size= given, but the config's image_resizer is neither a fixed_shape_resizer "
                          "nor a keep_aspect_ratio_resizer", where=where,
                          hint="leave IMAGE_SIZE unset for this model (it keeps the config's own size)")


def input_size(config: PipelineConfig) -> int | None:
    """The model's input size as image_size= sets it (fixed height, or the keep-aspect max dimension)."""
    found = config.paths(f"model.{{{'|'.join(MODEL_TYPES)}}}")
    if not found:
        return None
    resizer = f"{found[0]}.image_resizer"
    if config.has(f"{resizer}.fixed_shape_resizer"):
        return config.get(f"{resizer}.fixed_shape_resizer.height")
    if config.has(f"{resizer}.keep_aspect_ratio_resizer"):
        return config.get(f"{resizer}.keep_aspect_ratio_resizer.max_dimension", KEEP_ASPECT_DEFAULTS["max_dimension"])
    return None


def learning_rate_at(config: PipelineConfig, step: int) -> float | None:
    """The learning rate the OD API's schedule gives at ``step`` (cosine and constant schedules; else None).
    Follows object_detection/utils/learning_schedules.py: linear warm-up, hold, cosine decay, 0 past the end."""
    found = config.paths(SCHEDULE_PATH)
    if len(found) != 1:
        return None
    path, schedule = found[0], found[0].rpartition(".")[2]
    values = {name: config.get(f"{path}.{name}", default) for name, default in SCHEDULE_DEFAULTS[schedule].items()}
    if schedule == "constant_learning_rate":
        return float(values["learning_rate"])
    if schedule != "cosine_decay_learning_rate":
        return None
    base, total = float(values["learning_rate_base"]), int(values["total_steps"])
    warmup, hold = int(values["warmup_steps"]), int(values["hold_base_rate_steps"])
    if step > total:
        return 0.0
    if warmup and step < warmup:
        return float(values["warmup_learning_rate"]) + (base - float(values["warmup_learning_rate"])) * step / warmup
    if step <= warmup + hold and hold:
        return base
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup - hold) / max(1, total - warmup - hold)))


def _render_schedule(config: PipelineConfig, put, *, steps: int, template_steps: int | None,
                     batch_size: int | None, template_batch: int | None, learning_rate: float | None,
                     where: str | None) -> str | None:
    found = config.paths(SCHEDULE_PATH)
    if not found:
        if learning_rate is not None:
            raise ConfigError("learning_rate= given but the template has no learning-rate schedule",
                              where=where, hint="leave learning_rate=auto for this config")
        return None
    if len(found) > 1:
        raise ConfigError(f"the template has {len(found)} learning-rate schedules", where=where)
    path = found[0]
    schedule = path.rpartition(".")[2]
    optimizer = path.split(".")[2]
    defaults = SCHEDULE_DEFAULTS[schedule]

    def current(name: str):
        return config.get(f"{path}.{name}", defaults.get(name))

    ratio = steps / template_steps if template_steps else None
    if schedule == "cosine_decay_learning_rate":
        total = current("total_steps") or steps
        warmup = int(round(current("warmup_steps") * steps / total))
        hold = int(round(current("hold_base_rate_steps") * steps / total))
        warmup = min(warmup, max(steps - 1, 0))            # the OD API needs total >= warmup ...
        hold = min(hold, max(steps - 1 - warmup, 0))       # ... and cosine divides by total - warmup - hold
        put(f"{path}.total_steps", int(steps))
        put(f"{path}.warmup_steps", warmup)
        if config.has(f"{path}.hold_base_rate_steps") or hold:
            put(f"{path}.hold_base_rate_steps", hold)
    elif schedule == "exponential_decay_learning_rate" and ratio:
        put(f"{path}.decay_steps", max(1, int(round(current("decay_steps") * ratio))))
        if current("burnin_steps"):
            put(f"{path}.burnin_steps", int(round(current("burnin_steps") * ratio)))
    elif schedule == "manual_step_learning_rate" and ratio:
        boundaries = config.get_all(f"{path}.schedule.step")
        previous = 0
        for index, boundary in enumerate(boundaries):
            scaled = max(previous + 1, int(round(boundary * ratio)))   # positive, strictly increasing
            put(f"{path}.schedule[{index}].step", scaled)
            previous = scaled

    # learning rates: an explicit peak, or the batch-size scaling rule
    names = LR_FIELDS[schedule]
    peak = current(names[0])
    factor = 1.0
    if learning_rate is not None:
        factor = learning_rate / peak if peak else 1.0
    elif batch_size and template_batch and batch_size != template_batch:
        factor = batch_size / template_batch
        if optimizer == "adam_optimizer":
            factor = math.sqrt(factor)
    if learning_rate is not None:
        put(f"{path}.{names[0]}", float(learning_rate))
    if factor != 1.0:
        if learning_rate is None:
            put(f"{path}.{names[0]}", _round(peak * factor))
        for name in names[1:]:
            value = current(name)
            if value or config.has(f"{path}.{name}"):
                put(f"{path}.{name}", _round(value * factor))
        if schedule == "manual_step_learning_rate":
            for index, value in enumerate(config.get_all(f"{path}.schedule.learning_rate")):
                put(f"{path}.schedule[{index}].learning_rate", _round(value * factor))
    return schedule


def _round(value: float) -> float:
    """Six significant digits: learning rates are float32 in the proto; keeps the config readable."""
    return float(f"{value:.6g}")


def read_template(template: Path) -> str:
    try:
        return Path(template).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read the pipeline config template: {error.strerror}", where=str(template)) from None


def render_file(template: Path, out: Path, **kwargs) -> Rendered:
    """Render ``template`` into ``out`` (written atomically); returns what was set."""
    kwargs.setdefault("where", str(template))
    rendered = render(read_template(template), **kwargs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, rendered.text)
    return rendered
