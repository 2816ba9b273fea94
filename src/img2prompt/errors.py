"""Errors that point at the user's input: the file, and the line or row when known."""

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


class ErrorLog:
    """`--on-error`: raise at the first bad row (`fail`), or record it and go on (`skip`).

    Skipped rows are counted per reason so the summary and the manifest can say what was left out.
    """

    def __init__(self, policy: str = "fail", keep_examples: int = 20) -> None:
        if policy not in ("fail", "skip"):
            raise ValueError(f"on_error must be 'fail' or 'skip', got {policy!r}")
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
