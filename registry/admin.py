"""Admin for LLM models and MCP servers; saves go through the services so their rules hold here too.

The rules of :mod:`registry.secret_guard` show up as read-only fields: without
``registry.manage_secrets`` the secret references (and, on an entry that carries one, where it is
sent) cannot be edited, raw stdio ``env`` values are masked, and only superusers may change or
delete a stdio server. The services enforce the same rules again on save.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from netops.errors import ApplicationError, PermissionDeniedError
from registry import services, tool_review
from registry.api.serializers import masked_env
from registry.keys import api_key_create
from registry.models import (
    APIKey,
    LLMModel,
    MCPProtocol,
    MCPServer,
    ServerStatus,
    Tool,
    ToolCallAudit,
    ToolReview,
)
from registry.secret_guard import can_manage_secrets, secret_fields_locked, stdio_check
from registry.tool_diff import definition_diff

# Scheme-less URLs typed into the admin are https (Django 6's default, chosen explicitly now).
_URL_FIELDS: dict[type[models.Field[Any, Any]], dict[str, Any]] = {
    models.URLField: {"assume_scheme": "https"}
}


class LLMModelForm(forms.ModelForm[LLMModel]):
    """Admin form that leaves the one-default rule to the service (which unsets the old default)."""

    endpoint = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        help_text=LLMModel._meta.get_field("endpoint").help_text,
    )

    class Meta:
        model = LLMModel
        fields = [
            "name",
            "description",
            "is_default",
            "provider",
            "endpoint",
            "api_version",
            "model",
            "api_key_ref",
            "temperature",
            "max_tokens",
            "request_timeout",
            "accepts_images",
        ]

    def _get_validation_exclusions(self) -> set[str]:
        # Django's private hook for which fields skip model validation (and constraints) in forms.
        return {*super()._get_validation_exclusions(), "is_default"}  # type: ignore[misc]

    def clean_is_default(self) -> bool:
        value = bool(self.cleaned_data.get("is_default"))
        if (
            not value
            and self.instance.pk
            and LLMModel.objects.filter(pk=self.instance.pk, is_default=True).exists()
        ):
            raise forms.ValidationError(
                "The default model cannot be unset; make another model the default instead."
            )
        return value


@admin.register(LLMModel)
class LLMModelAdmin(admin.ModelAdmin[LLMModel]):
    form = LLMModelForm
    formfield_overrides = _URL_FIELDS
    list_display = ["name", "provider", "model", "endpoint", "is_default", "temperature", "last_updated"]
    list_filter = ["provider", "is_default"]
    search_fields = ["name", "model", "endpoint", "description"]
    readonly_fields = ["created", "last_updated"]
    fieldsets = [
        (None, {"fields": ["name", "description", "is_default"]}),
        ("Endpoint", {"fields": ["provider", "endpoint", "api_version", "model", "api_key_ref"]}),
        ("Generation", {"fields": ["temperature", "max_tokens", "request_timeout", "accepts_images"]}),
        ("History", {"fields": ["created", "last_updated"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: LLMModel | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if not can_manage_secrets(request.user):
            fields += secret_fields_locked(LLMModel, obj)
        return fields

    def save_model(self, request: HttpRequest, obj: LLMModel, form: Any, change: bool) -> None:
        try:
            services.llm_model_save(model=obj, actor=request.user)
        except PermissionDeniedError as exc:
            raise PermissionDenied(str(exc)) from None

    def delete_model(self, request: HttpRequest, obj: LLMModel) -> None:
        services.llm_model_delete(model=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        for model in queryset:
            services.llm_model_delete(model=model)


@admin.register(MCPServer)
class MCPServerAdmin(admin.ModelAdmin[MCPServer]):
    formfield_overrides = _URL_FIELDS

    class Media:
        css = {"all": ["css/admin.css"]}

    list_display = [
        "name",
        "protocol",
        "target",
        "mcp_type",
        "enabled",
        "status_badge",
        "tool_count",
        "last_checked_at",
    ]
    list_filter = ["protocol", "mcp_type", "enabled", "status"]
    search_fields = ["name", "url", "command", "description"]
    actions = ["run_health_check"]
    readonly_fields = [
        "status",
        "last_result",
        "last_checked_at",
        "last_error",
        "health_note",
        "tool_list",
        "tools_refreshed_at",
        "created",
        "last_updated",
    ]
    fieldsets = [
        (None, {"fields": ["name", "description", "mcp_type", "enabled"]}),
        ("Connection", {"fields": ["protocol", "url", "health_check", "connect_timeout", "call_timeout"]}),
        ("stdio", {"fields": ["command", "args", "env"], "classes": ["collapse"]}),
        ("Authentication", {"fields": ["auth_header", "auth_scheme", "auth_secret_ref"]}),
        ("Tool permissions", {"fields": ["tool_permission", "tool_permissions", "accept_new_tools"]}),
        (
            "Health",
            {
                "fields": [
                    "status",
                    "last_result",
                    "last_checked_at",
                    "last_error",
                    "health_note",
                    "tools_refreshed_at",
                    "tool_list",
                ]
            },
        ),
        ("History", {"fields": ["created", "last_updated"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: MCPServer | None = None) -> Any:
        # stdio servers start programs on this host: only superusers may define what runs.
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += ["command", "args", "env"]
            if obj is not None and obj.protocol == MCPProtocol.STDIO:
                fields.append("protocol")
        if not can_manage_secrets(request.user):
            fields += [f for f in secret_fields_locked(MCPServer, obj) if f not in fields]
            fields.append("env_display")
        return fields

    def get_fieldsets(self, request: HttpRequest, obj: MCPServer | None = None) -> Any:
        # Without manage_secrets, env is shown through env_display, with raw values masked.
        fieldsets = super().get_fieldsets(request, obj)
        if can_manage_secrets(request.user):
            return fieldsets
        return [
            (title, {**options, "fields": ["env_display" if f == "env" else f for f in options["fields"]]})
            for title, options in fieldsets
        ]

    def has_change_permission(self, request: HttpRequest, obj: MCPServer | None = None) -> bool:
        if obj is not None and obj.protocol == MCPProtocol.STDIO and not request.user.is_superuser:
            return False  # a program run on this host: view only (registry.secret_guard)
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: MCPServer | None = None) -> bool:
        if obj is not None and obj.protocol == MCPProtocol.STDIO and not request.user.is_superuser:
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="env")
    def env_display(self, obj: MCPServer) -> str:
        return json.dumps(masked_env(obj.env, show_raw=False), ensure_ascii=False)

    def get_form(
        self, request: HttpRequest, obj: MCPServer | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        protocol = form.base_fields.get("protocol")
        if protocol is not None and not request.user.is_superuser:
            protocol.choices = [c for c in MCPProtocol.choices if c[0] != MCPProtocol.STDIO]  # type: ignore[attr-defined]
        return form

    @admin.display(description="URL / command")
    def target(self, obj: MCPServer) -> str:
        return obj.url if obj.protocol != "stdio" else " ".join([obj.command, *obj.args])

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: MCPServer) -> SafeString:
        # A class, not a style attribute: the Content-Security-Policy refuses inline styles.
        status = obj.status if obj.status in ServerStatus.values else ServerStatus.UNKNOWN
        return format_html('<span class="status-badge status-{}">{}</span>', status, obj.get_status_display())

    def get_queryset(self, request: HttpRequest) -> QuerySet[MCPServer]:
        return super().get_queryset(request).prefetch_related("tools")  # tool_count, tool_list

    @admin.display(description="tools")
    def tool_list(self, obj: MCPServer) -> str:
        return ", ".join(t.public_name for t in obj.tools.all() if t.present) or "—"

    def save_model(self, request: HttpRequest, obj: MCPServer, form: Any, change: bool) -> None:
        try:
            services.mcp_server_save(server=obj, actor=request.user)
        except PermissionDeniedError as exc:
            raise PermissionDenied(str(exc)) from None

    def delete_model(self, request: HttpRequest, obj: MCPServer) -> None:
        try:
            services.mcp_server_delete(server=obj, actor=request.user)
        except PermissionDeniedError as exc:
            raise PermissionDenied(str(exc)) from None

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[MCPServer]) -> None:
        # "Delete selected" checks the model permission only: refuse a selection with a stdio server.
        servers = list(queryset)
        try:
            for server in servers:  # all or nothing: check every one before deleting any
                stdio_check(actor=request.user, stored=server, new=None)
        except PermissionDeniedError as exc:
            raise PermissionDenied(str(exc)) from None
        for server in servers:
            services.mcp_server_delete(server=server, actor=request.user)

    @admin.action(description="Run a health check now", permissions=["change"])
    def run_health_check(self, request: HttpRequest, queryset: QuerySet[MCPServer]) -> None:
        outcomes = services.mcp_servers_check_health(servers=list(queryset))
        for outcome in outcomes:
            if outcome.ok:
                self.message_user(
                    request,
                    f"{outcome.server.name}: reachable, {outcome.server.tool_count} tools "
                    f"({outcome.duration_ms:.0f} ms); status {outcome.status}",
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    f"{outcome.server.name}: {outcome.error}; status {outcome.status}",
                    messages.ERROR,
                )
        skipped = queryset.count() - len(outcomes)
        if skipped:
            self.message_user(request, f"{skipped} disabled server(s) skipped", messages.WARNING)


class ToolForm(forms.ModelForm[Tool]):
    """Only the admin's own words are edited here (enabled, access); saves go through the services."""

    class Meta:
        model = Tool
        fields = ["enabled", "access"]


@admin.register(Tool)
class ToolAdmin(admin.ModelAdmin[Tool]):
    """Every tool of every server: review held definitions (with a diff), enable, disable, set access.

    The definition fields are read-only: they come from the server, and a changed definition
    becomes the accepted one only through "Accept the held definition" (registry.tool_review).
    """

    form = ToolForm

    class Media:
        css = {"all": ["css/admin.css"]}

    list_display = ["public_name", "server", "name", "review", "enabled", "access", "present", "held_at"]
    list_filter = ["review", "enabled", "access", "present", "server"]
    search_fields = ["public_name", "name", "description", "server__name"]
    list_select_related = ["server"]
    actions = ["accept_held", "disable_tools", "enable_tools"]
    readonly_fields = [
        "server",
        "name",
        "public_name",
        "review",
        "held_diff",
        "title",
        "description",
        "input_schema_display",
        "output_schema_display",
        "annotations_display",
        "fingerprint",
        "pending_fingerprint",
        "held_at",
        "present",
        "first_seen_at",
        "last_seen_at",
        "reviewed_at",
        "reviewed_by",
    ]
    fieldsets = [
        (None, {"fields": ["public_name", "server", "name", "enabled", "access"]}),
        (
            "Review",
            {
                "fields": [
                    "review",
                    "held_at",
                    "held_diff",
                    "pending_fingerprint",
                    "reviewed_at",
                    "reviewed_by",
                ]
            },
        ),
        (
            "Accepted definition",
            {
                "fields": [
                    "title",
                    "description",
                    "input_schema_display",
                    "output_schema_display",
                    "annotations_display",
                    "fingerprint",
                ]
            },
        ),
        ("History", {"fields": ["present", "first_seen_at", "last_seen_at"]}),
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tools come from their servers' checks

    def has_delete_permission(self, request: HttpRequest, obj: Tool | None = None) -> bool:
        return False  # a row keeps its public name reserved while its server is registered

    @admin.display(description="input schema")
    def input_schema_display(self, obj: Tool) -> SafeString:
        return _json_block(obj.input_schema)

    @admin.display(description="output schema")
    def output_schema_display(self, obj: Tool) -> SafeString:
        return _json_block(obj.output_schema)

    @admin.display(description="annotations")
    def annotations_display(self, obj: Tool) -> SafeString:
        return _json_block(obj.annotations)

    @admin.display(description="held definition (diff against the accepted one)")
    def held_diff(self, obj: Tool) -> SafeString:
        if not obj.held:
            return format_html("{}", "—")
        old = None if obj.review == ToolReview.HELD_NEW else obj.definition()
        parts = []
        for field in definition_diff(old, obj.pending_definition or {}):
            if not field.changed:
                continue
            lines = format_html_join(
                "",
                '<span class="diff-line diff-{}">{} {}\n</span>',
                ((line.mark, line.sign, line.text) for line in field.lines),
            )
            parts.append(
                format_html(
                    '<div class="diff-label">{}</div><pre class="tool-diff">{}</pre>', field.label, lines
                )
            )
        return format_html_join("", "{}", ((p,) for p in parts)) if parts else format_html("{}", "—")

    def save_model(self, request: HttpRequest, obj: Tool, form: Any, change: bool) -> None:
        try:
            if "enabled" in form.changed_data:
                tool_review.tool_set_enabled(tool=obj, actor=request.user, enabled=obj.enabled)
            if "access" in form.changed_data:
                tool_review.tool_set_access(tool=obj, actor=request.user, access=obj.access)
        except PermissionDeniedError as exc:
            raise PermissionDenied(str(exc)) from None

    @admin.action(description="Accept the held definition", permissions=["change"])
    def accept_held(self, request: HttpRequest, queryset: QuerySet[Tool]) -> None:
        accepted = 0
        for tool in queryset.exclude(review=ToolReview.ACTIVE):
            # The admin's list showed this state: accept the pending definition as stored now.
            try:
                tool_review.tool_accept(tool=tool, actor=request.user, fingerprint=tool.pending_fingerprint)
            except ApplicationError as exc:
                self.message_user(request, f"{tool.public_name}: {exc.message}", messages.ERROR)
                continue
            accepted += 1
        self.message_user(request, f"{accepted} tool(s) accepted", messages.SUCCESS)

    @admin.action(description="Disable the selected tools", permissions=["change"])
    def disable_tools(self, request: HttpRequest, queryset: QuerySet[Tool]) -> None:
        for tool in queryset:
            tool_review.tool_set_enabled(tool=tool, actor=request.user, enabled=False)
        self.message_user(request, f"{queryset.count()} tool(s) disabled", messages.SUCCESS)

    @admin.action(description="Enable the selected tools", permissions=["change"])
    def enable_tools(self, request: HttpRequest, queryset: QuerySet[Tool]) -> None:
        for tool in queryset:
            tool_review.tool_set_enabled(tool=tool, actor=request.user, enabled=True)
        self.message_user(request, f"{queryset.count()} tool(s) enabled", messages.SUCCESS)


def _json_block(value: Any) -> SafeString:
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) if value is not None else "—"
    return format_html('<pre class="tool-json">{}</pre>', text)


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin[APIKey]):
    """Keys are created here or on "My API keys"; the plain key is shown once, in the success message."""

    list_display = [
        "name",
        "prefix",
        "owner",
        "level",
        "rate_limit",
        "created",
        "expiry_date",
        "revoked",
        "last_used_at",
    ]
    list_filter = ["level", "revoked"]
    search_fields = ["name", "prefix", "owner__username"]
    readonly_fields = ["prefix", "created", "last_used_at"]
    fields = [
        "name",
        "owner",
        "level",
        "rate_limit",
        "expiry_date",
        "revoked",
        "prefix",
        "created",
        "last_used_at",
    ]

    def save_model(self, request: HttpRequest, obj: APIKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        days = None
        if obj.expiry_date is not None:
            from django.utils import timezone

            days = max(1, (obj.expiry_date - timezone.now()).days)
        key, plain = api_key_create(
            owner=obj.owner, name=obj.name, level=obj.level, rate_limit=obj.rate_limit, expires_in_days=days
        )
        obj.pk, obj.prefix = key.pk, key.prefix
        self.message_user(
            request,
            f"The API key is {plain} — copy it now; it is not stored and cannot be shown again.",
            messages.WARNING,
        )


@admin.register(ToolCallAudit)
class ToolCallAuditAdmin(admin.ModelAdmin[ToolCallAudit]):
    """The audit log of gateway and /mcp calls (read-only)."""

    list_display = ["at", "via", "caller", "tool", "status", "duration_ms", "request_id"]
    list_filter = ["via", "status", "tool"]
    search_fields = ["caller", "tool", "request_id"]
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ToolCallAudit | None = None) -> bool:
        return False
