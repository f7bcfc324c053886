"""Hostile templates: each is refused (400 naming the part, ``render_error`` on send) or bounded,
and each answer comes in under a second — on render, on save through the API and on dry run."""
import json
import time

import pytest

from notifyhub.messaging.models import Delivery, Template
from notifyhub.messaging.rendering import RenderError, render_parts
from tests import factories

pytestmark = pytest.mark.django_db
LIMIT_SECONDS = 1.0
BIG = "'x' * 100000"

#: (template body, refused on save whatever the context)
HOSTILE = [
    ("{{ (10**10000000) > 1 }}", True),
    ("{{ 10**5000 }}", True),
    ("{{ 7 ** 99999 }}", True),
    ("{{ 10.0 ** 400 }}", True),
    ("{{ (9**9)**9**9 }}", False),  # Jinja's ** groups left: (9**9**9) would not be bounded, this is
    ("{{ '\n'.join(['a'] * 10**9) }}", True),
    ("{{ ('a' * 10**8)|length }}", True),
    ("{{ ([" + BIG + "] * 10000)|string|length }}", True),
    ("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", True),
    ("{% for a in 'x' * 100000 %}{% for b in 'y' * 100000 %}{% endfor %}{% endfor %}", True),
    ("{% for i in range(10**9) %}{% endfor %}", True),
    ("{{ range(10**100)|length }}", True),
    ("{% include 'other' %}", True),
    ("{% extends 'base' %}", True),
    ("{% import 'macros' as m %}", True),
    ("{% from 'macros' import m %}", True),
    ("{{ 1/0 }}", True),
    ("{{ 1 // 0 }}", True),
    ("{{ 5 % 0 }}", True),
    ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}", True),
    ("{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}", True),
    ("{% set s %}{% for i in range(10000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}{{ s|length }}", True),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
     "{{ ns.s|length }}", True),
    ("{% set ns = namespace(n=3) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}{{ ns.n }}",
     True),
    ("{{ dict.fromkeys(range(10000), " + BIG + ")|string|length }}", True),
    ("{{ ('%s' * 10000) % ((" + BIG + ",) * 10000) }}", True),
    ("{{ '%999999999d' % 1 }}", True),
    ("{{ '%.999999999f'|format(1.0) }}", True),
    ('{{ "{:>999999999}".format(1) }}', True),
    ('{{ "{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}".format(' + BIG + ") }}", True),
    ("{{ 'x'.center(10**9) }}", True),
    ("{{ 'x'.ljust(10**9) }}", True),
    ("{{ 'x'.rjust(999999999) }}", True),
    ("{{ '7'.zfill(10**9) }}", True),
    ("{{ ('\\t' * 1000).expandtabs(10**6) }}", True),
    ("{{ (1).to_bytes(10**9, 'big')|length }}", True),
    ("{{ ('a' * 1000).replace('a', 'b' * 1000) }}", True),
    ("{{ ('a' * 1000)|replace('a', 'b' * 1000) }}", True),
    ("{{ ('a' * 1000).translate({97: 'b' * 1000}) }}", True),
    ("{{ 'x'|wordwrap(10**9) }}", True),
    ("{{ ('a\\n' * 100000)|indent(100000) }}", True),
    ("{{ 'x'|indent(10**9) }}", True),
    ("{{ range(10000)|join('x' * 100000) }}", True),
    ("{{ ('x' * 100000).join(range(10000)|map('string')) }}", True),
    ("{{ range(100)|batch(10**9, 'x')|list }}", True),
    ("{{ range(100)|slice(10**9)|list }}", True),
    ("{{ ([[" + BIG + "]] * 3)|sum(start=[])|length }}", False),
    ("{{ lipsum(10**6) }}", False),
    ("{{ ''.__class__.__mro__ }}", False),
    ("{{ '\\ud800' }}", True),
]


def _timed(call):
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT_SECONDS, f"took {elapsed:.2f} s"
    return result


def test_the_table_is_large_enough():
    assert len(HOSTILE) >= 20


@pytest.mark.parametrize("body", [b for b, _ in HOSTILE])
def test_render_refuses_or_bounds(body, settings):
    def render():
        try:
            return render_parts({"body": body}, {"n": 1})
        except RenderError as exc:
            return exc

    outcome = _timed(render)
    if isinstance(outcome, RenderError):
        assert str(outcome).startswith("body: ")
    else:
        assert len(outcome["body"]) <= settings.NOTIFYHUB_TEMPLATE_MAX_OUTPUT


@pytest.mark.parametrize("body,refused", HOSTILE)
def test_save_answers_400_naming_the_part_or_saves_quickly(api, body, refused):
    category = factories.category()
    payload = {"key": "hostile", "name": "Hostile", "category": category.key, "variables": ["n"],
               "content": {"inapp": {"title": "T", "body": body}}}
    response = _timed(lambda: api.post("/api/v1/templates", data=json.dumps(payload),
                                       content_type="application/json"))
    if refused:
        assert response.status_code == 400, response.content
        assert "content.inapp.body" in json.dumps(response.json())
    else:
        assert response.status_code in (201, 400), response.content


@pytest.mark.parametrize("body,refused", HOSTILE)
def test_dry_run_answers_400_naming_the_part(api, body, refused):
    factories.inapp_channel()
    template = Template.objects.create(key="hostile", name="H", category=factories.category(), variables=["n"],
                                       content={"inapp": {"title": "T", "body": body}})
    recipient = factories.recipient()
    request = {"template": template.key, "to": [recipient.external_id], "context": {"n": 1}, "dry_run": True}
    response = _timed(lambda: api.post("/api/v1/messages", data=json.dumps(request),
                                       content_type="application/json"))
    if refused or response.status_code != 200:
        assert response.status_code == 400, response.content
        assert "(inapp) cannot render: body:" in json.dumps(response.json())


def test_send_records_render_error_when_only_the_recipient_breaks_the_bounds(api, django_capture_on_commit_callbacks):
    """The sample recipient renders; the real one overflows: the delivery fails as render_error."""
    factories.inapp_channel()
    template = Template.objects.create(
        key="by-name", name="N", category=factories.category(),
        content={"inapp": {"title": "T", "body": "{{ (recipient.name * 10**8)|length }}"}})
    recipient = factories.recipient(name="Ada")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/messages", data=json.dumps(
            {"template": template.key, "to": [recipient.external_id], "context": {}}),
            content_type="application/json")
    assert response.status_code == 202, response.content
    delivery = Delivery.objects.get(message_id=response.json()["id"], channel="inapp")
    assert (delivery.status, delivery.reason) == ("failed", "render_error")


def test_ordinary_templates_still_render():
    parts = {"subject": "Order {{ order }} — {{ '%.2f'|format(total) }}",
             "html": "{% for item in items %}<li>{{ item|upper }}</li>{% endfor %}{{ '{:,}'.format(1234567) }}",
             "text": "{{ range(3)|join(', ') }} {{ 2**10 }} {{ 'ab' * 3 }} {{ name.center(9, '*') }}"}
    rendered = render_parts(parts, {"order": "NO-1", "total": 9.5, "items": ["a", "<b>"], "name": "Ada"})
    assert rendered == {"subject": "Order NO-1 — 9.50",
                        "html": "<li>A</li><li>&lt;B&gt;</li>1,234,567",
                        "text": "0, 1, 2 1024 ababab ***Ada***"}


def test_budget_settings_apply(settings):
    settings.NOTIFYHUB_TEMPLATE_MAX_OUTPUT = 10
    with pytest.raises(RenderError, match="exceed 10 characters"):
        render_parts({"text": "{{ 'x' * 11 }}"}, {})
    settings.NOTIFYHUB_TEMPLATE_MAX_OUTPUT = 1000
    settings.NOTIFYHUB_TEMPLATE_RENDER_SECONDS = 0.05
    with pytest.raises(RenderError, match="longer than 0.05 s"):
        render_parts({"text": "{% for a in range(10000) %}{% for b in range(100) %}{% endfor %}{% endfor %}"}, {})


def test_a_render_outside_render_parts_gets_its_own_fresh_budget():
    from notifyhub.messaging.rendering import _text_env

    template = _text_env.from_string("{% for i in range(3) %}{{ i }}{% endfor %}")
    assert template.render() == "012"
    time.sleep(0.6)  # longer than the default budget: a stale deadline would fail the next render
    assert template.render() == "012"
