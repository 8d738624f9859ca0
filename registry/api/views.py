"""REST views for the registry: thin wrappers over :mod:`registry.services`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from netops.errors import ApplicationError, ConflictError
from registry import services, tool_review
from registry.api.serializers import (
    HealthCheckSerializer,
    LLMModelSerializer,
    MCPServerSerializer,
    ToolAcceptSerializer,
    ToolSerializer,
)
from registry.models import LLMModel, MCPServer, Tool
from registry.selectors import mcp_server_tools


def _apply(instance: Any, serializer: serializers.ModelSerializer[Any]) -> Any:
    for name, value in serializer.validated_data.items():
        setattr(instance, name, value)
    return instance


class LLMModelViewSet(viewsets.ModelViewSet[LLMModel]):
    """LLM models the agent can use. Exactly one is the default."""

    queryset = LLMModel.objects.all()
    serializer_class = LLMModelSerializer

    def get_queryset(self) -> QuerySet[LLMModel]:
        queryset = super().get_queryset()
        if name := self.request.query_params.get("name"):
            queryset = queryset.filter(name=name)
        if is_default := self.request.query_params.get("is_default"):
            queryset = queryset.filter(is_default=is_default.lower() in ("1", "true", "yes"))
        return queryset

    def perform_create(self, serializer: serializers.ModelSerializer[LLMModel]) -> None:  # type: ignore[override]
        serializer.instance = services.llm_model_save(
            model=_apply(LLMModel(), serializer), actor=self.request.user
        )

    def perform_update(self, serializer: serializers.ModelSerializer[LLMModel]) -> None:  # type: ignore[override]
        assert serializer.instance is not None
        services.llm_model_save(model=_apply(serializer.instance, serializer), actor=self.request.user)

    def perform_destroy(self, instance: LLMModel) -> None:
        services.llm_model_delete(model=instance)


class MCPServerViewSet(viewsets.ModelViewSet[MCPServer]):
    """MCP servers (and REST tool APIs) whose tools the catalog offers; run a health check on demand."""

    queryset = MCPServer.objects.all()
    serializer_class = MCPServerSerializer

    def get_queryset(self) -> QuerySet[MCPServer]:
        queryset = super().get_queryset()
        if self.action == "list":
            queryset = queryset.prefetch_related("tools")  # tool_count and tool_names per row
        params = self.request.query_params
        for name in ("name", "protocol", "mcp_type", "status"):
            if value := params.get(name):
                queryset = queryset.filter(**{name: value})
        if enabled := params.get("enabled"):
            queryset = queryset.filter(enabled=enabled.lower() in ("1", "true", "yes"))
        return queryset

    def perform_create(self, serializer: serializers.ModelSerializer[MCPServer]) -> None:  # type: ignore[override]
        serializer.instance = services.mcp_server_save(
            server=_apply(MCPServer(), serializer), actor=self.request.user
        )

    def perform_update(self, serializer: serializers.ModelSerializer[MCPServer]) -> None:  # type: ignore[override]
        assert serializer.instance is not None
        services.mcp_server_save(server=_apply(serializer.instance, serializer), actor=self.request.user)

    def perform_destroy(self, instance: MCPServer) -> None:
        services.mcp_server_delete(server=instance, actor=self.request.user)

    # Running a check changes the server's recorded status: it needs the change permission.
    action_permission_methods = {"health_check": "PATCH"}

    @extend_schema(request=None, responses=HealthCheckSerializer)
    @action(detail=True, methods=["post"], url_path="health-check")
    def health_check(self, request: Request, pk: str | None = None) -> Response:
        """Check the server now (bounded by its connect timeout) and return the outcome."""
        server = self.get_object()
        if not server.enabled:
            raise ConflictError("the server is disabled; enable it to check it", field="enabled")
        outcome = services.mcp_servers_check_health(servers=[server])[0]
        body = {
            "ok": outcome.ok,
            "status": outcome.status,
            "changed": outcome.changed,
            "error": outcome.error,
            "duration_ms": round(outcome.duration_ms, 1),
            "server": MCPServerSerializer(outcome.server, context=self.get_serializer_context()).data,
        }
        return Response(body)

    @extend_schema(responses=ToolSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None)  # the whole list, as the schema says
    def tools(self, request: Request, pk: str | None = None) -> Response:
        """The server's tools with their review state (held, disabled and vanished ones too)."""
        server = self.get_object()
        return Response(ToolSerializer(mcp_server_tools(server=server), many=True).data)


class ToolViewSet(viewsets.GenericViewSet[Tool]):
    """Tools of registered servers: list (``?server=``, ``?review=``), read, PATCH ``enabled`` and
    ``access``, ``POST accept`` a held definition (with the fingerprint reviewed), ``POST keep-held``.
    Changes need ``registry.change_tool``."""

    queryset = Tool.objects.select_related("server", "reviewed_by").order_by("server__name", "public_name")
    serializer_class = ToolSerializer
    # Reviewing changes a tool: accept and keep-held need the change permission, not add.
    action_permission_methods = {"accept": "PATCH", "keep_held": "PATCH"}

    def get_queryset(self) -> QuerySet[Tool]:
        queryset = super().get_queryset()
        params = self.request.query_params
        if server := params.get("server"):
            queryset = queryset.filter(server__pk=_uuid_param("server", server))
        if review := params.get("review"):
            queryset = queryset.filter(review=review)
        return queryset

    def list(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        data = ToolSerializer(page if page is not None else self.get_queryset(), many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(ToolSerializer(self.get_object()).data)

    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        tool = self.get_object()
        serializer = ToolSerializer(tool, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        if "enabled" in serializer.validated_data:
            tool_review.tool_set_enabled(
                tool=tool, actor=request.user, enabled=serializer.validated_data["enabled"]
            )
        if "access" in serializer.validated_data:
            tool_review.tool_set_access(
                tool=tool, actor=request.user, access=serializer.validated_data["access"]
            )
        return Response(ToolSerializer(tool).data)

    @extend_schema(request=ToolAcceptSerializer, responses=ToolSerializer)
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, pk: str | None = None) -> Response:
        """Accept the held definition: the tool is offered again, with it."""
        tool = self.get_object()
        body = ToolAcceptSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        tool_review.tool_accept(tool=tool, actor=request.user, fingerprint=body.validated_data["fingerprint"])
        return Response(ToolSerializer(tool).data)

    @extend_schema(request=None, responses=ToolSerializer)
    @action(detail=True, methods=["post"], url_path="keep-held")
    def keep_held(self, request: Request, pk: str | None = None) -> Response:
        """Record the review and leave the tool held (offered to no face)."""
        tool = self.get_object()
        tool_review.tool_keep_held(tool=tool, actor=request.user)
        return Response(ToolSerializer(tool).data)


def _uuid_param(name: str, value: str) -> str:
    try:
        return str(UUID(value))
    except ValueError:
        raise ApplicationError("a server id (UUID)", field=name) from None
