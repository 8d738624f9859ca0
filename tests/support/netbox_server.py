"""A real NetBox (the ``netbox`` package from PyPI) for tests, on loopback, on the machine's PostgreSQL and Redis.

Layers, each idempotent and safe when several test processes race:

1. **Install** (once per version, ~1-2 min): a Python 3.12 virtualenv in a cache folder outside the repo
   (``~/.cache/netops-test/netbox-<version>``, or ``NETOPS_NETBOX_CACHE``) with ``netbox==<version>``.
   Build dependencies (``libpq-dev gcc``) are installed through apt-get only when ``pg_config`` or ``gcc``
   is missing and we are root. A file lock serialises installers; a marker file records success.
2. **Configuration**: ``<cache>/root/conf/configuration.py`` (``NETBOX_ROOT=<cache>/root``), rewritten when
   its content changes. Secrets (``SECRET_KEY``, the v2 token pepper) are generated once into
   ``<cache>/root/conf/secrets.json``. The database name comes from the ``NETOPS_NETBOX_DB`` variable, so
   one install serves any number of databases.
3. **Template database** (once per version, ~4.5 min): ``netops_netbox_tpl_<version>`` is migrated, then a
   superuser with a v1 and a v2 token is created in it. Completion is recorded as a JSON comment on the
   database (``COMMENT ON DATABASE``); a template without it (an interrupted migrate) is dropped and
   migrated again. A PostgreSQL advisory lock serialises template work and cloning across processes.
4. **Per session** (seconds): ``CREATE DATABASE <clone> TEMPLATE <template>`` (~1-2 s; no server ever
   opens the template, which PostgreSQL requires for a clone), gunicorn (``--preload``, 2 workers) on a
   free loopback port, wait for ``/api/status/`` to answer 200 with the v2 token (~6 s). ``NetBoxInstance.stop()`` terminates the server and drops the clone; clones left behind by
   killed sessions of this host are dropped by the next session.

Tokens: v2 is ``nbt_<12-char key>.<40-char secret>`` sent as ``Authorization: Bearer nbt_<key>.<secret>``;
v1 is 40 hex characters sent as ``Authorization: Token <40 hex>``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import glob
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

# The newest 4.7.x on PyPI when this was written (``pip index versions netbox``: 4.7.3, 4.7.2, 4.7.1, 4.7.0).
NETBOX_VERSION = os.environ.get("NETOPS_NETBOX_VERSION", "4.7.3")

PG_HOST = os.environ.get("NETOPS_NETBOX_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("NETOPS_NETBOX_PG_PORT", "5432"))
PG_USER = os.environ.get("NETOPS_NETBOX_PG_USER", "postgres")
PG_PASSWORD = os.environ.get("NETOPS_NETBOX_PG_PASSWORD", "")
REDIS_HOST = os.environ.get("NETOPS_NETBOX_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("NETOPS_NETBOX_REDIS_PORT", "6379"))
# Redis databases netops itself never uses (it uses 0, CHECKPOINT_REDIS_DB=2 and 15 in tests).
REDIS_TASKS_DB = 12
REDIS_CACHING_DB = 13

SUPERUSER = "admin"

# Bounded waits (seconds).
APT_TIMEOUT = 900
PIP_TIMEOUT = 1200
INSTALL_LOCK_TIMEOUT = PIP_TIMEOUT + APT_TIMEOUT + 120
MIGRATE_TIMEOUT = 1800
TOKENS_TIMEOUT = 300
TEMPLATE_LOCK_TIMEOUT = MIGRATE_TIMEOUT + TOKENS_TIMEOUT + 120
STARTUP_TIMEOUT = 120
STOP_TIMEOUT = 15
STOP_GRACE = 1.0

_CLONE_PREFIX = "netops_netbox_run_"
_TEMPLATE_PREFIX = "netops_netbox_tpl_"
_TOKEN_CHARSET = string.ascii_letters + string.digits  # NetBox's users.constants.TOKEN_CHARSET
_LOG_RETENTION_SECONDS = 3 * 24 * 3600

Progress = Callable[[str], None]


class NetBoxUnavailable(RuntimeError):
    """A prerequisite of the machine is missing (PostgreSQL, Redis, Python 3.12): skip locally, fail in CI."""


class NetBoxHarnessError(RuntimeError):
    """Installing, migrating or starting NetBox failed (the message names the log file)."""


def _quiet(_: str) -> None:
    pass


# --------------------------------------------------------------------------------------------------
# Paths and prerequisites
# --------------------------------------------------------------------------------------------------


def cache_dir(version: str = NETBOX_VERSION) -> Path:
    """The install folder: ``NETOPS_NETBOX_CACHE`` if set, else ``~/.cache/netops-test/netbox-<version>``."""
    override = os.environ.get("NETOPS_NETBOX_CACHE")
    if override:
        return Path(override).expanduser().resolve()
    return Path.home() / ".cache" / "netops-test" / f"netbox-{version}"


def template_name(version: str = NETBOX_VERSION) -> str:
    return _TEMPLATE_PREFIX + _db_token(version)


def _db_token(version: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in version.lower())


def find_python312() -> str | None:
    """A working ``python3.12``: ``NETOPS_PYTHON312``, ``python3.12`` on PATH, else pyenv's versions/3.12*."""
    candidates: list[str] = []
    if explicit := os.environ.get("NETOPS_PYTHON312"):
        candidates.append(explicit)
    if on_path := shutil.which("python3.12"):
        candidates.append(on_path)  # may be a pyenv shim that refuses to run: checked below
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    if pyenv := shutil.which("pyenv"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            roots.insert(
                0, subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=10).stdout.strip()
            )
    for root in filter(None, roots):
        candidates.extend(sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"), reverse=True))
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == "3.12":
            return candidate
    return None


def _pg_connect(dbname: str = "postgres", *, timeout: int = 5) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        password=PG_PASSWORD or None,
        dbname=dbname,
        connect_timeout=timeout,
        autocommit=True,
    )


def check_prerequisites(version: str = NETBOX_VERSION) -> None:
    """Raise :class:`NetBoxUnavailable` naming what is missing: PostgreSQL, Redis, or Python 3.12."""
    try:
        with _pg_connect(timeout=3) as conn:
            row = conn.execute("SHOW server_version_num").fetchone()
            if row is None or int(row[0]) < 150000:
                raise NetBoxUnavailable(f"NetBox {version} needs PostgreSQL 15+, found {row}")
    except psycopg.Error as exc:
        raise NetBoxUnavailable(f"needs PostgreSQL at {PG_USER}@{PG_HOST}:{PG_PORT}: {exc}".strip()) from exc
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=3) as sock:
            sock.settimeout(3)
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
        if not answer.startswith(b"+PONG"):
            raise NetBoxUnavailable(f"needs Redis at {REDIS_HOST}:{REDIS_PORT}: PING answered {answer!r}")
    except OSError as exc:
        raise NetBoxUnavailable(f"needs Redis at {REDIS_HOST}:{REDIS_PORT}: {exc}") from exc
    if not NetBoxInstall(cache_dir(version), version).installed and find_python312() is None:
        raise NetBoxUnavailable(
            "needs Python 3.12 for NetBox (python3.12 on PATH, pyenv's versions/3.12*, or NETOPS_PYTHON312)"
        )


# --------------------------------------------------------------------------------------------------
# Locks and subprocesses
# --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NetBoxHarnessError(
                        f"waited {timeout:.0f} s for the lock {path} ({what} by another process?)"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _advisory_lock(conn: psycopg.Connection[Any], name: str, timeout: float) -> Iterator[None]:
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            break
        if time.monotonic() > deadline:
            raise NetBoxHarnessError(
                f"waited {timeout:.0f} s for the PostgreSQL advisory lock {name!r} "
                "(another test session migrating the NetBox template?)"
            )
        time.sleep(0.5)
    try:
        yield
    finally:
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run_logged(
    argv: list[str],
    *,
    log: Path,
    timeout: float,
    what: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    die_with_parent: bool = True,
) -> None:
    """Run a command with its output appended to ``log``; raise naming the log on failure or timeout.

    The command gets SIGTERM when the test process dies (a killed session must not leave a migrate
    running), except with ``die_with_parent=False`` (apt-get: never interrupt dpkg).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            result = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                timeout=timeout,
                check=False,
                preexec_fn=_parent_death_signal if die_with_parent else None,
            )
        except subprocess.TimeoutExpired:
            raise NetBoxHarnessError(f"{what} did not finish within {timeout:.0f} s; see {log}") from None
    if result.returncode != 0:
        raise NetBoxHarnessError(
            f"{what} failed with exit code {result.returncode}; see {log}. Last lines:\n{_tail(log)}"
        )


# Resolved here, not in the forked child (no dlopen between fork and exec in a threaded process).
try:
    _PRCTL: Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux/glibc: children then outlive a killed test process
    _PRCTL = None
_PR_SET_PDEATHSIG = 1
_SIGTERM = int(signal.SIGTERM)


def _parent_death_signal() -> None:
    """In the child before exec: get SIGTERM when the test process dies, even by SIGKILL (Linux prctl).

    Linux ties this to the *thread* that started the child: start servers from a long-lived thread
    (pytest's main thread).
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------------
# Layer 1 + 2: install and configuration


def lock_file(version: str) -> Path:
    """The lock file of NetBox's own virtualenv (``requirements/netbox-<version>.lock``)."""
    path = Path(__file__).resolve().parents[2] / "requirements" / f"netbox-{version}.lock"
    if not path.is_file():
        raise NetBoxUnavailable(
            f"no lock file for NetBox {version}: run NETOPS_NETBOX_VERSION={version} scripts/lock"
        )
    return path


def lock_digest(version: str) -> str:
    """What the install marker records: a changed lock file means a fresh install."""
    return hashlib.sha256(lock_file(version).read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------------


_CONFIGURATION = '''\
"""NetBox configuration for the netops test harness (generated by tests/support/netbox_server.py)."""

import json
import os
from pathlib import Path

_SECRETS = json.loads((Path(__file__).resolve().parent / "secrets.json").read_text())

ALLOWED_HOSTS = ["*"]

DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["NETOPS_NETBOX_DB"],
        "USER": {pg_user!r},
        "PASSWORD": {pg_password!r},
        "HOST": {pg_host!r},
        "PORT": {pg_port!r},
        "CONN_MAX_AGE": 300,
    }}
}}

REDIS = {{
    "tasks": {{"HOST": {redis_host!r}, "PORT": {redis_port!r}, "DATABASE": {tasks_db!r}, "SSL": False}},
    "caching": {{"HOST": {redis_host!r}, "PORT": {redis_port!r}, "DATABASE": {caching_db!r}, "SSL": False}},
}}

SECRET_KEY = _SECRETS["secret_key"]
API_TOKEN_PEPPERS = {{1: _SECRETS["pepper"]}}

# NetBox's default (True, and setting it at all is deprecated) is what the recorded traffic shows:
# no token -> 403. NETOPS_NETBOX_LOGIN_REQUIRED=0 in the server environment allows anonymous access.
if os.environ.get("NETOPS_NETBOX_LOGIN_REQUIRED", "1") == "0":
    LOGIN_REQUIRED = False

PLUGINS = []
CENSUS_REPORTING_ENABLED = False
ISOLATED_DEPLOYMENT = True
RELEASE_CHECK_URL = None
TIME_ZONE = "UTC"
'''


@dataclass(frozen=True)
class NetBoxInstall:
    """A NetBox install in ``cache``: ``venv/`` (Python 3.12), ``root/`` (NETBOX_ROOT), ``logs/``."""

    cache: Path
    version: str

    @property
    def venv(self) -> Path:
        return self.cache / "venv"

    @property
    def root(self) -> Path:
        return self.cache / "root"

    @property
    def logs(self) -> Path:
        return self.cache / "logs"

    @property
    def netbox(self) -> Path:
        return self.venv / "bin" / "netbox"

    @property
    def gunicorn(self) -> Path:
        return self.venv / "bin" / "gunicorn"

    @property
    def marker(self) -> Path:
        return self.cache / "installed.json"

    @property
    def installed(self) -> bool:
        try:
            data = json.loads(self.marker.read_text())
        except (OSError, ValueError):
            return False
        return (
            data.get("netbox") == self.version
            and data.get("lock") == lock_digest(self.version)
            and self.netbox.exists()
            and self.gunicorn.exists()
        )

    @property
    def gunicorn_version(self) -> str:
        return str(json.loads(self.marker.read_text()).get("gunicorn", ""))

    @property
    def gunicorn_major(self) -> int:
        major = self.gunicorn_version.split(".")[0]
        return int(major) if major.isdigit() else 0

    def secrets(self) -> dict[str, str]:
        return dict(json.loads((self.root / "conf" / "secrets.json").read_text()))

    @property
    def fingerprint(self) -> str:
        """Identifies the secrets tokens are hashed with: a template made with other secrets gets new tokens."""
        data = self.secrets()
        return hashlib.sha256(f"{data['secret_key']}\0{data['pepper']}".encode()).hexdigest()[:16]

    def env(self, database: str, **extra: str) -> dict[str, str]:
        """A clean environment for NetBox commands (nothing of the pytest process's Django settings)."""
        env = {
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", str(Path.home())),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "NETBOX_ROOT": str(self.root),
            "DJANGO_SETTINGS_MODULE": "netbox.settings",
            "NETOPS_NETBOX_DB": database,
            "VIRTUAL_ENV": str(self.venv),
        }
        env.update(extra)
        return env


def _ensure_build_dependencies(log: Path, progress: Progress) -> None:
    missing = [tool for tool in ("pg_config", "gcc") if shutil.which(tool) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise NetBoxHarnessError(
            f"building psycopg for NetBox needs {', '.join(missing)}: install libpq-dev and gcc "
            "(apt-get install -y libpq-dev gcc)"
        )
    progress(f"installing build dependencies (missing {', '.join(missing)}): apt-get install libpq-dev gcc")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run_logged(
        ["apt-get", "update"],
        log=log,
        timeout=APT_TIMEOUT,
        what="apt-get update",
        env=env,
        die_with_parent=False,
    )
    _run_logged(
        ["apt-get", "install", "-y", "--no-install-recommends", "libpq-dev", "gcc"],
        log=log,
        timeout=APT_TIMEOUT,
        what="apt-get install libpq-dev gcc",
        env=env,
        die_with_parent=False,
    )


def _write_configuration(install: NetBoxInstall) -> None:
    """Create the secrets once and (re)write configuration.py when it differs. Call under the install lock."""
    conf = install.root / "conf"
    conf.mkdir(parents=True, exist_ok=True)
    for sub in ("media", "scripts", "reports", "static"):
        (install.root / sub).mkdir(exist_ok=True)
    init = conf / "__init__.py"
    if not init.exists():
        init.write_text("")
    secrets_file = conf / "secrets.json"
    if not secrets_file.exists():
        chars = string.ascii_letters + string.digits + "!@#$%^&*(-_=+)"
        data = {
            "secret_key": "".join(secrets.choice(chars) for _ in range(64)),
            "pepper": "".join(secrets.choice(_TOKEN_CHARSET) for _ in range(64)),
        }
        tmp = secrets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.chmod(0o600)
        os.replace(tmp, secrets_file)
    text = _CONFIGURATION.format(
        pg_user=PG_USER,
        pg_password=PG_PASSWORD,
        pg_host=PG_HOST,
        pg_port=str(PG_PORT),
        redis_host=REDIS_HOST,
        redis_port=REDIS_PORT,
        tasks_db=REDIS_TASKS_DB,
        caching_db=REDIS_CACHING_DB,
    )
    target = conf / "configuration.py"
    if not target.exists() or target.read_text() != text:
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, target)


def ensure_install(version: str = NETBOX_VERSION, *, progress: Progress = _quiet) -> NetBoxInstall:
    """Install ``netbox==version`` into its own Python 3.12 virtualenv (once) and write its configuration."""
    install = NetBoxInstall(cache_dir(version), version)
    install.cache.mkdir(parents=True, exist_ok=True)
    with _file_lock(install.cache / "install.lock", INSTALL_LOCK_TIMEOUT, "installing NetBox"):
        if not install.installed:
            log = install.logs / "install.log"
            python = find_python312()
            if python is None:
                raise NetBoxUnavailable(
                    "needs Python 3.12 for NetBox (python3.12 on PATH or pyenv versions/3.12*)"
                )
            progress(f"installing NetBox {version} into {install.venv} (about 1-2 minutes; log {log})")
            started = time.monotonic()
            _ensure_build_dependencies(log, progress)
            install.marker.unlink(missing_ok=True)
            shutil.rmtree(install.venv, ignore_errors=True)
            _run_logged(
                [python, "-m", "venv", str(install.venv)], log=log, timeout=300, what="python3.12 -m venv"
            )
            pip = [str(install.venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
            _run_logged(
                [*pip, "install", "--upgrade", "pip"], log=log, timeout=PIP_TIMEOUT, what="pip upgrade"
            )
            # Exactly the pinned set of requirements/netbox-<version>.lock (hashes checked), never
            # whatever PyPI serves today (scripts/lock regenerates it).
            _run_logged(
                [*pip, "install", "--require-hashes", "-r", str(lock_file(version))],
                log=log,
                timeout=PIP_TIMEOUT,
                what=f"pip install -r {lock_file(version).name}",
            )
            versions = subprocess.run(
                [
                    str(install.venv / "bin" / "python"),
                    "-c",
                    "import json; from importlib.metadata import version as v; "
                    "print(json.dumps({'netbox': v('netbox'), 'gunicorn': v('gunicorn'), 'django': v('django')}))",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            data = json.loads(versions.stdout)
            if data["netbox"] != version:
                raise NetBoxHarnessError(
                    f"pip installed netbox {data['netbox']}, wanted {version}; see {log}"
                )
            data["install_seconds"] = round(time.monotonic() - started, 1)
            data["lock"] = lock_digest(version)
            install.marker.write_text(json.dumps(data))
            progress(f"installed NetBox {version} in {data['install_seconds']} s")
        _write_configuration(install)
    return install


# --------------------------------------------------------------------------------------------------
# Layer 3: template database and clones
# --------------------------------------------------------------------------------------------------

_TOKENS_SCRIPT = """
import os
from users.models import Token, User

username, password = os.environ["NETOPS_NB_USER"], os.environ["NETOPS_NB_PASSWORD"]
user = User.objects.filter(username=username).first()
if user is None:
    user = User.objects.create_superuser(username, f"{username}@example.com", password)
user.is_superuser = True
user.is_active = True
user.set_password(password)
user.save()
Token.objects.filter(user=user).delete()
Token(user=user, version=1, token=os.environ["NETOPS_NB_V1"], description="netops tests (v1)").save()
Token(
    user=user, version=2, key=os.environ["NETOPS_NB_V2_KEY"], token=os.environ["NETOPS_NB_V2_SECRET"],
    description="netops tests (v2)",
).save()
print("netops-tokens-ok")
"""


def _db_comment(conn: psycopg.Connection[Any], database: str) -> dict[str, Any] | None:
    """The JSON comment on ``database``; ``None`` if the database does not exist, ``{}`` without a comment."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", (database,)
    ).fetchone()
    if row is None:
        return None
    try:
        value = json.loads(row[0] or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _set_db_comment(conn: psycopg.Connection[Any], database: str, data: dict[str, Any]) -> None:
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(database), sql.Literal(json.dumps(data))
        )
    )


def _drop_database(conn: psycopg.Connection[Any], database: str) -> None:
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))


def _make_tokens(install: NetBoxInstall, database: str, log: Path) -> dict[str, str]:
    """Create the superuser and its v1 and v2 tokens in ``database`` (``netbox shell``)."""
    password = secrets.token_urlsafe(18)
    v1 = secrets.token_hex(20)  # 40 hex characters
    key = "".join(secrets.choice(_TOKEN_CHARSET) for _ in range(12))  # users.constants.TOKEN_KEY_LENGTH
    secret = "".join(secrets.choice(_TOKEN_CHARSET) for _ in range(40))  # TOKEN_DEFAULT_LENGTH
    env = install.env(
        database,
        NETOPS_NB_USER=SUPERUSER,
        NETOPS_NB_PASSWORD=password,
        NETOPS_NB_V1=v1,
        NETOPS_NB_V2_KEY=key,
        NETOPS_NB_V2_SECRET=secret,
    )
    _run_logged(
        [str(install.netbox), "shell", "--no-imports", "-c", _TOKENS_SCRIPT],
        log=log,
        env=env,
        cwd=install.root,
        timeout=TOKENS_TIMEOUT,
        what="creating the NetBox superuser and tokens",
    )
    return {
        "username": SUPERUSER,
        "password": password,
        "token_v1": v1,
        "token_v2": f"nbt_{key}.{secret}",
    }


def _ensure_template_locked(
    conn: psycopg.Connection[Any], install: NetBoxInstall, progress: Progress
) -> dict[str, Any]:
    """Migrate the template and create its tokens if needed. The caller holds the advisory lock."""
    name = template_name(install.version)
    meta = _db_comment(conn, name)
    if meta is None or meta.get("netbox") != install.version or not meta.get("migrated"):
        log = install.logs / f"migrate-{name}.log"
        log.unlink(missing_ok=True)
        progress(f"migrating the NetBox template database {name} (about 4.5 minutes; log {log})")
        started = time.monotonic()
        _drop_database(conn, name)  # an interrupted migrate leaves a template without the marker
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        _run_logged(
            [str(install.netbox), "migrate", "--no-input"],
            log=log,
            env=install.env(name),
            cwd=install.root,
            timeout=MIGRATE_TIMEOUT,
            what=f"netbox migrate of {name}",
        )
        meta = {
            "netops": "netbox-template",
            "netbox": install.version,
            "migrated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "migrate_seconds": round(time.monotonic() - started, 1),
        }
        _set_db_comment(conn, name, meta)
        progress(f"migrated {name} in {meta['migrate_seconds']} s")
    if meta.get("fingerprint") != install.fingerprint or not meta.get("token_v2"):
        meta = {k: v for k, v in meta.items() if k not in ("username", "password", "token_v1", "token_v2")}
        meta.update(_make_tokens(install, name, install.logs / f"tokens-{name}.log"))
        meta["fingerprint"] = install.fingerprint
        _set_db_comment(conn, name, meta)
    return meta


def _reap_stale_clones(conn: psycopg.Connection[Any]) -> list[str]:
    """Drop clones made on this host by test processes that no longer exist (killed sessions)."""
    dropped = []
    rows = conn.execute(
        "SELECT datname FROM pg_database WHERE datname LIKE %s", (_CLONE_PREFIX.replace("_", r"\_") + "%",)
    ).fetchall()
    for (datname,) in rows:
        meta = _db_comment(conn, datname) or {}
        pid = meta.get("pid")
        if meta.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
            with contextlib.suppress(psycopg.Error):
                _drop_database(conn, datname)
                dropped.append(datname)
    return dropped


def _clone_locked(conn: psycopg.Connection[Any], template: str, clone: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(clone), sql.Identifier(template)
                )
            )
            break
        except psycopg.errors.ObjectInUse:
            # A backend that just used the template may still be exiting; PostgreSQL waits 5 s itself.
            if time.monotonic() > deadline:
                raise NetBoxHarnessError(f"the template {template} stayed in use; cannot clone it") from None
            time.sleep(1)
    _set_db_comment(
        conn,
        clone,
        {"netops": "netbox-clone", "host": socket.gethostname(), "pid": os.getpid(), "created": time.time()},
    )


def prepare(
    version: str = NETBOX_VERSION,
    *,
    clone: str | None = None,
    progress: Progress = _quiet,
    install: NetBoxInstall | None = None,
) -> dict[str, Any]:
    """Ensure the install and the migrated template (the slow, once-per-machine part); optionally clone it.

    Returns the template's metadata (``username``, ``password``, ``token_v1``, ``token_v2``,
    ``migrate_seconds`` ...), plus ``clone_seconds`` when it cloned.
    """
    install = install or ensure_install(version, progress=progress)
    with (
        _pg_connect() as conn,
        _advisory_lock(conn, f"netops-netbox-{template_name(version)}", TEMPLATE_LOCK_TIMEOUT),
    ):
        meta = _ensure_template_locked(conn, install, progress)
        _reap_stale_clones(conn)
        if clone is not None:
            started = time.monotonic()
            _clone_locked(conn, template_name(version), clone)
            meta = {**meta, "clone_seconds": round(time.monotonic() - started, 2)}
    return meta


# --------------------------------------------------------------------------------------------------
# Layer 4: a running NetBox
# --------------------------------------------------------------------------------------------------


@dataclass
class NetBoxInstance:
    """A running NetBox on loopback with its own database (a clone of the migrated template)."""

    url: str
    token_v2: str  # "nbt_<key>.<secret>": send as "Authorization: Bearer <token_v2>"
    token_v1: str  # 40 hex characters: send as "Authorization: Token <token_v1>"
    database: str
    version: str
    process: subprocess.Popen[bytes]
    log_path: Path
    username: str = SUPERUSER
    password: str = ""
    install: NetBoxInstall | None = None
    timings: dict[str, float] = field(default_factory=dict)
    _reset_plan: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    _stopped: bool = False

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def headers(self, token_version: int = 2) -> dict[str, str]:
        """Request headers with the v2 (``Bearer nbt_...``) or v1 (``Token ...``) token."""
        if token_version == 1:
            auth = f"Token {self.token_v1}"
        elif token_version == 2:
            auth = f"Bearer {self.token_v2}"
        else:
            raise ValueError(f"token_version must be 1 or 2, not {token_version!r}")
        return {"Authorization": auth, "Accept": "application/json"}

    def client(self, token_version: int = 2, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` on the API root (``/api``), authenticated with the chosen token."""
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.api_url + "/", headers=self.headers(token_version), **kwargs)

    def truncate_data(self) -> None:
        """Empty every table that was empty in the template (everything tests create), restarting ids.

        What the template holds stays: the superuser and its tokens, NetBox's seed rows (object types,
        permissions, module type profiles, migrations). The running server needs no restart. Rows that
        tests added to or changed in seeded tables (more users, an edited profile) stay as they are.
        """
        if self._stopped:
            raise NetBoxHarnessError("this NetBox has been stopped")
        truncate, delete = self._reset_plan
        with _pg_connect(self.database) as conn, conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '30s'")
            if truncate:
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY").format(
                        sql.SQL(", ").join(sql.Identifier("public", t) for t in truncate)
                    )
                )
            # Tables that seeded tables point at (e.g. users_owner) cannot be truncated: delete their rows.
            for table in delete:
                conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier("public", table)))
                conn.execute(
                    "SELECT setval(seq, 1, false) FROM pg_get_serial_sequence(%s, 'id') AS seq "
                    "WHERE seq IS NOT NULL",
                    (f"public.{table}",),
                )

    def stop(self) -> None:
        """Terminate the server (its whole process group) and drop the cloned database. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        errors: list[str] = []
        if self.process.poll() is None:
            # gunicorn's master stops its workers at once on SIGTERM but itself takes ~5 s to exit; the
            # clone is dropped anyway, so after a short grace the whole process group is killed.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=STOP_GRACE)
        # Kill whatever is left of the group (the master, or workers orphaned by a crashed master).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            errors.append(f"gunicorn (pid {self.process.pid}) did not exit")
        try:
            with _pg_connect() as conn:
                _drop_database(conn, self.database)
        except psycopg.Error as exc:
            errors.append(f"dropping {self.database}: {exc}")
        if errors:
            raise NetBoxHarnessError("; ".join(errors))

    def __enter__(self) -> NetBoxInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reset_plan(database: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """For a fresh clone: (tables to TRUNCATE, tables to DELETE FROM) to get back to the template's data.

    Tables with rows in the template are kept. Empty ones are truncated, except those that a kept table
    references by a foreign key, directly or through other such tables (TRUNCATE refuses them): their
    rows are deleted instead.
    """
    with _pg_connect(database) as conn:
        names = [
            n
            for (n,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        ]
        if not names:
            return (), ()
        query = sql.SQL(" UNION ALL ").join(
            sql.SQL("SELECT {} FROM (SELECT 1 FROM {} LIMIT 1) AS x").format(
                sql.Literal(n), sql.Identifier("public", n)
            )
            for n in names
        )
        seeded = {n for (n,) in conn.execute(query).fetchall()}
        references = conn.execute(
            """
            SELECT src.relname, dst.relname
            FROM pg_constraint c
            JOIN pg_class src ON src.oid = c.conrelid
            JOIN pg_class dst ON dst.oid = c.confrelid
            WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
            """
        ).fetchall()
    empty = set(names) - seeded
    blocked: set[str] = set()
    while True:  # transitively: a table a blocked table references is blocked too
        kept = seeded | blocked
        more = {dst for src, dst in references if src in kept and dst in empty and dst not in kept}
        if not more:
            break
        blocked |= more
    return tuple(sorted(empty - blocked)), tuple(sorted(blocked))


def _prune_old_logs(logs: Path) -> None:
    cutoff = time.time() - _LOG_RETENTION_SECONDS
    for path in logs.glob("gunicorn-*.log"):
        with contextlib.suppress(OSError):
            if path.stat().st_mtime < cutoff:
                path.unlink()


def start_netbox(
    version: str = NETBOX_VERSION,
    *,
    workers: int = 2,
    startup_timeout: float = STARTUP_TIMEOUT,
    login_required: bool = True,
    preload: bool = True,
    progress: Progress = _quiet,
) -> NetBoxInstance:
    """Start a NetBox of ``version`` on a fresh clone of the template; wait until ``/api/status/`` answers 200.

    Raises :class:`NetBoxUnavailable` when PostgreSQL, Redis or Python 3.12 are missing, and
    :class:`NetBoxHarnessError` (naming the log file) when installing, migrating or starting fails.
    """
    timings: dict[str, float] = {}
    started = time.monotonic()
    check_prerequisites(version)
    install = ensure_install(version, progress=progress)
    database = f"{_CLONE_PREFIX}{_db_token(version)}_{os.getpid()}_{secrets.token_hex(3)}"
    prepare_started = time.monotonic()
    meta = prepare(version, clone=database, progress=progress, install=install)
    timings["prepare"] = round(time.monotonic() - prepare_started, 2)
    timings["clone"] = meta["clone_seconds"]
    process: subprocess.Popen[bytes] | None = None
    log_path = install.logs / f"gunicorn-{database}.log"
    try:
        reset_plan = _reset_plan(database)
        install.logs.mkdir(parents=True, exist_ok=True)
        _prune_old_logs(install.logs)
        port = _free_port()
        argv = [
            str(install.gunicorn),
            "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers),
            "--timeout", "120",
            "--graceful-timeout", "5",
            "--access-logfile", "-",
            "--error-logfile", "-",
            "--capture-output",
            *(["--preload"] if preload else []),  # import NetBox once, then fork (it opens no connection)
            "netbox.wsgi",
        ]  # fmt: skip
        if install.gunicorn_major >= 26:
            argv.insert(1, "--no-control-socket")  # gunicorn 26: one control socket per user otherwise
        env = install.env(database, NETOPS_NETBOX_LOGIN_REQUIRED="1" if login_required else "0")
        server_started = time.monotonic()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=install.root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() kills master and workers together
                preexec_fn=_parent_death_signal,
            )
        url = f"http://127.0.0.1:{port}"
        _wait_for_status(url, meta["token_v2"], process, log_path, startup_timeout)
        timings["server_start"] = round(time.monotonic() - server_started, 2)
        timings["total"] = round(time.monotonic() - started, 2)
    except BaseException:
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)
        with contextlib.suppress(psycopg.Error), _pg_connect() as conn:
            _drop_database(conn, database)
        raise
    instance = NetBoxInstance(
        url=url,
        token_v2=meta["token_v2"],
        token_v1=meta["token_v1"],
        database=database,
        version=version,
        process=process,
        log_path=log_path,
        username=meta["username"],
        password=meta["password"],
        install=install,
        timings=timings,
        _reset_plan=reset_plan,
    )
    atexit.register(_stop_quietly, instance)
    return instance


def _stop_quietly(instance: NetBoxInstance) -> None:
    with contextlib.suppress(Exception):
        instance.stop()


def _wait_for_status(
    url: str, token_v2: str, process: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    headers = {"Authorization": f"Bearer {token_v2}", "Accept": "application/json"}
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise NetBoxHarnessError(
                    f"NetBox (gunicorn) exited with code {process.returncode} while starting; see {log}. "
                    f"Last lines:\n{_tail(log)}"
                )
            try:
                response = client.get(f"{url}/api/status/", headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            time.sleep(0.2)
    raise NetBoxHarnessError(
        f"NetBox at {url} did not answer 200 on /api/status/ within {timeout:.0f} s (last: {last}); see {log}. "
        f"Last lines:\n{_tail(log)}"
    )
