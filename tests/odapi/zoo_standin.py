"""A stand-in for a TF2 Detection Zoo archive, since the zoo cannot be downloaded here.

It has the zoo's layout, ``<stem>/pipeline.config`` + ``<stem>/checkpoint/{checkpoint, ckpt-0.index,
ckpt-0.data-00000-of-00001}``. The config is the OD API's own sample config for the model
(``configs/tf2/<stem>.config``, installed beside the package). The checkpoint is the model the OD API
builds from that config, randomly initialised, saved as the zoo's are: ``tf.train.Checkpoint(model=...)``
through a ``CheckpointManager`` as number 0. So fine-tuning restores it exactly as it restores the
real weights, which only differ in their values. The zoo's exported ``saved_model/`` is left out, since
odstack never reads it.

    TF_USE_LEGACY_KERAS=1 python -m tests.odapi.zoo_standin <stem> <out-dir>   # -> <out-dir>/<stem>.tar.gz
"""
from __future__ import annotations

import os
import sys
import tarfile
import tempfile
from pathlib import Path


def sample_config(stem: str) -> Path:
    import object_detection

    path = Path(object_detection.__file__).parent / "configs" / "tf2" / f"{stem}.config"
    if not path.exists():
        raise SystemExit(f"no sample config {path} (install the OD API with scripts/odapi/install_odapi.sh)")
    return path


def build(stem: str, out_dir: Path) -> Path:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf
    from object_detection.builders import model_builder
    from object_detection.utils import config_util

    config = sample_config(stem)
    model_config = config_util.get_configs_from_pipeline_file(str(config))["model"]
    model = model_builder.build(model_config=model_config, is_training=True)
    resizer = getattr(model_config, model_config.WhichOneof("model")).image_resizer
    size = resizer.fixed_shape_resizer.height if resizer.HasField("fixed_shape_resizer") else 320
    images, shapes = model.preprocess(tf.zeros([1, size, size, 3]))
    model.postprocess(model.predict(images, shapes), shapes)          # creates every variable
    with tempfile.TemporaryDirectory() as scratch:
        top = Path(scratch) / stem
        (top / "checkpoint").mkdir(parents=True)
        (top / "pipeline.config").write_text(config.read_text(encoding="utf-8"), encoding="utf-8")
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(top / "checkpoint"),
                                             max_to_keep=1)
        manager.save(checkpoint_number=0)
        out_dir.mkdir(parents=True, exist_ok=True)
        archive = out_dir / f"{stem}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            tar.add(top, arcname=stem)
    return archive


if __name__ == "__main__":
    print(build(sys.argv[1], Path(sys.argv[2])))
