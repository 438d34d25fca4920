"""Background jobs: close unpaid payments past their time (at the platform first) so the declaration can be paid
again; keep the WeChat Pay platform certificates fresh in certificate mode."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from fastapi import FastAPI

from services.common.jobs import periodic
from services.contribution.payments.platforms import platforms_of
from services.contribution.payments.queries import close_due_payments_once
from services.contribution.payments.wechatpay import WechatPayError, refresh_certificates

log = logging.getLogger("socialsec.contribution.payments")


async def close_payments_once(app: FastAPI) -> int:
    """One pass: close every open payment past its time, and those a crash left waiting for the platform's answer,
    at the platform first (`payments.queries`); one paid meanwhile is credited instead."""
    return await close_due_payments_once(app)


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


CERTIFICATES_RETRY_SECONDS = 60.0
# An unknown serial in a signed answer or notification brings the next fetch forward, at most this often.
CERTIFICATES_EARLY_SECONDS = 60.0
CERTIFICATES_TICK_SECONDS = 5.0


async def refresh_wechatpay_certificates_once(app: FastAPI) -> int:
    """Fetch the WeChat Pay platform certificates into the platform keys; how many are known."""
    platforms = platforms_of(app)
    now = int(app.state.clock.now().timestamp())
    certificates = await refresh_certificates(platforms.wechat, platforms.wechat_platform_keys, platforms.client, now=now)
    log.info("wechatpay platform certificates: %s", ", ".join(c.serial_no for c in certificates) or "none")
    return len(certificates)


async def wechatpay_certificates(app: FastAPI, stop: asyncio.Event) -> None:
    """In certificate mode, fetch the platform certificates now and every refresh interval (a minute after a
    failure), and sooner when a signature named a serial not known yet."""
    try:
        platforms = platforms_of(app)
        settings = platforms.settings
    except Exception as exc:
        log.error("payment configuration is not usable: %s", exc)
        return
    if not settings.wechatpay_certificate_mode:
        return
    loop = asyncio.get_running_loop()
    due = loop.time()
    last = float("-inf")
    while not stop.is_set():
        now = loop.time()
        missed = platforms.wechat_platform_keys.missed if "wechat_platform_keys" in vars(platforms) else None
        if now >= due or (missed is not None and now - last >= CERTIFICATES_EARLY_SECONDS):
            if missed is not None:
                log.info("wechatpay serial %s not known: fetching the platform certificates", missed)
            last = now
            due = now + settings.wechatpay_certificates_refresh_seconds
            try:
                await refresh_wechatpay_certificates_once(app)
            except (WechatPayError, ValueError) as exc:
                log.error("wechatpay platform certificates not refreshed: %s", exc)
                due = now + min(settings.wechatpay_certificates_refresh_seconds, CERTIFICATES_RETRY_SECONDS)
            except Exception:
                log.exception("wechatpay platform certificates not refreshed")
                due = now + min(settings.wechatpay_certificates_refresh_seconds, CERTIFICATES_RETRY_SECONDS)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, min(CERTIFICATES_TICK_SECONDS, due - loop.time())))
