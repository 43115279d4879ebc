"""Taskdesk settings: embedded defaults for a bare machine, environment for production.

No variables set: SQLite file and the in-memory channel layer. `DATABASE_URL` switches to
PostgreSQL (psycopg 3, pooled), `REDIS_URL` to the channels-redis layer and the Redis cache.
A malformed value stops start-up with `ImproperlyConfigured` naming the variable.
"""

import math
import os
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {raw!r}")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def envfloat(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ImproperlyConfigured(f"{name} must be a finite number of at least {minimum}, got {raw!r}")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def envurl(name: str, schemes: set[str]) -> str | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or (parsed.scheme != "sqlite" and not parsed.hostname):
        allowed = ", ".join(sorted(schemes))
        raise ImproperlyConfigured(f"{name} must be a URL with scheme {allowed} and a host, got {raw!r}")
    return raw


DEBUG = envbool("DEBUG", True)

_DEV_SECRET = "taskdesk-insecure-development-key-do-not-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", _DEV_SECRET)
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
if len(SECRET_KEY) < 32:
    raise ImproperlyConfigured("SECRET_KEY must be at least 32 characters long")

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "django_htmx",
    "template_partials",
    # Serves the API docs page's Swagger UI files locally (otherwise it loads them from a CDN).
    "ninja",
    "tasks_app",
]

MIDDLEWARE = [
    "dashboard.middleware.InlineSecurityMiddleware",
    "dashboard.static_files.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "django.contrib.sessions.middleware.SessionMiddleware",
    "dashboard.middleware.InlineCommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

# The agent faces' paths are served with a lean chain (dashboard/asgi.py): token auth, no
# cookies, so no sessions, CSRF, auth or messages; security headers and URL handling stay.
API_PATH_PREFIXES = ("/api/", "/rpc", "/xpander/", "/agentex/")
API_MIDDLEWARE = [
    "dashboard.middleware.InlineSecurityMiddleware",
    "dashboard.middleware.InlineCommonMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"

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
                "tasks_app.context_processors.account",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------------
DATABASE_URL = envurl("DATABASE_URL", {"postgres", "postgresql", "sqlite"})
TEST_DATABASE_NAME = os.environ.get("TEST_DATABASE_NAME", "")
DB_CONNECT_TIMEOUT = envint("DB_CONNECT_TIMEOUT", 2, minimum=1)
if DATABASE_URL and not DATABASE_URL.startswith("sqlite"):
    _db = dj_database_url.parse(DATABASE_URL)
    _db["ENGINE"] = "django.db.backends.postgresql"
    # The pool replaces CONN_MAX_AGE (which leaks connections under ASGI and cannot be combined).
    _db["CONN_MAX_AGE"] = 0
    # Short waits: with the database down a request answers 503 within ~2 s (views/errors.py)
    # instead of holding a worker for 30 s; start-up checks it the same way (tasks_app/checks.py).
    _db["OPTIONS"] = {
        "connect_timeout": DB_CONNECT_TIMEOUT,
        # Each process's sessions carry its pid (pg_stat_activity tells which daphne holds which
        # connection; tests wait on it for a stopped server's sessions to end, tests/servers.py).
        "application_name": f"taskdesk {os.getpid()}",
        # Parameters bound by the server and statements prepared after their fifth use on a
        # connection: the write path's statements are parsed and planned once per connection,
        # not per write, and values travel apart from the SQL (a quarter less client CPU per
        # write, measured). DB_PREPARED_STATEMENTS=false behind a transaction-pooling PgBouncer.
        # Each execution is still planned for its own values (plan_cache_mode): a generic plan,
        # which PostgreSQL adopts after five runs, fits the average organization, and made a
        # 10,000-task organization's pages 3-8x slower beside a 1,000,000-task one.
        **(
            {"server_side_binding": True, "prepare_threshold": 5, "options": "-c plan_cache_mode=force_custom_plan"}
            if envbool("DB_PREPARED_STATEMENTS", True)
            else {}
        ),
        "pool": {
            "min_size": envint("DB_POOL_MIN", 2, minimum=0),
            "max_size": envint("DB_POOL_MAX", 20, minimum=1),
            "timeout": envfloat("DB_POOL_TIMEOUT", 2.0, minimum=0.1),
        },
    }
    _db["TEST"] = {"NAME": TEST_DATABASE_NAME or "test_taskdesk"}
else:
    # sqlite:///relative.sqlite3 or sqlite:////absolute/path.sqlite3 (dj-database-url's reading).
    _path = dj_database_url.parse(DATABASE_URL)["NAME"] if DATABASE_URL else ""
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _path or BASE_DIR / "taskdesk.sqlite3",
        # IMMEDIATE takes the write lock at BEGIN, so concurrent writers queue instead of
        # failing half-way through a read-modify-write.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        # A file, not memory, so a server process started by the tests can share it.
        "TEST": {"NAME": TEST_DATABASE_NAME or BASE_DIR / "test_taskdesk.sqlite3"},
    }
if envbool("TASKDESK_USE_TEST_DATABASE", False):
    # A server process started by the test suite serves the suite's test database.
    _db["NAME"] = _db["TEST"]["NAME"]
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and cache -----------------------------------------------------
REDIS_URL = envurl("REDIS_URL", {"redis", "rediss"})
CHANNEL_CAPACITY = envint("CHANNEL_CAPACITY", 1000, minimum=100)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # The layer's receive blocks in BZPOPMIN for 5 s, so the socket timeout must be
                # longer (redis-py 8's default 5 s dropped idle receivers), but finite: a hung
                # Redis then fails the hub's listener within seconds (pages say "delayed" and read
                # the log) instead of never. Publishes carry their own 1 s bound (live/bell.py).
                # The health check pings a connection idle for 10 s before reuse, so one kept
                # across a Redis restart is replaced instead of losing a bell.
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 10,
                        "socket_connect_timeout": 1,
                        "health_check_interval": 10,
                        "max_connections": 1000,
                    }
                ],
                # The default 100 is shared by every consumer of a process and drops bursts.
                "capacity": CHANNEL_CAPACITY,
                "expiry": 60,
                "prefix": os.environ.get("CHANNEL_PREFIX", "taskdesk"),
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_PREFIX", "taskdesk"),
            # Nothing may wait long on Redis: it answers in well under a millisecond or not at all.
            "OPTIONS": {"socket_timeout": 0.25, "socket_connect_timeout": 0.25},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": CHANNEL_CAPACITY, "expiry": 60},
        }
    }
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Live updates (tasks_app/live/hub.py) ----------------------------------------------
# Each process reads its organizations' newest event ids this often when no bell came (a bell
# lost to a Redis blip costs at most this long), every LIVE_DEGRADED_CHECK_SECONDS while the
# channel layer is unreachable, and re-checks every open socket's and stream's credentials
# (logout, expiry, password change, membership, revoked token) every LIVE_CREDENTIALS_CHECK_SECONDS.
LIVE_IDLE_CHECK_SECONDS = envfloat("LIVE_IDLE_CHECK_SECONDS", 2.0, minimum=0.1)
LIVE_DEGRADED_CHECK_SECONDS = envfloat("LIVE_DEGRADED_CHECK_SECONDS", 1.0, minimum=0.1)
LIVE_CREDENTIALS_CHECK_SECONDS = envfloat("LIVE_CREDENTIALS_CHECK_SECONDS", 2.0, minimum=0.1)
# Presence on a task's page (live/presence.py): a viewer whose page stopped beating (every 3 s)
# without closing its socket disappears after this many seconds.
LIVE_PRESENCE_TTL_SECONDS = envfloat("LIVE_PRESENCE_TTL_SECONDS", 10.0, minimum=1.0)

# --- Bulk actions (tasks_app/services/bulk_actions.py) ------------------------------------
# A bulk action runs in a background thread of the process that accepted it (and is taken up
# again by any process whose page polls a stalled one). false: only `manage.py run_bulk_actions`
# runs them (e.g. a dedicated worker beside the daphne processes).
BULK_ACTIONS_IN_BACKGROUND = envbool("BULK_ACTIONS_IN_BACKGROUND", True)

# --- Auth -------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "task_list"
LOGOUT_REDIRECT_URL = "login"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Where `collectstatic` puts the files WhiteNoise serves when DEBUG is off.
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]

# --- Taskdesk limits --------------------------------------------------------------------
# Request bodies above this are refused before parsing.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("MAX_BODY_BYTES", 2 * 1024 * 1024, minimum=1024)


def envrates(name: str, default: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """`key=count/seconds,...` -> {key: (count, seconds)}, merged over the defaults."""
    raw = os.environ.get(name, "").strip()
    rates = dict(default)
    for item in filter(None, (part.strip() for part in raw.split(","))):
        key, _, spec = item.partition("=")
        count, _, seconds = spec.partition("/")
        try:
            rates[key.strip()] = (int(count), int(seconds or 60))
        except ValueError:
            raise ImproperlyConfigured(f"{name} entries look like face.operation=20/60, got {item!r}") from None
    return rates


# Per-token API rate limits (count per seconds, sliding window, tasks_app/api/ratelimit.py).
# The JSON-RPC seed documents 20 task.update per minute.
RATE_LIMITS = envrates("RATE_LIMITS", {"jsonrpc.task.update": (20, 60), "*": (600, 60)})
RATE_LIMIT_PREFIX = os.environ.get("CACHE_PREFIX", "taskdesk") + ":ratelimit"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "daphne": {"level": "WARNING"},
        # A 403 or 404 is an answer, not an incident: log server errors only (no tracebacks for
        # ordinary refusals).
        "django.request": {"level": "ERROR"},
    },
}

# Static files: WhiteNoise serves them under daphne; in DEBUG straight from the finders.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
