"""The service's error contract: `ApiError` and the handlers that give every failure the documented body.

Every error answer is `{"error": {"code", "message"[, "positions"]}}` (the codes: `schemas.ERROR_CODES`):
route handlers raise `ApiError`; the framework's own 404/405 and the like, a client that left and a bug get
the same body from the handlers that `add_error_handlers` installs.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .metrics import CLIENT_CLOSED

RETRY_AFTER_S = 1
DOCS_PATHS = ("/docs", "/redoc")
HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class ApiError(Exception):
    """A request the service answers with an error status and the documented error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        positions: list[int] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.positions = status, code, message, positions
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.positions is not None:
            error["positions"] = self.positions
        return JSONResponse({"error": error}, status_code=self.status, headers=self.headers)


async def api_error(request: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    # 404, 405 and the like: the documented error body instead of the framework's {"detail": ...}.
    code = HTTP_ERROR_CODES.get(exc.status_code, "http_error")
    message = {
        404: f"no such endpoint: {request.method} {request.url.path}.",
        405: f"{request.method} is not allowed on {request.url.path}.",
    }.get(exc.status_code, str(exc.detail))
    if exc.status_code == 404 and request.url.path in DOCS_PATHS:
        message += (
            " The interactive API pages are off: start the service with `serve --docs` for them (they load "
            "from a CDN), or read the API document at /openapi.json."
        )
    return ApiError(exc.status_code, code, message, headers=dict(exc.headers or {})).response()


async def client_left(request: Request, exc: ClientDisconnect) -> Response:
    # The client closed the connection before its body was read: nobody to answer, nothing went wrong here.
    # The status goes to the metrics and the access log only (499, as nginx counts it).
    return Response(status_code=CLIENT_CLOSED)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug. The server logs the traceback (the exception goes on to it); the client gets the error body.
    return ApiError(500, "internal_error", "internal error; the server logged the details.").response()


def add_error_handlers(app: FastAPI) -> None:
    """Install the handlers above on `app`: each failure answered with the documented error body.

    Args:
        app: the service's app.
    """
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, client_left)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, internal_error)
