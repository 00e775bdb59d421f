"""Property-based run over the OpenAPI schema (schemathesis): no request, however odd, gets a
server error. Bounded: a few examples per operation."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from rackplan.api.app import create_app
from rackplan.api.security import create_key
from rackplan.api.settings import Settings

EXAMPLES_PER_OPERATION = 8


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schemathesis")
    app = create_app(Settings(data_dir=folder, database_url=None, solve_workers=1, queue_limit=4))
    with TestClient(app):
        _, key = create_key(app.state.rackplan.db, "schemathesis")
        yield app, key


def _check_operation(operation, key: str, failures: list[str]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy())
    def run(case):
        if isinstance(case.body, dict) and "wait_s" in case.body:
            case.body["wait_s"] = 0
        response = case.call(headers={"Authorization": f"Bearer {key}"})
        try:
            case.validate_response(response, checks=[not_a_server_error])
        except Exception as exc:  # collected so one run reports every operation
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")

    run()


def test_no_server_errors(running):
    app, key = running
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 18
    for operation in operations:
        _check_operation(operation, key, failures)
    assert not failures, "\n".join(failures[:5])
