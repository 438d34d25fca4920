"""Payment platform settings (`CONTRIBUTION_*`): Alipay, WeChat Pay, time-out, certificates.

Keys are files. Left unset, the development keys that `make run` creates under
`$SOCIALSEC_VAR_DIR/keys/` are used and the URLs point at the local sandbox;
production sets every value.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import CommonSettings, ConfigurationError

FONT_FILE = Path(__file__).with_name("fonts") / "NotoSansSC-Subset.ttf"
SANDBOX_PLATFORM_KEY_ID = "PUB_KEY_ID_0112345678901234567890123456789012"


class PaymentSettings(BaseSettings):
    """How the contribution service reaches Alipay and WeChat Pay."""

    model_config = SettingsConfigDict(env_prefix="CONTRIBUTION_", extra="ignore")

    alipay_gateway_url: str = "http://127.0.0.1:8010/sandbox/alipay/gateway.do"
    alipay_app_id: str = Field(default="2021000100000001", min_length=1, max_length=32)
    alipay_app_private_key_file: Path | None = None
    alipay_public_key_file: Path | None = None
    # Further Alipay public keys (comma-separated files) during a rotation of Alipay's key: an answer or a
    # notification verifies when any key (these or the one above) verifies it.
    alipay_public_key_files: str = ""
    alipay_seller_id: str | None = "2088000000000001"
    alipay_notify_url: str = "http://127.0.0.1:8002/contribution/v1/notify/alipay"

    wechatpay_base_url: str = "http://127.0.0.1:8010/sandbox/wechatpay"
    wechatpay_mchid: str = Field(default="1900000001", min_length=1, max_length=32)
    wechatpay_appid: str = Field(default="wx0000000000000001", min_length=1, max_length=32)
    wechatpay_merchant_key_file: Path | None = None
    wechatpay_merchant_serial: str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"
    # Wechatpay-Serial (a platform certificate serial or a "PUB_KEY_ID_..." public-key id) -> PEM file
    # (a public key or a certificate). JSON object in the environment.
    wechatpay_platform_keys: dict[str, Path] = Field(default_factory=dict)
    wechatpay_apiv3_key_file: Path | None = None
    # Certificate mode: fetch the platform certificates (GET /v3/certificates) at start and then every
    # refresh interval (sooner after a failure); the first answer must verify with a configured key.
    wechatpay_certificate_mode: bool = False
    wechatpay_certificates_refresh_seconds: float = Field(default=12 * 3600, ge=10, le=7 * 86400)
    wechatpay_notify_url: str = "http://127.0.0.1:8002/contribution/v1/notify/wechatpay"
    wechatpay_notify_tolerance_seconds: int = Field(default=300, gt=0, le=3600)

    payment_timeout_minutes: int = Field(default=30, gt=0, le=7 * 24 * 60)
    payment_close_interval_seconds: float = Field(default=30.0, gt=0)
    platform_timeout_seconds: float = Field(default=10.0, gt=0)
    # Asking before closing (payments.queries): an open payment without a notification is queried after
    # this many seconds, then again with doubling waits up to the maximum.
    payment_query_after_seconds: float = Field(default=60.0, gt=0)
    payment_query_max_wait_seconds: float = Field(default=600.0, gt=0)
    payment_query_interval_seconds: float = Field(default=15.0, gt=0)
    # Refunds (payments.refunds): where WeChat Pay sends refund notifications; how often unsettled
    # refunds are asked again.
    wechatpay_refund_notify_url: str = "http://127.0.0.1:8002/contribution/v1/notify/wechatpay/refunds"
    refund_retry_seconds: float = Field(default=120.0, gt=0)
    refund_interval_seconds: float = Field(default=30.0, gt=0)
    # Daily reconciliation (payments.reconciliation): yesterday's bills (Asia/Shanghai) are fetched from
    # this hour on (the platforms publish them in the morning), looked for every interval.
    reconciliation_hour: int = Field(default=10, ge=0, le=23)
    reconciliation_interval_seconds: float = Field(default=600.0, gt=0)
    certificate_font_file: Path | None = None
    certificate_verify_url: str = "http://127.0.0.1:8000/contribution/v1/certificates/"

    @field_validator("wechatpay_platform_keys", mode="before")
    @classmethod
    def _json_map(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value


class PaymentKeys:
    """The key material named by the settings, loaded once."""

    def __init__(self, settings: PaymentSettings, common: CommonSettings | None = None) -> None:
        self.settings = settings
        self.keys_dir = (common or CommonSettings()).keys_dir

    def _file(self, configured: Path | None, default_name: str, env: str) -> Path:
        path = configured or (self.keys_dir / default_name)
        if not Path(path).exists():
            raise ConfigurationError(f"{env}: {path} does not exist")
        return Path(path)

    @cached_property
    def alipay_app_private_key(self) -> RSAPrivateKey:
        path = self._file(self.settings.alipay_app_private_key_file, "alipay-app.pem", "CONTRIBUTION_ALIPAY_APP_PRIVATE_KEY_FILE")
        return load_private_key(path.read_bytes())

    @cached_property
    def alipay_public_key(self) -> RSAPublicKey | tuple[RSAPublicKey, ...]:
        """The Alipay public key, or every configured one (in order, without repeats) when there are several."""
        extra = [Path(p.strip()) for p in self.settings.alipay_public_key_files.split(",") if p.strip()]
        paths: list[Path] = []
        if self.settings.alipay_public_key_file is not None or not extra:
            paths.append(self._file(self.settings.alipay_public_key_file, "alipay-platform.pub.pem", "CONTRIBUTION_ALIPAY_PUBLIC_KEY_FILE"))
        paths.extend(self._file(p, "", "CONTRIBUTION_ALIPAY_PUBLIC_KEY_FILES") for p in extra)
        keys: list[RSAPublicKey] = []
        for path in paths:
            key = load_public_key(path.read_bytes())
            if all(key.public_numbers() != k.public_numbers() for k in keys):
                keys.append(key)
        return keys[0] if len(keys) == 1 else tuple(keys)

    @cached_property
    def wechatpay_merchant_key(self) -> RSAPrivateKey:
        path = self._file(self.settings.wechatpay_merchant_key_file, "wechatpay-merchant.pem", "CONTRIBUTION_WECHATPAY_MERCHANT_KEY_FILE")
        return load_private_key(path.read_bytes())

    @cached_property
    def wechatpay_platform_keys(self) -> dict[str, RSAPublicKey]:
        configured = self.settings.wechatpay_platform_keys
        if not configured:
            configured = {SANDBOX_PLATFORM_KEY_ID: self.keys_dir / "wechatpay-platform.pub.pem"}
        out = {}
        for serial, path in configured.items():
            p = self._file(path, "", f"CONTRIBUTION_WECHATPAY_PLATFORM_KEYS[{serial}]")
            out[serial] = load_public_key(p.read_bytes())
        return out

    @cached_property
    def wechatpay_apiv3_key(self) -> bytes:
        path = self._file(self.settings.wechatpay_apiv3_key_file, "wechatpay-apiv3.key", "CONTRIBUTION_WECHATPAY_APIV3_KEY_FILE")
        key = path.read_bytes().strip()
        if len(key) != 32:
            raise ConfigurationError("CONTRIBUTION_WECHATPAY_APIV3_KEY_FILE must hold the 32-character APIv3 key")
        return key

    @property
    def certificate_font(self) -> Path:
        path = self.settings.certificate_font_file or FONT_FILE
        if not Path(path).exists():
            raise ConfigurationError(f"CONTRIBUTION_CERTIFICATE_FONT_FILE: {path} does not exist")
        return Path(path)


def load_private_key(pem: bytes) -> RSAPrivateKey:
    """An RSA private key from PEM (PKCS#8 or PKCS#1)."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ConfigurationError("expected an RSA private key")
    return key


def load_public_key(pem: bytes) -> RSAPublicKey:
    """An RSA public key from a PEM public key or an X.509 certificate."""
    key: Any
    if b"BEGIN CERTIFICATE" in pem:
        from cryptography import x509

        key = x509.load_pem_x509_certificate(pem).public_key()
    else:
        key = serialization.load_pem_public_key(pem)
    if not isinstance(key, RSAPublicKey):
        raise ConfigurationError("expected an RSA public key")
    return key
