"""Settings for netops, read from the environment (django-environ) with embedded defaults.

With no environment at all, netops runs on SQLite and the in-memory channel layer, so a newcomer
can start it with one command. Production sets ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL``
(channel layer, cache, run checkpoints, rate limits) so several daphne processes share state.
Every variable is documented in ``.env.example``.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import django_stubs_ext
import environ

from netops.own_env import OwnEnv
from netops.redaction import register_configuration_secrets

# Lets runtime code subscript Django and DRF generics (ModelAdmin[Model], ...) as the type stubs do.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

# Every variable read through ``env`` is netops' own configuration and can never be the target of
# a secret reference (netops.secrets); NETOPS_OWN_ENV_VARS is that set, filled as settings load.
env = OwnEnv()
NETOPS_OWN_ENV_VARS = env.names_read
_env_file = BASE_DIR / ".env"
if _env_file.is_file():
    environ.Env.read_env(str(_env_file))

VAR_DIR = Path(env.str("NETOPS_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """Use SECRET_KEY from the environment, else a key generated once and kept in VAR_DIR.

    A generated key keeps sessions valid across restarts of a single machine without asking a
    newcomer to invent one; production sets SECRET_KEY explicitly.
    """
    configured = env.str("SECRET_KEY", default="")
    if configured:
        return configured
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Reverse proxies / load balancers (CIDRs) whose X-Forwarded-For, X-Real-IP and X-Forwarded-Proto
# are believed (netops.client_address); empty = no proxy header is believed from anyone.
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "django_guid",
    "corsheaders",
    "channels",
    "django_tasks",
    "django_tasks_db",
    "netops",
    "registry",
    "chat",
    "netboxrw",
]

MIDDLEWARE = [
    "django_guid.middleware.guid_middleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Early, so that responses made by the middlewares inside it (400 bad host, redirects) carry it too.
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Before CSRF reads the form: NUL in path/query/form and malformed multipart -> a 400 that says so.
    "netops.input_guard.InputGuardMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "netops.logs.RequestContextMiddleware",
]

ROOT_URLCONF = "netops.urls"
ASGI_APPLICATION = "netops.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ------------------------------------------------------------------------------
# An empty DATABASE_URL (``DATABASE_URL=`` in a .env) means unset, as for REDIS_URL: the embedded SQLite.
DATABASES = {
    "default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL and a busy timeout let the web process and a management command share the file.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        # IMMEDIATE: a transaction takes the write lock when it begins and waits for it (timeout),
        # instead of failing with "database is locked" when it first reads, then writes after
        # another process (a worker, its lease heartbeat) wrote in between.
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}
    )
# Seconds a database connection is kept between requests. database_sync_to_async closes an older one
# after every call, so with 0 every trip to the database thread opens a connection (SQLite: the file
# and its PRAGMA; PostgreSQL: a TCP handshake and authentication), a fifth of a gateway request's time.
# 0 by default because a kept connection in a thread-pool thread outlives a test database's teardown;
# set it (e.g. 60) where netops serves traffic.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: channel layer, cache, checkpoints ------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CHECKPOINT_REDIS_DB = env.int("CHECKPOINT_REDIS_DB", default=2)

# Every Redis client gets explicit timeouts: redis-py 8 defaults to a 5 s socket timeout, equal to
# channels_redis' 5 s blocking pop, so an idle websocket's receive timed out and the socket died
# with 1011. Blocking reads must be allowed longer than the longest blocking command they issue.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=30.0)
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=5.0)
REDIS_CLIENT_OPTIONS = {
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
    "socket_keepalive": True,
    "health_check_interval": 15,
    "retry_on_timeout": True,
}

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "netops.channel_layer.ResilientRedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, **REDIS_CLIENT_OPTIONS}],
                "capacity": 1000,
                "expiry": 60,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": dict(REDIS_CLIENT_OPTIONS),
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- auth ------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=False)
# HTTPS in production (`manage.py check --deploy`). Behind a TLS-terminating proxy the scheme comes
# from its X-Forwarded-Proto, believed only from TRUSTED_PROXIES (netops.client_address), so
# SECURE_PROXY_SSL_HEADER (which would believe it from anyone) is not used. Probes stay on plain HTTP.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
X_FRAME_OPTIONS = "DENY"

# Content-Security-Policy on every response (django-csp): scripts and styles only from netops' own
# origin, no inline script, style or event handler; images from self and data: only, so nothing in
# model output or tool results can load a remote resource; fetch/XHR/websockets to the same origin
# ('self' covers ws:/wss: of this host in CSP3 browsers). The Django admin and Swagger UI (served by
# drf-spectacular-sidecar) run under the same policy.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "frame-src": ["'none'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
    }
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))

# --- REST API --------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "netops.authentication.TokenAuthentication",
        "netops.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["netops.permissions.StrictDjangoModelPermissions"],
    "DEFAULT_PAGINATION_CLASS": "netops.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "netops.errors.exception_handler",
    # JSON with netops' rules (no NUL, no lone surrogate, at most 64 levels deep), then forms.
    "DEFAULT_PARSER_CLASSES": [
        "netops.parsers.StrictJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "netops API",
    "DESCRIPTION": "Registry of LLM models and MCP servers, the tool catalog, chat and change review.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["netops.schema.exclude_aliases"],
    # state, from_state and to_state share one set of choices: one component, not one per field.
    "ENUM_NAME_OVERRIDES": {"ChangeStateEnum": "netboxrw.models.ChangeState"},
    # The error answers every operation gives (drf-spectacular documents successes only).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "netops.schema.complete_schema",
    ],
    # Swagger UI and Redoc from the installed drf-spectacular-sidecar package, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No validator badge: Swagger UI would send the schema URL to validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# --- tool gateway, API keys, CORS, metrics ------------------------------------------------------
# Requests per hour for new API keys (each key can have its own).
API_KEY_DEFAULT_RATE_LIMIT = env.int("API_KEY_DEFAULT_RATE_LIMIT", default=1000)
# Seconds a tool's arguments may take to validate against its schema (then 400: registry/validation.py).
TOOL_VALIDATION_TIMEOUT = env.float("TOOL_VALIDATION_TIMEOUT", default=1.0)
# The highest hourly limit a non-superuser may give their own key (registry.key_policy).
API_KEY_MAX_RATE_LIMIT = env.int("API_KEY_MAX_RATE_LIMIT", default=10 * API_KEY_DEFAULT_RATE_LIMIT)
# Browser origins allowed to call /api/ and /mcp (comma-separated, e.g. https://portal.example.com).
CORS_ALLOWED_ORIGINS = env.list("CORS_ALLOWED_ORIGINS", default=[])
CORS_URLS_REGEX = r"^/(api|mcp)(/.*)?$"
CORS_ALLOW_HEADERS = [
    "authorization",
    "content-type",
    "mcp-protocol-version",
    "mcp-session-id",
    "x-request-id",
]
CORS_EXPOSE_HEADERS = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Retry-After",
    "X-Request-ID",
]
# Prometheus /metrics answers `Authorization: Bearer <METRICS_TOKEN>` (when set) or a client address
# (REMOTE_ADDR) in METRICS_ALLOWED_NETWORKS; either suffices. Empty networks: the token is required.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])

# --- NetBox ----------------------------------------------------------------------------------
# Without NETBOX_URL the NetBox tools are not offered and /readyz does not check NetBox.
NETBOX_URL = env.str("NETBOX_URL", default="")
# A v2 token (nbt_<key>.<token>) or a v1 token (40 hex characters), from the environment only.
NETBOX_TOKEN = env.str("NETBOX_TOKEN", default="")
NETBOX_TIMEOUT = env.float("NETBOX_TIMEOUT", default=15.0)
# Bulk writes (an approved change of hundreds of objects, manage.py seed_netbox) wait longer.
NETBOX_BULK_TIMEOUT = env.float("NETBOX_BULK_TIMEOUT", default=300.0)
NETBOX_VERIFY_TLS = env.bool("NETBOX_VERIFY_TLS", default=True)
# Approved changes are logged as applied but never sent to NetBox.
NETBOX_DRY_RUN = env.bool("NETBOX_DRY_RUN", default=False)
# Pending change requests older than this expire (`manage.py expire_change_requests`, also on each approval).
CHANGE_REQUEST_TTL_HOURS = env.int("CHANGE_REQUEST_TTL_HOURS", default=72)
# Single-person labs only: let requesters approve their own changes.
CHANGE_REVIEW_ALLOW_SELF_APPROVAL = env.bool("CHANGE_REVIEW_ALLOW_SELF_APPROVAL", default=False)

# --- secret references (netops.secrets) ------------------------------------------------------
# Which secrets registry entries may point to. env: names matching one of these globs (fnmatch,
# case-sensitive); file: paths inside one of these directories (after resolving .. and symlinks).
# netops' own configuration (NETOPS_OWN_ENV_VARS, the secret key file, .env) is refused regardless.
SECRET_ENV_ALLOW = env.list("SECRET_ENV_ALLOW", default=["*_KEY", "*_TOKEN", "*_SECRET", "*_PASSWORD"])
SECRET_FILE_DIRS = env.list("SECRET_FILE_DIRS", default=["/run/secrets", str(VAR_DIR / "secrets")])

# --- background work: a durable task queue in the database (django-tasks + django-tasks-db) -----
# `manage.py worker` runs queued jobs (applying approved changes) and the periodic schedule; any
# number of workers may run, on any machine that reaches the database.
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default", "changes"],
    }
}
# Seconds a worker's claim on an applying change lasts without renewal (renewed every third of it).
CHANGE_APPLY_LEASE_SECONDS = env.float("CHANGE_APPLY_LEASE_SECONDS", default=30.0)
# Periodic jobs, seconds between runs (0 turns a job off).
MCP_HEALTH_CHECK_INTERVAL = env.float("MCP_HEALTH_CHECK_INTERVAL", default=60.0)
CHANGE_EXPIRY_INTERVAL = env.float("CHANGE_EXPIRY_INTERVAL", default=300.0)
CHANGE_RECOVERY_INTERVAL = env.float("CHANGE_RECOVERY_INTERVAL", default=10.0)
CHAT_PRUNE_INTERVAL = env.float("CHAT_PRUNE_INTERVAL", default=86400.0)
# Kept MCP sessions (registry.sessions): one per server per process, closed after this many idle
# seconds; at most this many concurrent operations per server per process (more wait their turn).
MCP_SESSION_IDLE_SECONDS = env.float("MCP_SESSION_IDLE_SECONDS", default=300.0)
MCP_SESSION_CONCURRENCY = env.int("MCP_SESSION_CONCURRENCY", default=8)
# Test-only: a worker applying a change sleeps after journal step N (crash-recovery tests kill it there).
NETOPS_TEST_PAUSE_AFTER_STEP = env.int("NETOPS_TEST_PAUSE_AFTER_STEP", default=None)

# --- chat ----------------------------------------------------------------------------------
# Conversations not updated for this many days are deleted by `manage.py prune_conversations`
# (0 keeps them forever).
CHAT_RETENTION_DAYS = env.int("CHAT_RETENTION_DAYS", default=90)
# A tool result longer than this (characters) is cut, after redaction, wherever it is stored,
# returned (gateway, /mcp), streamed or shown; the model's own shorter cut is the agent setting.
TOOL_RESULT_MAX_CHARS = env.int("TOOL_RESULT_MAX_CHARS", default=200_000)
# The most tools one model request carries (OpenAI's documented maximum is 128). A conversation
# whose servers offer more is refused before asking, naming the servers to deselect.
LLM_MAX_TOOLS = env.int("LLM_MAX_TOOLS", default=128)

# netops' own secrets are masked in every remote text and log line, like resolved references.
register_configuration_secrets(
    SECRET_KEY,
    NETBOX_TOKEN,
    METRICS_TOKEN,
    DATABASES["default"].get("PASSWORD"),
    urlsplit(REDIS_URL).password if REDIS_URL else None,
)

# --- logging: JSON lines with the request id -------------------------------------------------
DJANGO_GUID = {"GUID_HEADER_NAME": "X-Request-ID", "VALIDATE_GUID": False, "RETURN_HEADER": True}
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "request_id": {"()": "django_guid.log_filters.CorrelationId", "correlation_id_field": "request_id"},
        "request_context": {"()": "netops.logs.RequestContextFilter"},
        "redact": {"()": "netops.logs.RedactSecretsFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(user)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "filters": ["request_id", "request_context", "redact"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "mcp": {"level": "WARNING"},
        "daphne": {"level": "INFO"},
    },
}
