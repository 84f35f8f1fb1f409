"""The HTTP frontend: waitress serving the Bottle app on a thread it owns."""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import waitress
import waitress.server
from waitress import wasyncore

from coordinator.errors import CoordinatorError

__all__ = ["HttpServer", "HttpServerError"]

logger = logging.getLogger(__name__)


class HttpServerError(CoordinatorError):
    """The server could not listen; the message names the address."""


class HttpServer:
    def __init__(
        self,
        app: Any,
        *,
        host: str,
        port: int,
        threads: int,
        max_request_body_size: int = 4 * 1024 * 1024,
    ) -> None:
        try:
            # Any: what stop() uses of waitress (effective_port, trigger, the channel
            # map) is not in its stubs.
            self._server = cast(
                Any,
                waitress.server.create_server(
                    app,
                    host=host,
                    port=port,
                    threads=threads,
                    ident="coordinator",
                    clear_untrusted_proxy_headers=True,
                    channel_timeout=30,
                    connection_limit=200,
                    # waitress buffers a body before the app sees it: bound what it keeps.
                    max_request_body_size=max_request_body_size,
                ),
            )
        except OSError as exc:
            raise HttpServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.host = host
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> HttpServer:
        self._thread.start()
        logger.info("HTTP API listening on %s:%d", self.host, self.port)
        return self

    def _run(self) -> None:
        try:
            self._server.run()
        except Exception:
            if not getattr(self._server, "was_shutdown", False):
                logger.exception("HTTP server stopped on an error")

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and every connection, then the worker threads."""
        server = self._server
        server.was_shutdown = True
        # waitress has no stop(): closing every channel empties the asyncore map,
        # which ends run(). The wake-up trigger goes last, pulled first, so that the
        # loop leaves its select() at once rather than at its next timeout.
        trigger = server.trigger
        for channel in list(server._map.values()):
            if channel is trigger:
                continue
            try:
                if channel is server:
                    # The listener alone: its own close() would close the trigger too.
                    wasyncore.dispatcher.close(server)
                else:
                    channel.handle_close()
            except Exception:
                logger.debug("closing a channel failed", exc_info=True)
        try:
            trigger.pull_trigger()
            trigger.close()
        except Exception:
            logger.debug("closing the trigger failed", exc_info=True)
        server.task_dispatcher.shutdown(timeout=timeout)
        self._thread.join(timeout)
        logger.info("HTTP API stopped")
