"""The trusted-issuer registry: who may sign platform tokens, with which keys, and how their claims are named.

Loaded from the JSON file named by GATEWAY_ISSUERS_FILE and reloaded on SIGHUP.
Keys come from exactly one of `jwks_uri` (fetched over httpx, cached), `jwks_file`
(relative to the issuers file's folder) or inline `jwks`. A key is chosen by the
token's (iss, kid); an unknown kid triggers at most one refresh per issuer per
`GATEWAY_JWKS_REFRESH_SECONDS` (30 s), so a stream of made-up kids cannot turn the
gateway into a load generator against the platform.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.errors import IssuerKeysUnavailable, SigningKeyUnknown
from services.common.principal import PrincipalKind

log = logging.getLogger("socialsec.gateway.issuers")

# Asymmetric signatures only: `none` and the HS* family (a public key used as an HMAC secret) never.
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
KEY_TYPE_OF = {"RS": "RSA", "PS": "RSA", "ES": "EC"}
EC_CURVE_OF = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

# Our claim names (the principal's fields) that an issuer may rename.
CLAIM_NAMES = (
    "sub", "kind", "id_number", "name", "realname_level", "auth_method", "auth_time", "credit_code",
    "unit_name", "operator", "channel_kind", "branch_id", "staff_id", "roles",
)
FAILED_FETCH_BACKOFF_SECONDS = 1.0
MAX_JWKS_BYTES = 256 * 1024


class IssuersFileError(ValueError):
    """The issuers file cannot be used (the previous registry stays in force on reload)."""


class IssuerConfig(BaseModel):
    """One trusted issuer, as written in the issuers file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    issuer: str = Field(min_length=1, max_length=512)
    audience: str | list[str]
    algorithms: list[str] = Field(min_length=1)
    kinds: list[PrincipalKind] = Field(min_length=1)
    platform: str | None = Field(default=None, max_length=32)
    jwks_uri: str | None = None
    jwks_file: str | None = None
    jwks: dict[str, Any] | None = None
    claims: dict[str, str] = Field(default_factory=dict)
    leeway_seconds: int = Field(default=60, ge=0, le=300)

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a not in ALLOWED_ALGORITHMS]
        if bad:
            raise ValueError(f"algorithms not allowed: {bad} (asymmetric RS*, PS*, ES* only)")
        return value

    @field_validator("claims")
    @classmethod
    def _claims(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(CLAIM_NAMES))
        if unknown:
            raise ValueError(f"unknown claim names {unknown}; ours are {list(CLAIM_NAMES)}")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        sources = [s for s in (self.jwks_uri, self.jwks_file, self.jwks) if s is not None]
        if len(sources) != 1:
            raise ValueError("exactly one of jwks_uri, jwks_file, jwks")
        return self

    def claim(self, ours: str) -> str:
        """The issuer's name for one of our claims."""
        return self.claims.get(ours, ours)

    @property
    def audiences(self) -> list[str]:
        return [self.audience] if isinstance(self.audience, str) else list(self.audience)


class IssuersFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issuers: list[IssuerConfig]


def parse_jwks(document: Any) -> dict[str | None, dict[str, Any]]:
    """Signing keys of a JWKS by kid (RSA and EC public keys only; private members dropped)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is an object with a `keys` array")
    out: dict[str | None, dict[str, Any]] = {}
    for key in document["keys"]:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            continue
        if key.get("use", "sig") != "sig":
            continue
        public = {k: v for k, v in key.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth", "k")}
        kid = key.get("kid")
        out[str(kid) if kid is not None else None] = public
    return out


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class Verified:
    """A verified token: its principal, how long the verification stands, the token's own `exp`,
    and the X-Principal already signed from it per target service (with the instant each stops being used)."""

    principal: dict[str, Any]
    until: float
    exp: float
    signed: dict[str, tuple[float, str]] = field(default_factory=dict)

    def signed_for(self, service: str, now: float) -> str | None:
        """The principal signed for `service`, while it may still be used (never at or past the token's exp)."""
        hit = self.signed.get(service)
        if hit is None or now >= hit[0] or now >= self.exp:
            return None
        return hit[1]

    def keep_signed(self, service: str, signed: str, *, until: float) -> None:
        """Reuse `signed` for `service` until `until`, and in no case at or past the token's exp."""
        self.signed[service] = (min(until, self.exp), signed)


class VerifiedTokens:
    """Tokens already verified, with their principal, until they expire (at most `ttl` seconds).

    Keyed by a SHA-256 of the exact token text, so any altered byte is verified afresh. Cleared when
    the issuers or their keys change; bounded in size (oldest first out). The X-Principal signed
    from a token lives in the same entry, so it is forgotten with the verification.
    """

    def __init__(self, max_entries: int = 10_000, ttl: float = 60.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self.entries: OrderedDict[bytes, Verified] = OrderedDict()

    def entry(self, token: str, now: float) -> Verified | None:
        key = _digest(token)
        hit = self.entries.get(key)
        if hit is None:
            return None
        if now >= hit.until:
            self.entries.pop(key, None)
            return None
        return hit

    def get(self, token: str, now: float) -> dict[str, Any] | None:
        hit = self.entry(token, now)
        return hit.principal if hit is not None else None

    def put(self, token: str, principal: dict[str, Any], *, until: float, now: float, exp: float | None = None) -> Verified:
        entry = Verified(principal, min(until, now + self.ttl), exp if exp is not None else until)
        self.entries[_digest(token)] = entry
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return entry

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class IssuerState:
    """An issuer's configuration and its cached keys."""

    config: IssuerConfig
    jwks_path: Path | None = None
    keys: dict[str | None, dict[str, Any]] | None = None
    loaded_at: float = 0.0
    last_refresh: float = float("-inf")  # the last refresh an unknown kid triggered
    last_failure: float = float("-inf")
    generation: int = 0  # bumped on every successful load
    constructed: dict[tuple[str | None, str], Any] = field(default_factory=dict)  # (kid, alg) -> library key
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def source(self) -> tuple[str, str]:
        if self.config.jwks_uri:
            return ("uri", self.config.jwks_uri)
        if self.jwks_path:
            return ("file", str(self.jwks_path))
        return ("inline", json.dumps(self.config.jwks, sort_keys=True))


class IssuerRegistry:
    """Trusted issuers by `iss`, with their JWKS caches."""

    def __init__(
        self,
        states: list[IssuerState],
        *,
        http: httpx.AsyncClient,
        now: Callable[[], float],
        refresh_interval: float = 30.0,
        cache_seconds: float = 3600.0,
    ) -> None:
        self.by_iss = {s.config.issuer: s for s in states}
        self.http = http
        self.now = now
        self.refresh_interval = refresh_interval
        self.cache_seconds = cache_seconds
        self.fetches = 0  # JWKS documents fetched or read
        self.on_load: Callable[[str], None] | None = None  # told the issuer's name after each successful load
        self.verified = VerifiedTokens()

    @classmethod
    def from_file(cls, path: Path, **kwargs: Any) -> IssuerRegistry:
        """Build a registry from an issuers file; raise IssuersFileError when it cannot be used."""
        return cls(load_issuers(path), **kwargs)

    def replace(self, states: list[IssuerState]) -> None:
        """Swap in a reloaded configuration, keeping the caches of issuers whose key source did not change."""
        old = {(s.config.name, s.config.issuer, s.source): s for s in self.by_iss.values()}
        for s in states:
            prev = old.get((s.config.name, s.config.issuer, s.source))
            if prev is not None and s.source[0] != "inline":
                s.keys, s.loaded_at, s.last_refresh = prev.keys, prev.loaded_at, prev.last_refresh
        self.by_iss = {s.config.issuer: s for s in states}
        self.verified.clear()

    def get(self, iss: str) -> IssuerState | None:
        return self.by_iss.get(iss)

    async def key_for(self, state: IssuerState, kid: str | None) -> dict[str, Any]:
        """The JWK named by kid (one refresh on an unknown kid, throttled per issuer)."""
        now = self.now()
        generation = state.generation
        stale = state.keys is not None and state.config.jwks_uri is not None and now - state.loaded_at > self.cache_seconds
        if state.keys is None or stale:
            await self._load(state, generation, reason="initial" if state.keys is None else "expired")
        elif self._pick(state.keys, kid) is None:
            if state.lock.locked():
                async with state.lock:  # a refresh is under way: use its result
                    pass
            elif now - state.last_refresh >= self.refresh_interval:
                state.last_refresh = now
                await self._load(state, generation, reason="unknown kid")
        if state.keys is None:
            raise IssuerKeysUnavailable(params={"issuer": state.config.name})
        key = self._pick(state.keys, kid)
        if key is None:
            raise SigningKeyUnknown()
        return key

    @staticmethod
    def _pick(keys: dict[str | None, dict[str, Any]], kid: str | None) -> dict[str, Any] | None:
        if kid is not None:
            return keys.get(kid)
        # A token without kid is accepted only when the issuer has exactly one key: never guess among several.
        return next(iter(keys.values())) if len(keys) == 1 else None

    async def _load(self, state: IssuerState, generation: int, *, reason: str) -> None:
        async with state.lock:
            if state.generation != generation:
                return  # another request loaded them while this one waited
            now = self.now()
            if state.keys is None and now - state.last_failure < FAILED_FETCH_BACKOFF_SECONDS:
                return
            try:
                state.keys = await self._read(state)
                state.loaded_at = now
                state.generation += 1
                state.constructed = {}
                self.verified.clear()  # a key may have been withdrawn
                if self.on_load is not None:
                    self.on_load(state.config.name)
                log.info("keys of issuer %s loaded (%s): %d", state.config.name, reason, len(state.keys))
            except Exception as exc:  # network, HTTP status, JSON: keep what we had
                state.last_failure = now
                log.warning("keys of issuer %s not loaded (%s): %s", state.config.name, reason, exc)

    async def _read(self, state: IssuerState) -> dict[str | None, dict[str, Any]]:
        self.fetches += 1
        cfg = state.config
        if cfg.jwks is not None:
            return parse_jwks(cfg.jwks)
        if state.jwks_path is not None:
            text = await asyncio.to_thread(state.jwks_path.read_text)
            return parse_jwks(json.loads(text))
        assert cfg.jwks_uri is not None
        r = await self.http.get(cfg.jwks_uri, headers={"Accept": "application/json"})
        r.raise_for_status()
        if len(r.content) > MAX_JWKS_BYTES:
            raise ValueError("JWKS document too large")
        return parse_jwks(r.json())

    async def prefetch(self, *, max_delay: float = 30.0) -> None:
        """Load every issuer's keys at start-up, retrying with backoff until each has them
        (the platform, or the sandbox started alongside, may come up after the gateway)."""
        delay = 0.5
        while True:
            missing = [s for s in self.by_iss.values() if s.keys is None]
            if not missing:
                return
            for s in missing:
                s.last_failure = float("-inf")  # this loop paces itself
            await asyncio.gather(*(self._load(s, s.generation, reason="initial") for s in missing))
            if all(s.keys is not None for s in missing):
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


def load_issuers(path: Path) -> list[IssuerState]:
    """Read and check an issuers file; relative jwks_file paths resolve against its folder."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        parsed = IssuersFile.model_validate(raw)
    except FileNotFoundError as exc:
        raise IssuersFileError(f"issuers file not found: {path}") from exc
    except (json.JSONDecodeError, ValidationError) as exc:
        raise IssuersFileError(f"issuers file {path} is invalid: {exc}") from exc
    names = [i.name for i in parsed.issuers]
    isses = [i.issuer for i in parsed.issuers]
    if len(set(names)) != len(names) or len(set(isses)) != len(isses):
        raise IssuersFileError(f"issuers file {path}: issuer names and `issuer` values must be unique")
    states = []
    for cfg in parsed.issuers:
        jwks_path = None
        if cfg.jwks_file is not None:
            jwks_path = Path(cfg.jwks_file)
            if not jwks_path.is_absolute():
                jwks_path = Path(path).resolve().parent / jwks_path
        states.append(IssuerState(config=cfg, jwks_path=jwks_path))
    return states
