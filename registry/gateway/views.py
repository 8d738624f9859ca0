"""The REST tool gateway, in the shape of the monitoring tool API (reference/monitoring-tool-api.txt).

``GET /api/mcp/tools`` lists the catalog with the level each tool needs and whether the caller's
key may use it; ``POST /api/mcp/tools/{name}`` calls one with the JSON body as arguments and answers
``{"success": true, "data": ...}`` or ``{"error": "..."}``. API keys only; every authenticated
response carries the key's rate-limit headers; every call is audited.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from channels.db import database_sync_to_async
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_guid import get_guid

from netops.errors import InvalidInput
from netops.input_guard import check_text, loads_json
from netops.logs import set_log_user
from registry import tool_access
from registry.catalog import ToolCallOutcome, ToolCatalog, result_limit
from registry.keys import Caller
from registry.tool_access import Admission
from registry.validation import ArgumentsInvalid, validate_arguments_async

logger = logging.getLogger(__name__)


def _json(body: dict[str, Any], status: int, headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _admit(
    header: str, request_id: str, client_address: str | None
) -> tuple[Admission, ToolCatalog | Exception]:
    """Admission (key, rate count) and catalog load in one trip to the database thread (each trip costs).

    A refusal is raised (typed, :mod:`registry.tool_access`); a failure to load the catalog is
    returned, not raised, so the answer still carries the key's rate headers and the call is audited.
    """
    admission = tool_access.admit_sync(
        header, via="gateway", request_id=request_id, client_address=client_address
    )
    try:
        return admission, ToolCatalog.load(context=admission.caller.context)
    except Exception as exc:  # reported by the caller as a JSON 500
        return admission, exc


Admitted = tuple[Admission | None, JsonResponse | None, ToolCatalog | None, tool_access.AccessRefused | None]


async def _caller(request: HttpRequest) -> Admitted:
    """Admit the request and load the catalog; an error response (and the refusal) when any fails."""
    header = request.headers.get("Authorization", "")
    try:
        if not header:  # refused without a trip to the database thread
            raise tool_access.Unauthenticated("authentication required: Authorization: Bearer nop_...")
        admission, catalog = await database_sync_to_async(_admit)(
            header, get_guid() or "", request.META.get("REMOTE_ADDR")
        )
    except tool_access.AccessRefused as refused:  # the status and headers come from the refusal's type
        return None, _json({"error": refused.message}, refused.status_code, refused.headers()), None, refused
    except Exception:  # the database is unavailable: still a JSON answer
        return None, _json(_internal_error("admitting a request"), 500), None, None
    set_log_user(admission.caller.username)
    if isinstance(catalog, Exception):
        try:
            raise catalog
        except Exception:
            error = _json(_internal_error("loading the tool catalog"), 500, admission.headers())
            return admission, error, None, None
    return admission, None, catalog, None


@csrf_exempt
async def tools(request: HttpRequest) -> JsonResponse:
    """``GET /api/mcp/tools``."""
    if request.method != "GET":
        return _json({"error": "use GET"}, 405)
    admission, error, catalog, _ = await _caller(request)
    if error is not None or admission is None or catalog is None:
        assert error is not None
        return error
    caller = admission.caller
    listed = [
        {
            "name": tool.name,
            "description": tool.description,
            "permission_required": tool.permission,
            "available": caller.may_call(tool.permission),
            "input_schema": tool.input_schema,
            "source": tool.source,
        }
        for tool in catalog.tools()
    ]
    return _json({"tools": listed, "your_permission": caller.level}, 200, admission.headers())


@csrf_exempt
async def call(request: HttpRequest, name: str) -> JsonResponse:
    """``POST /api/mcp/tools/{name}``."""
    if request.method != "POST":
        return _json({"error": "use POST"}, 405)
    started = time.perf_counter()
    admission, error, catalog, refused = await _caller(request)
    if error is not None or admission is None or catalog is None:
        assert error is not None
        audited = admission if admission is not None else refused
        if audited is not None:  # a refusal is audited only when the key was good
            await tool_access.audit(
                audited,
                tool=name,
                arguments=request.body,
                status=error.status_code,
                via="gateway",
                request_id=get_guid() or "",
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        return error
    retry_after: str | None = None
    try:
        status, body, retry_after = await _call(catalog, admission.caller, name, request.body)
    except Exception:  # anything unexpected in the gateway itself: JSON, audited, findable in the logs
        status, body = 500, _internal_error(f"calling {name}")
    await tool_access.audit(admission, tool=name, arguments=request.body, status=status)
    response = _json(body, status, admission.headers())
    if status == 429 and retry_after:  # the upstream server's own limit: its Retry-After wins
        response["Retry-After"] = retry_after
    return response


async def _call(
    catalog: ToolCatalog, caller: Caller, name: str, raw: bytes
) -> tuple[int, dict[str, Any], str | None]:
    status, body, outcome = await _call_outcome(catalog, caller, name, raw)
    return status, body, outcome.retry_after if outcome is not None else None


async def _call_outcome(
    catalog: ToolCatalog, caller: Caller, name: str, raw: bytes
) -> tuple[int, dict[str, Any], ToolCallOutcome | None]:
    try:
        check_text(name, "name")
        arguments = loads_json(raw or b"{}")
    except InvalidInput as exc:
        return 400, {"error": str(exc)}, None
    if not isinstance(arguments, dict):
        return 400, {"error": "the body must be a JSON object of the tool's arguments"}, None
    if name not in catalog:
        return 404, {"error": f"no tool named {name!r}"}, None
    tool = catalog.get(name)
    if not caller.may_call(tool.permission):
        return 403, {"error": f"{name} needs the {tool.permission} level; this key has {caller.level}"}, None
    try:  # in the validation threads, bounded in time: a hostile schema never stalls this loop
        await validate_arguments_async(tool.input_schema, arguments)
    except ArgumentsInvalid as exc:
        return 400, {"error": str(exc)}, None
    outcome = await catalog.call(name, arguments)
    status, response = call_response(outcome)
    return status, response, outcome


def call_response(outcome: ToolCallOutcome) -> tuple[int, dict[str, Any]]:
    """The HTTP status and body for one call's outcome (documented in the README's gateway section).

    - success: 200 ``{"success": true, "data": ..., "content": [...]}`` (``structured_content`` too
      when the tool sent it): ``data`` is the reference API's value (structured result or text),
      ``content`` every item (text, image, audio, resource, resource_link);
    - the tool's own ``isError``: 422 ``{"error": ..., "tool_error": true, "content": [...]}``;
    - the server failed: ``{"error": ...}`` with 502 (unreachable, refused credentials, a JSON-RPC
      error, which adds ``upstream_error``), 504 (no answer in time) or 429 (the server's own rate
      limit; its ``Retry-After`` is passed on by :func:`call`).

    The status comes from the outcome's typed fields, never from its words.
    """
    if not outcome.is_error:
        data = outcome.structured_content
        if isinstance(data, dict) and set(data) == {"result"}:
            data = data["result"]
        content = outcome.content
        if data is None:
            data = outcome.text()
            content = _within_budget(content, result_limit() - len(data))
        body: dict[str, Any] = {"success": True, "data": data, "content": content}
        if outcome.structured_content is not None:
            body["structured_content"] = outcome.structured_content
        return 200, body
    message = outcome.text()
    if outcome.status is None:  # the tool ran and reported its own failure
        return 422, {"error": message, "tool_error": True, "content": outcome.content}
    body = {"error": message}
    if outcome.rpc_error is not None:
        body["upstream_error"] = outcome.rpc_error
    return outcome.status, body


def _within_budget(content: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """``content`` whose text items, already in ``data``, share what is left of the result cap.

    ``data`` is the joined text, so without this a capped 200,000-character result would be sent
    twice; an item past the budget keeps its place with a note where its text would be.
    """
    kept: list[dict[str, Any]] = []
    for item in content:
        text = item.get("text") if item.get("type") == "text" else None
        if isinstance(text, str) and len(text) > max(budget, 0):
            item = {**item, "text": f"[{len(text):,} characters, sent in data]"}
        elif isinstance(text, str):
            budget -= len(text)
        kept.append(item)
    return kept


def _internal_error(doing: str) -> dict[str, Any]:
    request_id = get_guid()
    logger.exception("gateway failed while %s", doing)
    return {"error": f"internal error; quote request id {request_id}", "request_id": request_id}
