"""Reminders on the platforms: one-time subscription messages (WeChat `subscribeMessage`, Alipay template messages).

A citizen accepts the platform's subscription prompt in the mini-program and then
subscribes here (`POST /<service>/v1/me/reminders {kind}`); the platform and the
user's openid (WeChat) or user id (Alipay) are the principal's `platform` and `sub`.
A subscription is used once: when its reminder is due, the owning service marks it
used and writes the message into `reminder_sends` in the same transaction (one row
per subscription: the unique `reminder_id`). The sending job then makes the platform
call from the committed row:

- a row is claimed (`pending` -> `sending`, committed) before the call, and the
  answer recorded after it: `sent`, `failed` (the platform refused it for good), or
  back to `pending` with a growing delay when nothing can have been delivered (the
  connection was refused, the platform said it was busy);
- a row left `sending` (the process died during the call, or the call timed out
  after the request went out) is never sent again: after the lease it is marked
  `unknown`. A reminder may be lost that way, never sent twice.

Messages carry only what the template's fields allow: a masked card number, dates,
short texts; never an id number.

Settings (`SOCIALSEC_*`): WECHAT_API_URL, WECHAT_APPID, WECHAT_APP_SECRET,
WECHAT_MINIPROGRAM_STATE, ALIPAY_GATEWAY_URL, ALIPAY_APP_ID,
ALIPAY_APP_PRIVATE_KEY_FILE, ALIPAY_PUBLIC_KEY_FILE, REMINDER_TEMPLATES (JSON
{kind: {"wechat": id, "alipay": id}}), REMINDER_SEND_INTERVAL_SECONDS,
REMINDER_DUE_INTERVAL_SECONDS, REMINDER_MAX_ATTEMPTS, REMINDER_RETRY_SECONDS,
REMINDER_LEASE_SECONDS, REMINDER_PLATFORM_TIMEOUT_SECONDS, REMINDER_BATCH_SIZE,
REMINDER_DECLARATION_EXPIRING_HOURS (6), REMINDER_FLEXIBLE_DUE_DAY (20). Left unset, the URLs
point at the local sandbox and the keys are the development ones under
`$SOCIALSEC_VAR_DIR/keys/`.
"""

from __future__ import annotations

import base64
import inspect
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr, create_model, field_validator
from pydantic.config import JsonDict
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import JSON, Integer, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from services.common.clock import SHANGHAI, aware
from services.common.db import DbSession
from services.common.errors import DomainError, NotFound
from services.common.identifiers import ascii_digits
from services.common.jobs import BackgroundJob, periodic
from services.common.paths import IdPath
from services.common.pii import id_hash
from services.common.principal import Principal, require
from services.common.routing import ServiceRoute
from services.common.settings import CommonSettings, ConfigurationError
from services.common.types import UTCDateTime

log = logging.getLogger("socialsec.reminders")

PLATFORMS = ("wechat", "alipay")
ALIPAY_METHOD = "alipay.open.app.mini.templatemessage.send"
ALIPAY_RESPONSE_NODE = "alipay_open_app_mini_templatemessage_send_response"

# A field's key names its WeChat type (`thing1` is a thing, `date2` a date): the published length limits.
THING_MAX = 20
CHARACTER_STRING_MAX = 32


class ReminderSettings(BaseSettings):
    """How a service reaches the platforms' message APIs."""

    model_config = SettingsConfigDict(env_prefix="SOCIALSEC_", extra="ignore")

    wechat_api_url: str = "http://127.0.0.1:8010/sandbox/wechat"
    wechat_appid: str = Field(default="wx0000000000000001", min_length=1, max_length=32)
    wechat_app_secret: SecretStr | None = None
    wechat_miniprogram_state: str = Field(default="formal", pattern=r"^(developer|trial|formal)$")
    alipay_gateway_url: str = "http://127.0.0.1:8010/sandbox/alipay/gateway.do"
    alipay_app_id: str = Field(default="2021000100000001", min_length=1, max_length=32)
    alipay_app_private_key_file: Path | None = None
    alipay_public_key_file: Path | None = None
    # {kind: {"wechat": template id, "alipay": template id}}; kinds left out use DEFAULT_TEMPLATE_IDS.
    reminder_templates: dict[str, dict[str, str]] = Field(default_factory=dict)
    reminder_send_interval_seconds: float = Field(default=5.0, gt=0)
    reminder_due_interval_seconds: float = Field(default=60.0, gt=0)
    reminder_max_attempts: int = Field(default=8, ge=1, le=100)
    reminder_retry_seconds: float = Field(default=30.0, gt=0)
    reminder_lease_seconds: float = Field(default=300.0, gt=0)
    reminder_platform_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    reminder_batch_size: int = Field(default=100, ge=1, le=1000)
    # Contribution: a confirmed declaration is "about to expire" this many hours before its time;
    # a flexible employee's month is "due" from this day of the month while it is unpaid.
    reminder_declaration_expiring_hours: float = Field(default=6.0, gt=0, le=24 * 90)
    reminder_flexible_due_day: int = Field(default=20, ge=1, le=28)

    @field_validator("reminder_templates", mode="before")
    @classmethod
    def _json_map(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    def template_id(self, kind: str, platform: str) -> str:
        return self.reminder_templates.get(kind, {}).get(platform) or DEFAULT_TEMPLATE_IDS[kind][platform]


# The sandbox's default template ids (sandbox/messages.py holds the same ones with their fields).
DEFAULT_TEMPLATE_IDS: dict[str, dict[str, str]] = {
    kind: {"wechat": f"wx-tmpl-{kind.replace('_', '-')}", "alipay": f"ali-tmpl-{kind.replace('_', '-')}"}
    for kind in (
        "certification_due", "certification_overdue", "declaration_expiring", "flexible_payment_due",
        "card_locked", "card_made",
    )
}


# ---- messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A template message: the page it opens and its fields in template order (WeChat keys: `thing1`, `date2`, ...)."""

    page: str
    fields: tuple[tuple[str, str], ...]


def clip(key: str, value: str) -> str:
    """A value cut to its field type's published limit (a `thing` is at most 20 characters)."""
    if key.startswith("thing") and len(value) > THING_MAX:
        return value[: THING_MAX - 1] + "…"
    if key.startswith("character_string"):
        return value[:CHARACTER_STRING_MAX]
    return value


def message(page: str, *fields: tuple[str, str]) -> Message:
    return Message(page=page, fields=tuple((k, clip(k, v)) for k, v in fields))


def shanghai_date(value: Any) -> str:
    """`2026年4月10日` (a WeChat `date` value) for a date or an instant."""
    if isinstance(value, datetime):
        value = aware(value).astimezone(SHANGHAI).date()
    return f"{value.year}年{value.month}月{value.day}日"


def shanghai_time(value: datetime) -> str:
    """`2026年3月11日 10:00` (a WeChat `time` value)."""
    local = aware(value).astimezone(SHANGHAI)
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def wechat_data(fields: Sequence[Sequence[str]]) -> dict[str, dict[str, str]]:
    return {k: {"value": v} for k, v in fields}


def alipay_data(fields: Sequence[Sequence[str]]) -> dict[str, dict[str, str]]:
    """Alipay template keywords are numbered in template order."""
    return {f"keyword{i}": {"value": v} for i, (_k, v) in enumerate(fields, start=1)}


# ---- tables -------------------------------------------------------------------------------


class ReminderStatus(StrEnum):
    active = "active"
    used = "used"
    cancelled = "cancelled"


class SendStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    unknown = "unknown"


class ReminderMixin:
    """A one-time subscription (`reminders`): `active_key` is set while active, one per person, kind and platform."""

    __tablename__ = "reminders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    platform: Mapped[str] = mapped_column(String(10), nullable=False)
    touser: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(12), nullable=False)
    active_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ReminderSendMixin:
    """A message to send (`reminder_sends`), written with the subscription it uses; one per subscription."""

    __tablename__ = "reminder_sends"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reminder_id: Mapped[str] = mapped_column(String(36), nullable=False, unique=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    platform: Mapped[str] = mapped_column(String(10), nullable=False)
    touser: Mapped[str] = mapped_column(String(128), nullable=False)
    template_id: Mapped[str] = mapped_column(String(128), nullable=False)
    page: Mapped[str] = mapped_column(String(200), nullable=False)
    fields: Mapped[list[Any]] = mapped_column(JSON, nullable=False)
    status: Mapped[str] = mapped_column(String(12), nullable=False, index=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(200))
    msgid: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


def create_reminder_tables() -> None:
    """The two tables as migration operations (each service's reminders revision)."""
    import sqlalchemy as sa
    from alembic import op

    op.create_table(
        "reminders",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("platform", sa.String(10), nullable=False),
        sa.Column("touser", sa.String(128), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("active_key", sa.String(200), unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True)),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_reminders_person_key", "reminders", ["person_key"])
    op.create_table(
        "reminder_sends",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("reminder_id", sa.String(36), nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("platform", sa.String(10), nullable=False),
        sa.Column("touser", sa.String(128), nullable=False),
        sa.Column("template_id", sa.String(128), nullable=False),
        sa.Column("page", sa.String(200), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.String(200)),
        sa.Column("msgid", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_reminder_sends_status", "reminder_sends", ["status"])


def drop_reminder_tables() -> None:
    from alembic import op

    op.drop_index("ix_reminder_sends_status", table_name="reminder_sends")
    op.drop_table("reminder_sends")
    op.drop_index("ix_reminders_person_key", table_name="reminders")
    op.drop_table("reminders")


# ---- subscribing ------------------------------------------------------------------------


class ReminderKindUnknown(DomainError):
    status = 422
    code = "reminder_kind_unknown"
    title_zh = "不支持的提醒类型"
    title_en = "Unknown reminder kind"


class ReminderPlatformUnsupported(DomainError):
    status = 409
    code = "reminder_platform_unsupported"
    title_zh = "当前平台不支持订阅消息提醒"
    title_en = "Reminders are sent on Alipay and WeChat only"


class ReminderNotActive(DomainError):
    status = 409
    code = "reminder_not_active"
    title_zh = "该提醒已发送或已取消"
    title_en = "This reminder was already sent or cancelled"


class ReminderIn(BaseModel):
    """The reminder the citizen accepted in the platform's subscription prompt."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(min_length=1, max_length=40, description="The reminder kind (the owning service lists its kinds)")


class ReminderOut(BaseModel):
    id: str
    kind: str
    platform: str
    status: ReminderStatus
    created_at: datetime
    used_at: datetime | None = None
    cancelled_at: datetime | None = None
    send_status: SendStatus | None = Field(default=None, description="The message's state once the reminder was due")


class ReminderPage(BaseModel):
    items: list[ReminderOut]


def _active_key(person_key: str, kind: str, platform: str) -> str:
    return f"{person_key}:{kind}:{platform}"


def reminder_router(
    *, prefix: str, tag: str, kinds: Mapping[str, str], reminder: type[Any], send: type[Any],
) -> APIRouter:
    """`POST/GET /me/reminders` and `DELETE /me/reminders/{reminder_id}` for a service's kinds ({kind: description})."""
    router = APIRouter(prefix=prefix, tags=[tag], route_class=ServiceRoute)
    citizen = require("citizen", min_level=1)
    listed = "; ".join(f"`{k}`: {v}" for k, v in kinds.items())

    # The document lists this service's kinds; another kind is still refused as `reminder_kind_unknown`.
    enum: JsonDict = {"enum": list(sorted(kinds))}
    ServiceReminderIn = create_model(
        f"{tag.capitalize()}ReminderIn", __base__=ReminderIn,
        kind=(str, Field(min_length=1, max_length=40, description="The reminder kind", json_schema_extra=enum)),
    )

    def out(row: Any, send_row: Any | None) -> ReminderOut:
        return ReminderOut(
            id=row.id, kind=row.kind, platform=row.platform, status=row.status, created_at=aware(row.created_at),
            used_at=aware(row.used_at) if row.used_at else None,
            cancelled_at=aware(row.cancelled_at) if row.cancelled_at else None,
            send_status=send_row.status if send_row is not None else None,
        )

    async def subscribe(
        request: Request, session: DbSession, body: ReminderIn, principal: Principal = Depends(citizen),
    ) -> Any:
        if body.kind not in kinds:
            raise ReminderKindUnknown(params={"allowed": sorted(kinds)})
        if principal.platform not in PLATFORMS:
            raise ReminderPlatformUnsupported(params={"platforms": list(PLATFORMS)})
        assert principal.id_number  # a citizen principal always has one (check_principal)
        person_key = id_hash(principal.id_number)
        key = _active_key(person_key, body.kind, principal.platform)
        existing = (await session.execute(select(reminder).where(reminder.active_key == key))).scalar_one_or_none()
        if existing is not None:
            if existing.touser != principal.sub:  # the platform user changed: the newest acceptance counts
                existing.touser = principal.sub
            return JSONResponse(out(existing, None).model_dump(mode="json"), status_code=200)
        row = reminder(
            id=str(uuid.uuid4()), person_key=person_key, kind=body.kind, platform=principal.platform,
            touser=principal.sub, status=ReminderStatus.active, active_key=key, created_at=request.app.state.clock.now(),
        )
        try:
            async with session.begin_nested():
                session.add(row)
                await session.flush()
        except IntegrityError:  # subscribed at the same moment by another request: that one stands
            existing = (await session.execute(select(reminder).where(reminder.active_key == key))).scalar_one()
            return JSONResponse(out(existing, None).model_dump(mode="json"), status_code=200)
        return JSONResponse(out(row, None).model_dump(mode="json"), status_code=201)

    # FastAPI reads the body model from the signature: this service's model, with its kinds listed.
    signature = inspect.signature(subscribe)
    subscribe.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[p.replace(annotation=ServiceReminderIn) if p.name == "body" else p
                    for p in signature.parameters.values()],
    )
    router.post(
        "/me/reminders", status_code=201, response_model=ReminderOut,
        responses={
            200: {"description": "already subscribed: the active subscription", "model": ReminderOut},
            409: {"description": "reminder_platform_unsupported"},
            422: {"description": "reminder_kind_unknown"},
        },
        summary="Subscribe to a reminder (after accepting the platform's subscription prompt)",
        description=f"A one-time subscription: the message is sent once, when due. Kinds: {listed}.",
    )(subscribe)

    @router.get("/me/reminders", response_model=ReminderPage, summary="My reminder subscriptions (the newest 100)")
    async def my_reminders(session: DbSession, principal: Principal = Depends(citizen)) -> ReminderPage:
        assert principal.id_number
        rows = (
            await session.execute(
                select(reminder).where(reminder.person_key == id_hash(principal.id_number))
                .order_by(reminder.created_at.desc(), reminder.id).limit(100)
            )
        ).scalars().all()
        sends = {
            s.reminder_id: s
            for s in (await session.execute(select(send).where(send.reminder_id.in_([r.id for r in rows])))).scalars()
        } if rows else {}
        return ReminderPage(items=[out(r, sends.get(r.id)) for r in rows])

    @router.delete(
        "/me/reminders/{reminder_id:id}", status_code=204, response_class=Response,
        responses={404: {"description": "not_found: not mine"}, 409: {"description": "reminder_not_active"}},
        summary="Cancel a reminder subscription",
    )
    async def cancel_reminder(
        request: Request, session: DbSession, reminder_id: IdPath, principal: Principal = Depends(citizen),
    ) -> Response:
        assert principal.id_number
        row = (
            await session.execute(select(reminder).where(reminder.id == reminder_id).with_for_update())
        ).scalar_one_or_none()
        if row is None or row.person_key != id_hash(principal.id_number):
            raise NotFound()
        if row.status == ReminderStatus.cancelled:
            return Response(status_code=204)
        if row.status != ReminderStatus.active:
            raise ReminderNotActive()
        row.status = ReminderStatus.cancelled
        row.active_key = None
        row.cancelled_at = request.app.state.clock.now()
        return Response(status_code=204)

    return router


# ---- when a reminder is due ------------------------------------------------------------------


@lru_cache(maxsize=1)
def default_reminder_settings() -> ReminderSettings:
    """The settings from the environment (for code that runs without the app at hand)."""
    return ReminderSettings()


async def use_reminder(
    session: AsyncSession, *, reminder: type[Any], send: type[Any], row: Any, msg: Message,
    now: datetime, settings: ReminderSettings | None = None,
) -> bool:
    """Mark an active subscription used and write its message, in the caller's transaction (False: already used)."""
    settings = settings or default_reminder_settings()
    moved = await session.execute(
        update(reminder).where(reminder.id == row.id, reminder.status == ReminderStatus.active)
        .values(status=ReminderStatus.used, active_key=None, used_at=now)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    session.add(send(
        id=str(uuid.uuid4()), reminder_id=row.id, kind=row.kind, platform=row.platform, touser=row.touser,
        template_id=settings.template_id(row.kind, row.platform), page=msg.page,
        fields=[list(f) for f in msg.fields], status=SendStatus.pending, attempts=0, next_attempt_at=now,
        created_at=now,
    ))
    await session.flush()
    return True


async def active_reminders(
    session: AsyncSession, reminder: type[Any], *, kinds: Sequence[str], person_key: str | None = None,
    after: str = "", limit: int = 500,
) -> list[Any]:
    """Active subscriptions of these kinds (a person's, or everyone's a page at a time by id after `after`)."""
    q = select(reminder).where(
        reminder.status == ReminderStatus.active, reminder.kind.in_(list(kinds)), reminder.id > after,
    )
    if person_key is not None:
        q = q.where(reminder.person_key == person_key)
    return list((await session.execute(q.order_by(reminder.id).limit(limit))).scalars())


async def due_pass(
    app: FastAPI, *, reminder: type[Any], send: type[Any], kinds: Sequence[str],
    due: Callable[[AsyncSession, Any], Awaitable[Message | None]], batch: int = 500,
) -> int:
    """One pass over every active subscription of these kinds: `due` answers its message when due, else None.

    Each page is its own transaction: the subscriptions found due are used and their messages written in it.
    """
    settings = reminder_settings_of(app)
    used = 0
    after = ""
    while True:
        async with app.state.db.sessionmaker() as session, session.begin():
            rows = await active_reminders(session, reminder, kinds=kinds, after=after, limit=batch)
            if not rows:
                return used
            after = rows[-1].id
            now = app.state.clock.now()
            for row in rows:
                msg = await due(session, row)
                if msg is not None:
                    used += await use_reminder(
                        session, reminder=reminder, send=send, row=row, msg=msg, now=now, settings=settings,
                    )


async def fire(
    session: AsyncSession, *, reminder: type[Any], send: type[Any], person_key: str, kind: str, msg: Message,
    now: datetime, settings: ReminderSettings | None = None,
) -> int:
    """An event happened to a person (their card was made): use each of their active subscriptions of that kind."""
    count = 0
    for row in await active_reminders(session, reminder, kinds=[kind], person_key=person_key):
        count += await use_reminder(session, reminder=reminder, send=send, row=row, msg=msg, settings=settings, now=now)
    return count


# ---- the platforms ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a platform call came to: `sent`, `retry` (nothing can have been delivered), `failed`, or `unknown`."""

    status: str
    detail: str = ""
    msgid: str | None = None


def _rsa2_sign(content: str, key: RSAPrivateKey) -> str:
    return base64.b64encode(key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def _rsa2_verify(content: str, signature: str, key: RSAPublicKey) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), content.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _node_text(text: str, node: str) -> tuple[str | None, str | None]:
    """The exact text of a top-level response node (what Alipay signed) and the `sign` beside it."""
    decoder = json.JSONDecoder()
    try:
        whole = json.loads(text)
    except ValueError:
        return None, None
    marker = f'"{node}"'
    at = text.find(marker)
    if at < 0 or not isinstance(whole, dict):
        return None, None
    start = text.index(":", at + len(marker)) + 1
    while text[start] in " \t\r\n":
        start += 1
    _, end = decoder.raw_decode(text, start)
    sign = whole.get("sign")
    return text[start:end], sign if isinstance(sign, str) else None


class MessagePlatforms:
    """The WeChat and Alipay message API clients, built from the settings."""

    def __init__(
        self, settings: ReminderSettings, common: CommonSettings | None = None, client: httpx.AsyncClient | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.keys_dir = (common or CommonSettings()).keys_dir
        self._client = client
        self._monotonic = monotonic
        self._token: tuple[str, float] | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.settings.reminder_platform_timeout_seconds, follow_redirects=False,
            )
        return self._client

    def _file(self, configured: Path | None, name: str, env: str) -> bytes:
        path = Path(configured or (self.keys_dir / name))
        if not path.exists():
            raise ConfigurationError(f"{env}: {path} does not exist")
        return path.read_bytes()

    @cached_property
    def wechat_secret(self) -> str:
        s = self.settings.wechat_app_secret
        if s is not None and s.get_secret_value():
            return s.get_secret_value().strip()
        return self._file(None, "wechat-app.secret", "SOCIALSEC_WECHAT_APP_SECRET").decode().strip()

    @cached_property
    def alipay_private_key(self) -> RSAPrivateKey:
        key = serialization.load_pem_private_key(
            self._file(self.settings.alipay_app_private_key_file, "alipay-app.pem", "SOCIALSEC_ALIPAY_APP_PRIVATE_KEY_FILE"),
            password=None,
        )
        if not isinstance(key, RSAPrivateKey):
            raise ConfigurationError("SOCIALSEC_ALIPAY_APP_PRIVATE_KEY_FILE: expected an RSA private key")
        return key

    @cached_property
    def alipay_public_key(self) -> RSAPublicKey:
        key = serialization.load_pem_public_key(
            self._file(self.settings.alipay_public_key_file, "alipay-platform.pub.pem", "SOCIALSEC_ALIPAY_PUBLIC_KEY_FILE")
        )
        if not isinstance(key, RSAPublicKey):
            raise ConfigurationError("SOCIALSEC_ALIPAY_PUBLIC_KEY_FILE: expected an RSA public key")
        return key

    async def send(self, row: Any, now: datetime) -> Outcome:
        """One platform call for a claimed `reminder_sends` row."""
        if row.platform == "wechat":
            return await self._wechat(row)
        if row.platform == "alipay":
            return await self._alipay(row, now)
        return Outcome("failed", f"platform {row.platform}")

    # -- WeChat --------------------------------------------------------------------------

    async def _access_token(self, force: bool = False) -> str:
        if not force and self._token is not None and self._token[1] > self._monotonic():
            return self._token[0]
        s = self.settings
        resp = await self.client.get(
            f"{s.wechat_api_url}/cgi-bin/token",
            params={"grant_type": "client_credential", "appid": s.wechat_appid, "secret": self.wechat_secret},
        )
        data = resp.json()
        token = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise _TokenRefused(str(data.get("errcode") if isinstance(data, dict) else resp.status_code))
        ttl = data.get("expires_in")
        ttl = ttl if isinstance(ttl, int) and ttl > 0 else 7200
        self._token = (token, self._monotonic() + max(ttl - 300, ttl / 2))
        return token

    async def _wechat(self, row: Any) -> Outcome:
        body = json.dumps({
            "touser": row.touser, "template_id": row.template_id, "page": row.page,
            "data": wechat_data(row.fields), "miniprogram_state": self.settings.wechat_miniprogram_state,
            "lang": "zh_CN",
        }, ensure_ascii=False).encode()
        for force in (False, True):
            try:
                token = await self._access_token(force=force)
            except _TokenRefused as exc:
                return Outcome("retry", f"access token refused: {exc}")
            except (httpx.HTTPError, ValueError) as exc:
                return Outcome("retry", f"access token: {type(exc).__name__}")
            try:
                resp = await self.client.post(
                    f"{self.settings.wechat_api_url}/cgi-bin/message/subscribe/send", params={"access_token": token},
                    content=body, headers={"Content-Type": "application/json"},
                )
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                return Outcome("retry", type(exc).__name__)
            except httpx.HTTPError as exc:
                return Outcome("unknown", type(exc).__name__)
            try:
                data = resp.json()
                code = int(data.get("errcode", 0))
            except (ValueError, TypeError, AttributeError):
                return Outcome("unknown", f"HTTP {resp.status_code}")
            if code == 0:
                msgid = data.get("msgid")
                return Outcome("sent", "ok", str(msgid) if msgid is not None else None)
            if code in (40001, 42001, 40014) and not force:
                continue  # the token expired or was replaced: fetch a new one and try once more
            detail = f"errcode {code}: {str(data.get('errmsg', ''))[:120]}"
            # -1: system busy; 45009: over the daily quota. Nothing was delivered: try later.
            return Outcome("retry" if code in (-1, 45009, 40001, 42001) else "failed", detail)
        return Outcome("retry", "access token")

    # -- Alipay ----------------------------------------------------------------------------

    async def _alipay(self, row: Any, now: datetime) -> Outcome:
        s = self.settings
        biz: dict[str, str] = {
            "to_user_id" if _is_alipay_user_id(row.touser) else "to_open_id": row.touser,
            "user_template_id": row.template_id,
            "page": row.page,
            "data": json.dumps(alipay_data(row.fields), ensure_ascii=False, separators=(",", ":")),
        }
        params = {
            "app_id": s.alipay_app_id, "method": ALIPAY_METHOD, "format": "JSON", "charset": "utf-8",
            "sign_type": "RSA2", "timestamp": aware(now).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0", "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        content = "&".join(f"{k}={params[k]}" for k in sorted(params) if params[k] != "")
        params["sign"] = _rsa2_sign(content, self.alipay_private_key)
        try:
            resp = await self.client.post(s.alipay_gateway_url, data=params)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return Outcome("retry", type(exc).__name__)
        except httpx.HTTPError as exc:
            return Outcome("unknown", type(exc).__name__)
        node_text, sign = _node_text(resp.text, ALIPAY_RESPONSE_NODE)
        if node_text is None:
            node_text, sign = _node_text(resp.text, "error_response")
        if node_text is None:
            return Outcome("unknown", f"HTTP {resp.status_code}")
        if not sign or not _rsa2_verify(node_text, sign, self.alipay_public_key):
            return Outcome("unknown", "answer not signed by Alipay")
        node = json.loads(node_text)
        code = str(node.get("code"))
        if code == "10000":
            return Outcome("sent", "Success")
        detail = f"{code} {node.get('sub_code', '')}".strip()[:200]
        return Outcome("retry" if code in ("20000", "20001") else "failed", detail)


class _TokenRefused(Exception):
    pass


def _is_alipay_user_id(value: str) -> bool:
    """A 2088... user id (16 ASCII digits); otherwise the newer open id."""
    return len(value) == 16 and value.startswith("2088") and ascii_digits(value)


def reminder_settings_of(app: Any) -> ReminderSettings:
    """The app's reminder settings (`app.state.reminder_settings`), else those of the environment."""
    found = getattr(app.state, "reminder_settings", None)
    return found if found is not None else default_reminder_settings()


def message_platforms_of(app: Any) -> MessagePlatforms:
    """The app's message platforms, created on first use from the environment."""
    found = getattr(app.state, "message_platforms", None)
    if found is None:
        found = MessagePlatforms(reminder_settings_of(app), getattr(app.state, "common", None))
        app.state.message_platforms = found
    return found


# ---- the sending job -------------------------------------------------------------------------------


def retry_delay(settings: ReminderSettings, attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... at most 1 h (with the default base)."""
    return timedelta(seconds=min(settings.reminder_retry_seconds * 2 ** max(attempts - 1, 0), 3600.0))


async def send_due_messages(app: FastAPI, send: type[Any]) -> int:
    """One pass: give up on rows left `sending`, then claim, send and record each due `pending` row."""
    db = app.state.db
    settings = reminder_settings_of(app)
    platforms = message_platforms_of(app)
    now = app.state.clock.now()
    handled = 0
    async with db.sessionmaker() as session, session.begin():
        stale = await session.execute(
            update(send).where(
                send.status == SendStatus.sending,
                send.claimed_at < now - timedelta(seconds=settings.reminder_lease_seconds),
            ).values(status=SendStatus.unknown, last_error="no answer recorded: not sent again")
            .execution_options(synchronize_session=False)
        )
        handled += stale.rowcount or 0
        due = list((await session.execute(
            select(send.id).where(send.status == SendStatus.pending, send.next_attempt_at <= now)
            .order_by(send.next_attempt_at, send.id).limit(settings.reminder_batch_size)
        )).scalars())
    for send_id in due:
        handled += await send_one(app, send, send_id, platforms=platforms, settings=settings)
    return handled


async def send_one(
    app: FastAPI, send: type[Any], send_id: str, *, platforms: MessagePlatforms, settings: ReminderSettings,
    after_claim: Callable[[], Awaitable[None]] | None = None,
) -> int:
    """Claim one row (committed), call the platform from it, record the answer. 0 when another worker has it."""
    db = app.state.db
    now = app.state.clock.now()
    async with db.sessionmaker() as session, session.begin():
        claimed = await session.execute(
            update(send).where(send.id == send_id, send.status == SendStatus.pending)
            .values(status=SendStatus.sending, claimed_at=now, attempts=send.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount != 1:
            return 0
        row = (await session.execute(select(send).where(send.id == send_id))).scalar_one()
        session.expunge(row)
    if after_claim is not None:
        await after_claim()
    try:
        outcome = await platforms.send(row, now)
    except ConfigurationError as exc:
        log.error("reminder platform configuration is not usable: %s", exc)
        outcome = Outcome("retry", "configuration")
    except Exception as exc:  # a bug or an answer we cannot read: the call may have gone out
        log.warning("reminder %s: %s", send_id, type(exc).__name__)
        outcome = Outcome("unknown", type(exc).__name__)
    done = app.state.clock.now()
    values: dict[str, Any] = {"last_error": None if outcome.status == "sent" else outcome.detail[:200]}
    if outcome.status == "sent":
        values.update(status=SendStatus.sent, sent_at=done, msgid=outcome.msgid)
    elif outcome.status == "retry" and row.attempts < settings.reminder_max_attempts:
        values.update(status=SendStatus.pending, next_attempt_at=done + retry_delay(settings, row.attempts))
    elif outcome.status == "unknown":
        values.update(status=SendStatus.unknown)
    else:
        values.update(status=SendStatus.failed)
    async with db.sessionmaker() as session, session.begin():
        await session.execute(
            update(send).where(send.id == send_id, send.status == SendStatus.sending).values(**values)
            .execution_options(synchronize_session=False)
        )
    if outcome.status != "sent":
        log.info("reminder %s (%s): %s", send_id, row.kind, outcome.status)
    return 1


def reminder_sender(send: type[Any]) -> BackgroundJob:
    """The background job sending a service's due reminder messages."""

    async def one_pass(app: FastAPI) -> int:
        return await send_due_messages(app, send)

    return periodic(
        "reminder sending", one_pass, lambda app: reminder_settings_of(app).reminder_send_interval_seconds,
        again_at_once_when_busy=False,
    )


def reminder_due_job(name: str, one_pass: Callable[[FastAPI], Awaitable[int]]) -> BackgroundJob:
    """A service's job finding the reminders that are due (every SOCIALSEC_REMINDER_DUE_INTERVAL_SECONDS)."""
    return periodic(name, one_pass, lambda app: reminder_settings_of(app).reminder_due_interval_seconds)
