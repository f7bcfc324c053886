"""A fake ``api.weixin.qq.com`` for the WeChat backends, written from WeChat's documentation.

It serves getStableAccessToken (``POST /cgi-bin/stable_token``), sendTemplateMessage
(``POST /cgi-bin/message/template/send``) and subscribeMessage.send
(``POST /cgi-bin/message/subscribe/send``) on a pytest-httpserver, checks method, query and the
exact JSON body of each, and answers with WeChat's own bodies: HTTP 200 and an ``errcode``.
Wire-format mistakes are answered as WeChat would (41001, 47001...) and listed in ``problems``.
"""
import json
import secrets
import threading
import time

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

TOKEN_PATH = "/cgi-bin/stable_token"
TEMPLATE_PATH = "/cgi-bin/message/template/send"
SUBSCRIBE_PATH = "/cgi-bin/message/subscribe/send"

#: Real errmsg texts as WeChat sends them (a request id " rid: ..." is appended).
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest, could get access_token by "
           "getStableAccessToken, more details at https://mmbizurl.cn/s/JtxxFh33r",
    40003: "invalid openid",
    40013: "invalid appid",
    40014: "invalid access_token",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40164: "invalid ip 203.0.113.7 ipv6 ::ffff:203.0.113.7, not in whitelist",
    41001: "access_token missing",
    42001: "access_token expired",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit mustslower retry next minute",
    45047: "out of response count limit",
    47001: "data format error",
    47003: "argument invalid! data.thing1.value is empty",
    48001: "api unauthorized",
}

TEMPLATE_REQUIRED = {"touser", "template_id", "data"}
TEMPLATE_OPTIONAL = {"url", "miniprogram", "client_msg_id"}
SUBSCRIBE_REQUIRED = {"touser", "template_id", "data"}
SUBSCRIBE_OPTIONAL = {"page", "miniprogram_state", "lang"}


def rid() -> str:
    return f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"


def wechat_answer(errcode: int, errmsg: str | None = None, **extra) -> Response:
    body = {"errcode": errcode, "errmsg": errmsg if errmsg is not None else f"{ERRMSG[errcode]} rid: {rid()}"}
    body.update(extra)
    return Response(json.dumps(body), status=200, content_type="application/json; encoding=utf-8")


class WeChatPeer:
    """The fake server's state: issued tokens, accepted messages and scripted errors.

    ``replies`` maps an openid to the errcode the send APIs answer for it; ``token_reply`` makes
    the token endpoint answer an errcode; ``expire_token()`` makes the current token be refused and
    the next token request get a new one; until then the token endpoint hands out the same valid
    token again, as the stable token endpoint does in its normal mode.
    """

    def __init__(self, server: HTTPServer, app_id: str, app_secret: str, *, token_delay: float = 0.0):
        self.app_id, self.app_secret = app_id, app_secret
        self.token_delay = token_delay
        self.lock = threading.Lock()
        self.token_calls = 0
        self.current_token = ""
        self.valid_tokens: set[str] = set()
        self.revoked_tokens: dict[str, int] = {}  # token -> the errcode it is now refused with
        self.reject_every_token_with: int | None = None
        self.token_reply: int | None = None
        self.replies: dict[str, int] = {}
        self.sent: list[dict] = []  # accepted sends: {"path", "token", "body", "raw"}
        self.attempts: list[dict] = []  # every send request that reached a send API
        self.problems: list[str] = []
        self.msgid = 200228331
        server.expect_request(TOKEN_PATH, method="POST").respond_with_handler(self._token)
        server.expect_request(TEMPLATE_PATH, method="POST").respond_with_handler(self._template_send)
        server.expect_request(SUBSCRIBE_PATH, method="POST").respond_with_handler(self._subscribe_send)

    def expire_token(self, errcode: int = 42001) -> None:
        """Refuse the current token from now on with ``errcode`` (42001 expired, 40001 not latest,
        40014 invalid); the next token request gets a new one."""
        with self.lock:
            self.valid_tokens.discard(self.current_token)
            self.revoked_tokens[self.current_token] = errcode
            self.current_token = ""

    def tokens_used(self) -> list[str]:
        return [s["token"] for s in self.sent]

    # --- handlers --------------------------------------------------------------------------
    def _problem(self, text: str, errcode: int = 47001) -> Response:
        with self.lock:
            self.problems.append(text)
        return wechat_answer(errcode)

    def _json_body(self, request: Request):
        if not request.content_type or not request.content_type.startswith("application/json"):
            return None
        try:
            body = json.loads(request.get_data().decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    def _token(self, request: Request) -> Response:
        with self.lock:
            self.token_calls += 1
        if request.args:
            return self._problem(f"token request with a query string: {dict(request.args)}")
        body = self._json_body(request)
        if body is None:
            return self._problem("token request body is not a JSON object")
        if set(body) - {"force_refresh"} != {"grant_type", "appid", "secret"} or body.get("force_refresh"):
            return self._problem(f"token request fields {sorted(body)}")
        if body["grant_type"] != "client_credential":
            return wechat_answer(40002, f"invalid grant_type rid: {rid()}")
        time.sleep(self.token_delay)  # a slow token endpoint widens any race between fetchers
        if self.token_reply is not None:
            return wechat_answer(self.token_reply)
        if body["appid"] != self.app_id:
            return wechat_answer(40013)
        if body["secret"] != self.app_secret:
            return wechat_answer(40125)
        with self.lock:
            if not self.current_token:  # normal mode: the valid token is handed out again
                self.current_token = f"{self.token_calls}_{secrets.token_urlsafe(40)}"
                self.valid_tokens.add(self.current_token)
            token = self.current_token
        return Response(json.dumps({"access_token": token, "expires_in": 7200}), status=200,
                        content_type="application/json; encoding=utf-8")

    def _send(self, request: Request, required: set, optional: set, check) -> Response | dict:
        """Check the token and the body (``check(body)`` names what else is wrong, or "");
        return the accepted body, or WeChat's error answer."""
        if set(request.args) != {"access_token"}:
            return self._problem(f"query {dict(request.args)} is not just access_token", 41001)
        token = request.args["access_token"]
        body = self._json_body(request)
        with self.lock:
            self.attempts.append({"path": request.path, "token": token, "body": body, "raw": request.get_data()})
        if self.reject_every_token_with is not None:
            return wechat_answer(self.reject_every_token_with)
        if token in self.revoked_tokens:
            return wechat_answer(self.revoked_tokens[token])
        if token not in self.valid_tokens:
            return wechat_answer(40001)
        if body is None:
            return self._problem("body is not a JSON object")
        if not required <= set(body) <= required | optional:
            return self._problem(f"body fields {sorted(body)}")
        data = body["data"]
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) and set(v) == {"value"} and isinstance(v["value"], str) for v in data.values()):
            return self._problem(f"data {data!r} is not {{field: {{value: str}}}}", 47003)
        if not isinstance(body["touser"], str) or not body["touser"] or not body["template_id"]:
            return self._problem("empty touser or template_id", 40003)
        problem = check(body)
        if problem:
            return self._problem(problem, 47003)
        errcode = self.replies.get(body["touser"])
        if errcode:
            return wechat_answer(errcode)
        with self.lock:
            self.sent.append({"path": request.path, "token": token, "body": body, "raw": request.get_data()})
        return body

    def _template_send(self, request: Request) -> Response:
        def check(body):
            miniprogram = body.get("miniprogram")
            if miniprogram is not None and (not isinstance(miniprogram, dict) or "appid" not in miniprogram
                                            or not set(miniprogram) <= {"appid", "pagepath"}):
                return f"miniprogram {miniprogram!r}"
            if "client_msg_id" in body and not isinstance(body["client_msg_id"], str):
                return "client_msg_id is not a string"
            return ""

        checked = self._send(request, TEMPLATE_REQUIRED, TEMPLATE_OPTIONAL, check)
        if isinstance(checked, Response):
            return checked
        with self.lock:
            self.msgid += 1
            msgid = self.msgid
        return wechat_answer(0, "ok", msgid=msgid)

    def _subscribe_send(self, request: Request) -> Response:
        def check(body):
            if body.get("miniprogram_state", "formal") not in ("developer", "trial", "formal"):
                return f"miniprogram_state {body['miniprogram_state']!r}"
            if body.get("lang", "zh_CN") not in ("zh_CN", "en_US", "zh_HK", "zh_TW"):
                return f"lang {body['lang']!r}"
            return ""

        checked = self._send(request, SUBSCRIBE_REQUIRED, SUBSCRIBE_OPTIONAL, check)
        if isinstance(checked, Response):
            return checked
        return wechat_answer(0, "ok")
