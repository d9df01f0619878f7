"""Refuse oversized bodies (413) and bodies of the wrong type (415) before any route reads them.

A plain ASGI middleware: it checks the headers, then counts the bytes as they arrive, so a client that lies
about (or omits) Content-Length still cannot make the API buffer more than the limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPART_PATHS = ("/v1/datasets",)
BODY_METHODS = {"POST", "PUT", "PATCH"}


FORM = "application/x-www-form-urlencoded"


class BodyLimits:
    """413 past `max_json_bytes` (JSON endpoints) or `max_upload_bytes` (uploads); 415 for a wrong type."""

    def __init__(self, app: ASGIApp, *, max_json_bytes: int, max_upload_bytes: int) -> None:
        self.app, self.max_json_bytes, self.max_upload_bytes = app, max_json_bytes, max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        upload = scope["path"].rstrip("/") in MULTIPART_PATHS
        limit = self.max_upload_bytes + 65536 if upload else self.max_json_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, f"request body larger than this endpoint's limit of {limit} bytes")
            return
        has_body = (declared not in (None, "0")) or "transfer-encoding" in headers
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        form = scope["path"].startswith("/ui/")  # the dashboard's HTML forms
        wanted = "multipart/form-data" if upload else FORM if form else "application/json"
        if has_body and media != wanted and not (wanted == "application/json" and media.endswith("+json")):
            await _answer(send, 415, f"content type must be {wanted}, not {media or 'missing'}")
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Pass the body through, counting; past the limit, end it and answer 413 instead of the route."""
        seen, too_large = 0, False

        async def counting_receive() -> Message:
            nonlocal seen, too_large
            if too_large:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                too_large = True
                return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: Message) -> None:
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start":
                await _answer(send, 413, f"request body larger than this endpoint's limit of {limit} bytes")

        await self.app(scope, counting_receive, guarded_send)


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
