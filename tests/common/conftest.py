"""A small service built on the kernel alone, to test the kernel's promises."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy import String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, mapped_column

from services.common.app import create_service_app
from services.common.audit import record_audit
from services.common.db import DbSession
from services.common.errors import DomainError
from services.common.events import Outbox
from services.common.identifiers import CreditCode, IdNumber, Month
from services.common.models import KernelBase
from services.common.pii import EncryptedString, id_hash, mask_id_number
from services.common.principal import Principal, require
from services.common.routing import ServiceRoute, idempotency_key_required

OUTBOX = Outbox("kernel-test")


class Widget(KernelBase):
    """A table that exists only in tests (created next to the kernel tables)."""

    __tablename__ = "test_widgets"
    __table_args__ = (UniqueConstraint("id_hash", name="uq_test_widgets_id_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    id_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    id_number: Mapped[str] = mapped_column(EncryptedString(), nullable=False)
    name: Mapped[str] = mapped_column(String(50), nullable=False)


class Colour(StrEnum):
    red = "red"
    blue = "blue"


class WidgetIn(BaseModel):
    id_number: IdNumber
    name: str = Field(min_length=1, max_length=50)
    colour: Colour = Colour.red
    amount_fen: int = Field(default=0, ge=0)
    month: Month | None = None
    credit_code: CreditCode | None = None


class Teapot(DomainError):
    status = 409
    code = "widget_exists"
    title_zh = "已存在"
    title_en = "Already exists"


class WrongGuess(DomainError):
    status = 422
    code = "guess_wrong"
    keeps_changes = True  # the try is counted even though the request is refused


class GuessIn(BaseModel):
    guess: str = Field(min_length=1, max_length=20)


router = APIRouter(prefix="/t", route_class=ServiceRoute)


@router.post("/guesses", status_code=201)
async def guess(body: GuessIn, request: Request, session: DbSession,
                principal: Annotated[Principal, Depends(require("citizen"))]) -> Any:
    session.add(Widget(id_hash=f"try-{body.guess}-{request.headers.get('idempotency-key')}", id_number="x",
                       name=f"try:{body.guess}"))
    await session.flush()
    if body.guess != "right":
        raise WrongGuess()
    return {"ok": True}


@router.post("/widgets", status_code=201)
async def create_widget(
    body: WidgetIn,
    request: Request,
    session: DbSession,
    principal: Annotated[Principal, Depends(require("citizen", "staff", min_level=2))],
) -> Any:
    from sqlalchemy.exc import IntegrityError

    w = Widget(id_hash=id_hash(body.id_number), id_number=body.id_number, name=body.name)
    try:
        async with session.begin_nested():
            session.add(w)
            await session.flush()
    except IntegrityError:
        raise Teapot(params={"hint": "x"}) from None
    OUTBOX.emit(session, type="test.widget.created.v1", subject=str(w.id), data={"id": w.id, "name": w.name})
    if principal.kind == "staff":
        record_audit(session, actor=principal, action="widget.create", target_type="widget",
                     target_id=str(w.id), at=request.app.state.clock.now(), reason="test")
    return {"id": w.id, "id_number_masked": mask_id_number(body.id_number), "name": w.name}


@router.post("/pay", status_code=201, openapi_extra=idempotency_key_required("a payment attempt"))
async def pay(principal: Annotated[Principal, Depends(require("citizen", min_level=2))]) -> Any:
    return {"ok": True}


@router.get("/widgets")
async def list_widgets(session: DbSession, _: Annotated[Principal, Depends(require("staff", roles=["operator"]))]) -> Any:
    rows = (await session.execute(select(Widget).order_by(Widget.id))).scalars().all()
    return {"items": [{"id": w.id, "name": w.name} for w in rows], "next_cursor": None}


@router.get("/fresh")
async def fresh(_: Annotated[Principal, Depends(require("citizen", min_level=3, fresh=True))]) -> Any:
    return {"ok": True}


@router.get("/face")
async def face(_: Annotated[Principal, Depends(require("citizen", min_level=3, face=True))]) -> Any:
    return {"ok": True}


@router.get("/boom")
async def boom() -> Any:
    raise RuntimeError("secret 110105199001010010 internals")


def kernel_app_factory(settings: Any, common: Any, clock: Any) -> Any:
    return create_service_app(settings=settings, common=common, clock=clock, title="kernel test",
                              description="kernel test", routers=[router])


@pytest.fixture
async def ksvc(make_service: Any) -> Any:
    """The kernel test service on a registration-shaped database plus the test table."""
    svc = await make_service("registration", app_factory=kernel_app_factory)
    async with svc.db.engine.begin() as conn:
        await conn.run_sync(lambda c: Widget.__table__.create(c, checkfirst=True))
    return svc
