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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from img2prompt.app.configs import ServeLimits
from img2prompt.app.serve.limits import MULTIPART_SLACK, UploadLimit
from img2prompt.app.serve.schema import DescribeResponse, Health, ImageInfo
from img2prompt.app.serve.worker import ModelWorker, UploadDescriber
from img2prompt.data.images import NotAnImage, image_header
from img2prompt.describer import Description, with_metadata
from img2prompt.errors import InputError
from img2prompt.metadata import read_metadata
from img2prompt.metadata.use import UploadMetadataUse

log = logging.getLogger("img2prompt.app.serve")

STATIC = Path(__file__).resolve().parent / "static"

DESCRIBE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Unreadable image, or more pixels than the server accepts"},
    413: {"description": "Upload over the size limit"},
    415: {"description": "Not an image in an accepted format"},
    503: {"description": "Too many images waiting"},
}
"""`POST /api/describe`'s error answers, for the OpenAPI schema."""


def create_app(
    describer: UploadDescriber,
    limits: ServeLimits | None = None,
    metadata: UploadMetadataUse = "auto",
    **overrides: float,
) -> FastAPI:
    """The web app over `describer` (`UploadDescriber`: a `Describer`, or a stand-in in tests).
    `limits` (configs.ServeLimits, the one definition of the defaults), with any of its fields
    overridden by keyword (`create_app(d, max_megapixels=10)`). `metadata`: whether an upload's
    embedded prompt answers it (`auto`) unless the request says otherwise (`?metadata=ignore`)."""
    limits = dataclasses.replace(limits or ServeLimits(), **overrides)
    worker = ModelWorker(describer, limits)
    app = _new_app(worker)
    app.state.worker = worker
    max_bytes = int(limits.max_upload_mb * 2**20)
    app.add_middleware(UploadLimit, max_bytes=max_bytes + MULTIPART_SLACK)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_page(app)
    _add_health(app, describer, worker)
    _add_describe(app, Uploads(describer, worker, metadata))
    return app


def _new_app(worker: ModelWorker) -> FastAPI:
    """The FastAPI app, whose lifespan starts and stops `worker`; docs served offline."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            worker.close()

    return FastAPIOffline(
        title="img2prompt",
        summary="Recover the prompt behind a Stable Diffusion image.",
        description="Upload an image to `POST /api/describe` (multipart field `image`): the "
        "answer is the predicted all-MiniLM-L6-v2 prompt embedding, a readable prompt decoded "
        "from it, its match (how well the words say the embedding) and the nearest prompt-bank "
        "entries.",
        lifespan=lifespan,
    )


def _add_page(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def _add_health(app: FastAPI, describer: UploadDescriber, worker: ModelWorker) -> None:
    @app.get("/api/health", response_model=Health)
    async def health() -> Health:
        return Health(
            status="ok",
            model=describer.model_name,
            bank=describer.bank_name,
            bank_entries=describer.bank_entries,
            mode=describer.mode,
            max_upload_mb=worker.limits.max_upload_mb,
            max_pixels=worker.limits.max_pixels,
            pending=worker.pending,
            described=worker.described,
        )


def _add_describe(app: FastAPI, uploads: Uploads) -> None:
    @app.post("/api/describe", response_model=DescribeResponse, responses=DESCRIBE_ERRORS)
    async def describe(
        image: Annotated[
            UploadFile | None, File(description="The image: PNG, JPEG, WebP, GIF, BMP, TIFF.")
        ] = None,
        metadata_use: Annotated[
            UploadMetadataUse | None,
            Query(
                alias="metadata",
                description="`auto`: a file that carries its prompt is answered with it; "
                "`ignore`: pixels only. Default: the server's --metadata.",
            ),
        ] = None,
    ) -> DescribeResponse:
        return await uploads.answer(image, metadata_use)


@dataclass
class Uploads:
    """What `POST /api/describe` does with an upload: read it within the size limit, check its
    header before decoding, describe it on the worker, and answer with `DescribeResponse`."""

    describer: UploadDescriber
    worker: ModelWorker
    metadata: UploadMetadataUse = "auto"
    """The server's default; a request's `?metadata=` overrides it."""

    async def answer(
        self, image: UploadFile | None, metadata_use: UploadMetadataUse | None
    ) -> DescribeResponse:
        started = time.perf_counter()
        name, data = await self._read(image)
        with _http_errors(name):
            info = self._check_header(name, data)
            description = await self._describe(name, data, metadata_use or self.metadata)
        return DescribeResponse.model_validate(
            {
                **description.to_json(),
                "image": info,
                "mode": self.describer.mode,
                "seconds": time.perf_counter() - started,
            }
        )

    async def _read(self, image: UploadFile | None) -> tuple[str, bytes]:
        """The upload's name and bytes; 400 when missing or empty, 413 when over the limit."""
        if image is None:
            raise HTTPException(400, "send the image as the multipart form field 'image'")
        data = await image.read()
        max_upload_mb = self.worker.limits.max_upload_mb
        if len(data) > int(max_upload_mb * 2**20):
            raise HTTPException(413, f"upload too large: the limit is {max_upload_mb:g} MB")
        if not data:
            raise HTTPException(400, "empty upload")
        return image.filename or "upload", data

    def _check_header(self, name: str, data: bytes) -> ImageInfo:
        """The image's format and size from its header alone: the decompression-bomb guard."""
        kind, width, height = image_header(data, name)
        max_pixels = self.worker.limits.max_pixels
        if width * height > max_pixels:
            raise InputError(
                name, f"image is {width}x{height}, over this server's {max_pixels:,}-pixel limit"
            )
        return ImageInfo(name=name, format=kind, width=width, height=height, bytes=len(data))

    async def _describe(self, name: str, data: bytes, use: UploadMetadataUse) -> Description:
        """The worker's description, with the file's embedded prompt applied where `use` says."""
        embedded = None
        if use == "auto":  # read on a thread: a large file's metadata takes a while
            embedded = await asyncio.to_thread(read_metadata, data, name)
        description = await self.worker.describe(name, data)
        return description if embedded is None else with_metadata(description, embedded)


@contextlib.contextmanager
def _http_errors(name: str) -> Iterator[None]:
    """Unreadable uploads as 415/400 answers; anything unexpected logged and answered 500."""
    try:
        yield
    except NotAnImage as e:
        raise HTTPException(415, f"{name}: {e.message}") from None
    except InputError as e:
        raise HTTPException(400, f"{name}: {e.message}") from None
    except HTTPException:
        raise
    except Exception:
        log.exception("describing %s failed", name)
        raise HTTPException(500, "the model failed on this image (see the server log)") from None
