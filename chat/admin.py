"""Admin for the agent's settings (system prompt, limits) and a read-only view of conversations."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from chat.models import AgentSettings, Conversation, Message


@admin.register(AgentSettings)
class AgentSettingsAdmin(admin.ModelAdmin[AgentSettings]):
    list_display = ["__str__", "max_steps", "tool_result_max_chars", "history_max_messages"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not AgentSettings.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: AgentSettings | None = None) -> bool:
        return False


_MESSAGE_FIELDS = ("role", "status", "model_name", "content", "error", "created")


class MessageInline(admin.TabularInline[Message, Conversation]):
    model = Message
    fields = _MESSAGE_FIELDS
    readonly_fields = _MESSAGE_FIELDS
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin[Conversation]):
    list_display = ["title", "user", "llm_model", "all_servers", "updated"]
    list_filter = ["all_servers", "llm_model"]
    search_fields = ["title", "user__username"]
    readonly_fields = ["user", "title", "llm_model", "all_servers", "servers", "created", "updated"]
    inlines = [MessageInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
