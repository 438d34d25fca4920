"""Settings: one pydantic-settings class per service, plus the values every service shares.

Shared values use the `SOCIALSEC_` prefix; a service's own use its name
(`CARD_DATABASE_URL`, `CONTRIBUTION_REGISTRATION_URL`). In development the keys
that `make run` generated under `$SOCIALSEC_VAR_DIR/keys/` are read when the
variables are not set; production passes them in.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from services.common.keyset import KeySet


class ConfigurationError(RuntimeError):
    """A setting is missing or malformed; the process must not start."""


class CommonSettings(BaseSettings):
    """Values every service shares (`SOCIALSEC_*`)."""

    model_config = SettingsConfigDict(env_prefix="SOCIALSEC_", extra="ignore")

    var_dir: Path = Path("var")
    pii_key: SecretStr | None = None
    pii_hash_key: SecretStr | None = None
    internal_token: SecretStr | None = None
    gateway_public_key_file: Path | None = None
    # The gateway's public keys as a JWKS (ES256 keys with kid): several during a key rotation.
    # With the single-key file above too, both are accepted (that key's kid is its RFC 7638 thumbprint).
    gateway_public_keys_file: Path | None = None
    # How often key files (key sets, signing keys) are checked for a change and re-read.
    key_files_check_seconds: float = Field(default=5.0, ge=0, le=3600)
    log_level: str = "INFO"
    log_json: bool = True
    # The event transport: `feed` (consumers poll each producer's HTTP feed) or
    # `nats` (an outbox relay publishes to JetStream; durable pull consumers).
    event_transport: Literal["feed", "nats"] = "feed"
    nats_url: str = "nats://127.0.0.1:4222"
    # Put in front of every stream, subject and consumer name (tests, or two
    # installations sharing one NATS cluster).
    nats_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*$", max_length=40)
    nats_stream_max_age_seconds: float = Field(default=7 * 86400, gt=0)
    nats_duplicate_window_seconds: float = Field(default=120, gt=0)
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    nats_ack_wait_seconds: float = Field(default=30, gt=0)
    # Events a consumer may hold unacknowledged: 1 keeps each producer's events
    # in the order it wrote them across every replica (the feed's order).
    nats_max_ack_pending: int = Field(default=1, ge=1, le=10000)
    nats_relay_interval_seconds: float = Field(default=0.1, gt=0)
    nats_relay_batch_size: int = Field(default=500, gt=0, le=10000)
    # Both transports: an event whose handler failed this many times is parked in
    # `dead_letters`; the n-th retry waits backoff * 2^(n-1) seconds (at most 30).
    event_max_attempts: int = Field(default=5, ge=1, le=100)
    event_retry_backoff_seconds: float = Field(default=0.5, gt=0, le=60)

    @property
    def keys_dir(self) -> Path:
        return self.var_dir / "keys"

    def _secret(self, value: SecretStr | None, filename: str, env: str) -> str:
        if value is not None and value.get_secret_value():
            return value.get_secret_value().strip()
        path = self.keys_dir / filename
        if path.exists():
            return path.read_text().strip()
        raise ConfigurationError(f"{env} is not set and {path} does not exist")

    def pii_key_bytes(self) -> bytes:
        """The AES-256-GCM key for id numbers."""
        raw = base64.b64decode(self._secret(self.pii_key, "pii.key", "SOCIALSEC_PII_KEY"))
        if len(raw) != 32:
            raise ConfigurationError("SOCIALSEC_PII_KEY must be 32 bytes, base64-encoded")
        return raw

    def pii_hash_key_bytes(self) -> bytes:
        """The HMAC key for the keyed id hash (the same in every service)."""
        raw = base64.b64decode(self._secret(self.pii_hash_key, "pii-hash.key", "SOCIALSEC_PII_HASH_KEY"))
        if len(raw) < 32:
            raise ConfigurationError("SOCIALSEC_PII_HASH_KEY must be at least 32 bytes, base64-encoded")
        return raw

    def internal_token_value(self) -> str:
        """The bearer credential for /internal/... routes."""
        return self._secret(self.internal_token, "internal-token", "SOCIALSEC_INTERNAL_TOKEN")

    def gateway_key_set(self) -> KeySet:
        """The keys X-Principal may be signed with: the JWKS file, the single key, or the development key."""
        from services.common.keyset import KeySet

        pem_file = self.gateway_public_key_file
        if pem_file is None and self.gateway_public_keys_file is None:
            pem_file = self.keys_dir / "gateway-signing.pub.pem"
        for path, env in ((pem_file, "SOCIALSEC_GATEWAY_PUBLIC_KEY_FILE"),
                          (self.gateway_public_keys_file, "SOCIALSEC_GATEWAY_PUBLIC_KEYS_FILE")):
            if path is not None and not Path(path).exists():
                raise ConfigurationError(f"gateway public key not found at {path} ({env})")
        return KeySet(
            name="gateway public keys", jwks_file=self.gateway_public_keys_file, pem_file=pem_file,
            check_seconds=self.key_files_check_seconds,
        )

    def gateway_public_key_pem(self) -> str:
        """The gateway's ES256 public key that signs X-Principal."""
        path = self.gateway_public_key_file or (self.keys_dir / "gateway-signing.pub.pem")
        if not Path(path).exists():
            raise ConfigurationError(f"gateway public key not found at {path} (SOCIALSEC_GATEWAY_PUBLIC_KEY_FILE)")
        return Path(path).read_text()


class ServiceSettings(BaseSettings):
    """Base for a service's own settings; subclasses set `service_name` and `env_prefix`."""

    model_config = SettingsConfigDict(extra="ignore")
    service_name: ClassVar[str] = "service"

    database_url: str | None = None
    migrate_on_start: bool = True
    consumers_enabled: bool = True
    poll_interval_seconds: float = Field(default=0.5, gt=0)
    feed_batch_size: int = Field(default=200, gt=0, le=1000)
    db_pool_size: int = Field(default=10, gt=0)
    # How long a request refused for want of a producer's latest events may wait
    # while the consumer catches up before the refusal stands.
    catch_up_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    db_echo: bool = False

    def resolved_database_url(self, common: CommonSettings) -> str:
        """The configured URL, or the embedded SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        path = (common.var_dir / f"{self.service_name}.db").resolve()
        return f"sqlite+aiosqlite:///{path}"

    def producer_urls(self) -> dict[str, str]:
        """Producers this service consumes, by name (fields named `<producer>_url`)."""
        out = {}
        for name in type(self).model_fields:
            if name.endswith("_url") and name != "database_url":
                value = getattr(self, name)
                if value:
                    out[name[: -len("_url")]] = value
        return out
