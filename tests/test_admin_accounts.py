"""Admin for provider accounts of the new channels: test send with template-specific content,
and the circuit breaker shown and reset."""
import json
import uuid

import pytest
from django.urls import reverse
from werkzeug.wrappers import Response

from channels_app.breaker import breaker_failure, breaker_state
from channels_app.models import ChannelConfig
from tests import factories

pytestmark = pytest.mark.django_db


def test_aliyun_test_send_uses_the_operator_content(admin_client, httpserver):
    seen = []

    def dysms(request):
        seen.append(dict(request.form))
        return Response(json.dumps({"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0",
                                    "RequestId": str(uuid.uuid4())}), content_type="application/json")

    httpserver.expect_request("/", method="POST").respond_with_handler(dysms)
    config = factories.channel(name="aliyun", kind="sms", backend="aliyun", options={
        "access_key_id": "LTAI5tExample", "sign_name": "阿里云短信测试",
        "endpoint": httpserver.url_for("").rstrip("/")},
        secrets={"access_key_secret": "s" * 30})
    response = admin_client.post(reverse("admin:channels_app_channelconfig_test_send", args=[config.pk]), {
        "address": "+8613800138000",
        "content": json.dumps({"template_code": "SMS_154950909", "template_params": {"code": "1234"}}),
    }, follow=True)
    messages = [str(m) for m in response.context["messages"]]
    assert any("Test message sent" in m and "900619746936498440" in m for m in messages), messages
    assert seen and seen[0]["TemplateCode"] == "SMS_154950909"
    assert json.loads(seen[0]["TemplateParam"]) == {"code": "1234"}
    assert seen[0]["PhoneNumbers"] == "13800138000"


def test_test_send_rejects_content_that_is_not_json(admin_client):
    config = factories.inapp_channel()
    response = admin_client.post(reverse("admin:channels_app_channelconfig_test_send", args=[config.pk]),
                                 {"address": "user-1", "content": "{not json"}, follow=True)
    assert any("not valid JSON" in str(m) for m in response.context["messages"])


def test_breaker_is_shown_and_reset_in_the_admin(admin_client):
    config = factories.channel(name="slack", kind="chat", backend="slack", secrets={
        "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXX"})
    breaker_failure(config.pk, failure_threshold=1, open_seconds=60, account_level=True)
    assert breaker_state(config.pk)["state"] == "open"
    page = admin_client.get(reverse("admin:channels_app_channelconfig_change", args=[config.pk])).content.decode()
    assert "state: open" in page
    changelist = reverse("admin:channels_app_channelconfig_changelist")
    response = admin_client.post(changelist, {"action": "reset_circuit_breaker", "_selected_action": [config.pk]},
                                 follow=True)
    assert response.status_code == 200
    assert breaker_state(config.pk)["state"] == "closed"
    assert "state: closed" in admin_client.get(
        reverse("admin:channels_app_channelconfig_change", args=[config.pk])).content.decode()
    assert ChannelConfig.objects.get(pk=config.pk).secrets  # nothing else touched
