"""Injection and exfiltration in the browser, checked on the server side.

- Templates carry no inline event handler, inline script, inline style, ``javascript:`` URL or
  template value inside a script; behaviour lives in ``static/js`` behind ``data-*`` attributes.
- Every page and API response has the Content-Security-Policy.
- Model output never yields an ``<img>`` (or any other fetching element): images become links.
- A hostile API key name sits only in an auto-escaped ``data-confirm`` attribute.
- ``/api/docs/`` is Swagger UI from the installed sidecar package, behind the login page.

The real-browser counterpart (same hostile data, chromium) is ``tests/e2e/test_hostile_pages.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from chat.markdown import render_markdown
from tests.security import hostile_data

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIRS = [
    ROOT / "templates",
    *(ROOT / app / "templates" for app in ("netops", "registry", "chat", "netboxrw")),
]
LEAK = "http://127.0.0.1:9"

REQUIRED_DIRECTIVES = {
    "default-src": {"'self'"},
    "script-src": {"'self'"},
    "style-src": {"'self'"},
    "img-src": {"'self'", "data:"},
    "connect-src": {"'self'"},
    "object-src": {"'none'"},
    "frame-ancestors": {"'none'"},
    "base-uri": {"'none'"},
    "form-action": {"'self'"},
}


def _templates() -> list[Path]:
    found = sorted(p for d in TEMPLATE_DIRS if d.is_dir() for p in d.rglob("*.html"))
    assert len(found) >= 10, found
    return found


def _strip_comments(source: str) -> str:
    source = re.sub(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", "", source, flags=re.S)
    return re.sub(r"{#.*?#}", "", source, flags=re.S)


_URL_ATTRIBUTES = {
    "href", "src", "action", "formaction", "data", "poster", "srcset", "xlink:href", "ws-connect",
    "hx-get", "hx-post", "hx-put", "hx-patch", "hx-delete",
}  # fmt: skip
# Template values that may sit in a URL attribute: the view computes them (static files, reversed URLs).
_SAFE_URL_VALUES = {
    "favicon_href",
    "swagger_ui_css",
    # Tool cards: ``item.url`` is built by ``reverse("chat:tool_content", ...)`` (netops' own view,
    # chat/fragments.py) and ``item.href`` is set only for http(s) URIs with a host
    # (chat/content.py card_items); tests/chat/test_tool_content.py checks both.
    "item.url",
    "item.href",
}


class _TagScan(HTMLParser):
    """Collects what the CSP would refuse or what puts a value into code, per template."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.problems: list[str] = []
        self.fetching: list[str] = []  # elements that would load something by themselves
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            value = value or ""
            if re.fullmatch(r"on\w+", name) or name.startswith(("hx-on", "data-hx-on")):
                self.problems.append(f"inline event handler {name}={value!r} on <{tag}>")
            if name == "style":
                self.problems.append(f"inline style on <{tag}>")
            if name in _URL_ATTRIBUTES and value.strip().lower().startswith(
                ("javascript:", "vbscript:", "data:text")
            ):
                self.problems.append(f"script URL in {name} on <{tag}>")
            if name in {"hx-vals", "hx-headers", "data-hx-vals"} and (
                "js:" in value or "javascript:" in value
            ):
                self.problems.append(f"{name} evaluates code")
            if name in {"hx-vals", "hx-headers"} and "{{" in value and "|escapejs" not in value:
                self.problems.append(f"template value in {name} JSON without escapejs: {value!r}")
        if tag in {"img", "svg", "iframe", "object", "embed", "video", "audio", "source", "base", "frame"}:
            self.fetching.append(f"<{tag} {attrs}>")
        if tag == "style":
            self.problems.append("inline <style>")
        if tag == "script" and "src" not in dict(attrs) and dict(attrs).get("type") != "application/json":
            self._in_script = True
            self.problems.append("inline <script> body")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and ("{{" in data or "{%" in data):
            self.problems.append("template value inside <script>")


def test_templates_have_no_inline_script_handler_style_or_javascript_url() -> None:
    problems = []
    for path in _templates():
        source = _strip_comments(path.read_text())
        scan = _TagScan()
        scan.feed(source)
        problems += [f"{path.relative_to(ROOT)}: {p}" for p in scan.problems]
        # Attributes the parser may not see as such (inside template tags) and unquoted values.
        for match in re.finditer(r"\s(on[a-z]+)\s*=", source):
            problems.append(f"{path.relative_to(ROOT)}: inline handler {match.group(1)}")
        for match in re.finditer(r"""\s[\w:-]+=({{[^}]*}})""", source):
            problems.append(f"{path.relative_to(ROOT)}: unquoted attribute value {match.group(1)}")
        for match in re.finditer(r"""\s(?:href|src|action)=["']{{\s*([\w.]+)[^}]*}}""", source):
            if match.group(1) not in _SAFE_URL_VALUES:
                problems.append(
                    f"{path.relative_to(ROOT)}: URL from a template value {match.group(0).strip()}"
                )
    assert problems == []


def test_chat_fragments_have_no_inline_handler_or_script() -> None:
    """The websocket frames are HTML built in Python: the same rules as the templates."""
    source = (ROOT / "chat" / "fragments.py").read_text()
    assert not re.search(r"\son[a-z]+=", source)
    assert "<script" not in source and "style=" not in source and "javascript:" not in source


def _policy(response: object) -> dict[str, set[str]]:
    header = response["Content-Security-Policy"]  # type: ignore[index]
    directives: dict[str, set[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = set(words[1:])
    return directives


@pytest.fixture
def hostile(make_user: Callable[..., User]) -> tuple[Client, hostile_data.Created]:
    user = make_user("engineer", "netboxrw.approve_changerequest", superuser=True)
    created = hostile_data.create(username=user.username, leak_url=LEAK)
    client = Client()
    client.force_login(user)
    return client, created


def _page_urls(created: hostile_data.Created) -> list[str]:
    urls = [
        "/chat/",
        f"/chat/{created.conversation_id}/",
        "/registry/catalog/",
        *(f"/registry/catalog/servers/{pk}/tools/" for pk in created.server_ids),
        "/registry/keys/",
        "/changes/",
        *(f"/changes/{pk}/" for pk in created.change_ids),
        "/api/docs/",
        "/admin/",
    ]
    for model in admin.site._registry:
        meta = model._meta
        urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        first = model._default_manager.first()
        if first is not None:
            urls.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk]))
    return urls


@pytest.mark.django_db
def test_every_page_and_api_response_has_the_csp(
    hostile: tuple[Client, hostile_data.Created], admin_api: object
) -> None:
    client, created = hostile
    responses = {url: client.get(url) for url in _page_urls(created)}
    responses["/accounts/login/ (anonymous)"] = Client().get("/accounts/login/")
    responses["/api/schema/ (anonymous)"] = Client().get("/api/schema/")
    responses["/api/llm-models/ (token)"] = admin_api.get("/api/llm-models/")  # type: ignore[attr-defined]
    responses["/api/mcp/tools (no key)"] = Client().get("/api/mcp/tools")
    responses["/healthz"] = Client().get("/healthz")
    failures = []
    for url, response in responses.items():
        if response.status_code >= 500:
            failures.append(f"{url}: {response.status_code}")
            continue
        if "Content-Security-Policy" not in response:
            failures.append(f"{url}: no Content-Security-Policy")
            continue
        policy = _policy(response)
        for directive, sources in REQUIRED_DIRECTIVES.items():
            if policy.get(directive) != sources:
                failures.append(f"{url}: {directive} is {policy.get(directive)}, wanted {sources}")
    assert failures == []
    assert len(responses) > 20


def test_model_images_render_as_links_and_nothing_fetches() -> None:
    html = render_markdown(hostile_data.markdown_answer(LEAK))
    assert not re.search(
        r"<(img|iframe|object|embed|svg|style|link|form|base|meta|script|video|audio|source)\b", html
    )
    scan = _TagScan()
    scan.feed(html)
    assert scan.problems == [] and scan.fetching == []
    assert f'<a class="md-image" href="{LEAK}/leak.png?d=secret-from-markdown"' in html
    for anchor in re.findall(r"<a\b[^>]*>", html):
        assert 'rel="noopener noreferrer nofollow"' in anchor, anchor
        href = re.search(r'href="([^"]*)"', anchor)
        assert href is None or href.group(1).startswith(("http://", "https://", "mailto:")), anchor


@pytest.mark.django_db
def test_hostile_values_reach_pages_only_as_escaped_text(
    hostile: tuple[Client, hostile_data.Created],
) -> None:
    client, created = hostile
    for url in _page_urls(created):
        if url.startswith("/admin/") or url == "/api/docs/":
            continue
        body = client.get(url).content.decode()
        for payload in (hostile_data.SCRIPT, hostile_data.IMG, hostile_data.SVG):  # quotes in text are text
            assert payload not in body, (url, payload)
        scan = _TagScan()
        scan.feed(body)
        assert scan.problems == [], url
        assert scan.fetching == [], url
        assert 'href="javascript:' not in body.lower(), url


@pytest.mark.django_db
def test_hostile_key_name_is_an_escaped_data_attribute_not_javascript(
    hostile: tuple[Client, hostile_data.Created],
) -> None:
    client, _ = hostile
    body = client.get("/registry/keys/").content.decode()
    assert "onclick" not in body
    assert (
        'data-confirm="Revoke &#x27;+(window.__pwned=1)+&#x27;? Clients using it stop working at once."'
        in body
    )
    assert "'+(window.__pwned=1)+'" not in body


@pytest.mark.django_db
def test_api_docs_from_the_package_behind_the_login(make_user: Callable[..., User]) -> None:
    anonymous = Client().get("/api/docs/")
    assert anonymous.status_code == 302
    assert anonymous["Location"] == "/accounts/login/?next=/api/docs/"
    schema = Client().get("/api/schema/")
    assert schema.status_code == 401 and b"error: Authentication credentials" in schema.content  # as before

    client = Client()
    client.force_login(make_user("reader"))
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    sources = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith(("/static/", "/api/docs/?")) for s in sources), sources
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in sources
    assert "cdn" not in html and "<style" not in html
    scan = _TagScan()
    scan.feed(html)
    assert scan.problems == []
    for source in sources:
        if source.startswith("/static/"):
            assert finders.find(source.removeprefix("/static/")), source
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode() and '"validatorUrl": null' in script.content.decode()
