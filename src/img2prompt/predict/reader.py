"""Image files -> model input views, in input order, decoded ahead by worker threads.

Decoding and resizing run in threads while the model works (Pillow releases the GIL), with a
bounded read-ahead so memory stays flat on huge folders, and a shared pixel budget so that huge
files are not decoded several at once (`data.images.PixelBudget`). A file that cannot be used is
an `InputError` in the stream, never an exception: one bad file never stops a job.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from img2prompt.data.images import PixelBudget, load_image
from img2prompt.errors import InputError
from img2prompt.predict.tta import View, render_views

DECODE_BUDGET_PIXELS = 64_000_000
"""Pixels that the decoding threads may hold at full size at once: with 4 threads, four 80-Mpx
strips once took 5.5 GB together; now a huge image decodes alone."""


class ImageReader:
    """Reads image files as the (V, H, W, 3) uint8 views a model's predictor batches."""

    def __init__(
        self, views: list[View], max_pixels: int, workers: int = -1, read_ahead: int = 64
    ) -> None:
        self.views = views
        self.max_pixels = max_pixels
        self.workers = min(4, os.cpu_count() or 1) if workers < 0 else workers
        self.read_ahead = read_ahead + self.workers  # bounded: memory stays flat
        self.budget = PixelBudget(DECODE_BUDGET_PIXELS)
        self.fit = max(view.preprocess.resize_to for view in views)
        """The short side the views need: huge files are decoded reduced toward it."""

    def load_views(self, path: str | Path) -> np.ndarray | InputError:
        """(V, H, W, 3) uint8 views of one image file, or the error saying why it cannot be
        used."""
        try:
            image = load_image(path, self.max_pixels, self.fit, self.budget)
            return render_views(image, self.views)
        except InputError as e:
            return e

    def read(self, paths: Sequence[str | Path]) -> Iterator[tuple[str, np.ndarray | InputError]]:
        """(path, views or error) in input order, decoded ahead by worker threads."""
        if self.workers == 0:
            for path in paths:
                yield str(path), self.load_views(path)
            return
        queue = iter(paths)
        pending: deque = deque()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="img2prompt-decode") as pool:

            def submit_next() -> None:
                path = next(queue, None)
                if path is not None:
                    pending.append((str(path), pool.submit(self.load_views, path)))

            for _ in range(self.read_ahead):
                submit_next()
            while pending:
                name, future = pending.popleft()
                submit_next()
                yield name, future.result()
