"""Chat pages: the conversation list, one conversation, its settings, exports."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.html import escape
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from chat import content as contents
from chat import exports, fragments, runs, selectors, services
from chat.forms import ConversationSettingsForm, RenameForm
from chat.models import Conversation, MessageStatus, ToolCall
from netops.errors import NotFoundError
from netops.types import HtmxHttpRequest
from registry.models import LLMModel, MCPServer, ServerStatus

PAGE = "chat/chat.html"


def _own(request: HttpRequest, conversation_id: str) -> Conversation:
    try:
        return selectors.conversation_for(request.user, conversation_id)
    except NotFoundError:
        raise Http404("no such conversation") from None


@require_GET
@login_required
def index(request: HttpRequest) -> HttpResponse:
    """The newest conversation, or an empty start page."""
    latest = selectors.conversations_for(request.user).first()
    if latest is not None:
        return redirect("chat:conversation", pk=latest.pk)
    return render(request, PAGE, _context(request, None))


@require_POST
@login_required
def new(request: HttpRequest) -> HttpResponse:
    conversation = services.conversation_create(user=request.user)  # type: ignore[arg-type]
    return redirect("chat:conversation", pk=conversation.pk)


@require_GET
@login_required
def conversation(request: HttpRequest, pk: str) -> HttpResponse:
    current = _own(request, pk)
    return render(request, PAGE, _context(request, current))


def _context(request: HttpRequest, current: Conversation | None) -> dict[str, object]:
    messages: list[dict[str, object]] = []
    selected: set[str] = set()
    if current is not None:
        stale = current.messages.filter(status=MessageStatus.RUNNING).exists()
        if stale and not _run_alive(current):
            services.messages_interrupted(conversation=current)
        messages = [fragments.message_context(m) for m in selectors.messages_for(current)]
        selected = {str(pk) for pk in current.servers.values_list("pk", flat=True)}
    servers = MCPServer.objects.filter(enabled=True).order_by("name")
    return {
        "conversations": selectors.conversations_for(request.user)[:200],
        "current": current,
        "chat_messages": messages,
        "models": LLMModel.objects.order_by("name"),
        "servers": [
            {"server": s, "checked": current is None or current.all_servers or str(s.pk) in selected}
            for s in servers
        ],
        "healthy": ServerStatus.HEALTHY,
        "budget": selectors.conversation_tool_budget(current) if current is not None else None,
    }


def _run_alive(conversation: Conversation) -> bool:
    if runs.local_run(str(conversation.pk)) is not None:
        return True
    return async_to_sync(runs.running_checkpoint)(str(conversation.pk)) is not None


@require_POST
@login_required
def rename(request: HttpRequest, pk: str) -> HttpResponse:
    current = _own(request, pk)
    form = RenameForm(request.POST)
    if form.is_valid():  # an empty title keeps the old one
        services.conversation_rename(conversation=current, title=form.cleaned_data["title"])
    return render(request, f"{PAGE}#conversation-item", {"c": current, "current": current})


@require_POST
@login_required
def delete(request: HtmxHttpRequest, pk: str) -> HttpResponse:
    current = _own(request, pk)
    services.conversation_delete(conversation=current)
    target = "/chat/"
    if request.htmx:
        return HttpResponseClientRedirect(target)
    return redirect(target)


@require_POST
@login_required
def configure(request: HttpRequest, pk: str) -> HttpResponse:
    """Save the model and server choice (sent by htmx whenever a picker changes)."""
    current = _own(request, pk)
    servers = MCPServer.objects.filter(enabled=True)
    form = ConversationSettingsForm(request.POST, server_choices=[(str(s.pk), s.name) for s in servers])
    if not form.is_valid():
        problems = "; ".join(
            f"{field}: {' '.join(str(e) for e in errors)}" for field, errors in form.errors.items()
        )
        return HttpResponse(f"Not saved: {escape(problems)}", status=400)
    chosen = form.cleaned_data["servers"]
    every = form.cleaned_data["all_servers"] or len(chosen) == servers.count()
    model = form.cleaned_data["model"]
    services.conversation_configure(
        conversation=current, llm_model_id=model.pk if model else None, server_ids=None if every else chosen
    )
    # The picker says at once whether the new selection still fits one model request.
    budget = {"budget": selectors.conversation_tool_budget(current), "oob": True}
    return HttpResponse(
        '<span class="saved">Saved</span>'
        + render_to_string(f"{PAGE}#tool-budget", budget, request)
        + render_to_string(f"{PAGE}#tool-budget-flag", budget, request)
    )


@require_GET
@login_required
def export(request: HttpRequest, pk: str, fmt: str) -> HttpResponse:
    current = _own(request, pk)
    if fmt not in ("json", "md"):
        raise Http404("exports are .json or .md")
    if fmt == "json":
        body, content_type = exports.as_json(current), "application/json"
    else:
        body, content_type = exports.as_markdown(current), "text/markdown; charset=utf-8"
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{exports.filename(current, fmt)}"'
    return response


# The image view's own policy: nothing in the response may run, load or be framed elsewhere.
IMAGE_CSP = "default-src 'none'; img-src 'self'; style-src 'none'; sandbox; frame-ancestors 'self'"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


@require_GET
@login_required
def tool_content(request: HttpRequest, pk: str, call_pk: int, index: int) -> HttpResponse:
    """One image of a stored tool result, served from netops' origin to the conversation's owner only.

    Only PNG, JPEG, GIF and WebP whose bytes match their declared type, at most
    ``chat.content.IMAGE_MAX_BYTES``; anything else (SVG, HTML, a huge image) is a 404 and the card
    says why. ``nosniff`` and a sandboxing CSP keep a browser from reading the bytes as anything else.
    """
    current = _own(request, pk)  # someone else's conversation is a 404, like a missing one
    call = ToolCall.objects.filter(pk=call_pk, message__conversation=current).only("content").first()
    if call is None or not 0 <= index < len(call.content) or call.content[index].get("type") != "image":
        raise Http404("no such image")
    decoded = contents.decode_image(call.content[index])
    if isinstance(decoded, str):
        raise Http404(decoded)
    mime, raw = decoded
    response = HttpResponse(raw, content_type=mime)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = f'inline; filename="tool-{call_pk}-{index}.{_EXTENSIONS[mime]}"'
    response["Content-Security-Policy"] = IMAGE_CSP
    response["Cache-Control"] = "private, max-age=3600"
    return response
