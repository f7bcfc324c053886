"""Apprise backend against local peers for Apprise's generic ``json://`` and self-hosted ``ntfy://``.

The peers check what Apprise documents those schemes send — json://: a POST with
``Content-Type: application/json`` and ``{"version": "1.0", "title", "message", "attachments": [],
"type": "info"}``; ntfy:// (private server): a POST to the server root with ``{"topic", "title",
"message"}`` — and answer 200 or 500 so the mapping of Apprise's result is seen end to end.
Also verified: URL validation naming ``urls`` without echoing them, the outbound URL policy at
save and send time.
"""
import json
import uuid

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Request, Response

from channels_app.backends.apprise_chat import AppriseBackend
from channels_app.errors import PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult

JSON_FIELDS = {"version", "title", "message", "attachments", "type"}


class JsonReceiver:
    """An endpoint for Apprise's json:// scheme; paths containing "down" answer 500."""

    def __init__(self):
        self.received: list[tuple[str, dict]] = []

    def __call__(self, request: Request) -> Response:
        if request.method != "POST" or request.mimetype != "application/json":
            return Response("expected a JSON POST", status=400)
        if request.headers.get("User-Agent") != "Apprise":
            return Response("expected Apprise's User-Agent", status=400)
        body = json.loads(request.get_data())
        if set(body) != JSON_FIELDS or body["version"] != "1.0" or body["type"] != "info" or body["attachments"]:
            return Response(f"unexpected JSON fields {sorted(body)}", status=400)
        if "down" in request.path:
            return Response("database unavailable", status=500)
        self.received.append((request.path, body))
        return Response(status=200)


class NtfyServer:
    """A self-hosted ntfy server as Apprise publishes to it: JSON to the root URL."""

    def __init__(self):
        self.received: list[dict] = []

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.get_data())
        if request.method != "POST" or request.path != "/" or not body.get("topic") or "message" not in body:
            return Response('{"code":40001,"error":"invalid request"}', status=400)
        self.received.append(body)
        return Response(json.dumps({"id": "hwQ2YpKdmg", "event": "message", "topic": body["topic"]}),
                        content_type="application/json")


def backend(urls: str, **options) -> AppriseBackend:
    return AppriseBackend(options=AppriseBackend.validate_options({"urls": urls, **options}), account="family")


def message(**content) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="chat", address="family group", content=content)


@pytest.fixture
def receiver(httpserver):
    import re

    peer = JsonReceiver()
    httpserver.expect_request(re.compile(r"/hooks/.*")).respond_with_handler(peer)
    return peer


def json_url(server, path: str = "/hooks/notify") -> str:
    return f"json://127.0.0.1:{server.port}{path}"


def test_text_goes_as_apprise_json(httpserver, receiver):
    result = backend(json_url(httpserver)).send(message(title="Nightly backup", text="Backup finished"))

    assert result == SendResult(detail="sent as text to JSON")
    assert receiver.received == [("/hooks/notify", {
        "version": "1.0", "title": "Nightly backup", "message": "Backup finished", "attachments": [], "type": "info"})]


def test_markdown_is_sent_as_markdown(httpserver, receiver):
    result = backend(json_url(httpserver)).send(message(text="plain", markdown="**Backup** done: [log](https://x.test)"))

    assert result.detail == "sent as markdown to JSON"
    assert receiver.received[0][1]["message"] == "**Backup** done: [log](https://x.test)"


def test_card_is_sent_as_markdown_with_links(httpserver, receiver):
    backend(json_url(httpserver)).send(message(card={
        "text": "Expense #42", "buttons": [{"title": "Review", "url": "https://erp.example.com/42"}]}))

    assert receiver.received[0][1]["message"] == "Expense #42\n\n[Review](https://erp.example.com/42)"


def test_every_url_of_the_account_is_notified(httpserver, receiver):
    ntfy = NtfyServer()
    httpserver.expect_request("/").respond_with_handler(ntfy)
    urls = f"{json_url(httpserver)}\nntfy://127.0.0.1:{httpserver.port}/alerts"

    result = backend(urls).send(message(title="Door", text="Front door opened"))

    assert result.detail == "sent as text to JSON, ntfy"
    assert [body["message"] for _, body in receiver.received] == ["Front door opened"]
    assert ntfy.received == [{"topic": "alerts", "title": "Door", "message": "Front door opened"}]


def test_mentions_are_reported_as_not_made(httpserver, receiver):
    result = backend(json_url(httpserver)).send(message(text="hi", mentions={"user_ids": ["U1"], "all": True}))

    assert result.detail == "sent as text to JSON; not mentioned: user_ids, everyone (Apprise cannot mention them)"


def test_failure_is_transient_and_says_what_apprise_logged(httpserver, receiver):
    with pytest.raises(TransientChannelError) as info:
        backend(json_url(httpserver, "/hooks/down")).send(message(text="hi"))

    assert info.value.code == "apprise_failed"
    assert "JSON json://127.0.0.1" in str(info.value)
    assert "500" in str(info.value)
    assert receiver.received == []


def test_partial_failure_is_transient_and_names_both_sides(httpserver, receiver):
    urls = f"{json_url(httpserver, '/hooks/ok')} {json_url(httpserver, '/hooks/down')}"

    with pytest.raises(TransientChannelError) as info:
        backend(urls).send(message(text="hi"))

    assert "/hooks/down" in str(info.value)
    assert "(delivered to JSON)" in str(info.value)
    assert [path for path, _ in receiver.received] == ["/hooks/ok"]


def test_connection_refused_is_transient():
    from tests.conftest import free_port

    with pytest.raises(TransientChannelError):
        backend(f"json://127.0.0.1:{free_port()}/hooks/x").send(message(text="hi"))


def test_slack_blocks_alone_cannot_be_sent(httpserver, receiver):
    with pytest.raises(PermanentChannelError) as info:
        backend(json_url(httpserver)).send(message(blocks=[{"type": "divider"}]))

    assert info.value.code == "no_content"
    assert httpserver.log == []


def test_send_rechecks_the_outbound_policy(httpserver, receiver):
    b = backend(json_url(httpserver))  # saved while 127.0.0.1 was allowed

    with override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[]), pytest.raises(PermanentChannelError) as info:
        b.send(message(text="hi"))

    assert info.value.code == "blocked_url"
    assert httpserver.log == []


# --- options -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("urls", "says"), [
    (None, "required"),
    ("   ", "blank"),
    ("bogus://secret-token-123", "URL 1 (bogus://…) is not a valid Apprise URL"),
    ("json://127.0.0.1/x tgram://", "URL 2 (tgram://…) is not a valid Apprise URL"),
    ("secret-token-123", "URL 1 (scheme://…) is not a valid Apprise URL"),
])
def test_bad_urls_are_named_without_echoing_them(urls, says):
    data = {} if urls is None else {"urls": urls}

    with pytest.raises(ValidationError) as info:
        AppriseBackend.validate_options(data)

    assert set(info.value.detail) == {"urls"}
    assert says in str(info.value.detail["urls"][0])
    assert "secret-token-123" not in str(info.value.detail)


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
@pytest.mark.parametrize("url", ["json://10.0.0.7/hook", "xmls://127.0.0.1/x", "ntfy://192.168.1.2/alerts",
                                 "form://[::1]:8080/x", "gotify://169.254.169.254/token",
                                 "workflows://10.0.0.9:443/abc123/signature",
                                 "mailtos://user:pass@example.com?smtp=10.0.0.5"])
def test_self_hosted_urls_to_private_hosts_are_refused(url):
    with pytest.raises(ValidationError) as info:
        AppriseBackend.validate_options({"urls": url})

    assert set(info.value.detail) == {"urls"}
    assert "private or reserved" in str(info.value.detail["urls"][0])


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
@pytest.mark.parametrize("url", ["tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-1001234567890",
                                 "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
                                 "ntfy://my-alerts", "ntfys://ntfy.example.com/alerts"])
def test_provider_urls_pass_the_policy(url):
    assert AppriseBackend.validate_options({"urls": url})["urls"] == url


def test_good_options():
    options = AppriseBackend.validate_options({"urls": " json://127.0.0.1/hooks/a \n ntfy://alerts "})

    assert options == {"urls": "json://127.0.0.1/hooks/a \n ntfy://alerts", "timeout": 10.0}
    assert AppriseBackend.secret_fields == {"urls"}
    assert AppriseBackend.name == "apprise"
