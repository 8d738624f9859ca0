"""The 403, 404 and 500 pages: styled like the rest, saying why and where to go (issue 12)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.template.loader import render_to_string
from django.test import Client

pytestmark = pytest.mark.django_db


def _signed_in(*perms: str, username: str = "engineer") -> Client:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user(username, password="pw-for-tests-1")
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    client = Client()
    client.force_login(user)
    return client


def test_a_page_that_needs_a_permission_names_it_and_the_nav_hides_it() -> None:
    client = _signed_in()
    response = client.get("/registry/catalog/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "registry.view_mcpserver" in page and "You may not open this page" in page
    assert 'class="topbar"' in page and "netops.css" in page  # the site's own layout
    assert "Tool catalog</a>" not in page
    chat = client.get("/chat/").content.decode()
    assert "Tool catalog</a>" not in chat and "Changes</a>" in chat
    allowed = _signed_in("registry.view_mcpserver", username="catalog-reader")
    assert "Tool catalog</a>" in allowed.get("/chat/").content.decode()


def test_a_missing_page_is_styled_and_escapes_the_path() -> None:
    response = _signed_in().get("/missing-%3Cb%3Ebold%3C/b%3E")
    page = response.content.decode()
    assert response.status_code == 404
    assert "Nothing here" in page and "/missing-%3Cb%3Ebold" in page and "<b>bold" not in page
    assert 'class="topbar"' in page


def test_the_server_error_page_renders_without_a_request() -> None:
    page = render_to_string("500.html")
    assert "Something went wrong on our side" in page and "netops.css" in page
