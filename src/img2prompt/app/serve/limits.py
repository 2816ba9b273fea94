"""ASGI middleware that bounds a request's body: 413 by its header, and while it streams."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse

MULTIPART_SLACK = 64 * 1024
"""Room for multipart boundaries and part headers on top of the file itself."""


class _Rejected(HTTPException):
    pass


class UploadLimit:
    """ASGI middleware: 413 for bodies over `max_bytes`, by header and while streaming."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refuse_by_header(scope)
        if refusal is not None:
            await _send_json(send, *refusal)
            return
        await self._stream_limited(scope, receive, send)

    def _refuse_by_header(self, scope) -> tuple[int, str] | None:
        """(status, detail) when `Content-Length` alone rules the request out, else None."""
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is None:
            return None
        try:
            too_big = int(declared) > self.max_bytes
        except ValueError:
            return 400, "Content-Length is not a number"
        return (413, self._message()) if too_big else None

    async def _stream_limited(self, scope, receive, send) -> None:
        """Run the app, cutting the body off with 413 once it streams past the limit."""
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
