"""Chat REST API: ask the agent (JSON or server-sent events) and manage one's own conversations."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, permissions, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request

from chat import exports, runs, selectors, services
from chat.api.serializers import (
    ChatRequestSerializer,
    ChatResponseSerializer,
    ConversationDetailSerializer,
    ConversationSerializer,
    ToolCallSerializer,
)
from chat.models import Conversation, Message, MessageStatus
from netops.authentication import SessionAuthentication, TokenAuthentication
from netops.errors import ApplicationError, InvalidInput, flatten_errors
from netops.parsers import StrictJSONParser
from registry.models import LLMModel, MCPServer


def _error(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _drf_request(request: HttpRequest) -> Request:
    """The request as DRF sees it: token or session authentication, netops' JSON and form parsers.

    The parsers matter for sessions too: DRF's CSRF check reads the form through them (without any,
    every session POST was a 415).
    """
    return Request(
        request,
        parsers=[StrictJSONParser(), FormParser(), MultiPartParser()],
        authenticators=[TokenAuthentication(), SessionAuthentication()],
    )


def _authenticate(request: Request) -> AbstractBaseUser:
    """The caller (CSRF enforced for sessions); NotAuthenticated / PermissionDenied otherwise."""
    user = request.user
    if not user or not user.is_authenticated:
        raise exceptions.NotAuthenticated()
    return user


def _payload(request: Request) -> dict[str, Any]:
    """The body as a dict: JSON (checked by StrictJSONParser) or a form (``servers`` repeated)."""
    data = request.data
    if isinstance(data, QueryDict):
        form: dict[str, Any] = {key: data.get(key) for key in data if key != "servers"}
        if "servers" in data:
            form["servers"] = [name for name in data.getlist("servers") if name]
        return form
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    return data


def _admit(request: HttpRequest) -> tuple[AbstractBaseUser, dict[str, Any]]:
    """Authenticate, then parse: in a worker thread (the session and token are database reads)."""
    drf_request = _drf_request(request)
    return _authenticate(drf_request), _payload(drf_request)


def _lookup(model: type[LLMModel] | type[MCPServer], value: str) -> Any:
    queryset = model.objects.all()
    try:
        return queryset.filter(pk=value).first() or queryset.filter(name=value).first()
    except Exception:  # not a UUID: look up by name only
        return queryset.filter(name=value).first()


def _conversation_for_request(user: AbstractBaseUser, data: dict[str, Any]) -> Conversation:
    """The conversation to continue (own only) or a new one, with the requested model and servers."""
    if data.get("conversation_id"):
        conversation = selectors.conversation_for(user, data["conversation_id"])
    else:
        conversation = services.conversation_create(user=user)
    model_id: Any = conversation.llm_model_id
    if data.get("model"):
        model = _lookup(LLMModel, data["model"])
        if model is None:
            raise ApplicationError(f"no model named {data['model']!r}", field="model")
        model_id = model.pk
    server_ids: list[Any] | None = (
        None if conversation.all_servers else selectors.server_selection(conversation)
    )
    if data.get("servers") is not None:
        server_ids = []
        for name in data["servers"]:
            server = _lookup(MCPServer, name)
            if server is None:
                raise ApplicationError(f"no server named {name!r}", field="servers")
            server_ids.append(server.pk)
    if data.get("model") or data.get("servers") is not None:
        services.conversation_configure(
            conversation=conversation, llm_model_id=model_id, server_ids=server_ids
        )
    return conversation


def _answer(message_id: int) -> tuple[dict[str, Any], int]:
    message = Message.objects.prefetch_related("tool_calls").get(pk=message_id)
    body: dict[str, Any] = {
        "response": message.content,
        "conversation_id": str(message.conversation_id),
        "message_id": message.pk,
        "status": message.status,
        "model": message.model_name,
        "tool_calls": ToolCallSerializer(message.tool_calls.all(), many=True).data,
        "citations": message.citations,
    }
    if message.status != MessageStatus.ERROR:
        return body, 200
    body["error"] = message.error
    return body, 503 if not message.model_name else 502


@extend_schema(
    request=ChatRequestSerializer,
    responses=ChatResponseSerializer,
    description="Ask the agent. JSON by default; with `Accept: text/event-stream` the same run streams as "
    "server-sent events (`start`, `token`, `tool_start`, `tool_progress`, `tool_end`, `done`). A tool list "
    "longer than `LLM_MAX_TOOLS` is a 400 naming the field `servers` and the servers to deselect.",
)
@csrf_exempt
async def chat(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """``POST /api/chat/``: the same agent, tools and history as the chat page."""
    if request.method != "POST":
        return _error("use POST", 405)
    request.body  # noqa: B018 - read once here, so DRF's parsers and CSRF check can read it again
    try:
        user, payload = await database_sync_to_async(_admit)(request)
    except exceptions.APIException as exc:
        response = _error(str(exc.detail), exc.status_code)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response.status_code = 401
            response["WWW-Authenticate"] = "Token"
        return response
    except InvalidInput as exc:
        return _error(str(exc), 400, **({"errors": {exc.field: [exc.message]}} if exc.field else {}))
    serializer = ChatRequestSerializer(data=payload)
    if not serializer.is_valid():
        return _error("; ".join(flatten_errors(serializer.errors)), 400, errors=serializer.errors)
    data = serializer.validated_data
    try:
        conversation = await database_sync_to_async(_conversation_for_request)(user, data)
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        handle = await runs.start_run(conversation=conversation, user=user, text=data["message"])
    except ApplicationError as exc:  # e.g. too many tools: 400 with errors.servers saying which to drop
        extra: dict[str, Any] = {"code": exc.code}
        if exc.field:
            extra["errors"] = {exc.field: [exc.message]}
        return _error(str(exc), exc.status_code, **extra)
    handle.attach(events.put_nowait)  # no await since start_run: no event can be missed
    if "text/event-stream" in request.headers.get("Accept", ""):
        stream = StreamingHttpResponse(_event_stream(handle, events), content_type="text/event-stream")
        stream["Cache-Control"] = "no-cache"
        stream["X-Accel-Buffering"] = "no"
        return stream
    while (await events.get())["kind"] != "done":
        pass
    body, status = await database_sync_to_async(_answer)(handle.state.message_id)
    return JsonResponse(body, status=status)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


async def _event_stream(
    handle: runs.RunHandle, events: asyncio.Queue[dict[str, Any]]
) -> AsyncIterator[bytes]:
    state = handle.state
    yield _sse("start", {"conversation_id": state.conversation_id, "message_id": state.message_id})
    try:
        while True:
            event = await events.get()
            if event["kind"] == "token":
                yield _sse("token", {"text": event["text"]})
            elif event["kind"] == "tool":
                card = event["card"]
                yield _sse("tool_start" if card["status"] == "running" else "tool_end", card)
            elif event["kind"] == "progress":
                card = event["card"]
                yield _sse("tool_progress", {"number": card["number"], **card["progress"]})
            elif event["kind"] == "done":
                body, _ = await database_sync_to_async(_answer)(state.message_id)
                yield _sse("done", body)
                return
    finally:
        handle.detach(events.put_nowait)


class ConversationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Conversation],
):
    """The caller's own conversations (anyone else's are 404), with messages, tool calls and exports."""

    permission_classes = [permissions.IsAuthenticated]
    serializer_class = ConversationSerializer

    def get_queryset(self) -> QuerySet[Conversation]:
        queryset = selectors.conversations_for(self.request.user).prefetch_related("servers")
        if self.action == "retrieve":
            queryset = queryset.select_related("llm_model").prefetch_related("messages__tool_calls")
        return queryset

    def get_serializer_class(self) -> Any:
        return ConversationDetailSerializer if self.action == "retrieve" else ConversationSerializer

    def get_object(self) -> Conversation:
        try:
            return self.get_queryset().get(pk=self.kwargs["pk"])
        except (Conversation.DoesNotExist, ValueError, DjangoValidationError):
            raise exceptions.NotFound("no such conversation") from None

    def perform_destroy(self, instance: Conversation) -> None:
        services.conversation_delete(conversation=instance)

    @extend_schema(responses={(200, "application/json"): dict, (200, "text/markdown"): str})
    @action(detail=True, methods=["get"], url_path=r"export/(?P<fmt>json|md)")
    def export(self, request: Request, pk: str | None = None, fmt: str = "json") -> HttpResponse:
        """The transcript as JSON (``export/json/``) or Markdown (``export/md/``)."""
        conversation = self.get_object()
        body = exports.as_json(conversation) if fmt == "json" else exports.as_markdown(conversation)
        content_type = "application/json" if fmt == "json" else "text/markdown; charset=utf-8"
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{exports.filename(conversation, fmt)}"'
        return response
