"""Gateway settings (`GATEWAY_*`)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from limits import parse
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import ConfigurationError

SERVICES = ("registration", "contribution", "card", "review")


def _var_dir() -> Path:
    return Path(os.environ.get("SOCIALSEC_VAR_DIR", "var"))


class GatewaySettings(BaseSettings):
    """Where the upstreams are, which issuers to trust, the signing key, limits."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    issuers_file: Path | None = None
    signing_key_file: Path | None = None
    # The kid X-Principal carries; default: the RFC 7638 thumbprint of the signing key's public key.
    signing_key_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    # Each `<service>_url` may be a comma-separated list of replicas (round robin, a replica that
    # refuses connections taken out until it answers its /healthz again).
    registration_url: str = "http://127.0.0.1:8001"
    contribution_url: str = "http://127.0.0.1:8002"
    card_url: str = "http://127.0.0.1:8003"
    review_url: str = "http://127.0.0.1:8004"
    upstream_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    upstream_max_connections: int = Field(default=200, gt=0)  # per replica
    # First wait before probing a replica taken out (doubling up to ten times this).
    upstream_probe_seconds: float = Field(default=1.0, gt=0, le=60)
    # Time a client has to send its whole request body (408 request_timeout after); the upstream
    # timeout only starts once the request has been sent on.
    client_body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    rate_limit_storage: str = "memory://"
    rate_limit_per_principal: str = "1200/minute"
    rate_limit_per_address: str = "6000/minute"
    cors_origins: str = ""
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    # A spreadsheet upload (multipart/form-data): 20 MB of file and its envelope, and the time a
    # 100,000-row import takes.
    max_upload_bytes: int = Field(default=21 * 1_048_576, gt=0)
    upload_timeout_seconds: float = Field(default=180.0, gt=0, le=900)
    trusted_proxies: str = ""
    jwks_refresh_seconds: float = Field(default=30.0, ge=0)
    jwks_cache_seconds: float = Field(default=3600.0, gt=0)
    openapi_file: Path | None = None
    openapi_cache_seconds: float = Field(default=60.0, ge=0)
    # Who may read /metrics: clients from these networks, or any caller bearing the token.
    metrics_networks: str = "127.0.0.0/8,::1/128"
    metrics_token: SecretStr | None = None

    @field_validator("rate_limit_per_principal", "rate_limit_per_address")
    @classmethod
    def _limit(cls, value: str) -> str:
        parse(value)  # raises ValueError on a malformed limit such as "10/fortnight"
        return value

    def upstreams(self) -> dict[str, str]:
        """Service name -> base URL of its first replica (no trailing slash)."""
        return {name: urls[0] for name, urls in self.upstream_replicas().items()}

    def upstream_replicas(self) -> dict[str, list[str]]:
        """Service name -> base URLs of its replicas (no trailing slash)."""
        out: dict[str, list[str]] = {}
        for name in SERVICES:
            urls = [u.strip().rstrip("/") for u in str(getattr(self, f"{name}_url")).split(",") if u.strip()]
            if not urls:
                raise ConfigurationError(f"GATEWAY_{name.upper()}_URL: no URL")
            out[name] = urls
        return out

    def resolved_issuers_file(self) -> Path:
        """The issuers file: the configured one, or the default under the data directory."""
        return Path(self.issuers_file) if self.issuers_file else _var_dir() / "issuers.json"

    def signing_key_path(self) -> Path:
        """The file of the ES256 private key that signs X-Principal."""
        path = Path(self.signing_key_file) if self.signing_key_file else _var_dir() / "keys" / "gateway-signing.pem"
        if not path.exists():
            raise ConfigurationError(f"gateway signing key not found at {path} (GATEWAY_SIGNING_KEY_FILE)")
        return path

    def signing_key_pem(self) -> str:
        """The ES256 private key that signs X-Principal."""
        return self.signing_key_path().read_text()

    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Peers whose X-Forwarded-For is believed (a load balancer in front of the gateway)."""
        return _networks(self.trusted_proxies, "GATEWAY_TRUSTED_PROXIES")

    def metrics_network_list(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        """Client networks that may read /metrics without the token."""
        return _networks(self.metrics_networks, "GATEWAY_METRICS_NETWORKS")


def _networks(value: str, variable: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for part in value.split(","):
        part = part.strip()
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError as exc:
                raise ConfigurationError(f"{variable}: {part!r} is not an address or network") from exc
    return nets
