"""Peers for the push backends, written from the providers' documentation, not from the
product code: Google's OAuth token endpoint and the FCM v1 API (pytest-httpserver handlers),
an HTTP/2 APNs server (hypercorn serving a small ASGI app over h2c), and a Web Push service
that verifies VAPID and decrypts the payload with the browser's keys."""
import asyncio
import base64
import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug import Request, Response

from tests.conftest import free_port

GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def pem(private_key) -> str:
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()


# --- FCM --------------------------------------------------------------------------------------
@dataclass
class ServiceAccount:
    """A service-account key like the one the Firebase console downloads."""

    token_uri: str
    project_id: str = "notifyhub-test"
    client_email: str = "firebase-adminsdk-abcde@notifyhub-test.iam.gserviceaccount.com"
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(public_exponent=65537,
                                                                                    key_size=2048))
    key_id: str = field(default_factory=lambda: os.urandom(20).hex())

    def info(self) -> dict:
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.key_id,
            "private_key": pem(self.key),
            "client_email": self.client_email,
            "client_id": "104170000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/x",
            "universe_domain": "googleapis.com",
        }

    def json(self) -> str:
        return json.dumps(self.info(), indent=2)


def google_error(code: int, status: str, message: str, fcm_code: str = "", details: list | None = None) -> dict:
    """A ``google.rpc.Status`` error body as FCM v1 sends it."""
    error = {"code": code, "message": message, "status": status}
    details = list(details or [])
    if fcm_code:
        details.append({"@type": FCM_ERROR, "errorCode": fcm_code})
    if details:
        error["details"] = details
    return {"error": error}


class GooglePeer:
    """Google's OAuth 2.0 token endpoint (JWT-bearer grant, RFC 7523) and the FCM v1 send
    endpoint, sharing one set of valid access tokens."""

    def __init__(self, account: ServiceAccount):
        self.account = account
        self.project_id = account.project_id
        self.lock = threading.Lock()
        self.token_calls = 0
        self.valid_tokens: set[str] = set()
        self.sends: list[dict] = []  # {"authorization", "body", "headers"}
        self.refused: list[str] = []  # Authorization headers answered 401
        self.refuse_every_token = False
        self.replies: dict[str, tuple[int, dict, dict]] = {}  # registration token -> (status, body, headers)
        self.problems: list[str] = []

    # token endpoint -------------------------------------------------------------------------
    def token_endpoint(self, request: Request) -> Response:
        form = parse_qs(request.get_data(as_text=True))
        if request.method != "POST" or request.mimetype != "application/x-www-form-urlencoded":
            return self._oauth_error("invalid_request", "POST form expected")
        if form.get("grant_type") != [JWT_BEARER]:
            return self._oauth_error("unsupported_grant_type", f"grant_type {form.get('grant_type')}")
        assertion = (form.get("assertion") or [""])[0]
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, self.account.key.public_key(), algorithms=["RS256"],
                                audience=GOOGLE_TOKEN_AUDIENCE, options={"require": ["iat", "exp", "iss", "aud"]})
        except jwt.PyJWTError as exc:
            return self._oauth_error("invalid_grant", f"Invalid JWT Signature. ({exc})")
        if header.get("alg") != "RS256" or header.get("kid") != self.account.key_id:
            return self._oauth_error("invalid_grant", f"Invalid JWT header {header}")
        if claims["iss"] != self.account.client_email or claims.get("scope") != FCM_SCOPE:
            return self._oauth_error("invalid_grant", f"Invalid iss or scope {claims}")
        if not 0 < claims["exp"] - claims["iat"] <= 3600:
            return self._oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token")
        with self.lock:
            self.token_calls += 1
            token = f"ya29.c.test-{self.token_calls}-{uuid.uuid4().hex}"
            self.valid_tokens.add(token)
        return Response(json.dumps({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
                        content_type="application/json; charset=utf-8")

    @staticmethod
    def _oauth_error(error: str, description: str) -> Response:
        return Response(json.dumps({"error": error, "error_description": description}), status=400,
                        content_type="application/json; charset=utf-8")

    def revoke_all(self) -> None:
        with self.lock:
            self.valid_tokens.clear()

    # FCM ----------------------------------------------------------------------------------
    def send_path(self) -> str:
        return f"/v1/projects/{self.project_id}/messages:send"

    def fcm_send(self, request: Request) -> Response:
        authorization = request.headers.get("Authorization", "")
        with self.lock:
            valid = authorization.startswith("Bearer ") and authorization.removeprefix("Bearer ") in self.valid_tokens
            if not valid or self.refuse_every_token:
                self.refused.append(authorization)
        if not valid or self.refuse_every_token:
            return self._json(401, google_error(
                401, "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project."))
        if request.method != "POST" or request.path != self.send_path():
            return self._json(404, google_error(404, "NOT_FOUND", "Requested entity was not found."))
        problem = ""
        try:
            body = json.loads(request.get_data())
        except ValueError:
            body, problem = {}, "body is not JSON"
        if request.mimetype != "application/json":
            problem = f"Content-Type {request.mimetype}"
        message = body.get("message") if isinstance(body, dict) else None
        if not problem and (not isinstance(message, dict) or set(body) != {"message"}):
            problem = "Invalid JSON payload received. Unknown name at top level"
        if not problem:
            problem = fcm_message_problem(message)
        if problem:
            with self.lock:
                self.problems.append(problem)
            return self._json(400, google_error(400, "INVALID_ARGUMENT", problem, details=[{
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": "message", "description": problem}]}]))
        with self.lock:
            self.sends.append({"authorization": authorization, "body": body, "headers": dict(request.headers)})
            number = len(self.sends)
        reply = self.replies.get(message["token"])
        if reply:
            status, error, headers = reply
            return self._json(status, error, headers)
        return self._json(200, {"name": f"projects/{self.project_id}/messages/0:{1700000000000000 + number}"
                                        f"%31bd1c9631bd1c96"})

    @staticmethod
    def _json(status: int, body: dict, headers: dict | None = None) -> Response:
        return Response(json.dumps(body), status=status, headers=headers or {},
                        content_type="application/json; charset=UTF-8")


def fcm_message_problem(message: dict) -> str:
    """What the FCM v1 ``Message`` resource would refuse (only the fields we use)."""
    targets = [k for k in ("token", "topic", "condition") if k in message]
    if targets != ["token"] or not isinstance(message["token"], str):
        return "Exactly one of token, topic or condition must be given"
    known = {"name", "data", "notification", "android", "webpush", "apns", "fcm_options", "token"}
    if set(message) - known:
        return f"Invalid JSON payload received. Unknown name {sorted(set(message) - known)}"
    data = message.get("data", {})
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        return "Invalid value at 'message.data' (TYPE_STRING)"
    if any(k in ("from", "notification", "message_type") or k.startswith(("google", "gcm")) for k in data):
        return "Invalid data key: reserved word"
    notification = message.get("notification", {})
    if set(notification) - {"title", "body", "image"}:
        return f"Unknown name in notification {sorted(notification)}"
    android = message.get("android", {})
    if set(android) - {"collapse_key", "priority", "ttl", "restricted_package_name", "data", "notification",
                       "fcm_options", "direct_boot_ok"}:
        return f"Unknown name in android {sorted(android)}"
    count = android.get("notification", {}).get("notification_count")
    if count is not None and not isinstance(count, int):
        return "Invalid value at 'message.android.notification.notification_count' (TYPE_INT32)"
    apns = message.get("apns", {})
    if set(apns) - {"headers", "payload", "fcm_options", "live_activity_token"}:
        return f"Unknown name in apns {sorted(apns)}"
    if not all(isinstance(v, str) for v in apns.get("headers", {}).values()):
        return "Invalid value at 'message.apns.headers' (TYPE_STRING)"
    link = message.get("webpush", {}).get("fcm_options", {}).get("link")
    if link is not None and not link.startswith("https://"):
        return "The link must use HTTPS"
    return ""


FCM_SENDER_SCRIPT = """
import json, os, sys, uuid
import django
django.setup()
from channels_app.backends.fcm import FcmBackend
from channels_app.message import OutboundMessage
options = FcmBackend.validate_options(json.loads(os.environ["FCM_TEST_OPTIONS"]))
results = []
with FcmBackend(options=options, account="fcm-test") as backend:
    for i in range(int(sys.argv[1])):
        message = OutboundMessage(delivery_id=str(uuid.uuid4()), kind="push", address=sys.argv[2],
                                  content={"title": f"Hello {os.getpid()}", "body": f"message {i}"})
        results.append(backend.send(message).provider_message_id)
print(json.dumps({"pid": os.getpid(), "ids": results}))
"""


# --- APNs -------------------------------------------------------------------------------------
@dataclass
class ApnsAccount:
    team_id: str = "TEAM123456"
    key_id: str = "KEY7654321"
    bundle_id: str = "com.example.notifyhub"
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def p8(self) -> str:
        return pem(self.key)


@dataclass
class H2Request:
    http_version: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client: tuple
    claims: dict = field(default_factory=dict)
    jwt_header: dict = field(default_factory=dict)

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


UUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


class ApnsPeer:
    """An APNs provider API over HTTP/2 (h2c, prior knowledge) on loopback.

    Checks what Apple documents and answers as Apple does: ``200`` with ``apns-id``, or an
    error status with ``{"reason": ...}`` (``410`` adds ``timestamp``). ``replies`` maps a
    device token to ``(status, reason)``; ``stale_tokens`` are JWTs answered
    ``403 ExpiredProviderToken`` (as APNs does for a token older than an hour).
    """

    def __init__(self, account: ApnsAccount, delay: float = 0.0, tls: tuple[str, str] | None = None):
        self.account = account
        self.delay = delay
        self.tls = tls  # (certfile, keyfile): h2 over TLS (ALPN) instead of h2c
        self.requests: list[H2Request] = []
        self.replies: dict[str, tuple[int, str]] = {}
        self.stale_tokens: set[str] = set()
        self.expire_every_token = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.port = free_port()
        self._thread = threading.Thread(target=self._run, name="apns-peer", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._thread.start()
        _wait_for_port(self.port)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.accesslog = None
        config.errorlog = None
        config.graceful_timeout = 1
        if self.tls:
            config.certfile, config.keyfile = self.tls
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._shutdown = asyncio.Event()
        self._loop.run_until_complete(serve(self.app, config, shutdown_trigger=self._shutdown.wait, mode="asgi"))
        self._loop.close()

    def stop(self) -> None:
        if self._loop and self._shutdown:
            self._loop.call_soon_threadsafe(self._shutdown.set)
        self._thread.join(10)

    async def app(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        request = H2Request(
            http_version=scope["http_version"], method=scope["method"], path=scope["path"],
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]}, body=body,
            client=tuple(scope["client"] or ()),
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            status, headers, reply = self.answer(request)
        finally:
            self.in_flight -= 1
        self.requests.append(request)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": reply})

    def answer(self, request: H2Request) -> tuple[int, dict, bytes]:
        """Apple's checks, in the order its documentation lists the failures."""
        apns_id = request.headers.get("apns-id") or str(uuid.uuid4()).upper()

        def fail(status: int, reason: str, **extra):
            return status, {"apns-id": apns_id, "content-type": "application/json"}, \
                json.dumps({"reason": reason, **extra}).encode()

        if request.http_version != "2":
            return fail(400, f"HTTP/{request.http_version} is not HTTP/2")
        if request.method != "POST":
            return fail(405, "MethodNotAllowed")
        match = re.fullmatch(r"/3/device/([0-9a-f]+)", request.path)
        if not match:
            return fail(404, "BadPath")
        device_token = match.group(1)
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("bearer "):
            return fail(403, "MissingProviderToken")
        token = authorization.removeprefix("bearer ")
        try:
            request.jwt_header = jwt.get_unverified_header(token)
            request.claims = jwt.decode(token, self.account.key.public_key(), algorithms=["ES256"],
                                        options={"require": ["iss", "iat"]})
        except jwt.PyJWTError:
            return fail(403, "InvalidProviderToken")
        if request.jwt_header.get("alg") != "ES256" or request.jwt_header.get("kid") != self.account.key_id:
            return fail(403, "InvalidProviderToken")
        if request.claims["iss"] != self.account.team_id:
            return fail(403, "InvalidProviderToken")
        if self.expire_every_token or token in self.stale_tokens or time.time() - request.claims["iat"] > 3600:
            return fail(403, "ExpiredProviderToken")
        if request.headers.get("apns-topic") != self.account.bundle_id:
            return fail(400, "BadTopic" if request.headers.get("apns-topic") else "MissingTopic")
        push_type = request.headers.get("apns-push-type")
        if push_type not in ("alert", "background"):
            return fail(400, "InvalidPushType")
        priority = request.headers.get("apns-priority", "10")
        if priority not in ("5", "10") or (push_type == "background" and priority != "5"):
            return fail(400, "BadPriority")
        if not UUID_RE.match(apns_id):
            return fail(400, "BadMessageId")
        if len(request.headers.get("apns-collapse-id", "").encode()) > 64:
            return fail(400, "BadCollapseId")
        if "apns-expiration" in request.headers and not request.headers["apns-expiration"].isdigit():
            return fail(400, "BadExpirationDate")
        if not request.body:
            return fail(400, "PayloadEmpty")
        if len(request.body) > 4096:
            return fail(413, "PayloadTooLarge")
        try:
            aps = json.loads(request.body)["aps"]
        except (ValueError, KeyError, TypeError):
            return fail(400, "BadPayload")
        if push_type == "background" and (set(aps) & {"alert", "sound", "badge"} or aps.get("content-available") != 1):
            return fail(400, "InvalidPushType")
        reply = self.replies.get(device_token)
        if reply:
            status, reason = reply
            if status == 410:
                return fail(410, reason, timestamp=int(time.time() * 1000))
            return fail(status, reason)
        return 200, {"apns-id": apns_id}, b""


def _wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


# --- Web Push ---------------------------------------------------------------------------------
@dataclass
class Browser:
    """What a browser keeps for one push subscription: its ECDH key pair and auth secret."""

    endpoint: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    def subscription(self) -> dict:
        public = self.key.public_key().public_bytes(serialization.Encoding.X962,
                                                    serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth_secret)}}

    def address(self) -> str:
        return json.dumps(self.subscription())


def vapid_key_pair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    """A VAPID key and its application server key (base64url uncompressed point)."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return key, b64url(public)


def parse_vapid_authorization(value: str) -> dict[str, str]:
    """RFC 8292 section 3: ``vapid t=<JWT>, k=<key>`` (parameters comma separated)."""
    scheme, _, params = value.partition(" ")
    if scheme.lower() != "vapid":
        return {}
    parts = {}
    for param in params.split(","):
        name, _, val = param.strip().partition("=")
        parts[name] = val
    return parts


class PushService:
    """A Web Push service endpoint (RFC 8030) that checks VAPID (RFC 8292) and decrypts the
    message (RFC 8291) with the browser's private key, as the browser would."""

    def __init__(self, application_server_key: str, subject: str):
        self.application_server_key = application_server_key
        self.subject = subject
        self.received: list[dict] = []  # {"headers", "payload", "claims"}
        self.lock = threading.Lock()
        self.browsers: dict[str, Browser] = {}

    def register(self, browser: Browser) -> Browser:
        self.browsers[urlsplit(browser.endpoint).path] = browser
        return browser

    def handle(self, request: Request) -> Response:
        browser = self.browsers.get(request.path)
        if browser is None or request.method != "POST":
            return Response("Not found", status=404)
        auth = parse_vapid_authorization(request.headers.get("Authorization", ""))
        if auth.get("k") != self.application_server_key:
            return Response("VAPID k missing or not the subscription's key", status=403)
        origin = f"{urlsplit(browser.endpoint).scheme}://{urlsplit(browser.endpoint).netloc}"
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(auth["k"]))
        try:
            claims = jwt.decode(auth.get("t", ""), public, algorithms=["ES256"], audience=origin,
                                options={"require": ["aud", "exp", "sub"]})
        except jwt.PyJWTError as exc:
            return Response(f"Unauthorized: {exc}", status=401)
        if claims["exp"] > time.time() + 24 * 3600 or claims["sub"] != self.subject:
            return Response("Unauthorized: exp more than 24 hours ahead or wrong sub", status=401)
        ttl = request.headers.get("TTL", "")
        if not ttl.isdigit():
            return Response("Missing TTL", status=400)
        if request.headers.get("Content-Encoding") != "aes128gcm":
            return Response("Unsupported Content-Encoding", status=415)
        urgency = request.headers.get("Urgency", "normal")
        if urgency not in ("very-low", "low", "normal", "high"):
            return Response("Bad Urgency", status=400)
        body = request.get_data()
        if len(body) > 4096:
            return Response("Payload Too Large", status=413)
        try:
            plaintext = http_ece.decrypt(body, private_key=browser.key, auth_secret=browser.auth_secret,
                                         version="aes128gcm")
        except Exception as exc:
            return Response(f"Cannot decrypt: {exc!r}", status=400)
        with self.lock:
            self.received.append({"headers": dict(request.headers), "payload": json.loads(plaintext),
                                  "claims": claims})
        location = f"{origin}/m/{uuid.uuid4().hex}"
        return Response(status=201, headers={"Location": location})
