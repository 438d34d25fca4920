"""Contribution service: policies, quotes, declarations, payments, records, certificates."""

import logging

from fastapi import FastAPI

from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.jobs import periodic
from services.common.settings import CommonSettings
from services.contribution.api import router
from services.contribution.declarations.lifecycle import expire_due_declarations
from services.contribution.family import CARD_HANDLERS
from services.contribution.family import router as family_router
from services.contribution.payments.api import router as payments_router
from services.contribution.payments.jobs import payment_closer, wechatpay_certificates
from services.contribution.payments.queries import payment_querier
from services.contribution.payments.reconciliation import daily_reconciliation
from services.contribution.payments.refunds import refund_retrier
from services.contribution.payments.staff_api import router as money_back_router
from services.contribution.readmodel import REGISTRATION_HANDLERS, REVIEW_HANDLERS
from services.contribution.reminders import reminder_due, reminder_sending
from services.contribution.reminders import router as reminders_router
from services.contribution.settings import Settings
from services.contribution.webhooks.api import router as webhooks_router
from services.contribution.webhooks.jobs import webhook_fan_out, webhook_sender

log = logging.getLogger("socialsec.contribution")


async def expire_once(app: FastAPI) -> int:
    """One pass: expire the unpaid declarations past their time (freeing their months)."""
    async with app.state.db.sessionmaker() as session, session.begin():
        return await expire_due_declarations(session=session, now=app.state.clock.now())


expire_declarations_job = periodic(
    "declaration expiry", expire_once, lambda app: app.state.settings.expiry_interval_seconds,
    again_at_once_when_busy=True,
)


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The contribution service application."""
    return create_service_app(
        settings=settings or Settings(),
        common=common,
        clock=clock,
        title="Contribution service",
        description="Policies, quotes, declarations, payments, records and certificates.",
        routers=[router, payments_router, money_back_router, webhooks_router, reminders_router,
                 family_router],
        consumers={"registration": REGISTRATION_HANDLERS, "review": REVIEW_HANDLERS, "card": CARD_HANDLERS},
        background_jobs=[expire_declarations_job, payment_closer, payment_querier, refund_retrier, daily_reconciliation,
                         webhook_fan_out, webhook_sender, reminder_due, reminder_sending, wechatpay_certificates],
    )


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.contribution.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
