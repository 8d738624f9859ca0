"""Settings for netops, read from the environment (django-environ) with embedded defaults.

With no environment at all, netops runs on SQLite and the in-memory channel layer, so a newcomer
can start it with one command. Production sets ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL``
(channel layer, cache, run checkpoints, rate limits) so several daphne processes share state.
Every variable is documented in ``.env.example``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import django_stubs_ext
import environ

# Lets runtime code subscript Django and DRF generics (ModelAdmin[Model], ...) as the type stubs do.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
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
    "django_htmx",
    "template_partials",
    "django_guid",
    "corsheaders",
    "channels",
    "netops",
    "registry",
    "chat",
    "netboxrw",
]

MIDDLEWARE = [
    "django_guid.middleware.guid_middleware",
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
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
        {"timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- redis: channel layer, cache, checkpoints ------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CHECKPOINT_REDIS_DB = env.int("CHECKPOINT_REDIS_DB", default=2)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 60},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
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
X_FRAME_OPTIONS = "DENY"

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
}

# --- tool gateway, API keys, CORS, metrics ------------------------------------------------------
# Requests per hour for new API keys (each key can have its own).
API_KEY_DEFAULT_RATE_LIMIT = env.int("API_KEY_DEFAULT_RATE_LIMIT", default=1000)
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

# --- chat ----------------------------------------------------------------------------------
# Conversations not updated for this many days are deleted by `manage.py prune_conversations`
# (0 keeps them forever).
CHAT_RETENTION_DAYS = env.int("CHAT_RETENTION_DAYS", default=90)

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
