"""Command line: `townhall serve` and `townhall loadtest`."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

from townhall.config import load_settings


def _serve(args: argparse.Namespace) -> int:
    from townhall.server import serve
    from townhall.state.choose import UnknownStateUrl, check_state_url

    settings = load_settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        state=args.state,
        public_url=args.public_url,
    )
    if args.stream_workers is not None or args.stream_port is not None:
        edge = replace(
            settings.edge,
            stream_workers=settings.edge.stream_workers
            if args.stream_workers is None
            else args.stream_workers,
            stream_port=settings.edge.stream_port if args.stream_port is None else args.stream_port,
        )
        settings = replace(settings, edge=edge)
    try:
        check_state_url(settings.state)
    except UnknownStateUrl as bad:
        print(f"townhall: {bad}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"townhall listening on http://{host}:{settings.port}/", flush=True)
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
    parser = argparse.ArgumentParser(prog="townhall", description="live audio rooms server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server with embedded defaults")
    serve.add_argument("--host", default=None, help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (8080)")
    serve.add_argument("--data-dir", type=Path, default=None, help="SQLite and recordings (./var)")
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
        "--state",
        default=None,
        help="shared live state: memory (default) or redis://host:port/db (env TOWNHALL_STATE)",
    )
    serve.add_argument(
        "--public-url",
        default=None,
        help="this node's base URL for clients (http://HOST:PORT); env TOWNHALL_PUBLIC_URL",
    )
    commands.add_parser("loadtest", help="flash-crowd rehearsal (townhall loadtest --help)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2
