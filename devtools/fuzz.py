"""`make fuzz`: schemathesis against the gateway's merged document on a running stack.

Starts the gateway, the four services and the sandbox on free loopback ports (SQLite
files in a fresh directory, fresh keys; as tests/e2e does), mints a citizen, an
employer and a staff token with the sandbox issuer, and runs `schemathesis run` with
every check, a fixed seed and a bounded number of examples once per token. Any
finding fails the target (exit status 1). What is deliberately not checked is named,
with its reason, in devtools/fuzz.toml.

    make fuzz                      # the CI budget
    FUZZ_MAX_EXAMPLES=25 make fuzz # a longer run
    FUZZ_SEED=7 make fuzz          # another sample
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from devtools.run import SERVICES, Ports, Stack, free_ports, prepare, stack_env

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "fuzz.toml"
SEED = int(os.environ.get("FUZZ_SEED", "20261202"))
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "5"))
WORKERS = os.environ.get("FUZZ_WORKERS", "2")

CREDIT_CODE = "91110105MA00F0001"  # the 17 characters before the check character


def personas() -> dict[str, dict[str, Any]]:
    """The three callers every operation is tried with (sandbox token requests)."""
    from services.common.identifiers import credit_code_check_char

    return {
        "citizen": {
            "issuer": "sandbox-alipay", "kind": "citizen", "id_number": "11010519491231002X", "name": "王芳",
            "realname_level": 3, "auth_method": "face",
        },
        "employer": {
            "issuer": "sandbox-wechat", "kind": "employer",
            "credit_code": CREDIT_CODE + credit_code_check_char(CREDIT_CODE), "unit_name": "示例模糊测试有限公司",
            "operator": "经办人",
        },
        # admin includes the operator and reviewer roles
        "staff": {"issuer": "sandbox-alipay", "kind": "staff", "staff_id": "S-FUZZ", "roles": ["admin"]},
    }


def _token(sandbox: str, persona: dict[str, Any]) -> str:
    body = {**persona, "auth_time": int(time.time()), "ttl_seconds": 3600}
    r = httpx.post(f"{sandbox}/sandbox/tokens", json=body, timeout=10)
    r.raise_for_status()
    return str(r.json()["token"])


def start_stack(var_dir: Path) -> tuple[Stack, Ports]:
    """The whole stack on SQLite files under var_dir, rate limits out of the fuzzer's way."""
    p = free_ports(6)
    ports = Ports(gateway=p[0], registration=p[1], contribution=p[2], card=p[3], review=p[4], sandbox=p[5])
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SOCIALSEC_", "GATEWAY_", "SANDBOX_", "TEST_"))}
    base.update({f"{s.upper()}_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir}/{s}.db" for s in SERVICES})
    base["GATEWAY_RATE_LIMIT_PER_PRINCIPAL"] = "100000/minute"
    base["GATEWAY_RATE_LIMIT_PER_ADDRESS"] = "100000/minute"
    env = stack_env(var_dir, ports, base=base)
    env["GATEWAY_ISSUERS_FILE"] = str(var_dir / "issuers.json")
    prepare(var_dir, ports, env)
    if not (var_dir / "issuers.json").exists():
        from sandbox.issuers import write_default_issuers_file

        write_default_issuers_file(var_dir, f"http://127.0.0.1:{ports.sandbox}")
    stack = Stack(env, ports, quiet=not os.environ.get("FUZZ_VERBOSE"))
    stack.start()
    try:
        stack.wait_healthy(90)
    except Exception:
        stack.stop()
        raise
    return stack, ports


def schemathesis_command(gateway: str, token: str, report: Path) -> list[str]:
    exe = Path(sys.executable).with_name("schemathesis")
    return [
        str(exe), "--config-file", str(CONFIG), "--no-color", "run", f"{gateway}/openapi.json",
        "--checks", "all", "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES), "--workers", WORKERS,
        "--generation-database", "none", "--request-timeout", "30",
        "-H", f"Authorization: Bearer {token}",
        "--report", "junit", "--report-junit-path", str(report),
    ]


def main() -> int:
    var_dir = Path(tempfile.mkdtemp(prefix="socialsec-fuzz-"))
    reports = Path(os.environ.get("FUZZ_REPORT_DIR", var_dir / "reports"))
    reports.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    started = time.monotonic()
    stack, ports = start_stack(var_dir)
    try:
        gateway, sandbox = f"http://127.0.0.1:{ports.gateway}", f"http://127.0.0.1:{ports.sandbox}"
        # The first document is built by every service and merged (over 10 s on a busy machine, more than
        # schemathesis waits for it); fetch it once so that the services hold theirs built.
        httpx.get(f"{gateway}/openapi.json", timeout=120).raise_for_status()
        for name, persona in personas().items():
            t0 = time.monotonic()
            print(f"--- schemathesis as {name} (seed {SEED}, {MAX_EXAMPLES} examples per operation)", flush=True)
            # Run from the scratch directory: schemathesis keeps its cache in the working directory.
            rc = subprocess.call(
                schemathesis_command(gateway, _token(sandbox, persona), reports / f"{name}.xml"), cwd=var_dir,
            )
            print(f"--- {name}: exit {rc} in {time.monotonic() - t0:.0f} s", flush=True)
            if rc != 0:
                failed.append(name)
    finally:
        stack.stop()
        if not os.environ.get("FUZZ_KEEP"):
            shutil.rmtree(var_dir, ignore_errors=True)
    print(f"fuzz: {time.monotonic() - started:.0f} s in all; findings as {', '.join(failed) or 'nobody'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
