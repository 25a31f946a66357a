"""Django settings of the control plane.

Every setting that differs between the embedded default (one machine, no
set-up) and production comes from an environment variable:

- ``DATABASE_URL``: PostgreSQL in production; SQLite in WAL mode under
  ``CONTROLPLANE_DATA_DIR`` when unset.
- ``REDIS_URL``: the Celery broker, the result backend and the resilience
  core's shared state.
- ``SECRET_KEY``, ``DEBUG``, ``ALLOWED_HOSTS``: as in any Django project.
"""

import os
from pathlib import Path
from typing import Any

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("CONTROLPLANE_DATA_DIR", BASE_DIR / "var"))


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


# The default key only serves the embedded, loopback-only set-up of
# `make run`; production sets SECRET_KEY.
SECRET_KEY = os.environ.get(
    "SECRET_KEY", "embedded-default-only-never-use-in-production-3f9a1c"
)
DEBUG = _env_bool("DEBUG", False)
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "controlplane",
    "resilience",
    "sagas",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "controlplane.middleware.RequestIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "demo.faults.FaultInjectionMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

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


def _database() -> dict[str, object]:
    default_sqlite = f"sqlite:///{DATA_DIR / 'controlplane.sqlite3'}"
    config: dict[str, object] = dict(
        dj_database_url.config(default=default_sqlite, conn_max_age=60)
    )
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # WAL lets the web server read while a worker writes; IMMEDIATE
        # transactions take the write lock up front, so two writers queue
        # on `timeout` instead of failing with "database is locked" when a
        # read transaction tries to upgrade.
        config["OPTIONS"] = {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        }
        test_name = os.environ.get("CONTROLPLANE_TEST_DB")
        if test_name:
            config["TEST"] = {"NAME": test_name}
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Only `collectstatic` needs it; WhiteNoise serves from the finders otherwise.
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None
STATICFILES_DIRS = [BASE_DIR / "controlplane" / "static"]
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

# Redis: broker, result backend and the resilience core's shared state.
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A saga step task is acknowledged only after it finished, and a worker that
# dies mid-task puts the message back, so no step is lost with its worker.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_DEFAULT_QUEUE = "controlplane"
# Saga tasks report through the database; only tasks that a caller waits
# for (a protected call from the API) store a result in Redis.
CELERY_TASK_IGNORE_RESULT = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header turns an anonymous
        # request into 401 rather than 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.permissions.IsOperatorOrReadOnly"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.errors.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "controlplane.api.CheckedLimitOffsetPagination",
    "DEFAULT_PARSER_CLASSES": [
        "controlplane.api.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Resilience control plane API",
    "DESCRIPTION": (
        "Sagas, resilience policies and live resilience state. Durations are "
        "seconds, rates are percentages from 0 to 100 and times are ISO 8601 "
        "in UTC. Errors share one problem+json shape: type, title, status, "
        "detail and, for invalid input, a list of field errors."
    ),
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI's files come from the installed sidecar package, served by
    # WhiteNoise, so the API docs work on a machine without internet access.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Name of the group whose members may change state through the API and the
# dashboard; every other logged-in user only reads.
OPERATOR_GROUP = "operators"

# Request and response bodies kept on a saga step are cut to this many
# characters, so a chatty service cannot bloat the runs table.
SAGA_BODY_LIMIT = int(os.environ.get("SAGA_BODY_LIMIT", "4096"))

# A running step's lease: a worker extends it every third of this while the
# step runs, and the sweeper resumes a step whose lease passed, so a lost
# worker's step resumes within about SAGA_LEASE_SECONDS + SAGA_SWEEP_INTERVAL.
SAGA_LEASE_SECONDS = float(os.environ.get("SAGA_LEASE_SECONDS", "10"))
# Claims of one step's action (or compensation) before it is given up: a
# step whose worker dies every time ends in compensation, not in a loop.
SAGA_MAX_CLAIMS = int(os.environ.get("SAGA_MAX_CLAIMS", "3"))
# A compensation that the pipeline rejected before sending it (breaker open,
# bulkhead full, rate limit reached) is tried again after this many seconds,
# without using up its retry budget.
SAGA_REJECTED_RETRY_SECONDS = float(os.environ.get("SAGA_REJECTED_RETRY_SECONDS", "5"))
# A step's retry whose backoff is longer than this many seconds is not
# slept in the worker: the step waits in the database and a worker resumes
# it when it is due.
SAGA_MAX_INLINE_WAIT = float(os.environ.get("SAGA_MAX_INLINE_WAIT", "2"))
# Waits up to this many seconds also go to the broker as a delayed message,
# which wakes the step on time. The sweeper finds longer ones within
# SAGA_SWEEP_INTERVAL of their due time. Keep it well below the broker's
# visibility timeout (one hour on Redis): a message delayed longer is
# delivered a second time.
SAGA_COUNTDOWN_LIMIT = float(os.environ.get("SAGA_COUNTDOWN_LIMIT", "300"))
# A worker that finished a step runs the run's next step itself while its
# task has run for less than this many seconds. After that the next step
# goes through the broker, so a long run shares the workers with others.
SAGA_INLINE_SECONDS = float(os.environ.get("SAGA_INLINE_SECONDS", "2"))
# Modules whose @saga_step functions saga definitions may name.
SAGA_STEP_MODULES = ["sagas.builtin_steps"]

# Try-Confirm-Cancel timing, in seconds. Phase one is aborted when its tries
# have not all succeeded TCC_TRY_TIMEOUT_SECONDS after the run was created.
# Phase two sends a failed confirm or cancel again every TCC_RETRY_SECONDS.
# The run ends needs_attention when phase two has not finished
# TCC_PHASE_TWO_BUDGET_SECONDS after the decision.
TCC_TRY_TIMEOUT_SECONDS = float(os.environ.get("TCC_TRY_TIMEOUT_SECONDS", "60"))
TCC_RETRY_SECONDS = float(os.environ.get("TCC_RETRY_SECONDS", "2"))
TCC_PHASE_TWO_BUDGET_SECONDS = float(
    os.environ.get("TCC_PHASE_TWO_BUDGET_SECONDS", "3600")
)
# Set only by an end-to-end test: a worker exits right after it stored a
# decision, so that the test can prove phase two resumes.
TCC_CRASH_AFTER_DECISION = os.environ.get("TCC_CRASH_AFTER_DECISION", "") == "1"

# Where saga steps reach the demo services; `make run` sets it to its own
# address so the seeded targets point at the running web server.
DEMO_BASE_URL = os.environ.get("DEMO_BASE_URL", "http://127.0.0.1:8000")

# LOG_FORMAT=json writes one JSON object per line; anything else is plain
# text. Either way every line carries the trace, span, run and request ids.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "trace_context": {"()": "controlplane.logging.TraceContextFilter"},
        "periodic_tasks": {
            "()": "controlplane.logging.PeriodicTaskFilter",
            # Filled in below from CELERY_BEAT_SCHEDULE.
            "periodic_tasks": [],
        },
    },
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s "
            "span=%(span_id)s run=%(run_id)s request=%(request_id)s] %(message)s"
        },
        "json": {"()": "controlplane.logging.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["periodic_tasks", "trace_context"],
        },
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}

# Idempotency-Key records of the REST API (see controlplane.idempotency).
# A record and its key expire this many seconds after the first request.
IDEMPOTENCY_TTL_SECONDS = int(os.environ.get("IDEMPOTENCY_TTL_SECONDS", "86400"))
# A claim whose request neither finished nor released it within this many
# seconds (its process crashed) can be claimed by a retry.
IDEMPOTENCY_LEASE_SECONDS = float(os.environ.get("IDEMPOTENCY_LEASE_SECONDS", "60"))
# Retry-After of a 409 for a key still in progress, in seconds; less when the
# claim's lease ends sooner.
IDEMPOTENCY_RETRY_AFTER_SECONDS = 1
# Expired records deleted per DELETE statement, and seconds between purges.
IDEMPOTENCY_PURGE_BATCH_SIZE = 1000
IDEMPOTENCY_PURGE_INTERVAL = float(os.environ.get("IDEMPOTENCY_PURGE_INTERVAL", "300"))

# Tracing (see controlplane.tracing and docs/tracing.md). Spans go to the
# database; OTLP export is on only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
TRACING_ENABLED = _env_bool("TRACING_ENABLED", True)
# Read at every export, so a test process can turn the database export off.
TRACING_DATABASE_EXPORT = _env_bool("TRACING_DATABASE_EXPORT", True)
# Finished spans waiting for the exporter; more are dropped and counted.
TRACING_MAX_QUEUE_SIZE = int(os.environ.get("TRACING_MAX_QUEUE_SIZE", "4096"))
# Spans per INSERT, and milliseconds between two exports.
TRACING_EXPORT_BATCH_SIZE = int(os.environ.get("TRACING_EXPORT_BATCH_SIZE", "256"))
TRACING_EXPORT_DELAY_MS = int(os.environ.get("TRACING_EXPORT_DELAY_MS", "1000"))
# Stored spans older than this many seconds are deleted by a periodic task.
SPAN_RETENTION_SECONDS = int(os.environ.get("SPAN_RETENTION_SECONDS", "604800"))
SPAN_PURGE_BATCH_SIZE = 1000
SPAN_PURGE_INTERVAL = float(os.environ.get("SPAN_PURGE_INTERVAL", "3600"))
# POST /demo/tracecontext/ forwards only to loopback URLs unless this is
# true, so the endpoint cannot be used to send requests to other hosts.
TRACECONTEXT_ALLOW_ANY_HOST = _env_bool("TRACECONTEXT_ALLOW_ANY_HOST", False)

# Transactional outbox (see controlplane.outbox and docs/choreography.md).
# Seconds between two relay passes of beat; each commit that writes an
# event also asks for a pass at once.
OUTBOX_RELAY_INTERVAL = float(os.environ.get("OUTBOX_RELAY_INTERVAL", "2"))
# Seconds after which the relay lock of a killed relay expires.
OUTBOX_RELAY_LOCK_SECONDS = int(os.environ.get("OUTBOX_RELAY_LOCK_SECONDS", "10"))
# Seconds after its publish that an event a subscriber has not consumed is
# published to that subscriber again.
OUTBOX_REDELIVER_AFTER_SECONDS = float(
    os.environ.get("OUTBOX_REDELIVER_AFTER_SECONDS", "30")
)
# A file whose existence makes the relay exit before its next publish, for
# crash tests; empty turns the check off.
OUTBOX_RELAY_CRASH_FILE = os.environ.get("OUTBOX_RELAY_CRASH_FILE", "")
# Seconds sent outbox rows and inbox rows are kept; a periodic task deletes
# older ones. It must exceed the run deadline below, or a redelivery could
# find its inbox row gone and apply the event again.
OUTBOX_RETENTION_SECONDS = int(os.environ.get("OUTBOX_RETENTION_SECONDS", "604800"))
# Seconds a choreographed run may stay pending, running or compensating;
# after that it ends compensation_failed and needs an operator.
CHOREOGRAPHY_RUN_DEADLINE_SECONDS = float(
    os.environ.get("CHOREOGRAPHY_RUN_DEADLINE_SECONDS", "300")
)

# Periodic tasks run by Celery beat.
SAGA_SWEEP_INTERVAL = float(os.environ.get("SAGA_SWEEP_INTERVAL", "5"))
CELERY_BEAT_SCHEDULE = {
    "sample-breakers": {
        "task": "resilience.sample_breakers",
        "schedule": 5.0,
    },
    "resume-stalled-runs": {
        "task": "sagas.resume_stalled_runs",
        "schedule": SAGA_SWEEP_INTERVAL,
    },
    "relay-outbox": {
        "task": "controlplane.relay_outbox",
        "schedule": OUTBOX_RELAY_INTERVAL,
    },
    "sweep-choreographed-runs": {
        "task": "sagas.sweep_choreographed_runs",
        "schedule": SAGA_SWEEP_INTERVAL,
    },
    "purge-outbox": {
        "task": "controlplane.purge_outbox",
        "schedule": SPAN_PURGE_INTERVAL,
    },
    "purge-idempotency-records": {
        "task": "controlplane.purge_idempotency_records",
        "schedule": IDEMPOTENCY_PURGE_INTERVAL,
    },
    "purge-spans": {
        "task": "controlplane.purge_spans",
        "schedule": SPAN_PURGE_INTERVAL,
    },
}

# Celery's INFO lines about each run of these tasks are logged as DEBUG.
LOGGING["filters"]["periodic_tasks"]["periodic_tasks"] = [
    entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()
]
