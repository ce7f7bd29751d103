"""Settings, all read from the environment (and `.env` when present).

DEBUG is off unless set (bin/run and bin/test set DEBUG=1). With DEBUG off, SECRET_KEY
and FIELD_ENCRYPTION_KEYS are required: start-up stops with one line naming them.
"""

import os
import sys
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config import devrun, keys

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

# git-ignored runtime files: SQLite, the dev key, bin/run's run file, logs
VAR_DIR = devrun.var_dir()
# What a running bin/run published for commands started elsewhere in this checkout (a
# second terminal): its DEBUG and its Redis. The environment (and .env) comes first.
RUN_FILE_ENV = devrun.run_file_env(VAR_DIR)

DEBUG = env.bool("DEBUG", default=env.parse_value(RUN_FILE_ENV.get("DEBUG", "false"), bool))
try:
    SECRET_KEY = keys.secret_key(env.str("SECRET_KEY", default=""), debug=DEBUG)
    FIELD_ENCRYPTION_KEYS = keys.field_encryption_keys(
        env.list("FIELD_ENCRYPTION_KEYS", default=[]),
        debug=DEBUG,
        dev_key_file=VAR_DIR / "field-encryption.key",
    )
except ImproperlyConfigured as error:
    # One line, not a traceback through Django's settings machinery. Status 3 is
    # gunicorn's "worker failed to boot": its master stops instead of respawning workers.
    print(f"Botfleet cannot start: {error}", file=sys.stderr, flush=True)
    raise SystemExit(3) from None
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "credentials",
    "conversations",
    "bots",
    "policy",  # after bots: it adds its inlines to the bot's admin
    "dashboard",
    "sandbox",
]

MIDDLEWARE = [
    "dashboard.middleware.LivenessMiddleware",  # /healthz for any Host (container checks)
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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

# --- Database ---------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # Web, worker threads and beat write at once: WAL lets readers run beside the
        # writer, IMMEDIATE takes the write lock up front (no "database is locked" on
        # lock upgrade), and the timeout makes writers queue instead of failing.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not ":memory:", so the Celery worker the end-to-end tests start in
    # another process sees the same test database; one per test run, so two runs side
    # by side do not share (and corrupt) one file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
# Keep connections across requests and Celery tasks: every poll cycle and reply is a
# task, and reconnecting (plus SQLite's PRAGMAs) for each would cost more than the work.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

if not DEBUG:
    # Serves the admin's and dashboard's static files from gunicorn (runserver serves
    # them itself in development).
    MIDDLEWARE.insert(2, "whitenoise.middleware.WhiteNoiseMiddleware")
    SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # HTTPS only, as `manage.py check --deploy` wants, unless SECURE_COOKIES=false (trying
    # production mode over plain http) or each is set on its own.
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=SESSION_COOKIE_SECURE)
    # Load balancers and Prometheus ask gunicorn directly, over http, inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int(
        "SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if SESSION_COOKIE_SECURE else 0
    )
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

# --- Redis and Celery -------------------------------------------------------
# The run and test commands start an embedded Redis and export REDIS_URL; a command in
# a second terminal finds bin/run's in its run file. Never a silent localhost:6379 (any
# Redis that happens to listen there): with neither, every Redis call fails at once on a
# socket that does not exist, and what needs Redis says REDIS_URL_MISSING.
REDIS_URL = env.str("REDIS_URL", default="") or RUN_FILE_ENV.get("REDIS_URL", "")
REDIS_URL_MISSING = "" if REDIS_URL else (
    "Redis is not configured: REDIS_URL is not set and bin/run is not running in this "
    "checkout. Start bin/run (commands in another terminal then use its Redis), or set REDIS_URL."
)
_NO_REDIS = VAR_DIR / "no-redis-configured.sock"

CELERY_BROKER_URL = REDIS_URL or f"redis+socket://{_NO_REDIS}"
CELERY_RESULT_BACKEND = CELERY_BROKER_URL
REDIS_URL = REDIS_URL or f"unix://{_NO_REDIS}"
CELERY_TASK_IGNORE_RESULT = True  # tasks report through the database, not results
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"  # never pickle: a broker message must not run code
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# Our tasks are idempotent (claims in the database), so acknowledge after running and
# re-queue a task whose worker died; without reject_on_worker_lost Celery acks those too.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One reserved message per pool slot: a busy slot must not hoard work another worker
# could do now.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Time limits bound prefork workers; the threads pool ignores them, so every network
# call also carries its own timeout.
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_TIME_LIMIT = 300
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Redis re-delivers an unacknowledged task after this many seconds: longer than the
    # longest task (the hard limit above), or a slow task would run twice.
    "visibility_timeout": 600,
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "bots.tasks.poll_cycle": {"queue": "polling"},
    "bots.tasks.*": {"queue": "default"},
    "conversations.tasks.claims_reap": {"queue": "replies"},
    "conversations.tasks.pushed_answer": {"queue": "replies"},
    "bots.tasks.pushes_drain": {"queue": "replies"},
    "conversations.tasks.summary_refresh": {"queue": "replies"},
    "conversations.tasks.notes_refresh": {"queue": "replies"},
    "conversations.tasks.scheduled_*": {"queue": "scheduled"},
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
SUPERVISOR_INTERVAL = env.float("SUPERVISOR_INTERVAL", default=10.0)
# System schedules live here, in code; user schedules are PeriodicTask rows.
CELERY_BEAT_SCHEDULE = {
    "supervise-bots": {
        "task": "bots.tasks.supervise",
        "schedule": SUPERVISOR_INTERVAL,
        # A backlog of old supervise runs is useless: the next one does the same work.
        "options": {"expires": SUPERVISOR_INTERVAL},
    },
    "reap-claims": {
        "task": "conversations.tasks.claims_reap",
        "schedule": SUPERVISOR_INTERVAL,
        "options": {"expires": SUPERVISOR_INTERVAL},
    },
}
CELERY_BEAT_SCHEDULE["expire-old-messages"] = {
    "task": "conversations.tasks.messages_expire",
    "schedule": 24 * 3600.0,  # daily; each bot's "keep messages" days decide what goes
    "options": {"expires": 3600},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep our logging (and its redaction)

# --- Telegram ---------------------------------------------------------------
TELEGRAM_API_BASE_URL = env.str("TELEGRAM_API_BASE_URL", default="https://api.telegram.org/bot")
# Seconds one getUpdates long poll waits for news. Longer: fewer requests per idle bot
# (an idle poll costs no database work either way); Stop does not wait for it.
TELEGRAM_POLL_TIMEOUT = env.int("TELEGRAM_POLL_TIMEOUT", default=50)
# Each worker renews the poll leases of all its bots in one UPDATE this often; Stop takes
# effect within this many seconds.
POLL_LEASE_RENEW_INTERVAL = env.float("POLL_LEASE_RENEW_INTERVAL", default=5.0)
# How late a renewal may be before the supervisor revives the bot elsewhere: a killed
# worker's bots poll again within RENEW_INTERVAL + GRACE + SUPERVISOR_INTERVAL seconds.
POLL_LEASE_GRACE = env.float("POLL_LEASE_GRACE", default=15.0)

# Webhook mode (per bot): the public address Telegram pushes updates to, without a path,
# e.g. https://bots.example.com. Each webhook bot gets <this>/telegram/webhook/<bot id>/.
# Telegram only pushes to HTTPS; plain http is accepted for loopback (the emulator).
# bin/run sets it to its own web address (the emulator pushes there).
WEBHOOK_BASE_URL: str = (
    env.str("WEBHOOK_BASE_URL", default="") or RUN_FILE_ENV.get("WEBHOOK_BASE_URL", "")
).rstrip("/")
# A webhook request larger than this is passed over (recorded, answered 200 so Telegram
# does not send it again). Telegram's updates are a few kilobytes.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
# Pushes Telegram makes to one bot at once. 1 (the default): one at a time, so a chat's
# messages arrive, are stored and are answered in order; the view answers in
# milliseconds, so one bot still takes about a hundred updates a second. More: a busy
# bot's pushes overlap, and two messages of one chat sent together may be answered in
# either order (Telegram allows 1 to 100; its own default is 40).
WEBHOOK_MAX_CONNECTIONS = env.int("WEBHOOK_MAX_CONNECTIONS", default=1)
# How often the supervisor asks Telegram about each webhook (getWebhookInfo: pending
# updates, Telegram's last delivery error). Idle webhook bots cost nothing else.
WEBHOOK_INFO_INTERVAL = env.float("WEBHOOK_INFO_INTERVAL", default=600.0)

# --- Answering and sending (conversations.replies, conversations.outbox) ----
# A worker's claim on a message it answers or sends lasts this long and is renewed every
# CLAIM_RENEW_INTERVAL while it works; a dead worker's claims lapse and the reaper (every
# SUPERVISOR_INTERVAL) takes the rows over: answered within CLAIM_SECONDS + that interval.
CLAIM_SECONDS = env.float("CLAIM_SECONDS", default=60.0)
CLAIM_RENEW_INTERVAL = env.float("CLAIM_RENEW_INTERVAL", default=10.0)
# Take-overs of one message before it is failed (a message that kills its worker each time).
REPLY_MAX_ATTEMPTS = env.int("REPLY_MAX_ATTEMPTS", default=3)
# Transient Telegram failures of one part before it is given up.
OUTBOX_MAX_ATTEMPTS = env.int("OUTBOX_MAX_ATTEMPTS", default=5)
# A part waits this long in memory for a send slot, a flood wait or a back-off; a longer
# wait hands it back to the database (queued) for the reaper to send when it is due.
OUTBOX_MAX_INLINE_WAIT = env.float("OUTBOX_MAX_INLINE_WAIT", default=30.0)

# --- Media (photos, voice notes, videos the AI is shown) ---------------------
# Larger files get a polite line and are never downloaded. Telegram's Bot API serves
# files up to 20 MB.
MEDIA_MAX_BYTES = env.int("MEDIA_MAX_BYTES", default=10_000_000)

# --- Sandbox (the demo chat page with an emulated Telegram) ----------------
SANDBOX_ENABLED = env.bool("SANDBOX_ENABLED", default=DEBUG)
# The Telegram Bot API emulator bin/run starts (its control API and Bot API).
SANDBOX_EMULATOR_URL: str = env.str("SANDBOX_EMULATOR_URL", default="http://127.0.0.1:8081")

# --- Scheduled messages -------------------------------------------------------
# Sending tasks per big broadcast. They share the bot's 30 messages/s, so a second one
# only hides the other's round trips to Telegram and the database; more add contention.
SCHEDULED_BROADCAST_LANES = env.int("SCHEDULED_BROADCAST_LANES", default=2)
# How often beat looks for broadcasts whose worker died, to resume them.
SCHEDULED_RESUME_INTERVAL = env.float("SCHEDULED_RESUME_INTERVAL", default=30.0)
CELERY_BEAT_SCHEDULE["resume-scheduled-runs"] = {
    "task": "conversations.tasks.scheduled_runs_resume",
    "schedule": SCHEDULED_RESUME_INTERVAL,
    "options": {"expires": SCHEDULED_RESUME_INTERVAL},
}

# --- AI providers ---------------------------------------------------------
AI_REQUEST_TIMEOUT = env.float("AI_REQUEST_TIMEOUT", default=30.0)  # seconds per call
AI_MAX_ATTEMPTS = env.int("AI_MAX_ATTEMPTS", default=4)  # first try + retries on 429/5xx/time-outs
AI_RETRY_BUDGET = env.float("AI_RETRY_BUDGET", default=20.0)  # seconds of retrying before the fallback
# Waiting longer than this for the credential's per-minute slot sends the fallback.
AI_RATE_LIMIT_MAX_WAIT = env.float("AI_RATE_LIMIT_MAX_WAIT", default=5.0)
AI_CIRCUIT_FAILURES = env.int("AI_CIRCUIT_FAILURES", default=5)  # consecutive, to open it
AI_CIRCUIT_COOLDOWN = env.float("AI_CIRCUIT_COOLDOWN", default=30.0)  # seconds open before a probe

# --- Dashboard and monitoring -------------------------------------------------
# /metrics without a staff login: a scraper sending "Authorization: Bearer <METRICS_TOKEN>"
# (compared in constant time), or a client whose address is in METRICS_ALLOWED_IPS
# (addresses or networks, "10.0.0.0/8"; checked against REMOTE_ADDR only, since
# X-Forwarded-For can be forged: behind a proxy that is the proxy, so every client of
# the proxy would pass; prefer the token there). Unset, the allowlist is loopback with
# DEBUG on and empty with DEBUG off: production serves /metrics to no anonymous client
# until one of the two is set.
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=["127.0.0.1", "::1"] if DEBUG else [])
# Seconds each readiness check (database, Redis, a Celery worker) may take; the checks
# run side by side, so /readyz answers within about this long even when one hangs.
HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=1.0)
# Counting live workers waits a whole ping timeout for replies: the dashboard reuses
# the answer for this many seconds instead of paying that on every refresh.
DASHBOARD_WORKERS_CACHE_SECONDS = env.int("DASHBOARD_WORKERS_CACHE_SECONDS", default=10)
DASHBOARD_REFRESH_SECONDS = env.int("DASHBOARD_REFRESH_SECONDS", default=4)
DASHBOARD_TASKS_PER_PAGE = env.int("DASHBOARD_TASKS_PER_PAGE", default=50)

# --- Logging ----------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # httpx logs every request URL at INFO, and a Telegram URL contains the bot
        # token. Redaction catches it anyway; this keeps the noise out too.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}
