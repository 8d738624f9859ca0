"""Every page with hostile data in every user-controllable field, in a real Chromium under the CSP.

The netops child is filled by :func:`tests.security.hostile_data.create` (conversation titles,
messages and answers, tool calls, API key names, server names, descriptions, cached tools and
errors, change request summaries and diffs, audit comments), then Chromium visits every page and
clicks what it offers. On each page:

- ``window.__pwned`` stays undefined (every payload would set it);
- every request goes to the netops origin (``page.on("request")``), and the leak listener, a
  separate loopback server that every hostile image and link points at, receives nothing;
- the browser refuses nothing of netops' own (no CSP violation at all on netops' pages); the
  violations deliberately provoked at the end (an injected inline script and a remote image) are
  refused, which proves the policy is enforced, not just sent;
- the page's own behaviour still works under the policy: a streamed answer over the websocket,
  htmx swaps (rename, settings, tool lists, filters, reject), the Revoke confirmation (dismissed,
  then accepted), Swagger UI and the admin.

Screenshots of the pages go to ``NETOPS_SCREENSHOTS`` when set (e.g. ``/tmp/shots``).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.e2e.conftest import RunningNetops, _child_env, _manage
from tests.security import hostile_data
from tests.support.scripted_llm import ScriptedLLM, Turn

# Installed before any page script: CSP violations as the page sees them (with the blocked URL).
WATCH_CSP = """
(() => {
  const seen = [];
  Object.defineProperty(window, "__csp", { value: seen });
  document.addEventListener("securitypolicyviolation", (e) => {
    seen.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || ""));
  });
})();
"""

_CREATE = """
import json, os
from django.contrib.auth.models import User
from tests.security import hostile_data
User.objects.filter(username=os.environ["E2E_USERNAME"]).update(is_staff=True, is_superuser=True)
created = hostile_data.create(username=os.environ["E2E_USERNAME"], leak_url=os.environ["E2E_LEAK_URL"])
print("E2E-CREATED " + json.dumps(created.as_dict()))
"""


class _LeakHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def leak_listener() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server on its own port: the "attacker" every hostile URL points at."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LeakHandler)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.hits  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Watch:
    """What the browser did on the current page."""

    origin: str
    requests: list[str] = field(default_factory=list)
    sockets: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    answers: list[bool] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)
    shots: Path | None = None

    def foreign(self) -> list[str]:
        own = urlsplit(self.origin)
        bad = [u for u in self.requests if not u.startswith("data:") and urlsplit(u).netloc != own.netloc]
        bad += [u for u in self.sockets if urlsplit(u).netloc != own.netloc]
        return bad

    def check(self, page: Page, name: str, leak_hits: list[str]) -> None:
        """The invariants, after a page and its interactions; a screenshot when asked."""
        page.wait_for_timeout(150)  # let late requests and violation events arrive
        self.visited.append(name)
        csp = page.evaluate("() => window.__csp || []")
        assert page.evaluate("() => typeof window.__pwned") == "undefined", f"{name}: a payload ran"
        assert self.foreign() == [], f"{name}: requests left for a foreign origin"
        assert leak_hits == [], f"{name}: the leak listener was reached: {leak_hits}"
        assert self.refused == [] and csp == [], f"{name}: the CSP refused: {self.refused} {csp}"
        assert self.errors == [], f"{name}: page errors {self.errors}"
        if self.shots is not None:
            stem = self.shots / f"{len(self.visited):02d}-{name}"
            page.screenshot(path=f"{stem}.png")
            page.screenshot(path=f"{stem}-full.png", full_page=True)


def _setup(netops_server: RunningNetops, leak_url: str) -> hostile_data.Created:
    env = {
        **_child_env(netops_server.var_dir),
        "E2E_USERNAME": netops_server.username,
        "E2E_LEAK_URL": leak_url,
    }
    out = _manage(env, "shell", "-c", _CREATE)
    data = json.loads(out.split("E2E-CREATED ", 1)[1].splitlines()[0])
    return hostile_data.Created(**data)


def _watch(page: Page, netops_server: RunningNetops) -> Watch:
    shots_dir = os.environ.get("NETOPS_SCREENSHOTS")
    watch = Watch(origin=netops_server.base_url, shots=Path(shots_dir) if shots_dir else None)
    if watch.shots is not None:
        watch.shots.mkdir(parents=True, exist_ok=True)
    page.add_init_script(WATCH_CSP)
    page.on("request", lambda request: watch.requests.append(request.url))
    page.on("websocket", lambda ws: watch.sockets.append(ws.url))
    page.on("pageerror", lambda error: watch.errors.append(str(error)))

    def on_dialog(dialog: Dialog) -> None:
        watch.dialogs.append(dialog.message)
        if watch.answers and watch.answers.pop(0):
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on(
        "console",
        lambda message: watch.refused.append(message.text) if "Refused to" in message.text else None,
    )
    return watch


def _answer_dialogs(watch: Watch, answers: list[bool]) -> None:
    """Answer the next confirm dialogs in order (True: OK, False: Cancel); any other is dismissed."""
    watch.answers[:] = answers


def _login(page: Page, netops_server: RunningNetops, watch: Watch, leak_hits: list[str]) -> None:
    page.goto("/api/docs/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/api/docs/$"))  # not a blank page
    watch.check(page, "login", leak_hits)
    page.locator("#id_username").fill(netops_server.username)
    page.locator("#id_password").fill(netops_server.password)
    page.locator("form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/api/docs/$"))


def _api_docs(page: Page, watch: Watch, leak_hits: list[str]) -> None:
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("netops API", timeout=20_000)
    operation = page.locator(".opblock-summary").first
    expect(operation).to_be_visible()
    operation.click()
    expect(page.locator(".opblock-body").first).to_be_visible()
    assert any(
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in u for u in watch.requests
    )
    watch.check(page, "api-docs", leak_hits)


def _conversation(
    page: Page,
    created: hostile_data.Created,
    scripted_llm: ScriptedLLM,
    watch: Watch,
    leak_url: str,
    leak_hits: list[str],
) -> None:
    page.goto("/chat/")
    expect(page).to_have_url(re.compile(r"/chat/[0-9a-f-]{36}/$"))
    page.goto(f"/chat/{created.conversation_id}/")
    expect(page.locator("#chat-title")).to_have_text(hostile_data.ALL[:200])
    assert watch.sockets, "the chat websocket did not connect"
    cards = page.locator("#messages .tool-card")
    expect(cards).to_have_count(len(hostile_data.PAYLOADS))
    for index in range(cards.count()):
        cards.nth(index).locator("summary").click()
        expect(cards.nth(index).locator(".tool-result")).to_contain_text(hostile_data.SCRIPT)
    markdown = page.locator("#messages .msg-assistant .markdown").first
    expect(markdown).to_contain_text(hostile_data.IMG)  # shown as text
    image_link = markdown.locator("a.md-image").first
    expect(image_link).to_have_attribute("href", f"{leak_url}/leak.png?d=secret-from-markdown")
    expect(image_link).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(page.locator("#messages img, #messages svg, #messages iframe, #messages script")).to_have_count(0)
    expect(page.locator("#messages a[href^='javascript']")).to_have_count(0)
    _open_menu(page, f"conv-{created.conversation_id}")
    watch.check(page, "conversation", leak_hits)
    _open_menu(page, "")

    # htmx over the websocket under the CSP: a streamed answer, with hostile Markdown in it.
    scripted_llm.enqueue(Turn.text(hostile_data.markdown_answer(leak_url), chunk_size=40, delay=0.01))
    page.locator("#message-input").fill(f"again {hostile_data.ALL}")
    page.locator("#message-input").press("Enter")
    answers = page.locator("#messages article.msg-assistant")
    expect(answers).to_have_count(2)
    expect(answers.last).to_have_class(re.compile(r"\bstatus-complete\b"), timeout=20_000)
    expect(answers.last.locator(".markdown a.md-image").first).to_have_text("status graph")
    watch.check(page, "conversation-streamed", leak_hits)

    # htmx swaps: rename to another hostile title, change the model (settings saved).
    menu = page.locator(f"#conv-{created.conversation_id} details.conv-menu")
    _open_menu(page, f"conv-{created.conversation_id}")
    menu.locator("input[name=title]").fill(hostile_data.SVG + hostile_data.QUOTE_BREAK)
    menu.get_by_role("button", name="Rename").click()
    expect(page.locator(f"#conv-link-{created.conversation_id}")).to_have_text(
        hostile_data.SVG + hostile_data.QUOTE_BREAK
    )
    _open_menu(page, "")
    page.locator("select[name=model]").select_option(index=1)
    expect(page.locator("#settings-saved")).not_to_be_empty()
    watch.check(page, "conversation-htmx", leak_hits)


def _open_menu(page: Page, item_id: str) -> None:
    """Open one conversation's menu, every other one closed (an open menu covers its neighbours)."""
    page.evaluate(
        """(id) => document.querySelectorAll("details.conv-menu").forEach(
            (d) => { d.open = d.closest("li").id === id; })""",
        item_id,
    )


def _delete_small_conversation(page: Page, watch: Watch, leak_hits: list[str]) -> None:
    """hx-confirm with a hostile title: dismissed, then accepted."""
    item = page.locator(".conversation-list li", has_text=hostile_data.IMG).first
    item_id = item.get_attribute("id") or ""
    _answer_dialogs(watch, [False, True])
    for _ in range(2):
        _open_menu(page, item_id)
        item.get_by_role("button", name="Delete").click()
        page.wait_for_timeout(300)
        if watch.dialogs and len(watch.dialogs) == 1:
            expect(page.locator(f"#{item_id}")).to_have_count(1)  # dismissed: still there
    assert watch.dialogs[:2] == [f"Delete “1 {hostile_data.IMG}” and its messages?"] * 2, watch.dialogs
    page.wait_for_load_state()
    watch.dialogs.clear()
    watch.check(page, "conversation-deleted", leak_hits)


def _catalog(page: Page, created: hostile_data.Created, watch: Watch, leak_hits: list[str]) -> None:
    page.goto("/registry/catalog/")
    for server_id in created.server_ids:
        row = page.locator(f"#server-{server_id}")
        row.locator(".tools-row details > summary").click()
        expect(row.locator(".tools .tool-list > li")).to_have_count(len(hostile_data.PAYLOADS))
        tools = row.locator(".tools .tool-list > li details")
        for index in range(tools.count()):
            tools.nth(index).locator("summary").click()
        expect(row.locator("pre.schema").first).to_contain_text("properties")
    expect(page.locator("main img, main svg, main iframe, main script")).to_have_count(0)
    watch.check(page, "catalog", leak_hits)
    checked = page.locator(f"#server-{created.server_ids[1]}")
    with page.expect_response(
        lambda r: r.url.endswith(f"/servers/{created.server_ids[1]}/check/"), timeout=30_000
    ):
        checked.get_by_role("button", name="Check now").click()
    expect(checked.locator("td").nth(4)).to_contain_text("checked in", timeout=10_000)  # the row was swapped
    watch.check(page, "catalog-checked", leak_hits)


def _keys(page: Page, created: hostile_data.Created, watch: Watch, leak_hits: list[str]) -> None:
    page.goto("/registry/keys/")
    row = page.locator("tr", has=page.locator(f"td.mono:text-is('{created.key_prefixes[0]}…')"))
    expect(row.locator("td").first).to_have_text(hostile_data.QUOTE_BREAK)
    expected = f"Revoke {hostile_data.QUOTE_BREAK}? Clients using it stop working at once."
    _answer_dialogs(watch, [False])
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_timeout(300)
    assert watch.dialogs == [expected], watch.dialogs
    expect(row.get_by_role("button", name="Revoke")).to_be_visible()  # dismissed: nothing happened
    watch.check(page, "keys-revoke-dismissed", leak_hits)
    _answer_dialogs(watch, [True])
    with page.expect_navigation():
        row.get_by_role("button", name="Revoke").click()
    row = page.locator("tr", has=page.locator(f"td.mono:text-is('{created.key_prefixes[0]}…')"))
    expect(row).to_contain_text("revoked")
    # A new key with a hostile name, through the form.
    page.locator("input[name=name]").fill(hostile_data.ATTRIBUTE[:50])
    with page.expect_navigation():
        page.get_by_role("button", name="Create key").click()
    expect(page.locator("#new-key")).to_contain_text("nop_")
    watch.dialogs.clear()
    watch.check(page, "keys", leak_hits)


def _changes(page: Page, created: hostile_data.Created, watch: Watch, leak_hits: list[str]) -> None:
    page.goto("/changes/")
    table = page.locator("#queue-table")
    expect(table.locator("tbody tr")).to_have_count(len(created.change_ids))
    requester = page.locator("input[name=requester]")
    requester.press_sequentially("nobody-matches-this")  # keyup: htmx reloads the table
    expect(table).to_contain_text("No change requests match these filters")
    expect(page).to_have_url(re.compile(r"requester=nobody-matches-this"))  # hx-push-url
    requester.fill("")
    requester.press("End")
    expect(table.locator("tbody tr")).to_have_count(len(created.change_ids))
    assert any(urlsplit(s).path == "/ws/changes/" for s in watch.sockets)
    watch.check(page, "queue", leak_hits)
    for change_id in created.change_ids:
        page.goto(f"/changes/{change_id}/")
        expect(page.locator("h1")).to_contain_text(f"#{change_id}")
        for details in page.locator("details").all():
            details.locator("summary").click()
        expect(page.locator("main img, main svg, main iframe, main script")).to_have_count(0)
        watch.check(page, f"change-{change_id}", leak_hits)
    pending = created.change_ids[0]
    page.goto(f"/changes/{pending}/")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#change-panel .state")).to_have_text("Rejected")
    watch.check(page, "change-rejected", leak_hits)


def _admin_hostile_rows(
    page: Page, created: hostile_data.Created, watch: Watch, leak_hits: list[str]
) -> None:
    """The change forms of the hostile rows themselves (a ``javascript:`` URL among them)."""
    urls = [f"/admin/registry/mcpserver/{pk}/change/" for pk in created.server_ids]
    urls.append(f"/admin/chat/conversation/{created.conversation_id}/change/")
    for url in urls:
        page.goto(url)
        expect(page.locator("#content-main form")).to_be_visible()
        expect(page.locator("a[href^='javascript' i]")).to_have_count(0)
        sources = page.locator("#content-main img, #content-main iframe").evaluate_all(
            "els => els.map(e => e.getAttribute('src'))"
        )
        assert all(src.startswith("/static/admin/") for src in sources), sources  # the admin's own icons
        expect(page.locator("#content-main svg")).to_have_count(0)
        watch.check(page, "admin-hostile-" + url.strip("/").split("/")[2], leak_hits)


def _admin(page: Page, watch: Watch, leak_hits: list[str]) -> int:
    page.goto("/admin/")
    links = sorted(
        {
            href
            for href in page.locator("#content-main a").evaluate_all(
                "els => els.map(e => e.getAttribute('href'))"
            )
            if href and href.startswith("/admin/") and href.count("/") == 4
        }
    )
    watch.check(page, "admin", leak_hits)
    pages = 0
    for changelist in links:
        page.goto(changelist)
        pages += 1
        watch.check(page, "admin-" + changelist.strip("/").replace("/", "-"), leak_hits)
        first = page.locator("#result_list tbody tr th a, #result_list tbody tr td a").first
        if first.count():
            first.click()
            page.wait_for_load_state()
            pages += 1
            for collapsed in page.locator("fieldset.collapse summary, details > summary").all():
                if collapsed.is_visible():
                    collapsed.click()
            watch.check(page, "admin-change-" + changelist.strip("/").replace("/", "-"), leak_hits)
    return pages


def _provoke(page: Page, watch: Watch, leak_url: str, leak_hits: list[str]) -> None:
    """Inject an inline script and a remote image: the CSP must refuse both (it is enforced)."""
    page.goto("/registry/keys/")
    page.evaluate(
        """(leak) => {
            const s = document.createElement("script"); s.textContent = "window.__pwned = 1";
            document.body.appendChild(s);
            const i = document.createElement("img"); i.src = leak + "/provoked.png"; document.body.appendChild(i);
        }""",
        leak_url,
    )
    page.wait_for_timeout(500)
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    violations = page.evaluate("() => window.__csp")
    assert any(v.startswith("script-src") and "inline" in v for v in violations), violations
    assert any(v.startswith("img-src") and leak_url in v for v in violations), violations
    assert leak_hits == []
    print(f"provoked violations (refused, as they must be): {violations}")


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_hostile_data_never_runs_or_leaks_in_any_page(
    page: Page, netops_server: RunningNetops, scripted_llm: ScriptedLLM, leak_listener: tuple[str, list[str]]
) -> None:
    leak_url, leak_hits = leak_listener
    created = _setup(netops_server, leak_url)
    watch = _watch(page, netops_server)

    _login(page, netops_server, watch, leak_hits)
    _api_docs(page, watch, leak_hits)
    _conversation(page, created, scripted_llm, watch, leak_url, leak_hits)
    _delete_small_conversation(page, watch, leak_hits)
    _catalog(page, created, watch, leak_hits)
    _keys(page, created, watch, leak_hits)
    _changes(page, created, watch, leak_hits)
    admin_pages = _admin(page, watch, leak_hits)
    assert admin_pages >= 10, admin_pages
    _admin_hostile_rows(page, created, watch, leak_hits)
    _provoke(page, watch, leak_url, leak_hits)

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    print(f"pages checked: {len(watch.visited)}; requests: {len(watch.requests)}; sockets: {watch.sockets}")
    assert leak_hits == []
    assert scripted_llm.pending == 0
