"""Schemathesis generates requests from the OpenAPI spec (valid and invalid, every operation) against the
app in front of the running platform: no request may get a 5xx."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from services.api.app import create_app
from services.api.settings import ApiSettings
from tests.support.platform import FrontDoorPlatform

pytestmark = pytest.mark.slow
EXAMPLES = 30  # per operation and generation mode


def test_no_request_gets_a_server_error(frontdoor: FrontDoorPlatform) -> None:
    headers = {"Authorization": f"Bearer {frontdoor.key('schemathesis')}"}
    app = create_app(ApiSettings(max_upload_bytes=1024 * 1024), frontdoor.service)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    tested: list[str] = []
    statuses: list[int] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
            )
            def check(case: Any) -> None:
                response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
                statuses.append(response.status_code)

            try:
                check()
            except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
                assert mode is GenerationMode.NEGATIVE, operation.label
        tested.append(operation.label)
    assert len(tested) == 14, tested  # the job routes, health, the console's two reads, the layout three
    assert len(statuses) > 14 * EXAMPLES, len(statuses)
    assert {200, 401, 404, 422} <= set(statuses), sorted(set(statuses))  # past auth and validation too
