"""Development keys under `$SOCIALSEC_VAR_DIR/keys/`, created once before any process starts.

Production passes its keys in through settings; nothing here is used then. A
file lock makes concurrent callers wait for the first one instead of racing.
"""

from __future__ import annotations

import base64
import fcntl
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def _ec_private_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _rsa_private_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def public_pem_of(private_pem: bytes) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key PEM."""
    key = serialization.load_pem_private_key(private_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _b64(n: int) -> Callable[[], bytes]:
    return lambda: base64.b64encode(secrets.token_bytes(n))


# name -> generator; a private key `X.pem` also gets its public half `X.pub.pem`.
KEY_SPECS: dict[str, Callable[[], bytes]] = {
    "gateway-signing.pem": _ec_private_pem,  # ES256, signs X-Principal
    "pii.key": _b64(32),  # AES-256-GCM for id numbers
    "pii-hash.key": _b64(32),  # HMAC for the keyed id hash
    "internal-token": lambda: secrets.token_urlsafe(32).encode(),
    "sandbox-alipay-issuer.pem": _rsa_private_pem,  # RS256 tokens of the Alipay stand-in
    "sandbox-wechat-issuer.pem": _ec_private_pem,  # ES256 tokens of the WeChat stand-in
    "card-qr-signing.pem": _ec_private_pem,  # ES256 e-card QR payloads
    "alipay-app.pem": _rsa_private_pem,  # our Alipay app key (RSA2 requests)
    "alipay-platform.pem": _rsa_private_pem,  # the sandbox's Alipay platform key (signs notifications)
    "wechatpay-merchant.pem": _rsa_private_pem,  # our WeChat Pay merchant key
    "wechatpay-platform.pem": _rsa_private_pem,  # the sandbox's WeChat Pay platform key
    "wechatpay-apiv3.key": lambda: secrets.token_hex(16).encode(),  # 32-character APIv3 key
    "wechat-app.secret": lambda: secrets.token_hex(16).encode(),  # the mini-program AppSecret (message API tokens)
}


def ensure_dev_keys(var_dir: Path) -> Path:
    """Create every missing development key under var_dir/keys; return that folder."""
    keys = var_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    os.chmod(keys, 0o700)
    with open(keys / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, make in KEY_SPECS.items():
            path = keys / name
            if not path.exists():
                data = make()
                tmp = path.with_suffix(path.suffix + ".tmp")
                tmp.write_bytes(data)
                os.chmod(tmp, 0o600)
                tmp.replace(path)
            if name.endswith(".pem"):
                pub = keys / (name[: -len(".pem")] + ".pub.pem")
                if not pub.exists():
                    pub.write_bytes(public_pem_of(path.read_bytes()))
        fcntl.flock(lock, fcntl.LOCK_UN)
    return keys


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SOCIALSEC_VAR_DIR", "var"))
    print(ensure_dev_keys(target))
