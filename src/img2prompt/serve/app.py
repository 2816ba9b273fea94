"""The web app: `GET /` (a page to drop an image on), `POST /api/describe`, `GET /api/health`.

What keeps it standing on bad input and under load:
- request bodies are limited twice: a `Content-Length` over the limit is answered 413 before a
  byte is read, and a body that streams past the limit (chunked, or a lying header) is cut off
  with 413 as soon as it does;
- the image header is read first: bytes in no accepted format get 415, a header announcing more
  pixels than `max_pixels` gets 400 without decoding anything (the decompression-bomb guard);
- the model and the decoder run on one worker thread, never on the event loop; requests that
  arrive while it is busy wait in a bounded queue and are described together in one batch (a
  batch costs far less than its images one by one), and past `max_pending` waiting requests the
  server answers 503 instead of piling up memory;
- anything unexpected in the model is logged and answered 500; the worker keeps going;
- the prompt a file carries (SD front ends' metadata) is read on a thread off the event loop,
  capped, and sent back as JSON text; the page shows it with `textContent`, never as HTML.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, Field

from img2prompt.config import ServeLimits
from img2prompt.data.images import NotAnImage, image_header
from img2prompt.describer import Description, with_metadata
from img2prompt.errors import InputError
from img2prompt.metadata import read_metadata

log = logging.getLogger("img2prompt.serve")

STATIC = Path(__file__).resolve().parent / "static"
MULTIPART_SLACK = 64 * 1024
"""Room for multipart boundaries and part headers on top of the file itself."""


class Neighbor(BaseModel):
    text: str
    cosine: float


class ImageInfo(BaseModel):
    name: str
    format: str
    width: int
    height: int
    bytes: int


class NearestPrompt(BaseModel):
    prompt: str
    clip_cosine: float


class DescribeResponse(BaseModel):
    prompt: str = Field(
        description="The prompt embedded in the file where it carries one (`source` is "
        "`metadata`), else the readable prompt decoded from the predicted embedding."
    )
    source: Literal["metadata", "model"] = Field(description="Where `prompt` comes from.")
    model_prompt: str = Field(
        description="The model's own readable prompt (the same as `prompt` when `source` is "
        "`model`; beside an embedded prompt, for comparison)."
    )
    negative_prompt: str | None = Field(
        default=None, description="The negative prompt embedded in the file, if any."
    )
    generator: str | None = Field(
        default=None, description="The front end that wrote the metadata (AUTOMATIC1111, ...)."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Embedded settings: model, model_hash, sampler, steps, cfg_scale, seed, size.",
    )
    metadata_error: str | None = Field(
        default=None, description="Why metadata the file carries could not be read, if so."
    )
    match: float = Field(
        description="Cosine between `model_prompt`'s own MiniLM embedding and `embedding`: how "
        "well the words say the prediction, not how close it is to the image's true prompt."
    )
    score: float = Field(description="Deprecated: the same value as `match`.")
    embedding: list[float] = Field(
        description="The predicted all-MiniLM-L6-v2 embedding of the prompt (unit length)."
    )
    neighbors: list[Neighbor] = Field(description="Nearest bank entries to the embedding.")
    phrases: list[str] = Field(description="The bank phrases the prompt is made of.")
    nearest_prompts: list[NearestPrompt] = Field(
        default_factory=list,
        description="Index models: the real prompts most CLIP-similar to the image.",
    )
    interrogation: str | None = Field(
        default=None, description="Index models: bank phrases chosen by CLIP similarity."
    )
    interrogation_match: float | None = Field(
        default=None, description="Cosine of the interrogation's MiniLM vector to `embedding`."
    )
    interrogation_score: float | None = Field(
        default=None, description="Deprecated: the same value as `interrogation_match`."
    )
    image: ImageInfo
    mode: str = Field(description="Decoding mode: fast or best.")
    seconds: float = Field(description="Time from the upload's arrival to this answer.")


class Health(BaseModel):
    status: str
    model: str
    bank: str
    bank_entries: int
    mode: str
    max_upload_mb: float
    max_pixels: int
    pending: int
    described: int


class _Rejected(HTTPException):
    pass


class UploadLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, by header and while streaming."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _send_json(send, 400, "Content-Length is not a number")
                return
            if too_big:
                await _send_json(send, 413, self._message())
                return
        received = 0
        started = False

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body parsing untouched.
                    raise _Rejected(413, self._message())
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _Rejected as e:  # raised outside a route (nothing has answered it yet)
            if not started:
                await _send_json(send, e.status_code, str(e.detail))

    def _message(self) -> str:
        mb = (self.max_bytes - MULTIPART_SLACK) / 2**20
        return f"upload too large: the limit is {mb:g} MB"


async def _send_json(send, status: int, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


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

    async def describe(self, name: str, data: bytes):
        """A `Description`, or raises the `InputError` that says why the image is unreadable."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._queue is None:
            # Not started on this loop (an app used without its lifespan): no batching.
            result = (await loop.run_in_executor(self._executor, self._work, [(name, data)]))[0]
        else:
            if self._queue.qsize() >= self.limits.max_pending:
                raise HTTPException(503, "busy: too many images waiting; try again shortly")
            job = _Job(name, data, loop.create_future())
            self._queue.put_nowait(job)
            result = await job.future
        if isinstance(result, Exception):
            raise result
        return result

    def _work(self, uploads: list[tuple[str, bytes]]) -> list:
        results = self.describer.describe_uploads(uploads, max_pixels=self.limits.max_pixels)
        self.described += sum(not isinstance(r, Exception) for r in results)
        return results

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            while len(jobs) < self.limits.max_batch and not self._queue.empty():
                jobs.append(self._queue.get_nowait())
            jobs = [job for job in jobs if not job.future.done()]  # clients that left
            if not jobs:
                continue
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


def create_app(
    describer: UploadDescriber,
    limits: ServeLimits | None = None,
    metadata: Literal["auto", "ignore"] = "auto",
    **overrides: float,
) -> FastAPI:
    """The web app over `describer` (`UploadDescriber`: a `Describer`, or a stand-in in tests).
    `limits` (config.ServeLimits, the one definition of the defaults), with any of its fields
    overridden by keyword (`create_app(d, max_megapixels=10)`). `metadata`: whether an upload's
    embedded prompt answers it (`auto`) unless the request says otherwise (`?metadata=ignore`)."""
    limits = dataclasses.replace(limits or ServeLimits(), **overrides)
    max_upload_mb, max_pixels = limits.max_upload_mb, limits.max_pixels
    max_bytes = int(max_upload_mb * 2**20)
    worker = ModelWorker(describer, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            worker.close()

    app = FastAPIOffline(
        title="img2prompt",
        summary="Recover the prompt behind a Stable Diffusion image.",
        description="Upload an image to `POST /api/describe` (multipart field `image`): the "
        "answer is the predicted all-MiniLM-L6-v2 prompt embedding, a readable prompt decoded "
        "from it, its match (how well the words say the embedding) and the nearest prompt-bank "
        "entries.",
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.add_middleware(UploadLimit, max_bytes=max_bytes + MULTIPART_SLACK)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/health", response_model=Health)
    async def health() -> Health:
        return Health(
            status="ok",
            model=describer.model_name,
            bank=describer.bank_name,
            bank_entries=describer.bank_entries,
            mode=describer.mode,
            max_upload_mb=max_upload_mb,
            max_pixels=max_pixels,
            pending=worker.pending,
            described=worker.described,
        )

    @app.post(
        "/api/describe",
        response_model=DescribeResponse,
        responses={
            400: {"description": "Unreadable image, or more pixels than the server accepts"},
            413: {"description": "Upload over the size limit"},
            415: {"description": "Not an image in an accepted format"},
            503: {"description": "Too many images waiting"},
        },
    )
    async def describe(
        image: Annotated[
            UploadFile | None, File(description="The image: PNG, JPEG, WebP, GIF, BMP, TIFF.")
        ] = None,
        metadata_use: Annotated[
            Literal["auto", "ignore"] | None,
            Query(
                alias="metadata",
                description="`auto`: a file that carries its prompt is answered with it; "
                "`ignore`: pixels only. Default: the server's --metadata.",
            ),
        ] = None,
    ) -> DescribeResponse:
        started = time.perf_counter()
        if image is None:
            raise HTTPException(400, "send the image as the multipart form field 'image'")
        data = await image.read()
        name = image.filename or "upload"
        if len(data) > max_bytes:
            raise HTTPException(413, f"upload too large: the limit is {max_upload_mb:g} MB")
        if not data:
            raise HTTPException(400, "empty upload")
        try:
            kind, width, height = image_header(data, name)
            if width * height > max_pixels:
                raise InputError(
                    name,
                    f"image is {width}x{height}, over this server's {max_pixels:,}-pixel limit",
                )
            embedded = None
            if (metadata_use or metadata) == "auto":
                embedded = await asyncio.to_thread(read_metadata, data, name)
            result = await worker.describe(name, data)
            if embedded is not None:
                result = with_metadata(result, embedded)
        except NotAnImage as e:
            raise HTTPException(415, f"{name}: {e.message}") from None
        except InputError as e:
            raise HTTPException(400, f"{name}: {e.message}") from None
        except HTTPException:
            raise
        except Exception:
            log.exception("describing %s failed", name)
            raise HTTPException(
                500, "the model failed on this image (see the server log)"
            ) from None
        meta = result.metadata
        return DescribeResponse(
            prompt=result.prompt,
            source=result.source,
            model_prompt=result.model_prompt,
            negative_prompt=meta.negative_prompt if meta else None,
            generator=meta.generator if meta else None,
            settings=meta.settings if meta else {},
            metadata_error=meta.error if meta else None,
            match=result.match,
            score=result.match,
            embedding=[float(x) for x in result.embedding],
            neighbors=[Neighbor(text=t, cosine=c) for t, c in result.neighbors],
            phrases=result.phrases,
            nearest_prompts=[
                NearestPrompt(prompt=t, clip_cosine=c) for t, c in result.nearest_prompts
            ],
            interrogation=result.interrogation or None,
            interrogation_match=result.interrogation_match,
            interrogation_score=result.interrogation_match,
            image=ImageInfo(name=name, format=kind, width=width, height=height, bytes=len(data)),
            mode=describer.mode,
            seconds=time.perf_counter() - started,
        )

    return app
