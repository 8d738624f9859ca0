"""Reads for chat: a user's conversations, the history the model sees, the model to use."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.conf import settings as django_settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from chat.llm import LLMSettings
from chat.models import AgentSettings, Conversation, Message, MessageRole, MessageStatus
from chat.toolbudget import DEFAULT_MAX_TOOLS, ToolBudget, tool_budget
from netops.errors import ApplicationError, NotFoundError
from netops.secrets import resolve_secret
from registry.catalog import ToolCatalog
from registry.models import LLMModel
from registry.selectors import llm_model_default


class NoModelConfigured(ApplicationError):
    """There is no LLM model to answer with."""

    status_code = 503
    code = "no_model"


class ToolListTooLong(ApplicationError):
    """The conversation's servers offer more tools than one model request may carry."""

    status_code = 400
    code = "too_many_tools"


def max_tools() -> int:
    """``LLM_MAX_TOOLS``: the most tools one model request carries (OpenAI's maximum, 128)."""
    return int(getattr(django_settings, "LLM_MAX_TOOLS", DEFAULT_MAX_TOOLS))


def tool_budget_of(catalog: ToolCatalog) -> ToolBudget:
    """The catalog's tools counted per server against ``LLM_MAX_TOOLS``."""
    return tool_budget(catalog.tools(), limit=max_tools())


def conversation_tool_budget(conversation: Conversation) -> ToolBudget:
    """The tools the conversation's server selection offers, against ``LLM_MAX_TOOLS`` (no network)."""
    return tool_budget_of(ToolCatalog.load(server_ids=server_selection(conversation)))


def check_tool_budget(budget: ToolBudget) -> None:
    """:class:`ToolListTooLong` (field ``servers``) when ``budget`` is exceeded."""
    if budget.exceeded:
        raise ToolListTooLong(budget.message(), field="servers")


def agent_settings() -> AgentSettings:
    """The single settings row, created with the defaults on first use."""
    settings, _ = AgentSettings.objects.get_or_create(pk=1)
    return settings


def conversations_for(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Conversation]:
    """The user's own conversations, newest first (none for an anonymous user)."""
    if not user.is_authenticated:
        return Conversation.objects.none()
    return Conversation.objects.filter(user_id=int(user.pk)).order_by("-updated")


def conversation_for(user: AbstractBaseUser | AnonymousUser, conversation_id: UUID | str) -> Conversation:
    """One of the user's conversations; anyone else's (or a missing one) is :class:`NotFoundError`."""
    try:
        return conversations_for(user).select_related("llm_model").get(pk=conversation_id)
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise NotFoundError("no such conversation") from None


def messages_for(conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.prefetch_related("tool_calls").order_by("created", "id")


def llm_history(
    conversation: Conversation, *, limit: int, before_id: int | None = None
) -> list[dict[str, Any]]:
    """Earlier finished messages as chat-completion messages (text only; tool detail stays in the DB)."""
    queryset = conversation.messages.exclude(status=MessageStatus.RUNNING).exclude(content="")
    if before_id is not None:
        queryset = queryset.filter(id__lt=before_id)
    recent = list(queryset.order_by("-created", "-id").values("role", "content")[:limit])
    return [{"role": m["role"], "content": m["content"]} for m in reversed(recent)]


def llm_model_for(conversation: Conversation) -> LLMModel:
    """The conversation's model, else the default; :class:`NoModelConfigured` when there is none."""
    model = conversation.llm_model or llm_model_default()
    if model is None:
        raise NoModelConfigured(
            "No LLM model is configured. An administrator can register one under Admin → LLM models "
            "(Azure OpenAI, OpenAI or any OpenAI-compatible server)."
        )
    return model


def llm_settings(model: LLMModel) -> LLMSettings:
    """Snapshot ``model`` with its API key resolved (raises SecretError naming only the reference)."""
    return LLMSettings(
        name=model.name,
        provider=model.provider,
        model=model.model,
        endpoint=model.endpoint,
        api_version=model.api_version,
        api_key=resolve_secret(model.api_key_ref) if model.api_key_ref else "",
        temperature=model.temperature,
        max_tokens=model.max_tokens,
        timeout=model.request_timeout,
        accepts_images=model.accepts_images,
    )


def server_selection(conversation: Conversation) -> list[UUID] | None:
    """The server ids the agent may use, or None for "every healthy server"."""
    if conversation.all_servers:
        return None
    return list(conversation.servers.values_list("pk", flat=True))


def is_user(role: str) -> bool:
    return role == MessageRole.USER
