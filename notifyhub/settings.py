"""Settings for notifyhub, driven by environment variables (12-factor).

With nothing set beyond the two secrets, notifyhub runs *embedded*: SQLite and a
file-system Celery broker, no server processes needed. ``DATABASE_URL`` switches
to PostgreSQL and ``REDIS_URL`` (or ``CELERY_BROKER_URL``) to Redis. Every
variable is documented in ``.env.example``.
"""
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("NOTIFYHUB_VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _required(name: str) -> str:
    value = env.str(name, default="")
    if not value:
        raise ImproperlyConfigured(
            f"Set the {name} environment variable (see .env.example; `make run` writes one)."
        )
    return value


SECRET_KEY = _required("SECRET_KEY")
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind a reverse proxy that terminates TLS (nginx, a load balancer, an ingress): trust its
# X-Forwarded-Proto, redirect plain HTTP to HTTPS (health probes excepted), send HSTS and keep
# the session and CSRF cookies to HTTPS. With it on, `manage.py check --deploy` is clean.
NOTIFYHUB_BEHIND_TLS_PROXY = env.bool("NOTIFYHUB_BEHIND_TLS_PROXY", default=env.bool("BEHIND_TLS_PROXY", default=False))
if NOTIFYHUB_BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("NOTIFYHUB_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("NOTIFYHUB_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("NOTIFYHUB_HSTS_PRELOAD", default=True)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "axes",
    "channels_app",
    "preferences",
    "notifyhub.clients",
    "notifyhub.messaging",
    "notifyhub.broadcasts",
    "notifyhub.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "notifyhub.security.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "notifyhub.api.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: answers 429 to a locked-out admin login
]

ROOT_URLCONF = "notifyhub.urls"
WSGI_APPLICATION = "notifyhub.wsgi.application"

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

# --- Database -------------------------------------------------------------------------------
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'notifyhub.sqlite3'}"),
}


def _private_file(path: str) -> None:
    """Create the SQLite file (and its folder) readable by the owner only, before SQLite does
    with the process umask; SQLite gives its -wal and -shm files the database file's mode."""
    if not path or path == ":memory:":
        return
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)


if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _private_file(str(DATABASES["default"]["NAME"]))
    # Web, worker and scheduler share one file: WAL and immediate transactions avoid
    # "database is locked" under concurrent writers.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery -------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    # Embedded: a file cache shared by the processes of this host (web, worker, beat), so
    # provider access tokens are still fetched once.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}

CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),  # kombu's default is ./control in the cwd
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600),
    }
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Every queue, so a worker started without -Q serves them all (make run, small installs). Bulk
# lane: deliver.<kind>; transactional lane: deliver.<kind>.tx (see messaging/queueing.py).
NOTIFYHUB_CHANNEL_KINDS = ("email", "sms", "push", "inapp", "wechat", "chat", "webhook")
CELERY_TASK_QUEUES = [
    Queue(name) for name in (
        "default", "dispatch", "maintenance",
        *(f"deliver.{kind}{lane}" for kind in NOTIFYHUB_CHANNEL_KINDS for lane in (".tx", "")),
    )
]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "notifyhub-release-due": {
        "task": "notifyhub.release_due",
        "schedule": env.float("NOTIFYHUB_DUE_POLL_SECONDS", default=2.0),
        "options": {"queue": "maintenance", "expires": 30},
    },
    "notifyhub-sweep-stuck": {
        "task": "notifyhub.sweep_stuck",
        "schedule": env.float("NOTIFYHUB_SWEEP_SECONDS", default=10.0),
        "options": {"queue": "maintenance", "expires": 60},
    },
}

# --- notifyhub behaviour ----------------------------------------------------------------------
NOTIFYHUB_SECRETS_KEYS = [k.strip() for k in _required("NOTIFYHUB_SECRETS_KEY").split(",") if k.strip()]
NOTIFYHUB_MAX_ATTEMPTS = env.int("NOTIFYHUB_MAX_ATTEMPTS", default=6)
NOTIFYHUB_RETRY_BASE_SECONDS = env.float("NOTIFYHUB_RETRY_BASE_SECONDS", default=10.0)
NOTIFYHUB_RETRY_MAX_SECONDS = env.float("NOTIFYHUB_RETRY_MAX_SECONDS", default=3600.0)
NOTIFYHUB_RETRY_COUNTDOWN_MAX_SECONDS = env.float("NOTIFYHUB_RETRY_COUNTDOWN_MAX_SECONDS", default=60.0)
# Safety margin of provider rate limits, a fraction of the period (channels_app.ratelimit).
NOTIFYHUB_RATE_LIMIT_MARGIN = env.float("NOTIFYHUB_RATE_LIMIT_MARGIN", default=0.05)
# A claim whose heartbeat is older than this is stuck (its worker died): the sweeper re-queues it.
NOTIFYHUB_STUCK_SECONDS = env.float("NOTIFYHUB_STUCK_SECONDS", default=30.0)
# How often a worker refreshes the claim of the batch it is sending (capped at a third of the above).
NOTIFYHUB_HEARTBEAT_SECONDS = env.float("NOTIFYHUB_HEARTBEAT_SECONDS", default=10.0)
# A delivery queued this long has its broker message looked up; it is re-enqueued only if lost.
NOTIFYHUB_QUEUED_CHECK_SECONDS = env.float("NOTIFYHUB_QUEUED_CHECK_SECONDS", default=30.0)
# Dispatch chunk tasks: retries of a chunk that raises, and its wait before the sweeper restarts it.
NOTIFYHUB_CHUNK_MAX_ATTEMPTS = env.int("NOTIFYHUB_CHUNK_MAX_ATTEMPTS", default=5)
# A provider report for an unknown message is kept this long, waiting for its send to be recorded.
NOTIFYHUB_EARLY_RECEIPT_HOURS = env.float("NOTIFYHUB_EARLY_RECEIPT_HOURS", default=24.0)
# After a cancel, how long the request waits for batches already handed to a provider to finish.
NOTIFYHUB_CANCEL_DRAIN_SECONDS = env.float("NOTIFYHUB_CANCEL_DRAIN_SECONDS", default=10.0)
# JSON bodies nested deeper than this are refused with 400 (API and callbacks).
NOTIFYHUB_MAX_JSON_DEPTH = env.int("NOTIFYHUB_MAX_JSON_DEPTH", default=32)
# An oversized request body is read and dropped up to this size, so the client gets the 413 answer.
NOTIFYHUB_MAX_DRAIN_BYTES = env.int("NOTIFYHUB_MAX_DRAIN_BYTES", default=16 * 1024 * 1024)
NOTIFYHUB_DELIVER_BATCH_SIZE = env.int("NOTIFYHUB_DELIVER_BATCH_SIZE", default=100)
NOTIFYHUB_DISPATCH_CHUNK_SIZE = env.int("NOTIFYHUB_DISPATCH_CHUNK_SIZE", default=1000)
NOTIFYHUB_INLINE_DISPATCH_MAX = env.int("NOTIFYHUB_INLINE_DISPATCH_MAX", default=100)
NOTIFYHUB_MAX_RECIPIENTS_PER_REQUEST = env.int("NOTIFYHUB_MAX_RECIPIENTS_PER_REQUEST", default=10000)
NOTIFYHUB_MAX_BODY_BYTES = env.int("NOTIFYHUB_MAX_BODY_BYTES", default=512 * 1024)
NOTIFYHUB_HTTP_TIMEOUT_SECONDS = env.float("NOTIFYHUB_HTTP_TIMEOUT_SECONDS", default=10.0)
NOTIFYHUB_HTTP_CONCURRENCY = env.int("NOTIFYHUB_HTTP_CONCURRENCY", default=16)
# Bounds of one template render (all parts of one channel): wall time and characters written.
NOTIFYHUB_TEMPLATE_RENDER_SECONDS = env.float("NOTIFYHUB_TEMPLATE_RENDER_SECONDS", default=0.5)
NOTIFYHUB_TEMPLATE_MAX_OUTPUT = env.int("NOTIFYHUB_TEMPLATE_MAX_OUTPUT", default=256 * 1024)
# Outgoing URLs (webhooks, providers) may not point into private networks unless allowed here.
#: The public base URL of this hub (e.g. https://notify.example.com): provider callbacks are
#: addressed to it. Blank: callbacks are not requested from providers.
NOTIFYHUB_PUBLIC_URL = env.str("NOTIFYHUB_PUBLIC_URL", default="").rstrip("/")

# Anymail tracking webhooks (mounted at /hooks/anymail/): WEBHOOK_SECRET is HTTP Basic
# "user:password" that each ESP's webhook URL must carry; every other ANYMAIL_* variable
# passes through, e.g. ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY -> ANYMAIL["MAILGUN_WEBHOOK_SIGNING_KEY"].
ANYMAIL = {key.removeprefix("ANYMAIL_"): value for key, value in os.environ.items()
           if key.startswith("ANYMAIL_") and value}

NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE = env.bool("NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE", default=False)
NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS = env.list("NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS", default=[])
DATA_UPLOAD_MAX_MEMORY_SIZE = NOTIFYHUB_MAX_BODY_BYTES

# --- API --------------------------------------------------------------------------------------
API_KEY_CUSTOM_HEADER = "HTTP_AUTHORIZATION"
# Throttles (notifyhub.api.throttling), counted in the shared cache: "<count>/<period>" with the
# period s, min, h or d (optionally a multiple, "10/5s"); blank for no limit.
NOTIFYHUB_THROTTLE_RATES = {
    "address": env.str("NOTIFYHUB_THROTTLE_ADDRESS", default="3000/min"),
    "auth_failure": env.str("NOTIFYHUB_THROTTLE_AUTH_FAILURE", default="30/min"),
    "send": env.str("NOTIFYHUB_THROTTLE_SEND", default="1200/min"),
    "read": env.str("NOTIFYHUB_THROTTLE_READ", default="3000/min"),
    "manage": env.str("NOTIFYHUB_THROTTLE_MANAGE", default="600/min"),
}
# How many reverse proxies in front of the hub append to X-Forwarded-For (0: use the peer address).
NOTIFYHUB_TRUSTED_PROXIES = env.int("NOTIFYHUB_TRUSTED_PROXIES", default=0)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["notifyhub.api.throttling.ThrottledApiKeyAuthentication"],
    "DEFAULT_THROTTLE_CLASSES": ["notifyhub.api.throttling.ApiKeyScopeThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["notifyhub.api.auth.HasScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["notifyhub.api.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "notifyhub.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "notifyhub.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "notifyhub API",
    "DESCRIPTION": (
        "Send notifications by template key to recipients over email, in-app, webhook and more. "
        "Authenticate with `Authorization: Api-Key <key>`; keys carry the scopes `send`, `read` "
        "and `manage`."
    ),
    "VERSION": "1.0.0",
    "OAS_VERSION": "3.0.3",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # No badge image from validator.swagger.io: the docs load nothing from other hosts.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ChannelKindEnum": "channels_app.kinds.ChannelKind",
        "DeliveryStatusEnum": "notifyhub.messaging.models.DeliveryStatus",
        "MessageStatusEnum": "notifyhub.messaging.models.MessageStatus",
    },
}

# --- Admin login lockout (django-axes) ----------------------------------------------------------
# Failed admin logins are counted per user name and address, in Redis when REDIS_URL is set (in
# the database otherwise: axes refuses a per-host file cache); at the limit the pair is locked
# out (429) for the cool-off time. A successful login resets the count.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler" if REDIS_URL else "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = env.int("NOTIFYHUB_ADMIN_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("NOTIFYHUB_ADMIN_LOCKOUT_MINUTES", default=15.0) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "notifyhub.api.throttling.client_address"
AXES_VERBOSE = False

# --- The rest of Django -----------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing folder
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Paths and query strings may carry callback tokens (notifyhub.log_redaction).
    "filters": {"redact_secrets": {"()": "notifyhub.log_redaction.RedactSecretsFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["redact_secrets"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- Custom CA bundle for outbound HTTPS (channels_app/outbound.py) ------------------------------
# A PEM file trusted instead of the default CAs by every HTTPS client of the channel backends
# (requests sessions, the httpx APNs client; exported as REQUESTS_CA_BUNDLE for libraries that
# make their own requests, such as Apprise). For egress through a TLS-inspecting proxy.
NOTIFYHUB_CA_BUNDLE = env.str("NOTIFYHUB_CA_BUNDLE", default="")
if NOTIFYHUB_CA_BUNDLE:
    os.environ["REQUESTS_CA_BUNDLE"] = NOTIFYHUB_CA_BUNDLE
