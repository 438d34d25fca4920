"""ES256 key sets for rotation without an outage: the keys a signature may be made with, by `kid`.

A key set is read from a JWKS file (`{"keys": [{"kty": "EC", "crv": "P-256", "x": ..., "y": ...,
"kid": ...}, ...]}`) and/or a single PEM public key (whose kid is its RFC 7638 thumbprint), and is
read again when one of its files changes (checked at most every `check_seconds`), so a key can
be added to, or removed from, every verifier without a restart. A file that cannot be read
leaves the set as it was (the error is logged): a half-written file never empties it.

Rotation: add the new public key to every key set, switch the signer to the new private key,
and remove the old public key once nothing signed with it can still be presented.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.common.settings import ConfigurationError

log = logging.getLogger("socialsec.keys")

MAX_KEYS = 20
MAX_FILE_BYTES = 256 * 1024


def _b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64u_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ec_public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public JWK members of a P-256 key (no kid)."""
    if not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("expected a P-256 key")
    numbers = key.public_numbers()
    return {"crv": "P-256", "kty": "EC", "x": _b64u(numbers.x.to_bytes(32, "big")), "y": _b64u(numbers.y.to_bytes(32, "big"))}


def thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of a P-256 public key."""
    members = ec_public_jwk(key)
    canonical = json.dumps({k: members[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"), sort_keys=True)
    return _b64u(hashlib.sha256(canonical.encode()).digest())


def public_key_of_pem(pem: str) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from a PEM public key, or from the PEM private key it belongs to."""
    data = pem.encode()
    key: Any
    if b"PRIVATE KEY" in data:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("expected a P-256 (ES256) key")
    return key


def public_pem(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def jwks_document(keys: Iterable[tuple[str, ec.EllipticCurvePublicKey]]) -> dict[str, Any]:
    """A JWKS of (kid, public key) pairs, as a key set file holds them."""
    return {"keys": [{**ec_public_jwk(k), "kid": kid, "alg": "ES256", "use": "sig"} for kid, k in keys]}


def _key_of_jwk(item: Any, where: str) -> tuple[str, ec.EllipticCurvePublicKey]:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a key must be a JSON object")
    kid = item.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > 128:
        raise ValueError(f"{where}: every key needs a kid")
    if item.get("kty") != "EC" or item.get("crv") != "P-256" or item.get("alg") not in (None, "ES256"):
        raise ValueError(f"{where}: key {kid!r} is not an ES256 (EC P-256) key")
    if item.get("use") not in (None, "sig") or "d" in item:
        raise ValueError(f"{where}: key {kid!r} must be a public signing key")
    x, y = item.get("x"), item.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise ValueError(f"{where}: key {kid!r} has no x and y")
    try:
        xb, yb = _b64u_decode(x), _b64u_decode(y)
        if len(xb) != 32 or len(yb) != 32:
            raise ValueError("coordinate length")
        key = ec.EllipticCurvePublicNumbers(int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), ec.SECP256R1()).public_key()
    except ValueError as exc:
        raise ValueError(f"{where}: key {kid!r} is not a point of P-256") from exc
    return kid, key


def _read(path: Path) -> str:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
    return path.read_text(encoding="utf-8")


def parse_jwks(text: str, where: str) -> list[tuple[str, ec.EllipticCurvePublicKey]]:
    """The (kid, key) pairs of a JWKS document; a malformed document is a ValueError."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{where}: not JSON") from exc
    items = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError(f"{where}: expected {{\"keys\": [...]}}")
    if len(items) > MAX_KEYS:
        raise ValueError(f"{where}: more than {MAX_KEYS} keys")
    out = [_key_of_jwk(item, where) for item in items]
    kids = [kid for kid, _ in out]
    if len(set(kids)) != len(kids):
        raise ValueError(f"{where}: a kid appears twice")
    return out


@dataclass(frozen=True)
class SetKey:
    """One verification key: its kid, other names it answers to, and its PEM."""

    kid: str
    pem: str
    aliases: tuple[str, ...] = ()


class KeySet:
    """The public keys a verifier accepts, by kid, re-read when its files change.

    `jwks_file` (a JWKS) and `pem_file` (one PEM public key, kid = its thumbprint) may both be
    given; `extra` keys (a signer's own public key) are always part of the set. `aliases` gives
    a key further names (ids that tokens signed before kids were thumbprints carry).
    """

    def __init__(
        self,
        *,
        name: str,
        jwks_file: Path | None = None,
        pem_file: Path | None = None,
        extra: Callable[[], list[ec.EllipticCurvePublicKey]] | None = None,
        aliases: Callable[[ec.EllipticCurvePublicKey], tuple[str, ...]] | None = None,
        check_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.jwks_file = Path(jwks_file) if jwks_file else None
        self.pem_file = Path(pem_file) if pem_file else None
        if self.jwks_file is None and self.pem_file is None and extra is None:
            raise ConfigurationError(f"{name}: no key file")
        self._extra = extra
        self._aliases = aliases
        self.check_seconds = check_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._stamp: tuple[Any, ...] | None = None
        self._checked = float("-inf")
        self._by_kid: dict[str, SetKey] = {}
        self.keys: tuple[SetKey, ...] = ()
        try:
            self._load(self._stamps())
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc
        if not self.keys:
            raise ConfigurationError(f"{name}: the key set is empty")
        self._checked = monotonic()

    def _stamps(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for path in (self.jwks_file, self.pem_file):
            if path is None:
                out.append(None)
                continue
            st = os.stat(path)
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        if self._extra is not None:
            out.append(tuple(thumbprint(k) for k in self._extra()))
        return tuple(out)

    def _load(self, stamp: tuple[Any, ...]) -> None:
        found: list[tuple[str, ec.EllipticCurvePublicKey]] = []
        if self.jwks_file is not None:
            found.extend(parse_jwks(_read(self.jwks_file), str(self.jwks_file)))
        if self.pem_file is not None:
            try:
                key = public_key_of_pem(_read(self.pem_file))
            except ValueError as exc:
                raise ValueError(f"{self.pem_file}: {exc}") from exc
            found.append((thumbprint(key), key))
        for key in self._extra() if self._extra else []:
            found.append((thumbprint(key), key))
        by_kid: dict[str, SetKey] = {}
        ordered: list[SetKey] = []
        for kid, key in found:
            if kid in by_kid:
                continue
            entry = SetKey(kid=kid, pem=public_pem(key), aliases=self._aliases(key) if self._aliases else ())
            by_kid[kid] = entry
            ordered.append(entry)
        for entry in ordered:
            for alias in entry.aliases:
                by_kid.setdefault(alias, entry)
        self._by_kid, self.keys, self._stamp = by_kid, tuple(ordered), stamp

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the files if they changed (at most every check_seconds unless forced); True when re-read."""
        now = self._monotonic()
        if not force and now - self._checked < self.check_seconds:
            return False
        with self._lock:
            self._checked = now
            try:
                stamp = self._stamps()
                if stamp == self._stamp and not force:
                    return False
                self._load(stamp)
            except (OSError, ValueError, TypeError) as exc:
                log.error("%s not reloaded, keeping %d keys: %s", self.name, len(self.keys), exc)
                return False
        if not self.keys:
            log.warning("%s is empty", self.name)
        log.info("%s loaded: %s", self.name, ", ".join(k.kid for k in self.keys))
        return True

    def get(self, kid: str) -> SetKey | None:
        """The key named `kid` (after a due check of the files), or None."""
        self.refresh()
        return self._by_kid.get(kid)

    def candidates(self, kid: str | None) -> tuple[SetKey, ...]:
        """The keys to try for a signature: the one its kid names, or every key for a signature without kid."""
        if kid is None:
            self.refresh()
            return self.keys
        found = self.get(kid)
        return (found,) if found is not None else ()

    def kids(self) -> list[str]:
        return [k.kid for k in self.keys]


class WatchedKey:
    """A signer's private key file, re-read when it changes (a bad file keeps the current key)."""

    def __init__(
        self, *, name: str, path: Path, kid: str | None = None, check_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.path = Path(path)
        self.configured_kid = kid
        self.check_seconds = check_seconds
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        self._first: str | None = None
        self.kid = ""
        self.pem = ""
        try:
            self._load()
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigurationError(f"{name}: {exc}") from exc
        self._checked = monotonic()

    def _load(self) -> None:
        st = os.stat(self.path)
        pem = _read(self.path)
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"{self.path}: expected an EC P-256 private key")
        own = thumbprint(key.public_key())
        if self.configured_kid and self._stamp is not None and own != self._first:
            # A configured id names the key present at start; a key switched in place is named by its thumbprint.
            log.warning("%s: the key changed, named by its thumbprint %s instead of %s", self.name, own, self.configured_kid)
        self._first = self._first or own
        self.pem = pem
        self.public_key = key.public_key()
        self.kid = self.configured_kid if self.configured_kid and own == self._first else own
        self._stamp = (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self, *, force: bool = False) -> bool:
        now = self._monotonic()
        if not force and now - self._checked < self.check_seconds:
            return False
        with self._lock:
            self._checked = now
            try:
                st = os.stat(self.path)
                if (st.st_mtime_ns, st.st_size, st.st_ino) == self._stamp and not force:
                    return False
                old = self.kid
                self._load()
            except (OSError, ValueError, TypeError) as exc:
                log.error("%s not reloaded, still signing with %s: %s", self.name, self.kid, exc)
                return False
        if self.kid != old:
            log.info("%s switched from %s to %s", self.name, old, self.kid)
        return True

    def current(self) -> tuple[str, str]:
        """(kid, private key PEM) to sign with now."""
        self.refresh()
        return self.kid, self.pem
