"""Contribution service settings (`CONTRIBUTION_*`), payment platforms included.

The payment platforms' URLs point at the local sandbox and their key files default to the
development keys `make run` creates under `$SOCIALSEC_VAR_DIR/keys/` (`payments/keys.py`);
production sets every value.
"""

import json
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CONTRIBUTION_", extra="ignore")
    service_name = "contribution"

    # Producers this service consumes (feeds at <url>/internal/v1/events).
    registration_url: str | None = None
    review_url: str | None = None
    card_url: str | None = None  # family bindings (a citizen pays a bound relative's declarations)
    # An unpaid declaration (draft or awaiting payment) expires after this many minutes.
    declaration_ttl_minutes: int = Field(default=1440, gt=0, le=60 * 24 * 90)
    # How often the expiry job looks for unpaid declarations past their time.
    expiry_interval_seconds: float = Field(default=60.0, gt=0)

    # Webhooks (Standard Webhooks) of agencies and employers.
    # true: http and loopback/private addresses allowed (local receivers; `make run` sets it). Never in production.
    webhook_allow_insecure: bool = False
    # A receiver must answer within this many seconds (the whole attempt: resolving, connecting, answering).
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # How often the fan-out pass reads the outbox and the sender pass looks for due deliveries.
    webhook_interval_seconds: float = Field(default=1.0, gt=0)
    # Outbox events read, or deliveries claimed, per pass; deliveries sent at once by one pass.
    webhook_batch_size: int = Field(default=100, ge=1, le=1000)
    webhook_concurrency: int = Field(default=10, ge=1, le=100)

    # Payment platforms: Alipay, WeChat Pay, the payment time-out, certificates.
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

    def producer_urls(self) -> dict[str, str]:
        """The producers consumed (the payment platforms' URLs are not event feeds)."""
        found = {"registration": self.registration_url, "review": self.review_url, "card": self.card_url}
        return {name: url for name, url in found.items() if url}
