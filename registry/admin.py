"""Admin for LLM models and MCP servers; saves go through the services so their rules hold here too."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.safestring import SafeString

from registry import services
from registry.keys import api_key_create
from registry.models import APIKey, LLMModel, MCPProtocol, MCPServer, ServerStatus, ToolCallAudit

# Scheme-less URLs typed into the admin are https (Django 6's default, chosen explicitly now).
_URL_FIELDS: dict[type[models.Field[Any, Any]], dict[str, Any]] = {
    models.URLField: {"assume_scheme": "https"}
}

_BADGE: dict[str, str] = {
    ServerStatus.HEALTHY: "#1a7f37",
    ServerStatus.UNHEALTHY: "#cf222e",
    ServerStatus.UNKNOWN: "#6e7781",
    ServerStatus.DISABLED: "#8c959f",
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
        ("Generation", {"fields": ["temperature", "max_tokens", "request_timeout"]}),
        ("History", {"fields": ["created", "last_updated"]}),
    ]

    def save_model(self, request: HttpRequest, obj: LLMModel, form: Any, change: bool) -> None:
        services.llm_model_save(model=obj)

    def delete_model(self, request: HttpRequest, obj: LLMModel) -> None:
        services.llm_model_delete(model=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[LLMModel]) -> None:
        for model in queryset:
            services.llm_model_delete(model=model)


@admin.register(MCPServer)
class MCPServerAdmin(admin.ModelAdmin[MCPServer]):
    formfield_overrides = _URL_FIELDS
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
        ("Tool permissions", {"fields": ["tool_permission", "tool_permissions"]}),
        (
            "Health",
            {
                "fields": [
                    "status",
                    "last_result",
                    "last_checked_at",
                    "last_error",
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
        return fields

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
        return format_html(
            '<span style="color:#fff;background:{};padding:1px 8px;border-radius:8px">{}</span>',
            _BADGE.get(obj.status, "#6e7781"),
            obj.get_status_display(),
        )

    @admin.display(description="tools")
    def tool_list(self, obj: MCPServer) -> str:
        return ", ".join(t.get("name", "") for t in obj.tools or []) or "—"

    def save_model(self, request: HttpRequest, obj: MCPServer, form: Any, change: bool) -> None:
        services.mcp_server_save(server=obj)

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
