"""The admin for topics and segments as an operator uses it."""
import json

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from notifyhub.broadcasts.models import Segment, Subscription, Topic
from tests import factories

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(f"admin:{name}", args=args)


def topic_form(topic, **extra):
    return {"key": topic.key, "name": topic.name, "description": "", "default_category": "",
            "add_subscribers": "", "remove_subscribers": "", **extra}


def test_topic_pages_show_counts_search_and_add_remove_subscribers(admin_client):
    topic = Topic.objects.create(key="news", name="News")
    Topic.objects.create(key="other", name="Other")
    a, b, c = (factories.recipient(external_id=x) for x in ("a", "b", "c"))
    response = admin_client.post(url("broadcasts_topic_change", topic.pk),
                                 topic_form(topic, add_subscribers="a\nb, c"))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert "3 subscribed" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    response = admin_client.post(url("broadcasts_topic_change", topic.pk), topic_form(topic, remove_subscribers="b"))
    assert response.status_code == 302
    assert set(topic.subscriptions.values_list("recipient__external_id", flat=True)) == {"a", "c"}
    page = admin_client.get(url("broadcasts_topic_changelist")).content.decode()
    assert "News" in page and "<td class=\"field-subscriber_count\">2</td>" in page
    page = admin_client.get(url("broadcasts_topic_changelist") + "?q=oth").content.decode()
    assert "Other" in page and "News" not in page
    page = admin_client.get(url("broadcasts_topic_change", topic.pk)).content.decode()
    assert "topic__id__exact" in page
    assert admin_client.get(url("broadcasts_subscription_changelist") + f"?topic__id__exact={topic.pk}&q=c"
                            ).status_code == 200


def test_unknown_ids_in_the_topic_form_are_an_error_and_nothing_changes(admin_client):
    topic = Topic.objects.create(key="news", name="News")
    factories.recipient(external_id="a")
    response = admin_client.post(url("broadcasts_topic_change", topic.pk), topic_form(topic, add_subscribers="a ghost"
                                                                                        .replace(" ", "\n")))
    assert response.status_code == 200 and "Unknown recipients: ghost" in response.content.decode()
    assert not Subscription.objects.exists()


def test_recipient_page_lists_the_recipients_topics(admin_client):
    recipient = factories.recipient(external_id="a")
    topic = Topic.objects.create(key="release-notes", name="Release notes")
    Subscription.objects.create(topic=topic, recipient=recipient)
    page = admin_client.get(url("preferences_recipient_change", recipient.pk)).content.decode()
    assert "topic subscription" in page.lower() and "Release notes" in page


def test_segment_admin_validates_and_previews_the_audience(admin_client):
    for i in range(12):
        factories.recipient(external_id=f"sh-{i:02}", locale="zh-CN", data={"vip_level": i})
    factories.recipient(external_id="en-1", locale="en", data={"vip_level": 9})
    bad = {"all": [{"field": "locale", "op": "=", "value": "zh-CN"}, {"field": "data.vip_level", "op": "~",
                                                                       "value": 3}]}
    response = admin_client.post(url("broadcasts_segment_add"), {
        "key": "vip", "name": "VIP", "description": "", "definition": json.dumps(bad)})
    assert response.status_code == 200 and "definition.all[1].op" in response.content.decode()
    assert not Segment.objects.exists()
    good = {"all": [{"field": "locale", "op": "=", "value": "zh-CN"}, {"field": "data.vip_level", "op": ">=",
                                                                        "value": 1}]}
    response = admin_client.post(url("broadcasts_segment_add"), {
        "key": "vip", "name": "VIP", "description": "", "definition": json.dumps(good)})
    assert response.status_code == 302
    page = admin_client.get(url("broadcasts_segment_change", Segment.objects.get().pk)).content.decode()
    assert "<strong>11</strong> recipient(s) match now." in page
    assert page.count("/admin/preferences/recipient/") >= 10 and "sh-01" in page and "en-1" not in page
    assert "sh-00" not in page  # vip_level 0 does not match


def test_audience_admin_pages_render(admin_client):
    topic = Topic.objects.create(key="t", name="T")
    Subscription.objects.create(topic=topic, recipient=factories.recipient())
    for name in ("broadcasts_topic_add", "broadcasts_segment_add", "broadcasts_segment_changelist",
                 "broadcasts_subscription_changelist"):
        assert admin_client.get(url(name)).status_code == 200, name


def _broadcast_form(template, topic, **extra):
    return {"name": "Weekly", "template": template.pk, "topics": [topic.pk], "segment": "", "context":
            json.dumps({"name": "all", "code": "1"}), "channels": "[]", "priority": "normal", "schedule": "cron",
            "send_at_0": "", "send_at_1": "", "cron": "0 10 * * 1", "interval_every": "", "interval_unit": "",
            "timezone": "Asia/Shanghai", "starts_at_0": "", "starts_at_1": "", "ends_at_0": "", "ends_at_1": "",
            "runs-TOTAL_FORMS": "0", "runs-INITIAL_FORMS": "0", "runs-MIN_NUM_FORMS": "0",
            "runs-MAX_NUM_FORMS": "1000", **extra}


def test_operator_schedules_edits_pauses_and_deletes_a_broadcast(admin_client):
    from django_celery_beat.models import PeriodicTask

    from notifyhub.broadcasts.models import Broadcast

    template, topic = factories.template(), Topic.objects.create(key="news", name="News")
    Subscription.objects.create(topic=topic, recipient=factories.recipient())
    response = admin_client.post(url("broadcasts_broadcast_add"), _broadcast_form(template, topic, all_recipients="on"))
    assert response.status_code == 200 and "Confirm that this broadcast goes to every recipient" in \
        response.content.decode()
    response = admin_client.post(url("broadcasts_broadcast_add"), _broadcast_form(template, topic))
    assert response.status_code == 302, response.content.decode()[:3000]
    b = Broadcast.objects.get()
    admin_client.post(url("broadcasts_broadcast_changelist"), {"action": "schedule_selected", "_selected_action":
                                                              [b.pk]})
    task = PeriodicTask.objects.get(name=f"notifyhub-broadcast-{b.pk}")
    assert task.crontab.hour == "10"
    page = admin_client.get(url("broadcasts_broadcast_change", b.pk)).content.decode()
    assert "audience size now" in page.lower()
    response = admin_client.post(url("broadcasts_broadcast_change", b.pk), _broadcast_form(template, topic,
                                                                                        cron="30 8 * * *"))
    assert response.status_code == 302
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour) == ("30", "8")  # saving the broadcast changed its beat entry
    admin_client.post(url("broadcasts_broadcast_changelist"), {"action": "pause_selected", "_selected_action":
                                                              [b.pk]})
    task.refresh_from_db()
    assert not task.enabled
    response = admin_client.post(url("broadcasts_broadcast_delete", b.pk), {"post": "yes"})
    assert response.status_code == 302 and not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_a_broadcast_beat_entry_cannot_be_edited_or_deleted_in_periodic_tasks(admin_client):
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from notifyhub.broadcasts.models import Broadcast
    from notifyhub.broadcasts.runs import broadcast_schedule

    topic = Topic.objects.create(key="news", name="News")
    b = Broadcast.objects.create(name="W", template=factories.template(), context={"name": "a", "code": "1"},
                                 schedule="cron", cron="0 10 * * 1")
    b.topics.add(topic)
    task = broadcast_schedule(broadcast=b).periodic_task
    every = IntervalSchedule.objects.create(every=5, period="minutes")
    other = PeriodicTask.objects.create(name="ops-thing", task="notifyhub.sweep_stuck", interval=every)
    spare = PeriodicTask.objects.create(name="ops-spare", task="notifyhub.sweep_stuck", interval=every)
    page = admin_client.get(url("django_celery_beat_periodictask_change", task.pk)).content.decode()
    assert 'name="_save"' not in page  # shown read-only
    assert admin_client.post(url("django_celery_beat_periodictask_change", task.pk), {"name": "x"}).status_code == 403
    assert admin_client.post(url("django_celery_beat_periodictask_delete", task.pk), {"post": "yes"}
                             ).status_code == 403
    changelist = url("django_celery_beat_periodictask_changelist")
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [task.pk, other.pk], "post": "yes"})
    assert PeriodicTask.objects.filter(pk__in=[task.pk, other.pk]).count() == 2  # refused as a whole
    admin_client.post(changelist, {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"})
    assert not PeriodicTask.objects.filter(pk=other.pk).exists()
    assert 'name="_save"' in admin_client.get(url("django_celery_beat_periodictask_change", spare.pk)).content.decode()
