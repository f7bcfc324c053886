"""Unknown fields are refused, not dropped: in every request body (nested objects too), in a
channel account's options (with a "did you mean"), and an anymail account must carry the
credentials its ESP requires — in the API and in the admin form."""
import json

import pytest

from channels_app.forms import ChannelConfigForm
from channels_app.models import ChannelConfig
from notifyhub.messaging.models import Message
from preferences.models import Recipient
from tests import factories

pytestmark = pytest.mark.django_db


def call(client, method, url, body):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def world(db):
    factories.inapp_channel(name="inbox")
    template = factories.template(key="welcome")
    factories.recipient(external_id="known")
    return template


def operations(template_key="welcome"):
    send = {"template": template_key, "to": ["known"], "context": {"name": "a", "code": "b"}}
    template = {"key": "t2", "name": "T", "category": "orders", "content": {"inapp": {"title": "x"}}}
    return [
        ("post", "/api/v1/messages", send),
        ("put", "/api/v1/recipients/known", {"name": "K"}),
        ("post", "/api/v1/recipients/known/contact-points", {"kind": "inapp", "address": "dev-1"}),
        ("put", "/api/v1/recipients/known/preferences", {"preferences": []}),
        ("post", "/api/v1/categories", {"key": "c2", "name": "C"}),
        ("put", "/api/v1/categories/orders", {"key": "orders", "name": "C"}),
        ("patch", "/api/v1/categories/orders", {"name": "C"}),
        ("post", "/api/v1/templates", template),
        ("put", "/api/v1/templates/welcome", {**template, "key": "welcome"}),
        ("patch", "/api/v1/templates/welcome", {"name": "W"}),
        ("post", "/api/v1/channels", {"name": "in2", "kind": "inapp", "backend": "inapp"}),
        ("put", "/api/v1/channels/inbox", {"name": "inbox", "kind": "inapp", "backend": "inapp"}),
        ("patch", "/api/v1/channels/inbox", {"priority": 5}),
    ]


@pytest.mark.parametrize("method,url,body", operations(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_operation_refuses_an_unknown_top_level_field(api, world, method, url, body):
    factories.category(key="orders")
    good = call(api, method, url, body)
    assert good.status_code < 300, good.content  # the body itself is fine...

    response = call(api, method, url, {**body, "bogus_field": 1})  # ...and one extra field is not

    assert response.status_code == 400, response.content
    assert "Unknown field" in response.json()["bogus_field"][0]


def test_a_field_nested_where_it_does_not_belong_is_refused_and_nothing_is_sent(api, world):
    response = call(api, "post", "/api/v1/messages", {
        "template": "welcome", "context": {"name": "a", "code": "b"},
        "to": [{"external_id": "x", "context": {"order": "NO-1"}}]})

    assert response.status_code == 400
    assert "Unknown field" in response.json()["to"]["0"]["context"][0]
    assert not Message.objects.exists() and not Recipient.objects.filter(external_id="x").exists()


def test_a_misspelt_field_gets_a_hint(api, world):
    response = call(api, "post", "/api/v1/messages", {"template": "welcome", "to": ["known"],
                                                       "contxt": {"name": "a", "code": "b"}})
    assert response.status_code == 400
    assert "Did you mean 'context'?" in response.json()["contxt"][0]


def test_unknown_preference_item_field_is_refused(api, world):
    response = call(api, "put", "/api/v1/recipients/known/preferences",
                    {"preferences": [{"channel": "inapp", "enabled": False, "categry": None}]})
    assert response.status_code == 400
    assert "categry" in json.dumps(response.json())


def test_read_only_fields_sent_back_are_accepted(api, world):
    body = api.get("/api/v1/templates/welcome").json()
    assert call(api, "put", "/api/v1/templates/welcome", body).status_code == 200


# --- channel account options --------------------------------------------------------------------
SMTP = {"name": "smtp-x", "kind": "email", "backend": "smtp",
        "options": {"host": "127.0.0.1", "port": 2525, "from_email": "hub@example.com"}}


def test_unknown_option_key_is_refused_with_a_hint(api, db):
    body = {**SMTP, "options": {**SMTP["options"], "use_tls": False, "secuirty": "none"}}

    response = call(api, "post", "/api/v1/channels", body)

    assert response.status_code == 400
    options = response.json()["options"]
    assert "Did you mean 'security'?" in options["secuirty"][0]
    assert "use_tls" in options
    assert not ChannelConfig.objects.exists()


def test_unknown_option_key_is_refused_on_update(api, db):
    assert call(api, "post", "/api/v1/channels", SMTP).status_code == 201
    response = call(api, "patch", "/api/v1/channels/smtp-x", {"options": {**SMTP["options"], "prot": 25}})
    assert response.status_code == 400 and "Did you mean 'port'?" in response.json()["options"]["prot"][0]


@pytest.mark.parametrize("esp,credentials,missing", [
    ("postmark", {}, "server_token"),
    ("mailgun", {}, "api_key"),
    ("sendgrid", {}, "api_key"),
    ("mailjet", {"api_key": "k"}, "secret_key"),
    ("mailersend", {}, "api_token"),
    ("resend", {}, "api_key"),
])
def test_anymail_account_without_its_required_credentials_is_refused(api, db, esp, credentials, missing):
    body = {"name": f"{esp}-1", "kind": "email", "backend": f"anymail.{esp}",
            "options": {"from_email": "hub@example.com"}, "secrets": {"esp_credentials": credentials}}

    response = call(api, "post", "/api/v1/channels", body)

    assert response.status_code == 400, response.content
    assert missing in response.json()["secrets"]["esp_credentials"][0]
    assert not ChannelConfig.objects.exists()


def test_anymail_account_with_its_credentials_is_saved(api, db):
    body = {"name": "pm", "kind": "email", "backend": "anymail.postmark", "options": {"from_email": "hub@example.com"},
            "secrets": {"esp_credentials": {"server_token": "pm-token"}}}
    assert call(api, "post", "/api/v1/channels", body).status_code == 201
    # a later change that leaves the secrets out keeps the stored token: still valid
    assert call(api, "patch", "/api/v1/channels/pm", {"priority": 3}).status_code == 200


def _form(**overrides):
    data = {"name": "acct", "kind": "email", "backend": "smtp", "enabled": "on", "priority": 100, "weight": 1,
            "rate_limit": "", "failure_threshold": 5, "open_seconds": 60,
            "options": json.dumps(SMTP["options"]), "secrets": ""}
    data.update(overrides)
    return ChannelConfigForm(data=data, instance=ChannelConfig())


def test_admin_form_refuses_unknown_option_keys_with_a_hint():
    form = _form(options=json.dumps({**SMTP["options"], "secuirty": "none"}))
    assert not form.is_valid()
    assert "Did you mean 'security'?" in " ".join(form.errors["options"])
    assert _form().is_valid(), _form().errors


def test_admin_form_refuses_an_anymail_account_without_credentials():
    form = _form(backend="anymail.postmark", options=json.dumps({"from_email": "hub@example.com"}))
    assert not form.is_valid()
    assert "server_token" in " ".join(form.errors["secrets"])
    good = _form(backend="anymail.postmark", options=json.dumps({"from_email": "hub@example.com"}),
                 secrets=json.dumps({"esp_credentials": {"server_token": "t"}}))
    assert good.is_valid(), good.errors
