"""Serializers for the chat API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from chat.content import text_for_model
from chat.models import Conversation, Message, ToolCall


class ChatRequestSerializer(serializers.Serializer[dict[str, Any]]):
    """``POST /api/chat/``: a message, optionally into an existing conversation, with a model and servers."""

    message = serializers.CharField(max_length=20000, trim_whitespace=True)
    conversation_id = serializers.UUIDField(required=False, allow_null=True)
    model = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text="Model name or id."
    )
    servers = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        allow_null=True,
        help_text="Server names or ids; omit for all.",
    )


class ToolCallSerializer(serializers.ModelSerializer[ToolCall]):
    tool = serializers.CharField(source="name")
    result = serializers.SerializerMethodField()

    class Meta:
        model = ToolCall
        fields = [
            "number",
            "call_id",
            "tool",
            "source",
            "arguments",
            "is_error",
            "refused",
            "duration_ms",
            "result",
            "structured_content",
        ]

    def get_result(self, call: ToolCall) -> str:
        """The text items, with images, audio and links described (``[image: image/png, 14 KB]``)."""
        return text_for_model(call.content)


class MessageSerializer(serializers.ModelSerializer[Message]):
    tool_calls = ToolCallSerializer(many=True, read_only=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "role",
            "content",
            "status",
            "error",
            "model_name",
            "citations",
            "tool_calls",
            "prompt_tokens",
            "completion_tokens",
            "created",
            "finished",
        ]


class ConversationSerializer(serializers.ModelSerializer[Conversation]):
    model = serializers.CharField(source="llm_model.name", default=None, read_only=True, allow_null=True)
    servers = serializers.SerializerMethodField()

    class Meta:
        model = Conversation
        fields = ["id", "title", "model", "all_servers", "servers", "created", "updated"]

    def get_servers(self, conversation: Conversation) -> list[str] | None:
        if conversation.all_servers:
            return None
        return [s.name for s in conversation.servers.all()]


class ConversationDetailSerializer(ConversationSerializer):
    messages = MessageSerializer(many=True, read_only=True)

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]


class ChatResponseSerializer(serializers.Serializer[dict[str, Any]]):
    """The answer: its text, the conversation it belongs to, the tool calls made and the sources cited."""

    response = serializers.CharField()
    conversation_id = serializers.UUIDField()
    message_id = serializers.IntegerField()
    status = serializers.CharField()
    model = serializers.CharField(allow_blank=True)
    tool_calls = ToolCallSerializer(many=True)
    citations = serializers.ListField(child=serializers.DictField())
    error = serializers.CharField(required=False)
