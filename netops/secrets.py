"""Secret references: the database stores where a secret lives, never the secret itself.

A reference is ``env:NAME`` (an environment variable of the netops process) or ``file:/path``
(a file such as a Docker or Kubernetes secret mount). References are resolved only at the moment
of use — building an LLM client, opening an MCP connection — and every resolved value is
registered with the log redaction filter.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from netops.errors import ApplicationError
from netops.logs import register_secret_value

_REFERENCE = re.compile(r"^(?P<scheme>env|file):(?P<target>.+)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

SECRET_REFERENCE_HELP = (
    "A secret reference, not the secret: 'env:VARIABLE' (an environment variable of netops) or "  # noqa: S105
    "'file:/run/secrets/name' (a file)."
)


class SecretError(ApplicationError):
    """A secret reference is malformed or cannot be resolved."""

    status_code = 500
    code = "secret_unavailable"


def validate_secret_reference(reference: str) -> str:
    """Return the reference unchanged if well-formed; raise :class:`SecretError` otherwise.

    The message never echoes the input: a user who pasted a real key by mistake must not see it
    reflected in an error, a response or a log line.
    """
    match = _REFERENCE.match(reference.strip())
    if not match:
        raise SecretError(
            "must be a secret reference such as 'env:AZURE_OPENAI_KEY' or 'file:/run/secrets/key'; "
            "the secret itself is never stored",
            status_code=400,
        )
    if match["scheme"] == "env" and not _ENV_NAME.match(match["target"]):
        raise SecretError("an 'env:' reference names an environment variable (letters, digits, _)", 400)
    if match["scheme"] == "file" and not match["target"].startswith("/"):
        raise SecretError("a 'file:' reference needs an absolute path", status_code=400)
    return reference.strip()


def is_secret_reference(value: str) -> bool:
    """True when ``value`` is a well-formed secret reference."""
    try:
        validate_secret_reference(value)
    except SecretError:
        return False
    return True


def resolve_secret(reference: str) -> str:
    """Return the secret named by ``reference``; raise :class:`SecretError` naming only the reference."""
    validate_secret_reference(reference)
    scheme, _, target = reference.strip().partition(":")
    if scheme == "env":
        value = os.environ.get(target)
        if value is None:
            raise SecretError(f"secret {reference} is not set in the environment of netops")
    else:
        try:
            value = Path(target).read_text().strip()
        except OSError as exc:
            raise SecretError(f"secret {reference} cannot be read: {exc.strerror}") from None
    register_secret_value(value)
    return value
