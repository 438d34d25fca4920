"""Card service settings (`CARD_*`)."""

import hashlib
import hmac
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.common.settings import CommonSettings, ConfigurationError, ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CARD_", extra="ignore")
    service_name = "card"

    # Where registration's event feed is (persons and enrolments read model).
    registration_url: str | None = None
    # ES256 private key signing e-card QR payloads (default: $SOCIALSEC_VAR_DIR/keys/card-qr-signing.pem).
    qr_signing_key_file: Path | None = None
    # The kid QR payloads carry; default: the RFC 7638 thumbprint of the signing key's public key.
    qr_signing_key_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    # Further public keys a QR payload may be signed with (a JWKS of ES256 keys with kid), during a rotation.
    qr_public_keys_file: Path | None = None
    qr_ttl_seconds: int = Field(default=60, gt=0, le=600)
    # argon2id cost of PIN hashes.
    pin_hash_time_cost: int = Field(default=3, ge=1)
    pin_hash_memory_kib: int = Field(default=65536, ge=8)
    pin_hash_parallelism: int = Field(default=4, ge=1)
    # Secret mixed into every PIN before hashing (base64 or text); default: derived from SOCIALSEC_PII_HASH_KEY.
    pin_pepper: SecretStr | None = None
    # How often expired temporary loss reports are lifted in the background.
    loss_sweep_interval_seconds: float = Field(default=300, gt=0)

    def qr_signing_key_path(self, common: CommonSettings) -> Path:
        """The QR signing key's file."""
        path = self.qr_signing_key_file or (common.keys_dir / "card-qr-signing.pem")
        if not Path(path).exists():
            raise ConfigurationError(f"e-card QR signing key not found at {path} (CARD_QR_SIGNING_KEY_FILE)")
        if self.qr_public_keys_file is not None and not Path(self.qr_public_keys_file).exists():
            raise ConfigurationError(f"e-card QR public keys not found at {self.qr_public_keys_file} (CARD_QR_PUBLIC_KEYS_FILE)")
        return Path(path)

    def qr_signing_key_pem(self, common: CommonSettings) -> str:
        """The QR signing key (PEM)."""
        return self.qr_signing_key_path(common).read_text()

    def pin_pepper_bytes(self, common: CommonSettings) -> bytes:
        """The PIN pepper: configured, or derived from the shared keyed-hash key (never stored in the database)."""
        if self.pin_pepper is not None and self.pin_pepper.get_secret_value():
            return self.pin_pepper.get_secret_value().encode()
        return hmac.new(common.pii_hash_key_bytes(), b"socialsec card PIN pepper v1", hashlib.sha256).digest()
