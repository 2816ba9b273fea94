"""Errors that are the user's to fix: bad input files (`InputError`) and bad settings
(`ConfigError`). The command line turns these two, and only these, into one `error:` line and
exit code 2; any other exception is a bug and keeps its traceback.

This module imports nothing else from img2prompt, so every layer can raise these."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input in a user's file. `str()` reads like a compiler message: `path:line: message`."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}"


class ConfigError(ValueError):
    """A bad setting: an option value, a recipe field, a device, a combination of options.
    (A ValueError, so callers that caught ValueError before still catch it.)"""


class ErrorLog:
    """`--on-error`: raise at the first bad row (`fail`), or record it and go on (`skip`).

    Skipped rows are counted per reason so the summary and the manifest can say what was left out.
    """

    def __init__(self, policy: str = "fail", keep_examples: int = 20) -> None:
        if policy not in ("fail", "skip"):
            raise ConfigError(f"on_error must be 'fail' or 'skip', got {policy!r}")
        self.policy = policy
        self.count = 0
        self.examples: list[str] = []
        self._keep = keep_examples

    def report(self, error: InputError) -> None:
        if self.policy == "fail":
            raise error
        self.count += 1
        if len(self.examples) < self._keep:
            self.examples.append(str(error))
