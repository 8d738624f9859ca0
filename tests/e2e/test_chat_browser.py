"""The chat in a real browser: streamed answer with a tool card, safe Markdown, stop, Markdown export.

Chromium talks to a real netops (daphne, websocket, htmx) whose LLM is the scripted double and whose
tools come from the demo MCP server. Set ``NETOPS_SCREENSHOTS=/some/dir`` to keep full-page
screenshots of the key moments.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.e2e.conftest import MCP_SERVER_NAME, RunningNetops
from tests.support.scripted_llm import ScriptedLLM, ToolCallSpec, Turn

QUESTION_1 = "Is et-0/0/1 on r1 up?"
QUESTION_2 = "Check every branch router in EMEA"
TOOL_ARGUMENTS = {"device": "r1", "interface": "et-0/0/1"}
HOSTILE_SCRIPT = "<script>window.__pwned = 1</script>"
HOSTILE_IMG = '<img src=x onerror="window.__pwned = 2">'
ANSWER = (
    "Interface **et-0/0/1** on r1 is up and clean [1].\n\n"
    "| device | interface | oper status | speed |\n"
    "|---|---|---|---|\n"
    "| r1 | et-0/0/1 | up | 10G |\n\n"
    "To check it yourself on the router:\n\n"
    "```\nshow interfaces et-0/0/1 terse\n```\n\n"
    f"A ticket quoted this verbatim: {HOSTILE_SCRIPT} and {HOSTILE_IMG} (both must stay plain text).\n\n"
    "No errors or flaps in the last hour [1]."
)
HANG_TEXT = "Checking every branch router in EMEA one by one, this takes a while"
HANG_CHUNKS, HANG_CHUNK_SIZE = 5, 4
PARTIAL = HANG_TEXT[: HANG_CHUNKS * HANG_CHUNK_SIZE]

# Installed before any page script: records every tool-card state and any script element or inline
# event handler that lands in the message list, even if it is there only for a moment.
WATCH_DOM = """
(() => {
  const seen = { toolCards: [], scripts: [], handlers: [] };
  Object.defineProperty(window, "__e2e", { value: seen });
  const inspect = (el) => {
    if (el.classList.contains("tool-card")) seen.toolCards.push(el.id + " " + el.className);
    if (!el.closest("#messages")) return;
    if (el.tagName === "SCRIPT") seen.scripts.push(el.outerHTML);
    for (const attr of el.attributes) {
      if (attr.name.startsWith("on")) seen.handlers.push(el.outerHTML);
    }
  };
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "attributes") {
        if (record.target.nodeType === 1) inspect(record.target);
        continue;
      }
      for (const node of record.addedNodes) {
        if (node.nodeType !== 1) continue;
        inspect(node);
        node.querySelectorAll("*").forEach(inspect);
      }
    }
  }).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ["class"] });
})();
"""

# The newest answer: its classes and, while it runs, the text of its streaming element.
ANSWER_STATE = """
() => {
  const answers = document.querySelectorAll("#messages article.msg-assistant");
  const answer = answers[answers.length - 1];
  if (!answer) return null;
  const text = answer.querySelector('[id$="-text"]');
  return { id: answer.id, cls: answer.className, text: text ? text.textContent : null };
}
"""


class Screenshots:
    """Full-page screenshots into ``NETOPS_SCREENSHOTS`` when it is set; nothing otherwise."""

    def __init__(self, folder: str | None) -> None:
        self.folder = Path(folder) if folder else None
        self.taken: list[Path] = []
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)

    def take(self, page: Page, name: str) -> None:
        if self.folder is None:
            return
        path = self.folder / f"{len(self.taken) + 1:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)


def _wait_until(page: Page, condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``condition`` every 50 ms (letting Playwright deliver its events meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        page.wait_for_timeout(50)


def _ask(page: Page, question: str) -> None:
    expect(page.locator("#run-indicator")).to_have_attribute("data-state", "idle")
    box = page.locator("#message-input")
    box.fill(question)
    box.press("Enter")
    expect(page.locator("#messages article.msg-user").last).to_have_text(question)
    expect(box).to_have_value("")  # cleared after the send
    expect(page.locator(".empty-chat")).to_be_hidden()  # the start hint goes once there are messages
    first_question = page.locator("#messages article.msg-user").first.inner_text()
    expect(page.locator("#chat-title")).to_have_text(first_question[:60])  # titled by its first question


def _status(class_name: str) -> str:
    match = re.search(r"\bstatus-(\w+)", class_name)
    return match.group(1) if match else ""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_chat_streams_tools_renders_safely_stops_and_exports(
    page: Page, netops_server: RunningNetops, scripted_llm: ScriptedLLM
) -> None:
    shots = Screenshots(os.environ.get("NETOPS_SCREENSHOTS"))
    frames: list[str | bytes] = []
    page_errors: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.add_init_script(WATCH_DOM)

    # --- log in, land on the chat, start a conversation -----------------------------------------
    page.goto("/accounts/login/")
    page.locator("#id_username").fill(netops_server.username)
    page.locator("#id_password").fill(netops_server.password)
    page.locator("form button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/chat/$"))
    page.get_by_role("button", name="Start a conversation").click()
    expect(page).to_have_url(re.compile(r"/chat/[0-9a-f-]{36}/$"))
    _wait_until(page, lambda: bool(frames), "the chat websocket to connect and send its first frame")

    # --- question 1: a tool call, then a long Markdown answer streamed slowly -------------------
    scripted_llm.enqueue(
        Turn.tool_calls([ToolCallSpec("get_interface_status", TOOL_ARGUMENTS)]),
        Turn.text(ANSWER, chunk_size=3, delay=0.03),
    )
    _ask(page, QUESTION_1)

    lengths: list[int] = []
    last_streamed = ""
    mid_stream_shot = False
    deadline = time.monotonic() + 30
    while True:
        state: dict[str, Any] | None = page.evaluate(ANSWER_STATE)
        if state is not None and "status-running" not in state["cls"]:
            answer_id = state["id"]
            break  # the final answer replaced the streaming one
        if state is not None and state["text"] is not None:
            last_streamed = state["text"]
            if not lengths or lengths[-1] != len(last_streamed):
                lengths.append(len(last_streamed))
            if not mid_stream_shot and len(last_streamed) > len(ANSWER) // 3:
                shots.take(page, "mid-stream")
                mid_stream_shot = True
        assert time.monotonic() < deadline, f"the answer did not finish; streamed lengths {lengths}"
        page.wait_for_timeout(50)

    assert lengths == sorted(lengths), f"the streamed text shrank: {lengths}"
    assert len(lengths) >= 4, f"the answer arrived in too few pieces: {lengths}"
    assert 0 < len(last_streamed) <= len(ANSWER)
    assert ANSWER.startswith(last_streamed), (
        f"the streamed text is not a prefix of the answer: {last_streamed!r}"
    )

    answers = page.locator("#messages article.msg-assistant")
    expect(answers).to_have_count(1)
    answer = page.locator(f"#{answer_id}")
    expect(answer).to_have_class(re.compile(r"\bstatus-complete\b"))
    markdown = answer.locator(".markdown")
    expect(markdown.locator("table")).to_have_count(1)
    expect(markdown.locator("table")).to_contain_text("et-0/0/1")
    expect(markdown.locator("pre code")).to_contain_text("show interfaces et-0/0/1 terse")
    expect(markdown.locator("strong").first).to_have_text("et-0/0/1")
    sources = answer.locator(".sources")
    expect(sources).to_contain_text("Sources")
    expect(sources).to_contain_text("get_interface_status")
    expect(sources).to_contain_text(MCP_SERVER_NAME)

    card_states = [_status(entry) for entry in page.evaluate("() => window.__e2e.toolCards")]
    print(f"streamed lengths: {lengths}\ntool card states: {card_states}")
    assert card_states, "no tool card was ever shown"
    assert card_states[0] in {"running", "ok"}, card_states
    card = answer.locator(".tool-card")
    expect(card).to_have_count(1)
    expect(card).to_have_class(re.compile(r"\bstatus-ok\b"))
    expect(card.locator(".tool-name")).to_have_text("get_interface_status")
    card.locator("summary").click()  # a <details>: open it to see arguments and result
    expect(card.locator(".tool-result")).to_be_visible()
    expect(card.locator(".tool-result")).to_contain_text("oper_status")
    expect(card.locator(".tool-detail pre").first).to_contain_text("et-0/0/1")

    _assert_hostile_text_stayed_text(page, markdown)
    tool_message = scripted_llm.requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "oper_status" in tool_message["content"]
    shots.take(page, "final-answer")

    # --- question 2: stopped while the model is still "thinking" --------------------------------
    scripted_llm.enqueue(Turn.hang_after(HANG_CHUNKS, text=HANG_TEXT, chunk_size=HANG_CHUNK_SIZE, delay=0.05))
    _ask(page, QUESTION_2)
    expect(answers).to_have_count(2)
    stopped = answers.last
    expect(stopped.locator('[id$="-text"]')).to_have_text(PARTIAL)  # all it will send, then it hangs
    stop_button, send_button = page.locator(".stop-btn"), page.locator(".send-btn")
    expect(stop_button).to_be_visible()
    expect(send_button).to_be_hidden()
    shots.take(page, "running-before-stop")
    stop_button.click()

    expect(stopped.locator(".badge-stopped")).to_have_text("stopped")
    expect(stopped).to_have_class(re.compile(r"\bstatus-stopped\b"))
    expect(stopped.locator(".markdown")).to_have_text(PARTIAL)  # the partial answer is kept
    expect(send_button).to_be_visible()
    expect(stop_button).to_be_hidden()
    expect(page.locator("#run-indicator")).to_have_attribute("data-state", "idle")
    _wait_until(page, lambda: scripted_llm.disconnects >= 1, "the LLM stream to be closed", timeout=10)
    expect(answer.locator(".markdown table")).to_have_count(1)  # the first answer is intact
    shots.take(page, "after-stop")

    # --- Markdown export ------------------------------------------------------------------------
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export Markdown").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".md")
    exported = Path(download.path()).read_text(encoding="utf-8")
    print(f"--- exported {download.suggested_filename} ---\n{exported}")
    assert QUESTION_1 in exported and QUESTION_2 in exported
    assert "`get_interface_status`" in exported
    assert '"device": "r1"' in exported and '"interface": "et-0/0/1"' in exported
    assert "oper_status" in exported  # the tool's result
    assert "**Sources**" in exported
    assert ANSWER in exported
    second = exported.split(f"\n{QUESTION_2}\n", 1)[1]
    heading = next(line for line in second.splitlines() if line.startswith("## netops"))
    assert heading.endswith("· stopped"), heading
    assert PARTIAL in second

    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    assert not page_errors, page_errors
    assert scripted_llm.pending == 0
    assert len(scripted_llm.requests) == 3


def _assert_hostile_text_stayed_text(page: Page, markdown: Locator) -> None:
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    expect(page.locator("#messages script")).to_have_count(0)
    expect(page.locator("img[onerror]")).to_have_count(0)
    expect(page.locator("#messages img")).to_have_count(0)
    seen = page.evaluate("() => ({ scripts: window.__e2e.scripts, handlers: window.__e2e.handlers })")
    assert seen == {"scripts": [], "handlers": []}, seen
    expect(markdown).to_contain_text(HOSTILE_SCRIPT)
    expect(markdown).to_contain_text(HOSTILE_IMG)
