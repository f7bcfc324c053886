"""Credentials out of the logs: a logging filter that masks what URLs carry.

Provider URLs hold secrets in their user info (``json://user:password@host``), their query
string (``?access_token=…``) or, for Apprise, anywhere (``tgram://bot-token/chat``). Libraries
log them verbatim: urllib3's DEBUG request lines, Apprise's "Unparseable URL" errors, and an
unexpected exception's text in the send harness's traceback. The filter rewrites the message
(and the formatted traceback) of every record of those loggers before any handler sees it.
"""
import logging
import re

_URL = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]{0,19})://([^\s/?#'\"<>]*@)?([^\s?#'\"<>]*)(\?[^\s#'\"<>]*)?")
_QUERY_AFTER_PATH = re.compile(r"(\s/[^\s?'\"]*)\?[^\s'\"]+")


def redact_urls(text: str, *, whole: bool = False) -> str:
    """``text`` with URL user info and query strings masked (``whole``: all but the scheme)."""
    def mask(match: re.Match) -> str:
        if whole:
            return f"{match.group(1)}://…"
        userinfo = "***@" if match.group(2) else ""
        query = "?***" if match.group(4) else ""
        return f"{match.group(1)}://{userinfo}{match.group(3)}{query}"

    return _QUERY_AFTER_PATH.sub(r"\1?***", _URL.sub(mask, text))


class RedactURLs(logging.Filter):
    def __init__(self, *, whole: bool = False):
        super().__init__()
        self.whole = whole

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_urls(message, whole=self.whole)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_urls(logging.Formatter().formatException(record.exc_info), whole=self.whole)
        return True


#: Loggers that see provider URLs. Filters act on records of their own logger only, so the
#: modules that log are named, not their parents.
LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "httpx", "httpcore.connection", "httpcore.http11",
           "httpcore.http2", "channels_app.concurrency")


def install() -> None:
    """Attach the filters (idempotent); ``apprise`` URLs are masked whole."""
    for name, whole in [(name, False) for name in LOGGERS] + [("apprise", True)]:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactURLs) for f in logger.filters):
            logger.addFilter(RedactURLs(whole=whole))
