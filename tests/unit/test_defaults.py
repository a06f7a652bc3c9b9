"""Every default lives in odstack/cfg/default.yaml: the settings dataclasses, which internal callers build
directly, must agree with it field for field (else a setting would mean one thing from the command line and
another from code)."""
from __future__ import annotations

import dataclasses
import typing

import pytest

from odstack import settings


def _sections():
    from odstack.data.convert import DataSettings
    from odstack.data.synthetic import SynthSettings
    from odstack.export.parity import ParitySettings
    from odstack.export.saved_model import ExportSettings
    from odstack.export.tfjs import TfjsSettings
    from odstack.export.tflite import TFLiteSettings
    from odstack.train.run import EvalSettings, TrainSettings

    return [("data", DataSettings), ("train", TrainSettings), ("eval", EvalSettings), ("synth", SynthSettings),
            ("export", ExportSettings), ("tflite", TFLiteSettings), ("parity", ParitySettings),
            ("tfjs", TfjsSettings)]


@pytest.mark.parametrize("section, cls", _sections(), ids=lambda v: v if isinstance(v, str) else v.__name__)
def test_dataclass_defaults_are_default_yaml(section, cls):
    yaml_values = settings.defaults(section)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    assert set(yaml_values) <= set(fields), f"default.yaml [{section}] has keys {cls.__name__} lacks"
    for name, field in fields.items():
        if name not in yaml_values or (field.default is dataclasses.MISSING
                                       and field.default_factory is dataclasses.MISSING):
            continue                                              # required: no default to disagree with
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        assert settings._coerce(name, yaml_values[name], hints[name]) == default, f"{section}.{name}"
