"""``POST /api/v1/messages`` costs the same number of statements for 1 or 1,000 inline
recipients; message detail and its deliveries page cost a constant number per page."""
import json
from collections import Counter

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests import factories

pytestmark = pytest.mark.django_db


def inline(n, prefix):
    return [{"external_id": f"{prefix}-{i}", "email": f"{prefix}{i}@example.com", "phone": f"+86138{i:08d}",
             "name": f"P {i}"} for i in range(n)]


def statements(api, template, to):
    body = {"template": template.key, "to": to, "context": {"name": "Ada", "code": "1"}}
    with CaptureQueriesContext(connection) as queries:
        response = api.post("/api/v1/messages", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    return queries


@pytest.fixture
def template(db):
    factories.smtp_channel(2525)
    factories.inapp_channel()
    factories.webhook_channel("https://hooks.example.com/in")
    return factories.template()


def _show(queries):
    repeated = Counter(q["sql"][:150] for q in queries.captured_queries)
    return "\n".join(f"{n} x {sql}" for sql, n in repeated.items() if n > 1)


@pytest.mark.parametrize("phase", ["new", "existing"])
@pytest.mark.parametrize("inline_max,sizes", [(1000, (1, 100, 1000)), (100, (1, 100)), (100, (1000, 2000))],
                         ids=["all-inline", "inline", "by-workers"])
def test_send_statements_do_not_depend_on_the_number_of_inline_recipients(api, template, settings, phase,
                                                                          inline_max, sizes):
    """Inline recipients with two contact points each, new or already known; dispatched in the
    request (up to NOTIFYHUB_INLINE_DISPATCH_MAX) or handed to the workers."""
    settings.NOTIFYHUB_INLINE_DISPATCH_MAX = inline_max
    counts = {}
    for n in sizes:
        if phase == "existing":
            statements(api, template, inline(n, f"p{n}"))
        queries = statements(api, template, inline(n, f"p{n}"))
        counts[n] = len(queries)
        print(n, counts[n])
        print(_show(queries))
    assert len(set(counts.values())) == 1, counts


# --- message detail and its deliveries ----------------------------------------------------------
@pytest.fixture
def big_message(api, template, settings):
    settings.NOTIFYHUB_INLINE_DISPATCH_MAX = 1000
    body = {"template": template.key, "to": inline(120, "big"), "context": {"name": "Ada", "code": "1"},
            "channels": ["email", "inapp"]}
    response = api.post("/api/v1/messages", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202
    accepted = response.json()
    assert len(accepted["deliveries"]) == 50 and accepted["deliveries_more"] is True
    return accepted["id"]


def test_message_detail_lists_a_bounded_first_page_and_links_the_rest(api, big_message):
    with CaptureQueriesContext(connection) as queries:
        response = api.get(f"/api/v1/messages/{big_message}")

    body = response.json()
    assert response.status_code == 200
    assert len(body["deliveries"]) == 50 and body["deliveries_more"] is True
    assert body["deliveries_url"].endswith(f"/api/v1/messages/{big_message}/deliveries")
    assert all(d["events"] for d in body["deliveries"])
    assert len(queries) <= 6, _show(queries)


def test_deliveries_pages_through_everything_with_constant_queries(api, big_message):
    url, seen, per_page = f"/api/v1/messages/{big_message}/deliveries?page_size=100", [], []
    while url:
        with CaptureQueriesContext(connection) as queries:
            response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        seen += body["results"]
        per_page.append(len(queries))
        url = body["next"]
    assert len(seen) == 240 and len({d["id"] for d in seen}) == 240
    assert len(set(per_page)) == 1, per_page
    assert all(d["events"] and d["recipient"].startswith("big-") for d in seen)


def test_deliveries_filter_by_channel_status_and_reason(api, big_message):
    inapp = api.get(f"/api/v1/messages/{big_message}/deliveries?channel=inapp&page_size=500").json()["results"]
    assert len(inapp) == 120 and {d["channel"] for d in inapp} == {"inapp"}
    queued = api.get(f"/api/v1/messages/{big_message}/deliveries?status=queued&page_size=500").json()["results"]
    assert queued and {d["status"] for d in queued} == {"queued"}
    none = api.get(f"/api/v1/messages/{big_message}/deliveries?reason=opted_out").json()["results"]
    assert none == []


def test_another_keys_message_deliveries_answer_404(client, big_message):
    _, other = factories.api_key(name="other")
    for url in (f"/api/v1/messages/{big_message}", f"/api/v1/messages/{big_message}/deliveries"):
        response = client.get(url, HTTP_AUTHORIZATION=f"Api-Key {other}")
        assert response.status_code == 404
        assert "detail" in response.json()
