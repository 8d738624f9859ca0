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

from netops.secrets import (
    SECRET_REFERENCE_HELP,
    SecretError,
    looks_like_secret_reference,
    validate_env_entry,
    validate_secret_reference,
)

# The permission for setting a secret reference, or moving an entry that carries one (url,
# endpoint, command, ...): whoever points a secret somewhere can send it there (registry.services).
MANAGE_SECRETS = "registry.manage_secrets"


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
    accepts_images = models.BooleanField(
        default=False,
        help_text="The model takes image input (gpt-4o, gpt-4.1, llava, ...): images from tools reach it as "
        "image parts. Off: the model gets a description of each image (type and size) instead.",
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

    @property
    def carries_secret_reference(self) -> bool:
        """True when calling the model sends a secret (its API key)."""
        return bool(self.api_key_ref)

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
    DEGRADED = "degraded", "Degraded"  # reachable, but its tool list was cut (page or tool limit)
    UNHEALTHY = "unhealthy", "Unhealthy"
    DISABLED = "disabled", "Disabled"


def _default_args() -> list[str]:
    return []


def _default_env() -> dict[str, str]:
    return {}


def _default_tools() -> list[dict[str, Any]]:  # referenced by migration 0001
    return []


class MCPServer(models.Model):
    """A source of tools: an MCP server (Streamable HTTP, SSE, stdio) or a REST tool API.

    ``status`` is the settled health shown to users and used by the catalog; ``last_result`` is the
    raw outcome of the latest check. The two differ while a change waits for a second agreeing
    check (no flapping). Its tools are :class:`Tool` rows, synced from each healthy check
    (:mod:`registry.tool_sync`), so listing the catalog never touches the network.
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
        default="",
        blank=True,
        help_text="Optional path probed with GET on the server's origin (http and rest) besides the MCP "
        "handshake, which decides health. Empty (the default): the handshake only. A path answering 404 "
        "while the handshake succeeds leaves the server healthy, with a note.",
    )
    mcp_type = models.CharField(max_length=16, choices=MCPType.choices, default=MCPType.INTERNAL)
    command = models.CharField(
        max_length=500, blank=True, help_text="stdio: the program to start (no shell)."
    )
    args = models.JSONField(default=_default_args, blank=True, help_text="stdio: list of arguments.")
    env = models.JSONField(
        default=_default_env,
        blank=True,
        help_text="stdio: extra environment variables. A value is a secret reference (env:NAME, file:/path) "
        "or plainly non-secret; under a name that looks secret (…KEY…, …TOKEN…, …PASS…) it must be a reference.",
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
    health_note = models.TextField(
        blank=True,
        help_text="What the last check noticed without failing (a missing health path, a cut tool list).",
    )
    tools_refreshed_at = models.DateTimeField(null=True, blank=True)
    accept_new_tools = models.BooleanField(
        default=False,
        help_text="Offer tools that appear on a later check at once. Off (the default): a new tool is "
        "held until an admin accepts it. A changed definition of a known tool is always held.",
    )
    created = models.DateTimeField(auto_now_add=True)
    last_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "MCP server"
        indexes = [models.Index(fields=["enabled", "status"], name="registry_mcp_enabled_status")]
        # registry.manage_secrets covers LLM models too: one permission for every secret reference.
        permissions = [
            (
                "manage_secrets",
                "Can set secret references and move entries that carry one (URL, endpoint, command)",
            )
        ]

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
        else:
            for name, value in self.env.items():
                try:
                    validate_env_entry(name, value)
                except SecretError as exc:
                    errors["env"] = f"{name}: {exc.message}"
                    break
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
        """Tools the server listed at its last healthy check (held or disabled ones included)."""
        return sum(1 for tool in self.tools.all() if tool.present)

    @property
    def carries_secret_reference(self) -> bool:
        """True when connecting sends a secret: an auth reference, or a reference in ``env``."""
        env = self.env if isinstance(self.env, dict) else {}
        return bool(self.auth_secret_ref) or any(
            isinstance(v, str) and looks_like_secret_reference(v) for v in env.values()
        )


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


class ToolReview(models.TextChoices):
    ACTIVE = "active", "Active"
    HELD_NEW = "held_new", "Held: new tool"
    HELD_CHANGED = "held_changed", "Held: changed definition"


class ToolAccess(models.TextChoices):
    INHERIT = "inherit", "From the server's annotations"
    READ_ONLY = "read_only", "Read-only"
    WRITABLE = "writable", "Writable"


def _empty_object() -> dict[str, Any]:
    return {}


class Tool(models.Model):
    """One tool of one server, as netops offers it: a stable public name and the accepted definition.

    ``public_name`` is given once, at first discovery (the plain safe name when free, else
    ``<server>__<name>``), and never changes while the server stays registered: a row whose tool
    left the server's list stays (``present`` false) so its name stays reserved. The accepted
    definition is what every face offers; a different definition found by a later check waits in
    ``pending_definition`` (``review`` held) until an admin accepts it (rug-pull defence). Only
    ``active``, ``enabled`` and ``present`` rows of usable servers reach the catalog.
    ``fingerprint`` is the sha256 of the canonical JSON of the definition (:mod:`registry.tool_sync`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    server = models.ForeignKey(MCPServer, on_delete=models.CASCADE, related_name="tools")
    name = models.CharField(max_length=200, help_text="The tool's name on its server.")
    public_name = models.CharField(
        max_length=64, unique=True, help_text="The name every face uses (OpenAI-safe, stable)."
    )
    title = models.CharField(max_length=500, blank=True)
    description = models.TextField(blank=True)
    input_schema = models.JSONField(default=_empty_object, blank=True)
    output_schema = models.JSONField(null=True, blank=True)
    annotations = models.JSONField(default=_empty_object, blank=True)
    fingerprint = models.CharField(max_length=64, blank=True)
    review = models.CharField(max_length=16, choices=ToolReview.choices, default=ToolReview.ACTIVE)
    pending_definition = models.JSONField(null=True, blank=True)
    pending_fingerprint = models.CharField(max_length=64, blank=True)
    held_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True, help_text="Off: offered to no face (agent, gateway, /mcp).")
    access = models.CharField(
        max_length=16,
        choices=ToolAccess.choices,
        default=ToolAccess.INHERIT,
        help_text="The admin's word on whether the tool writes; it wins over the server's annotations.",
    )
    present = models.BooleanField(default=True, help_text="Listed by the server at its last healthy check.")
    position = models.PositiveIntegerField(default=0, help_text="Its place in the server's own list.")
    unsupported = models.CharField(
        max_length=300,
        blank=True,
        help_text="Why netops cannot call the tool (listed, offered to no face); empty when it can.",
    )
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["server__name", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["server", "name"], name="registry_tool_one_per_server_name"),
            models.CheckConstraint(
                condition=models.Q(review="active") | ~models.Q(pending_fingerprint=""),
                name="registry_tool_held_has_pending",
            ),
        ]
        indexes = [models.Index(fields=["review", "enabled", "present"], name="registry_tool_offered")]

    def __str__(self) -> str:
        return self.public_name

    @property
    def held(self) -> bool:
        return self.review != ToolReview.ACTIVE

    def definition(self) -> dict[str, Any]:
        """The accepted definition in the vocabulary of :class:`registry.connections.ToolDefinition`."""
        return {
            "name": self.name,
            "title": self.title or None,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "annotations": self.annotations,
        }


class RegistryRevision(models.Model):
    """One row: a token that changes with every change of what the catalog offers (servers, tools).

    Every process caches its catalog under the token it read (:mod:`registry.revision`); a new
    token, written in the same transaction as the change, makes each of them reload. A token, not a
    counter: a rolled-back change must never leave a cache valid for a later, different change.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    token = models.CharField(max_length=32)
    changed_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.token
