"""Chat streaming through a real daphne process: time to first token, per-token relay cost, 100 streams.

netops runs as one real ``daphne`` process (embedded defaults: SQLite, in-memory channel layer and
checkpoints) on a scratch database this script prepares with the ORM. The LLM is the ScriptedLLM
(the real OpenAI SSE protocol on loopback) running inside *this* process, so the instants it records
for every chunk it sends (``sent_chunks``) and the arrival instants the websocket clients here record
share one clock (``time.monotonic``). Each figure is set against a baseline measured in the same run:
the same request, streamed from the same ScriptedLLM by a direct ``openai.AsyncOpenAI`` client (what
netops cannot go below: it uses that SDK itself).

1. Time to first token: a conversation with 50 earlier messages and 100 tools in the catalog (the demo
   MCP server over HTTP with ``--tools 95``, health-checked so its tools are cached). netops: websocket
   send -> first token frame. Direct: ``create()`` -> first content chunk of the equivalent request
   (same system prompt, history, question and 100 functions; checked against what netops sent), on
   one long-lived client. Also shown: the direct request on a new client per request, built the way
   ``chat.runs`` builds one per answer. Alternating rounds after a warm-up. Target: difference of
   medians <= 30 ms.
2. Per-token relay overhead of a 500-token answer paced at 2 ms: per chunk, arrival at the client minus
   the instant the LLM sent it. netops frames may coalesce chunks: a chunk arrives with the frame that
   completes it. Target: median overhead (netops - direct) <= 1 ms. Also CPU per answer: the daphne
   process (/proc) against the direct client's thread.
3. 100 conversations (one user, one socket each) sending at once, 300 tokens each paced at 10 ms:
   tokens lost (must be 0), gaps between consecutive token frames per socket against the LLM's own
   gaps between consecutive chunks of one stream, wall time, aggregate tokens/s and daphne's CPU.

Websocket client: autobahn's asyncio client (installed with daphne; ``websockets`` is not installed
and nothing is added). This process therefore runs Django with ``bench._client_settings``: the
project's settings without the ``daphne`` app, whose import pins autobahn's txaio to Twisted. The
daphne process runs the unchanged ``netops.settings``. autobahn parses received bytes one event-loop
turn after they arrive, a small delay in every netops figure that the direct baseline does not have.

Run: ``cd /work/main && .venv/bin/python bench/chat_streaming.py`` (30-60 s).
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autobahn.asyncio.websocket import WebSocketClientFactory, WebSocketClientProtocol

from bench._setup import django_on_scratch_db, percentile

HISTORY_PAIRS = 25  # 50 earlier messages
CATALOG_TOOLS = 100
TTFT_WARMUP, TTFT_ROUNDS, TTFT_TOKENS = 5, 30, 20
RELAY_ROUNDS, RELAY_TOKENS, RELAY_DELAY = 3, 500, 0.002
LOAD_CONVERSATIONS, LOAD_TOKENS, LOAD_DELAY = 100, 300, 0.010
ROUND_TIMEOUT, LOAD_TIMEOUT = 30.0, 90.0

TOKEN = re.compile(r'<div id="m(\d+)-text" hx-swap-oob="beforeend">(.*?)</div>', re.S)


# --------------------------------------------------------------------------------------------------
# Websocket client (one instance per socket, like one browser tab)
# --------------------------------------------------------------------------------------------------


def _finished(frame: str) -> bool:
    return 'data-state="idle"' in frame and "msg-assistant" in frame


class _Tab(WebSocketClientProtocol):
    """Records every frame with its arrival instant; resolves futures on open, close and answer end."""

    def __init__(self) -> None:
        super().__init__()
        loop = asyncio.get_running_loop()
        self.frames: list[tuple[float, str]] = []
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[int | None] = loop.create_future()
        self.first_frame: asyncio.Future[None] = loop.create_future()
        self.watch_from = 0
        self.done: asyncio.Future[int] | None = None

    def onOpen(self) -> None:
        if not self.opened.done():
            self.opened.set_result(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        at = time.monotonic()
        frame = payload.decode()
        self.frames.append((at, frame))
        if not self.first_frame.done():
            self.first_frame.set_result(None)
        if self.done is not None and not self.done.done() and _finished(frame):
            self.done.set_result(len(self.frames) - 1)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        error = ConnectionError(f"websocket closed (code {code}, {reason!r})")
        for future in (self.opened, self.first_frame, self.done):
            if future is not None and not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(code)

    # --- helpers for the bench ----------------------------------------------------------------------

    def ask(self, question: str) -> float:
        """Send a question; return the instant it was written. Frames from here on are the answer's."""
        loop = asyncio.get_running_loop()
        self.watch_from = len(self.frames)
        self.done = loop.create_future()
        payload = json.dumps({"message": question}).encode()
        sent_at = time.monotonic()
        self.sendMessage(payload, isBinary=False)
        return sent_at

    def answer_frames(self) -> list[tuple[float, str]]:
        return self.frames[self.watch_from :]


async def _connect(port: int, conversation_id: object, session: str) -> _Tab:
    url = f"ws://127.0.0.1:{port}/ws/chat/{conversation_id}/"
    factory = WebSocketClientFactory(
        url, origin=f"http://127.0.0.1:{port}", headers={"Cookie": f"sessionid={session}"}
    )
    factory.protocol = _Tab
    factory.setProtocolOptions(tcpNoDelay=True, openHandshakeTimeout=10, closeHandshakeTimeout=2)
    _, tab = await asyncio.get_running_loop().create_connection(factory, "127.0.0.1", port)
    assert isinstance(tab, _Tab)
    await asyncio.wait_for(tab.opened, 10)
    await asyncio.wait_for(tab.first_frame, 10)  # the idle indicator (and the latest answer)
    return tab


async def _close(tab: _Tab) -> None:
    if tab.closed.done():
        return
    tab.sendClose(code=1000)
    try:
        await asyncio.wait_for(asyncio.shield(tab.closed), 3)
    except TimeoutError:
        if tab.transport is not None:
            tab.transport.abort()


def _cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) used so far by process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _token_text(frame: str) -> str:
    return "".join(html.unescape(text) for _, text in TOKEN.findall(frame))


def _chunk_arrivals(frames: list[tuple[float, str]], chunks: tuple[str, ...]) -> tuple[list[float], str]:
    """Arrival instant of each chunk (that of the frame completing it) and the reassembled text."""
    ends: list[int] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        ends.append(total)
    arrivals: list[float] = []
    parts: list[str] = []
    received = 0
    for at, frame in frames:
        text = _token_text(frame)
        if not text:
            continue
        parts.append(text)
        received += len(text)
        while len(arrivals) < len(ends) and ends[len(arrivals)] <= received:
            arrivals.append(at)
    return arrivals, "".join(parts)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


@dataclass
class Script:
    """Turns by question: the responder answers every request by its last user message."""

    turns: dict[str, Any] = field(default_factory=dict)

    def responder(self, body: dict[str, Any]) -> Any:
        messages = body.get("messages") or [{}]
        return self.turns.get(str(messages[-1].get("content")))


def _history_rows(conversation: Any) -> list[Any]:
    from chat.models import Message, MessageRole, MessageStatus

    rows = []
    for i in range(HISTORY_PAIRS):
        rows.append(
            Message(
                conversation=conversation,
                role=MessageRole.USER,
                status=MessageStatus.COMPLETE,
                content=f"What is the state of et-0/0/{i} on ams-cor00{i % 4}, and its error counters?",
            )
        )
        rows.append(
            Message(
                conversation=conversation,
                role=MessageRole.ASSISTANT,
                status=MessageStatus.COMPLETE,
                model_name="scripted",
                content=(
                    f"et-0/0/{i} on ams-cor00{i % 4} is **up** at 10G [1]. Input errors: {i * 3}, "
                    f"output errors: 0, CRC: {i % 5} over the last 24 hours [2]. The neighbour is "
                    f"ams-agg0{i % 7}, LLDP agrees with NetBox. No flaps since the last maintenance "
                    "window; the optic reports -2.1 dBm receive power, inside the thresholds."
                ),
            )
        )
    return rows


def _text(n_chunks: int, size: int, make: Callable[[int], str]) -> str:
    pieces = [make(i) for i in range(n_chunks)]
    assert all(len(p) == size for p in pieces), pieces[:3]
    return "".join(pieces)


def _relay_piece(i: int) -> str:
    return " a<&>" if i % 25 == 24 else f" t{i:03d}"  # some pieces need HTML escaping


# --------------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------------


def _request_index(llm: Any, question: str) -> int:
    matches = [
        i for i, r in enumerate(llm.requests) if r.body.get("messages", [{}])[-1].get("content") == question
    ]
    assert len(matches) == 1, (question, matches)
    return matches[0]


def _sent(llm: Any, index: int) -> list[Any]:
    return [c for c in llm.sent_chunks if c.request_index == index and c.text]


async def _netops_round(
    ctx: dict[str, Any], conversation_id: object, question: str
) -> tuple[_Tab, float, float]:
    """One question on a fresh socket; the socket, the send instant and daphne's CPU seconds meanwhile."""
    tab = await _connect(ctx["port"], conversation_id, ctx["session"])
    cpu = _cpu(ctx["pid"])
    sent_at = tab.ask(question)
    assert tab.done is not None
    try:
        await asyncio.wait_for(asyncio.shield(tab.done), ROUND_TIMEOUT)
        cpu = _cpu(ctx["pid"]) - cpu
    finally:
        await _close(tab)
    final = tab.frames[tab.done.result()][1]
    assert "status-complete" in final, final[:2000]
    return tab, sent_at, cpu


async def _direct_stream(
    client: Any, request: dict[str, Any], *, fresh_client: Callable[[], Any] | None = None
) -> tuple[float, list[tuple[float, str]]]:
    """``create()`` and read the whole stream; the start instant and each content chunk's arrival.

    With ``fresh_client``, the client is built inside the timing and closed after the stream, the way
    ``chat.runs._drive`` does it for every answer.
    """
    arrivals: list[tuple[float, str]] = []
    started = time.monotonic()
    if fresh_client is not None:
        client = fresh_client()
    try:
        stream = await client.chat.completions.create(**request)
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals.append((time.monotonic(), chunk.choices[0].delta.content))
    finally:
        if fresh_client is not None:
            await client.close()
    return started, arrivals


async def measure_ttft(ctx: dict[str, Any]) -> dict[str, Any]:
    from tests.support.scripted_llm import Turn

    llm, script, client = ctx["llm"], ctx["script"], ctx["client"]
    answer = _text(TTFT_TOKENS, 4, lambda i: f" w{i:02d}")
    netops_ms: list[float] = []
    direct_ms: list[float] = []
    netops_pre_llm: list[float] = []
    netops_after_llm: list[float] = []
    direct_pre_llm: list[float] = []
    fresh_ms: list[float] = []
    for round_no in range(TTFT_WARMUP + TTFT_ROUNDS):
        warm = round_no < TTFT_WARMUP
        # netops
        question = f"netops ttft {round_no}: is the core healthy?"
        turn = Turn.text(answer, chunk_size=4, delay=0.002)
        assert len(turn.chunks) == TTFT_TOKENS
        script.turns[question] = turn
        tab, sent_at, _ = await _netops_round(ctx, ctx["ttft_conversations"][round_no], question)
        first = next(at for at, frame in tab.answer_frames() if TOKEN.search(frame))
        assert "".join(_token_text(f) for _, f in tab.answer_frames()) == answer
        index = _request_index(llm, question)
        if round_no == 0:
            ctx["netops_body"] = llm.requests[index].body
        if not warm:
            netops_ms.append((first - sent_at) * 1000)
            netops_pre_llm.append((llm.requests[index].received_at - sent_at) * 1000)
            netops_after_llm.append((first - _sent(llm, index)[0].at) * 1000)
        # direct
        question = f"direct ttft {round_no}: is the core healthy?"
        script.turns[question] = turn
        request = {
            **ctx["direct_request"],
            "messages": [*ctx["direct_messages"], {"role": "user", "content": question}],
        }
        started, arrivals = await _direct_stream(client, request)
        assert "".join(t for _, t in arrivals) == answer
        if not warm:
            direct_ms.append((arrivals[0][0] - started) * 1000)
            direct_pre_llm.append((llm.requests[_request_index(llm, question)].received_at - started) * 1000)
        # direct, with a new client per request as netops makes one per answer
        question = f"fresh ttft {round_no}: is the core healthy?"
        script.turns[question] = turn
        request = {**request, "messages": [*request["messages"][:-1], {"role": "user", "content": question}]}
        started, arrivals = await _direct_stream(client, request, fresh_client=ctx["fresh_client"])
        assert "".join(t for _, t in arrivals) == answer
        if not warm:
            fresh_ms.append((arrivals[0][0] - started) * 1000)
    return {
        "fresh": fresh_ms,
        "netops": netops_ms,
        "direct": direct_ms,
        "netops_pre_llm": netops_pre_llm,
        "netops_after_llm": netops_after_llm,
        "direct_pre_llm": direct_pre_llm,
    }


async def measure_relay(ctx: dict[str, Any]) -> dict[str, Any]:
    from tests.support.scripted_llm import Turn

    llm, script, client = ctx["llm"], ctx["script"], ctx["client"]
    answer = _text(RELAY_TOKENS, 5, _relay_piece)
    netops: list[float] = []
    direct: list[float] = []
    frames_per_answer: list[int] = []
    netops_cpu: list[float] = []
    direct_cpu: list[float] = []
    for round_no in range(RELAY_ROUNDS):
        turn = Turn.text(answer, chunk_size=5, delay=RELAY_DELAY)
        assert len(turn.chunks) == RELAY_TOKENS
        question = f"netops relay {round_no}: list every interface"
        script.turns[question] = turn
        tab, _, cpu = await _netops_round(ctx, ctx["relay_conversations"][round_no], question)
        netops_cpu.append(cpu)
        arrivals, text = _chunk_arrivals(tab.answer_frames(), turn.chunks)
        assert text == answer, (len(text), len(answer))
        sent = _sent(llm, _request_index(llm, question))
        assert [c.text for c in sent] == list(turn.chunks)
        netops += [(a - s.at) * 1000 for a, s in zip(arrivals, sent, strict=True)]
        frames_per_answer.append(sum(1 for _, f in tab.answer_frames() if TOKEN.search(f)))

        question = f"direct relay {round_no}: list every interface"
        script.turns[question] = turn
        messages = [ctx["direct_messages"][0], {"role": "user", "content": question}]
        request = {**ctx["direct_request"], "messages": messages}
        cpu = time.thread_time()  # the client's thread only: the ScriptedLLM runs in its own thread
        _, received = await _direct_stream(client, request)
        direct_cpu.append(time.thread_time() - cpu)
        assert "".join(t for _, t in received) == answer
        sent = _sent(llm, _request_index(llm, question))
        direct += [(at - s.at) * 1000 for (at, _), s in zip(received, sent, strict=True)]
    return {
        "netops": netops,
        "direct": direct,
        "frames": frames_per_answer,
        "netops_cpu": netops_cpu,
        "direct_cpu": direct_cpu,
    }


async def measure_load(ctx: dict[str, Any]) -> dict[str, Any]:
    from tests.support.scripted_llm import Turn

    llm, script = ctx["llm"], ctx["script"]
    conversations = ctx["load_conversations"]
    connected = await asyncio.gather(
        *(_connect(ctx["port"], c, ctx["session"]) for c in conversations), return_exceptions=True
    )
    tabs = [tab for tab in connected if isinstance(tab, _Tab)]
    try:
        failed = [error for error in connected if not isinstance(error, _Tab)]
        assert not failed, f"{len(failed)} sockets did not connect: {failed[0]!r}"
        questions, turns = [], []
        for k in range(len(conversations)):
            turn = Turn.text(
                _text(LOAD_TOKENS, 7, lambda i, k=k: f" c{k:02d}{i:03d}"), chunk_size=7, delay=LOAD_DELAY
            )
            assert len(turn.chunks) == LOAD_TOKENS
            question = f"load {k}: check every branch router"
            script.turns[question] = turn
            questions.append(question)
            turns.append(turn)
        cpu = _cpu(ctx["pid"])
        started = time.monotonic()
        sent_at = [tab.ask(q) for tab, q in zip(tabs, questions, strict=True)]
        finished, _ = await asyncio.wait([tab.done for tab in tabs if tab.done], timeout=LOAD_TIMEOUT)
        wall = time.monotonic() - started
        cpu = _cpu(ctx["pid"]) - cpu
    finally:
        await asyncio.gather(*(_close(tab) for tab in tabs), return_exceptions=True)

    lost = incomplete = mismatched = 0
    frame_gaps: list[float] = []
    latencies: list[float] = []
    ttft: list[float] = []
    server_gaps: list[float] = []
    tokens = 0
    for tab, question, turn, asked in zip(tabs, questions, turns, sent_at, strict=True):
        frames = tab.answer_frames()
        if tab.done is None or not tab.done.done() or tab.done.exception() is not None:
            incomplete += 1
        else:
            final = tab.frames[tab.done.result()][1]
            assert "status-complete" in final, final[:2000]
        arrivals, text = _chunk_arrivals(frames, turn.chunks)
        lost += len(turn.content) - len(text)
        mismatched += text != turn.content
        tokens += len(arrivals)
        token_times = [at for at, frame in frames if TOKEN.search(frame)]
        frame_gaps += [(b - a) * 1000 for a, b in itertools.pairwise(token_times)]
        if token_times:
            ttft.append((token_times[0] - asked) * 1000)
        sent = _sent(llm, _request_index(llm, question))
        server_gaps += [(b.at - a.at) * 1000 for a, b in itertools.pairwise(sent)]
        latencies += [(a - s.at) * 1000 for a, s in zip(arrivals, sent, strict=False)]
    return {
        "wall": wall,
        "cpu": cpu,
        "finished": len(finished),
        "incomplete": incomplete,
        "lost": lost,
        "mismatched": mismatched,
        "expected_chars": sum(len(t.content) for t in turns),
        "tokens": tokens,
        "frame_gaps": frame_gaps,
        "server_gaps": server_gaps,
        "latencies": latencies,
        "ttft": ttft,
    }


# --------------------------------------------------------------------------------------------------
# Set-up and report
# --------------------------------------------------------------------------------------------------


def _prepare(llm: Any, mcp_url: str) -> dict[str, Any]:
    from django.contrib.auth.models import User
    from django.test import Client

    from chat.agent import _function
    from chat.llm import make_client
    from chat.models import Conversation, Message
    from chat.selectors import agent_settings, llm_history, llm_settings
    from chat.services import conversation_create
    from registry.catalog import ToolCatalog
    from registry.models import LLMModel, MCPServer
    from registry.services import llm_model_save, mcp_servers_check_health

    server = MCPServer.objects.create(name="lab", protocol="http", url=mcp_url)
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert outcome.ok, outcome.error
    tools = ToolCatalog.load().tools()
    assert len(tools) == CATALOG_TOOLS, len(tools)
    model = llm_model_save(
        model=LLMModel(
            name="scripted",
            provider="openai_compatible",
            endpoint=llm.base_url,
            model="gpt-scripted",
            request_timeout=60,
            is_default=True,
        )
    )
    make_client_ms = []
    for _ in range(7):
        started = time.perf_counter()
        make_client(llm_settings(model))
        make_client_ms.append((time.perf_counter() - started) * 1000)
    user = User.objects.create_user("bench")  # no password: the session comes from force_login
    browser = Client()
    browser.force_login(user)

    ttft = [conversation_create(user=user) for _ in range(TTFT_WARMUP + TTFT_ROUNDS)]
    Message.objects.bulk_create([row for c in ttft for row in _history_rows(c)])
    relay = [conversation_create(user=user) for _ in range(RELAY_ROUNDS)]
    load = [conversation_create(user=user) for _ in range(LOAD_CONVERSATIONS)]
    settings = agent_settings()
    history = llm_history(Conversation.objects.get(pk=ttft[0].pk), limit=settings.history_max_messages)
    assert len(history) == 2 * HISTORY_PAIRS, len(history)
    return {
        "session": browser.cookies["sessionid"].value,
        "make_client_ms": statistics.median(make_client_ms),
        "fresh_client": lambda: make_client(llm_settings(model)),
        "ttft_conversations": [c.pk for c in ttft],
        "relay_conversations": [c.pk for c in relay],
        "load_conversations": [c.pk for c in load],
        "direct_messages": [{"role": "system", "content": settings.system_prompt}, *history],
        # The request chat.agent.Agent makes, with the catalog's tools as OpenAI functions.
        "direct_request": {
            "model": "gpt-scripted",
            "stream": True,
            "temperature": 0.0,
            "stream_options": {"include_usage": True},
            "tools": [_function(t) for t in tools],
        },
    }


def _ms(samples: list[float], q: float) -> float:
    return statistics.median(samples) if q == 0.5 else percentile(samples, q)


def _row(label: str, samples: list[float], high: float, digits: int = 2) -> str:
    tail = "p90" if high == 0.9 else "p99"
    return (
        f"   {label:<44} median {_ms(samples, 0.5):8.{digits}f} ms   "
        f"{tail} {_ms(samples, high):8.{digits}f} ms   (n={len(samples)})"
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(
    ttft: dict[str, Any],
    relay: dict[str, Any],
    load: dict[str, Any],
    make_client_ms: float,
    daphne_errors: int,
) -> None:
    print(
        "chat streaming through one real daphne process (SQLite, in-memory channel layer), "
        f"LLM = ScriptedLLM on loopback, {os.cpu_count()} cores"
    )

    n, d = ttft["netops"], ttft["direct"]
    diff, diff90 = _ms(n, 0.5) - _ms(d, 0.5), _ms(n, 0.9) - _ms(d, 0.9)
    print(
        f"\n1. time to first token: {2 * HISTORY_PAIRS}-message history, {CATALOG_TOOLS} tools, "
        f"{TTFT_TOKENS}-token answer; {TTFT_ROUNDS} rounds each, alternating, after {TTFT_WARMUP} warm-up"
    )
    print(_row("netops: ws send -> first token frame", n, 0.9))
    print(_row("direct: openai create() -> first chunk", d, 0.9))
    print(
        f"   {'difference netops - direct':<44} median {diff:+8.2f} ms   p90 {diff90:+8.2f} ms   "
        f"(target <= 30 ms: {_verdict(diff <= 30)})"
    )
    f = ttft["fresh"]
    print(_row("direct, new client per request (as netops)", f, 0.9))
    print(
        f"   {'difference netops - that':<44} median {_ms(n, 0.5) - _ms(f, 0.5):+8.2f} ms   "
        f"p90 {_ms(n, 0.9) - _ms(f, 0.9):+8.2f} ms"
    )
    print(
        f"   medians: netops send -> LLM request in {_ms(ttft['netops_pre_llm'], 0.5):.1f} ms, "
        f"LLM first chunk out -> frame at client {_ms(ttft['netops_after_llm'], 0.5):.1f} ms; "
        f"direct create() -> LLM request in {_ms(ttft['direct_pre_llm'], 0.5):.1f} ms"
    )
    print(
        f"   chat.llm.make_client(), run once per answer on daphne's event loop: "
        f"median {make_client_ms:.1f} ms (measured in this process)"
    )

    n, d = relay["netops"], relay["direct"]
    med, p99 = _ms(n, 0.5) - _ms(d, 0.5), _ms(n, 0.99) - _ms(d, 0.99)
    print(
        f"\n2. per-token relay: {RELAY_TOKENS}-token answer paced at {RELAY_DELAY * 1000:g} ms, "
        f"{RELAY_ROUNDS} answers each; latency = arrival at client - LLM send instant"
    )
    print(_row("netops (websocket frames)", n, 0.99, 3))
    print(_row("direct (openai stream)", d, 0.99, 3))
    print(
        f"   {'overhead netops - direct':<44} median {med:+8.3f} ms   p99 {p99:+8.3f} ms   "
        f"(target median <= 1 ms: {_verdict(med <= 1)})"
    )
    n_cpu, d_cpu = statistics.median(relay["netops_cpu"]), statistics.median(relay["direct_cpu"])
    print(
        f"   token frames per answer: {', '.join(str(f) for f in relay['frames'])}; CPU per answer: "
        f"daphne {n_cpu * 1000:.0f} ms ({n_cpu / RELAY_TOKENS * 1e6:.0f} us/token), "
        f"direct client {d_cpu * 1000:.0f} ms ({d_cpu / RELAY_TOKENS * 1e6:.0f} us/token)"
    )

    total = LOAD_CONVERSATIONS * LOAD_TOKENS
    fg, sg = load["frame_gaps"], load["server_gaps"]
    print(
        f"\n3. {LOAD_CONVERSATIONS} conversations sending at once (one socket each), {LOAD_TOKENS} tokens "
        f"each paced at {LOAD_DELAY * 1000:g} ms"
    )
    print(
        f"   answers complete {LOAD_CONVERSATIONS - load['incomplete']}/{LOAD_CONVERSATIONS}; tokens lost: {load['lost']} of "
        f"{load['expected_chars']} chars; texts differing: {load['mismatched']}"
    )
    print(
        f"   {'gap between token frames, per socket':<44} p50 {_ms(fg, 0.5):8.2f} ms   "
        f"p99 {_ms(fg, 0.99):8.2f} ms   (n={len(fg)})"
    )
    print(
        f"   {'baseline: LLM gap between chunks, per stream':<44} p50 {_ms(sg, 0.5):8.2f} ms   "
        f"p99 {_ms(sg, 0.99):8.2f} ms   (n={len(sg)})"
    )
    print(
        f"   {'ratio netops / LLM':<44} p50 {_ms(fg, 0.5) / _ms(sg, 0.5):8.2f}x     "
        f"p99 {_ms(fg, 0.99) / _ms(sg, 0.99):8.2f}x"
    )
    lat, first = load["latencies"], load["ttft"]
    print(
        f"   {'per-token latency (arrival - LLM send)':<44} p50 {_ms(lat, 0.5):8.1f} ms   "
        f"p99 {_ms(lat, 0.99):8.1f} ms"
    )
    print(
        f"   {'time to first token (send -> token frame)':<44} p50 {_ms(first, 0.5):8.1f} ms   "
        f"max {max(first):8.1f} ms"
    )
    print(
        f"   wall time {load['wall']:.2f} s (LLM pacing alone {LOAD_TOKENS * LOAD_DELAY:.2f} s); "
        f"{load['tokens']}/{total} tokens delivered = {load['tokens'] / load['wall']:.0f} tokens/s aggregate; "
        f"daphne CPU {load['cpu']:.2f} s = {load['cpu'] / load['wall']:.0%} of one core "
        f"({load['cpu'] / total * 1e6:.0f} us/token)"
    )
    print(f"\ndaphne log: {daphne_errors} error/traceback lines")


async def run_all(ctx: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    import openai

    ctx["client"] = openai.AsyncOpenAI(base_url=ctx["llm"].base_url, api_key="not-needed", max_retries=0)
    try:
        ttft = await measure_ttft(ctx)
        sent = ctx["netops_body"]
        direct_messages = ctx["direct_messages"]
        assert sent["messages"][:-1] == direct_messages, "the direct request's messages differ from netops'"
        assert sent["tools"] == ctx["direct_request"]["tools"], (
            "the direct request's tools differ from netops'"
        )
        relay = await measure_relay(ctx)
        load = await measure_load(ctx)
    finally:
        await ctx["client"].close()
    return ttft, relay, load


def main() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench._client_settings"  # see that module: no daphne app here
    scratch = django_on_scratch_db()
    os.environ["LOG_LEVEL"] = "WARNING"
    from tests.support.daphne import daphne, standalone_env
    from tests.support.processes import mcp_demo_server
    from tests.support.scripted_llm import ScriptedLLM

    script = Script()
    with ExitStack() as stack:
        llm = stack.enter_context(ScriptedLLM(responder=script.responder))
        mcp = stack.enter_context(mcp_demo_server("http", "--tools", str(CATALOG_TOOLS - 5)))
        ctx = _prepare(llm, mcp.base_url + "/mcp")
        ctx.update(llm=llm, script=script)
        log = scratch / "daphne.log"
        server = stack.enter_context(daphne(standalone_env(scratch), log=log, timeout=30, print_log=False))
        ctx.update(port=server.port, pid=server.process.pid)
        results = asyncio.run(asyncio.wait_for(run_all(ctx), 170))
    lines = log.read_text(errors="replace").splitlines()
    errors = sum(1 for line in lines if "Traceback" in line or "ERROR" in line)
    report(*results, ctx["make_client_ms"], errors)
    if errors:
        print(f"daphne log kept: {log}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
