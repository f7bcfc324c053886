"""What every WeChat server API call shares: the access token and the ``errcode`` answers.

Implements, from developers.weixin.qq.com: *getStableAccessToken* (``POST /cgi-bin/stable_token``)
and the global return codes (公众号/小程序全局返回码). The message backends live in ``wechat.py``.

WeChat answers HTTP 200 with ``{"errcode": N, "errmsg": "..."}``, so the HTTP status says little;
:meth:`WeChatApiBackend.raise_for_status` reads the JSON and maps the code.

The stable token endpoint is used rather than ``GET /cgi-bin/token`` because in its normal mode
a fetch does not invalidate the token other systems of the same appid hold (``/cgi-bin/token``
makes the previous token die within 5 minutes, so notifyhub and the company's own backend would
keep logging each other out), the AppSecret travels in the JSON body instead of the URL (no
secret in proxy or access logs), and it allows 10,000 calls a minute instead of 2,000 a day.
The token is cached in Redis for every worker (:mod:`channels_app.tokens`); a send whose token
WeChat rejects (40001, 40014, 42001) drops it and is retried once with a fresh one.

A small client on ``requests`` rather than a WeChat SDK: we need two endpoints, and the token
must live in the shared cache, not in an SDK's per-process storage.
"""
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlsplit

import requests

from channels_app.errors import (
    AccountError,
    ChannelError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.http import HttpChannelBackend
from channels_app.tokens import access_token, access_token_invalidate

DEFAULT_API_BASE = "https://api.weixin.qq.com"
STABLE_TOKEN_PATH = "/cgi-bin/stable_token"  # noqa: S105 — a URL path, not a secret
#: Refresh this long before expiry: in normal mode the stable token endpoint hands out a new
#: token during the last 5 minutes of the old one, and both stay valid meanwhile.
TOKEN_MARGIN_SECONDS = 300
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
CHINA_TIME = timezone(timedelta(hours=8), "CST")  # daily quotas reset at 00:00 Beijing time


def json_body(payload: dict) -> bytes:
    """Compact UTF-8 JSON with characters as they are (no ``\\uXXXX``), as in WeChat's own examples."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


class AccessTokenRejected(TransientChannelError):
    """WeChat refused the access token (40001 invalid or not latest, 40014 invalid, 42001 expired)."""


def seconds_to_quota_reset(now: datetime | None = None) -> float:
    """Seconds until the next 00:00 China time, when WeChat's daily API quotas start over."""
    now = (now or datetime.now(UTC)).astimezone(CHINA_TIME)
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return (tomorrow - now).total_seconds()


TOKEN_REJECTED = frozenset({40001, 40014, 42001})
RETRY_LATER = {
    -1: None,       # system error: busy, try again shortly
    45011: 60.0,    # api minute-quota reach limit, retry next minute
    45047: None,    # out of response count limit
    43108: None,    # concurrent sends to the same user
}
#: The account cannot send at all: credentials, IP whitelist, missing or forbidden API permission.
ACCOUNT_ERRORS = frozenset({
    40002,  # invalid grant_type
    40013,  # invalid appid
    40125,  # invalid appsecret
    40164,  # invalid ip, not in whitelist
    41004,  # appsecret missing
    48001,  # api unauthorized (account lacks the template / subscribe message permission)
    48004,  # api forbidden for irregularities
    43107,  # subscribe message capability banned for this account or template
    61004,  # access clientip is not registered
    89503, 89506, 89507,  # IP needs the administrator's confirmation / was refused / wait an hour
})
INVALID_ADDRESS = frozenset({40003})  # invalid openid: empty, malformed or of another appid


def wechat_error(errcode: int, errmsg: str, *, token_request: bool, response: str = "") -> Exception:
    """The channel error for a WeChat ``errcode``.

    On the token endpoint every code but "busy" and the quotas is the account's fault
    (40001 there means a wrong AppSecret, not a stale token).
    """
    message = f"WeChat {errcode}: {errmsg}".strip()
    kwargs = {"code": str(errcode), "status": 200, "response": response}
    if errcode == 45009:  # reach max api daily quota limit
        return TransientChannelError(message, retry_after=seconds_to_quota_reset(), **kwargs)
    if errcode in RETRY_LATER:
        return TransientChannelError(message, retry_after=RETRY_LATER[errcode], **kwargs)
    if token_request or errcode in ACCOUNT_ERRORS:
        return AccountError(message, **kwargs)
    if errcode in TOKEN_REJECTED:
        return AccessTokenRejected(message, **kwargs)
    if errcode in INVALID_ADDRESS:
        return InvalidAddressError(message, **kwargs)
    # 43004 not following, 43101 refused, 40037 template, 47003 data, 41030 page, 45168 sensitive words...
    return PermanentChannelError(message, **kwargs)


def _without_token(error: ChannelError, token: str) -> ChannelError:
    """Network errors quote the URL, and WeChat wants the token in it: keep it out of the
    delivery's recorded detail."""
    error.args = tuple(arg.replace(token, "***") if isinstance(arg, str) else arg for arg in error.args)
    error.response = error.response.replace(token, "***")
    return error


class WeChatApiBackend(HttpChannelBackend):
    """Access token and error mapping shared by the WeChat backends (no ``name``: not registered)."""

    @classmethod
    def accepts_app(cls, *, app: str, options: Mapping, account: str) -> bool:
        """An openid belongs to one appid: send it only through the account of that app."""
        return not app or app == options.get("app_id")

    @property
    def api_base(self) -> str:
        return self.options.get("api_base", DEFAULT_API_BASE).rstrip("/")

    @property
    def token_name(self) -> str:
        return f"wechat:{self.options['app_id']}"

    def raise_for_status(self, response: requests.Response) -> None:
        super().raise_for_status(response)  # a gateway's 5xx before WeChat's JSON
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise TransientChannelError("WeChat answered with something that is not a JSON object",
                                        code="bad_response", status=response.status_code, response=response.text)
        try:
            errcode = int(body.get("errcode") or 0)
        except (TypeError, ValueError):
            errcode = -1
        if errcode:
            token_request = urlsplit(response.request.url).path.endswith(STABLE_TOKEN_PATH)
            raise wechat_error(errcode, str(body.get("errmsg", "")), token_request=token_request,
                               response=response.text)

    def fetch_token(self) -> tuple[str, float]:
        response = self.post(f"{self.api_base}{STABLE_TOKEN_PATH}", headers=JSON_HEADERS, data=json_body({
            "grant_type": "client_credential",
            "appid": self.options["app_id"],
            "secret": self.options["app_secret"],
        }))
        body = response.json()
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if not token or not isinstance(lifetime, int | float):
            raise TransientChannelError("WeChat's token answer has no access_token or expires_in",
                                        code="bad_response", status=response.status_code, response=response.text)
        return token, float(lifetime)

    def call(self, path: str, payload: dict) -> dict:
        """POST ``payload`` to an API taking the access token; retry once if the token is refused."""
        body = json_body(payload)
        for attempt in (1, 2):
            token = access_token(self.token_name, self.fetch_token, margin=TOKEN_MARGIN_SECONDS)
            try:
                return self.post(f"{self.api_base}{path}", params={"access_token": token}, data=body,
                                 headers=JSON_HEADERS).json()
            except AccessTokenRejected:
                access_token_invalidate(self.token_name, token)  # only if no newer one is cached
                if attempt == 2:
                    raise
            except ChannelError as exc:
                raise _without_token(exc, token) from None
        raise AssertionError("unreachable")
