"""`make token ARGS="--issuer sandbox-wechat --kind citizen --level 3"`: print a sandbox platform token.

Signed locally with the sandbox issuer's development key (created if missing), so it
works without the sandbox process running; the gateway trusts it through the default
issuers file that `make run` writes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from devtools.keys import ensure_dev_keys
from sandbox.issuers import SANDBOX_ISSUERS, mint_token

DEFAULT_ID_NUMBER = "11010519491231002X"


def _valid_credit_code(body17: str) -> str:
    from services.common.identifiers import credit_code_check_char

    return body17 + credit_code_check_char(body17)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="make token", description="Print a sandbox platform token for a persona.")
    p.add_argument("--issuer", choices=sorted(SANDBOX_ISSUERS), default="sandbox-alipay")
    p.add_argument("--kind", choices=["citizen", "employer", "agency", "channel", "staff"], default="citizen")
    p.add_argument("--sub", help="platform user id (default: derived from the persona, stable)")
    p.add_argument("--id-number", help=f"citizen's id number (default {DEFAULT_ID_NUMBER})")
    p.add_argument("--name", help="citizen's name (default 王芳)")
    p.add_argument("--level", type=int, choices=[1, 2, 3], default=3, help="real-name level (citizens)")
    p.add_argument("--auth-method", default="face", help="face, bank_card, sms, ... (citizens)")
    p.add_argument("--auth-time", type=int, help="epoch seconds of the platform authentication (default now)")
    p.add_argument("--credit-code", help="unified social credit code (employers, agencies)")
    p.add_argument("--unit-name", help="unit name (employers)")
    p.add_argument("--operator", help="the unit's operator (employers)")
    p.add_argument("--channel-kind", choices=["bank", "hospital", "window", "hotline"], default="bank")
    p.add_argument("--branch-id", default="B001", help="branch (channels)")
    p.add_argument("--staff-id", default="S1001", help="staff id (staff)")
    p.add_argument("--roles", default="operator", help="comma-separated staff roles: operator, reviewer, admin")
    p.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    return p


def persona_of(args: argparse.Namespace) -> dict[str, object]:
    """Our claim names for the chosen kind."""
    if args.kind == "citizen":
        return {
            "kind": "citizen", "id_number": (args.id_number or DEFAULT_ID_NUMBER).upper(), "name": args.name or "王芳",
            "realname_level": args.level, "auth_method": args.auth_method, "auth_time": args.auth_time, "sub": args.sub,
        }
    if args.kind in ("employer", "agency"):
        persona: dict[str, object] = {
            "kind": args.kind, "credit_code": (args.credit_code or _valid_credit_code("91110105MA0000001")).upper(),
            "sub": args.sub,
        }
        if args.kind == "employer":
            persona.update(unit_name=args.unit_name or "北京示例科技有限公司", operator=args.operator or "经办人")
        return persona
    if args.kind == "channel":
        return {"kind": "channel", "channel_kind": args.channel_kind, "branch_id": args.branch_id, "sub": args.sub}
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    return {"kind": "staff", "staff_id": args.staff_id, "roles": roles, "sub": args.sub or args.staff_id}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    var_dir = Path(os.environ.get("SOCIALSEC_VAR_DIR", "var"))
    keys = ensure_dev_keys(var_dir)
    token, _, _ = mint_token(args.issuer, persona_of(args), keys_dir=keys, ttl_seconds=args.ttl)
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
