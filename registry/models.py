"""Registry data: the LLM models the agent may use and the MCP servers that provide its tools.

Credentials are stored as *secret references* (``env:NAME``, ``file:/path``), never as values;
see :mod:`netops.secrets`. Business rules (one default model, health transitions) live in
:mod:`registry.services`; the models hold data and database-level invariants only.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from rest_framework_api_key.crypto import KeyGenerator
from rest_framework_api_key.models import AbstractAPIKey
from rest_framework_api_key.models import APIKeyManager as LibraryKeyManager

from netops.secrets import SECRET_REFERENCE_HELP, SecretError, validate_secret_reference


def _check_reference(value: str) -> None:
    if value:
        try:
            validate_secret_reference(value)
        except SecretError as exc:
            raise ValidationError(exc.message) from None


class LLMProvider(models.TextChoices):
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"
    OPENAI = "openai", "OpenAI"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"


class LLMModel(models.Model):
    """A chat model endpoint the agent can talk to (an Azure deployment, an OpenAI model, a local server).

    Exactly one model is the default when any exist: a partial unique index forbids two, and the
    services promote another model when the default is deleted.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    provider = models.CharField(max_length=32, choices=LLMProvider.choices, default=LLMProvider.AZURE_OPENAI)
    endpoint = models.URLField(
        max_length=500,
        blank=True,
        help_text="Azure: the resource endpoint (https://NAME.openai.azure.com/). OpenAI-compatible: the "
        "base URL (http://localhost:11434/v1). OpenAI: leave empty for api.openai.com.",
    )
    api_version = models.CharField(max_length=40, blank=True, help_text="Azure OpenAI API version.")
    model = models.CharField(
        max_length=200, help_text="Azure: the deployment name. Others: the model id (gpt-4o, llama3.1, ...)."
    )
    api_key_ref = models.CharField(
        "API key (secret reference)",
        max_length=300,
        blank=True,
        validators=[_check_reference],
        help_text=SECRET_REFERENCE_HELP + " Empty for local servers that need no key.",
    )
    temperature = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    max_tokens = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: the model's own limit.")
    request_timeout = models.FloatField(
        default=60.0,
        validators=[MinValueValidator(1.0), MaxValueValidator(600.0)],
        help_text="Seconds to wait for the model before giving up.",
    )
    is_default = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    last_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "LLM model"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="registry_llmmodel_one_default",
            ),
            models.CheckConstraint(
                condition=models.Q(temperature__gte=0.0, temperature__lte=2.0),
                name="registry_llmmodel_temperature_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.provider == LLMProvider.AZURE_OPENAI:
            if not self.endpoint:
                errors["endpoint"] = "Azure OpenAI needs the resource endpoint."
            if not self.api_version:
                errors["api_version"] = "Azure OpenAI needs an API version, for example 2024-10-21."
        if self.provider == LLMProvider.OPENAI_COMPATIBLE and not self.endpoint:
            errors["endpoint"] = "An OpenAI-compatible server needs its base URL."
        if errors:
            raise ValidationError(errors)


class MCPProtocol(models.TextChoices):
    HTTP = "http", "Streamable HTTP"
    SSE = "sse", "HTTP+SSE (legacy)"
    STDIO = "stdio", "stdio (local process)"
    REST = "rest", "REST tool API"


class MCPType(models.TextChoices):
    INTERNAL = "internal", "Internal"
    EXTERNAL = "external", "External"


class PermissionLevel(models.TextChoices):
    READ_ONLY = "read_only", "Read only"
    READ_WRITE = "read_write", "Read and write"
    ADMIN = "admin", "Admin"


class ServerStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"
    DISABLED = "disabled", "Disabled"


def _default_args() -> list[str]:
    return []


def _default_env() -> dict[str, str]:
    return {}


def _default_tools() -> list[dict[str, Any]]:
    return []


class MCPServer(models.Model):
    """A source of tools: an MCP server (Streamable HTTP, SSE, stdio) or a REST tool API.

    ``status`` is the settled health shown to users and used by the catalog; ``last_result`` is the
    raw outcome of the latest check. The two differ while a change waits for a second agreeing
    check (no flapping). ``tools`` caches the server's tool list from the last healthy check so
    that listing the catalog never touches the network.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    protocol = models.CharField(max_length=16, choices=MCPProtocol.choices, default=MCPProtocol.HTTP)
    url = models.URLField(
        max_length=500,
        blank=True,
        help_text="http: the MCP endpoint (…/mcp; '/mcp' is added to a bare host). sse: the SSE endpoint "
        "(…/sse). rest: the tool API base (…/api/mcp). Empty for stdio.",
    )
    health_check = models.CharField(
        max_length=200,
        default="/health",
        blank=True,
        help_text="Path probed with GET on the server's origin (http and rest). Empty: no probe.",
    )
    mcp_type = models.CharField(max_length=16, choices=MCPType.choices, default=MCPType.INTERNAL)
    command = models.CharField(
        max_length=500, blank=True, help_text="stdio: the program to start (no shell)."
    )
    args = models.JSONField(default=_default_args, blank=True, help_text="stdio: list of arguments.")
    env = models.JSONField(
        default=_default_env,
        blank=True,
        help_text="stdio: extra environment variables. Values may be secret references (env:NAME, file:/path).",
    )
    auth_header = models.CharField(max_length=100, default="Authorization", blank=True)
    auth_scheme = models.CharField(
        max_length=40, default="Bearer", blank=True, help_text="Prefix before the secret, e.g. 'Bearer'."
    )
    auth_secret_ref = models.CharField(
        "auth secret (secret reference)",
        max_length=300,
        blank=True,
        validators=[_check_reference],
        help_text=SECRET_REFERENCE_HELP,
    )
    connect_timeout = models.FloatField(
        default=10.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(300.0)],
        help_text="Seconds for connecting and listing tools (also bounds a health check).",
    )
    call_timeout = models.FloatField(
        default=60.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(3600.0)],
        help_text="Seconds a tool call may take.",
    )
    enabled = models.BooleanField(default=True)
    tool_permission = models.CharField(
        max_length=16,
        choices=PermissionLevel.choices,
        blank=True,
        help_text="Level an API key needs for this server's tools. Empty: from each tool's annotations "
        "(read-only hint -> read_only, otherwise read_write).",
    )
    tool_permissions = models.JSONField(
        default=dict, blank=True, help_text='Per tool, overriding the above: {"tool_name": "admin"}.'
    )
    status = models.CharField(max_length=16, choices=ServerStatus.choices, default=ServerStatus.UNKNOWN)
    last_result = models.CharField(max_length=16, choices=ServerStatus.choices, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    tools = models.JSONField(default=_default_tools, blank=True)
    tools_refreshed_at = models.DateTimeField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    last_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        indexes = [models.Index(fields=["enabled", "status"], name="registry_mcp_enabled_status")]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.protocol == MCPProtocol.STDIO:
            if not self.command:
                errors["command"] = "A stdio server needs the program to start."
        elif not self.url:
            errors["url"] = f"A {self.get_protocol_display()} server needs a URL."
        if not isinstance(self.args, list) or not all(isinstance(a, str) for a in self.args):
            errors["args"] = "A list of strings."
        if not isinstance(self.env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()
        ):
            errors["env"] = "An object of string names to string values."
        if self.health_check and not self.health_check.startswith("/"):
            errors["health_check"] = "A path starting with '/'."
        if not isinstance(self.tool_permissions, dict) or not all(
            v in PermissionLevel.values for v in self.tool_permissions.values()
        ):
            errors["tool_permissions"] = (
                f"An object of tool names to one of {', '.join(PermissionLevel.values)}."
            )
        if errors:
            raise ValidationError(errors)

    @property
    def tool_count(self) -> int:
        return len(self.tools or [])


class _NetopsKeyGenerator(KeyGenerator):
    """Keys look like ``nop_Ab3dEf7h.<32 characters>``: the visible prefix says whose key it is."""

    def get_prefix(self) -> str:
        return "nop_" + super().get_prefix()


class APIKeyManager(LibraryKeyManager):
    key_generator = _NetopsKeyGenerator(prefix_length=8, secret_key_length=32)


class APIKey(AbstractAPIKey):
    """A key for the tool gateway and ``/mcp``: shown once, stored hashed (djangorestframework-api-key).

    ``level`` caps which tools it may call; ``rate_limit`` is requests per hour, shared by every
    process through the cache (Redis when configured).
    """

    objects: ClassVar[APIKeyManager] = APIKeyManager()

    prefix = models.CharField(max_length=16, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    level = models.CharField(
        max_length=16, choices=PermissionLevel.choices, default=PermissionLevel.READ_ONLY
    )
    rate_limit = models.PositiveIntegerField(default=1000, help_text="Requests per hour.")
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(AbstractAPIKey.Meta):
        abstract = False
        verbose_name = "API key"


class ToolCallAudit(models.Model):
    """One call through the tool gateway or ``/mcp``: who, which tool, a digest of the arguments
    (not the arguments: they may carry data the caller would not want kept), status, duration."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    via = models.CharField(max_length=16)  # "gateway" or "mcp"
    api_key = models.ForeignKey(APIKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    caller = models.CharField(max_length=200)
    tool = models.CharField(max_length=100, db_index=True)
    arguments_digest = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    duration_ms = models.FloatField()
    request_id = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = "tool call"

    def __str__(self) -> str:
        return f"{self.tool} {self.status} by {self.caller}"
