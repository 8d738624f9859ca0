"""Serializers for the registry API, in the field shapes of the AI-ops reference document.

Compatibility names from the reference (``azure_endpoint``, ``model_secret_key``) are accepted on
input and ``azure_endpoint`` is echoed on output, so clients written against the plugin keep
working. Secret references are returned (they name where a secret lives); secrets never are.
Raw (non-reference) ``env`` values of a stdio server are shown only to holders of
``registry.manage_secrets``; everyone else sees them masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from netops.secrets import (
    SecretError,
    looks_like_secret_reference,
    validate_env_entry,
    validate_secret_reference,
)
from registry.models import LLMModel, MCPServer, ServerStatus, Tool, ToolAccess
from registry.secret_guard import can_manage_secrets

# What a user without registry.manage_secrets sees instead of a raw env value.
MASKED = "••••"


def _reference(value: str) -> str:
    if not value:
        return value
    try:
        return validate_secret_reference(value)
    except SecretError as exc:
        raise serializers.ValidationError(exc.message) from None


def _shows_raw_env(context: Mapping[str, Any]) -> bool:
    request = context.get("request")
    user = getattr(request, "user", None)
    return user is not None and user.is_authenticated and can_manage_secrets(user)


def masked_env(env: Any, *, show_raw: bool) -> Any:
    """``env`` with every raw value masked unless ``show_raw``; references are shown as they are."""
    if show_raw or not isinstance(env, dict):
        return env
    return {k: v if isinstance(v, str) and looks_like_secret_reference(v) else MASKED for k, v in env.items()}


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
            "accepts_images",
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
            "health_note",
            "tool_count",
            "tool_names",
            "tools_refreshed_at",
            "accept_new_tools",
            "created",
            "last_updated",
        ]
        read_only_fields = [
            "id",
            "last_checked_at",
            "last_error",
            "health_note",
            "tools_refreshed_at",
            "created",
            "last_updated",
        ]

    def get_tool_names(self, server: MCPServer) -> list[str]:
        return [t.name for t in server.tools.all() if t.present]

    def validate_auth_secret_ref(self, value: str) -> str:
        return _reference(value)

    def validate_args(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise serializers.ValidationError("a list of strings")
        return value

    def validate_env(self, value: Any) -> dict[str, str]:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise serializers.ValidationError("an object of string names to string values")
        stored = getattr(self.instance, "env", None) or {}
        result: dict[str, str] = {}
        errors: dict[str, str] = {}
        for name, entry in value.items():
            if entry == MASKED and isinstance(stored.get(name), str):
                entry = stored[name]  # a masked value sent back unchanged (GET, edit, PUT)
            try:
                result[name] = validate_env_entry(name, entry)
            except SecretError as exc:
                errors[name] = exc.message
        if errors:
            raise serializers.ValidationError(errors)
        return result

    def to_representation(self, instance: MCPServer) -> dict[str, Any]:
        data = super().to_representation(instance)
        if "env" in data:
            data["env"] = masked_env(data["env"], show_raw=_shows_raw_env(self.context))
        return data


class ToolSerializer(serializers.ModelSerializer[Tool]):
    """One tool of one server with its review state; an admin may change ``enabled`` and ``access``.

    ``name`` is the tool's name on its server; ``public_name`` is the name every face uses.
    The accepted definition is what the catalog offers; ``pending_definition`` waits for review.
    """

    server: serializers.PrimaryKeyRelatedField[MCPServer] = serializers.PrimaryKeyRelatedField(read_only=True)
    server_name = serializers.CharField(source="server.name", read_only=True)
    access = serializers.ChoiceField(choices=ToolAccess.choices, required=False)
    reviewed_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = Tool
        fields = [
            "id",
            "server",
            "server_name",
            "name",
            "public_name",
            "title",
            "description",
            "input_schema",
            "output_schema",
            "annotations",
            "fingerprint",
            "review",
            "pending_definition",
            "pending_fingerprint",
            "held_at",
            "enabled",
            "access",
            "present",
            "unsupported",
            "first_seen_at",
            "last_seen_at",
            "reviewed_at",
            "reviewed_by",
        ]
        read_only_fields = [f for f in fields if f not in ("enabled", "access")]

    def to_representation(self, instance: Tool) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["title"] = data.get("title") or None  # as MCP has it: no title is null
        return data


class ToolAcceptSerializer(serializers.Serializer[Any]):
    """The pending fingerprint the reviewer saw: a definition changed since is not accepted (409)."""

    fingerprint = serializers.CharField(max_length=64)


class HealthCheckSerializer(serializers.Serializer[Any]):
    """The result of a health check run now, with the server as it is afterwards."""

    ok = serializers.BooleanField()
    status = serializers.CharField()
    changed = serializers.BooleanField()
    error = serializers.CharField(allow_blank=True)
    duration_ms = serializers.FloatField()
    server = MCPServerSerializer()
