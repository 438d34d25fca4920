"""`python -m services.common.serve NAME`: run the gateway, a service or the sandbox with uvicorn.

The process model: each process runs `<NAME>_WORKERS` uvicorn workers
(`REGISTRATION_WORKERS`, `GATEWAY_WORKERS`, ...): an integer, or `auto` for the
CPUs this process may run on. Unset means 1 (`make run`); the image sets `auto`.
The sandbox always runs one (its trades live in memory).
Several workers share the listening socket; everything that must be shared
between them (and between replicas) lives outside the process: each service's
database (event cursors and inboxes, the locks of scheduled jobs) and, for the
gateway, the rate-limit storage (`GATEWAY_RATE_LIMIT_STORAGE=redis://...`).

With several workers a service's migrations run once here, before the workers
start (each worker then finds the database at head). `--die-with-parent PID`
makes this process end when the process that started it ends, however it ends
(`make run` killed hard): `PR_SET_PDEATHSIG` on Linux, a watcher thread elsewhere.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from services.common.identifiers import ascii_digits

APPS = {
    "gateway": "gateway.app:app",
    "registration": "services.registration.app:app",
    "contribution": "services.contribution.app:app",
    "card": "services.card.app:app",
    "review": "services.review.app:app",
    "sandbox": "sandbox.app:app",
}
SERVICES = ("registration", "contribution", "card", "review")

log = logging.getLogger("socialsec.serve")


class WorkersSettingError(ValueError):
    """`<NAME>_WORKERS` is neither a positive integer nor `auto`."""


def cpu_count() -> int:
    """The CPUs this process may run on (a container's cpuset, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def workers_for(name: str, env: dict[str, str] | None = None) -> int:
    """The worker count `<NAME>_WORKERS` asks for: 1 when unset, the CPU count for `auto`."""
    env = dict(os.environ) if env is None else env
    var = f"{name.upper()}_WORKERS"
    raw = env.get(var, "").strip().lower()
    if not raw:
        return 1
    if raw == "auto":
        return cpu_count()
    if not ascii_digits(raw) or int(raw) < 1:
        raise WorkersSettingError(f"{var} must be a positive integer or 'auto', not {raw!r}")
    return int(raw)


def die_with_parent(parent_pid: int) -> None:
    """End this process (SIGTERM, a graceful stop) when `parent_pid` is no longer its parent."""
    installed = False
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            installed = libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            installed = False
    # The parent may have gone before the line above: then we were already handed to another.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if installed:
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def migrate_first(name: str) -> None:
    """Bring the service's database to head once, before several workers start."""
    from services.common.migrate import settings_for, upgrade

    settings, common = settings_for(name)
    if not settings.migrate_on_start:
        return
    if settings.resolved_database_url(common).startswith("sqlite"):
        common.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(name, settings.resolved_database_url(common))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.serve", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(APPS), help="which process")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", help="import string of the ASGI app (default: the named process's)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--no-access-log", action="store_true")
    parser.add_argument("--graceful-timeout", type=int, default=None,
                        help="seconds open requests get on shutdown before they are cut")
    parser.add_argument("--die-with-parent", type=int, metavar="PID", default=None,
                        help="end when the process PID (our parent) ends")
    args = parser.parse_args(argv)
    if args.die_with_parent is not None:
        die_with_parent(args.die_with_parent)
    try:
        # The sandbox keeps its trades in memory: one process, whatever is set.
        workers = 1 if args.name == "sandbox" else workers_for(args.name)
    except WorkersSettingError as exc:
        print(exc, file=sys.stderr)
        return 2
    if workers > 1 and args.name in SERVICES and args.app is None:
        migrate_first(args.name)
    if workers > 1 and args.name == "gateway":
        storage = os.environ.get("GATEWAY_RATE_LIMIT_STORAGE", "memory://")
        if storage.removeprefix("async+").startswith("memory"):
            print(f"GATEWAY_WORKERS={workers} with GATEWAY_RATE_LIMIT_STORAGE={storage}: each worker counts "
                  "on its own, so a client gets up to that many times the limit; use redis://",
                  file=sys.stderr, flush=True)
    import uvicorn

    uvicorn.run(
        args.app or APPS[args.name],
        host=args.host,
        port=args.port,
        workers=workers,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        timeout_graceful_shutdown=args.graceful_timeout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
