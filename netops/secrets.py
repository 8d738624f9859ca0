"""Secret references: the database stores where a secret lives, never the secret itself.

A reference is ``env:NAME`` (an environment variable of the netops process) or ``file:/path``
(a file such as a Docker or Kubernetes secret mount). References are resolved only at the moment
of use — building an LLM client, opening an MCP connection — and every resolved value is
registered with the log redaction filter.

Whoever registers a reference chooses which secret netops sends, and where. So the operator
decides what may be referenced (``SECRET_ENV_ALLOW`` name patterns, ``SECRET_FILE_DIRS``
directories), and netops' own configuration can never be referenced, whatever the patterns say.
:func:`validate_secret_reference` is the one place that rule lives: model validators, serializers,
the admin and :func:`resolve_secret` (again at use, since a symlink may have been swapped or a row
stored before the rule) all call it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from pathlib import Path

from django.conf import settings

from netops.errors import ApplicationError
from netops.logs import register_secret_value

_REFERENCE = re.compile(r"^(?P<scheme>env|file):(?P<target>.+)$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCHEMES = ("env:", "file:")

# A secret file is a token or a key, not a document: larger files are refused rather than read.
MAX_SECRET_FILE_BYTES = 64 * 1024

# Variables the netops process (or a library in it) reads without going through the settings:
# libpq reads PG* when DATABASE_URL lacks them, httpx takes proxy credentials from *_PROXY.
_PROCESS_ENV_VARS = frozenset(
    {
        "DJANGO_SETTINGS_MODULE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSERVICEFILE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    }
)

# A stdio server's env value under a name like these must be a secret reference: the name says
# the value is a secret, and raw values are stored in the database and shown to editors.
SECRET_LOOKING_NAMES = (
    "*KEY*",
    "*TOKEN*",
    "*SECRET*",
    "*PASSWORD*",
    "*PASSWD*",
    "*PASS*",
    "*AUTH*",
    "*CREDENTIAL*",
    "*PRIVATE*",
    "*COOKIE*",
    "*SESSION*",
)

SECRET_REFERENCE_HELP = (
    "A secret reference, not the secret: 'env:VARIABLE' (an environment variable of netops) or "  # noqa: S105
    "'file:/run/secrets/name' (a file). Only what the operator allows (SECRET_ENV_ALLOW, "
    "SECRET_FILE_DIRS) may be referenced, never netops' own configuration."
)


class SecretError(ApplicationError):
    """A secret reference is malformed, not allowed, or cannot be resolved."""

    status_code = 500
    code = "secret_unavailable"


def own_env_vars() -> frozenset[str]:
    """Every environment variable that is netops' own configuration (never referenceable)."""
    return frozenset(getattr(settings, "NETOPS_OWN_ENV_VARS", ())) | _PROCESS_ENV_VARS


def _own_files() -> set[Path]:
    """Files that hold netops' own configuration or data: the generated key, ``.env``, SQLite."""
    var_dir = Path(settings.VAR_DIR)
    files = {var_dir / "secret_key", Path(settings.BASE_DIR) / ".env"}
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3") and str(database["NAME"]) != ":memory:":
        name = Path(str(database["NAME"]))
        files |= {name, Path(f"{name}-wal"), Path(f"{name}-shm"), Path(f"{name}-journal")}
    return {_resolved(path) for path in files}


def _resolved(path: Path, *, strict: bool = False) -> Path:
    return path.expanduser().resolve(strict=strict)


def secret_file_dirs() -> list[Path]:
    """The directories ``file:`` references may point into, resolved (``SECRET_FILE_DIRS``)."""
    return [_resolved(Path(d)) for d in settings.SECRET_FILE_DIRS if str(d).strip()]


def _check_env(reference: str, name: str) -> None:
    if not _ENV_NAME.match(name):
        raise SecretError("an 'env:' reference names an environment variable (letters, digits, _)", 400)
    if name in own_env_vars():
        raise SecretError(f"{reference} is netops' own configuration and cannot be referenced", 400)
    patterns = [p.strip() for p in settings.SECRET_ENV_ALLOW if p.strip()]
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
        allowed = ", ".join(patterns) if patterns else "nothing (it is empty)"
        raise SecretError(
            f"{reference} is not allowed: SECRET_ENV_ALLOW permits env: references to names "
            f"matching {allowed}",
            400,
        )


def _check_file(reference: str, target: str, *, at_use: bool) -> Path:
    """Return the real path of an allowed ``file:`` target, or raise naming the rule.

    ``..`` and symlinks are resolved first, so ``/run/secrets/../../etc/passwd`` and a link inside
    an allowed directory pointing out of it are both judged by where they really lead. Before use
    the file must exist; when saved, a file still to be created inside an allowed directory is fine.
    """
    if not target.startswith("/"):
        raise SecretError("a 'file:' reference needs an absolute path", status_code=400)
    dirs = secret_file_dirs()
    outside = SecretError(
        f"{reference} is refused: file: references must point into one of "
        + (", ".join(str(d) for d in dirs) if dirs else "the SECRET_FILE_DIRS directories (none is set)"),
        400,
    )
    try:
        real = _resolved(Path(target))
    except (OSError, RuntimeError):  # a symlink loop, an unreadable directory on the way
        raise outside from None
    if not any(real.is_relative_to(d) and real != d for d in dirs):
        raise outside
    if real in _own_files():
        raise SecretError(f"{reference} is netops' own configuration and cannot be referenced", 400)
    try:
        real = _resolved(Path(target), strict=True)
    except FileNotFoundError:
        if at_use:
            raise SecretError(f"secret {reference} cannot be read: the file does not exist") from None
        return real
    except (OSError, RuntimeError):
        raise SecretError(f"secret {reference} cannot be read", 400 if not at_use else None) from None
    if not any(real.is_relative_to(d) for d in dirs):  # a link swapped between the two resolves
        raise outside
    if not real.is_file():
        raise SecretError(f"{reference} is not a regular file", 400)
    return real


def _check(reference: str, *, at_use: bool) -> tuple[str, str, Path | None]:
    """Parse ``reference`` and apply the policy; return (scheme, target, real file path or None)."""
    match = _REFERENCE.match(reference.strip())
    if not match:
        raise SecretError(
            "must be a secret reference such as 'env:AZURE_OPENAI_KEY' or 'file:/run/secrets/key'; "
            "the secret itself is never stored",
            status_code=400,
        )
    scheme, target = match["scheme"], match["target"]
    if scheme == "env":
        _check_env(reference.strip(), target)
        return scheme, target, None
    return scheme, target, _check_file(reference.strip(), target, at_use=at_use)


def validate_secret_reference(reference: str) -> str:
    """Return the reference (stripped) if well-formed and allowed; raise :class:`SecretError` (400).

    The message names the rule (and the reference, which is not a secret) but never echoes a
    malformed input: a user who pasted a real key by mistake must not see it reflected in an error,
    a response or a log line.
    """
    _check(reference, at_use=False)
    return reference.strip()


def looks_like_secret_reference(value: str) -> bool:
    """True when ``value`` is meant as a reference (``env:`` or ``file:``), allowed or not.

    A value that looks like a reference is always validated as one, never passed on as plain text.
    """
    return value.strip().startswith(_SCHEMES)


def is_secret_reference(value: str) -> bool:
    """True when ``value`` is meant as a secret reference; resolving it applies the policy."""
    return looks_like_secret_reference(value)


def name_looks_secret(name: str) -> bool:
    """True when an environment variable's name says its value is a secret (``API_TOKEN``, ...)."""
    upper = name.upper()
    return any(fnmatch.fnmatchcase(upper, pattern) for pattern in SECRET_LOOKING_NAMES)


def validate_env_entry(name: str, value: str) -> str:
    """Validate one entry of a stdio server's ``env``; return the value to store.

    A value is either a secret reference (checked like every other) or plainly non-secret: a raw
    value is refused under a name that looks secret, since raw values sit in the database and are
    shown to editors. Messages never echo the value.
    """
    if not _ENV_NAME.match(name):
        raise SecretError("an environment variable name is letters, digits and _", 400)
    if looks_like_secret_reference(value):
        return validate_secret_reference(value)
    if name_looks_secret(name):
        raise SecretError(
            f"{name} looks like a secret: its value must be a secret reference (env:NAME or "
            "file:/path), never the secret itself",
            400,
        )
    return value


def _read_secret_file(reference: str, real: Path) -> str:
    """Read the already checked ``real`` path without following a link swapped in since the check."""
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise SecretError(f"secret {reference} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise SecretError(f"secret {reference} refused: it is not a regular file")
        data = handle.read(MAX_SECRET_FILE_BYTES + 1)
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SecretError(f"secret {reference} refused: larger than {MAX_SECRET_FILE_BYTES} bytes")
    return data.decode("utf-8", errors="replace").strip()


def resolve_secret(reference: str) -> str:
    """Return the secret named by ``reference``; raise :class:`SecretError` naming only the reference.

    The policy is applied again here: a row stored before it (``env:SECRET_KEY``), or a symlink
    retargeted after the save, is refused at use and nothing is sent.
    """
    try:
        scheme, target, real = _check(reference, at_use=True)
    except SecretError as exc:
        if exc.status_code != 400:  # the file vanished or cannot be read: already says so
            raise
        # Refused by the policy: stored before it, or a link retargeted since. Not the caller's input.
        raise SecretError(f"secret reference refused at use: {exc.message}") from None
    if scheme == "env":
        value = os.environ.get(target)
        if value is None:
            raise SecretError(f"secret {reference.strip()} is not set in the environment of netops")
    else:
        assert real is not None
        value = _read_secret_file(reference.strip(), real)
    register_secret_value(value)
    return value
