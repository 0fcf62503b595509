"""Command line: `townhall serve` and `townhall loadtest`."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from townhall.admission.signing import MIN_SECRET_BYTES
from townhall.config import ADMIN_TOKEN_MIN_CHARS, Settings, load_settings
from townhall.forwarded import TrustedProxies
from townhall.nodes.roles import EDGE, ROLES, UnknownRole, check_role
from townhall.state.choose import UnknownStateUrl, check_state_url


def _refusal(settings: Settings) -> str | None:
    """Why the server must not start with these settings, in words for the operator."""
    if settings.admin_token and len(settings.admin_token) < ADMIN_TOKEN_MIN_CHARS:
        return (
            f"TOWNHALL_ADMIN_TOKEN must be at least {ADMIN_TOKEN_MIN_CHARS} characters "
            "(python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    if settings.secret and len(settings.secret.encode()) < MIN_SECRET_BYTES:
        return (
            f"TOWNHALL_SECRET must be at least {MIN_SECRET_BYTES} bytes, the same on every "
            "node (python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    try:
        TrustedProxies(settings.http.trusted_proxies, settings.http.forwarded_header)
    except ValueError as bad:
        return f"--trusted-proxies / TOWNHALL_HTTP_TRUSTED_PROXIES: {bad}"
    try:
        check_role(settings.role)
    except UnknownRole as bad:
        return str(bad)
    if settings.role == EDGE and settings.state == "memory":
        return "--role edge needs the deployment's shared state: --state redis://HOST:PORT/DB"
    try:
        check_state_url(settings.state)
    except UnknownStateUrl as bad:
        return str(bad)
    if settings.captions.active and settings.captions.model:
        from townhall.captions.models import check_model

        try:
            check_model(settings.captions.model)
        except (OSError, ValueError) as bad:
            return f"--captions-model / TOWNHALL_CAPTIONS_MODEL: {bad}"
    return None


def _serve(args: argparse.Namespace) -> int:
    from townhall.app import serve

    settings = load_settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        store=args.store,
        state=args.state,
        public_url=args.public_url,
        role=args.role,
        shared_recordings=args.shared_recordings,
    )
    if args.trusted_proxies is not None:
        proxies = tuple(part.strip() for part in args.trusted_proxies.split(",") if part.strip())
        settings = replace(settings, http=replace(settings.http, trusted_proxies=proxies))
    if args.stream_workers is not None or args.stream_port is not None:
        edge = replace(
            settings.edge,
            stream_workers=settings.edge.stream_workers
            if args.stream_workers is None
            else args.stream_workers,
            stream_port=settings.edge.stream_port if args.stream_port is None else args.stream_port,
        )
        settings = replace(settings, edge=edge)
    if args.captions_model is not None:  # captions: --captions-model
        settings = replace(settings, captions=replace(settings.captions, model=args.captions_model))
    refusal = _refusal(settings)
    if refusal is not None:
        print(f"townhall: {refusal}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"townhall ({settings.role}) listening on http://{host}:{settings.port}/", flush=True)
    if settings.edge.stream_workers:
        stream_port = settings.edge.resolved_stream_port(settings.port)
        print(
            f"{settings.edge.stream_workers} stream workers on http://{host}:{stream_port}/",
            flush=True,
        )
    serve(settings)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["loadtest"]:
        from townhall.loadtest.cli import main as loadtest_main

        return loadtest_main(argv[1:])
    if argv[:1] == ["plan"]:
        from townhall.plan.cli import main as plan_main

        return plan_main(argv[1:])
    parser = argparse.ArgumentParser(prog="townhall", description="live audio rooms server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server with embedded defaults")
    serve.add_argument("--host", default=None, help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (8080)")
    serve.add_argument("--data-dir", type=Path, default=None, help="SQLite and recordings (./var)")
    serve.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="durable store: sqlite:///PATH (default: under the data dir) or "
        "postgresql://USER@HOST:PORT/DB (env TOWNHALL_STORE)",
    )
    serve.add_argument(
        "--stream-workers",
        type=int,
        default=None,
        help="extra processes that serve only the live stream (0: this process serves it)",
    )
    serve.add_argument(
        "--stream-port", type=int, default=None, help="the stream workers' port (port + 1)"
    )
    serve.add_argument(
        "--trusted-proxies",
        default=None,
        metavar="CIDR[,CIDR...]",
        help="proxies whose X-Forwarded-For/-Proto name the client (none)",
    )
    serve.add_argument(
        "--state",
        default=None,
        help="shared live state: memory (default) or redis://host:port/db (env TOWNHALL_STATE)",
    )
    serve.add_argument(
        "--public-url",
        default=None,
        help="this node's base URL for clients (http://HOST:PORT); env TOWNHALL_PUBLIC_URL",
    )
    serve.add_argument(
        "--role",
        default=None,
        choices=ROLES,
        help="all (default): stages and listeners; origin: stages; edge: listeners "
        "(relays each program once from its origin); env TOWNHALL_ROLE",
    )
    serve.add_argument(
        "--shared-recordings",
        default=None,
        metavar="DIR",
        help="recordings directory every origin shares (e.g. an NFS mount), so an origin "
        "that takes a space over after a crash continues its recording; default: "
        "DATA_DIR/recordings; env TOWNHALL_SHARED_RECORDINGS",
    )
    serve.add_argument(
        "--captions-model",
        default=None,
        metavar="DIR",
        help="model directory for live captions: pocketsphinx, Vosk or faster-whisper "
        "(CTranslate2), told by its files (default: pocketsphinx's bundled English); "
        "env TOWNHALL_CAPTIONS_MODEL",
    )
    commands.add_parser("loadtest", help="flash-crowd rehearsal (townhall loadtest --help)")
    commands.add_parser("plan", help="nodes for a crowd, from bench figures (--help)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        if args.store is not None:
            from townhall.store.engine import StoreUrlError, backend_name

            try:
                backend_name(args.store)
            except StoreUrlError as error:
                parser.error(str(error))
        return _serve(args)
    return 2
