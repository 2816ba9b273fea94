"""Image files -> decoded images, turned into model input, in input order, by worker threads.

Decoding and resizing run in threads while the model works (Pillow releases the GIL), with a
bounded read-ahead so memory stays flat on huge folders, and a shared pixel budget so that huge
files are not decoded several at once (`data.images.PixelBudget`). A file that cannot be used is
an `InputError` in the stream, never an exception: one bad file never stops a job.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from img2prompt.data.images import PixelBudget, detached, load_image
from img2prompt.errors import InputError

DECODE_BUDGET_PIXELS = 64_000_000
"""Pixels the decoding threads may hold at full size at once, so a huge image decodes alone
(docs/predict.md)."""


class ImageReader:
    """Reads image files and hands each decoded RGB image to `prepare` (the TTA views) in the
    same worker thread, so the resize runs off the model's thread too."""

    def __init__(
        self,
        prepare: Callable[[Image.Image], np.ndarray],
        *,
        fit: int,
        max_pixels: int,
        workers: int = -1,
        read_ahead: int = 64,
    ) -> None:
        self.prepare = prepare
        self.fit = fit
        """The short side `prepare` needs: huge files are decoded reduced toward it."""
        self.max_pixels = max_pixels
        self.workers = min(4, os.cpu_count() or 1) if workers < 0 else workers
        self.read_ahead = read_ahead + self.workers  # bounded: memory stays flat
        self.budget = PixelBudget(DECODE_BUDGET_PIXELS)

    def load(self, path: str | Path) -> np.ndarray | InputError:
        """One image file, decoded and prepared, or the error saying why it cannot be used
        (`detached`: the read-ahead queue may hold a hundred of them)."""
        try:
            return self.prepare(load_image(path, self.max_pixels, self.fit, self.budget))
        except InputError as e:
            return detached(e)

    def read(self, paths: Sequence[str | Path]) -> Iterator[tuple[str, np.ndarray | InputError]]:
        """(path, prepared image or error) in input order, decoded ahead by worker threads."""
        if self.workers == 0:
            for path in paths:
                yield str(path), self.load(path)
            return
        queue = iter(paths)
        pending: deque = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="img2prompt-decode") as pool:

            def submit_next() -> None:
                path = next(queue, None)
                if path is not None:
                    pending.append((str(path), pool.submit(self.load, path)))

            for _ in range(self.read_ahead):
                submit_next()
            while pending:
                name, future = pending.popleft()
                submit_next()
                yield name, future.result()
