"""Runs the ASGI app on uvicorn with one addition: the connection's transport.

The live stream writes shared chunks straight to sockets (see api/live.py);
uvicorn keeps the transport to itself, so our protocol subclass puts it into
the scope's extensions, which is the ASGI way to offer server extras.
"""

from __future__ import annotations

import logging

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from townhall.api.live import TRANSPORT_EXTENSION
from townhall.config import Settings

log = logging.getLogger(__name__)


class TransportExposingProtocol(HttpToolsProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope["extensions"] = {TRANSPORT_EXTENSION: self.transport}  # type: ignore[typeddict-unknown-key]


def uvicorn_config(app: object, settings: Settings, **extra: object) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=settings.host,
        port=settings.port,
        http=TransportExposingProtocol,
        loop="uvloop",
        lifespan="on",
        timeout_keep_alive=15,
        timeout_graceful_shutdown=5,
        access_log=False,
        log_level="info",
        server_header=False,
        **extra,  # type: ignore[arg-type]
    )


def serve(settings: Settings) -> None:
    from townhall.app import create_app

    config = uvicorn_config(create_app(settings), settings)
    server = uvicorn.Server(config)
    server.run()
