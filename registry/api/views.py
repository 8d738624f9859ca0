"""REST views for the registry: thin wrappers over :mod:`registry.services`."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from netops.errors import ConflictError
from registry import services
from registry.api.serializers import (
    HealthCheckSerializer,
    LLMModelSerializer,
    MCPServerSerializer,
    ToolDefinitionSerializer,
)
from registry.models import LLMModel, MCPServer


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
        serializer.instance = services.llm_model_save(model=_apply(LLMModel(), serializer))

    def perform_update(self, serializer: serializers.ModelSerializer[LLMModel]) -> None:  # type: ignore[override]
        assert serializer.instance is not None
        services.llm_model_save(model=_apply(serializer.instance, serializer))

    def perform_destroy(self, instance: LLMModel) -> None:
        services.llm_model_delete(model=instance)


class MCPServerViewSet(viewsets.ModelViewSet[MCPServer]):
    """MCP servers (and REST tool APIs) whose tools the catalog offers; run a health check on demand."""

    queryset = MCPServer.objects.all()
    serializer_class = MCPServerSerializer

    def get_queryset(self) -> QuerySet[MCPServer]:
        queryset = super().get_queryset()
        params = self.request.query_params
        for name in ("name", "protocol", "mcp_type", "status"):
            if value := params.get(name):
                queryset = queryset.filter(**{name: value})
        if enabled := params.get("enabled"):
            queryset = queryset.filter(enabled=enabled.lower() in ("1", "true", "yes"))
        return queryset

    def perform_create(self, serializer: serializers.ModelSerializer[MCPServer]) -> None:  # type: ignore[override]
        serializer.instance = services.mcp_server_save(server=_apply(MCPServer(), serializer))

    def perform_update(self, serializer: serializers.ModelSerializer[MCPServer]) -> None:  # type: ignore[override]
        assert serializer.instance is not None
        services.mcp_server_save(server=_apply(serializer.instance, serializer))

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

    @extend_schema(responses=ToolDefinitionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def tools(self, request: Request, pk: str | None = None) -> Response:
        """The server's cached tools (from its last healthy check)."""
        server = self.get_object()
        tools: Any = server.tools or []
        return Response(ToolDefinitionSerializer(tools, many=True).data)
