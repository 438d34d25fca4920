"""The gateway's client towards the services: a lean pooled HTTP/1.1 client on asyncio and httptools.

httpx cost the gateway more per request than the service's own work (measured with py-spy under
wrk: about 60 % of the gateway's time was inside httpx and httpcore: request models, pool
bookkeeping, a readability probe of every pooled socket). This client does what the hop needs and
nothing else: keep-alive connections per service (LIFO, at most `max_connections` in use), one
request written in one call (the body is already read, never more than GATEWAY_MAX_BODY_BYTES),
the answer's headers parsed by httptools and its body streamed back with back-pressure.

A pooled connection idle for longer than `idle_seconds` is closed rather than reused, before the
service's keep-alive timeout (uvicorn: 5 s) can race a request on it; a reused connection that the
service closed before answering anything is retried once on a fresh one for idempotent methods.

A service may run as several replicas (`GATEWAY_<SERVICE>_URL` a comma-separated list): requests
go round robin over the replicas that are in. A replica that refuses the connection (or does not
accept it within the connect timeout) is taken out and the request goes to the next one (nothing
was sent, so any method may be retried); a background probe (GET /healthz, with back-off) puts it
back once it answers. When every replica is out each is still tried in turn, so a service that
comes back is found by the next request.

`HttpxUpstream` offers the same interface over an httpx transport (tests that put in-process
services behind the gateway).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

import httptools
import httpx

log = logging.getLogger("socialsec.gateway")

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
HIGH_WATER = 256 * 1024  # buffered answer bytes before the connection stops reading
LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """The service could not be reached or answered something that is not HTTP."""


class UpstreamConnectError(UpstreamError):
    """No connection to the service."""


class UpstreamClosed(UpstreamError):
    """The service closed the connection before answering."""

    def __init__(self, message: str, *, answered: bool) -> None:
        super().__init__(message)
        self.answered = answered


class Answer(Protocol):
    """A service's answer: status and headers at once, the body as it comes."""

    status: int
    headers: list[tuple[bytes, bytes]]

    def body(self, read_timeout: float) -> AsyncIterator[bytes]: ...

    async def release(self) -> None: ...


class Upstream(Protocol):
    async def request(
        self, service: str, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
    ) -> Answer: ...

    async def aclose(self) -> None: ...


class _Response:
    """One answer being read from one connection."""

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.keep_alive = False
        self.delimited = True  # Content-Length or chunked (otherwise the body ends when the service closes)
        self.released = False

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def feed(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered > HIGH_WATER:
            self.conn.pause()
        self._wake()

    def finish(self) -> None:
        self.complete = True
        self._wake()

    def fail(self, exc: BaseException) -> None:
        if self.complete:
            return
        self.error = exc
        if not self.started.done():
            self.started.set_exception(exc)
            self.started.exception()  # marked retrieved: the caller may be gone already
        self._wake()

    async def body(self, read_timeout: float) -> AsyncIterator[bytes]:
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.buffered < LOW_WATER:
                    self.conn.resume()
                yield chunk
                continue
            if self.complete:
                return
            if self.error is not None:
                raise self.error
            self.waiter = asyncio.get_running_loop().create_future()
            async with asyncio.timeout(read_timeout):
                await self.waiter
            self.waiter = None

    async def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.conn.done(reusable=self.complete and self.keep_alive and self.error is None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a service, answering one request at a time."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: _Response | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.head = False
        self.received = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.response is None:  # nothing asked: a service talking out of turn
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.response.fail(UpstreamError(f"malformed answer: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        r = self.response
        if r is not None and r.started.done() and not r.delimited and not r.complete:
            r.keep_alive = False
            r.finish()  # a body that ends with the connection
        self.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None and not self.response.complete:
            self.response.fail(UpstreamClosed("the service closed the connection", answered=self.received))

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        r = self.response
        assert r is not None
        r.status = self.parser.get_status_code()
        r.keep_alive = bool(self.parser.should_keep_alive())
        names = {k for k, _ in r.headers}
        r.delimited = b"content-length" in names or b"transfer-encoding" in names or r.status in (204, 304)
        if not r.started.done():
            r.started.set_result(None)
        if self.head:  # no body follows an answer to HEAD, whatever its Content-Length says
            r.keep_alive = False
            r.finish()

    def on_body(self, body: bytes) -> None:
        if self.response is not None and not self.head:
            self.response.feed(body)

    def on_message_complete(self) -> None:
        if self.response is not None:
            self.response.finish()

    # -- ours
    def send(self, data: bytes, *, head: bool) -> _Response:
        assert self.transport is not None
        self.head = head
        self.received = False
        self.response = _Response(self)
        self.transport.write(data)
        return self.response

    def pause(self) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def done(self, *, reusable: bool) -> None:
        self.resume()
        self.response = None
        if reusable and not self.closed:
            self.parser = httptools.HttpResponseParser(self)
            self.pool.put_back(self)
        else:
            self.close()
            self.pool.gone()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Pool:
    """The connections to one service."""

    def __init__(self, base_url: str, *, max_connections: int, connect_timeout: float, idle_seconds: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream URL must be http://host[:port]: {base_url}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/").encode()
        self.host_header = parts.netloc.encode()
        self.connect_timeout = connect_timeout
        self.idle_seconds = idle_seconds
        self.idle: deque[_Connection] = deque()
        self.slots = asyncio.Semaphore(max_connections)

    async def connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except TimeoutError as exc:
            raise UpstreamConnectError(f"connect to {self.host}:{self.port} timed out") from exc
        except OSError as exc:
            raise UpstreamConnectError(f"connect to {self.host}:{self.port}: {exc}") from exc
        return protocol

    def take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # the most recently used: the least likely to have been closed
            if not conn.closed and now - conn.idle_since < self.idle_seconds:
                return conn
            conn.close()
        return None

    def put_back(self, conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        self.idle.append(conn)
        self.slots.release()

    def gone(self) -> None:
        self.slots.release()

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> _Response:
        parts = [method, b" ", self.prefix, target, b" HTTP/1.1\r\nhost: ", self.host_header, b"\r\n"]
        for k, v in headers:
            parts += [k, b": ", v, b"\r\n"]
        if body or method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE"):
            parts += [b"content-length: ", str(len(body)).encode(), b"\r\n"]
        parts += [b"\r\n", body]
        data = b"".join(parts)
        head = method == b"HEAD"
        await self.slots.acquire()
        try:
            conn = self.take_idle()
            if conn is not None:
                response = conn.send(data, head=head)
                try:
                    await response.started
                    return response
                except UpstreamClosed as exc:
                    await response.release()
                    await self.slots.acquire()
                    if exc.answered or method not in IDEMPOTENT:
                        raise
                    # closed before answering anything, on a reused connection: once more on a fresh one
            conn = await self.connect()
            response = conn.send(data, head=head)
            await response.started
            return response
        except BaseException:
            if conn is not None and conn.response is not None:
                await conn.response.release()  # closes it and frees its slot
            else:
                self.slots.release()
            raise

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()


class _Replica:
    """One replica of a service: its pool, and whether it is in."""

    def __init__(self, url: str, pool: _Pool) -> None:
        self.url = url
        self.pool = pool
        self.down = False
        self.error = ""
        self.probe: asyncio.Task[None] | None = None


class _Service:
    """The replicas of one service, round robin over those that are in."""

    def __init__(self, name: str, urls: list[str], *, max_connections: int, connect_timeout: float,
                 idle_seconds: float, probe_seconds: float, on_state: Callable[[str, str, bool], None] | None) -> None:
        if not urls:
            raise ValueError(f"no upstream URL for {name}")
        self.name = name
        self.replicas = [
            _Replica(url, _Pool(url, max_connections=max_connections, connect_timeout=connect_timeout,
                                idle_seconds=idle_seconds))
            for url in urls
        ]
        self.turn = 0
        self.probe_seconds = probe_seconds
        self.on_state = on_state
        for replica in self.replicas:
            self._changed(replica)

    def order(self) -> list[_Replica]:
        """The replicas to try for one request: the next of those in first, then the rest in turn, the ones out last."""
        up = [r for r in self.replicas if not r.down]
        down = [r for r in self.replicas if r.down]
        if up:
            start = self.turn % len(up)
            self.turn += 1
            up = up[start:] + up[:start]
        return up + down

    async def request(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> _Response:
        failure: UpstreamConnectError | None = None
        for replica in self.order():
            try:
                response = await replica.pool.request(method, target, headers, body)
            except UpstreamConnectError as exc:  # nothing was sent: the next replica may have it
                failure = exc
                self.take_out(replica, str(exc))
                continue
            if replica.down:
                self.put_back(replica)
            return response
        assert failure is not None
        raise failure

    def take_out(self, replica: _Replica, error: str) -> None:
        replica.error = error
        if not replica.down:
            replica.down = True
            replica.pool.close()
            log.warning("upstream %s replica %s taken out: %s", self.name, replica.url, error)
            self._changed(replica)
        if replica.probe is None or replica.probe.done():
            replica.probe = asyncio.get_running_loop().create_task(
                self._probe(replica), name=f"probe-{self.name}-{replica.url}")

    def put_back(self, replica: _Replica) -> None:
        if replica.down:
            replica.down = False
            replica.error = ""
            log.warning("upstream %s replica %s answers again: back in", self.name, replica.url)
            self._changed(replica)

    async def _probe(self, replica: _Replica) -> None:
        """GET /healthz on a replica that is out, with back-off, until it answers (or a request finds it back)."""
        delay = self.probe_seconds
        while replica.down:
            await asyncio.sleep(delay)
            if not replica.down:
                return
            try:
                async with asyncio.timeout(max(replica.pool.connect_timeout, 1.0)):
                    response = await replica.pool.request(b"GET", b"/healthz", [], b"")
                    try:
                        async for _ in response.body(replica.pool.connect_timeout):
                            pass
                    finally:
                        await response.release()
            except (UpstreamError, TimeoutError, OSError) as exc:
                replica.error = str(exc) or type(exc).__name__
                delay = min(delay * 2, self.probe_seconds * 10)
                continue
            if response.status < 500:
                self.put_back(replica)
                return
            replica.error = f"status {response.status}"
            delay = min(delay * 2, self.probe_seconds * 10)

    def _changed(self, replica: _Replica) -> None:
        if self.on_state is not None:
            self.on_state(self.name, replica.url, not replica.down)

    def states(self) -> dict[str, str]:
        return {r.url: f"out: {r.error}" if r.down else "in" for r in self.replicas}

    async def aclose(self) -> None:
        probes = [r.probe for r in self.replicas if r.probe is not None]
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        for replica in self.replicas:
            replica.pool.close()


class LeanUpstream:
    """The pooled HTTP/1.1 client: per service, one pool per replica."""

    def __init__(self, upstreams: dict[str, str] | dict[str, list[str]], *, max_connections: int,
                 connect_timeout: float, idle_seconds: float = 4.0, probe_seconds: float = 1.0,
                 on_state: Callable[[str, str, bool], None] | None = None) -> None:
        self.services = {
            name: _Service(name, [urls] if isinstance(urls, str) else list(urls), max_connections=max_connections,
                           connect_timeout=connect_timeout, idle_seconds=idle_seconds, probe_seconds=probe_seconds,
                           on_state=on_state)
            for name, urls in upstreams.items()
        }

    async def request(
        self, service: str, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
    ) -> Answer:
        return await self.services[service].request(method, target, headers, body)

    def states(self) -> dict[str, dict[str, str]]:
        """Service -> replica URL -> "in" or "out: <why>" (as the forwarding sees them)."""
        return {name: service.states() for name, service in self.services.items()}

    async def aclose(self) -> None:
        for service in self.services.values():
            await service.aclose()


class _HttpxAnswer:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status = response.status_code
        self.headers = [(k.lower(), v) for k, v in response.headers.raw]

    async def body(self, read_timeout: float) -> AsyncIterator[bytes]:
        if self.response.is_stream_consumed:  # a transport that answered with the body already read
            yield self.response.content
            return
        async for chunk in self.response.aiter_raw():
            yield chunk

    async def release(self) -> None:
        await self.response.aclose()


class HttpxUpstream:
    """The same interface over an httpx client (in-process services in tests)."""

    def __init__(self, upstreams: dict[str, str], http: httpx.AsyncClient) -> None:
        self.upstreams = upstreams
        self.http = http

    async def request(
        self, service: str, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
    ) -> Answer:
        url = self.upstreams[service] + target.decode("latin-1")
        request = self.http.build_request(method.decode(), url, headers=headers, content=body)
        sent = {k for k, _ in headers}
        for name in ("accept", "accept-encoding", "user-agent"):  # httpx's own defaults: not ours to add
            if name.encode() not in sent and name in request.headers:
                del request.headers[name]
        try:
            response = await self.http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise TimeoutError() from exc
        except httpx.TransportError as exc:
            raise UpstreamConnectError(str(exc)) from exc
        return _HttpxAnswer(response)

    async def aclose(self) -> None:
        return None


__all__: list[Any] = ["Answer", "HttpxUpstream", "LeanUpstream", "Upstream", "UpstreamClosed", "UpstreamConnectError",
                      "UpstreamError"]
