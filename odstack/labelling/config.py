"""Settings of the labelling service: odstack/cfg/default.yaml's ``labelling`` section < environment < key=value."""
from __future__ import annotations

import dataclasses
import os
import secrets
import sys
import typing
from pathlib import Path

from odstack import settings as odstack_settings
from odstack.errors import ConfigError

#: setting -> environment variable (each also read from a file named by <VAR>_FILE, for secrets)
ENVIRONMENT = {
    "database_url": "DATABASE_URL",
    "label_studio_url": "LABEL_STUDIO_URL",
    "label_studio_token": "LABEL_STUDIO_TOKEN",
    "tf_serving": "TF_SERVING_ADDR",
    "model_name": "MODEL_NAME",
    "serving_dir": "SERVING_DIR",
    "manager_token": "ODSTACK_MANAGER_TOKEN",
    "secret": "ODSTACK_ML_SECRET",
    "host": "LABELLING_HOST",
    "port": "LABELLING_PORT",
    "stage_python": "ODSTACK_STAGE_PYTHON",
}
REPO = Path(__file__).resolve().parents[2]


@dataclasses.dataclass
class LabellingSettings:
    host: str
    port: int
    label_studio_url: str
    label_studio_token: str | None
    tf_serving: str
    model_name: str
    serving_dir: Path
    score_threshold: float
    predict_timeout: float
    max_side: int
    images_root: Path
    database_url: str
    work_dir: Path
    manager_token: str | None
    secret: str | None
    max_running: int
    engine: str
    model: str
    steps: int
    train_args: str
    stage_python: str

    def python(self) -> str:
        """The interpreter that runs ``python -m odstack <stage>`` for a job."""
        if self.stage_python != "auto":
            return self.stage_python
        odapi = REPO / ".venv" / "odapi" / "bin" / "python"
        return str(odapi) if odapi.exists() else sys.executable

    def ensure_manager_token(self) -> str:
        """The manager's token: configured, or generated once into work_dir/manager.token (mode 600)."""
        if self.manager_token:
            return self.manager_token
        path = self.work_dir / "manager.token"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(24) + "\n")
        self.manager_token = path.read_text().strip()
        return self.manager_token


def _convert(key: str, value: typing.Any, annotation: typing.Any) -> typing.Any:
    options = typing.get_args(annotation) or (annotation,)
    if value is None or (type(None) in options and str(value).strip().lower() in ("", "null", "none")):
        if type(None) in options:
            return None
        raise ConfigError(f"labelling: {key} needs a value")
    kind = next(o for o in options if o is not type(None))
    try:
        return kind(value) if kind is not str else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"labelling: {key}={value!r} is not a valid {kind.__name__}") from None


def load(args: list[str] | None = None, environ: typing.Mapping[str, str] | None = None) -> LabellingSettings:
    """Defaults, then the environment (``VAR`` or ``VAR_FILE``), then ``key=value`` arguments."""
    environ = os.environ if environ is None else environ
    values = odstack_settings.defaults("labelling")
    for key, variable in ENVIRONMENT.items():
        if environ.get(variable):
            values[key] = environ[variable]
        elif environ.get(variable + "_FILE"):
            try:
                values[key] = Path(environ[variable + "_FILE"]).read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigError(f"labelling: cannot read {variable}_FILE: {error}") from None
    fields = {f.name for f in dataclasses.fields(LabellingSettings)}
    for arg in args or []:
        key, sep, value = arg.partition("=")
        if not sep or key.strip().lower() not in fields:
            raise ConfigError(f"labelling: unknown setting {arg!r}", hint=f"known: {', '.join(sorted(fields))}")
        values[key.strip().lower()] = value
    hints = typing.get_type_hints(LabellingSettings)
    return LabellingSettings(**{key: _convert(key, values.get(key), hints[key]) for key in hints})
