"""The HTTP edge shared by the routes: NRAS-style error bodies, bounded bodies, callers.

Errors are answered as NRAS's ``x-nvidia-error-details`` object
``{"code", "httpStatus", "description", "message"}``. Library errors are mapped to status codes
here and only here (STYLE.md rule 6).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ccai._json import load_json
from ccai.errors import CollateralError, Error, EvidenceError, UsageError
from ccai.service._auth import ANONYMOUS, Caller

__all__ = ["ApiError", "caller", "error_response", "read_json", "status_for"]

#: code, HTTP status and short description of every error the service answers.
ERRORS: dict[str, tuple[int, int]] = {
    "INVALID_REQUEST": (4000, 400),
    "UNSUPPORTED_ARCH": (4001, 400),
    "TOO_MANY_DEVICES": (4002, 400),
    "INVALID_NONCE": (4003, 400),
    "UNAUTHORIZED": (4011, 401),
    "FORBIDDEN": (4030, 403),
    "POLICY_NOT_FOUND": (4040, 404),
    "REQUEST_TOO_LARGE": (4130, 413),
    "RATE_LIMITED": (4290, 429),
    "INTERNAL_ERROR": (5000, 500),
    "COLLATERAL_UNAVAILABLE": (5030, 503),
}


class ApiError(Exception):
    """An error answered with an NRAS-style body.

    Args:
        description: A key of :data:`ERRORS` (``INVALID_REQUEST`` …).
        message: One human sentence.
    """

    def __init__(self, description: str, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.description = description
        self.message = message
        self.headers = headers
        self.code, self.status = ERRORS[description]

    def body(self) -> dict[str, Any]:
        """The ``x-nvidia-error-details`` object."""
        return {
            "code": self.code,
            "httpStatus": self.status,
            "description": self.description,
            "message": self.message,
        }


def error_response(error: ApiError) -> JSONResponse:
    """The JSON response of an :class:`ApiError`."""
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def status_for(error: Error) -> ApiError:
    """Map a library error raised outside a verdict to an API error (collateral → 503)."""
    from ccai.service._service import PolicyNotFound

    if isinstance(error, CollateralError):
        return ApiError("COLLATERAL_UNAVAILABLE", f"collateral unavailable: {error.message}")
    if isinstance(error, PolicyNotFound):
        return ApiError("POLICY_NOT_FOUND", error.message)
    if isinstance(error, EvidenceError | UsageError):
        return ApiError("INVALID_REQUEST", error.message)
    return ApiError("INTERNAL_ERROR", "internal error")


async def read_json(request: Request, *, limit: int) -> tuple[Any, bytes]:
    """The request body as strict JSON (depth-limited, no duplicate keys), at most ``limit`` bytes.

    Raises:
        ApiError: too large (413) or not JSON (400).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError("REQUEST_TOO_LARGE", f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError("REQUEST_TOO_LARGE", f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    data = b"".join(chunks)
    try:
        return load_json(data, what="request body", max_depth=16, error=EvidenceError), data
    except EvidenceError as exc:
        raise ApiError("INVALID_REQUEST", exc.message) from None


async def caller(request: Request, *, admin: bool = False) -> Caller:
    """Authenticate the request's ``Authorization: Bearer`` key and apply the rate limit.

    Anonymous callers are let in only when the service runs with ``allow_anonymous`` (never for
    the admin API).

    Raises:
        ApiError: 401 (no or bad key), 403 (not admin), 429 (rate limit).
    """
    state = request.app.state
    header = request.headers.get("authorization")
    found: Caller | None = await state.auth.check(header)
    if found is None:
        if header is None and state.settings.allow_anonymous and not admin:
            found = Caller(key_id=ANONYMOUS, admin=False)
        else:
            raise ApiError(
                "UNAUTHORIZED",
                "a valid API key is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
    if admin and not found.admin:
        raise ApiError("FORBIDDEN", "this API key may not use the admin API")
    if not state.limiter.allow(found.key_id):
        raise ApiError("RATE_LIMITED", "rate limit exceeded for this API key", headers={"Retry-After": "1"})
    request.state.caller = found.key_id
    return found
