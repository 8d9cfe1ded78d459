"""schemathesis against the OpenAPI document, with a valid key, on real PostgreSQL and Redis:
generated requests, valid and invalid, never get a 5xx, and every answer matches the document
(status codes, content types, response schemas).

Driven through hypothesis directly: schemathesis's pytest plugin does not run on pytest 9.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api import create_app
from conversation.bootstrap import Container
from conversation.domain.messages import NewMessage, Role

pytestmark = pytest.mark.integration

# Instants the document calls valid, edges included: with an offset, the first and last
# instants Python holds overflow once converted to UTC (issue 15), and must be a 4xx.
OFFSETS = [timezone(timedelta(hours=h)) for h in (0, 1, -1, 14, -12)]
schemathesis.openapi.format("date-time", st.one_of(
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                     "9999-12-31T23:59:59.999999Z", "0001-01-01T00:00:00Z"]),
    st.datetimes(timezones=st.sampled_from(OFFSETS)).map(datetime.isoformat),
))

# negative_data_rejection: a request the document calls invalid (a bad date, an out-of-range
# limit, an identifier off the pattern...) must get a 4xx, not reach the queries.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_no_server_error_and_no_schema_violation(container: Container, mode) -> None:  # noqa: ANN001
    container.saver.save(NewMessage(
        tenant_id="fuzz", session_id="fuzz-s", agent_id="bot", role=Role.USER,
        content="hello", message_id="fuzz-m"))
    container.statistics.aggregate()
    # A tenant key: the endpoints run their real paths for "fuzz" and refuse other tenants.
    headers = {"Authorization": f"Bearer {container.api_keys.create('fuzz')}"}
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", create_app(container=container))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 8  # the document lists the API, not an empty shell

    statuses: Counter[int] = Counter()
    for operation in operations:
        strategy = operation.as_strategy(mode)
        if "{tenant_id}" in operation.path:
            # Half the cases on the key's own tenant, so the real code paths run, not only 403s.
            strategy = strategy | operation.as_strategy(mode, path_parameters={"tenant_id": "fuzz"})

        @given(case=strategy)
        @settings(max_examples=30, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case) -> None:  # noqa: ANN001
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            statuses[response.status_code] += 1

        call()
    assert statuses[200] > 0 and (statuses[400] + statuses[422]) > 0, statuses
