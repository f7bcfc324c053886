"""schemathesis over every operation of the OpenAPI document, valid and invalid inputs, on
PostgreSQL, with a key holding every scope: no input may cause a server error (5xx).

Bounded to about a minute: a few examples per operation and no shrinking. A failure prints
the request that reproduces it."""
import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from tests import factories

EXAMPLES = 12

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=EXAMPLES, no_shrink=True, deterministic=True)


@pytest.fixture
def authorization(services, transactional_db):
    """A key with every scope and one object of each kind, so item paths sometimes exist."""
    _, key = factories.api_key(scopes=["send", "read", "manage"], name="fuzz")
    factories.inapp_channel(name="inbox")
    factories.template(key="welcome", category=factories.category(key="orders"))
    factories.recipient(external_id="user-1")
    return {"Authorization": f"Api-Key {key}"}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_operation_answers_a_server_error(case, authorization):
    case.call_and_validate(headers=authorization, checks=[not_a_server_error])
