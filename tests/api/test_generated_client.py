"""A Python client generated from the OpenAPI document by openapi-python-client builds without
warnings and works against a live server: send a message, read it, page through its deliveries."""
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

from tests import factories

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory):
    root = tmp_path_factory.mktemp("generated")
    schema = root / "openapi.json"
    document = SchemaGenerator().get_schema(request=None, public=True)
    schema.write_bytes(OpenApiJsonRenderer().render(document, renderer_context={}))
    result = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(schema),
         "--output-path", str(root / "notifyhub_client"), "--meta", "none"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Warning" not in output, output
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module("notifyhub_client")
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.startswith("notifyhub_client")]:
            del sys.modules[name]


@pytest.mark.django_db(transaction=True)
def test_generated_client_sends_a_message_and_reads_its_deliveries(generated_client, live_server):
    from notifyhub_client import AuthenticatedClient
    from notifyhub_client.api.v1 import v1_messages_create, v1_messages_deliveries_list, v1_messages_retrieve
    from notifyhub_client.models import (
        ChannelKindEnum,
        InlineRecipientRequest,
        MessageCreateRequest,
        MessageCreateRequestContext,
    )

    factories.inapp_channel()
    template = factories.template()
    _, key = factories.api_key()
    client = AuthenticatedClient(base_url=live_server.url, token=key, prefix="Api-Key", raise_on_unexpected_status=True)
    body = MessageCreateRequest(
        template=template.key,
        to=[InlineRecipientRequest(external_id=f"gen-{i}", email=f"gen{i}@example.com") for i in range(3)],
        context=MessageCreateRequestContext.from_dict({"name": "Ada", "code": "42"}),
        channels=[ChannelKindEnum.INAPP],
    )

    with client as http:
        sent = v1_messages_create.sync_detailed(client=http, body=body)
        assert sent.status_code == 202, sent.content
        accepted = json.loads(sent.content)
        message = v1_messages_retrieve.sync(client=http, id=accepted["id"])
        assert message.recipient_count == 3 and message.deliveries_more is False
        page = v1_messages_deliveries_list.sync(client=http, id=message.id, page_size=2)
        seen = list(page.results)
        while page.next_:
            cursor = page.next_.split("cursor=")[1].split("&")[0]
            page = v1_messages_deliveries_list.sync(client=http, id=message.id, page_size=2, cursor=cursor)
            seen += page.results

    assert sorted(d.recipient for d in seen) == ["gen-0", "gen-1", "gen-2"]
    assert {d.channel for d in seen} == {"inapp"}
    assert all(d.events for d in seen)
