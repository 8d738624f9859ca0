"""Refuse input netops cannot take where it enters, with a 400 that names the place and the problem.

Three faces share the rules of :func:`check_text` (no NUL, no lone surrogate) and of :func:`loads_json`
(valid JSON, at most :data:`MAX_JSON_DEPTH` levels deep):

- :class:`netops.parsers.StrictJSONParser`, DRF's JSON parser for every REST view (``DEFAULT_PARSER_CLASSES``);
- :func:`loads_json` for the views and consumers that read JSON themselves (the tool gateway,
  ``/api/chat/``, the chat websocket, ``/mcp``);
- :class:`InputGuardMiddleware` for the URL path, the query string and form posts (urlencoded and
  multipart, whose malformed bodies Django would otherwise answer with a bare 400 page).

Without them, a NUL reaches PostgreSQL (which refuses it in text and jsonb: a 500), a lone
surrogate fails when encoded as UTF-8 (a 500), and ``[`` x 100000 raises RecursionError (a 500).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.html import escape

from netops.errors import InvalidInput
from netops.text import json_path, path_of, text_problem, walk

MAX_JSON_DEPTH = 64  # far beyond any tool argument or API body netops takes; bounds every walk


def check_text(value: str, field: str) -> None:
    """Raise :class:`InvalidInput` naming ``field`` when ``value`` cannot be stored as text."""
    problem = text_problem(value)
    if problem is not None:
        raise InvalidInput(problem, field=field or "body")


def check_json(value: Any, *, what: str = "the body", max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise :class:`InvalidInput` for a decoded JSON value that is too deep or has unstorable text."""
    for depth, link, node, is_key in walk(value):
        if depth > max_depth:
            raise InvalidInput(f"{what} is nested more than {max_depth} levels deep")
        if isinstance(node, str):
            problem = text_problem(node)
            if problem is not None:
                where = json_path(path_of(link)) or None
                raise InvalidInput(
                    f"{what if where is None else 'a key' if is_key else 'text'} {problem}", field=where
                )


def loads_json(raw: bytes | str, *, what: str = "the body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that never raises anything but :class:`InvalidInput` (a 400)."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise InvalidInput(f"{what} is nested more than {max_depth} levels deep") from None
    except ValueError:  # also UnicodeDecodeError: bytes that are not UTF-8
        raise InvalidInput(f"{what} is not valid JSON") from None
    check_json(value, what=what, max_depth=max_depth)
    return value


# --- middleware ---------------------------------------------------------------------------------------

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _wants_json(request: HttpRequest) -> bool:
    path = request.path_info
    return path.startswith(("/api/", "/mcp", "/plugins/")) or "json" in request.headers.get("Accept", "")


def bad_request(request: HttpRequest, error: InvalidInput) -> HttpResponse:
    """The 400 for ``error``: JSON for API paths (``{"error", "errors"}``), a small HTML page otherwise."""
    if _wants_json(request):
        body: dict[str, Any] = {"error": str(error)}
        if error.field:
            body["errors"] = {error.field: [error.message]}
        return JsonResponse(body, status=400)
    page = (
        "<!doctype html><html><head><title>Bad request</title></head><body>"
        f"<h1>Bad request</h1><p>{escape(str(error))}</p></body></html>"
    )
    return HttpResponse(page, status=400, content_type="text/html; charset=utf-8")


def inspect_request(request: HttpRequest) -> None:
    """Raise :class:`InvalidInput` for a NUL in the path, the query string or a form post.

    Query strings and form bodies are decoded by Django with ``errors="replace"``, so a lone
    surrogate cannot appear in them; NUL (``%00``) can. A form body is parsed here (once: Django
    keeps the result), so a malformed multipart body is a 400 that says so.
    """
    check_text(request.path, "path")
    for name, values in request.GET.lists():
        check_text(name, "query string")
        for value in values:
            check_text(value, name)
    if request.method not in UNSAFE_METHODS:
        return
    content_type = request.content_type or ""
    if content_type not in FORM_TYPES:
        return
    try:
        form = request.POST
    except MultiPartParserError as exc:
        raise InvalidInput(f"the body could not be parsed as {content_type} ({exc})") from None
    except (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent) as exc:
        raise InvalidInput(f"the body was refused: {exc}") from None
    for name, values in form.lists():
        check_text(name, "body")
        for value in values:
            check_text(value, name)
    for name, files in request.FILES.lists():
        for upload in files:
            check_text(upload.name or "", name)


class InputGuardMiddleware:
    """Run :func:`inspect_request` before any view (and before CSRF reads the form): 400 on failure."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        try:
            inspect_request(request)
        except InvalidInput as exc:
            return bad_request(request, exc)
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        # Pure CPU on a body Django already holds in memory (or a spooled file): no thread hop needed.
        try:
            inspect_request(request)
        except InvalidInput as exc:
            return bad_request(request, exc)
        response: HttpResponse = await self.get_response(request)
        return response
