"""Events on NATS JetStream (`SOCIALSEC_EVENT_TRANSPORT=nats`).

Publishing: the change and its outbox row still commit in one transaction. The
outbox relay of the producer process publishes unpublished rows in `seq` order
to the producer's stream (`SOCIALSEC_<PRODUCER>`, subject
`socialsec.<producer>.<event type>`) with `Nats-Msg-Id` = the event id, waits for
JetStream's ack, then marks the row `published_at`. A relay that dies between
the ack and the mark publishes the row again after restart; JetStream drops the
copy inside its duplicate window. With several replicas of a producer one relays
at a time (PostgreSQL: a transaction-scoped advisory lock; SQLite: one process).
A row whose transaction commits late is simply published later: nothing waits
for the server-wide transaction horizon as the feed does.

Consuming: one durable pull consumer per consuming service and producer
(durable name = the consuming service), shared by all its replicas, which divide
the work. An event is applied with its inbox row in one transaction and acked
after the commit; a redelivered event finds its inbox row and is only acked.

Order: with `SOCIALSEC_NATS_MAX_ACK_PENDING=1` (the default) JetStream hands out
a producer's next event only once the previous one is acked, to whichever
replica asks, so every replica together applies a producer's events in the order
the relay published them, which is outbox order for events of one person or one
employer (they are written by transactions that lock that aggregate). A larger
value lets replicas apply events side by side, for handlers that commute.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from services.common.db import Database
from services.common.dead_letters import error_text, is_parked, park
from services.common.events import CloudEvent, Handler
from services.common.models import InboxEvent, OutboxEvent
from services.common.settings import CommonSettings

log = logging.getLogger("socialsec.nats")

# One relay per producer database at a time (each service has its own database).
RELAY_LOCK_KEY = 0x50C1A15EC
# How old a consumer's pending count may be when requests wait on it.
LAG_FRESH_SECONDS = 0.1


class Names:
    """Stream, subject and durable names, under an optional prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def stream(self, producer: str) -> str:
        return f"{self.prefix}SOCIALSEC_{producer.upper()}"

    def subject_root(self, producer: str) -> str:
        return f"{self.prefix + '.' if self.prefix else ''}socialsec.{producer}"

    def subject(self, producer: str, event_type: str) -> str:
        return f"{self.subject_root(producer)}.{event_type}"

    def durable(self, consumer_service: str) -> str:
        return f"{self.prefix}{consumer_service}"


def stream_config(common: CommonSettings, names: Names, producer: str) -> StreamConfig:
    return StreamConfig(
        name=names.stream(producer),
        subjects=[f"{names.subject_root(producer)}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=common.nats_stream_max_age_seconds,
        duplicate_window=common.nats_duplicate_window_seconds,
        num_replicas=common.nats_stream_replicas,
    )


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream, or bring an existing one to this configuration."""
    assert config.name
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config)
            return
        except nats.js.errors.BadRequestError:  # created by another process meanwhile
            pass
    try:
        await js.update_stream(config)
    except nats.js.errors.APIError as exc:  # e.g. replicas cannot change here: keep what runs
        log.warning("stream %s kept its configuration: %s", config.name, exc)


class OutboxRelay:
    """Publishes a producer's unpublished outbox rows to its JetStream stream, in order."""

    def __init__(self, *, events: NatsEvents, producer: str) -> None:
        self.events = events
        self.producer = producer
        self.db = events.db
        self._lock = asyncio.Lock()  # SQLite: one relay pass at a time in the one process

    async def publish_once(self) -> int:
        """One pass over up to a batch of unpublished rows; the count published."""
        js = self.events.js
        if js is None:
            raise ConnectionError("not connected to NATS")
        names, common = self.events.names, self.events.common
        async with self._lock:
            done: list[int] = []
            failure: BaseException | None = None
            async with self.db.sessionmaker() as s, s.begin():
                if s.get_bind().dialect.name == "postgresql":
                    got = (await s.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RELAY_LOCK_KEY})).scalar_one()
                    if not got:  # another replica relays
                        return 0
                rows = (
                    await s.execute(
                        select(OutboxEvent).where(OutboxEvent.published_at.is_(None))
                        .order_by(OutboxEvent.seq).limit(common.nats_relay_batch_size)
                    )
                ).scalars().all()
                stream = names.stream(self.producer)
                for r in rows:
                    ev = CloudEvent(id=r.event_id, source=r.source, type=r.type, time=r.time, subject=r.subject, data=r.data)
                    try:
                        await js.publish(
                            names.subject(self.producer, r.type), ev.model_dump_json().encode(),
                            stream=stream, headers={"Nats-Msg-Id": r.event_id},
                        )
                    except Exception as exc:  # keep what was acked, stop at the first failure
                        failure = exc
                        break
                    done.append(r.seq)
                if done:
                    await s.execute(
                        update(OutboxEvent).where(OutboxEvent.seq.in_(done)).values(published_at=datetime.now(UTC))
                    )
            if failure is not None:
                raise failure
            return len(done)

    async def backlog(self) -> int:
        """Rows committed but not yet published."""
        async with self.db.sessionmaker() as s:
            return int((await s.execute(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
            )).scalar_one())

    async def run(self, stop: asyncio.Event) -> None:
        interval = self.events.common.nats_relay_interval_seconds
        delay = interval
        while not stop.is_set():
            try:
                while await self.publish_once() and not stop.is_set():
                    pass
                delay = interval
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the database away: try again, never die
                log.warning("relay %s failed: %s", self.producer, type(exc).__name__)
                delay = min(max(delay * 2, 0.5), 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)


class NatsConsumer:
    """This service's durable pull consumer on one producer's stream."""

    def __init__(self, *, events: NatsEvents, producer: str, handlers: Mapping[str, Handler]) -> None:
        self.events = events
        self.producer = producer
        self.handlers = dict(handlers)
        self.db = events.db
        self._sub: JetStreamContext.PullSubscription | None = None
        self._lag_lock = asyncio.Lock()
        self._lag_cache: tuple[float, int] | None = None

    @property
    def stream(self) -> str:
        return self.events.names.stream(self.producer)

    @property
    def durable(self) -> str:
        return self.events.names.durable(self.events.service)

    def consumer_config(self) -> ConsumerConfig:
        c = self.events.common
        return ConsumerConfig(
            durable_name=self.durable,
            name=self.durable,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=c.nats_ack_wait_seconds,
            max_ack_pending=c.nats_max_ack_pending,
            max_deliver=-1,
            filter_subject=f"{self.events.names.subject_root(self.producer)}.>",
        )

    async def subscribe(self, js: JetStreamContext) -> None:
        """Create (or update) the durable consumer and bind to it."""
        await ensure_stream(js, stream_config(self.events.common, self.events.names, self.producer))
        await js.add_consumer(self.stream, config=self.consumer_config())
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def poll_once(self, wait: float = 0.5) -> int:
        """Fetch what JetStream hands this replica (waiting up to `wait`) and apply it; the count applied."""
        if self._sub is None:
            raise ConnectionError("not subscribed")
        try:
            msgs = await self._sub.fetch(self.events.common.nats_max_ack_pending, timeout=wait)
        except (nats.errors.TimeoutError, TimeoutError):
            return 0
        applied = 0
        for msg in msgs:
            applied += await self._handle(msg)
        return applied

    async def _handle(self, msg: Msg) -> int:
        ev = CloudEvent.model_validate_json(msg.data)
        try:
            applied = await self._apply(ev)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self.events.failed(self, msg, ev, exc)
            return 0
        await msg.ack()
        return applied

    async def _apply(self, ev: CloudEvent) -> int:
        """The event and its inbox row in one transaction; 0 when it was applied before."""
        try:
            async with self.db.sessionmaker() as session, session.begin():
                if await session.get(InboxEvent, ev.id) is not None or await is_parked(session, ev.id):
                    return 0
                handler = self.handlers.get(ev.type)
                if handler is not None:
                    await handler(session, ev)
                session.add(InboxEvent(event_id=ev.id, producer=self.producer, type=ev.type, applied_at=datetime.now(UTC)))
                await session.flush()
            return 1 if handler is not None else 0
        except IntegrityError:
            # Another replica applied it meanwhile (a redelivery after ack_wait): its inbox row stands.
            async with self.db.sessionmaker() as session:
                if await session.get(InboxEvent, ev.id) is not None:
                    return 0
            raise

    async def lag(self) -> int:
        """Events in the stream this service has not acked yet."""
        if self._sub is None:
            raise ConnectionError("not subscribed")
        info = await self._sub.consumer_info()
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)

    async def _lag_now(self) -> int:
        """`lag()`, asked of JetStream at most every `LAG_FRESH_SECONDS` however many requests wait."""
        async with self._lag_lock:
            now = time.monotonic()
            if self._lag_cache is None or now - self._lag_cache[0] > LAG_FRESH_SECONDS:
                self._lag_cache = (time.monotonic(), await self.lag())
            return self._lag_cache[1]

    async def catch_up(self, within_seconds: float) -> bool:
        """Wait until what the producer has published so far is applied (by any replica of this service).

        A request never fetches or applies events itself: the consumer's own loop does, so a request's
        deadline can never interrupt an event half-applied and leave it unacked (with one event in flight
        per consumer, an unacked event holds back every later one for the whole ack wait). The producer's
        relay publishes a just-committed event within its interval, so the wait lasts at least two of them.
        """
        if self._sub is None:
            return False
        start = time.monotonic()
        deadline = start + within_seconds
        settle = min(within_seconds, 2 * self.events.common.nats_relay_interval_seconds + 0.05)
        try:
            while True:
                now = time.monotonic()
                if now - start >= settle and await self._lag_now() == 0:
                    return True
                if now >= deadline:
                    return False
                await asyncio.sleep(min(LAG_FRESH_SECONDS, max(deadline - now, 0)))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("stream %s catch-up failed: %s", self.producer, type(exc).__name__)
            return False

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self.poll_once(wait=1.0)
                delay = 0.5
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS reconnecting, the database away: try again
                log.warning("stream %s consume failed: %s", self.producer, type(exc).__name__)
                delay = min(delay * 2, 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)

    async def aclose(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None


class NatsEvents:
    """A service process's NATS side: one connection, its outbox relay, its consumers."""

    def __init__(
        self,
        *,
        common: CommonSettings,
        service: str,
        db: Database,
        consumers: Mapping[str, Mapping[str, Handler]],
        relay: bool = True,
    ) -> None:
        self.common = common
        self.service = service
        self.db = db
        self.names = Names(common.nats_prefix)
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.relay = OutboxRelay(events=self, producer=service) if relay else None
        self.consumers = [NatsConsumer(events=self, producer=p, handlers=h) for p, h in consumers.items()]
        self.ready = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def connect(self) -> None:
        """Connect, create the stream and the durable consumers (idempotent)."""
        if self.nc is None:
            # nats-py retries a first connection forever with max_reconnect_attempts=-1: bound it, and retry in run().
            self.nc = await asyncio.wait_for(nats.connect(
                [u.strip() for u in self.common.nats_url.split(",") if u.strip()], name=f"socialsec-{self.service}",
                connect_timeout=2, allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                error_cb=self._on_error, disconnected_cb=self._on_disconnected, reconnected_cb=self._on_reconnected,
            ), timeout=5)
            self.js = self.nc.jetstream(timeout=5)
        assert self.js is not None
        if self.relay is not None:
            await ensure_stream(self.js, stream_config(self.common, self.names, self.service))
        for c in self.consumers:
            await c.subscribe(self.js)
        self.ready.set()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", type(exc).__name__)

    async def _on_disconnected(self) -> None:
        log.warning("NATS disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("NATS reconnected")

    async def failed(self, consumer: NatsConsumer, msg: Msg, ev: CloudEvent, exc: Exception) -> None:
        """A handler raised: try again later (nak with backoff), or park it after the last attempt and move on."""
        attempt = msg.metadata.num_delivered or 1
        log.warning("event %s from %s failed (attempt %d): %s", ev.type, consumer.producer, attempt, type(exc).__name__)
        if attempt >= self.common.event_max_attempts:
            async with self.db.sessionmaker() as session, session.begin():
                await park(session, service=self.service, producer=consumer.producer, event=ev,
                           error=error_text(exc), attempts=attempt)
            log.error("event %s %s from %s parked in dead_letters", ev.type, ev.id, consumer.producer)
            await msg.ack()
            return
        await msg.nak(delay=min(self.common.event_retry_backoff_seconds * 2 ** (attempt - 1), 30.0))

    async def run(self, stop: asyncio.Event) -> None:
        """Connect (retrying until NATS answers), then relay and consume until stopped."""
        delay = 0.5
        while not stop.is_set() and not self.ready.is_set():
            try:
                await self.connect()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("NATS at %s not available: %s", self.common.nats_url, type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                delay = min(delay * 2, 5.0)
        if stop.is_set():
            return
        tasks: list[asyncio.Task[Any]] = []
        if self.relay is not None:
            tasks.append(asyncio.create_task(self.relay.run(stop), name=f"relay-{self.service}"))
        for c in self.consumers:
            tasks.append(asyncio.create_task(c.run(stop), name=f"consume-nats-{c.producer}"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        for c in self.consumers:
            await c.aclose()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.drain()
            with contextlib.suppress(Exception):
                await self.nc.close()
            self.nc = None
            self.js = None
