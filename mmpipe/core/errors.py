"""Errors that name the file (and line) at fault."""

from __future__ import annotations


class MmpipeError(Exception):
    """Base class for errors a user can act on."""


class ConfigError(MmpipeError):
    """The config does not match the schema."""


class BadSampleError(MmpipeError):
    """A sample in the input is unusable. Carries the file and, where known, the line."""

    def __init__(self, file: str, problem: str, line: int | None = None, guid: str | None = None):
        self.file, self.problem, self.line, self.guid = str(file), problem, line, guid
        where = f"{file}:{line}" if line is not None else str(file)
        super().__init__(f"{where}: {problem}")
