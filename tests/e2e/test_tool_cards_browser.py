"""Tool cards in a real browser: an image from netops' own origin, a progress bar mid-call, a refused
call, and the "too many tools" note in the picker and on sending.

Chromium talks to a real netops (daphne, websocket, htmx). Its tools come from the npm reference
server ``server-everything`` over stdio (``get-tiny-image``, ``get-resource-links``,
``trigger-long-running-operation``) and the demo MCP server; the LLM is the scripted double.
``LLM_MAX_TOOLS`` is set to what ``everything`` offers alone, so selecting both servers is too many.
Set ``NETOPS_SCREENSHOTS=/some/dir`` to keep screenshots (light, dark, 390 px wide).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import MCP_SERVER_NAME, PASSWORD, USERNAME, RunningNetops, _child_env, _manage
from tests.e2e.test_chat_browser import Screenshots, _wait_until
from tests.support.daphne import daphne
from tests.support.npm_everything import everything_command
from tests.support.processes import mcp_demo_server
from tests.support.scripted_llm import ScriptedLLM, ToolCallSpec, Turn

EVERYTHING = "everything"
STEPS, DURATION = 8, 8.0  # one progress notification a second

_SETUP = """
import json, os
from django.contrib.auth.models import User
from registry.models import LLMModel, MCPServer
from registry.services import llm_model_save

User.objects.create_user(os.environ["E2E_USERNAME"], password=os.environ["E2E_PASSWORD"])
llm_model_save(model=LLMModel(name="scripted", provider="openai_compatible", endpoint=os.environ["E2E_LLM_URL"],
                              model="gpt-scripted", request_timeout=30, is_default=True))
MCPServer.objects.create(name=os.environ["E2E_MCP_NAME"], protocol="http", url=os.environ["E2E_MCP_URL"])
command, *args = json.loads(os.environ["E2E_EVERYTHING"])
MCPServer.objects.create(name="everything", protocol="stdio", command=command, args=args, health_check="",
                         call_timeout=60)
"""
_COUNT = """
from registry.catalog import ToolCatalog
from registry.models import MCPServer
everything = MCPServer.objects.get(name="everything")
print("E2E-TOOLS", len(ToolCatalog.load(server_ids=[everything.pk])))
"""


@pytest.fixture
def netops_everything(tmp_path: Path, scripted_llm: ScriptedLLM) -> Iterator[RunningNetops]:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    env = _child_env(var_dir)
    with mcp_demo_server("http") as mcp:
        _manage(env, "migrate", "--noinput")
        _manage(
            {
                **env,
                "E2E_USERNAME": USERNAME,
                "E2E_PASSWORD": PASSWORD,
                "E2E_LLM_URL": scripted_llm.base_url,
                "E2E_MCP_URL": mcp.base_url + "/mcp",
                "E2E_MCP_NAME": MCP_SERVER_NAME,
                "E2E_EVERYTHING": json.dumps(everything_command()),
            },
            "shell",
            "-c",
            _SETUP,
        )
        out = _manage(env, "check_mcp_servers")
        assert f"{MCP_SERVER_NAME}: healthy" in out and f"{EVERYTHING}: healthy" in out, out
        fits = int(re.search(r"E2E-TOOLS (\d+)", _manage(env, "shell", "-c", _COUNT)).group(1))  # type: ignore[union-attr]
        log = tmp_path / "daphne.log"
        with daphne({**env, "LLM_MAX_TOOLS": str(fits)}, log=log) as server:
            yield RunningNetops(server.base_url, USERNAME, PASSWORD, var_dir, log)


def _login(page: Page, netops: RunningNetops) -> None:
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(netops.username)
    page.locator("#id_password").fill(netops.password)
    page.locator("form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/chat/$"))


def _select_only_everything(page: Page) -> None:
    page.locator(".server-picker summary").click()
    page.get_by_label(re.compile("All healthy servers")).uncheck()
    expect(page.locator("#settings-saved")).to_contain_text("Saved")
    page.locator("#settings-saved").evaluate("el => el.textContent = ''")
    page.locator(".server-picker-body label", has_text=MCP_SERVER_NAME).filter(
        has_not_text=EVERYTHING
    ).locator("input").uncheck()
    expect(page.locator("#settings-saved")).to_contain_text("Saved")
    expect(page.locator("#tool-budget")).not_to_contain_text("Too many tools")
    page.locator(".server-picker summary").click()  # close it


def _contexts(browser: Browser, netops: RunningNetops) -> dict[str, Page]:
    """The same user in three browsers: light, dark and a 390 px phone (each its own session)."""
    pages: dict[str, Page] = {}
    for name, options in {
        "light": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "light"},
        "dark": {"viewport": {"width": 1280, "height": 900}, "color_scheme": "dark"},
        "narrow": {
            "viewport": {"width": 390, "height": 844},
            "color_scheme": "light",
            "device_scale_factor": 2,
        },
    }.items():
        context = browser.new_context(base_url=netops.base_url, **options)  # type: ignore[arg-type]
        context.set_default_timeout(20_000)
        pages[name] = context.new_page()
    return pages


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tool_cards_show_images_progress_refusals_and_the_tool_bound(
    browser: Browser, netops_everything: RunningNetops, scripted_llm: ScriptedLLM
) -> None:
    shots = Screenshots(os.environ.get("NETOPS_SCREENSHOTS"))
    pages = _contexts(browser, netops_everything)
    page = pages["light"]
    errors: list[str] = []
    csp_violations: list[str] = []
    for each in pages.values():
        each.on("pageerror", lambda error: errors.append(str(error)))
        each.on(
            "console",
            lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None,
        )
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))

    _login(page, netops_everything)
    page.get_by_role("button", name="Start a conversation").click()
    expect(page).to_have_url(re.compile(r"/chat/[0-9a-f-]{36}/$"))
    conversation_url = page.url

    # --- too many tools: every server selected, the picker says which to drop, sending is refused ----
    page.locator(".server-picker summary").click()
    budget = page.locator("#tool-budget")
    expect(budget).to_contain_text("Too many tools")
    expect(budget).to_contain_text(EVERYTHING)
    expect(page.locator("#tool-budget-flag")).to_contain_text("tools, max")
    shots.take(page, "too-many-tools-picker-light")
    page.locator(".server-picker summary").click()
    page.locator("#message-input").fill("Show me the tiny image")
    page.locator("#message-input").press("Enter")
    toast = page.locator("#chat-toast")
    expect(toast).to_contain_text("Deselect tool servers")
    expect(toast).to_contain_text(f"{MCP_SERVER_NAME} (")
    assert scripted_llm.requests == [], "a request the provider would reject was sent"
    expect(page.locator("#messages article")).to_have_count(0)
    for name in ("dark", "narrow"):
        other = pages[name]
        _login(other, netops_everything)
        other.goto(conversation_url)
        other.locator(".server-picker summary").click()
        expect(other.locator("#tool-budget")).to_contain_text("Too many tools")
        shots.take(other, f"too-many-tools-picker-{name}")
        other.locator(".server-picker summary").click()
    shots.take(page, "too-many-tools-toast-light")

    # --- one server: an image, links, a refused call and a long call with progress -------------------
    _select_only_everything(page)
    scripted_llm.enqueue(
        Turn.tool_calls(
            [
                ToolCallSpec("get-tiny-image", {}),
                ToolCallSpec("get-sum", {"a": "two", "b": 3}),
                ToolCallSpec("get-resource-links", {"count": 2}),
                ToolCallSpec("trigger-long-running-operation", {"duration": DURATION, "steps": STEPS}),
            ]
        ),
        Turn.text("Here is the image [1]; the sum was refused [2]; links [3]; the operation finished [4]."),
    )
    page.locator("#message-input").fill("Show me the tiny image")
    page.locator("#message-input").press("Enter")

    # Mid-call: the long operation's card has a determinate bar that moves.
    bar = page.locator(".tool-card.status-running .tool-progress progress")
    expect(bar).to_have_count(1, timeout=20_000)
    _wait_until(page, lambda: float(bar.get_attribute("value") or 0) >= 2, "the progress bar to move", 20)
    assert bar.get_attribute("max") == str(STEPS)
    first = float(bar.get_attribute("value") or 0)
    for name in ("dark", "narrow"):
        pages[name].goto(conversation_url)  # re-attaches to the running answer
        expect(pages[name].locator(".tool-card.status-running .tool-progress progress")).to_have_count(1)
    shots.take(page, "progress-mid-call-light")
    for name in ("dark", "narrow"):
        pages[name].wait_for_timeout(1200)
        shots.take(pages[name], f"progress-mid-call-{name}")
    _wait_until(
        page, lambda: bar.count() == 0 or float(bar.get_attribute("value") or 0) > first, "more progress", 20
    )
    assert any("<progress" in frame for frame in frames), "no socket frame carried progress"

    # The end: the stored answer shows the image from netops' own view, the refusal, the links.
    answer = page.locator("#messages article.msg-assistant").last
    expect(answer).to_have_class(re.compile(r"\bstatus-complete\b"), timeout=40_000)
    cards = answer.locator(".tool-card")
    expect(cards).to_have_count(4)
    refused = answer.locator(".tool-card.status-refused")
    expect(refused).to_have_count(1)
    expect(refused.locator("summary")).to_contain_text("refused")
    image_card = cards.nth(0)
    image_card.locator("summary").click()
    image = image_card.locator(".tool-image img")
    expect(image).to_have_count(1)
    src = image.get_attribute("src") or ""
    assert re.fullmatch(r"/chat/[0-9a-f-]{36}/calls/\d+/content/\d+/", src), src
    _wait_until(
        page, lambda: image.evaluate("img => img.complete && img.naturalWidth > 0"), "the image to load"
    )
    refused.locator("summary").click()
    expect(refused.locator(".tool-detail")).to_contain_text("Refused — the tool was not called")
    expect(refused.locator(".tool-result")).to_contain_text("is not of type")
    links = cards.nth(2)
    links.locator("summary").click()
    # The reference server's links are demo:// URIs: shown as text, never as links.
    expect(links.locator(".tool-link")).to_have_count(2)
    expect(links.locator(".tool-link a")).to_have_count(0)
    expect(links.locator(".tool-link").first).to_contain_text("not a web link")
    shots.take(page, "cards-image-refused-links-light")
    for name in ("dark", "narrow"):
        other = pages[name]
        other.goto(conversation_url)
        other_answer = other.locator("#messages article.msg-assistant").last
        for index in (0, 1, 2):
            other_answer.locator(".tool-card").nth(index).locator("summary").click()
        other.wait_for_timeout(300)
        shots.take(other, f"cards-image-refused-links-{name}")

    # The model got a description of the image (this model takes no image input) and the refusal.
    tool_messages = [m["content"] for m in scripted_llm.requests[1].body["messages"] if m["role"] == "tool"]
    assert "[image: image/png, " in tool_messages[0]
    assert tool_messages[1].startswith("[2] REFUSED: a: 'two' is not of type 'number'")
    assert errors == [], errors
    assert csp_violations == [], csp_violations
    for each in pages.values():
        each.context.close()
    print("screenshots:", *shots.taken, sep="\n  ")
