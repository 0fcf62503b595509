"""Reports, the moderators' queue and decisions, statements of reasons, hosts' blocks,
the audit log and the transparency export.

Who moderates: the operator (a Bearer TOWNHALL_ADMIN_TOKEN, checked by the same
OperatorGate as the other operator endpoints) and the users the operator made
moderators. A bearer token that names a user is never counted as a wrong operator
guess; one that names nobody is checked as the operator's, so guessing stays slow.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from townhall.api.auth import client_address, optional_user, presented_token, require_user
from townhall.api.bodies import Body, parse_query, read_model
from townhall.api.contract import Auth, Operation, routes_of
from townhall.api.moderation_models import (
    AuditPage,
    AuditQuery,
    Blocked,
    ChainCheckOut,
    Done,
    ExportQuery,
    NewAction,
    NewReport,
    QueueQuery,
    ReportOut,
    ReportQueue,
    ReportReasons,
    StatementOut,
    Statements,
    Transparency,
    UserTarget,
)
from townhall.api.operations import OperatorGate
from townhall.api.paths import user_id
from townhall.domain.errors import Invalid
from townhall.domain.moderation import ReportReason, Subject, transparency_rows
from townhall.service.accounts import Accounts
from townhall.service.moderation import OPERATOR, Moderation

NO_STORE = {"cache-control": "no-store"}
PUBLIC_FIGURES = {"cache-control": "public, max-age=10"}
"""The transparency export: the same for everyone, recomputed at most every 10 s."""
CSV = "text/csv"
CSV_TYPE = f"{CSV}; charset=utf-8"


def _csv(
    rows: Sequence[Sequence[object]], filename: str, cache: dict[str, str] = NO_STORE
) -> Response:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    headers = {**cache, "content-disposition": f'attachment; filename="{filename}"'}
    return Response(out.getvalue(), media_type=CSV_TYPE, headers=headers)


class ModerationApi:
    """The handlers, built once with what they need (no app.state lookups)."""

    def __init__(
        self,
        moderation: Moderation,
        accounts: Accounts,
        gate: OperatorGate,
        max_body_bytes: int,
    ) -> None:
        self._moderation = moderation
        self._accounts = accounts
        self._gate = gate
        self._max_body_bytes = max_body_bytes

    async def _body(self, request: Request, model: type[Body]) -> Body:
        return await read_model(request, model, self._max_body_bytes)

    async def _operator(self, request: Request) -> None:
        self._gate.check(request.headers.get("authorization", ""), client_address(request))

    async def _moderator(self, request: Request) -> str:
        """ "operator", or the id of a user the operator made a moderator."""
        if request.headers.get("authorization"):
            token, _ = presented_token(request)
            user = await self._accounts.user_for(token)
            if user is None:
                await self._operator(request)
                return OPERATOR
        else:
            user = await require_user(request)
        return await self._moderation.require_moderator(user)

    # -- anyone --------------------------------------------------------------------

    async def file_report(self, request: Request) -> Response:
        reporter = await optional_user(request)
        body = await self._body(request, NewReport)
        if (body.space_id is None) == (body.user_id is None):
            raise Invalid("name exactly one of space_id or user_id", code="invalid_subject")
        subject, subject_id = (
            (Subject.SPACE, body.space_id) if body.space_id else (Subject.USER, body.user_id)
        )
        assert subject_id is not None
        report = await self._moderation.report(
            reporter, client_address(request), subject, subject_id, body.reason, body.details
        )
        return JSONResponse(report.to_json(), status_code=201, headers=NO_STORE)

    async def report_reasons(self, request: Request) -> Response:
        reasons = [reason.value for reason in ReportReason]
        return JSONResponse({"reasons": reasons}, headers={"cache-control": "public, max-age=3600"})

    async def transparency(self, request: Request) -> Response:
        query = parse_query(ExportQuery, request)
        report = await self._moderation.transparency()
        if query.format == "csv":
            rows = [("section", "key", "value"), *transparency_rows(report)]
            return _csv(rows, "transparency.csv", PUBLIC_FIGURES)
        return JSONResponse(report, headers=PUBLIC_FIGURES)

    # -- signed-in users -------------------------------------------------------------

    async def my_statements(self, request: Request) -> Response:
        user = await require_user(request)
        statements = await self._moderation.statements(user)
        return JSONResponse({"statements": statements}, headers=NO_STORE)

    async def my_blocks(self, request: Request) -> Response:
        user = await require_user(request)
        return JSONResponse({"blocked": await self._moderation.blocked(user)}, headers=NO_STORE)

    async def block_user(self, request: Request) -> Response:
        user = await require_user(request)
        body = await self._body(request, UserTarget)
        await self._moderation.block(user, body.user_id)
        return JSONResponse({"blocked": await self._moderation.blocked(user)}, status_code=201)

    async def unblock_user(self, request: Request) -> Response:
        user = await require_user(request)
        await self._moderation.unblock(user, user_id(request))
        return Response(status_code=204)

    # -- moderators --------------------------------------------------------------------

    async def report_queue(self, request: Request) -> Response:
        await self._moderator(request)
        query = parse_query(QueueQuery, request)
        reports = await self._moderation.queue(query.limit, query.offset)
        return JSONResponse({"reports": [r.to_json() for r in reports]}, headers=NO_STORE)

    async def take_action(self, request: Request) -> Response:
        moderator = await self._moderator(request)
        body = await self._body(request, NewAction)
        action = await self._moderation.act(
            moderator, body.action, body.target_id, body.ground, body.explanation, body.report_id
        )
        return JSONResponse(action.statement(), status_code=201, headers=NO_STORE)

    async def audit_log(self, request: Request) -> Response:
        await self._moderator(request)
        query = parse_query(AuditQuery, request)
        if query.format == "csv":
            text = await self._moderation.audit_csv(query.after, query.limit)
            headers = {**NO_STORE, "content-disposition": 'attachment; filename="audit.csv"'}
            return Response(text, media_type=CSV_TYPE, headers=headers)
        entries = await self._moderation.audit_page(query.after, query.limit)
        return JSONResponse({"entries": entries}, headers=NO_STORE)

    async def verify_audit_log(self, request: Request) -> Response:
        await self._moderator(request)
        return JSONResponse((await self._moderation.verify()).to_json(), headers=NO_STORE)

    # -- the operator ------------------------------------------------------------------

    async def grant_moderator(self, request: Request) -> Response:
        await self._operator(request)
        body = await self._body(request, UserTarget)
        await self._moderation.grant(body.user_id)
        return JSONResponse({"ok": True}, status_code=201)

    async def revoke_moderator(self, request: Request) -> Response:
        await self._operator(request)
        await self._moderation.revoke(user_id(request))
        return Response(status_code=204)


MODERATOR = Auth.USER
"""A moderator's user token or session, or the operator token (see _moderator)."""

def operations(api: ModerationApi) -> list[Operation]:
    """The operations, their endpoints bound to `api`."""
    return [
        Operation("POST", "/api/reports", api.file_report,
                  "Report a space or a user", ReportOut, status=201, body=NewReport,
                  auth=Auth.OPTIONAL, refusals=(404, 429)),
        Operation("GET", "/api/reports/reasons", api.report_reasons,
                  "The reasons a report may give", ReportReasons),
        Operation("GET", "/api/transparency", api.transparency,
                  "Reports received, actions taken, median time to action (JSON or CSV)",
                  Transparency, query=ExportQuery, refusals=(422,), other_media_types=(CSV,)),
        Operation("GET", "/api/me/statements", api.my_statements,
                  "My statements of reasons: the moderation decisions that affect me",
                  Statements, auth=Auth.USER),
        Operation("GET", "/api/me/blocks", api.my_blocks,
                  "Who I blocked from my spaces", Blocked, auth=Auth.USER),
        Operation("POST", "/api/me/blocks", api.block_user,
                  "Block a user from all my spaces", Blocked, status=201, body=UserTarget,
                  auth=Auth.USER, refusals=(404, 409)),
        Operation("DELETE", "/api/me/blocks/{user_id}", api.unblock_user,
                  "Unblock a user (from my next space on)", status=204, auth=Auth.USER),
        Operation("GET", "/api/moderation/reports", api.report_queue,
                  "The open reports, oldest first", ReportQueue, auth=MODERATOR,
                  query=QueueQuery, refusals=(422, 429)),
        Operation("POST", "/api/moderation/actions", api.take_action,
                  "Act on a space, recording, clip or user; returns the statement of reasons",
                  StatementOut, status=201, body=NewAction, auth=MODERATOR,
                  refusals=(404, 409, 429)),
        Operation("GET", "/api/moderation/audit", api.audit_log,
                  "The hash-chained audit log (JSON or CSV)", AuditPage, auth=MODERATOR,
                  query=AuditQuery, refusals=(422, 429), other_media_types=(CSV,)),
        Operation("GET", "/api/moderation/audit/verify", api.verify_audit_log,
                  "Re-compute the audit chain", ChainCheckOut, auth=MODERATOR, refusals=(429,)),
        Operation("POST", "/api/moderation/moderators", api.grant_moderator,
                  "Make a user a moderator", Done, status=201, body=UserTarget, auth=Auth.OPERATOR,
                  refusals=(404,)),
        Operation("DELETE", "/api/moderation/moderators/{user_id}", api.revoke_moderator,
                  "Take a user's moderator role away", status=204, auth=Auth.OPERATOR),
]  # fmt: skip


OPERATIONS = operations(ModerationApi.__new__(ModerationApi))
"""For the OpenAPI document (names and models only: this instance is never called)."""


def routes(
    moderation: Moderation, accounts: Accounts, gate: OperatorGate, max_body_bytes: int
) -> list[Route]:
    """The routes bound to their collaborators: for a composition root that builds the
    services before the routes (issue 7)."""
    return routes_of(operations(ModerationApi(moderation, accounts, gate, max_body_bytes)))


def deferred_routes(api: Callable[[], ModerationApi]) -> list[Route]:
    """The same routes, bound when first called to the ModerationApi that `api` returns:
    for a composition root that builds its services after its routes (app.py today)."""

    def endpoint(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            handler: Callable[[Request], Awaitable[Response]] = getattr(api(), name)
            return await handler(request)

        handle.__name__ = name
        return handle

    return [Route(op.path, endpoint(op.operation_id), methods=[op.method]) for op in OPERATIONS]
