"""GET /metrics: the node's figures for Prometheus (townhall.metrics.node).

Behind the operator token, like the other operator endpoints: the figures name
every live space and show how close the node is to its limits, which is what an
attacker timing a flood would want. Prometheus sends the token as a Bearer token
(`authorization: {credentials_file: ...}` in its scrape config), so no second
secret or setting is needed; nginx need not expose /metrics at all.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from townhall.api.auth import client_address
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.operations import OperatorGate


class MetricsEndpoint:
    """Made with the registry its collectors join once the services are up, and the
    gate that checks the operator token."""

    def __init__(self, registry: CollectorRegistry, gate: OperatorGate) -> None:
        self._registry = registry
        self._gate = gate
        self.operations = [
            Operation(
                "GET", "/metrics", self.scrape, "The node's figures in Prometheus text format",
                auth=Auth.OPERATOR, media_type=CONTENT_TYPE_LATEST,
            ),
        ]  # fmt: skip

    async def scrape(self, request: Request) -> Response:
        self._gate.check(request.headers.get("authorization", ""), client_address(request))
        return Response(
            generate_latest(self._registry),
            media_type=CONTENT_TYPE_LATEST,
            headers={"cache-control": "no-store"},
        )

    def routes(self) -> list[Route]:
        return routes_of(self.operations)
