"""The one error type of netops and the one DRF exception handler that formats every API error.

Services raise :class:`ApplicationError` (or a subclass); views, consumers and commands never
invent their own formats. API errors always look like ``{"error": "<readable message>"}``; for
invalid input the message names the field and ``errors`` carries the per-field details.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django_guid import get_guid
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    """An expected failure with a message fit to show to the user and an HTTP status."""

    status_code: int = 400
    code: str = "error"

    def __init__(self, message: str, status_code: int | None = None, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if status_code is not None:
            self.status_code = status_code

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class NotFoundError(ApplicationError):
    """The object asked for does not exist (or is not visible to the caller)."""

    status_code = 404
    code = "not_found"


class PermissionDeniedError(ApplicationError):
    """The caller may use the endpoint but lacks a permission this particular change needs.

    Model permissions are checked before a view runs; this is for rules that depend on the data
    (a secret reference, a stdio server), so the message names the field and the permission.
    """

    status_code = 403
    code = "permission_denied"


class ConflictError(ApplicationError):
    """The request is valid but the current state does not allow it."""

    status_code = 409
    code = "conflict"


class UpstreamError(ApplicationError):
    """A system netops depends on (MCP server, LLM, NetBox) failed."""

    status_code = 502
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    """A system netops depends on did not answer within its bounded wait."""

    status_code = 504
    code = "upstream_timeout"


def flatten_errors(detail: Any, prefix: str = "") -> list[str]:
    """Turn DRF's nested error detail into ``field: message`` lines, deepest field names joined."""
    if isinstance(detail, dict):
        lines: list[str] = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            lines += flatten_errors(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return lines
    if isinstance(detail, list):
        lines = []
        for index, item in enumerate(detail):
            nested = isinstance(item, dict | list)
            lines += flatten_errors(item, f"{prefix}[{index}]" if nested else prefix)
        return lines
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Format every API error as ``{"error": ...}`` (plus ``errors`` for field details)."""
    if isinstance(exc, ApplicationError):
        body: dict[str, Any] = {"error": str(exc)}
        if exc.field:
            body["errors"] = {exc.field: [exc.message]}
        return Response(body, status=exc.status_code)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        request_id = get_guid()
        logger.exception("unexpected error in API view", extra={"request_id_hint": request_id})
        return Response(
            {
                "error": "internal error; quote the request id to find it in the logs",
                "request_id": request_id,
            },
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"error": "; ".join(flatten_errors(exc.detail)), "errors": exc.detail}
    elif isinstance(response.data, dict) and "detail" in response.data:
        response.data = {"error": str(response.data["detail"])}
    return response


class InvalidInput(ApplicationError):
    """Input netops cannot take as it is (NUL, a lone surrogate, too deep or too big, unparsable).

    Always 400; ``field`` names where the problem is (a form field or a JSON path) when known.
    """

    status_code = 400
    code = "invalid_input"
