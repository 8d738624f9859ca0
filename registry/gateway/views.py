"""The REST tool gateway, in the shape of the monitoring tool API (reference/monitoring-tool-api.txt).

``GET /api/mcp/tools`` lists the catalog with the level each tool needs and whether the caller's
key may use it; ``POST /api/mcp/tools/{name}`` calls one with the JSON body as arguments and answers
``{"success": true, "data": ...}`` or ``{"error": "..."}``. API keys only; every authenticated
response carries the key's rate-limit headers; every call is audited.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import jsonschema
from channels.db import database_sync_to_async
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_guid import get_guid

from netops.logs import set_log_user
from registry import ratelimit
from registry.catalog import ToolCatalog
from registry.keys import Caller, authenticate
from registry.models import ToolCallAudit

logger = logging.getLogger(__name__)


def _json(body: dict[str, Any], status: int, rate: ratelimit.RateState | None = None) -> JsonResponse:
    response = JsonResponse(body, status=status)
    for name, value in (rate.headers() if rate else {}).items():
        response[name] = value
    return response


def _admit(header: str) -> tuple[Caller | None, ratelimit.RateState | None, ToolCatalog | Exception | None]:
    """Key check, rate count and catalog load in one trip to the database thread (each trip costs).

    A failure to load the catalog is returned, not raised, so the answer still carries the key's
    rate headers and the call is audited.
    """
    caller = authenticate(header, allow_tokens=False)
    if caller is None or caller.key_id is None:
        return None, None, None
    rate = ratelimit.hit(caller.key_id, caller.rate_limit or 1)
    if not rate.allowed:
        return caller, rate, None
    try:
        return caller, rate, ToolCatalog.load(context=caller.context)
    except Exception as exc:  # reported by the caller as a JSON 500
        return caller, rate, exc


Admitted = tuple[Caller | None, JsonResponse | None, ratelimit.RateState | None, ToolCatalog | None]


async def _caller(request: HttpRequest) -> Admitted:
    """Authenticate, count the request and load the catalog; an error response when any fails."""
    header = request.headers.get("Authorization", "")
    if not header:
        response = _json({"error": "authentication required: Authorization: Bearer nop_..."}, 401)
        response["WWW-Authenticate"] = "Bearer"
        return None, response, None, None
    try:
        caller, rate, catalog = await database_sync_to_async(_admit)(header)
    except Exception:  # the database is unavailable: still a JSON answer
        return None, _json(_internal_error("admitting a request"), 500), None, None
    if caller is None or rate is None:
        response = _json({"error": "invalid, expired or revoked API key"}, 401)
        response["WWW-Authenticate"] = "Bearer"
        return None, response, None, None
    set_log_user(caller.username)
    if not rate.allowed:
        limited = _json({"error": f"rate limit of {rate.limit} requests per hour exceeded"}, 429, rate)
        return caller, limited, rate, None
    if isinstance(catalog, Exception):
        try:
            raise catalog
        except Exception:
            return caller, _json(_internal_error("loading the tool catalog"), 500, rate), rate, None
    return caller, None, rate, catalog


@csrf_exempt
async def tools(request: HttpRequest) -> JsonResponse:
    """``GET /api/mcp/tools``."""
    if request.method != "GET":
        return _json({"error": "use GET"}, 405)
    caller, error, rate, catalog = await _caller(request)
    if error is not None or caller is None or catalog is None:
        assert error is not None
        return error
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
    return _json({"tools": listed, "your_permission": caller.level}, 200, rate)


@csrf_exempt
async def call(request: HttpRequest, name: str) -> JsonResponse:
    """``POST /api/mcp/tools/{name}``."""
    if request.method != "POST":
        return _json({"error": "use POST"}, 405)
    started = time.perf_counter()
    caller, error, rate, catalog = await _caller(request)
    if error is not None or caller is None or catalog is None:
        assert error is not None
        if caller is not None:
            await _audit(caller, name, request.body, error.status_code, started)
        return error
    try:
        status, body = await _call(catalog, caller, name, request.body)
    except Exception:  # anything unexpected in the gateway itself: JSON, audited, findable in the logs
        status, body = 500, _internal_error(f"calling {name}")
    await _audit(caller, name, request.body, status, started)
    return _json(body, status, rate)


async def _call(catalog: ToolCatalog, caller: Caller, name: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    try:
        arguments = json.loads(raw or b"{}")
    except ValueError:
        return 400, {"error": "the body is not valid JSON"}
    if not isinstance(arguments, dict):
        return 400, {"error": "the body must be a JSON object of the tool's arguments"}
    if name not in catalog:
        return 404, {"error": f"no tool named {name!r}"}
    tool = catalog.get(name)
    if not caller.may_call(tool.permission):
        return 403, {"error": f"{name} needs the {tool.permission} level; this key has {caller.level}"}
    problem = _invalid(arguments, tool.input_schema)
    if problem:
        return 400, {"error": problem}
    outcome = await catalog.call(name, arguments)
    if not outcome.is_error:
        data = outcome.structured_content
        if isinstance(data, dict) and set(data) == {"result"}:
            data = data["result"]
        return 200, {"success": True, "data": data if data is not None else outcome.text()}
    message = outcome.text()
    status = outcome.status or (504 if "did not answer within" in message else 502)
    return status, {"error": message}


def _internal_error(doing: str) -> dict[str, Any]:
    request_id = get_guid()
    logger.exception("gateway failed while %s", doing)
    return {"error": f"internal error; quote request id {request_id}", "request_id": request_id}


def arguments_digest(raw: bytes | dict[str, Any]) -> str:
    """SHA-256 of the arguments as canonical JSON (the same for the gateway and /mcp), never the arguments."""
    value: Any = raw
    if isinstance(raw, bytes):
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
            return hashlib.sha256(raw).hexdigest()
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _invalid(arguments: dict[str, Any], schema: dict[str, Any]) -> str:
    """The first way ``arguments`` break the tool's input schema, naming the field; "" when valid."""
    try:
        validator = jsonschema.Draft202012Validator(schema or {"type": "object"})
    except jsonschema.SchemaError:
        return ""  # a server's broken schema: let the tool judge its arguments
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    if not errors:
        return ""
    first = errors[0]
    where = ".".join(str(p) for p in first.path)
    if first.validator == "required":
        return f"{first.message}"
    if first.validator == "additionalProperties":
        return f"unknown argument: {first.message}"
    return f"{where}: {first.message}" if where else first.message


async def _audit(caller: Caller, tool: str, raw: bytes, status: int, started: float) -> None:
    await database_sync_to_async(ToolCallAudit.objects.create)(
        via="gateway",
        api_key_id=caller.key_id,
        user_id=caller.context.user_id,
        caller=caller.username[:200],
        tool=tool[:100],
        arguments_digest=arguments_digest(raw),
        status=status,
        duration_ms=(time.perf_counter() - started) * 1000,
        request_id=get_guid() or "",
    )
