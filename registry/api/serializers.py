"""Serializers for the registry API, in the field shapes of the AI-ops reference document.

Compatibility names from the reference (``azure_endpoint``, ``model_secret_key``) are accepted on
input and ``azure_endpoint`` is echoed on output, so clients written against the plugin keep
working. Secret references are returned (they name where a secret lives); secrets never are.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from netops.secrets import SecretError, validate_secret_reference
from registry.models import LLMModel, MCPProtocol, MCPServer, ServerStatus


def _reference(value: str) -> str:
    if not value:
        return value
    try:
        return validate_secret_reference(value)
    except SecretError as exc:
        raise serializers.ValidationError(exc.message) from None


class LLMModelSerializer(serializers.ModelSerializer[LLMModel]):
    """An LLM model; ``api_key_ref`` (alias ``model_secret_key``) is a secret reference."""

    azure_endpoint = serializers.URLField(
        source="endpoint", required=False, allow_blank=True, help_text="Alias of endpoint (reference API)."
    )
    model_secret_key = serializers.CharField(
        source="api_key_ref",
        write_only=True,
        required=False,
        allow_blank=True,
        help_text="Alias of api_key_ref.",
    )

    class Meta:
        model = LLMModel
        fields = [
            "id",
            "name",
            "description",
            "provider",
            "endpoint",
            "azure_endpoint",
            "api_version",
            "model",
            "api_key_ref",
            "model_secret_key",
            "temperature",
            "max_tokens",
            "request_timeout",
            "is_default",
            "created",
            "last_updated",
        ]
        read_only_fields = ["id", "created", "last_updated"]
        # The one-default rule is kept by registry.services (which unsets the previous default);
        # DRF's generated uniqueness check on the partial index would refuse every new default.
        extra_kwargs: dict[str, dict[str, Any]] = {"is_default": {"validators": []}}

    def validate_api_key_ref(self, value: str) -> str:
        return _reference(value)

    def validate_model_secret_key(self, value: str) -> str:
        return _reference(value)

    def to_internal_value(self, data: Any) -> Any:
        # The reference's create example omits the model id: default it to the name, as the
        # reference treated the name as the deployment.
        if isinstance(data, dict) and "model" not in data and "name" in data and self.instance is None:
            data = {**data, "model": data["name"]}
        return super().to_internal_value(data)


class StatusField(serializers.Field[str, str, dict[str, str], Any]):
    """``status`` as the reference shapes it: ``{"value": "healthy", "name": "Healthy"}``; read-only."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value: str) -> dict[str, str]:
        label = ServerStatus(value).label if value in ServerStatus.values else value
        return {"value": value, "name": str(label)}


extend_schema_field(
    {
        "type": "object",
        "properties": {"value": {"type": "string"}, "name": {"type": "string"}},
        "readOnly": True,
    }
)(StatusField)


class MCPServerSerializer(serializers.ModelSerializer[MCPServer]):
    """An MCP (or REST tool API) server with its health and cached tool names."""

    status = StatusField()
    tool_count = serializers.IntegerField(read_only=True)
    tool_names = serializers.SerializerMethodField()

    class Meta:
        model = MCPServer
        fields = [
            "id",
            "name",
            "description",
            "protocol",
            "url",
            "health_check",
            "mcp_type",
            "command",
            "args",
            "env",
            "auth_header",
            "auth_scheme",
            "auth_secret_ref",
            "connect_timeout",
            "call_timeout",
            "enabled",
            "status",
            "last_checked_at",
            "last_error",
            "tool_count",
            "tool_names",
            "tools_refreshed_at",
            "created",
            "last_updated",
        ]
        read_only_fields = [
            "id",
            "last_checked_at",
            "last_error",
            "tools_refreshed_at",
            "created",
            "last_updated",
        ]

    def get_tool_names(self, server: MCPServer) -> list[str]:
        return [t.get("name", "") for t in server.tools or []]

    def validate_auth_secret_ref(self, value: str) -> str:
        return _reference(value)

    def validate_args(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise serializers.ValidationError("a list of strings")
        return value

    def validate_env(self, value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise serializers.ValidationError("an object of string names to string values")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        protocol = attrs.get("protocol", getattr(self.instance, "protocol", None))
        starts_program = protocol == MCPProtocol.STDIO and (
            self.instance is None or {"protocol", "command", "args", "env"} & attrs.keys()
        )
        request = self.context.get("request")
        if starts_program and not (request and request.user.is_superuser):
            raise serializers.ValidationError(
                {"protocol": "only administrators may register or change stdio servers (they start programs)"}
            )
        return attrs


class ToolDefinitionSerializer(serializers.Serializer[dict[str, Any]]):
    """A cached tool of one server."""

    name = serializers.CharField()
    title = serializers.CharField(allow_null=True, required=False)
    description = serializers.CharField()
    input_schema = serializers.DictField()
    annotations = serializers.DictField()


class HealthCheckSerializer(serializers.Serializer[Any]):
    """The result of a health check run now, with the server as it is afterwards."""

    ok = serializers.BooleanField()
    status = serializers.CharField()
    changed = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    duration_ms = serializers.FloatField()
    server = MCPServerSerializer()
