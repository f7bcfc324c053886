"""gunicorn settings every deployment shares (``gunicorn -c python:notifyhub.gunicorn_conf``;
the repository's ``gunicorn.conf.py``, read from the working directory, imports this).

The access log goes through :class:`notifyhub.log_redaction.RedactingGunicornLogger`, so a
callback token in a URL is never written to it.
"""
logger_class = "notifyhub.log_redaction.RedactingGunicornLogger"
