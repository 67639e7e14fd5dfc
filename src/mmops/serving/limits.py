"""A limit on the size of a request's body, enforced before anything parses it.

MLflow's scoring server (`mlflow models serve`) reads a whole body into memory and parses it
before the model sees a record, so the model's own limits (`serve:` in params.yaml) come too
late to bound memory; neither MLflow, uvicorn nor Starlette has a setting for it. uvicorn does
take its HTTP protocol as an import string, and reads each of its options from a `UVICORN_*`
variable, which `mlflow models serve` passes on to the uvicorn it starts. So:

    UVICORN_HTTP=mmops.serving.limits:BodyLimitedHTTP mlflow models serve -m ... --env-manager local

serves every request through `BodyLimit`, at most `MMOPS_SERVE_MAX_BODY_BYTES` bytes (default
64 MiB) a body: a larger one is answered 413, with MLflow's error shape, before the server reads
it (from its Content-Length) or as soon as that many bytes arrived (a chunked body).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from uvicorn.protocols.http.auto import AutoHTTPProtocol

MAX_BODY_VARIABLE = "MMOPS_SERVE_MAX_BODY_BYTES"
# 32 images at `serve.max_value_bytes` (2 MB, base64 included), with room for their texts
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def max_body_bytes(environ: Mapping[str, str] = os.environ) -> int:
    """The limit `MMOPS_SERVE_MAX_BODY_BYTES` sets (bytes), else the default; raises
    `ValueError` naming the variable when it is not a positive whole number."""
    raw = environ.get(MAX_BODY_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_MAX_BODY_BYTES
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{MAX_BODY_VARIABLE}={raw!r}: must be a whole number of bytes, at least 1")
    return limit


def _declared_length(scope: Scope) -> int | None:
    """The body size the Content-Length header announces; None when absent or unreadable (the
    bytes are counted as they come instead)."""
    for name, value in scope.get("headers", []):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimit:
    """ASGI middleware: an HTTP request whose body is over `max_bytes` is refused with 413 and
    never reaches `app`; any other is passed on whole, exactly as it came."""

    def __init__(self, app: App, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send, f"{declared} bytes")
            return
        # read it here, counting (MLflow would read it all anyway), then hand it on in one piece
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client hung up: nobody to answer
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(send, f"over {self.max_bytes} bytes")
                return
            more = message.get("more_body", False)
        body, handed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal handed
            if not handed:
                handed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: only a disconnect can come

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send, size: str) -> None:
        message = (f"the request body is {size}; at most {self.max_bytes} bytes are accepted "
                   f"({MAX_BODY_VARIABLE}): send fewer records per request")
        content = MlflowException(message, error_code=INVALID_PARAMETER_VALUE).serialize_as_json().encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(content)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": content})


class BodyLimitedHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]  (uvicorn's choice of parser)
    """uvicorn's own HTTP protocol, with its application behind `BodyLimit`. The limit is read
    when uvicorn imports this, at startup: a bad value stops the server, not each request."""

    max_bytes = max_body_bytes()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = BodyLimit(self.app, self.max_bytes)
