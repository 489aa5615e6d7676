"""Rampart console settings: twelve-factor, everything from environment variables.

Defaults are for a developer laptop (`make run`): SQLite under ./var, an embedded Celery
broker on the filesystem, DEBUG off unless asked for. Production sets DATABASE_URL,
REDIS_URL, SECRET_KEY and ALLOWED_HOSTS (see README).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("RAMPART_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost", "[::1]", "testserver"]),
)
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env("DEBUG")
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    # A stable per-installation key for development; production must set SECRET_KEY.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(get_random_secret_key())
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()
ALLOWED_HOSTS = list(env("ALLOWED_HOSTS"))
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Where `make run` serves (gunicorn's bind address; unset: 127.0.0.1:8000). A console
# started on another address must answer there: its host joins ALLOWED_HOSTS and
# http://host:port the trusted origins (not for a wildcard address such as 0.0.0.0, nor a
# unix: socket).
RAMPART_LISTEN = env.str("RAMPART_LISTEN", default="")


def _listen_host_and_origin(listen: str) -> tuple[str, str] | None:
    """(ALLOWED_HOSTS entry, origin) for a gunicorn bind address `host[:port]`, or None."""
    if listen.startswith(("unix:", "fd://")):
        return None
    parts = urlsplit(f"http://{listen}")
    try:
        host, port = parts.hostname, parts.port or 8000
    except ValueError:  # not a port number: gunicorn refuses it and says why
        return None
    if not host or host in {"0.0.0.0", "::"}:
        return None
    name = f"[{host}]" if ":" in host else host
    return name, f"http://{name}:{port}"


if RAMPART_LISTEN and (listen_origin := _listen_host_and_origin(RAMPART_LISTEN)):
    if listen_origin[0] not in ALLOWED_HOSTS and "*" not in ALLOWED_HOSTS:
        ALLOWED_HOSTS.append(listen_origin[0])
    if listen_origin[1] not in CSRF_TRUSTED_ORIGINS:
        CSRF_TRUSTED_ORIGINS.append(listen_origin[1])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "django_celery_beat",
    "console",
    "core.accounts",
    "core.audit",
    "core.idempotency",
    "dashboard",
    "rules",
    "agents",
]

MIDDLEWARE = [
    "console.metrics.middleware.RequestLatencyMiddleware",  # first: times the others too
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

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

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'rampart.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    # BEGIN IMMEDIATE: a transaction that reads and then writes would otherwise fail at
    # once with "database is locked" when another process wrote in between (deploy eng.).
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"},
        }
    }
else:
    # Shared by every process (throttles, locks), unlike LocMemCache.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "rampart_cache",
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request without it
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG
# Files browsers ask for at the site root (/favicon.ico), served by WhiteNoise as they are.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # Every view must name its own permission classes; this default refuses everything.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_FILTER_BACKENDS": [
        # First: a list asked with a parameter no backend reads is a 400 naming it.
        "core.api.UnknownParamsFilter",
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.SearchFilter",
        "rest_framework.filters.OrderingFilter",
    ],
    # JSON bodies only (415 otherwise): a form body reads a missing boolean as false. The
    # browsable API keeps its raw JSON form; views taking YAML or text name their parsers.
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "DEFAULT_PAGINATION_CLASS": "core.api.Pagination",
    "PAGE_SIZE": 100,
    "DEFAULT_SCHEMA_CLASS": "core.api_schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "DEFAULT_THROTTLE_RATES": {"anon": "60/minute", "enroll": "30/minute", "draft": "600/minute"},
}
# API tokens (core/accounts/services/tokens.py): lifetime in days when none is asked for
# (0: never expires), the longest one may ask for (0: no maximum), which roles may own one.
RAMPART_TOKEN_TTL_DAYS = env.int("RAMPART_TOKEN_TTL_DAYS", default=90)
RAMPART_TOKEN_MAX_TTL_DAYS = env.int("RAMPART_TOKEN_MAX_TTL_DAYS", default=365)
RAMPART_TOKEN_ROLES = env.list("RAMPART_TOKEN_ROLES", default=["operator", "approver", "admin"])
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=RAMPART_TOKEN_TTL_DAYS) if RAMPART_TOKEN_TTL_DAYS else None,
    "AUTH_HEADER_PREFIX": "Token",
    "AUTO_REFRESH": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Rampart API",
    "DESCRIPTION": "Firewall policies, devices and deployments.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Tags and operation ids start after /api/v1/: one tag per resource (addresses,
    # rulesets, deployments, audit, tokens...), ids like `addresses_list`.
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        # One name per choice set (rule actions and default policies share accept/drop/reject).
        "VerdictEnum": "rules.choices.Action",
        "AgentStatusEnum": "rules.choices.AgentStatus",
        "DeploymentStatusEnum": "agents.choices.DeploymentStatus",
        "RevisionStatusEnum": "rules.models.revisions.RevisionStatus",
    },
}

# Celery: Redis when REDIS_URL is set, else an embedded broker on the filesystem.
# The hard time limit T of one run bounds how long a deployment can hang on a lost worker or
# a hung agent (docs/operations-faults.md: every device deployment ends within 2 x T); the soft
# limit records `failed` with the reason before the hard one kills the process.
CELERY_TASK_TIME_LIMIT = env.int("RAMPART_TASK_TIME_LIMIT", default=300)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - min(30, CELERY_TASK_TIME_LIMIT // 3)
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("out", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "out"),
        "data_folder_out": str(BROKER_DIR / "out"),
        "control_folder": str(BROKER_DIR / "control"),  # else kombu writes ./control/
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Unacked messages of a worker killed with -9 come back after this many seconds. A live
    # worker keeps a message unacked for a retry's countdown (at most the backoff maximum)
    # and then one run (at most the time limit): a shorter timeout would hand a live run to a
    # second worker. The sweeper ends lost work sooner (docs/operations-faults.md).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int(
            "RAMPART_BROKER_VISIBILITY_TIMEOUT",
            default=CELERY_TASK_TIME_LIMIT
            + env.int("RAMPART_DEPLOY_RETRY_BACKOFF_MAX", default=60)
            + 60,
        ),
        # sweep for such messages every N seconds (kombu's default is ~100 s)
        "unacked_restore_interval": env.int("RAMPART_BROKER_RESTORE_INTERVAL", default=10),
        "unacked_restore_throttle": 1,
    }
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# No result backend, so nothing expires: without this beat schedules a daily no-op
# `celery.backend_cleanup` (a crontab row in django_celery_beat's tables).
CELERY_RESULT_EXPIRES = None
# A message is acknowledged after its run, and requeued when the worker process dies under it
# (kill -9, OOM): redelivery is safe because a run is idempotent (agents/services/device_run.py).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# One queue per installation (tests and benchmarks use their own on a shared broker).
CELERY_TASK_DEFAULT_QUEUE = env.str("RAMPART_CELERY_QUEUE", default="celery")

# Prometheus /metrics (docs/metrics.md): the scraper's bearer token (empty: only users with a
# role may read it), and how often a scrape re-checks the audit chain (0: never).
RAMPART_METRICS_TOKEN = env.str("RAMPART_METRICS_TOKEN", default="")
RAMPART_METRICS_AUDIT_VERIFY_SECONDS = env.int("RAMPART_METRICS_AUDIT_VERIFY_SECONDS", default=3600)

# Rampart's own knobs.
RAMPART = {
    "IPSET_THRESHOLD": env.int("RAMPART_IPSET_THRESHOLD", default=32),
    # compile runs of rules into ipset lookups for devices whose agent reports the ipset
    # types of its kernel (docs/compiler.md, "Set-compiled rule runs"); off: linear rules
    "SET_COMPILE": env.bool("RAMPART_SET_COMPILE", default=True),
    "CONSOLE_KEY_FILE": env.str(
        "RAMPART_CONSOLE_KEY_FILE", default=str(VAR_DIR / "console-key.pem")
    ),
    # Status polls (agents/services/poll_schedule.py): the minimum interval per device, the
    # cap on polls per second across the fleet (the interval grows past it), the beat tick
    # and the devices per poll task.
    "STATUS_POLL_SECONDS": env.int("RAMPART_STATUS_POLL_SECONDS", default=60),
    "POLL_MAX_PER_SECOND": env.float("RAMPART_POLL_MAX_PER_SECOND", default=50.0),
    "POLL_TICK_SECONDS": env.int("RAMPART_POLL_TICK_SECONDS", default=10),
    "POLL_BATCH": env.int("RAMPART_POLL_BATCH", default=50),
    "CONFIRM_TIMEOUT": env.int("RAMPART_CONFIRM_TIMEOUT", default=30),
    "AUDIT_REQUIRE_REASON": env.bool("RAMPART_AUDIT_REQUIRE_REASON", default=False),
    "AUDIT_REQUIRE_TICKET": env.bool("RAMPART_AUDIT_REQUIRE_TICKET", default=False),
    # The audit chain's HMAC key (docs/audit.md): the variable, else a file beside the
    # console key made on first use; checkpoints go to every sink listed.
    "AUDIT_KEY": env.str("RAMPART_AUDIT_KEY", default=""),
    "AUDIT_KEY_FILE": env.str("RAMPART_AUDIT_KEY_FILE", default=""),
    "AUDIT_CHECKPOINT_DIR": env.str(
        "RAMPART_AUDIT_CHECKPOINT_DIR", default=str(VAR_DIR / "audit-checkpoints")
    ),
    "AUDIT_CHECKPOINT_SINKS": env.list(
        "RAMPART_AUDIT_CHECKPOINT_SINKS",
        default=["core.audit.checkpoints.directory_sink", "core.audit.checkpoints.log_sink"],
    ),
    # Deployments (agents/services.py): push attempts before `failed`, retry backoff
    # (seconds, exponential with jitter), when an in-flight push counts as stuck.
    "DEPLOY_MAX_ATTEMPTS": env.int("RAMPART_DEPLOY_MAX_ATTEMPTS", default=5),
    "DEPLOY_RETRY_BACKOFF": env.int("RAMPART_DEPLOY_RETRY_BACKOFF", default=2),
    "DEPLOY_RETRY_BACKOFF_MAX": env.int("RAMPART_DEPLOY_RETRY_BACKOFF_MAX", default=60),
    # 0: derived from the time limit (agents/services/sweeper.py, docs/operations-faults.md)
    "DEPLOY_STUCK_SECONDS": env.int("RAMPART_DEPLOY_STUCK_SECONDS", default=0),
    "DEPLOY_QUEUED_LOST_SECONDS": env.int("RAMPART_DEPLOY_QUEUED_LOST_SECONDS", default=0),
    "DEPLOY_MAX_REQUEUES": env.int("RAMPART_DEPLOY_MAX_REQUEUES", default=3),
    # Fan-out (agents/services/batch_run.py): device deployments per `deploy_batch` task,
    # and the pushes one task has on the wire at once (threads; 1: one after the other).
    "DEPLOY_BATCH": env.int("RAMPART_DEPLOY_BATCH", default=25),
    "DEPLOY_BATCH_THREADS": env.int("RAMPART_DEPLOY_BATCH_THREADS", default=8),
    "ENROLL_TOKEN_TTL": env.int("RAMPART_ENROLL_TOKEN_TTL", default=3600),
    # CIDRs the console reaches agents from; empty: what each agent saw (rules/console_sources.py)
    "CONSOLE_SOURCES": env.list("RAMPART_CONSOLE_SOURCES", default=[]),
}
# Beat (stored by django_celery_beat's DatabaseScheduler at start): fleet status poll, sweeper,
# the redeploy that tidies bundles after a rule's expiry (the kernel's time match enforces it).
CELERY_BEAT_SCHEDULE = {
    "rampart-status-poll": {
        "task": "agents.tasks.poll_fleet",
        "schedule": float(RAMPART["POLL_TICK_SECONDS"]),
    },
    # how late lost work is noticed: part of the bound in docs/operations-faults.md
    "rampart-sweeper": {
        "task": "agents.tasks.sweep_stuck",
        "schedule": float(env.int("RAMPART_SWEEP_SECONDS", default=30)),
    },
    "rampart-expiry": {"task": "agents.tasks.expire_rules", "schedule": 60.0},
    "rampart-audit-checkpoint": {
        "task": "core.audit.tasks.write_chain_checkpoint",
        "schedule": float(env.int("RAMPART_AUDIT_CHECKPOINT_SECONDS", default=3600)),
    },
    "rampart-audit-verify": {"task": "core.audit.tasks.verify_chain", "schedule": 86400.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
