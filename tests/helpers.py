"""Test helpers: principals as the gateway would sign them, valid identifiers."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from services.common.identifiers import credit_code_check_char, id_number_check_char
from services.common.principal import encode_principal


def _keys() -> Path:
    return Path(os.environ["SOCIALSEC_VAR_DIR"]) / "keys"


def principal_headers(service: str, prn: dict[str, Any], *, ttl: int = 60) -> dict[str, str]:
    """`X-Principal` for a service, signed with the gateway's development key."""
    key = (_keys() / "gateway-signing.pem").read_text()
    token = encode_principal(prn, audience=service, private_key_pem=key, ttl=ttl)
    return {"X-Principal": token}


def make_id_number(region: str = "110105", birth: str = "19900101", seq: str = "001") -> str:
    """A valid GB 11643 id number (odd sequence = male)."""
    first = region + birth + seq
    return first + id_number_check_char(first)


def make_credit_code(body: str = "91110105MA0000001") -> str:
    """A valid GB 32100 code for 17 characters."""
    return body + credit_code_check_char(body)


def citizen(
    id_number: str | None = None,
    name: str = "张三",
    *,
    level: int = 3,
    auth_method: str = "face",
    auth_time: float | None = None,
    platform: str = "alipay",
    sub: str | None = None,
) -> dict[str, Any]:
    idn = id_number or make_id_number()
    return {
        "kind": "citizen",
        # The platform's user id is opaque (never derived from the id number's digits), stable per person.
        "sub": sub or f"{platform}-" + hashlib.sha256(f"{platform}:{idn}".encode()).hexdigest()[:16],
        "issuer": f"sandbox-{platform}",
        "platform": platform,
        "id_number": idn,
        "name": name,
        "realname_level": level,
        "auth_method": auth_method,
        "auth_time": int(auth_time if auth_time is not None else time.time()),
    }


def employer(credit_code: str | None = None, name: str = "北京示例科技有限公司") -> dict[str, Any]:
    cc = credit_code or make_credit_code()
    return {"kind": "employer", "sub": f"unit-{cc}", "issuer": "sandbox-alipay", "credit_code": cc, "unit_name": name, "operator": "经办人"}


def agency(credit_code: str | None = None) -> dict[str, Any]:
    cc = credit_code or make_credit_code("91110105MA0000002")
    return {"kind": "agency", "sub": f"agency-{cc}", "issuer": "agency-partner", "credit_code": cc}


def channel(kind: str = "bank", branch: str = "B001") -> dict[str, Any]:
    return {"kind": "channel", "sub": f"{kind}-{branch}", "issuer": "channel-partner", "channel_kind": kind, "branch_id": branch}


def staff(*roles: str, staff_id: str = "S1001") -> dict[str, Any]:
    return {"kind": "staff", "sub": staff_id, "issuer": "staff-idp", "staff_id": staff_id, "roles": list(roles or ("operator",))}


def name_of(i: int, prefix: str = "职工") -> str:
    """A distinct valid name for the i-th person (names hold no digits)."""
    return prefix + "".join("零一二三四五六七八九"[int(d)] for d in str(i))
