"""Structured logging helpers: who is asking, and a last guard that keeps secrets out of logs.

The request id comes from django-guid (header ``X-Request-ID`` or a new one per request). This
module adds the user and an API key id through a context variable, so every JSON line written while
serving a request names its caller, including lines from services deep below the view.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from netops.metrics import observe_request
from netops.redaction import process_secrets, redactor_for
from netops.redaction import register_secret_value as register_secret_value

_current_user: ContextVar[str] = ContextVar("netops_user", default="-")


def set_log_user(identity: str) -> None:
    """Name the caller (user name or ``key:<id>``) for the log lines of the current context."""
    _current_user.set(identity)


class RequestContextFilter(logging.Filter):
    """Adds ``user`` to every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "user"):
            record.user = _current_user.get()
        return True


def redact(text: str) -> str:
    """``text`` with every secret this process holds replaced by ``[redacted]``, in every encoded form.

    The secret registry and the matching live in :mod:`netops.redaction` (Django-free);
    ``register_secret_value`` is re-exported here for :mod:`netops.secrets`.
    """
    return redactor_for().redact(text) if text else text


_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class RedactSecretsFilter(logging.Filter):
    """Masks every resolved secret value in the message, the ``extra`` fields and exception text.

    Defence in depth: code never logs secrets on purpose, but an exception from an HTTP library
    may quote a header, and a remote server's error text may echo our request. The record is
    rewritten before any handler formats it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not process_secrets():
            return True
        redactor = redactor_for()
        message = record.getMessage()
        redacted = redactor.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRIBUTES and isinstance(value, str | dict | list):
                setattr(record, name, redactor.redact_data(value))
        if record.exc_info and record.exc_info[1] is not None:
            import traceback

            text = "".join(traceback.format_exception(*record.exc_info))
            cleaned = redactor.redact(text)
            if cleaned != text:
                record.exc_info = None
                record.exc_text = cleaned
        return True


access_logger = logging.getLogger("netops.access")


def _log_access(request: HttpRequest, response: HttpResponse, started: float) -> None:
    seconds = time.perf_counter() - started
    observe_request(request, response.status_code, seconds)
    access_logger.info(
        "%s %s %s",
        request.method,
        request.path,
        response.status_code,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2),
        },
    )


class RequestContextMiddleware:
    """Names the user for log lines and writes one JSON access line per request (sync or async).

    daphne's own access log is plain text without the request id, so netops starts daphne with
    ``-v 0`` and logs requests here instead.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    @staticmethod
    def _remember(user: Any) -> None:
        set_log_user(user.get_username() if user is not None and user.is_authenticated else "anonymous")

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.is_async:
            return self._acall(request)
        started = time.perf_counter()
        self._remember(getattr(request, "user", None))
        response: HttpResponse = self.get_response(request)
        _log_access(request, response, started)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        # request.user would query the session table synchronously: use the async accessor.
        self._remember(await request.auser() if hasattr(request, "auser") else None)
        response: HttpResponse = await self.get_response(request)
        _log_access(request, response, started)
        return response
