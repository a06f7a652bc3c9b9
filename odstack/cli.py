"""``python -m odstack MODE key=value ...``: the one command-line grammar of every stage.

User mistakes (OdstackError) print one clear message and exit non-zero, without a traceback.
"""
from __future__ import annotations

import sys
from typing import Callable

from odstack import settings
from odstack.errors import OdstackError
from odstack.log import LOGGER, heartbeat, setup_logging


def _data(args: list[str]) -> None:
    from odstack.data.convert import DataSettings, convert

    convert(settings.build(DataSettings, "data", args))


def _stats(args: list[str]) -> None:
    from odstack.data.convert import DataSettings, convert

    # The data stage's settings and checks, writing only the report (to the stats section's out unless given).
    defaults = [f"out={settings.defaults('stats')['out']}", "write_records=false"]
    convert(settings.build(DataSettings, "data", defaults + args))


def _train(args: list[str]) -> None:
    from odstack.train import stage
    from odstack.train.run import TrainSettings

    stage.train(settings.build(TrainSettings, "train", args))


def _eval(args: list[str]) -> None:
    from odstack.train import stage
    from odstack.train.run import EvalSettings

    stage.evaluate(settings.build(EvalSettings, "eval", args))


def _models(args: list[str]) -> None:
    from odstack.train import stage

    if args:
        raise OdstackError("models takes no settings")
    stage.print_models()


def _export(args: list[str]) -> None:
    from odstack.export import saved_model, tf1

    options = settings.build(saved_model.ExportSettings, "export", args)
    # tf1=true: a TF1.15 OD API run, exported by export_tf1.sh in the odapi-tf1 image first
    (tf1.export if options.tf1 else saved_model.export)(options)


def _tflite(args: list[str]) -> None:
    from odstack.export.tflite import TFLiteSettings, convert

    convert(settings.build(TFLiteSettings, "tflite", args))


def _parity(args: list[str]) -> None:
    from odstack.export.parity import ParitySettings, run_parity

    run_parity(settings.build(ParitySettings, "parity", args))


def _tfjs(args: list[str]) -> None:
    from odstack.export.tfjs import TfjsSettings, stage

    stage(settings.build(TfjsSettings, "tfjs", args))


def _list(args: list[str]) -> None:
    from odstack import formats
    from odstack.export.runtimes import RUNTIME_NAMES
    from odstack.train import engines

    if args:
        raise OdstackError("list takes no settings")
    aliases = ", ".join(f"{alias}={name}" for alias, name in sorted(formats.ALIASES.items()))
    print(f"annotation formats (FORMAT=): auto, {', '.join(formats.FORMAT_NAMES)}\n"
          f"format aliases (any case; '-', ' ', '.' for '_'): {aliases}\n"
          f"engines (ENGINE=; default model): "
          + ", ".join(f"{name} ({model}" + (f"; from scratch: {engines.SCRATCH_MODELS[name]})"
                                             if engines.SCRATCH_MODELS.get(name, model) != model else ")")
                      for name, model in engines.DEFAULT_MODELS.items())
          + f"\nexport formats (make parity compares each with the SavedModel): {', '.join(RUNTIME_NAMES)}")


def _doctor(args: list[str]) -> None:
    from odstack.doctor import DoctorSettings, run

    run(settings.build(DoctorSettings, "doctor", args))


def _synth(args: list[str]) -> None:
    from odstack.data.synthetic import SynthSettings, make_shapes

    options = settings.build(SynthSettings, "synth", args)
    path = make_shapes(options.out, images=options.images, size=options.size, seed=options.seed)
    LOGGER.info("synth: %d images of shapes written to %s (COCO JSON)", options.images, path)


MODES: dict[str, tuple[Callable[[list[str]], None], str]] = {
    "data": (_data, "annotated dataset -> TFRecords + label_map.pbtxt + report"),
    "stats": (_stats, "the data report of a dataset (report.json/html, warnings), without writing records"),
    "train": (_train, "train a detector on the TFRecords (engine tfvision or odapi)"),
    "eval": (_eval, "COCO metrics of a run's checkpoint -> output/<run>/metrics.json"),
    "models": (_models, "list the models each engine can train"),
    "export": (_export, "SavedModel (OD API signature) -> output/<run>/saved_model + output/serving/<model>/<version>"),
    "tflite": (_tflite, "TFLite (float|fp16|dynamic|int8, Edge TPU) -> output/<run>/tflite/, then parity"),
    "tfjs": (_tfjs, "TF.js graph model -> output/<run>/tfjs/ (+ signature.json), in the tfjs image"),
    "parity": (_parity, "every exported format vs the SavedModel on the val images -> output/<run>/parity.json"),
    "list": (_list, "the registries: annotation formats and their aliases, engines, export formats"),
    "doctor": (_doctor, "what this machine can train with: TF + CUDA/cuDNN, GPUs (and why not), Docker, engines, disk"),
    "synth": (_synth, "make a small synthetic shapes dataset (COCO JSON) for demos and tests"),
}

# training has its own progress line, data its progress bar; these would otherwise sit silent for minutes
HEARTBEAT_MODES = ("export", "tflite", "tfjs", "parity")

USAGE = """usage: python -m odstack MODE [key=value ...]

modes:
{modes}

'python -m odstack MODE --help' lists a mode's settings and defaults."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    setup_logging()
    modes = "\n".join(f"  {name:<8} {text}" for name, (_, text) in MODES.items())
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE.format(modes=modes))
        return 0
    mode, args = argv[0], argv[1:]
    if mode not in MODES:
        import difflib

        close = difflib.get_close_matches(mode, MODES, n=1)
        print(f"odstack: unknown mode {mode!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
              file=sys.stderr)
        print(USAGE.format(modes=modes), file=sys.stderr)
        return 2
    if any(a in ("-h", "--help") for a in args):
        section = "data" if mode == "stats" else mode
        print(f"usage: python -m odstack {mode} [key=value ...]\n\nsettings (defaults):\n{settings.describe(section)}")
        if section == "data":
            print()
            _list([])
        return 0
    try:
        if mode in HEARTBEAT_MODES:  # long work without steps: a line every 10 s of what it is doing
            with heartbeat(mode):
                MODES[mode][0](args)
        else:
            MODES[mode][0](args)
    except OdstackError as error:
        LOGGER.error("odstack %s: error: %s", mode, error)
        return error.exit_code
    except KeyboardInterrupt:
        LOGGER.error("odstack %s: interrupted; nothing was written", mode)
        return 130
    return 0
