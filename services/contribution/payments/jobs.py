"""Background job: close unpaid payments past their time so the declaration can be paid again."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI

from services.common.jobs import periodic
from services.contribution.payments.closing import close_expired_payments, pending_abandoned_before
from services.contribution.payments.platforms import platforms_of

log = logging.getLogger("socialsec.contribution.payments")


async def close_payments_once(app: FastAPI) -> int:
    """One pass: close every open payment past its time, and those a crash left waiting for the platform's answer."""
    now = app.state.clock.now()
    async with app.state.db.sessionmaker() as session, session.begin():
        return await close_expired_payments(
            session=session, now=now, pending_before=pending_abandoned_before(platforms_of(app), now),
        )


async def payment_closer(app: FastAPI, stop: asyncio.Event) -> None:
    """Runs until stopped; survives any error of a pass."""
    interval = 30.0
    try:
        platforms = platforms_of(app)
        interval = platforms.settings.payment_close_interval_seconds
        # Load the keys now, so a missing or malformed one is reported at start, not at the first payment.
        _ = platforms.alipay, platforms.wechat
    except Exception as exc:
        log.error("payment configuration is not usable: %s", exc)
    await periodic("closing unpaid payments", close_payments_once, lambda _app: interval)(app, stop)
