"""Settings: defaults from ``cfg/default.yaml`` < an optional ``cfg=file.yaml`` < ``key=value`` arguments.

Unknown keys are rejected with a suggestion; values are checked against each setting's type.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from odstack.errors import ConfigError

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def defaults(section: str) -> dict[str, Any]:
    """The defaults of one section (e.g. ``data``) of cfg/default.yaml."""
    text = resources.files("odstack.cfg").joinpath("default.yaml").read_text(encoding="utf-8")
    return dict(yaml.safe_load(text)[section])


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """``value`` (a string from the command line, or a YAML scalar) as the field's type."""
    options = typing.get_args(annotation) or (annotation,)
    text = str(value).strip() if value is not None else None
    if value is None or (text is not None and text.lower() in ("null", "none") and type(None) in options):
        if type(None) in options:
            return None
        raise ConfigError(f"{key} needs a value")
    for option in options:
        if option is bool:
            if isinstance(value, bool):
                return value
            if text.lower() in TRUE:
                return True
            if text.lower() in FALSE:
                return False
        elif option is int:
            try:
                return int(text)
            except ValueError:
                pass
        elif option is float:
            try:
                return float(text)
            except ValueError:
                pass
        elif option is Path:
            return Path(text)
        elif option is str:
            if len(options) == 1 or text == "auto":
                return text
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    if str in options:
        expected = expected.replace("str", "'auto'")
    raise ConfigError(f"{key}={value!r} is not a valid value (expected {expected})")


def build(cls: type, section: str, args: list[str]) -> Any:
    """An instance of the settings dataclass ``cls`` from defaults, ``cfg=`` file and ``key=value`` args."""
    values = defaults(section)
    overrides: dict[str, str] = {}
    for arg in args:
        if "=" not in arg:
            raise ConfigError(f"argument {arg!r} is not key=value", hint="e.g. src=input/mydata")
        key, value = arg.split("=", 1)
        overrides[key.strip().lower()] = value
    if "cfg" in overrides:
        path = Path(overrides.pop("cfg"))
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config file: {error}", where=str(path)) from None
        values.update((loaded.get(section) or {}) if isinstance(loaded, dict) else {})
    values.update(overrides)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            raise ConfigError(f"unknown setting {key!r} for {section}",
                              hint=f"did you mean {close[0]}=?" if close else f"known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    return cls(**{key: _coerce(key, value, hints[key]) for key, value in values.items()})


def describe(section: str) -> str:
    """The section's settings with their default and comment, for ``--help``."""
    text = resources.files("odstack.cfg").joinpath("default.yaml").read_text(encoding="utf-8")
    lines, inside = [], False
    for line in text.splitlines():
        if line.rstrip() == f"{section}:":
            inside = True
            continue
        if inside and line and not line.startswith(" "):
            break
        if inside and line.strip() and not line.strip().startswith("#"):
            lines.append("  " + line.strip())
    return "\n".join(lines)
