"""Conversations, their messages and the tool calls the agent made while answering.

Finished conversations live here; the live state of a running answer lives in the run checkpoint
(:mod:`chat.checkpoints`) until the answer ends and is saved in one transaction.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from registry.models import LLMModel, MCPServer

DEFAULT_SYSTEM_PROMPT = """You are netops, an assistant for network engineers operating a production network.

- Answer from facts you obtain with the tools (inventory, IPAM, monitoring); never invent device names, \
addresses, VLANs or states. If the tools cannot answer, say so and say what is missing.
- Each tool result is numbered like [1]. When your answer uses a result, cite it with its number in \
square brackets right after the claim, e.g. "ams-cor001 is active [1]".
- Prefer one precise tool call over many broad ones; call independent tools in parallel.
- Changes to the source of truth are proposed as dry-run diffs that an engineer reviews; never claim a \
change was made unless a tool confirms it was applied.
- Be concise. Use Markdown: tables for lists of devices, interfaces or prefixes; code blocks for \
configuration and CLI output."""


class AgentSettings(models.Model):
    """The agent's system prompt and limits, edited in the admin (one row, pk=1)."""

    system_prompt = models.TextField(default=DEFAULT_SYSTEM_PROMPT)
    max_steps = models.PositiveSmallIntegerField(
        default=8,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Most LLM rounds with tool calls in one answer; the last round must answer in text.",
    )
    tool_result_max_chars = models.PositiveIntegerField(
        default=12000,
        validators=[MinValueValidator(500)],
        help_text="A tool result longer than this is truncated for the model (the page keeps it whole).",
    )
    history_max_messages = models.PositiveSmallIntegerField(
        default=50, validators=[MinValueValidator(2)], help_text="How many earlier messages the model sees."
    )

    class Meta:
        verbose_name = "agent settings"
        verbose_name_plural = "agent settings"

    def __str__(self) -> str:
        return "Agent settings"


class Conversation(models.Model):
    """One chat thread of one user, with the model and tool servers chosen for it.

    ``all_servers`` true means "every healthy server", including servers registered later;
    otherwise only ``servers`` are offered to the agent.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, default="New conversation")
    llm_model = models.ForeignKey(
        LLMModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    all_servers = models.BooleanField(default=True)
    servers = models.ManyToManyField(MCPServer, blank=True, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated"]
        indexes = [models.Index(fields=["user", "-updated"], name="chat_conv_user_updated")]

    def __str__(self) -> str:
        return self.title


class MessageRole(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class MessageStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"


class Message(models.Model):
    """A user question or an assistant answer; an answer row exists from the start of its run."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.COMPLETE)
    error = models.TextField(blank=True)
    model_name = models.CharField(max_length=100, blank=True)
    citations = models.JSONField(default=list, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created", "id"]

    def __str__(self) -> str:
        return f"{self.role}: {self.content[:60]}"


class ToolCall(models.Model):
    """One tool call of an answer, with its full result (the model may have seen a truncated one)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="tool_calls")
    call_id = models.CharField(max_length=100)
    number = models.PositiveIntegerField(help_text="Citation number in the answer, [1], [2], ...")
    name = models.CharField(max_length=100, help_text="Catalog name of the tool.")
    source = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict, blank=True)
    content = models.JSONField(default=list, blank=True)
    structured_content = models.JSONField(null=True, blank=True)
    is_error = models.BooleanField(default=False)
    refused = models.BooleanField(
        default=False,
        help_text="Never ran: the arguments failed the tool's schema (or the tool does not exist).",
    )
    duration_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["message", "number"], name="chat_toolcall_number_unique")
        ]

    def __str__(self) -> str:
        return f"[{self.number}] {self.name}"
