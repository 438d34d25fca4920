"""电子社保卡: the electronic card per platform, its signed QR payload and the hospital's check."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jws, jwt
from jose.exceptions import JOSEError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.card.errors import (
    EcardAlreadyIssued,
    EcardNotFound,
    PlatformUnknown,
    QrAlreadyUsed,
    QrExpired,
    QrInvalid,
)
from services.card.models import Card, ECard, QrVerification
from services.card.schemas import CardStatus, ECardOut, QrCodeOut, VerificationOut
from services.card.service import card_no_masked, ecard_out, my_card, refresh_loss, state_conflict
from services.common.audit import record_audit
from services.common.clock import Clock
from services.common.keyset import KeySet, WatchedKey, public_key_of_pem, thumbprint
from services.common.pii import mask_id_number, mask_name
from services.common.principal import Principal

QR_ISSUER = "socialsec-card"
QR_AUDIENCE = "socialsec-card-verification"
_CLOCK_SKEW = 30


def legacy_qr_kid(key: ec.EllipticCurvePublicKey) -> str:
    """The kid QR payloads carried before kids were RFC 7638 thumbprints (still accepted for the same key)."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


class QrSigner:
    """ES256 signing of e-card QR payloads with the card service's key, and their verification with a key set.

    The payload's `kid` names the key (its RFC 7638 thumbprint, or CARD_QR_SIGNING_KEY_ID). A payload
    verifies with the key its kid names among the key set (CARD_QR_PUBLIC_KEYS_FILE) and the signing
    key's own public key; both files are re-read when they change, so the key can be rotated without
    a restart and a QR shown before the switch still verifies while its key is in the set.
    """

    def __init__(
        self, private_key_pem: str | None = None, *, ttl_seconds: int, key_file: Path | None = None,
        key_id: str | None = None, public_keys_file: Path | None = None, check_seconds: float = 5.0,
    ) -> None:
        self._fixed: tuple[str, str] | None = None
        self.signing: WatchedKey | None = None
        self._own: Callable[[], list[ec.EllipticCurvePublicKey]]
        if key_file is None:
            if private_key_pem is None:
                raise ValueError("QrSigner needs a key file or a PEM")
            # A fixed key given as text (tests, tools): never re-read.
            own = public_key_of_pem(private_key_pem)
            self._fixed = (key_id or thumbprint(own), private_key_pem)
            self._own = lambda: [own]
        else:
            self.signing = WatchedKey(name="e-card QR signing key", path=key_file, kid=key_id, check_seconds=check_seconds)
            watched = self.signing

            def own_keys() -> list[ec.EllipticCurvePublicKey]:
                watched.refresh()
                return [watched.public_key]

            self._own = own_keys
        self.keys = KeySet(
            name="e-card QR public keys", jwks_file=public_keys_file, extra=self._own,
            aliases=lambda key: (legacy_qr_kid(key),), check_seconds=check_seconds,
        )
        self.ttl = ttl_seconds

    @property
    def kid(self) -> str:
        return self._current()[0]

    def _current(self) -> tuple[str, str]:
        if self._fixed is not None:
            return self._fixed
        assert self.signing is not None
        return self.signing.current()

    def sign(self, claims: dict[str, Any]) -> str:
        kid, pem = self._current()
        token: str = jwt.encode(claims, pem, algorithm="ES256", headers={"kid": kid})
        return token

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a payload signed by a key of the set (expiry is checked by the caller's clock)."""
        try:
            kid = jws.get_unverified_header(token).get("kid")
        except (JOSEError, AttributeError, ValueError, TypeError):
            raise QrInvalid() from None
        if kid is not None and not isinstance(kid, str):
            raise QrInvalid()
        for candidate in self.keys.candidates(kid):
            try:
                claims: dict[str, Any] = jwt.decode(
                    token, candidate.pem, algorithms=["ES256"], audience=QR_AUDIENCE, issuer=QR_ISSUER,
                    options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "require_aud": True,
                             "require_iss": True},
                )
                return claims
            except (JOSEError, ValueError, TypeError):
                continue
        raise QrInvalid()


def platform_of(principal: Principal) -> str:
    """The platform the citizen is calling from (alipay, wechat, ...), from the token's issuer."""
    platform = principal.platform or principal.issuer
    if not platform:
        raise PlatformUnknown()
    return platform[:40]


async def issue_ecard(*, session: AsyncSession, principal: Principal, clock: Clock) -> ECardOut:
    """领取电子社保卡 for the calling platform; the physical card must be made."""
    platform = platform_of(principal)
    card = await my_card(session=session, principal=principal, clock=clock)
    allowed = {CardStatus.issued, CardStatus.active}
    if card.status not in allowed:
        raise state_conflict(card, allowed=allowed)
    ecard = ECard(id=str(uuid.uuid4()), card_id=card.id, platform=platform, issued_at=clock.now())
    try:
        async with session.begin_nested():
            session.add(ecard)
            await session.flush()
    except IntegrityError:
        raise EcardAlreadyIssued(params={"platform": platform}) from None
    return ecard_out(ecard, card)


async def make_qrcode(*, session: AsyncSession, principal: Principal, signer: QrSigner, clock: Clock) -> QrCodeOut:
    """A signed, one-time QR payload for the caller's e-card, valid for the configured seconds."""
    platform = platform_of(principal)
    card = await my_card(session=session, principal=principal, clock=clock)
    ecard = (
        await session.execute(select(ECard).where(ECard.card_id == card.id, ECard.platform == platform))
    ).scalar_one_or_none()
    return sign_qrcode(card=card, ecard=ecard, platform=platform, signer=signer, clock=clock)


def sign_qrcode(*, card: Card, ecard: ECard | None, platform: str, signer: QrSigner, clock: Clock) -> QrCodeOut:
    """The signed, one-time payload of an e-card of an active card (the holder's own, or a bound relative's)."""
    if ecard is None:
        raise EcardNotFound(params={"platform": platform})
    if card.status != CardStatus.active:
        raise state_conflict(card, allowed={CardStatus.active})
    now = clock.now()
    expires = now + timedelta(seconds=signer.ttl)
    claims = {
        "iss": QR_ISSUER, "aud": QR_AUDIENCE, "sub": card.id, "ecd": ecard.id, "plt": platform,
        "iat": int(now.timestamp()), "exp": int(expires.timestamp()), "jti": secrets.token_urlsafe(18),
    }
    return QrCodeOut(payload=signer.sign(claims), ecard_id=ecard.id, expires_at=expires.replace(microsecond=0),
                     valid_seconds=signer.ttl)


async def verify_qrcode(
    *, session: AsyncSession, actor: Principal, payload: str, signer: QrSigner, clock: Clock
) -> VerificationOut:
    """扫码核验: signature, expiry, single use (a unique nonce row) and the card's state."""
    claims = signer.verify(payload)
    nonce, card_id, ecard_id, exp, iat = (claims.get(k) for k in ("jti", "sub", "ecd", "exp", "iat"))
    if not (isinstance(nonce, str) and isinstance(card_id, str) and isinstance(ecard_id, str)
            and isinstance(exp, int) and isinstance(iat, int)) or len(nonce) > 64:
        raise QrInvalid()
    now = clock.now()
    if iat > now.timestamp() + _CLOCK_SKEW:
        raise QrInvalid()
    if now.timestamp() >= exp:
        raise QrExpired(params={"expired_at": datetime.fromtimestamp(exp, UTC).isoformat()})
    card = (await session.execute(select(Card).where(Card.id == card_id).with_for_update())).scalar_one_or_none()
    ecard = await session.get(ECard, ecard_id)
    if card is None or ecard is None or ecard.card_id != card.id:
        raise QrInvalid()
    verification = QrVerification(
        id=str(uuid.uuid4()), nonce=nonce, card_id=card.id, ecard_id=ecard.id, channel=actor.actor_id, verified_at=now
    )
    try:
        async with session.begin_nested():
            session.add(verification)
            await session.flush()
    except IntegrityError:
        raise QrAlreadyUsed() from None
    await refresh_loss(session=session, card=card, clock=clock)
    if card.status != CardStatus.active:
        raise state_conflict(card, allowed={CardStatus.active})
    record_audit(
        session, actor=actor, action="card.qr_verified", target_type="card", target_id=card.id, at=now,
        details={"verification_id": verification.id, "platform": ecard.platform},
    )
    return VerificationOut(
        id=verification.id, verified_at=now, card_id=card.id, card_status=CardStatus(card.status),
        card_no_masked=card_no_masked(card), holder_name_masked=mask_name(card.holder_name) or "",
        id_number_masked=mask_id_number(card.id_number) or "", platform=ecard.platform,
    )
