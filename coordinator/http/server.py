"""The HTTP frontend: waitress serving the Bottle app on a thread it owns."""

from __future__ import annotations

import json
import logging
import resource
import threading
import time
from http import HTTPStatus
from typing import Any, cast

import waitress
import waitress.server
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import build_http_date

from coordinator.errors import CoordinatorError
from coordinator.http.plain_gets import plain_gets
from coordinator.http.published import PublishedAnswers
from coordinator.http.queue_log import summarize_queue_warnings

__all__ = ["HttpServer", "HttpServerError", "raise_open_files_limit"]

logger = logging.getLogger(__name__)

_FILES_KEPT = 256
"""Open files kept for all but the HTTP connections: the stores' connections, Redis,
logs, the embedded servers' pipes."""


_ACCEPTS_PER_TURN = 256


def raise_open_files_limit() -> int:
    """Raise the soft limit of open files to the hard one, so that the connections the
    server is sized for can all be open; the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            logger.warning("open files limit stays at %d (hard %d): %s", soft, hard, exc)
            return soft
        logger.info("open files limit raised from %d to its hard limit %d", soft, hard)
        return hard
    logger.info("open files limit is %d", soft)
    return soft


def _connection_limit(wanted: int) -> int:
    """``wanted``, or fewer when the open-files limit would not allow as many."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or wanted + _FILES_KEPT <= soft:
        return wanted
    allowed = max(10, soft - _FILES_KEPT)
    logger.warning(
        "HTTP_CONNECTION_LIMIT=%d does not fit under the open files limit %d: %d connections",
        wanted,
        soft,
        allowed,
    )
    return allowed


class _JsonErrorTask(ErrorTask):
    """What waitress refuses itself (a body past its buffer, a malformed request, a
    header too large) answered in JSON like every other error."""

    def execute(self) -> None:
        # Any: the request's error is typed as waitress's base Error, without its fields.
        error = cast(Any, self.request).error
        body = json.dumps({"error": f"{error.reason}: {error.body}", "status": error.code}).encode()
        self.status = f"{error.code} {error.reason}"
        cast(list[tuple[str, str]], self.response_headers).append(
            ("Content-Type", "application/json")
        )
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    error_task_class = _JsonErrorTask
    started: float | None = None
    """When the request being received began arriving; None between requests."""
    _timed: object = None

    def received(self, data: bytes) -> bool:
        published: PublishedAnswers | None = getattr(self.server, "published", None)
        if published is not None:
            data = _answer_plain_gets(self, data, published, self.adj)
            if not data:
                return True
        result: bool = super().received(data)
        partial = self.request
        if partial is None:
            self.started = None
        elif partial is not self._timed:
            self.started = time.time()
        self._timed = partial
        return result


class _Listener(TcpWSGIServer):
    channel_class = _Channel
    request_timeout: float = 30.0
    """Seconds a request may take to arrive whole, however steadily it trickles in."""
    published: PublishedAnswers | None = None
    """Answers the listener serves itself, without a worker thread."""

    def add_task(self, task: Any) -> None:
        # Called with the channel's requests lock held, when its first request is whole
        # (on the loop's thread) or the one before it is answered (on a worker's).
        if self.published is None or not _answer_published(task, self.published, self.adj):
            super().add_task(task)

    def maintenance(self, now: float) -> None:
        # waitress closes a connection idle for channel_timeout; one that sends a byte
        # now and then is never idle, and would hold its slot for ever.
        super().maintenance(cast(Any, now))  # a float: the stubs say int
        cutoff = now - self.request_timeout
        for channel in cast(Any, self).active_channels.values():
            started = getattr(channel, "started", None)
            if started is not None and started < cutoff and not channel.requests:
                channel.will_close = True

    def handle_accept(self) -> None:
        # waitress takes one connection per turn of its loop, and each turn polls every
        # open connection: a flood of a thousand would keep a health check queued
        # behind it for a second. Take in what is waiting, up to the limit.
        # Any: the channel map is not in waitress's stubs.
        channels: dict[int, Any] = cast(Any, self)._map
        for _ in range(_ACCEPTS_PER_TURN):
            if len(channels) >= self.adj.connection_limit:
                return
            before = len(channels)
            super().handle_accept()
            if len(channels) == before:
                return


def _answer_plain_gets(
    channel: Any, data: bytes, published: PublishedAnswers, adj: Adjustments
) -> bytes:
    """Answer the plain keep-alive GETs of published answers at the front of ``data``
    (``plain_gets``) at once, and send them on the spot; what is left for waitress.

    Only between requests, with nothing waiting to be sent: answers leave in the order
    asked. An answer not fresh, or a client not reading what it was sent, stops here,
    and that request and the rest go the usual way."""
    if (
        channel.request is not None
        or channel.requests
        or channel.total_outbufs_len
        or channel.will_close
        or channel.close_when_flushed
    ):
        return data
    answers: list[bytes] = []
    served = 0
    for request in plain_gets(data, published.keys):
        answer = published.get(request.path)
        if answer is None:
            break
        answers.append(_answer_bytes(answer, adj))
        served = request.end
    if not answers:
        return data
    out = b"".join(answers)
    if len(out) > adj.outbuf_high_watermark:
        return data
    try:
        sent = channel.send(out)
    except OSError:
        channel.handle_close()
        return b""
    if sent < len(out):
        # The rest goes as any answer does, when the socket takes it.
        try:
            channel.write_soon(out[sent:])
        except ClientDisconnected:
            return b""
    return data[served:]


def _answer_bytes(answer: tuple[int, bytes], adj: Adjustments) -> bytes:
    status, body = answer
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Content-Type: application/json\r\n"
        f"Date: {build_http_date(int(time.time()))}\r\n"
        + ("Retry-After: 1\r\n" if status == 503 else "")
        + f"Server: {adj.ident}\r\n\r\n"
    ).encode("latin-1") + body


def _answer_published(channel: Any, published: PublishedAnswers, adj: Adjustments) -> bool:
    """Answer at once the channel's waiting requests that are plain keep-alive GETs of a
    published answer; whether none is left for a worker.

    A worker costs two handovers between threads per request (the loop to the worker,
    the worker back to the loop), each a wait for the GIL that the actors of the order
    path hold most of the time under load: a published answer is bytes ready to send,
    written where it is read. Anything else (HTTP/1.0, a connection to close, a body
    expected, an answer not fresh, a client not reading what it was sent) goes the
    usual way.
    """
    requests = channel.requests
    while requests:
        request = requests[0]
        if (
            request.error is not None
            or request.command != "GET"
            or request.version != "1.1"
            or "close" in request.headers.get("CONNECTION", "").lower()
            or request.expect_continue
            or request.headers.get("CONTENT_LENGTH", "0") != "0"
            or request.headers.get("TRANSFER_ENCODING")
        ):
            return False
        answer = published.get(request.path)
        if answer is None:
            return False
        out = _answer_bytes(answer, adj)
        # write_soon would wait, on the loop's own thread, for the loop to drain it.
        if channel.total_outbufs_len + len(out) > adj.outbuf_high_watermark:
            return False
        try:
            channel.write_soon(out)
        except ClientDisconnected:
            # As a worker would: the connection closes, what it still asked is dropped.
            channel.close_when_flushed = True
            for waiting in requests:
                waiting.close()
            requests.clear()
            return True
        request.close()
        requests.pop(0)
        channel.last_activity = time.time()
    return True


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
        channel_timeout: int = 30,
        connection_limit: int = 2000,
        cleanup_interval: int = 10,
        request_timeout: float = 30.0,
        published: PublishedAnswers | None = None,
    ) -> None:
        """``published``: answers to serve from the listener's own loop, not a worker
        (with a single listener; several addresses are served the usual way)."""
        settings: dict[str, Any] = {
            "host": host,
            "port": port,
            "threads": threads,
            "ident": "coordinator",
            "clear_untrusted_proxy_headers": True,
            # Idle and stalled connections are closed after channel_timeout, and enough
            # may be open that slow clients cannot crowd out a health check.
            "channel_timeout": channel_timeout,
            "connection_limit": _connection_limit(connection_limit),
            "cleanup_interval": cleanup_interval,
            # select() cannot watch a descriptor past 1023; poll() can.
            "asyncore_use_poll": True,
            # waitress buffers a body before the app sees it: bound what it keeps.
            "max_request_body_size": max_request_body_size,
        }
        summarize_queue_warnings(threads)
        try:
            adjustments = Adjustments(**settings)
            # Any: what stop() uses of waitress (effective_port, trigger, the channel
            # map) is not in its stubs.
            self._server = cast(
                Any,
                _Listener(app, adj=adjustments, sockinfo=cast(Any, adjustments.listen[0]))
                if len(adjustments.listen) == 1
                # A name with several addresses: waitress's own listener on each.
                else waitress.server.create_server(app, **settings),
            )
            self._server.request_timeout = request_timeout
            self._server.published = published
        except OSError as exc:
            raise HttpServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self.app = app
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
