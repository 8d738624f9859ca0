"""A hostile tool schema never stalls the process: ReDoS patterns and exponential schemas are bounded.

Before, the gateway ran jsonschema with Python's backtracking ``re`` on daphne's event loop:
``"pattern": "^(a+)+$"`` against ``"a" * 30 + "!"`` blocked every request for minutes (``/healthz``
took 2.7 s at 25 characters and doubled with each one). Now every schema regex runs on RE2 (linear),
patterns RE2 cannot run are refused, and validation runs in its own threads with a deadline.

The end-to-end test runs netops under daphne (its own SQLite database) with a tool server whose cached
tool schemas are hostile, fires evil calls at the gateway from two clients for a few seconds and
measures ``/healthz`` meanwhile, against idle. The figures are printed (``-s`` shows them).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from registry.validation import (
    ArgumentsInvalid,
    SchemaUnsupported,
    ValidationTimeout,
    validate_arguments,
    validate_arguments_async,
)
from tests.support.daphne import daphne, manage, standalone_env
from tests.support.processes import free_port

EVIL_PATTERN = "^(a+)+$"
EVIL_TEXT = "a" * 30 + "!"  # about 2**30 backtracking steps for Python's re


def _fan_out(levels: int = 30) -> dict[str, Any]:
    """A schema whose evaluation doubles per level (anyOf over two refs to the next level)."""
    defs: dict[str, Any] = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}, {"$ref": f"#/$defs/d{i + 1}"}]}
        for i in range(levels)
    }
    defs[f"d{levels}"] = {"type": "integer"}
    return {
        "type": "object",
        "$defs": defs,
        "properties": {"value": {"$ref": "#/$defs/d0"}},
    }


HOSTILE_TOOLS = [
    {
        "name": "match_pattern",
        "description": "pattern",
        "input_schema": {
            "type": "object",
            "properties": {"text": {"type": "string", "pattern": EVIL_PATTERN}},
        },
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "match_keys",
        "description": "patternProperties and additionalProperties",
        "input_schema": {
            "type": "object",
            "patternProperties": {EVIL_PATTERN: {"type": "string"}},
            "additionalProperties": False,
        },
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "fan_out",
        "description": "exponential",
        "input_schema": _fan_out(),
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "backreference",
        "description": "not linear",
        "input_schema": {
            "type": "object",
            "properties": {"text": {"type": "string", "pattern": r"^(a+)\1$"}},
        },
        "annotations": {"readOnlyHint": True},
    },
]

# --- the validator itself, every keyword that uses a regex ------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "arguments", "field"),
    [
        ({"properties": {"s": {"pattern": EVIL_PATTERN}}}, {"s": EVIL_TEXT}, "s"),
        ({"patternProperties": {EVIL_PATTERN: {"type": "integer"}}}, {"aa": "x", EVIL_TEXT: 1}, "aa"),
        ({"patternProperties": {EVIL_PATTERN: {}}, "additionalProperties": False}, {EVIL_TEXT: 1}, EVIL_TEXT),
        (
            {"patternProperties": {EVIL_PATTERN: {}}, "unevaluatedProperties": False},
            {EVIL_TEXT: 1},
            EVIL_TEXT,
        ),
        ({"propertyNames": {"pattern": EVIL_PATTERN}}, {EVIL_TEXT: 1}, EVIL_TEXT),
    ],
    ids=["pattern", "patternProperties", "additionalProperties", "unevaluatedProperties", "propertyNames"],
)
def test_evil_patterns_are_judged_in_linear_time_naming_the_field(
    schema: dict[str, Any], arguments: dict[str, Any], field: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(ArgumentsInvalid) as caught:
        validate_arguments({"type": "object", **schema}, arguments)
    assert time.perf_counter() - started < 0.5
    assert not isinstance(caught.value, SchemaUnsupported | ValidationTimeout)
    assert caught.value.field == field, caught.value


@pytest.mark.parametrize(
    "pattern",
    [r"^(a+)\1$", r"^(?=a)a+$", r"^(?!b)a+$", r"(?<=a)b"],
    ids=["backref", "lookahead", "neg", "lookbehind"],
)
def test_a_pattern_re2_cannot_run_refuses_the_arguments(pattern: str) -> None:
    with pytest.raises(SchemaUnsupported) as caught:
        validate_arguments({"type": "object", "properties": {"s": {"pattern": pattern}}}, {"s": "aa"})
    assert "pattern" in caught.value.message and caught.value.status_code == 400
    # also when the schema is checked itself (the meta-schema's "regex" format), in patternProperties
    with pytest.raises(SchemaUnsupported):
        validate_arguments({"type": "object", "patternProperties": {pattern: {}}}, {})


def test_an_exponential_schema_stops_at_the_time_limit() -> None:
    started = time.perf_counter()
    with pytest.raises(ValidationTimeout) as caught:
        validate_arguments(_fan_out(), {"value": "x"}, time_limit=0.3)
    assert 0.3 <= time.perf_counter() - started < 0.6
    assert "within 0.3 s" in caught.value.message


def test_endless_refs_and_oversized_arguments_are_400_not_500(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SchemaUnsupported):
        validate_arguments({"$ref": "#"}, {})
    deep: Any = "x"
    for _ in range(40):
        deep = [deep]
    with pytest.raises(ArgumentsInvalid, match="nested"):
        validate_arguments({"type": "object"}, {"deep": deep})
    with pytest.raises(ArgumentsInvalid, match="too large"):
        validate_arguments({"type": "object"}, {"rows": list(range(30_000))})
    # uniqueItems hashes; jsonschema's own check falls back to comparing every pair (n**2)
    import jsonschema._utils

    def pairwise(container: Any) -> bool:
        raise AssertionError("jsonschema's pairwise uniqueItems check ran")

    monkeypatch.setattr(jsonschema._utils, "uniq", pairwise)
    started = time.perf_counter()
    with pytest.raises(ArgumentsInvalid, match="non-unique"):
        validate_arguments(
            {"type": "array", "uniqueItems": True}, [{"a": i} for i in range(5000)] + [{"a": 1}]
        )
    assert time.perf_counter() - started < 5  # the pairwise check takes minutes; a loaded machine 3-5x


async def test_the_async_form_runs_off_the_loop_with_the_deadline() -> None:
    import asyncio

    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(ValidationTimeout):
            await validate_arguments_async(_fan_out(), {"value": "x"}, time_limit=0.5)
    finally:
        ticker.cancel()
    assert ticks >= 10  # the loop kept running (up to 50 ticks in 0.5 s; a blocked loop gets none)


# --- end to end: a real daphne ------------------------------------------------------------------------

_SETUP = """
import json, os
from django.contrib.auth.models import User
from registry.keys import api_key_create
from registry.models import MCPServer, ServerStatus
from registry.tool_sync import server_tools_sync

owner = User.objects.create_superuser("automation", "automation@example.com", "pw-for-tests-1")  # a limit above the ceiling
_, plain = api_key_create(owner=owner, name="redos", level="read_only", rate_limit=100000)
server = MCPServer.objects.create(
    name="hostile", protocol="http", url=os.environ["HOSTILE_URL"], status=ServerStatus.HEALTHY,
    connect_timeout=2, call_timeout=5,
)
server_tools_sync(server=server, tools=json.loads(os.environ["HOSTILE_TOOLS"]))
print("KEY", plain)
"""


@pytest.fixture(scope="module")
def netops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    var_dir = tmp_path_factory.mktemp("redos")
    env = standalone_env(var_dir)
    manage(env, "migrate", "--noinput")
    out = manage(
        {
            **env,
            "HOSTILE_URL": f"http://127.0.0.1:{free_port()}/mcp",
            "HOSTILE_TOOLS": json.dumps(HOSTILE_TOOLS),
        },
        "shell",
        "-c",
        _SETUP,
    )
    key = out.split("KEY", 1)[1].strip()
    with daphne(env, log=var_dir / "daphne.log") as running:
        yield running.base_url, key


def _healthz_latencies(base_url: str, seconds: float) -> list[float]:
    latencies: list[float] = []
    with httpx.Client(timeout=30) as client:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            assert client.get(f"{base_url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    return latencies


def _figures(latencies: list[float]) -> str:
    ms = [value * 1000 for value in latencies]
    return f"median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms over {len(ms)} requests"


@pytest.mark.slow
def test_healthz_stays_fast_while_evil_validations_run(netops: tuple[str, str]) -> None:
    base_url, key = netops
    headers = {"Authorization": f"Bearer {key}"}
    evil_calls = [
        ("match_pattern", {"text": EVIL_TEXT}, "does not match"),
        ("match_keys", {EVIL_TEXT: "x"}, "unknown argument"),
        ("fan_out", {"value": "x"}, "could not be validated within 1 s"),
        ("backreference", {"text": "aa"}, "does not evaluate"),
    ]
    with httpx.Client(timeout=30) as client:  # each answers as designed, and fast enough
        for name, arguments, wording in evil_calls:
            started = time.perf_counter()
            response = client.post(f"{base_url}/api/mcp/tools/{name}", json=arguments, headers=headers)
            took = time.perf_counter() - started
            assert response.status_code == 400, response.text
            assert wording in response.json()["error"], response.json()
            assert took < 3.0, (name, took)

    idle = _healthz_latencies(base_url, 2.0)

    stop = threading.Event()
    answered: list[tuple[int, str]] = []

    def attack(calls: list[tuple[str, dict[str, Any], str]]) -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                for name, arguments, _ in calls:
                    response = client.post(
                        f"{base_url}/api/mcp/tools/{name}", json=arguments, headers=headers
                    )
                    answered.append((response.status_code, name))

    # One client keeps an exponential schema burning to its deadline, one sends the ReDoS patterns.
    attackers = [
        threading.Thread(target=attack, args=(evil_calls[2:3],)),
        threading.Thread(target=attack, args=(evil_calls[:2] + evil_calls[3:],)),
    ]
    for thread in attackers:
        thread.start()
    try:
        time.sleep(0.3)
        busy = _healthz_latencies(base_url, 4.0)
    finally:
        stop.set()
        for thread in attackers:
            thread.join(timeout=30)

    print(f"\n/healthz idle: {_figures(idle)}\n/healthz during evil validations: {_figures(busy)}")
    print(f"evil calls answered meanwhile: {len(answered)}, statuses {sorted({s for s, _ in answered})}")
    assert {status for status, _ in answered} == {400}
    assert sum(1 for _, name in answered if name == "fan_out") >= 2
    assert statistics.median(busy) < 0.25
    assert max(busy) < 1.0  # before: every /healthz waited for the whole backtracking (minutes)
