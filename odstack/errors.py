"""Typed errors for problems the user can fix. The CLI prints them as one clear message (no traceback)
and exits non-zero; anything else is a bug and keeps its traceback."""
from __future__ import annotations

from odstack.annotations import Location


class OdstackError(Exception):
    """A user-facing error: what is wrong, where, and what to do about it."""

    exit_code = 2

    def __init__(self, message: str, where: Location | str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text}\n  -> {self.hint}" if self.hint else text


class ConfigError(OdstackError):
    """A bad command-line value or setting."""


class DatasetError(OdstackError):
    """The dataset as a whole cannot be read (wrong format, unparseable annotation file, empty)."""


class StrictModeError(OdstackError):
    """STRICT=1 and at least one image or box was skipped."""

    exit_code = 3


class ExportError(OdstackError):
    """A format cannot be produced (or fails its checks) for a reason the user can act on."""
