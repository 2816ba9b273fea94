"""The one thread that runs the model for the web app, and the queue that batches uploads."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from fastapi import HTTPException

from img2prompt.app.configs import ServeLimits
from img2prompt.describer import Description
from img2prompt.errors import InputError


@dataclass
class _Job:
    name: str
    data: bytes
    future: asyncio.Future


class UploadDescriber(Protocol):
    """What the app needs of a describer: an `img2prompt.describer.Describer`, or a stand-in in
    tests."""

    model_name: str
    bank_name: str

    @property
    def mode(self) -> str: ...

    @property
    def bank_entries(self) -> int: ...

    def describe_uploads(
        self, uploads: list[tuple[str, bytes]], max_pixels: int
    ) -> list[Description | InputError]: ...


@dataclass
class ModelWorker:
    """One thread that runs the describer; jobs that queue up while it works form the next
    batch (up to `max_batch`). `max_pending` bounds the queue."""

    describer: UploadDescriber
    limits: ServeLimits = field(default_factory=ServeLimits)
    described: int = 0
    _queue: asyncio.Queue | None = None
    _task: asyncio.Task | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _executor: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="img2prompt-model")
    )

    @property
    def pending(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="img2prompt-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = self._queue = self._loop = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def describe(self, name: str, data: bytes) -> Description:
        """A `Description`, or raises the `InputError` that says why the image is unreadable."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None:
            # Not started on this loop (an app used without its lifespan): no batching.
            result = (await loop.run_in_executor(self._executor, self._work, [(name, data)]))[0]
        else:
            result = await self._enqueue(loop, name, data)
        if isinstance(result, Exception):
            raise result
        return result

    async def _enqueue(self, loop: asyncio.AbstractEventLoop, name: str, data: bytes):
        """Wait in the queue for the batch this upload joins; 503 when the queue is full."""
        assert self._queue is not None
        if self._queue.qsize() >= self.limits.max_pending:
            raise HTTPException(503, "busy: too many images waiting; try again shortly")
        job = _Job(name, data, loop.create_future())
        self._queue.put_nowait(job)
        return await job.future

    def _work(self, uploads: list[tuple[str, bytes]]) -> list:
        results = self.describer.describe_uploads(uploads, max_pixels=self.limits.max_pixels)
        self.described += sum(not isinstance(r, Exception) for r in results)
        return results

    async def _run(self) -> None:
        while True:
            jobs = await self._next_batch()
            if jobs:
                await self._describe_batch(jobs)

    async def _next_batch(self) -> list[_Job]:
        """The first waiting job and those queued behind it, up to `max_batch`, less the ones
        whose clients left."""
        assert self._queue is not None
        jobs = [await self._queue.get()]
        while len(jobs) < self.limits.max_batch and not self._queue.empty():
            jobs.append(self._queue.get_nowait())
        return [job for job in jobs if not job.future.done()]

    async def _describe_batch(self, jobs: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        try:
            uploads = [(job.name, job.data) for job in jobs]
            results = await loop.run_in_executor(self._executor, self._work, uploads)
        except asyncio.CancelledError:
            for job in jobs:
                job.future.cancel()
            raise
        except Exception as e:  # a bug or an exhausted machine: 500 (logged), keep serving
            results = [e] * len(jobs)
        for job, result in zip(jobs, results, strict=True):
            if not job.future.done():
                job.future.set_result(result)
