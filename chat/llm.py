"""Building OpenAI SDK clients for a registered model, and turning their failures into plain words.

Django-free: takes an :class:`LLMSettings` snapshot with the key already resolved.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import openai
from openai import AsyncAzureOpenAI, AsyncOpenAI

# openai-compatible servers (Ollama, vLLM, llama.cpp) often need no key, but the SDK insists on one.
_NO_KEY = "not-needed"


@dataclass(frozen=True)
class LLMSettings:
    """One model endpoint; ``api_key`` is the resolved secret (never logged, never repr'd)."""

    name: str
    provider: str
    model: str
    endpoint: str = ""
    api_version: str = ""
    api_key: str = field(default="", repr=False)
    temperature: float = 0.0
    max_tokens: int | None = None
    timeout: float = 60.0
    max_retries: int = 2

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc or ("api.openai.com" if self.provider == "openai" else "?")


def make_client(settings: LLMSettings) -> AsyncOpenAI:
    """An async client for ``settings``: Azure deployments by endpoint + api_version, others by base URL."""
    if settings.provider == "azure_openai":
        return AsyncAzureOpenAI(
            azure_endpoint=settings.endpoint,
            api_version=settings.api_version,
            azure_deployment=settings.model,
            api_key=settings.api_key or _NO_KEY,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )
    return AsyncOpenAI(
        base_url=settings.endpoint or None,
        api_key=settings.api_key or _NO_KEY,
        timeout=settings.timeout,
        max_retries=settings.max_retries,
    )


# Clients are reused: building one loads the CA bundle into a new SSL context (~20 ms, blocking the
# event loop) and a new client means a new TCP/TLS connection per answer. httpx connection pools
# belong to one event loop, so the cache is per loop, and per settings (a changed key or endpoint is
# a new entry; settings are frozen and hashable).
_MAX_CLIENTS_PER_LOOP = 16
_closing: set[asyncio.Task[None]] = set()
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[LLMSettings, AsyncOpenAI]] = (
    weakref.WeakKeyDictionary()
)


def client_for(settings: LLMSettings) -> AsyncOpenAI:
    """A shared client for ``settings`` on the running event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    clients = _clients.setdefault(loop, {})
    client = clients.get(settings)
    if client is None:
        if len(clients) >= _MAX_CLIENTS_PER_LOOP:  # settings changed many times: drop the oldest
            oldest = next(iter(clients))
            closing = loop.create_task(clients.pop(oldest).close())
            _closing.add(closing)
            closing.add_done_callback(_closing.discard)
        client = clients[settings] = make_client(settings)
    return client


class StreamCut(Exception):
    """The model's stream ended without its final chunk (connection dropped mid-answer)."""


def describe_llm_error(exc: BaseException, settings: LLMSettings) -> str:
    """A message an engineer can act on, naming the model and endpoint but never the key."""
    where = f"model {settings.name} at {settings.host}"
    if isinstance(exc, openai.AuthenticationError):
        return f"The {where} refused the API key (401). Check the key its secret reference points to."
    if isinstance(exc, openai.PermissionDeniedError):
        return f"The {where} denied access (403)."
    if isinstance(exc, openai.NotFoundError):
        return f"The {where} does not know the model or deployment {settings.model!r} (404)."
    if isinstance(exc, openai.RateLimitError):
        retry = exc.response.headers.get("retry-after") if exc.response is not None else None
        hint = f" Try again in {retry} s." if retry else " Try again shortly."
        return f"The {where} is rate limiting requests (429) after {settings.max_retries} retries.{hint}"
    if isinstance(exc, openai.APITimeoutError):
        return f"No answer from the {where} within {settings.timeout:g} s."
    if isinstance(exc, openai.APIConnectionError):
        return f"Cannot reach the {where}: {exc.__cause__ or exc}."
    if isinstance(exc, openai.APIStatusError):
        return f"The {where} failed with HTTP {exc.status_code}: {_brief(exc.message)}"
    if isinstance(exc, StreamCut | openai.APIError):
        return f"The answer from the {where} was cut off mid-stream: {_brief(str(exc))}"
    return f"Unexpected error talking to the {where}: {type(exc).__name__}: {_brief(str(exc))}"


def _brief(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
