"""schemathesis over ``/api/schema/``: every operation, as an admin and without credentials.

The schema is loaded from netops itself (the served ``/api/schema/``, read with an admin token) and
every operation is called in-process through Django's WSGI handler (fast: no sockets), with a
bounded number of generated cases per operation and a fixed seed (``derandomize``), so a run is
repeatable and takes about a minute. Each case is checked for:

* no server error (5xx);
* a documented status code, the documented content type and a body valid against the documented
  response schema.

Failures are collected over the whole run and reported together with the figures (operations,
cases, 5xx, schema violations), so one run shows everything that is wrong.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chat.services import conversation_create
from netboxrw.plans import Operation, Plan
from netboxrw.services import Requester, change_request_create
from registry.models import LLMModel, MCPServer

EXAMPLES_PER_OPERATION = 6
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    server_errors: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)

    def summary(self) -> str:
        return (
            f"operations {len(self.operations)}, cases {self.cases}, 5xx {len(self.server_errors)}, "
            f"schema violations {len(self.violations)}, statuses {dict(sorted(self.statuses.items()))}"
        )


def _seed(admin: User, make_user: Callable[..., User]) -> dict[str, str]:
    """Real rows, so detail operations also run on objects that exist: their ids by path prefix."""
    model = LLMModel.objects.create(
        name="seed-model", provider="openai_compatible", endpoint="http://127.0.0.1:9/v1", model="m"
    )
    server = MCPServer.objects.create(name="seed-server", protocol="http", url="http://127.0.0.1:9/mcp")
    conversation = conversation_create(user=admin)
    requester = make_user("alice")  # not the admin: the admin may review it
    plan = Plan(
        "netbox_create_site", "seed site", [Operation("create", "dcim/sites", "site seed", {"name": "s"})]
    )
    change = change_request_create(plan=plan, arguments={}, requester=Requester(user=requester, via="test"))
    return {
        "/api/llm-models/": str(model.pk),
        "/api/mcp-servers/": str(server.pk),
        "/api/conversations/": str(conversation.pk),
        "/api/change-requests/": str(change.pk),
    }


def _existing(operation: Any, ids: dict[str, str]) -> dict[str, str] | None:
    """Valid values for every path parameter of ``operation`` (a seeded object), None if unknown.

    Negative cases get these, so that they probe query and body: a path that does not match the URL
    pattern never reaches the API (Django's resolver answers 404 before any view).
    """
    names = re.findall(r"{(\w+)}", operation.path)
    values = {"fmt": "json"}
    for prefix, object_id in ids.items():
        if operation.path.startswith(prefix + "{id}"):
            values["id"] = object_id
    return {name: values[name] for name in names} if all(name in values for name in names) else None


def _run_operation(
    operation: Any,
    headers: dict[str, str],
    tally: Tally,
    label: str,
    path_parameters: dict[str, str] | None = None,
    mode: GenerationMode = GenerationMode.POSITIVE,
) -> None:
    strategy = operation.as_strategy(mode, path_parameters=path_parameters)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        tally.cases += 1
        response = case.call(headers=headers)
        tally.statuses[response.status_code] += 1
        where = f"[{label}] {case.method} {case.formatted_path} -> {response.status_code}"
        if response.status_code >= 500:
            tally.server_errors.append(f"{where}: {response.text[:300]}")
            return
        try:
            case.validate_response(response, checks=CHECKS[1:], headers=headers)
        except (FailureGroup, AssertionError) as exc:  # check failures: recorded, the run goes on
            tally.violations.append(f"{where}: {str(exc)[:600]}")

    try:
        run()
    except Unsatisfiable:  # negative mode with fixed path parameters: nothing left to make invalid
        assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no case could be generated"


@pytest.mark.django_db
def test_every_operation_as_admin_and_anonymous(make_user: Callable[..., User], settings: Any) -> None:
    settings.REDIS_URL = ""
    admin = make_user("root", superuser=True)
    ids = _seed(admin, make_user)
    token = Token.objects.create(user=admin).key
    auth = {"Authorization": f"Token {token}"}
    # As django.test.Client does: a request's end must not close the test's database connection
    # (its transaction holds the seeded rows; on PostgreSQL a closed connection fails every request).
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    try:
        _run_all(auth, ids)
    finally:
        for signal in (request_started, request_finished):
            signal.connect(close_old_connections)


def _run_all(auth: dict[str, str], ids: dict[str, str]) -> None:
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", WSGIHandler(), headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")  # deletes last
    tally = Tally()
    for operation in operations:
        tally.operations.add(operation.label)
        _run_operation(operation, auth, tally, "admin")
        _run_operation(operation, {}, tally, "anonymous")
        existing = _existing(operation, ids)
        if existing:
            _run_operation(operation, auth, tally, "admin, existing object", existing)
        if existing is not None and (len(operation.query) or len(operation.body)):  # something to spoil
            _run_operation(operation, auth, tally, "admin, invalid input", existing, GenerationMode.NEGATIVE)
    print(tally.summary())
    problems = tally.server_errors + tally.violations
    assert not problems, tally.summary() + "\n" + "\n".join(problems[:60])
