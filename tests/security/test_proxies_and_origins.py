"""Proxy headers are believed only from TRUSTED_PROXIES; a websocket opens only from netops' own origin.

The daphne here is started with exactly the arguments of ``scripts/start`` (and the ``Dockerfile``
entry point must match them), because the hole was in how netops is launched: ``--proxy-headers``
made daphne believe ``X-Forwarded-For`` from any peer, and ``X-Forwarded-For: 127.0.0.1`` unlocked
``/metrics``. Addresses from the documentation ranges (203.0.113.0/24, 198.51.100.0/24) appear only
inside headers; every connection goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from chat.services import conversation_create
from netops.asgi import application
from tests.support.daphne import manage, standalone_env
from tests.support.processes import ROOT, RunningServer, free_port, wait_for_http

ALLOWED_NET = "203.0.113.0/24"
INSIDE, OUTSIDE = "203.0.113.5", "198.51.100.7"


def start_arguments() -> list[str]:
    """daphne's arguments as ``scripts/start`` passes them (``$HOST``/``$PORT`` left as placeholders)."""
    line = next(
        line
        for line in (ROOT / "scripts" / "start").read_text().splitlines()
        if ".venv/bin/daphne " in line and not line.lstrip().startswith("#")
    )
    words = shlex.split(line)
    arguments = words[words.index(".venv/bin/daphne") + 1 :]
    return [word for word in arguments if word != "&"]  # started in the background beside the worker


def test_the_dockerfile_starts_daphne_as_scripts_start_does() -> None:
    command = re.search(r"^(?:ENTRYPOINT|CMD) (\[\"daphne\".*\])$", (ROOT / "Dockerfile").read_text(), re.M)
    assert command is not None, "the image's daphne command"
    docker = json.loads(command.group(1))
    flags = [word for word in docker[1:] if word.startswith("-")]
    assert flags == [word for word in start_arguments() if word.startswith("-")]
    assert "--proxy-headers" not in docker


@contextmanager
def netops_as_started(var_dir: Path, log: Path, **extra: str) -> Iterator[RunningServer]:
    port = free_port()
    arguments = [{"$HOST": "127.0.0.1", "$PORT": str(port)}.get(word, word) for word in start_arguments()]
    env = standalone_env(var_dir, METRICS_ALLOWED_NETWORKS=ALLOWED_NET, **extra)
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("daphne")), *arguments],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process, port)
    try:
        wait_for_http(f"{server.base_url}/healthz", timeout=60, process=process)
        yield server
    finally:
        server.stop()
        print(f"--- daphne log (tail) ---\n{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """A migrated standalone var dir with a user, their conversation and a logged-in session."""
    path = tmp_path_factory.mktemp("proxies")
    env = standalone_env(path)
    manage(env, "migrate", "--noinput")
    out = manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth.models import User\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "from chat.services import conversation_create\n"
        "u = User.objects.create_user('alice', password='pw-for-tests-1')\n"
        "c = conversation_create(user=u)\n"
        "s = SessionStore()\n"
        "s['_auth_user_id'] = str(u.pk)\n"
        "s['_auth_user_backend'] = 'django.contrib.auth.backends.ModelBackend'\n"
        "s['_auth_user_hash'] = u.get_session_auth_hash()\n"
        "s.create()\n"
        "print(s.session_key, c.pk)\n",
    )
    session, conversation = out.split()[-2:]
    return path, session, conversation


def _metrics(server: RunningServer, **headers: str) -> int:
    return httpx.get(f"{server.base_url}/metrics", headers=headers, timeout=10).status_code


def test_forwarded_for_from_an_untrusted_peer_unlocks_nothing(
    var_dir: tuple[Path, str, str], tmp_path: Path
) -> None:
    with netops_as_started(var_dir[0], tmp_path / "daphne.log") as server:
        assert _metrics(server) == 403  # 127.0.0.1 is not in the allowed network
        assert _metrics(server, **{"X-Forwarded-For": INSIDE}) == 403
        assert _metrics(server, **{"X-Real-IP": INSIDE}) == 403
        assert _metrics(server, **{"X-Forwarded-For": f"{OUTSIDE}, {INSIDE}"}) == 403


def test_a_trusted_proxy_decides_the_client_address(var_dir: tuple[Path, str, str], tmp_path: Path) -> None:
    with netops_as_started(var_dir[0], tmp_path / "daphne.log", TRUSTED_PROXIES="127.0.0.1/32") as server:
        assert _metrics(server, **{"X-Forwarded-For": INSIDE}) == 200
        assert _metrics(server, **{"X-Real-IP": INSIDE}) == 200
        # Right to left: the last hop the trusted proxy saw is the client, whatever the client wrote.
        assert _metrics(server, **{"X-Forwarded-For": f"{INSIDE}, {OUTSIDE}"}) == 403
        assert _metrics(server, **{"X-Forwarded-For": f"{OUTSIDE}, {INSIDE}, 127.0.0.1"}) == 200
        assert _metrics(server, **{"X-Forwarded-For": OUTSIDE}) == 403
        assert _metrics(server, **{"X-Forwarded-For": "not-an-address"}) == 403  # the peer, 127.0.0.1
        assert _metrics(server) == 403  # no header: the peer itself


# --- websocket origins ----------------------------------------------------------------------------


async def _daphne_socket(server: RunningServer, session: str, conversation: str, **headers: str) -> bool:
    """Whether daphne accepts the handshake (a refused origin is answered 403 before the consumer)."""
    try:
        socket = await websockets.connect(
            f"ws://127.0.0.1:{server.port}/ws/chat/{conversation}/",
            additional_headers={"Cookie": f"sessionid={session}", **headers},
            open_timeout=10,
        )
    except websockets.InvalidStatus as exc:
        refused = exc.response.status_code
    else:
        await socket.close()
        return True
    assert refused == 403
    return False


def test_daphne_accepts_only_the_origin_the_page_was_served_from(
    var_dir: tuple[Path, str, str], tmp_path: Path
) -> None:
    path, session, conversation = var_dir
    with netops_as_started(path, tmp_path / "daphne.log") as server:
        own = f"http://127.0.0.1:{server.port}"

        def opens(origin: str | None, **headers: str) -> bool:
            extra = {"Origin": origin} if origin is not None else {}
            return asyncio.run(_daphne_socket(server, session, conversation, **extra, **headers))

        assert opens(own)
        assert not opens("http://127.0.0.1:9999")  # another program on the same machine
        assert not opens(f"https://127.0.0.1:{server.port}")  # another scheme
        assert not opens(f"http://localhost:{server.port}")  # another host than the one asked
        assert not opens("http://evil.example")
        assert not opens("null")
        assert not opens(None)
        # Without a trusted proxy, X-Forwarded-Proto is nobody's word.
        assert not opens(f"https://127.0.0.1:{server.port}", **{"X-Forwarded-Proto": "https"})
    with netops_as_started(path, tmp_path / "proxied.log", TRUSTED_PROXIES="127.0.0.1/32") as server:
        # Behind a TLS-terminating proxy the page was served over https.
        https_origin = f"https://127.0.0.1:{server.port}"
        assert asyncio.run(
            _daphne_socket(
                server, session, conversation, Origin=https_origin, **{"X-Forwarded-Proto": "https"}
            )
        )
        assert not asyncio.run(
            _daphne_socket(
                server,
                session,
                conversation,
                Origin=f"http://127.0.0.1:{server.port}",
                **{"X-Forwarded-Proto": "https"},
            )
        )


def _communicator(conversation_id: Any, session: str, origin: str, host: str) -> WebsocketCommunicator:
    headers = [
        (b"origin", origin.encode()),
        (b"host", host.encode()),
        (b"cookie", f"sessionid={session}".encode()),
    ]
    return WebsocketCommunicator(application, f"/ws/chat/{conversation_id}/", headers=headers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("origin", "host", "accepted"),
    [
        ("http://localhost", "localhost", True),
        ("http://localhost:80", "localhost", True),
        ("http://localhost:8000", "localhost:8000", True),
        ("https://netops.example.com", "localhost", True),  # in CSRF_TRUSTED_ORIGINS
        ("http://localhost:9999", "localhost", False),
        ("http://localhost", "localhost:8000", False),
        ("https://localhost", "localhost", False),
        ("ws://localhost", "localhost", False),
        ("http://127.0.0.1", "localhost", False),
        ("http://evil.example", "evil.example", False),  # same as Host, but not an allowed host
        ("http://localhost.evil.example", "localhost", False),
        ("http://netops.example.com", "localhost", False),  # trusted only over https
        ("null", "localhost", False),
    ],
)
async def test_the_origin_must_be_the_page_origin(
    origin: str, host: str, accepted: bool, settings: Any
) -> None:
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://netops.example.com"]

    def login() -> tuple[str, Any]:
        user = User.objects.create_user("bob", password="pw-for-tests-1")
        client = Client()
        client.force_login(user)
        return client.cookies["sessionid"].value, conversation_create(user=user).pk

    from asgiref.sync import sync_to_async

    session, conversation_id = await sync_to_async(login)()
    socket = _communicator(conversation_id, session, origin, host)
    try:
        connected, _ = await socket.connect(timeout=10)
        assert connected is accepted
    finally:
        await socket.disconnect()
