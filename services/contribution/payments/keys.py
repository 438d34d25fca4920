"""The payment platforms' key material, named by the contribution settings (`CONTRIBUTION_*_FILE`).

Keys are files. Left unset, the development keys that `make run` creates under
`$SOCIALSEC_VAR_DIR/keys/` are used; production sets every file.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from services.common.settings import CommonSettings, ConfigurationError
from services.contribution.settings import Settings

FONT_FILE = Path(__file__).with_name("fonts") / "NotoSansSC-Subset.ttf"
SANDBOX_PLATFORM_KEY_ID = "PUB_KEY_ID_0112345678901234567890123456789012"


class PaymentKeys:
    """The key material named by the settings, loaded once."""

    def __init__(self, settings: Settings, common: CommonSettings | None = None) -> None:
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
