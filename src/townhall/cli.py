"""Command line: `townhall serve` and `townhall loadtest`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from townhall.config import load_settings


def _serve(args: argparse.Namespace) -> int:
    from townhall.server import serve

    settings = load_settings(host=args.host, port=args.port, data_dir=args.data_dir)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"townhall listening on http://{host}:{settings.port}/", flush=True)
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
    commands.add_parser("loadtest", help="flash-crowd rehearsal (townhall loadtest --help)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2
