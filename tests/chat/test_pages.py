"""Chat pages: list, conversation, rename, delete, model/server pickers, exports, retention."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from chat.models import Conversation, Message, MessageStatus
from chat.services import conversation_create, message_finish, message_start
from registry.models import LLMModel, MCPServer, ServerStatus

pytestmark = pytest.mark.django_db


def _logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_pages_need_login() -> None:
    response = Client().get("/chat/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert Client().get("/").status_code == 302


def test_empty_start_page_then_new_conversation(make_user: Any) -> None:
    client = _logged_in(make_user("alice"))
    page = client.get("/chat/")
    assert page.status_code == 200
    assert b"Start a conversation" in page.content
    created = client.post("/chat/new/")
    conversation = Conversation.objects.get()
    assert created["Location"] == f"/chat/{conversation.pk}/"
    page = client.get(created["Location"])
    assert f'ws-connect="/ws/chat/{conversation.pk}/"'.encode() in page.content
    assert client.get("/chat/")["Location"] == f"/chat/{conversation.pk}/"  # newest conversation


def test_conversation_shows_sanitised_markdown_and_sources(make_user: Any) -> None:
    user = make_user("alice")
    conversation = conversation_create(user=user)
    _, answer = message_start(conversation=conversation, text="Show <b>me</b>", model_name="m")
    message_finish(
        message=answer,
        text="**bold** <img src=x onerror=alert(1)> [evil](javascript:alert(1)) [1]",
        status=MessageStatus.COMPLETE,
        citations=[
            {"number": 1, "tool": "netbox_get_device", "source": "netbox", "arguments": {"name": "r1"}}
        ],
    )
    page = _logged_in(user).get(f"/chat/{conversation.pk}/").content.decode()
    assert "<strong>bold</strong>" in page
    assert "onerror" not in page.replace("&lt;img src=x onerror=alert(1)&gt;", "")
    assert 'href="javascript:' not in page  # markdown-it leaves the bad link as plain text
    assert "Show &lt;b&gt;me&lt;/b&gt;" in page  # the question is text too
    assert "netbox_get_device" in page and "Sources" in page


def test_other_users_conversation_is_404(make_user: Any) -> None:
    conversation = conversation_create(user=make_user("alice"))
    mallory = _logged_in(make_user("mallory"))
    assert mallory.get(f"/chat/{conversation.pk}/").status_code == 404
    assert mallory.post(f"/chat/{conversation.pk}/rename/", {"title": "pwned"}).status_code == 404
    assert mallory.post(f"/chat/{conversation.pk}/delete/").status_code == 404
    assert mallory.get(f"/chat/{conversation.pk}/export.md").status_code == 404
    conversation.refresh_from_db()
    assert conversation.title == "New conversation"


def test_rename_and_delete_with_htmx(make_user: Any) -> None:
    user = make_user("alice")
    conversation = conversation_create(user=user)
    client = _logged_in(user)
    response = client.post(
        f"/chat/{conversation.pk}/rename/", {"title": "  Core   outage  "}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    assert f'id="conv-{conversation.pk}"' in response.content.decode()
    assert "<html" not in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.title == "Core outage"
    response = client.post(f"/chat/{conversation.pk}/delete/", headers={"HX-Request": "true"})
    assert response["HX-Redirect"] == "/chat/"
    assert not Conversation.objects.exists()


def test_model_and_server_pickers_are_saved(make_user: Any) -> None:
    user = make_user("alice")
    conversation = conversation_create(user=user)
    model = LLMModel.objects.create(
        name="local", provider="openai_compatible", endpoint="http://127.0.0.1:9/v1", model="m"
    )
    lab = MCPServer.objects.create(
        name="lab", protocol="http", url="http://127.0.0.1:9/mcp", status=ServerStatus.HEALTHY
    )
    MCPServer.objects.create(name="other", protocol="http", url="http://127.0.0.1:9/mcp2")
    client = _logged_in(user)
    response = client.post(
        f"/chat/{conversation.pk}/settings/", {"model": str(model.pk), "servers": [str(lab.pk)]}
    )
    assert response.status_code == 200
    conversation.refresh_from_db()
    assert conversation.llm_model == model
    assert conversation.all_servers is False
    assert list(conversation.servers.all()) == [lab]
    client.post(f"/chat/{conversation.pk}/settings/", {"model": "", "all_servers": "1"})
    conversation.refresh_from_db()
    assert conversation.llm_model is None and conversation.all_servers is True
    bad = client.post(f"/chat/{conversation.pk}/settings/", {"model": "not-a-uuid"})
    assert bad.status_code == 400


def test_exports_download(make_user: Any) -> None:
    user = make_user("alice")
    conversation = conversation_create(user=user)
    _, answer = message_start(conversation=conversation, text="Hello", model_name="m")
    message_finish(message=answer, text="Hi there", status=MessageStatus.STOPPED)
    client = _logged_in(user)
    markdown = client.get(f"/chat/{conversation.pk}/export.md")
    assert markdown["Content-Type"].startswith("text/markdown")
    assert "attachment;" in markdown["Content-Disposition"]
    body = markdown.content.decode()
    assert "## You" in body and "Hello" in body and "Hi there" in body and "stopped" in body
    data = client.get(f"/chat/{conversation.pk}/export.json").json()
    assert [m["content"] for m in data["messages"]] == ["Hello", "Hi there"]
    assert client.get(f"/chat/{conversation.pk}/export.pdf").status_code == 404


def test_an_answer_left_running_by_a_dead_process_shows_as_interrupted(make_user: Any) -> None:
    user = make_user("alice")
    conversation = conversation_create(user=user)
    message_start(conversation=conversation, text="Hello", model_name="m")
    page = _logged_in(user).get(f"/chat/{conversation.pk}/").content.decode()
    assert "The answer was interrupted" in page
    assert Message.objects.get(role="assistant").status == MessageStatus.ERROR


def test_prune_conversations(make_user: Any, settings: Any, capsys: pytest.CaptureFixture[str]) -> None:
    user = make_user("alice")
    old, fresh = conversation_create(user=user), conversation_create(user=user)
    Conversation.objects.filter(pk=old.pk).update(updated=timezone.now() - timedelta(days=40))
    settings.CHAT_RETENTION_DAYS = 30
    call_command("prune_conversations", "--dry-run")
    assert "would delete 1 conversation" in capsys.readouterr().out
    assert Conversation.objects.count() == 2
    call_command("prune_conversations")
    assert list(Conversation.objects.all()) == [fresh]
    settings.CHAT_RETENTION_DAYS = 0
    call_command("prune_conversations")
    assert "kept forever" in capsys.readouterr().out.splitlines()[-1]
