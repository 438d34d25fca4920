"""Card service: social security cards, PINs, activation, electronic cards."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from services.card.api import router
from services.card.ecard import QrSigner
from services.card.family_api import router as family_router
from services.card.pins import PinHasher
from services.card.readmodel import HANDLERS
from services.card.reminders import reminder_sending
from services.card.reminders import router as reminders_router
from services.card.service import lift_expired_losses
from services.card.settings import Settings
from services.common.app import create_service_app
from services.common.clock import Clock
from services.common.jobs import periodic
from services.common.settings import CommonSettings

log = logging.getLogger("socialsec.card")


async def lift_losses_once(app: FastAPI) -> int:
    """One pass: lift the temporary loss reports whose day has come (reads lift them too)."""
    async with app.state.db.sessionmaker() as session, session.begin():
        return await lift_expired_losses(session=session, clock=app.state.clock)


loss_sweep = periodic("temporary loss lifting", lift_losses_once,
                      lambda app: app.state.settings.loss_sweep_interval_seconds)


def create_app(settings: Settings | None = None, common: CommonSettings | None = None, clock: Clock | None = None) -> FastAPI:
    """The card service application."""
    settings = settings or Settings()
    common = common or CommonSettings()
    app = create_service_app(
        settings=settings,
        common=common,
        clock=clock,
        title="Card service",
        description="Social security cards: application, issuance, activation, PIN, loss reports, electronic cards, family service.",
        routers=[router, reminders_router, family_router],
        consumers={"registration": HANDLERS},
        background_jobs=[loss_sweep, reminder_sending],
    )
    app.state.pin_hasher = PinHasher(
        pepper=settings.pin_pepper_bytes(common),
        time_cost=settings.pin_hash_time_cost, memory_kib=settings.pin_hash_memory_kib,
        parallelism=settings.pin_hash_parallelism,
    )
    app.state.qr_signer = QrSigner(
        ttl_seconds=settings.qr_ttl_seconds, key_file=settings.qr_signing_key_path(common),
        key_id=settings.qr_signing_key_id, public_keys_file=settings.qr_public_keys_file,
        check_seconds=common.key_files_check_seconds,
    )
    return app


def __getattr__(name: str) -> FastAPI:
    # `uvicorn services.card.app:app` builds the app on first access.
    if name == "app":
        return create_app()
    raise AttributeError(name)
