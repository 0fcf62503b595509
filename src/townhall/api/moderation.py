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
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
from townhall.api.paths import user_id
from townhall.domain.errors import Invalid
from townhall.domain.moderation import ReportReason, Subject, transparency_rows
from townhall.service.moderation import OPERATOR

if TYPE_CHECKING:
    from townhall.services import Services

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


async def _body(services: Services, request: Request, model: type[Body]) -> Body:
    return await read_model(request, model, services.settings.http.max_body_bytes)


async def _operator(services: Services, request: Request) -> None:
    services.operator_gate.check(request.headers.get("authorization", ""), client_address(request))


async def _moderator(services: Services, request: Request) -> str:
    """ "operator", or the id of a user the operator made a moderator."""
    if request.headers.get("authorization"):
        token, _ = presented_token(request)
        user = await services.accounts.user_for(token)
        if user is None:
            await _operator(services, request)
            return OPERATOR
    else:
        user = await require_user(request, services.accounts)
    return await services.moderation.require_moderator(user)


# -- anyone --------------------------------------------------------------------


async def file_report(services: Services, request: Request) -> Response:
    reporter = await optional_user(request, services.accounts)
    body = await _body(services, request, NewReport)
    if (body.space_id is None) == (body.user_id is None):
        raise Invalid("name exactly one of space_id or user_id", code="invalid_subject")
    subject, subject_id = (
        (Subject.SPACE, body.space_id) if body.space_id else (Subject.USER, body.user_id)
    )
    assert subject_id is not None
    report = await services.moderation.report(
        reporter, client_address(request), subject, subject_id, body.reason, body.details
    )
    return JSONResponse(report.to_json(), status_code=201, headers=NO_STORE)


async def report_reasons(services: Services, request: Request) -> Response:
    reasons = [reason.value for reason in ReportReason]
    return JSONResponse({"reasons": reasons}, headers={"cache-control": "public, max-age=3600"})


async def transparency(services: Services, request: Request) -> Response:
    query = parse_query(ExportQuery, request)
    report = await services.moderation.transparency()
    if query.format == "csv":
        rows = [("section", "key", "value"), *transparency_rows(report)]
        return _csv(rows, "transparency.csv", PUBLIC_FIGURES)
    return JSONResponse(report, headers=PUBLIC_FIGURES)


# -- signed-in users -------------------------------------------------------------


async def my_statements(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    statements = await services.moderation.statements(user)
    return JSONResponse({"statements": statements}, headers=NO_STORE)


async def my_blocks(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    return JSONResponse({"blocked": await services.moderation.blocked(user)}, headers=NO_STORE)


async def block_user(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    body = await _body(services, request, UserTarget)
    await services.moderation.block(user, body.user_id)
    return JSONResponse({"blocked": await services.moderation.blocked(user)}, status_code=201)


async def unblock_user(services: Services, request: Request) -> Response:
    user = await require_user(request, services.accounts)
    await services.moderation.unblock(user, user_id(request))
    return Response(status_code=204)


# -- moderators --------------------------------------------------------------------


async def report_queue(services: Services, request: Request) -> Response:
    await _moderator(services, request)
    query = parse_query(QueueQuery, request)
    queued = await services.moderation.queue(query.limit, query.offset)
    reports = [report.to_json() | {"subject_username": name} for report, name in queued]
    return JSONResponse({"reports": reports}, headers=NO_STORE)


async def take_action(services: Services, request: Request) -> Response:
    moderator = await _moderator(services, request)
    body = await _body(services, request, NewAction)
    action = await services.moderation.act(
        moderator, body.action, body.target_id, body.ground, body.explanation, body.report_id
    )
    return JSONResponse(action.statement(), status_code=201, headers=NO_STORE)


async def audit_log(services: Services, request: Request) -> Response:
    await _moderator(services, request)
    query = parse_query(AuditQuery, request)
    if query.format == "csv":
        text = await services.moderation.audit_csv(query.after, query.limit)
        headers = {**NO_STORE, "content-disposition": 'attachment; filename="audit.csv"'}
        return Response(text, media_type=CSV_TYPE, headers=headers)
    entries = await services.moderation.audit_page(query.after, query.limit)
    return JSONResponse({"entries": entries}, headers=NO_STORE)


async def verify_audit_log(services: Services, request: Request) -> Response:
    await _moderator(services, request)
    return JSONResponse((await services.moderation.verify()).to_json(), headers=NO_STORE)


# -- the operator ------------------------------------------------------------------


async def grant_moderator(services: Services, request: Request) -> Response:
    await _operator(services, request)
    body = await _body(services, request, UserTarget)
    await services.moderation.grant(body.user_id)
    return JSONResponse({"ok": True}, status_code=201)


async def revoke_moderator(services: Services, request: Request) -> Response:
    await _operator(services, request)
    await services.moderation.revoke(user_id(request))
    return Response(status_code=204)


MODERATOR = Auth.USER
"""A moderator's user token or session, or the operator token (see _moderator)."""

OPERATIONS = [
        Operation("POST", "/api/reports", file_report,
                  "Report a space or a user", ReportOut, status=201, body=NewReport,
                  auth=Auth.OPTIONAL, refusals=(404, 429)),
        Operation("GET", "/api/reports/reasons", report_reasons,
                  "The reasons a report may give", ReportReasons),
        Operation("GET", "/api/transparency", transparency,
                  "Reports received, actions taken, median time to action (JSON or CSV)",
                  Transparency, query=ExportQuery, refusals=(422,), other_media_types=(CSV,)),
        Operation("GET", "/api/me/statements", my_statements,
                  "My statements of reasons: the moderation decisions that affect me",
                  Statements, auth=Auth.USER),
        Operation("GET", "/api/me/blocks", my_blocks,
                  "Who I blocked from my spaces", Blocked, auth=Auth.USER),
        Operation("POST", "/api/me/blocks", block_user,
                  "Block a user from all my spaces", Blocked, status=201, body=UserTarget,
                  auth=Auth.USER, refusals=(404, 409)),
        Operation("DELETE", "/api/me/blocks/{user_id}", unblock_user,
                  "Unblock a user (from my next space on)", status=204, auth=Auth.USER),
        Operation("GET", "/api/moderation/reports", report_queue,
                  "The open reports, oldest first", ReportQueue, auth=MODERATOR,
                  query=QueueQuery, refusals=(422, 429)),
        Operation("POST", "/api/moderation/actions", take_action,
                  "Act on a space, recording, clip or user; returns the statement of reasons",
                  StatementOut, status=201, body=NewAction, auth=MODERATOR,
                  refusals=(404, 409, 429)),
        Operation("GET", "/api/moderation/audit", audit_log,
                  "The hash-chained audit log (JSON or CSV)", AuditPage, auth=MODERATOR,
                  query=AuditQuery, refusals=(422, 429), other_media_types=(CSV,)),
        Operation("GET", "/api/moderation/audit/verify", verify_audit_log,
                  "Re-compute the audit chain", ChainCheckOut, auth=MODERATOR, refusals=(429,)),
        Operation("POST", "/api/moderation/moderators", grant_moderator,
                  "Make a user a moderator", Done, status=201, body=UserTarget, auth=Auth.OPERATOR,
                  refusals=(404,)),
        Operation("DELETE", "/api/moderation/moderators/{user_id}", revoke_moderator,
                  "Take a user's moderator role away", status=204, auth=Auth.OPERATOR),
]  # fmt: skip


def routes(services: Services) -> list[Route]:
    return routes_of(OPERATIONS, services)
