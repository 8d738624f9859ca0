"""Writes for chat: conversations, the start and the end of an answer, retention."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from chat.models import Conversation, Message, MessageRole, MessageStatus, ToolCall
from netops.errors import ApplicationError
from netops.redaction import redactor_for
from netops.text import clean_text, json_safe
from registry.models import LLMModel, MCPServer

TITLE_LENGTH = 60


def conversation_create(*, user: AbstractBaseUser, llm_model: LLMModel | None = None) -> Conversation:
    conversation = Conversation(user=user, llm_model=llm_model)  # type: ignore[misc]
    conversation.full_clean()
    conversation.save()
    return conversation


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    title = " ".join(title.split())
    if not title:
        raise ApplicationError("a title cannot be empty", field="title")
    conversation.title = title[:200]
    conversation.full_clean()
    conversation.save(update_fields=["title", "updated"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()


def conversation_configure(
    *, conversation: Conversation, llm_model_id: UUID | str | None, server_ids: Iterable[UUID | str] | None
) -> Conversation:
    """Choose the model (None: the default) and servers (None: every healthy server)."""
    with transaction.atomic():
        if llm_model_id in (None, ""):
            conversation.llm_model = None
        else:
            model = LLMModel.objects.filter(pk=llm_model_id).first()
            if model is None:
                raise ApplicationError("no such model", field="model")
            conversation.llm_model = model
        conversation.all_servers = server_ids is None
        conversation.save(update_fields=["llm_model", "all_servers", "updated"])
        if server_ids is None:
            conversation.servers.clear()
        else:
            wanted = list(MCPServer.objects.filter(pk__in=list(server_ids)))
            conversation.servers.set(wanted)
    return conversation


def message_start(*, conversation: Conversation, text: str, model_name: str) -> tuple[Message, Message]:
    """Store the question and the (running) answer row, so the answer has its id from the start."""
    text = text.strip()
    if not text:
        raise ApplicationError("the message is empty", field="message")
    with transaction.atomic():
        question = Message.objects.create(conversation=conversation, role=MessageRole.USER, content=text)
        answer = Message.objects.create(
            conversation=conversation,
            role=MessageRole.ASSISTANT,
            status=MessageStatus.RUNNING,
            model_name=model_name,
        )
        fields = ["updated"]
        if conversation.title == Conversation._meta.get_field("title").default:
            conversation.title = _title_from(text)
            fields.append("title")
        conversation.save(update_fields=fields)
    return question, answer


def message_finish(
    *,
    message: Message,
    text: str,
    status: str,
    error: str = "",
    citations: Sequence[dict[str, Any]] = (),
    calls: Sequence[Any] = (),
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> Message:
    """Save the answer and its tool calls in one transaction (the only writes of a run after its start).

    Everything here came from the model's endpoint or a tool server. The agent and the catalog have
    redacted it already; this last pass at the storage boundary masks every secret this process
    holds once more, so no path into the database skips redaction.
    """
    redactor = redactor_for()

    # Redacted, then made storable: a NUL or a lone surrogate from the model (its tool arguments
    # included) would make PostgreSQL refuse the row and leave the answer running forever.
    def stored_text(value: str) -> str:
        return clean_text(redactor.redact(value))

    def stored_data(value: Any) -> Any:
        return json_safe(redactor.redact_data(value))

    with transaction.atomic():
        message.content = stored_text(text)
        message.status = status
        message.error = stored_text(error)
        message.citations = stored_data(list(citations))
        message.prompt_tokens = prompt_tokens
        message.completion_tokens = completion_tokens
        message.finished = timezone.now()
        message.save()
        ToolCall.objects.bulk_create(
            [
                ToolCall(
                    message=message,
                    call_id=clean_text(call.call_id),
                    number=call.number,
                    name=clean_text(call.name),
                    source=clean_text(call.source),
                    arguments=stored_data(call.arguments),
                    content=stored_data(list(call.outcome.content)) if call.outcome is not None else [],
                    structured_content=(
                        stored_data(call.outcome.structured_content) if call.outcome is not None else None
                    ),
                    is_error=bool(call.outcome.is_error) if call.outcome is not None else True,
                    refused=bool(getattr(call, "refused", False)),
                    duration_ms=call.outcome.duration_ms if call.outcome is not None else None,
                )
                for call in calls
            ]
        )
        Conversation.objects.filter(pk=message.conversation_id).update(updated=timezone.now())
    return message


def messages_interrupted(*, conversation: Conversation) -> int:
    """Mark answers left "running" by a process that died as errors (no run or checkpoint holds them)."""
    return conversation.messages.filter(status=MessageStatus.RUNNING).update(
        status=MessageStatus.ERROR,
        error="The answer was interrupted (the server restarted).",
        finished=timezone.now(),
    )


def conversations_prune(*, older_than: timedelta) -> int:
    """Delete conversations not updated for ``older_than``; returns how many."""
    cutoff = timezone.now() - older_than
    _deleted, per_model = Conversation.objects.filter(updated__lt=cutoff).delete()
    return per_model.get("chat.Conversation", 0)


def _title_from(text: str) -> str:
    first_line = " ".join(text.split())
    return first_line if len(first_line) <= TITLE_LENGTH else first_line[: TITLE_LENGTH - 1].rstrip() + "…"
