"""JSON at the edge: unstorable text and deep nesting are a 400 naming the field, and nothing
is written — on every API operation and every callback endpoint."""
import base64
import json

import pytest
from django.test import override_settings
from django.urls import get_resolver

from notifyhub.api.parsers import JSONParser, json_depth
from notifyhub.messaging.models import Delivery, Message
from preferences.models import ContactPoint, Recipient
from tests import factories

pytestmark = pytest.mark.django_db

LONE = '"\\ud800"'  # a lone surrogate, as JSON text
NUL = '"a\\u0000b"'


def raw_post(client, url, text, method="post"):
    return getattr(client, method)(url, data=text.encode("utf-8"), content_type="application/json")


def counts():
    return Message.objects.count(), Delivery.objects.count(), Recipient.objects.count(), ContactPoint.objects.count()


@pytest.fixture
def template(db):
    factories.inapp_channel()
    return factories.template()


@pytest.mark.parametrize("bad", [LONE, NUL, '"\\udfff tail"', '"x\\ud83d"'])
def test_unstorable_context_value_is_a_400_naming_the_field(api, template, bad):
    before = counts()
    text = f'{{"template": "{template.key}", "to": [{{"external_id": "new-1"}}], ' \
           f'"context": {{"name": {bad}, "code": "1"}}}}'

    response = raw_post(api, "/api/v1/messages", text)

    assert response.status_code == 400, response.content
    assert "name" in response.json()["context"]
    assert counts() == before


@pytest.mark.parametrize("where", [
    lambda bad: {"context": {"name": "x", "code": "1", "extra": {"deep": [bad]}}},
    lambda bad: {"to": [{"external_id": "new-1", "name": bad}]},
    lambda bad: {"to": [{"external_id": "new-1", "data": {bad: 1}}]},
    lambda bad: {"to": [bad]},
])
def test_unstorable_text_anywhere_in_the_body_is_refused(api, template, where):
    before = counts()
    body = {"template": template.key, "to": ["x"], "context": {"name": "x", "code": "1"}}
    body.update(where("\ud800"))
    text = json.dumps(body)  # ensure_ascii: the surrogate travels as \ud800

    response = raw_post(api, "/api/v1/messages", text)

    assert response.status_code == 400, response.content
    assert set(response.json()) <= {"context", "to"}
    assert counts() == before


@pytest.mark.parametrize("url,method", [
    ("/api/v1/messages", "post"), ("/api/v1/categories", "post"), ("/api/v1/templates", "post"),
    ("/api/v1/channels", "post"), ("/api/v1/recipients/r1", "put"), ("/api/v1/recipients/r1/preferences", "put"),
])
@pytest.mark.parametrize("depth", [33, 50_000])
def test_deep_json_is_a_400_on_every_api_operation(api, template, url, method, depth):
    factories.recipient(external_id="r1")
    before = counts()

    response = raw_post(api, url, "[" * depth + "]" * depth, method=method)

    assert response.status_code == 400, response.content
    assert "32 levels" in response.json()["detail"]
    assert counts() == before


def test_depth_at_the_limit_passes_the_parser_and_deeper_context_is_named(api, template):
    nested = "1"
    for _ in range(31):  # the body object + 31 levels = 32
        nested = f"[{nested}]"
    ok = raw_post(api, "/api/v1/messages", f'{{"template": "{template.key}", "to": [{{"external_id": "n"}}], '
                                            f'"context": {{"name": "a", "code": "b", "x": {nested[1:-1]}}}}}')
    assert ok.status_code == 202, ok.content

    with override_settings(NOTIFYHUB_MAX_JSON_DEPTH=4):
        deep = raw_post(api, "/api/v1/messages", json.dumps(
            {"template": template.key, "to": ["n"], "context": {"name": "a", "code": "b", "x": [[[[1]]]]}}))
    assert deep.status_code == 400
    assert "4 levels" in deep.json()["detail"]


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth(b'{"a": "[[[[[[", "b": ["]]]", {"c": 1}]}') == 3
    assert json_depth(b'"\\"[[["') == 0


def test_every_api_view_uses_the_checking_parser():
    views = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif (prefix + str(pattern.pattern)).startswith("api/v1/"):
                cls = getattr(pattern.callback, "cls", None)
                views.append(cls)

    walk(get_resolver().url_patterns)
    assert len(views) >= 10
    for cls in views:  # JSON goes through the checking parser; an upload view may add multipart
        assert cls is not None, cls
        json_parsers = [p for p in cls.parser_classes if p.media_type == "application/json"]
        assert json_parsers == [JSONParser], cls
        assert {p.media_type for p in cls.parser_classes} <= {"application/json", "multipart/form-data"}, cls


# --- callbacks ----------------------------------------------------------------------------------
ALIYUN_TOKEN = "tok-0123456789abcdef0123456789"


@pytest.fixture
def aliyun(db):
    return factories.channel(name="aliyun-main", kind="sms", backend="aliyun", options={
        "access_key_id": "LTAI5tTestKey0001", "sign_name": "notifyhub"},
        secrets={"access_key_secret": "SecretSecret0001", "callback_token": ALIYUN_TOKEN})


@pytest.mark.parametrize("body", [b"[" * 50_000, b"[" * 33 + b"]" * 33, b'[{"biz_id": "\\ud800"}]',
                                  b'[{"biz_id": "a\\u0000"}]'])
def test_aliyun_callback_with_a_valid_token_refuses_hostile_json(client, aliyun, body):
    response = client.post(f"/hooks/channels/aliyun-main/?token={ALIYUN_TOKEN}", data=body,
                           content_type="application/json")

    assert response.status_code == 400
    assert "body" in response.json()


def test_aliyun_callback_still_takes_a_real_report(client, aliyun):
    report = [{"biz_id": "1^0", "success": True, "report_time": "2024-05-01 10:00:08", "err_code": "DELIVERED"}]
    response = client.post(f"/hooks/channels/aliyun-main/?token={ALIYUN_TOKEN}", data=json.dumps(report),
                           content_type="application/json")
    assert response.status_code == 200


@override_settings(ANYMAIL={"WEBHOOK_SECRET": "hook:s3cret", "MAILGUN_WEBHOOK_SIGNING_KEY": "k"})
def test_anymail_webhook_refuses_deep_json(client):
    response = client.post("/hooks/anymail/mailgun/tracking/", data=b"[" * 50_000, content_type="application/json",
                           HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"hook:s3cret").decode())
    assert response.status_code == 400


def test_a_key_with_a_surrogate_and_other_non_ascii_text_is_named_readably(api, template):
    context = '{"name": "a", "code": "b", "caf\\u00e9\\ud800": 1}'
    text = f'{{"template": "{template.key}", "to": ["x"], "context": {context}}}'
    response = raw_post(api, "/api/v1/messages", text)
    assert response.status_code == 400
    assert "café\\ud800" in response.json()["context"]
