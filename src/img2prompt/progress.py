"""Progress bars (rich) for long work: count, rate, elapsed and time left, on stderr."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

stderr = Console(stderr=True)


class _RateColumn(ProgressColumn):
    """Items per second (rich's own speed column counts bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.1f}/s" if task.speed else "", style="cyan")


class _Bar:
    def __init__(self, progress: Progress | None = None, task: int | None = None) -> None:
        self._progress, self._task = progress, task

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)

    def describe(self, description: str) -> None:
        """Say what the work is doing now (a one-off pause, say), in place of the label."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description)


@contextlib.contextmanager
def progress_bar(description: str, total: float | None, enabled: bool = True) -> Iterator[_Bar]:
    """A bar on stderr; a silent stand-in when disabled or when there is nothing to do."""
    if not enabled or not total:
        yield _Bar()
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr,
    ) as progress:
        yield _Bar(progress, progress.add_task(description, total=total))


@dataclass(frozen=True, kw_only=True)
class EpochSummary:
    """A finished training epoch, as `train` reports it to its `on_epoch` listener."""

    label: str  # the fold and phase ("fold 1 ft")
    epoch: int  # 1-based
    epochs: int  # of the phase
    loss: float  # mean training loss
    cosine: float | None  # validation cosine; None without validation rows
    improved: bool  # the best epoch yet
    images_per_s: float


def print_epoch(summary: EpochSummary) -> None:
    """`train`'s line at the end of each epoch (the loop calls it through `on_epoch`)."""
    s = summary
    val = "" if s.cosine is None else f"val cosine {s.cosine:.4f}"
    val += " (best)" if s.improved else ""
    stderr.print(
        f"{s.label} epoch {s.epoch}/{s.epochs}  loss {s.loss:.4f}  {val}  "
        f"{s.images_per_s:,.1f} img/s",
        highlight=False,
    )
