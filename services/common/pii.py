"""Personal data at rest: id numbers encrypted (AES-256-GCM) with a keyed hash for look-ups.

Every service holds the same two keys, so the keyed hash in an event equals the
consumer's own hash of the same id number. A database dump alone reveals no id
number. Answers show only masked values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import String
from sqlalchemy.types import TypeDecorator

_NONCE = 12
_VERSION = b"\x01"


class PiiCipher:
    """Encrypts, decrypts and hashes id numbers with the shared keys."""

    def __init__(self, key: bytes, hash_key: bytes) -> None:
        self._aead = AESGCM(key)
        self._hash_key = hash_key

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(_NONCE)
        ct = self._aead.encrypt(nonce, plaintext.encode(), _VERSION)
        return base64.b64encode(_VERSION + nonce + ct).decode()

    def decrypt(self, token: str) -> str:
        raw = base64.b64decode(token)
        if raw[:1] != _VERSION:
            raise ValueError("unknown ciphertext version")
        nonce, ct = raw[1 : 1 + _NONCE], raw[1 + _NONCE :]
        return self._aead.decrypt(nonce, ct, _VERSION).decode()

    def hash(self, value: str) -> str:
        """Keyed hash (HMAC-SHA256, hex) of a normalized identifier."""
        return hmac.new(self._hash_key, value.strip().upper().encode(), hashlib.sha256).hexdigest()


_cipher: PiiCipher | None = None


def configure_pii(key: bytes, hash_key: bytes) -> PiiCipher:
    """Install the process-wide cipher (at app creation)."""
    global _cipher
    _cipher = PiiCipher(key, hash_key)
    return _cipher


def cipher() -> PiiCipher:
    if _cipher is None:
        raise RuntimeError("PII keys are not configured")
    return _cipher


def id_hash(id_number: str) -> str:
    """The keyed hash used to find a person by id number, in every service."""
    return cipher().hash(id_number)


class EncryptedString(TypeDecorator[str]):
    """A column holding an AES-GCM ciphertext of a string (id numbers, card numbers)."""

    impl = String(255)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return cipher().encrypt(str(value))

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return cipher().decrypt(value)


def mask_id_number(value: str | None) -> str | None:
    """`110101199001018515` -> `110101********8515`."""
    if not value:
        return value
    if len(value) <= 10:
        return value[:2] + "*" * max(len(value) - 4, 0) + value[-2:]
    return value[:6] + "*" * (len(value) - 10) + value[-4:]


def mask_name(value: str | None) -> str | None:
    """`张三丰` -> `*三丰`: the family name hidden, as on public certificate checks."""
    if not value:
        return value
    return "*" + value[1:] if len(value) > 1 else "*"


_ID_RE = re.compile(r"(?<![0-9A-Za-z])([0-9０-９]{6})([0-9０-９]{8})([0-9０-９]{3}[0-9０-９XxＸｘ])(?![0-9A-Za-z])")


def redact(text: str) -> str:
    """Mask anything shaped like an 18-character id number (used on every log line)."""
    return _ID_RE.sub(lambda m: m.group(1) + "********" + m.group(3), text)
