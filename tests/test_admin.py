"""The Django admin as an operator uses it: every page renders, forms report errors instead of
failing, secrets never reach the page, and the operator actions do what they say."""
import json
import re

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.messages import get_messages
from django.urls import reverse

from channels_app.models import ChannelConfig, InboxEntry
from notifyhub.api.models import IdempotencyRecord
from notifyhub.clients.models import ApiKey
from notifyhub.messaging.models import (
    Delivery,
    DeliveryEvent,
    DispatchChunk,
    EarlyReceipt,
    Message,
    MessageRecipient,
    Template,
)
from preferences.models import ContactPoint, Preference
from tests import factories
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

SECRET = "plaintext-smtp-password-1234"


def url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def flash(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def smtp_options(port: int) -> dict:
    return {"host": "127.0.0.1", "port": port, "security": "none", "from_email": "hub@example.com"}


def channel_post(**overrides) -> dict:
    data = {"name": "mail", "kind": "email", "backend": "smtp", "enabled": "on", "priority": "100", "weight": "1",
            "rate_limit": "", "failure_threshold": "5", "open_seconds": "60",
            "options": json.dumps(smtp_options(2525)), "secrets": ""}
    data.update(overrides)
    return data


@pytest.fixture
def message_with_deliveries():
    """A message with one queued, one pending and one sent delivery, built directly."""
    template = factories.template()
    message = Message.objects.create(template=template, context={"name": "Ada", "code": "1"}, recipient_count=3)
    rows = {}
    for status, channel in (("queued", "email"), ("pending", "inapp"), ("sent", "webhook")):
        recipient = factories.recipient()
        MessageRecipient.objects.get_or_create(message=message, recipient=recipient)
        rows[status] = Delivery.objects.create(
            message=message, recipient=recipient, channel=channel, address=f"{status}@example.com",
            status=status, content={"subject": "Hello Ada"}, explain=["category: allowed", f"{status}: yes"])
        DeliveryEvent.objects.create(delivery=rows[status], status=status, detail=f"became {status}")
    return message, rows


@pytest.fixture
def one_of_everything(message_with_deliveries):
    recipient = message_with_deliveries[1]["queued"].recipient
    Preference.objects.create(recipient=recipient, category=factories.category(), channel="email", enabled=False)
    factories.smtp_channel(2525, secrets={"password": SECRET})
    factories.inapp_channel()
    InboxEntry.objects.create(recipient_key=recipient.external_id, title="Hi", body="There")
    api_key, _ = factories.api_key()
    IdempotencyRecord.objects.create(api_key=api_key, key="idem-1", request_hash="0" * 64, state="done",
                                     response_status=202, response_body={"id": "x"})
    DispatchChunk.objects.create(message=message_with_deliveries[0], first_id=1, last_id=2, attempts=2,
                                 last_error="ConnectionError: Redis is down")
    EarlyReceipt.objects.create(source="twilio", provider_message_id="SM1", status="delivered")


# --- every page renders ------------------------------------------------------------------------
def test_every_registered_model_has_working_pages(admin_client, one_of_everything):
    for model, model_admin in admin.site._registry.items():
        response = admin_client.get(url(model, "changelist"))
        assert response.status_code == 200, model
        response = admin_client.get(url(model, "changelist"), {"q": "not-a-uuid"})
        assert response.status_code == 200, f"search on {model}"
        obj = model._default_manager.first()
        if obj is not None:
            response = admin_client.get(url(model, "change", quote(obj.pk)))
            assert response.status_code == 200, model
        if model_admin.has_add_permission(response.wsgi_request):
            assert admin_client.get(url(model, "add")).status_code == 200, model


def test_library_api_key_model_is_not_in_the_admin():
    from rest_framework_api_key.models import APIKey

    assert not admin.site.is_registered(APIKey)
    assert admin.site.is_registered(ApiKey)


# --- templates ---------------------------------------------------------------------------------
def test_template_preview_renders_sample_context(admin_client):
    template = factories.template(sample_context={"name": "Ada <Lovelace>", "code": "4242"})
    html = admin_client.get(url(Template, "change", template.pk)).content.decode()
    assert "Hello Ada &lt;Lovelace&gt;" in html  # subject, as text
    assert "code 4242" in html
    assert '<iframe sandbox=""' in html
    # The rendered HTML (itself autoescaped) is escaped again into srcdoc, never live in the page.
    assert "srcdoc=\"&lt;p&gt;Hi &lt;b&gt;Ada &amp;lt;Lovelace&amp;gt;&lt;/b&gt;" in html
    assert "<b>Ada" not in html


def test_template_preview_shows_render_errors_instead_of_failing(admin_client):
    template = factories.template(sample_context={"name": "Ada"})  # no "code"
    template.content["inapp"]["body"] = "{{ name | nosuchfilter }}"
    template.save()
    response = admin_client.get(url(Template, "change", template.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Render error" in html
    assert "code" in html and "undefined" in html
    assert "nosuchfilter" in html


def test_template_form_runs_content_checks(admin_client):
    category = factories.category()
    data = {"key": "welcome", "name": "Welcome", "category": category.pk, "active": "on",
            "variables": json.dumps(["name"]), "translations": "{}", "sample_context": "{}",
            "routing": "all", "fallback_chain": "[]", "fallback_timeout_seconds": 0, "dedup_window_seconds": 0,
            "content": json.dumps({"email": {"subject": "Hi {{ name }}", "text": "{{ code }}"}})}
    response = admin_client.post(url(Template, "add"), data)
    assert response.status_code == 200
    assert "undeclared variables: code" in response.content.decode()
    assert not Template.objects.exists()

    data["content"] = json.dumps({"email": {"subject": "Hi {{ name", "text": "x"}})
    response = admin_client.post(url(Template, "add"), data)
    assert response.status_code == 200
    assert "content.email" in response.content.decode()
    assert not Template.objects.exists()

    data["content"] = json.dumps({"email": {"subject": "Hi {{ name }}", "text": "Welcome"}})
    response = admin_client.post(url(Template, "add"), data)
    assert response.status_code == 302
    assert Template.objects.get(key="welcome").variables == ["name"]


# --- channel configs ---------------------------------------------------------------------------
def test_channel_config_missing_required_option_is_a_form_error(admin_client):
    options = smtp_options(2525)
    del options["host"]
    response = admin_client.post(url(ChannelConfig, "add"), channel_post(options=json.dumps(options)))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "host" in " ".join(errors["options"])
    assert not ChannelConfig.objects.exists()


def test_channel_config_backend_of_another_kind_is_a_form_error(admin_client):
    response = admin_client.post(url(ChannelConfig, "add"), channel_post(kind="sms"))
    assert response.status_code == 200
    assert "not sms" in " ".join(response.context["adminform"].form.errors["backend"])
    assert not ChannelConfig.objects.exists()


def test_channel_config_rejects_secrets_in_plain_options(admin_client):
    options = {**smtp_options(2525), "password": SECRET}
    response = admin_client.post(url(ChannelConfig, "add"), channel_post(options=json.dumps(options)))
    assert response.status_code == 200
    assert "password is secret" in " ".join(response.context["adminform"].form.errors["options"])
    assert not ChannelConfig.objects.exists()


def test_channel_config_secrets_are_encrypted_and_never_shown(admin_client):
    response = admin_client.post(url(ChannelConfig, "add"),
                                 channel_post(secrets=json.dumps({"password": SECRET, "username": ""})))
    assert response.status_code == 302, response.context["adminform"].form.errors
    config = ChannelConfig.objects.get(name="mail")
    assert SECRET not in config.secrets_encrypted
    assert SECRET not in json.dumps(config.options)
    assert config.secrets == {"password": SECRET}

    html = admin_client.get(url(ChannelConfig, "change", config.pk)).content.decode()
    assert SECRET not in html
    assert "••••••••1234" in html  # the mask
    assert "Send test message" in html
    assert "<code>password</code></td><td>char</td><td>default" in html  # backend reference panel
    assert "<strong>secret</strong>" in html

    # Saving again with an empty secrets field keeps the stored secret.
    response = admin_client.post(url(ChannelConfig, "change", config.pk), channel_post(priority="5"))
    assert response.status_code == 302
    config.refresh_from_db()
    assert config.priority == 5
    assert config.secrets == {"password": SECRET}

    # Invalid JSON in the secrets field is a form error that does not echo the input.
    response = admin_client.post(url(ChannelConfig, "change", config.pk), channel_post(secrets=SECRET))
    assert response.status_code == 200
    assert SECRET not in response.content.decode()
    assert "secrets" in response.context["adminform"].form.errors


def test_send_test_message_reaches_the_smtp_server(admin_client, smtp_server):
    config = factories.smtp_channel(smtp_server.port)
    test_url = reverse("admin:channels_app_channelconfig_test_send", args=[config.pk])
    assert admin_client.get(test_url).status_code == 200

    response = admin_client.post(test_url, {"address": "ops@example.com"}, follow=True)
    assert response.status_code == 200
    notes = flash(response) or [str(m) for m in response.context["messages"]]
    assert any("Test message sent to ops@example.com" in note and "provider message id" in note for note in notes)
    assert len(smtp_server.messages) == 1
    assert smtp_server.messages[0]["To"] == "ops@example.com"
    assert "notifyhub test message" in smtp_server.messages[0]["Subject"]


def test_send_test_message_reports_provider_errors(admin_client):
    config = factories.smtp_channel(free_port())  # nothing listens there
    test_url = reverse("admin:channels_app_channelconfig_test_send", args=[config.pk])
    response = admin_client.post(test_url, {"address": "ops@example.com"})
    assert response.status_code == 200
    assert any("failed" in note and "SMTP connection failed" in note for note in flash(response))

    response = admin_client.post(test_url, {"address": "not an address"})
    assert response.status_code == 200
    assert any("not a valid e-mail address" in note for note in flash(response))


def test_send_test_message_action_opens_the_page_for_the_first_selected(admin_client):
    config = factories.inapp_channel()
    response = admin_client.post(url(ChannelConfig, "changelist"),
                                 {"action": "send_test_message", "_selected_action": [config.pk]})
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:channels_app_channelconfig_test_send", args=[config.pk])
    response = admin_client.post(response["Location"], {"address": "user-77"}, follow=True)
    assert any("Test message sent to user-77" in note for note in [str(m) for m in response.context["messages"]])
    assert InboxEntry.objects.get(recipient_key="user-77").title == "notifyhub test message"


# --- API keys ----------------------------------------------------------------------------------
def test_api_key_created_in_admin_is_shown_once_and_stored_hashed(admin_client):
    response = admin_client.post(url(ApiKey, "add"), {"name": "billing", "scopes": ["send", "read"]}, follow=True)
    assert response.status_code == 200
    notes = [str(m) for m in response.context["messages"]]
    match = next(re.search(r"is: (\S+)\. Please", note) for note in notes if "The API key for billing" in note)
    key = match.group(1)
    api_key = ApiKey.objects.get(name="billing")
    assert api_key.scopes == ["read", "send"]
    assert key not in api_key.hashed_key and key != api_key.id
    assert ApiKey.objects.is_valid(key)

    html = admin_client.get(url(ApiKey, "change", quote(api_key.pk))).content.decode()
    assert key not in html
    assert 'type="checkbox" name="scopes" value="manage"' in html

    response = admin_client.post(url(ApiKey, "changelist"), {"action": "revoke", "_selected_action": [api_key.pk]})
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked
    assert not ApiKey.objects.is_valid(key)
    assert admin_client.get(url(ApiKey, "change", quote(api_key.pk))).status_code == 200


# --- messages and deliveries -------------------------------------------------------------------
def test_message_pages_are_read_only_and_show_deliveries(admin_client, message_with_deliveries):
    message, rows = message_with_deliveries
    assert admin_client.get(url(Message, "add")).status_code == 403
    html = admin_client.get(url(Message, "change", message.pk)).content.decode()
    assert reverse("admin:messaging_delivery_change", args=[rows["queued"].pk]) in html
    assert "queued@example.com" in html
    assert 'name="_save"' not in html

    listing = admin_client.get(url(Delivery, "changelist"), {"message": str(message.pk)})
    assert listing.status_code == 200
    assert "queued@example.com" in listing.content.decode()

    html = admin_client.get(url(Delivery, "change", rows["sent"].pk)).content.decode()
    assert "<li>category: allowed</li>" in html  # explain, as a list
    assert "became sent" in html  # timeline inline
    assert "&quot;subject&quot;: &quot;Hello Ada&quot;" in html  # content as pretty JSON


def test_cancel_action_cancels_unsent_deliveries(admin_client, message_with_deliveries):
    message, rows = message_with_deliveries
    response = admin_client.post(url(Message, "changelist"),
                                 {"action": "cancel_unsent", "_selected_action": [str(message.pk)]}, follow=True)
    assert response.status_code == 200
    assert any("2 unsent deliveries cancelled" in str(m) for m in response.context["messages"])
    statuses = {status: Delivery.objects.get(pk=row.pk).status for status, row in rows.items()}
    assert statuses == {"queued": "cancelled", "pending": "cancelled", "sent": "sent"}
    assert DeliveryEvent.objects.filter(delivery=rows["queued"], status="cancelled").exists()


# --- recipients --------------------------------------------------------------------------------
def test_recipient_search_by_contact_address_and_contact_point_actions(admin_client):
    recipient = factories.recipient(email="someone@corp.example")
    other = factories.recipient()
    response = admin_client.get(url(type(recipient), "changelist"), {"q": "someone@corp"})
    assert recipient.external_id in response.content.decode()
    assert other.external_id not in response.content.decode()

    point = ContactPoint.objects.get(recipient=recipient)
    changelist = url(ContactPoint, "changelist")
    admin_client.post(changelist, {"action": "deactivate", "_selected_action": [point.pk]})
    point.refresh_from_db()
    assert (point.active, point.deactivated_reason) == (False, "suppressed by operator")
    admin_client.post(changelist, {"action": "reactivate", "_selected_action": [point.pk]})
    point.refresh_from_db()
    assert (point.active, point.deactivated_reason) == (True, "")
