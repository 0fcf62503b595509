"""The published contract: GET /openapi.json describes every JSON route, and a stranger's
tool (schemathesis) run against a real server finds no server error and no answer
that breaks the document, signed out and signed in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from conftest import RunningServer, start_server, stop_server
from http_helpers import assert_error, sign_up

SCHEMATHESIS_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)
EXAMPLES_PER_OPERATION = 8
SCHEMATHESIS_TIMEOUT_S = 120.0
OPERATOR_TOKEN = "operator-token-for-the-contract-test-0123456789"
PASSWORD = "contract-password"
NOT_THE_JSON_API = ("/live/", "/hls/", "/internal/", "/static/", "/s/", "/openapi.json")


async def test_the_document_covers_every_json_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    published = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item
    }
    served = set()
    for route in client._transport.app.router.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.path.startswith(("/api/", "/2/")):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((route.path, method))
    assert served and served == published
    for item in document["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                if status.startswith("4"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}


async def test_the_document_is_the_validating_models(client: httpx.AsyncClient) -> None:
    """A bound the document states is the bound the server enforces."""
    document = (await client.get("/openapi.json")).json()
    new_space = document["components"]["schemas"]["NewSpace"]
    limit = new_space["properties"]["title"]["maxLength"]
    assert new_space["required"] == ["title"]
    host = await sign_up(client, "host")
    fits = await client.post("/api/spaces", json={"title": "x" * limit}, headers=host.headers)
    assert fits.status_code == 201, fits.text
    over = await client.post("/api/spaces", json={"title": "x" * (limit + 1)}, headers=host.headers)
    assert_error(over, 422, "invalid_title")


def _schemathesis(
    server: RunningServer, tmp_path: Path, name: str, config: str, *args: str
) -> dict[str, Any]:
    """One `st run` (CLI, as a stranger would) with `config` (TOML); its JSON report."""
    report = tmp_path / f"{name}.json"
    config_path = tmp_path / f"{name}.toml"
    config_path.write_text(config)
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(config_path),
        "run",
        f"{server.url}/openapi.json",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--checks",
        SCHEMATHESIS_CHECKS,
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *args,
    ]
    finished = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=SCHEMATHESIS_TIMEOUT_S,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,
        check=False,
    )
    assert report.exists(), finished.stdout[-3000:] + finished.stderr[-3000:]
    result: dict[str, Any] = json.loads(report.read_text())
    cases = result["test_cases"]
    print(
        f"schemathesis ({name}): {result['operations']['tested']} operations, "
        f"{cases['generated']} cases, {cases['with_failures']} with failures, "
        f"{len(result['errors'])} errors, seed {result['seed']}"
    )
    assert result["exit_code"] == 0, finished.stdout[-6000:]
    print({kind: found for kind, found in result["warnings"].items() if found})
    return result


MODERATOR_OPERATIONS = (
    "report_queue", "take_action", "audit_log", "verify_audit_log", "grant_moderator",
    "revoke_moderator",
)  # fmt: skip
"""Operations the operator token opens (api/moderation.py)."""


@pytest.fixture
def contract_server(tmp_path: Path):
    running = start_server(
        tmp_path / "server",
        TOWNHALL_ADMIN_TOKEN=OPERATOR_TOKEN,
        TOWNHALL_ADMISSION_PER_ADDRESS_RATE="0",
    )
    try:
        yield running
    finally:
        stop_server(running)


def _account(http: httpx.Client, username: str) -> tuple[str, str]:
    """(user id, API token) of a new account."""
    credentials = {"username": username, "password": PASSWORD}
    created = http.post("/api/users", json=credentials)
    assert created.status_code == 201, created.text
    token = http.post("/api/tokens", json=credentials)
    assert token.status_code == 201, token.text
    return created.json()["id"], token.json()["token"]


@pytest.mark.slow
def test_schemathesis_finds_nothing(contract_server: RunningServer, tmp_path: Path) -> None:
    with httpx.Client(base_url=contract_server.url, timeout=10) as http:
        _, token = _account(http, "contract_host")
        guest_id, _ = _account(http, "contract_guest")
        auth = {"authorization": f"Bearer {token}"}
        space = http.post("/api/spaces", json={"title": "contract"}, headers=auth).json()
        assert http.post(f"/api/spaces/{space['id']}/start", headers=auth).status_code == 200
    parameters = f'[parameters]\nspace_id = "{space["id"]}"\nuser_id = "{guest_id}"\n'
    anonymous = _schemathesis(contract_server, tmp_path, "anonymous", parameters)
    signed_in = _schemathesis(
        contract_server,
        tmp_path,
        "signed-in",
        f'headers = {{ Authorization = "Bearer {token}" }}\n{parameters}',
        "--exclude-operation-id",
        "sign_out",  # it would revoke the very token the run signs in with
        "--exclude-operation-id",
        "my_events",  # an endless event stream: read by tests/test_follows_events.py
    )
    operator = _schemathesis(
        contract_server,
        tmp_path,
        "operator",
        f'headers = {{ Authorization = "Bearer {OPERATOR_TOKEN}" }}\n',
        "--include-operation-id",
        "set_attack_mode",
        *(arg for name in MODERATOR_OPERATIONS for arg in ("--include-operation-id", name)),
    )
    assert operator["operations"]["tested"] == 1 + len(MODERATOR_OPERATIONS)
    assert not operator["failures"] and operator["test_cases"]["with_failures"] == 0
    for result in (anonymous, signed_in):
        assert result["operations"]["tested"] == result["operations"]["selected"] > 20
        assert result["test_cases"]["with_failures"] == 0 and not result["failures"]
        assert not result["errors"]
    assert "Traceback" not in contract_server.log()
