"""Read by gunicorn from the working directory (`make run`, the container): shared settings."""
from notifyhub.gunicorn_conf import *  # noqa: F403
