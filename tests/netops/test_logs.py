"""JSON log lines through the real ASGI application: request id, user, access line, redaction."""

from __future__ import annotations

import json
import logging
import sys

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client

from netops.asgi import application
from netops.logs import RedactSecretsFilter, register_secret_value


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, object]] = []
        console = logging.getLogger().handlers[0]
        self.setFormatter(console.formatter)
        for log_filter in console.filters:
            self.addFilter(log_filter)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def captured() -> _Capture:
    handler = _Capture()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


@pytest.mark.django_db(transaction=True)
async def test_access_line_through_asgi_names_user_and_request_id(captured: _Capture) -> None:
    from asgiref.sync import sync_to_async

    def login() -> str:
        user = User.objects.create_user("noc-engineer", password="pw-for-tests-1")
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value

    session = await sync_to_async(login)()
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://localhost", cookies={"sessionid": session}
    ) as client:
        response = await client.get("/registry/catalog/", headers={"X-Request-ID": "req-abc-123"})
    assert response.status_code == 403  # logged in, but no registry permission
    assert response.headers["X-Request-ID"] == "req-abc-123"
    access = [line for line in captured.lines if line["logger"] == "netops.access"]
    assert access, captured.lines
    assert access[-1]["path"] == "/registry/catalog/"
    assert access[-1]["status"] == 403
    assert access[-1]["user"] == "noc-engineer"
    assert access[-1]["request_id"] == "req-abc-123"
    assert isinstance(access[-1]["duration_ms"], float)


def test_redaction_filter_masks_registered_secrets_in_message_and_traceback() -> None:
    register_secret_value("very-secret-token-42")
    record = logging.LogRecord(
        "t", logging.ERROR, __file__, 1, "auth header Bearer %s", ("very-secret-token-42",), None
    )
    try:
        raise RuntimeError("header was very-secret-token-42")
    except RuntimeError:
        record.exc_info = sys.exc_info()
    assert RedactSecretsFilter().filter(record)
    assert record.getMessage() == "auth header Bearer [redacted]"
    assert record.exc_info is None
    assert "very-secret-token-42" not in (record.exc_text or "")
    assert "[redacted]" in (record.exc_text or "")
