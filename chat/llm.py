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

from netops.redaction import sanitize, unsafe_header_value

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
    accepts_images: bool = False  # images from tools go to the model as image parts, else described

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).netloc or ("api.openai.com" if self.provider == "openai" else "?")


class UnsendableKey(Exception):
    """The resolved API key cannot travel in an HTTP header (line break, control or non-ASCII character).

    Raised before anything is sent: the HTTP library's own error would quote the header value.
    """


def make_client(settings: LLMSettings) -> AsyncOpenAI:
    """An async client for ``settings``: Azure deployments by endpoint + api_version, others by base URL."""
    if settings.api_key and unsafe_header_value(settings.api_key):
        raise UnsendableKey(settings.name)
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
    """A message an engineer can act on, naming the model and endpoint but never the key.

    The endpoint's own words (``exc.message``) are included only redacted — of the model's key and
    of every secret netops holds, in every encoded form — and then cut: an endpoint answering
    ``400 Incorrect API key provided: sk-...`` must not put the key in the chat, the exports or a log.
    Transport errors are described by type, never by their text (it may quote request headers).
    """
    return sanitize(_describe(exc, settings), secrets=[settings.api_key])


def _describe(exc: BaseException, settings: LLMSettings) -> str:
    where = f"model {settings.name} at {settings.host}"
    if isinstance(exc, UnsendableKey):
        return (
            f"The API key of {where} cannot be sent: the secret its reference points to holds a line "
            "break, control or non-ASCII character."
        )
    if isinstance(exc, openai.AuthenticationError):
        return f"The {where} refused the API key (401). Check the key its secret reference points to."
    if isinstance(exc, openai.PermissionDeniedError):
        return f"The {where} denied access (403)."
    if isinstance(exc, openai.NotFoundError):
        return f"The {where} does not know the model or deployment {settings.model!r} (404)."
    if isinstance(exc, openai.RateLimitError):
        retry = exc.response.headers.get("retry-after") if exc.response is not None else None
        hint = f" Try again in {_brief(retry, 20)} s." if retry else " Try again shortly."
        return f"The {where} is rate limiting requests (429) after {settings.max_retries} retries.{hint}"
    if isinstance(exc, openai.APITimeoutError):
        return f"No answer from the {where} within {settings.timeout:g} s."
    if isinstance(exc, openai.APIConnectionError):
        return f"Cannot reach the {where}: {_transport_reason(exc)}."
    if isinstance(exc, openai.APIStatusError):
        return (
            f"The {where} failed with HTTP {exc.status_code}: {_brief(exc.message, secret=settings.api_key)}"
        )
    if isinstance(exc, StreamCut | openai.APIError):
        return (
            f"The answer from the {where} was cut off mid-stream: {_brief(str(exc), secret=settings.api_key)}"
        )
    detail = _brief(str(exc), secret=settings.api_key)
    return f"Unexpected error talking to the {where}: {type(exc).__name__}: {detail}"


def _transport_reason(exc: BaseException) -> str:
    """The type of the underlying error and the OS reason, never its text (it may quote headers)."""
    cause: BaseException | None = exc.__cause__ or exc
    reason = type(cause).__name__
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError) and cause.strerror:
        reason += f" ({cause.strerror})"
    return reason


def _brief(text: str, limit: int = 300, *, secret: str = "") -> str:
    """``text`` redacted, then cut to ``limit`` characters (never the other way round)."""
    cleaned = sanitize(text, secrets=[secret] if secret else ())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
