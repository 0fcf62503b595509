"""GET /metrics: the node's figures for Prometheus (townhall.metrics.node).

Behind the operator token, like the other operator endpoints: the figures name
every live space and show how close the node is to its limits, which is what an
attacker timing a flood would want. Prometheus sends the token as a Bearer token
(`authorization: {credentials_file: ...}` in its scrape config), so no second
secret or setting is needed; nginx need not expose /metrics at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from townhall.api.auth import client_address
from townhall.api.contract import Auth, Operation, routes_of

if TYPE_CHECKING:
    from townhall.services import Services


async def scrape(services: Services, request: Request) -> Response:
    services.operator_gate.check(request.headers.get("authorization", ""), client_address(request))
    return Response(
        generate_latest(services.metrics_registry),
        media_type=CONTENT_TYPE_LATEST,
        headers={"cache-control": "no-store"},
    )


OPERATIONS = [
    Operation(
        "GET", "/metrics", scrape, "The node's figures in Prometheus text format",
        auth=Auth.OPERATOR, media_type=CONTENT_TYPE_LATEST,
    ),
]  # fmt: skip
"""Prometheus text, not JSON API: not in townhall.app's JSON_API."""


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
