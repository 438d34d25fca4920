"""The platform clients a running service uses, built once from the settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import httpx

from services.common.settings import CommonSettings
from services.contribution.payments.alipay import AlipayConfig
from services.contribution.payments.keys import PaymentKeys
from services.contribution.payments.wechatpay import PlatformKeys, WechatPayConfig
from services.contribution.settings import Settings


class PaymentPlatforms:
    """Settings, keys and one HTTP client for Alipay and WeChat Pay."""

    def __init__(
        self, settings: Settings, common: CommonSettings | None = None, client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.keys = PaymentKeys(settings, common)
        self._client = client

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.settings.platform_timeout_seconds, follow_redirects=False)
        return self._client

    @cached_property
    def alipay(self) -> AlipayConfig:
        s = self.settings
        return AlipayConfig(
            gateway_url=s.alipay_gateway_url, app_id=s.alipay_app_id, app_private_key=self.keys.alipay_app_private_key,
            alipay_public_key=self.keys.alipay_public_key, notify_url=s.alipay_notify_url, seller_id=s.alipay_seller_id,
        )

    @cached_property
    def wechat_platform_keys(self) -> PlatformKeys:
        """The configured platform keys, and the platform certificates fetched in certificate mode."""
        return PlatformKeys(self.keys.wechatpay_platform_keys)

    @cached_property
    def wechat(self) -> WechatPayConfig:
        s = self.settings
        return WechatPayConfig(
            base_url=s.wechatpay_base_url, mchid=s.wechatpay_mchid, appid=s.wechatpay_appid,
            merchant_key=self.keys.wechatpay_merchant_key, merchant_serial=s.wechatpay_merchant_serial,
            platform_keys=self.wechat_platform_keys, apiv3_key=self.keys.wechatpay_apiv3_key,
            notify_url=s.wechatpay_notify_url, tolerance_seconds=s.wechatpay_notify_tolerance_seconds,
        )


def platforms_of(app: Any) -> PaymentPlatforms:
    """The app's payment platforms, created on first use from the service's settings."""
    found = getattr(app.state, "payment_platforms", None)
    if found is None:
        found = PaymentPlatforms(app.state.settings, getattr(app.state, "common", None))
        app.state.payment_platforms = found
    return found


def interval_of(seconds: Callable[[Settings], float]) -> Callable[[Any], float]:
    """A payment job's interval: `seconds` read from the settings of the running app."""
    return lambda app: float(seconds(platforms_of(app).settings))
